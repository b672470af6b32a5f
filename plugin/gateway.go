package plugin

import (
	"errors"
	"math"
	"math/bits"
	"slices"
	"sync"
	"time"
	"unsafe"

	"github.com/yohamta/donburi"

	"github.com/ebisync/ebisync/components"
	"github.com/ebisync/ebisync/internal/cellstore"
	"github.com/ebisync/ebisync/internal/wire"
)

// Gateways. A gateway is a Server that holds no World: a simulation
// publishes its changes by cell (Options.Publish), and the gateway keeps
// the state of the cells its clients' interest covers and serves its
// clients from it with the same protocol, scope, budgets and pacing as a
// Server of the World. Clients cannot tell a gateway from a server.

// A Cell names a published grid cell (Options.PublishCellSize units), or
// the entities without a position (Global).
type Cell struct {
	Global bool
	X, Y   int32
}

// A Feed brings a gateway the chunks of the cells it follows: package
// plugin/natsync has one over NATS. The gateway calls Follow and Unfollow
// on the game goroutine, during Tick; they must not block.
//
// After Follow(c, token), the Feed hands the gateway every chunk of c it
// receives (Server.FeedChunk), every tick's end (Server.FeedTickEnd),
// and, once its subscription to c is in place, asks the simulation for
// c's snapshot (Server.Snapshot on the simulation's Server) and hands the
// answer to Server.FeedSnapshot with the token. A Feed keeps the order of
// chunks and tick ends as the simulation published them.
type Feed interface {
	Follow(c Cell, token uint64)
	Unfollow(c Cell)
}

// errGatewayRequest is why a gateway without an Upstream refuses a
// mutation, control request, message or input: it forwards none.
var errGatewayRequest = errors.New("this server is a gateway that forwards no requests")

// gateway is a gateway Server's state (Server.gw; nil for a Server of a
// World).
type gateway struct {
	feed  Feed
	inv   float64 // 1 / the simulation's PublishCellSize
	store *cellstore.Store
	tags  []components.ReplicatedData // by net id: the versions detection stamps
	vals  []unsafe.Pointer            // scratch: an entity's values by registry index

	follow map[Cell]bool // the cells followed; true once ready
	want   map[Cell]bool // scratch: the cells the clients need this tick

	// The simulation's side of the gateway's clients (upstream.go); up
	// is nil for a gateway that forwards nothing.
	up      Upstream
	name    string
	upW     wire.Writer // this tick's requests envelope
	upHead  int         // its header's length
	lastUp  time.Time
	listAt  time.Time // when the last client list went up
	listIDs []uint64  // upClients' scratch
	msgBuf  []byte    // forward's scratch
	simTick uint64    // the simulation's last tick applied: the tick clients see
	visAt   []visMark // ring of the first tick of each recent simTick (upstream.go)
	visNext int

	mu      sync.Mutex
	queue   []feedMsg // FeedChunk, FeedTickEnd and FeedSnapshot, in order
	queued  int       // the bytes of the chunks in queue
	serving []feedMsg
	dropped uint64 // times the queue overflowed (under mu)

	// pending counts, by client id, the connections whose join the
	// simulation answered and that the gateway's tick has not yet
	// admitted (under Server.mu). The client list (upstream.go) names
	// them, so that the simulation keeps them.
	pending map[uint64]int
}

type feedMsg struct {
	kind  byte // feedChunk, feedTick, feedSnapshot
	tick  uint64
	token uint64
	data  []byte
}

const (
	feedChunk byte = iota
	feedTick
	feedSnapshot
	feedResync
	feedReply
)

