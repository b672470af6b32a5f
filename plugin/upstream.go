package plugin

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/coder/websocket"

	"github.com/ebisync/ebisync/internal/cellstore"
	"github.com/ebisync/ebisync/internal/wire"
)

// The gateway's side of remote clients (remote.go): its handshakes join
// the simulation, its clients' requests go up in one envelope per tick,
// and the simulation's answers come back through the Feed
// (Server.FeedReplies) and go into the clients' batches.

// StatusTryAgain closes a client at the handshake when the gateway it
// connected to could not reach its simulation; the client may retry, here
// or at another gateway.
const StatusTryAgain = websocket.StatusTryAgainLater

// joinTimeout bounds a handshake's join at the simulation.
const joinTimeout = 3 * time.Second

// errJoinRefused is a simulation's refusal of a join: it is closed, or
// too many joins wait for its tick.
var errJoinRefused = errors.New("the simulation refused the join")

// newGatewayName returns a gateway's name: random, so that two gateways
// never share one.
func newGatewayName() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return hex.EncodeToString(b[:])
}

// GatewayName returns the name a gateway's simulation addresses it by
// (Relay's gateway argument), "" for a Server that is not a gateway. It
// is safe for concurrent use.
func (s *Server) GatewayName() string {
	if s.gw == nil {
		return ""
	}
	return s.gw.name
}

// forwards reports whether s is a gateway that forwards requests.
func (s *Server) forwards() bool { return s.gw != nil && s.gw.up != nil }

// joinUpstream asks the simulation to admit cn, which sent hello, and
// gives cn its client id and token. It reports whether the session named
// by hello.Resume is resumed: here, when this gateway still keeps it, or
// else from another gateway (cn.resume.elsewhere).
func (s *Server) joinUpstream(ctx context.Context, cn *conn, hello *wire.Hello) (bool, error) {
	w := wire.Writer{}
	w.Byte(remoteVersion)
	w.String(s.gw.name)
	w.Text(cn.identity.User, wire.MaxNameLen)
	w.Text(hello.ClientName, wire.MaxNameLen)
	w.Text(cn.addr, wire.MaxNameLen)
	w.Bool(hello.Resume != nil)
	if r := hello.Resume; r != nil {
		w.Uvarint(r.ClientID)
		w.Raw(r.Token[:])
	}
	ctx, cancel := context.WithTimeout(ctx, joinTimeout)
	defer cancel()
	rep, err := s.gw.up.Join(ctx, w.B)
	if err != nil {
		return false, err
	}
	r := wire.NewReader(rep)
	ver, status := r.Byte(), r.Byte()
	id := r.Uvarint()
	var tok [wire.TokenLen]byte
	copy(tok[:], r.Raw(wire.TokenLen))
	rate := r.Uvarint()
	if err := r.End(); err != nil || ver != remoteVersion || status == joinRefused {
		if status == joinRefused && err == nil {
			return false, errJoinRefused
		}
		return false, fmt.Errorf("the simulation's answer to a join does not decode: %v", errOr(err, fmt.Sprintf("version %d", ver)))
	}
	if rate == 0 || rate > 1000 {
		return false, fmt.Errorf("the simulation's tick rate %d", rate)
	}
	cn.tickRate = rate // the Welcome's: clients' ticks are the simulation's
	var resumed bool
	switch status {
	case joinFresh:
		cn.id, cn.token = id, tok
	case joinResumed:
		if hello.Resume == nil || hello.Resume.ClientID != id {
			return false, errors.New("the simulation resumed a session the client did not name")
		}
		resumed = true
		if !s.claimSession(cn, hello.Resume) {
			cn.id, cn.token = id, tok
			cn.resume = &resumeReq{tick: hello.Resume.Tick, elsewhere: true, interest: hello.Resume.Interest, subs: hello.Resume.Subs}
		} // else this gateway served the session: it resumes here as on any Server
	default:
		return false, errJoinRefused
	}
	s.mu.Lock()
	s.gw.pending[cn.id]++
	s.mu.Unlock()
	return resumed, nil
}

