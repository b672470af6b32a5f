package plugin

import (
	"context"
	"crypto/subtle"
	"slices"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/ebisync/ebisync/internal/wire"
)

// Remote clients. A gateway (NewGateway) whose Feed is also an Upstream
// forwards its clients' mutations, control requests, messages and inputs
// to the simulation, and the simulation's answers come back to it. The
// simulation keeps, for each client a gateway serves (a remote client),
// what answering needs: its id, identity and session token, its control
// holds, its input stream, and the results, control replies, messages and
// input acknowledgements on their way back. A remote client has no scope
// on the simulation: its gateway runs that.
//
// The transport carries three kinds of payload, each encoded by the
// Server (docs/PROTOCOL.md §13):
//
//   - a join: the gateway's handshake asks the simulation for a client id
//     and token, or to resume a session (Server.RemoteJoin answers);
//   - a requests envelope: one gateway tick's requests and departures,
//     which also tells the simulation that the gateway is alive
//     (Server.RemoteRequests takes it);
//   - a relay envelope: one simulation tick's answers for one gateway's
//     clients (Relay hands it out; Server.FeedReplies takes it in).
//
// Sessions of remote clients live on the simulation, so a client whose
// gateway died resumes at any other gateway of the world within
// Options.ResumeWindow: same client id, ownership, controls and input
// stream.

// A Relay is a Publisher that also carries the simulation's answers to
// the gateways that serve its remote clients. The Server calls Relay on
// the game goroutine at the end of Tick, after the tick's chunks and
// TickEnd, once for each gateway with something to answer; data is valid
// only during the call, and Relay must not block. Package plugin/natsync's
// Publisher is one.
type Relay interface {
	Relay(gateway string, data []byte)
}

// An Upstream carries a gateway's clients to its simulation. NewGateway
// uses its Feed as the Upstream when the Feed implements it; without one,
// a gateway forwards nothing and refuses every request (Forbidden).
//
// Join runs on the goroutine of a client's handshake: it hands req to the
// simulation's Server.RemoteJoin and returns its answer, and returns an
// error when ctx ends first. Requests runs on the gateway's game
// goroutine during Tick: it hands data to the simulation's
// Server.RemoteRequests, without blocking; data is valid only during the
// call.
type Upstream interface {
	Join(ctx context.Context, req []byte) ([]byte, error)
	Requests(data []byte)
}

// Payload versions and records (docs/PROTOCOL.md §13).
const (
	remoteVersion = 1

	upRequest byte = 1 // client id, a client message (kind and body)
	upLeave   byte = 2 // client id, resumable
	upClients byte = 3 // count, client ids

	downResult    byte = 1 // client id, request, status, message
	downControl   byte = 2 // client id, request, result, entity id, gen, holder
	downMessage   byte = 3 // client id, message
	downBroadcast byte = 4 // message
	downViewers   byte = 5 // entity Ref, message
	downAck       byte = 6 // client id, input sequence
	downClose     byte = 7 // client id, close code, reason

	joinFresh   byte = 0
	joinResumed byte = 1
	joinRefused byte = 2
)

// Remote limits.
const (
	// maxGatewayName bounds a gateway's name in a payload.
	maxGatewayName = 64
	// maxRemoteQueueBytes bounds the requests envelopes a simulation
	// keeps between two ticks; beyond it, envelopes are dropped (and
	// their requests never answered) until the next tick.
	maxRemoteQueueBytes = 32 << 20
	// maxRemoteJoins bounds the joins waiting for a tick.
	maxRemoteJoins = 4096
	// maxUpEnvelope is the size past which a gateway sends its requests
	// envelope before the end of its tick, and maxRelayEnvelope the size
	// past which a simulation starts another relay envelope for a gateway:
	// both well under NATS's default 1 MiB payload. A single record
	// larger than the transport carries (a game message near
	// wire.MaxMessageSize) is lost with its envelope.
	maxUpEnvelope    = 256 << 10
	maxRelayEnvelope = 256 << 10
	// gatewayHeartbeat is the longest a gateway with clients waits
	// between two requests envelopes.
	gatewayHeartbeat = 500 * time.Millisecond
	// clientListEvery is how often a gateway with clients sends its
	// client list, and listGrace how long after joining a gateway a
	// client may be missing from its lists: its join's reply may still
	// be on its way (joinTimeout), and the list that misses it may have
	// left before the join did.
	clientListEvery = time.Second
	listGrace       = joinTimeout + 2*clientListEvery
)