// NewGateway returns a gateway: a Server that holds no World and serves
// its clients from the chunks that feed brings of a simulation whose
// Options.PublishCellSize is cellSize, and whose registry is reg (the
// same registrations, in the same order). Its clients' interest must be a
// radius: opts.DefaultRadius and opts.MaxRadius must be positive, so that
// the cells a client needs are known. It panics on a programmer error: a
// registry without components.Position, or a radius missing.
//
// When feed is also an Upstream (package plugin/natsync's Feed is), the
// gateway forwards its clients to the simulation: each handshake joins
// there (Server.RemoteJoin), so client ids, tokens and sessions are the
// simulation's and a session resumes at any gateway of the world; the
// clients' mutations, control requests, messages and inputs go up with
// their identity, and the answers come back into their batches. A client
// whose handshake cannot join (the simulation did not answer within 3 s)
// is closed with StatusTryAgain. Without an Upstream, a gateway
// replicates only: mutations are answered Forbidden, control requests
// ControlForbidden, messages Forbidden, and inputs are refused, each with
// a log line at Debug.
//
// The ticks a gateway's clients see (a Welcome's tick and each batch's
// advance) are the simulation's, so that a session resumed at another
// gateway goes on with the same timeline. World returns nil, FollowEntity
// centres a client on an entity by its net id only, and the Inspector
// shows no values. As with New, call NewGateway before serving: a Server
// is safe for concurrent use only as each method says.
func NewGateway(reg *components.Registry, cellSize float64, feed Feed, opts *Options) *Server {
	o := opts.withDefaults()
	if !(o.DefaultRadius > 0) || !(o.MaxRadius > 0) {
		panic("ebisync: a gateway needs Options.DefaultRadius and Options.MaxRadius, so that each client's cells are known")
	}
	if !(cellSize > 0) || math.IsInf(cellSize, 0) {
		panic("ebisync: a gateway needs the simulation's PublishCellSize")
	}
	if _, ok := reg.Of(components.Position); !ok {
		panic("ebisync: a gateway needs components.Position registered, as its simulation does")
	}
	o2 := o
	o2.Publish = nil
	s := New(nil, reg, &o2)
	s.hierarchy = false
	s.posIndex = -1
	if pc, ok := reg.Of(components.Position); ok {
		s.posIndex = pc.Index()
	}
	s.refOf = func(v uint64) uint64 { return v } // values from chunks hold Refs already
	g := &gateway{
		feed:   feed,
		inv:    1 / cellSize,
		follow: map[Cell]bool{},
		want:   map[Cell]bool{},
		vals:   make([]unsafe.Pointer, len(s.comps)),
		tags:   make([]components.ReplicatedData, 1),
		name:   newGatewayName(),

		pending: map[uint64]int{},
	}
	g.up, _ = feed.(Upstream)
	g.store = cellstore.New(s.comps)
	s.gw = g
	return s
}

// IsGateway reports whether s is a gateway (NewGateway). It is safe for
// concurrent use.
func (s *Server) IsGateway() bool { return s.gw != nil }

// FeedChunk hands a gateway one tick's chunk of a cell it follows, as the
// simulation's Publisher gave it. It is safe for concurrent use; the
// gateway keeps data and applies it in a later Tick. A Server that is not
// a gateway ignores it.
func (s *Server) FeedChunk(data []byte) { s.feedMsg(feedMsg{kind: feedChunk, data: data}) }

// FeedTickEnd hands a gateway the end of the simulation's tick: the
// chunks fed before it apply together. It is safe for concurrent use.
func (s *Server) FeedTickEnd(tick uint64) { s.feedMsg(feedMsg{kind: feedTick, tick: tick}) }

// FeedResync tells a gateway that its Feed lost messages (ticks went by
// unseen): the gateway follows every cell again, each from a fresh
// snapshot. It is safe for concurrent use.
func (s *Server) FeedResync() { s.feedMsg(feedMsg{kind: feedResync}) }

// FeedSnapshot hands a gateway the snapshot a Follow with token asked
// for. It is safe for concurrent use; the gateway keeps data.
func (s *Server) FeedSnapshot(token uint64, data []byte) {
	s.feedMsg(feedMsg{kind: feedSnapshot, token: token, data: data})
}