// upJoined is the gateway's side of admit for cn, whose join the
// simulation answered: cn is no longer pending, and when it left before
// the gateway's tick admitted it, the simulation is told, as for any
// departure. Its session stays resumable when the join resumed one, as
// unclaim keeps it here. Game goroutine, with joins taken from s.joins.
func (s *Server) upJoined(cn *conn) {
	s.mu.Lock()
	if n := s.gw.pending[cn.id]; n > 1 {
		s.gw.pending[cn.id] = n - 1
	} else {
		delete(s.gw.pending, cn.id)
	}
	s.mu.Unlock()
	if cn.left.Load() {
		s.upLeave(cn.id, cn.resume != nil)
	}
}

// forward sends one request of c to the simulation. An input is checked
// for its sequence here, as a Server checks it, and forwarded at once:
// the simulation keeps the stream's queue.
func (s *Server) forward(c *client, m *inbound) {
	g := s.gw
	buf := g.msgBuf[:0]
	switch m.kind {
	case wire.KindMutate:
		buf = wire.AppendMutate(buf, &m.mutate)
	case wire.KindControl:
		buf = wire.AppendControl(buf, &m.control)
	case wire.KindMessage:
		s.stats.gameMsgsIn.Add(1)
		buf = wire.AppendMessage(buf, &m.message)
	case wire.KindInput:
		in := &c.inputs
		if in.resync && m.input.Seq > 0 {
			in.resync = false
			in.seq, in.done = m.input.Seq-1, m.input.Seq-1
		}
		switch {
		case m.input.Seq <= in.seq:
			s.stats.inputsDuplicate.Add(1)
			return
		case m.input.Seq != in.seq+1:
			_ = c.cn.violation(refProtocol, StatusProtocolError, fmt.Sprintf("input %d after input %d", m.input.Seq, in.seq))
			return
		}
		in.seq = m.input.Seq
		buf = wire.AppendInput(buf, &m.input)
	default:
		return
	}
	g.msgBuf = buf
	s.upRecord()
	g.upW.Byte(upRequest)
	g.upW.Uvarint(c.cn.id)
	g.upW.Bytes(buf)
}

// upLeave tells the simulation that client id left this gateway, and
// whether its session is kept for a resume.
func (s *Server) upLeave(id uint64, resumable bool) {
	if !s.forwards() {
		return
	}
	s.upRecord()
	s.gw.upW.Byte(upLeave)
	s.gw.upW.Uvarint(id)
	s.gw.upW.Bool(resumable)
}

// upRecord starts the requests envelope if it is empty, and sends it
// first if it is full.
func (s *Server) upRecord() {
	g := s.gw
	if g.upW.Len() >= maxUpEnvelope {
		s.sendUp()
	}
	if g.upW.Len() == 0 {
		g.upW.Byte(remoteVersion)
		g.upW.String(g.name)
		g.upHead = g.upW.Len()
	}
}

// sendUp hands the requests envelope to the Upstream.
func (s *Server) sendUp() {
	g := s.gw
	if g.upW.Len() == 0 {
		s.upRecord()
	}
	g.up.Requests(g.upW.B)
	g.upW.Reset()
	g.lastUp = time.Now()
}

// upward sends this tick's requests envelope, or an empty one when the
// gateway serves clients and has sent nothing for gatewayHeartbeat: the
// simulation takes a silent gateway for dead. Every clientListEvery, the
// envelope carries the client list. Game goroutine, at the end of Tick.
func (s *Server) upward() {
	if !s.forwards() {
		return
	}
	g := s.gw
	now := time.Now()
	if now.Sub(g.listAt) >= clientListEvery {
		s.upClients(now)
	}
	if g.upW.Len() > g.upHead || len(s.clients) > 0 && now.Sub(g.lastUp) >= gatewayHeartbeat {
		s.sendUp()
	}
}

// upClients writes the client list when the gateway has clients (also
// when they are only sessions it keeps, which then make an empty list):
// the id of each client it serves, connected or with its join pending, so
// that the simulation lets go of the clients it no longer serves
// (remote.go's reconcile). A client whose session the gateway keeps for a
// resume is not listed: its leave told the simulation.
func (s *Server) upClients(now time.Time) {
	g := s.gw
	ids := g.listIDs[:0]
	s.mu.Lock()
	for id := range g.pending {
		ids = append(ids, id)
	}
	s.mu.Unlock()
	for _, c := range s.clients {
		if !c.parked {
			ids = append(ids, c.cn.id)
		}
	}
	g.listIDs = ids
	if len(ids) == 0 && len(s.clients) == 0 {
		return
	}
	g.listAt = now
	s.upRecord()
	g.upW.Byte(upClients)
	g.upW.Uvarint(uint64(len(ids)))
	for _, id := range ids {
		g.upW.Uvarint(id)
	}
}