// remoteSide is a simulation's state of its remote clients.
type remoteSide struct {
	// Game goroutine.
	gws    map[string]*remoteGW
	parked []*client // remote clients whose gateway let them go resumably
	// touched are the remote clients this tick's relay looks at: those
	// that sent a request or were queued a message this tick, and those
	// with inputs waiting from an earlier tick. The others cost the tick
	// nothing. client.touched marks them.
	touched []*client
	refs    []uint64            // appendRelayMsg's scratch
	listed  map[uint64]struct{} // reconcile's scratch: a gateway's client list
	// overflowLogged is the overflow count last logged.
	overflowLogged uint64

	// Under mu: what RemoteJoin and RemoteRequests leave for the tick,
	// and the sessions they check.
	mu       sync.Mutex
	sessions map[uint64]*remoteSession
	joins    []remoteJoin
	inq      [][]byte
	inBytes  int
	overflow uint64 // envelopes dropped for maxRemoteQueueBytes
}

// remoteGW is one gateway as the simulation knows it.
type remoteGW struct {
	w       wire.Writer // this tick's relay envelope
	name    string
	heard   time.Time
	clients map[uint64]*client
	bcast   []*outMsg
	viewers []viewerMsg
	closes  []remoteClose // clients moved away whose old connection the gateway closes
}

type viewerMsg struct {
	ref uint64
	m   *outMsg
}

type remoteClose struct {
	id     uint64
	code   websocket.StatusCode
	reason string
}

// remoteSession is the resumable side of a remote client.
type remoteSession struct {
	token    [wire.TokenLen]byte
	user     string
	parkedAt time.Time // zero while a gateway serves it
}

// remoteJoin is an admitted join waiting for the tick.
type remoteJoin struct {
	gw      string
	info    ClientInfo
	resumed bool
	after   int // the requests envelopes that arrived before it
}

func (rm *remoteSide) init() {
	rm.gws = map[string]*remoteGW{}
	rm.sessions = map[uint64]*remoteSession{}
	rm.listed = map[uint64]struct{}{}
}

// RemoteJoin answers a gateway's join: the handshake of a client the
// gateway admitted (Upstream.Join carries req here and the answer back).
// A join that names a session this simulation keeps, with its token and
// the same Identity.User, within Options.ResumeWindow, resumes it; any
// other gets a fresh client id and token. The client takes part from the
// next Tick: Options.OnConnect (or OnResume) runs then. A join that does
// not decode, or that reaches a closed Server, is refused. It is safe for
// concurrent use.
func (s *Server) RemoteJoin(req []byte) []byte {
	r := wire.NewReader(req)
	ver := r.Byte()
	gw := r.StringMax(maxGatewayName, "gateway")
	info := ClientInfo{Identity: Identity{User: r.TextMax(wire.MaxNameLen, "user")}}
	info.Name = r.TextMax(wire.MaxNameLen, "client name")
	info.Addr = r.TextMax(wire.MaxNameLen, "address")
	info.Gateway = gw
	var resume bool
	var tok [wire.TokenLen]byte
	if r.Bool() {
		resume = true
		info.ID = r.Uvarint()
		copy(tok[:], r.Raw(wire.TokenLen))
	}
	if r.End() != nil || ver != remoteVersion || gw == "" {
		return s.joinReply(joinRefused, 0, tok)
	}
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	rm := &s.remote
	rm.mu.Lock()
	defer rm.mu.Unlock()
	if closed || len(rm.joins) >= maxRemoteJoins {
		return s.joinReply(joinRefused, 0, tok)
	}
	if resume && s.opts.ResumeWindow >= 0 {
		ss := rm.sessions[info.ID]
		if ss != nil && subtle.ConstantTimeCompare(ss.token[:], tok[:]) == 1 && ss.user == info.Identity.User &&
			(ss.parkedAt.IsZero() || time.Since(ss.parkedAt) <= s.opts.ResumeWindow) {
			ss.parkedAt = time.Time{}
			rm.joins = append(rm.joins, remoteJoin{gw: gw, info: info, resumed: true, after: len(rm.inq)})
			return s.joinReply(joinResumed, info.ID, ss.token)
		}
		s.stats.resumeRefused.Add(1)
	}
	info.ID = s.nextID.Add(1)
	tok = newToken()
	rm.sessions[info.ID] = &remoteSession{token: tok, user: info.Identity.User}
	rm.joins = append(rm.joins, remoteJoin{gw: gw, info: info, after: len(rm.inq)})
	return s.joinReply(joinFresh, info.ID, tok)
}