func (s *Server) feedMsg(m feedMsg) {
	g := s.gw
	if g == nil {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.queued+len(m.data) > maxFeedQueueBytes {
		// The gateway's ticks fell behind its feed: what waits is
		// dropped, and every cell is taken again from a snapshot.
		clear(g.queue)
		g.queue = append(g.queue[:0], feedMsg{kind: feedResync})
		g.queued = 0
		g.dropped++
		if m.kind != feedTick {
			return
		}
	}
	g.queue = append(g.queue, m)
	g.queued += len(m.data)
}

// maxFeedQueueBytes bounds the chunks and snapshots a gateway keeps
// between two ticks. A gateway whose ticks fall this far behind its feed
// drops them and takes every cell again.
const maxFeedQueueBytes = 64 << 20

// FeedOverflows returns how many times a gateway's feed brought more than
// 64 MiB between two of its ticks, so that it dropped what waited and took
// every cell again. It is safe for concurrent use.
func (s *Server) FeedOverflows() uint64 {
	if s.gw == nil {
		return 0
	}
	s.gw.mu.Lock()
	defer s.gw.mu.Unlock()
	return s.gw.dropped
}

// detectFed is detect for a gateway: it applies what the Feed brought
// since the last tick to the store of followed cells, then compares each
// entity the store changed with its record, as detect compares an entity
// of the World, and returns ch filled with this tick's changes.
func (s *Server) detectFed(ch *changes) *changes {
	g := s.gw
	g.mu.Lock()
	g.serving, g.queue = g.queue, g.serving[:0]
	g.queued = 0
	g.mu.Unlock()
	resync := false
	for i := range g.serving {
		m := &g.serving[i]
		var err error
		switch m.kind {
		case feedChunk:
			err = g.store.Chunk(m.data)
		case feedTick:
			err = g.store.EndTick(m.tick)
			g.simTick = max(g.simTick, m.tick)
		case feedSnapshot:
			err = g.store.Snapshot(m.token, m.data)
		case feedResync:
			resync = true
		case feedReply:
			s.applyReplies(m.data) // upstream.go
		}
		if err != nil {
			resync = true
			if !errors.Is(err, cellstore.ErrGap) {
				s.log.Warn("ebisync: gateway: a chunk from the feed is refused; its cells are asked for again", "err", err)
			}
		}
		m.data = nil
	}
	clear(g.serving)
	g.serving = g.serving[:0]
	if resync {
		// Follow every cell again: each gets a fresh snapshot.
		for c := range g.follow {
			g.store.Unfollow(cellstore.Cell(c))
			g.feed.Unfollow(c)
			g.follow[c] = false
			g.feed.Follow(c, g.store.Follow(cellstore.Cell(c)))
		}
	}
	touched := g.store.Touched()
	slices.Sort(touched)
	for _, id := range touched {
		s.detectFedEntity(ch, id)
	}
	g.store.ClearTouched()
	s.freeIDs = s.freeIDs[:0] // a gateway's ids are its simulation's
	slices.Sort(ch.ids)
	return ch
}

// detectFedEntity brings the record of net id id in line with what the
// store holds of it.
func (s *Server) detectFedEntity(ch *changes, id uint32) {
	g := s.gw
	e := g.store.Get(id)
	var r *entityRec
	if int(id) < len(s.recs) {
		r = s.recs[id]
	}
	if r != nil && (e == nil || r.gen != e.Gen) {
		s.despawn(ch, r)
		r = nil
	}
	if e == nil {
		return
	}
	for int(id) >= len(g.tags) {
		g.tags = append(g.tags, components.ReplicatedData{})
	}
	tag := &g.tags[id]
	if r == nil {
		*tag = components.ReplicatedData{Versions: tag.Versions[:0]}
		r = s.records.addAt(id, e.Gen, tag, len(s.comps))
		s.globals.add(r.id)
		ch.entities++
	}
	if len(tag.Versions) < len(s.comps) {
		tag.Versions = make([]uint32, len(s.comps))
	}
	var has uint64
	for i, v := range e.Vals {
		if v != nil {
			has |= 1 << uint(i)
		}
	}
	d := entityDiff{first: int32(len(ch.deltas))}
	for m := has | r.present; m != 0; m &= m - 1 {
		i := bits.TrailingZeros64(m)
		s.compareOne(ch, r, i, tag, e.Vals[i], &d)
	}
	if s.locate(r, donburi.Null, d.pos) {
		d.changed = true
	}
	p := fastPath{ok: !d.added, minSync: r.maxVer, changed: d.deltas, first: d.first, bytes: d.bytes}
	if d.deltas != 0 || d.added {
		r.maxVer = s.tick
	}
	if d.changed {
		ch.add(r.id, p)
	}
}

// followCells follows the cells the gateway's clients need and lets go of
// the others: for each client with a radius, the cells its leave radius
// covers around its centre, and the global cell.
func (s *Server) followCells() {
	g := s.gw
	clear(g.want)
	g.want[Cell{Global: true}] = true
	for _, c := range s.clients {
		r := c.leaveR
		if !(r > 0) {
			r = s.opts.MaxRadius * s.opts.Hysteresis
		}
		x0, x1 := cellCoord((c.cx-r)*g.inv), cellCoord((c.cx+r)*g.inv)
		y0, y1 := cellCoord((c.cy-r)*g.inv), cellCoord((c.cy+r)*g.inv)
		for x := x0; x <= x1; x++ {
			for y := y0; y <= y1; y++ {
				g.want[Cell{X: x, Y: y}] = true
			}
		}
	}
	for c := range g.follow {
		if !g.want[c] {
			delete(g.follow, c)
			g.store.Unfollow(cellstore.Cell(c))
			g.feed.Unfollow(c)
		}
	}
	for c := range g.want {
		if _, ok := g.follow[c]; !ok {
			g.follow[c] = false
			g.feed.Follow(c, g.store.Follow(cellstore.Cell(c)))
		}
	}
}

// addAt gives the entity of net id id and generation gen a record, as
// add does for an entity of the World: a gateway's ids are its
// simulation's.
func (rs *records) addAt(id, gen uint32, tag *components.ReplicatedData, n int) *entityRec {
	for int(id) >= len(rs.recs) {
		rs.recs = append(rs.recs, nil)
		rs.ids = append(rs.ids, idRec{})
		for i := range rs.slabs {
			if sl := &rs.slabs[i]; sl.words > 0 {
				sl.mem = append(sl.mem, make([]uint64, sl.words)...)
			}
		}
	}
	rs.ids[id] = idRec{gen: gen}
	r := &entityRec{id: id, gen: gen, comps: make([]compRec, n), cellAt: -1}
	rs.recs[id] = r
	tag.NetID, tag.Gen = id, gen
	return r
}
