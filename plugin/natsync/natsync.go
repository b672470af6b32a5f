// Package natsync publishes a plugin.Server's per-cell chunks over NATS,
// for gateways that serve clients without holding the World, and answers
// their snapshot requests. It is a package of its own so that games that
// do not scale out do not import NATS.
//
// Subjects carry the world's name (a NATS subject token: no spaces, dots,
// '*' or '>'):
//
//	ebisync.<world>.cell.<x>.<y>   a tick's chunk of grid cell (x, y)
//	ebisync.<world>.global         a tick's chunk of the entities without a position
//	ebisync.<world>.tick           the end of a tick: uvarint tick, uvarint chunks
//	ebisync.<world>.snapshot       requests for a cell's state, answered with a snapshot chunk
//	ebisync.<world>.join           a gateway's client joining, answered with its id and token
//	ebisync.<world>.requests       a gateway's requests envelopes: its clients' requests and departures
//	ebisync.<world>.relay.<name>   the simulation's answers to gateway <name>'s clients
//
// docs/PROTOCOL.md §12 gives the chunks byte by byte, §13 the gateways'
// payloads (joins, requests, relays), and docs/SCALING.md
// how consumers use them. A consumer reads the chunks and tick markers of
// a world through one ordered stream (one connection, one channel), so
// that a tick's marker comes after the tick's chunks.
//
// # The simulation
//
// The process that holds the World publishes its changes, answers
// snapshot requests, and serves the gateways' clients: their joins, their
// requests, and the answers relayed back:
//
//	nc, err := nats.Connect(natsURLs, nats.MaxReconnects(-1))
//	pub, err := natsync.NewPublisher(nc, "world1")
//	srv := plugin.New(world, reg, &plugin.Options{Publish: pub, PublishCellSize: 250})
//	svc, err := pub.Serve(srv)
//	defer svc.Stop()
//	// srv.Tick() every tick, as for any Server
//
// # A gateway
//
// A gateway process holds no World: a Feed brings it the cells its
// clients need, and it serves them over WebSocket like a Server of the
// World. The Feed is also the gateway's plugin.Upstream: its clients join
// the simulation, their requests go to it, and its answers come back. Its registry has the simulation's registrations in the same
// order, and it is given the simulation's PublishCellSize:
//
//	nc, err := nats.Connect(natsURLs, nats.MaxReconnects(-1)) // every node's URL
//	feed, err := natsync.NewFeed(nc, "world1")
//	gw := plugin.NewGateway(reg, simCellSize, feed, &plugin.Options{DefaultRadius: 300, MaxRadius: 600})
//	feed.Attach(gw) // before the first gw.Tick
//	defer feed.Close()
//	http.Handle("/sync", gw)
//	go http.ListenAndServe(":8080", nil)
//	for range time.Tick(time.Second / 60) {
//		gw.Tick() // follows the cells the clients' interest covers, applies what the Feed brought, sends
//	}
//
// Give nats.Connect every node's URL: when the node a gateway is on goes
// away, its connection moves to another, and the gateway repairs what was
// lost in flight with fresh snapshots (Feed). Feed.Stats tells how the
// feed goes: messages dropped by a slow consumer, snapshot requests sent
// again, lost tick markers.
//
// The subject functions and the codecs (AppendSnapshotRequest,
// DecodeSnapshotRequest, DecodeTick) are pure and safe for concurrent use;
// each type says which of its methods are.
package natsync

import (
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/nats-io/nats.go"

	"github.com/ebisync/ebisync/plugin"
)

// CellSubject returns the subject of grid cell (x, y)'s chunks.
func CellSubject(world string, x, y int32) string {
	return "ebisync." + world + ".cell." + strconv.Itoa(int(x)) + "." + strconv.Itoa(int(y))
}

// GlobalSubject returns the subject of the chunks of the entities without
// a position.
func GlobalSubject(world string) string { return "ebisync." + world + ".global" }

// TickSubject returns the subject of the tick markers.
func TickSubject(world string) string { return "ebisync." + world + ".tick" }