// joinReply encodes the answer to a join: the status, the client's id and
// token, and the simulation's tick rate, which the gateway's Welcome gives
// its client.
func (s *Server) joinReply(status byte, id uint64, tok [wire.TokenLen]byte) []byte {
	w := wire.Writer{}
	w.Byte(remoteVersion)
	w.Byte(status)
	w.Uvarint(id)
	w.Raw(tok[:])
	w.Uvarint(uint64(s.opts.TickRate))
	return w.B
}

// RemoteRequests hands the simulation one requests envelope from a
// gateway (Upstream.Requests carries it here). The Server keeps data and
// applies it in its next Tick: each request as if the client had sent it
// on a connection of its own, answered through the Relay. Envelopes past
// 32 MiB waiting for one tick are dropped. It is safe for concurrent use.
func (s *Server) RemoteRequests(data []byte) {
	rm := &s.remote
	rm.mu.Lock()
	defer rm.mu.Unlock()
	if rm.inBytes+len(data) > maxRemoteQueueBytes {
		rm.overflow++
		return
	}
	rm.inq = append(rm.inq, data)
	rm.inBytes += len(data)
}

// applyRemote admits the joins and applies the requests envelopes that
// arrived since the last tick, in the order they arrived, ends the remote
// clients of gateways gone silent, and ends the parked sessions whose
// window passed. Game goroutine.
func (s *Server) applyRemote() {
	rm := &s.remote
	rm.mu.Lock()
	joins, inq := rm.joins, rm.inq
	rm.joins, rm.inq, rm.inBytes = nil, nil, 0
	overflow := rm.overflow
	rm.mu.Unlock()
	if overflow > rm.overflowLogged {
		s.log.Warn("ebisync: requests envelopes from gateways were dropped: more than 32 MiB waited for one tick", "dropped", overflow-rm.overflowLogged)
		rm.overflowLogged = overflow
	}
	if len(joins) == 0 && len(inq) == 0 && len(rm.gws) == 0 && len(rm.parked) == 0 {
		return
	}
	now := time.Now()
	for _, c := range rm.touched {
		s.startInputs(c) // inputs left waiting by earlier ticks go first (input.go)
	}
	// A client's leave and its join at the same gateway right after
	// apply in that order, and the reverse.
	next := 0
	for i, data := range inq {
		for ; next < len(joins) && joins[next].after <= i; next++ {
			s.admitRemote(joins[next], now)
		}
		s.applyEnvelope(data, now)
	}
	for _, j := range joins[next:] {
		s.admitRemote(j, now)
	}
	for name, g := range rm.gws {
		if now.Sub(g.heard) > s.opts.GatewayTimeout {
			s.log.Warn("ebisync: a gateway went silent; its clients' sessions are kept for a resume elsewhere", "gateway", name, "clients", len(g.clients), "silent", now.Sub(g.heard).Round(time.Millisecond))
			for _, c := range g.clients {
				s.parkRemote(c, now)
			}
			delete(rm.gws, name)
		}
	}
	// A parked remote session ends when its window passes. They are not
	// bounded by MaxResumable: a gateway that dies parks all its clients
	// at once, and a parked remote client holds no scope.
	for i := 0; i < len(rm.parked); {
		c := rm.parked[i]
		if now.Sub(c.parkedAt) <= s.opts.ResumeWindow || !s.endRemoteSession(c.cn.id, true) {
			i++
			continue
		}
		rm.parked = slices.Delete(rm.parked, i, i+1)
		c.parked = false
		s.log.Debug("ebisync: remote session ended without a resume", "client", c.cn.id)
		s.dropRemote(c)
	}
}