// FeedReplies hands a gateway one relay envelope: its simulation's
// answers to the gateway's clients (Relay's data for GatewayName). It is
// safe for concurrent use; the gateway keeps data and applies it in a
// later Tick, in order with the chunks. A Server that is not a gateway
// ignores it.
func (s *Server) FeedReplies(data []byte) { s.feedMsg(feedMsg{kind: feedReply, data: data}) }

// applyReplies puts one relay envelope's answers into the clients' queues.
// An answer for a client this gateway no longer serves is dropped, as is
// the rest of an envelope that does not decode (with a warning: the
// simulation is a trusted peer, so that is a bug or a version mismatch).
func (s *Server) applyReplies(data []byte) {
	r := wire.NewReader(data)
	if v := r.Byte(); v != remoteVersion {
		s.log.Warn("ebisync: gateway: a relay envelope has an unknown version", "version", v)
		return
	}
	r.Uvarint() // the simulation's tick
	live := func(id uint64) *client {
		if c := s.byID[id]; c != nil && !c.parked && c.cn.ctx.Err() == nil {
			return c
		}
		return nil
	}
	for r.Remaining() > 0 && r.Err() == nil {
		switch op := r.Byte(); op {
		case downResult:
			id, req := r.Uvarint(), r.Uvarint()
			st := wire.Status(r.Byte())
			msg := r.StringMax(wire.MaxErrorLen, "result message")
			if c := live(id); c != nil && r.Err() == nil && int(st) < len(s.stats.mutations) {
				s.result(c, req, st, msg)
			}
		case downControl:
			id := r.Uvarint()
			cr := wire.ControlReply{Request: r.Uvarint(), Result: wire.ControlResult(r.Byte()), ID: r.Uvarint(), Gen: r.Uvarint(), Holder: r.Uvarint()}
			if c := live(id); c != nil && r.Err() == nil {
				c.controls = append(c.controls, cr)
			}
		case downMessage:
			id := r.Uvarint()
			if om := s.relayedMsg(r); om != nil {
				if c := live(id); c != nil {
					s.queueMsg(c, om)
				}
			}
		case downBroadcast:
			if om := s.relayedMsg(r); om != nil {
				for _, c := range s.clients {
					s.queueMsg(c, om)
				}
			}
		case downViewers:
			x := r.Uvarint()
			if om := s.relayedMsg(r); om != nil {
				if rec := s.msgRecord(x); rec != nil {
					for i := range rec.views {
						s.queueMsg(rec.views[i].c, om)
					}
				}
			}
		case downAck:
			id, seq := r.Uvarint(), r.Uvarint()
			if c := live(id); c != nil && r.Err() == nil && seq > c.inputs.done && seq <= c.inputs.seq {
				c.inputs.done = seq
			}
		case downClose:
			id, code := r.Uvarint(), r.Uvarint()
			reason := r.StringMax(wire.MaxErrorLen, "close reason")
			c := s.byID[id]
			switch {
			case c == nil || r.Err() != nil || code > 4999:
			case c.parked:
				s.expire(c) // the session resumed at another gateway: the one kept here is stale
			default:
				c.cn.shutdown(websocket.StatusCode(code), reason)
			}
		default:
			r.Failf(wire.ErrMalformed, "record %d", op)
		}
	}
	if err := r.Err(); err != nil {
		s.log.Warn("ebisync: gateway: a relay envelope does not decode; the rest of it is dropped", "err", err)
	}
}

// relayedMsg reads a relayed message: its type id, encoding and Refs.
func (s *Server) relayedMsg(r *wire.Reader) *outMsg {
	tid := r.Uvarint()
	enc := r.BytesMax(wire.MaxMessageSize, "message")
	n := r.Count(wire.MaxItems, 1, "references")
	var refs []uint64
	for range n {
		refs = append(refs, r.Uvarint())
	}
	if r.Err() != nil {
		return nil
	}
	if tid >= uint64(len(s.msgCodecs)) {
		r.Failf(wire.ErrMalformed, "message type id %d", tid)
		return nil
	}
	slices.Sort(refs)
	return &outMsg{c: s.msgCodecs[tid], enc: slices.Clone(enc), fixed: true, refs: slices.Compact(refs)}
}