// SnapshotSubject returns the subject that snapshot requests go to.
func SnapshotSubject(world string) string { return "ebisync." + world + ".snapshot" }

// JoinSubject returns the subject of gateways' joins (plugin.Upstream.Join).
func JoinSubject(world string) string { return "ebisync." + world + ".join" }

// RequestsSubject returns the subject of gateways' requests envelopes
// (plugin.Upstream.Requests).
func RequestsSubject(world string) string { return "ebisync." + world + ".requests" }

// RelaySubject returns the subject of the simulation's answers to gateway
// name's clients (plugin.Relay).
func RelaySubject(world, gateway string) string { return "ebisync." + world + ".relay." + gateway }

// checkWorld refuses a world name that is not one subject token.
func checkWorld(world string) error {
	if world == "" || strings.ContainsAny(world, " \t\r\n.*>") {
		return fmt.Errorf("natsync: world name %q is not a NATS subject token", world)
	}
	return nil
}

// A Publisher is a plugin.Publisher that publishes each chunk on its
// cell's subject and each tick's end on the tick subject, through one NATS
// connection, and a plugin.Relay that publishes the answers to each
// gateway's clients on the gateway's relay subject. Give it to
// plugin.Options.Publish, then call Serve with the Server.
//
// Chunk, TickEnd and Relay run on the game goroutine (the Server calls them
// during Tick) and do not block: nats.go copies the data into its
// outgoing buffer. A failed publish (a closed connection, a full
// reconnect buffer) is counted in Errors and the tick goes on;
// consumers see the gap in the tick numbers and ask for snapshots again.
// Errors and LastError are safe for concurrent use.
type Publisher struct {
	nc       *nats.Conn
	world    string
	subjects map[[2]int32]string
	global   string
	tick     string
	marker   []byte
	relays   map[string]string // relay subject by gateway name
	errors   atomic.Uint64
	lastErr  atomic.Pointer[error]
}

// NewPublisher returns a Publisher of world's chunks on nc. It is safe
// for concurrent use.
func NewPublisher(nc *nats.Conn, world string) (*Publisher, error) {
	if err := checkWorld(world); err != nil {
		return nil, err
	}
	return &Publisher{
		nc:       nc,
		world:    world,
		subjects: map[[2]int32]string{},
		relays:   map[string]string{},
		global:   GlobalSubject(world),
		tick:     TickSubject(world),
	}, nil
}

// Chunk publishes c on its cell's subject.
func (p *Publisher) Chunk(c plugin.Chunk) {
	subj := p.global
	if !c.Global {
		k := [2]int32{c.X, c.Y}
		var ok bool
		if subj, ok = p.subjects[k]; !ok {
			subj = CellSubject(p.world, c.X, c.Y)
			p.subjects[k] = subj
		}
	}
	p.fail(p.nc.Publish(subj, c.Data))
}

// TickEnd publishes the tick's marker.
func (p *Publisher) TickEnd(tick uint64, chunks int) {
	p.marker = binary.AppendUvarint(p.marker[:0], tick)
	p.marker = binary.AppendUvarint(p.marker, uint64(chunks))
	p.fail(p.nc.Publish(p.tick, p.marker))
}

// Relay publishes one gateway's answers on its relay subject.
func (p *Publisher) Relay(gateway string, data []byte) {
	subj, ok := p.relays[gateway]
	if !ok {
		subj = RelaySubject(p.world, gateway)
		p.relays[gateway] = subj
	}
	p.fail(p.nc.Publish(subj, data))
}

func (p *Publisher) fail(err error) {
	if err != nil {
		p.errors.Add(1)
		p.lastErr.Store(&err)
	}
}

// Errors returns how many publishes failed.
func (p *Publisher) Errors() uint64 { return p.errors.Load() }

// LastError returns the last publish error, or nil.
func (p *Publisher) LastError() error {
	if e := p.lastErr.Load(); e != nil {
		return *e
	}
	return nil
}

// A Service is what Serve subscribed; Stop ends it. Stop is safe for
// concurrent use.
type Service struct {
	subs []*nats.Subscription
}