// gateway returns the gateway named name, known from now on. A gateway
// heard from again after it was taken for dead (a stall, a partition)
// serves its parked clients again.
func (s *Server) gateway(name string, now time.Time) *remoteGW {
	rm := &s.remote
	g := rm.gws[name]
	if g == nil {
		g = &remoteGW{name: name, clients: map[uint64]*client{}}
		rm.gws[name] = g
		for _, c := range slices.Clone(rm.parked) {
			if old := c.cn.remote; old != nil && old.name == name {
				c.cn.remote = g
				s.unparkRemote(c)
			}
		}
	}
	g.heard = now
	return g
}

// admitRemote makes the client of join j a remote client of its gateway.
func (s *Server) admitRemote(j remoteJoin, now time.Time) {
	rm := &s.remote
	g := s.gateway(j.gw, now)
	if c := s.byID[j.info.ID]; c != nil && j.resumed && c.cn.remote != nil {
		// The session moves to g: from a gateway that let it go, from
		// one gone silent, or from one that still thinks it serves it.
		if old := c.cn.remote; old != g {
			if old.clients[j.info.ID] == c {
				delete(old.clients, j.info.ID)
			}
			if rm.gws[old.name] == old {
				// The old gateway closes the connection it still has, or
				// ends the session it keeps for a resume there.
				old.closes = append(old.closes, remoteClose{id: j.info.ID, code: statusGoingAway, reason: "session resumed at another gateway"})
			}
		}
		if c.parked {
			if i := slices.Index(rm.parked, c); i >= 0 {
				rm.parked = slices.Delete(rm.parked, i, i+1)
			}
			c.parked = false
		}
		rm.mu.Lock()
		if ss := rm.sessions[j.info.ID]; ss != nil {
			ss.parkedAt = time.Time{} // a leave applied since the join parked it again
		}
		rm.mu.Unlock()
		c.cn.remote, c.cn.joinedAt = g, now
		c.cn.addr, c.cn.name = j.info.Addr, j.info.Name
		g.clients[j.info.ID] = c
		s.stats.resumes.Add(1)
		if s.opts.OnResume != nil {
			s.opts.OnResume(c.info())
		}
		return
	}
	cn := &conn{s: s, id: j.info.ID, name: j.info.Name, addr: j.info.Addr, identity: j.info.Identity, remote: g, joinedAt: now}
	cn.ctx, cn.cancel = context.WithCancel(context.Background())
	c := newClient(s, cn)
	if j.resumed {
		// The session ended between the join and now (a gateway's late
		// departure): the client keeps its id and starts afresh here,
		// its input stream going on.
		c.inputs.resync = true
	}
	s.byID[cn.id] = c
	g.clients[cn.id] = c
	s.stats.connects.Add(1)
	if s.opts.OnConnect != nil {
		s.opts.OnConnect(c.info())
	}
}