// resumeElsewhere starts client c, whose session another gateway served,
// from what its Hello remembers: its interest and subscriptions. Its
// first batch waits (up to a second) for the cells its interest covers,
// then keeps every entity in its scope (keepScope) and carries their
// spawns, which the client applies in place to the entities it holds.
// Its input stream goes on where the client is.
func (s *Server) resumeElsewhere(c *client, r *resumeReq) {
	c.resuming, c.keepAll = true, true
	c.holdUntil = time.Now().Add(time.Second)
	c.inputs.resync = true
	if r.interest != nil {
		s.setInterest(c, r.interest)
	}
	if len(r.subs) > 0 {
		s.subscribe(c, r.subs, true)
	}
	s.log.Debug("ebisync: session resumed from another gateway", "client", c.cn.id, "remote", c.cn.addr)
}

// keepScope returns the entities in c's scope, in id order, and marks
// their views kept: the client may hold them, so one that leaves the
// scope before its spawn is sent still gets its exit.
func (s *Server) keepScope(c *client) []uint64 {
	keep := c.keep[:0]
	c.eachMember(func(id uint32) {
		if r := s.recs[id]; r != nil {
			if i := r.viewIndex(c); i >= 0 {
				r.views[i].kept = true
				keep = append(keep, uint64(id))
			}
		}
	})
	c.keepAll = false
	return keep
}

// cellsReady reports whether a gateway holds the state of every cell c's
// interest covers.
func (s *Server) cellsReady(c *client) bool {
	g := s.gw
	if g == nil {
		return true
	}
	if _, ready := g.store.Following(cellstore.Cell{Global: true}); !ready {
		return false
	}
	r := c.leaveR
	if !(r > 0) {
		r = s.opts.MaxRadius * s.opts.Hysteresis
	}
	x0, x1 := cellCoord((c.cx-r)*g.inv), cellCoord((c.cx+r)*g.inv)
	y0, y1 := cellCoord((c.cy-r)*g.inv), cellCoord((c.cy+r)*g.inv)
	for x := x0; x <= x1; x++ {
		for y := y0; y <= y1; y++ {
			if _, ready := g.store.Following(cellstore.Cell{X: x, Y: y}); !ready {
				return false
			}
		}
	}
	return true
}

// visibleTick is the tick clients see now: the Server's own, or for a
// gateway the simulation's last tick applied, so that every gateway of a
// world numbers its clients' ticks alike.
func (s *Server) visibleTick() uint64 {
	if s.gw != nil {
		return s.gw.simTick
	}
	return uint64(s.tick)
}

// visSpan is how many changes of the visible tick a gateway remembers the
// first tick of, for the resumes of its own sessions (internalTick).
const visSpan = 1024

// noteVisible publishes the visible tick, and a gateway remembers the
// first of its own ticks that showed it.
func (s *Server) noteVisible() {
	v := s.visibleTick()
	s.visTick.Store(v)
	g := s.gw
	if g == nil {
		return
	}
	if n := len(g.visAt); n == 0 || g.visAt[(g.visNext+visSpan-1)%visSpan].vis != v {
		if n < visSpan {
			g.visAt = append(g.visAt, visMark{})
		}
		g.visAt[g.visNext] = visMark{vis: v, tick: s.tick}
		g.visNext = (g.visNext + 1) % visSpan
	}
}

// visMark is the first tick of a gateway that showed visible tick vis.
type visMark struct {
	vis  uint64
	tick uint32
}

// internalTick maps a tick a client saw (a resume's claim) to the
// Server's own: the same on a Server of a World; on a gateway, the first
// of its ticks that showed it, or 0 when that is too old to know. Either
// errs on the side of sending the client more.
func (s *Server) internalTick(vis uint64) uint32 {
	g := s.gw
	if g == nil {
		return uint32(min(vis, uint64(s.tick)))
	}
	for _, m := range g.visAt {
		if m.vis == vis {
			return m.tick
		}
	}
	return 0
}