// Stop unsubscribes the Service's subscriptions, and returns the first
// error.
func (v *Service) Stop() error {
	var first error
	for _, sub := range v.subs {
		if err := sub.Unsubscribe(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// Serve subscribes s, the simulation's Server, to what gateways ask of it:
//
//   - snapshot requests: a request names a cell (AppendSnapshotRequest),
//     and the answer, sent at the end of the Server's next tick, is the
//     cell's snapshot chunk; a request that does not decode, or that the
//     Server refuses (too many waiting), is answered with an empty message;
//   - joins, answered with Server.RemoteJoin;
//   - requests envelopes, handed to Server.RemoteRequests.
//
// Stop the returned Service to end them. Call Serve once, from any
// goroutine; the subscriptions' handlers run on nats.go's goroutines and
// reach s only through its methods that are safe for concurrent use.
func (p *Publisher) Serve(s *plugin.Server) (*Service, error) {
	v := &Service{}
	sub, err := p.nc.Subscribe(SnapshotSubject(p.world), func(m *nats.Msg) {
		global, x, y, err := DecodeSnapshotRequest(m.Data)
		if err != nil || m.Reply == "" {
			_ = m.Respond(nil)
			return
		}
		reply := m.Reply
		if s.Snapshot(global, x, y, func(c plugin.Chunk) {
			// On the game goroutine: Publish copies c.Data before it returns.
			p.fail(p.nc.Publish(reply, c.Data))
		}) != nil {
			_ = m.Respond(nil)
		}
	})
	if err != nil {
		return nil, err
	}
	v.subs = append(v.subs, sub)
	sub, err = p.nc.Subscribe(JoinSubject(p.world), func(m *nats.Msg) {
		if m.Reply != "" {
			_ = m.Respond(s.RemoteJoin(m.Data))
		}
	})
	if err != nil {
		_ = v.Stop()
		return nil, err
	}
	v.subs = append(v.subs, sub)
	sub, err = p.nc.Subscribe(RequestsSubject(p.world), func(m *nats.Msg) {
		s.RemoteRequests(m.Data) // nats.go gave m its own copy of the data
	})
	if err != nil {
		_ = v.Stop()
		return nil, err
	}
	v.subs = append(v.subs, sub)
	return v, nil
}

// AppendSnapshotRequest appends a request for the state of cell (x, y),
// or of the entities without a position when global is set, to dst.
func AppendSnapshotRequest(dst []byte, global bool, x, y int32) []byte {
	if global {
		return append(dst, 1)
	}
	dst = append(dst, 0)
	dst = binary.AppendVarint(dst, int64(x))
	return binary.AppendVarint(dst, int64(y))
}

// DecodeSnapshotRequest decodes a request AppendSnapshotRequest wrote.
func DecodeSnapshotRequest(b []byte) (global bool, x, y int32, err error) {
	if len(b) == 1 && b[0] == 1 {
		return true, 0, 0, nil
	}
	if len(b) < 3 || b[0] != 0 {
		return false, 0, 0, fmt.Errorf("natsync: a snapshot request of %d bytes", len(b))
	}
	vx, n := binary.Varint(b[1:])
	if n <= 0 {
		return false, 0, 0, fmt.Errorf("natsync: a snapshot request's x does not decode")
	}
	vy, m := binary.Varint(b[1+n:])
	if m <= 0 || 1+n+m != len(b) || vx != int64(int32(vx)) || vy != int64(int32(vy)) {
		return false, 0, 0, fmt.Errorf("natsync: a snapshot request's y does not decode")
	}
	return false, int32(vx), int32(vy), nil
}

// DecodeTick decodes a tick marker.
func DecodeTick(b []byte) (tick uint64, chunks int, err error) {
	t, n := binary.Uvarint(b)
	c, m := binary.Uvarint(b[max(n, 0):])
	if n <= 0 || m <= 0 || n+m != len(b) || c > 1<<31 {
		return 0, 0, fmt.Errorf("natsync: a tick marker of %d bytes does not decode", len(b))
	}
	return t, int(c), nil
}