// applyEnvelope applies one requests envelope. A record that does not
// decode ends the envelope, with a warning: gateways are trusted peers,
// so that is a bug or a version mismatch, not an attack.
func (s *Server) applyEnvelope(data []byte, now time.Time) {
	r := wire.NewReader(data)
	if v := r.Byte(); v != remoteVersion {
		s.log.Warn("ebisync: a gateway's requests envelope has an unknown version", "version", v)
		return
	}
	name := r.StringMax(maxGatewayName, "gateway")
	if r.Err() != nil || name == "" {
		s.log.Warn("ebisync: a gateway's requests envelope does not decode", "err", r.Err())
		return
	}
	g := s.gateway(name, now)
	for r.Remaining() > 0 && r.Err() == nil {
		switch op := r.Byte(); op {
		case upRequest:
			id := r.Uvarint()
			msg := r.BytesMax(wire.MaxMessageSize, "request") // the gateway's ReadLimit bounded it
			if r.Err() != nil {
				break
			}
			c := s.byID[id]
			if c == nil || c.cn.remote != g {
				// The session ended, moved to another gateway, or was
				// never this simulation's (it restarted): the gateway
				// closes the connection, and the client starts again.
				g.closes = append(g.closes, remoteClose{id: id, code: statusGoingAway, reason: "the simulation holds no session for this client here"})
				continue
			}
			if c.parked {
				s.unparkRemote(c) // the gateway that let it go serves it again
			}
			s.applyRemoteRequest(c, msg)
		case upLeave:
			id := r.Uvarint()
			resumable := r.Bool()
			if r.Err() != nil {
				break
			}
			c := s.byID[id]
			if c == nil || c.cn.remote != g {
				continue // ended, or moved to another gateway
			}
			switch {
			case resumable && s.opts.ResumeWindow >= 0:
				s.parkRemote(c, now)
			default:
				if c.parked {
					rm := &s.remote
					if i := slices.Index(rm.parked, c); i >= 0 {
						rm.parked = slices.Delete(rm.parked, i, i+1)
					}
					c.parked = false
				}
				s.endRemoteSession(id, false)
				s.dropRemote(c)
			}
		case upClients:
			n := r.Uvarint()
			if n > uint64(r.Remaining()) {
				r.Failf(wire.ErrMalformed, "a client list of %d ids in %d bytes", n, r.Remaining())
				break
			}
			clear(s.remote.listed)
			for range n {
				s.remote.listed[r.Uvarint()] = struct{}{}
			}
			if r.Err() == nil {
				s.reconcile(g, now)
			}
		default:
			r.Failf(wire.ErrMalformed, "record %d", op)
		}
	}
	if err := r.Err(); err != nil {
		s.log.Warn("ebisync: a gateway's requests envelope does not decode; the rest of it is dropped", "gateway", name, "err", err)
	}
}

// reconcile applies gateway g's client list (rm.listed). A client of g
// that g does not list, and that joined g more than listGrace ago, is let
// go as by a leave with resumable 1: its connection ended without the
// gateway saying so (its join's answer came too late for the handshake,
// or the gateway lost its leave). A client of g that g let go and lists
// is served again.
func (s *Server) reconcile(g *remoteGW, now time.Time) {
	rm := &s.remote
	for id, c := range g.clients {
		if _, ok := rm.listed[id]; !ok && now.Sub(c.cn.joinedAt) > listGrace {
			s.log.Debug("ebisync: a gateway no longer lists a client", "gateway", g.name, "client", id)
			if s.opts.ResumeWindow >= 0 {
				s.parkRemote(c, now)
			} else {
				s.endRemoteSession(id, false)
				s.dropRemote(c)
			}
		}
	}
	for i := len(rm.parked) - 1; i >= 0; i-- {
		c := rm.parked[i]
		if _, ok := rm.listed[c.cn.id]; ok && c.cn.remote == g {
			s.unparkRemote(c)
		}
	}
}

// applyRemoteRequest decodes one forwarded client message and applies it
// as applyOne does for a client's own connection. Values are copied: an
// input may wait for a later tick.
func (s *Server) applyRemoteRequest(c *client, msg []byte) {
	if len(msg) == 0 {
		return
	}
	var m inbound
	m.kind = wire.Kind(msg[0])
	body := msg[1:]
	var err error
	switch m.kind {
	case wire.KindMutate:
		m.mutate, err = wire.DecodeMutate(body)
		m.mutate.Value = slices.Clone(m.mutate.Value)
	case wire.KindControl:
		m.control, err = wire.DecodeControl(body)
	case wire.KindMessage:
		m.message, err = wire.DecodeMessage(body)
		m.message.Value = slices.Clone(m.message.Value)
	case wire.KindInput:
		m.input, err = wire.DecodeInput(body)
		m.input.Value = slices.Clone(m.input.Value)
	default:
		s.log.Debug("ebisync: a gateway forwarded a message that is not a request", "client", c.cn.id, "kind", m.kind)
		return
	}
	if err != nil {
		s.log.Debug("ebisync: a forwarded request does not decode", "client", c.cn.id, "err", err)
		return
	}
	if !c.touched {
		c.inputs.n = 0 // the client's first request this tick (startInputs did not run for it)
	}
	s.remote.touch(c)
	s.applyOne(c, &m)
}

// touch lists remote client c for this tick's relay.
func (rm *remoteSide) touch(c *client) {
	if !c.touched {
		c.touched = true
		rm.touched = append(rm.touched, c)
	}
}

// parkRemote keeps c's session for a resume at any gateway.
func (s *Server) parkRemote(c *client, now time.Time) {
	if g := c.cn.remote; g != nil && g.clients[c.cn.id] == c {
		delete(g.clients, c.cn.id)
	}
	if c.parked {
		return
	}
	rm := &s.remote
	rm.mu.Lock()
	if ss := rm.sessions[c.cn.id]; ss != nil {
		ss.parkedAt = now
	}
	rm.mu.Unlock()
	c.parked, c.parkedAt = true, now
	c.results, c.controls = c.results[:0], c.controls[:0]
	clear(c.msgs)
	c.msgs, c.msgBytes = c.msgs[:0], 0
	rm.parked = append(rm.parked, c)
}

// unparkRemote serves parked c again at the gateway that parked it.
func (s *Server) unparkRemote(c *client) {
	rm := &s.remote
	if i := slices.Index(rm.parked, c); i >= 0 {
		rm.parked = slices.Delete(rm.parked, i, i+1)
	}
	c.parked = false
	rm.mu.Lock()
	if ss := rm.sessions[c.cn.id]; ss != nil {
		ss.parkedAt = time.Time{}
	}
	rm.mu.Unlock()
	c.cn.remote.clients[c.cn.id] = c
}

// endRemoteSession forgets the session of remote client id and reports
// true, unless onlyParked is set and a join claimed the session since it
// was parked.
func (s *Server) endRemoteSession(id uint64, onlyParked bool) bool {
	rm := &s.remote
	rm.mu.Lock()
	defer rm.mu.Unlock()
	if ss := rm.sessions[id]; ss != nil && onlyParked && ss.parkedAt.IsZero() {
		return false
	}
	delete(rm.sessions, id)
	return true
}

// dropRemote ends remote client c: its holds are released and
// OnDisconnect runs.
func (s *Server) dropRemote(c *client) {
	if g := c.cn.remote; g != nil && g.clients[c.cn.id] == c {
		delete(g.clients, c.cn.id)
	}
	c.cn.cancel()
	s.dropClient(c)
}

// relay hands each gateway the answers of this tick for its clients: the
// results, control replies, messages, input acknowledgements and closes.
// Game goroutine, after publish.
func (s *Server) relay() {
	rm := &s.remote
	if len(rm.gws) == 0 {
		if len(rm.parked) > 0 || s.stats.remote[0].Load() != 0 {
			s.stats.remote[0].Store(0)
			s.stats.remote[1].Store(0)
			s.stats.remote[2].Store(int64(len(rm.parked)))
		}
		return
	}
	rl, _ := s.opts.Publish.(Relay)
	n := 0
	for _, g := range rm.gws {
		g.w.Reset()
		n += len(g.clients)
	}
	s.stats.remote[0].Store(int64(len(rm.gws)))
	s.stats.remote[1].Store(int64(n))
	s.stats.remote[2].Store(int64(len(rm.parked)))
	// The touched clients' answers, each into its gateway's envelope.
	keep := rm.touched[:0]
	for _, c := range rm.touched {
		c.touched = false
		g := c.cn.remote
		if s.byID[c.cn.id] != c || c.parked || g == nil || rm.gws[g.name] != g || g.clients[c.cn.id] != c {
			continue // ended, parked, or its gateway forgotten since it was touched
		}
		w := s.relayWriter(rl, g)
		id := c.cn.id
		if c.cn.ctx.Err() != nil {
			// The simulation ended the client (a violation of the input
			// stream, a message queue overflow): its gateway closes the
			// connection.
			w.Byte(downClose)
			w.Uvarint(id)
			w.Uvarint(uint64(c.cn.endCode.Load()))
			w.String(truncate(c.cn.endReason, 120))
			delete(g.clients, id)
			s.endRemoteSession(id, false)
			s.dropClient(c)
			continue
		}
		s.relayClient(w, c)
		if len(c.inputs.waiting) > 0 {
			c.touched = true // its waiting inputs go first next tick
			keep = append(keep, c)
		}
	}
	clear(rm.touched[len(keep):])
	rm.touched = keep
	for _, g := range rm.gws {
		for _, om := range g.bcast {
			w := s.relayWriter(rl, g)
			w.Byte(downBroadcast)
			s.appendRelayMsg(w, om)
		}
		clear(g.bcast)
		g.bcast = g.bcast[:0]
		for _, vm := range g.viewers {
			w := s.relayWriter(rl, g)
			w.Byte(downViewers)
			w.Uvarint(vm.ref)
			s.appendRelayMsg(w, vm.m)
		}
		clear(g.viewers)
		g.viewers = g.viewers[:0]
		for _, cl := range g.closes {
			w := s.relayWriter(rl, g)
			w.Byte(downClose)
			w.Uvarint(cl.id)
			w.Uvarint(uint64(cl.code))
			w.Text(cl.reason, 120)
		}
		clear(g.closes)
		g.closes = g.closes[:0]
		w := &g.w
		if w.Len() > 0 && rl != nil {
			rl.Relay(g.name, w.B)
		}
	}
}

// relayWriter returns g's relay envelope of this tick, started; one past
// maxRelayEnvelope is handed to rl first, and a new one started, so that
// no envelope outgrows what the transport carries.
func (s *Server) relayWriter(rl Relay, g *remoteGW) *wire.Writer {
	if g.w.Len() >= maxRelayEnvelope {
		if rl != nil {
			rl.Relay(g.name, g.w.B)
		}
		g.w.Reset()
	}
	if g.w.Len() == 0 {
		g.w.Byte(remoteVersion)
		g.w.Uvarint(uint64(s.tick))
	}
	return &g.w
}

// relayClient writes remote client c's answers of this tick into w.
func (s *Server) relayClient(w *wire.Writer, c *client) {
	id := c.cn.id
	for _, r := range c.results {
		w.Byte(downResult)
		w.Uvarint(id)
		w.Uvarint(r.Request)
		w.Byte(byte(r.Status))
		w.Text(r.Message, wire.MaxErrorLen)
	}
	c.results = c.results[:0]
	for _, cr := range c.controls {
		w.Byte(downControl)
		w.Uvarint(id)
		w.Uvarint(cr.Request)
		w.Byte(byte(cr.Result))
		w.Uvarint(cr.ID)
		w.Uvarint(cr.Gen)
		w.Uvarint(cr.Holder)
	}
	c.controls = c.controls[:0]
	for _, q := range c.msgs {
		w.Byte(downMessage)
		w.Uvarint(id)
		s.appendRelayMsg(w, q.m)
	}
	clear(c.msgs)
	c.msgs, c.msgBytes = c.msgs[:0], 0
	if in := &c.inputs; in.done != in.acked {
		w.Byte(downAck)
		w.Uvarint(id)
		w.Uvarint(in.done)
		in.acked = in.done
	}
}

// appendRelayMsg writes message om: its type id, its encoding as of this
// tick, and the Refs of the replicated entities it names.
func (s *Server) appendRelayMsg(w *wire.Writer, om *outMsg) {
	w.Uvarint(uint64(om.c.Index()))
	w.Bytes(s.encoded(om))
	refs := s.remote.refs[:0]
	for _, e := range om.refs {
		if ref := s.refOfEntity(e); ref != 0 {
			refs = append(refs, ref)
		}
	}
	s.remote.refs = refs
	w.Uvarint(uint64(len(refs)))
	for _, ref := range refs {
		w.Uvarint(ref)
	}
}
