package plugin

import (
	"crypto/rand"
	"crypto/subtle"
	"slices"
	"time"

	"github.com/coder/websocket"

	"github.com/ebisync/ebisync/internal/wire"
)

// A session outlives its connection for Options.ResumeWindow. The tick
// keeps a departed client's state (its scope, subscriptions, controls and
// input sequence) and goes on updating its scope as the world changes,
// sending it nothing. A client that reconnects with the session's token
// gets the same client id and state; its first batch lists the entities it
// keeps (wire.Batch.Keep) and carries only what changed since the last
// batch it applied.
//
// The sessions map, guarded by Server.mu, is what a handshake (on its
// connection's goroutine) checks a token against and claims; the client
// state itself belongs to the tick. A session is live (conn set, the tick
// serves it), claimed (conn set to a connection still joining), or parked
// (conn nil, the tick keeps it until its deadline).

// session is the resumable side of one client.
type session struct {
	token    [wire.TokenLen]byte
	user     string    // Identity.User at the handshake that made it
	conn     *conn     // the connection that serves or is about to serve it; nil while parked
	parkedAt time.Time // when it was last parked
}

// resumeReq is what a handshake that claimed a session tells the tick.
type resumeReq struct {
	tick uint64 // the server tick of the last batch the client applied
	// elsewhere: a gateway resumes a session another gateway served
	// (upstream.go). It holds none of its state: the scope starts from
	// the client's interest and subscriptions, as its Hello gave them.
	elsewhere bool
	interest  *wire.Interest
	subs      []wire.Sub
}

// mayResume reports whether a connection whose reader ended with err
// leaves a session to resume: it does, unless the client said goodbye
// (close 1000), gave up its mirror (close 4000: it comes back for a fresh
// session), or the server dropped it for what it sent. A vanished peer, a
// write that timed out (a stalled network looks the same) and a session
// taken over by a newer connection keep it.
func (cn *conn) mayResume(err error) bool {
	switch code := websocket.StatusCode(cn.endCode.Load()); code {
	case 0:
		// The server did not close first: the peer closed, or vanished.
		peer := websocket.CloseStatus(err)
		return peer != websocket.StatusNormalClosure && peer != StatusProtocolError && !isReadLimit(err)
	case StatusProtocolError, StatusSchema, StatusAbuse, StatusInternal, websocket.StatusMessageTooBig:
		return false
	}
	return true
}

// newToken returns an unguessable token.
func newToken() [wire.TokenLen]byte {
	var t [wire.TokenLen]byte
	_, _ = rand.Read(t[:]) // crypto/rand.Read never fails
	return t
}

// claimSession is called by a handshake that asks to resume r: it gives cn
// the session's id and reports true when the token is the session's, the
// identity is the one that made it, and the session is live or parked
// within the window. A live session's old connection is closed: the token
// proves the new one is the same client. Anything else leaves cn a fresh
// session; refused counts why.
func (s *Server) claimSession(cn *conn, r *wire.Resume) bool {
	if s.opts.ResumeWindow < 0 {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ss := s.sessions[r.ClientID]
	switch {
	case ss == nil, subtle.ConstantTimeCompare(ss.token[:], r.Token[:]) != 1:
		s.stats.resumeRefused.Add(1)
		return false
	case ss.user != cn.identity.User:
		s.stats.resumeRefused.Add(1)
		return false
	case ss.conn == nil && time.Since(ss.parkedAt) > s.opts.ResumeWindow:
		s.stats.resumeRefused.Add(1)
		return false
	}
	if old := ss.conn; old != nil {
		old.shutdown(statusGoingAway, "session resumed on another connection")
	}
	ss.conn = cn
	cn.id = r.ClientID
	cn.token = ss.token
	cn.resume = &resumeReq{tick: r.Tick}
	return true
}

// unclaim parks again a session that cn claimed but never served (its
// handshake failed, or it left before the tick admitted it).
func (s *Server) unclaim(cn *conn) {
	if cn.resume == nil {
		return
	}
	s.mu.Lock()
	if ss := s.sessions[cn.id]; ss != nil && ss.conn == cn {
		ss.conn = nil
		if ss.parkedAt.IsZero() {
			ss.parkedAt = time.Now() // it was live: the claim closed its connection
		}
	}
	s.mu.Unlock()
}

// holdsClaim reports whether cn still holds the claim on its session, and
// marks the session live (its window counts from its next departure).
func (s *Server) holdsClaim(cn *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss := s.sessions[cn.id]
	if ss == nil || ss.conn != cn {
		return ss == nil // ended meanwhile: cn joins afresh under the claimed id
	}
	ss.parkedAt = time.Time{}
	return true
}

// joinSession records the session of a client that joined fresh.
func (s *Server) joinSession(cn *conn) {
	if s.opts.ResumeWindow < 0 {
		return
	}
	s.mu.Lock()
	s.sessions[cn.id] = &session{token: cn.token, user: cn.identity.User, conn: cn}
	s.mu.Unlock()
}

// leaveOrPark handles a client whose connection cn ended: it is parked
// when its session may be resumed, else dropped. Game goroutine.
func (s *Server) leaveOrPark(c *client, cn *conn) {
	s.mu.Lock()
	ss := s.sessions[cn.id]
	claimed := ss != nil && ss.conn != nil && ss.conn != cn // a newer connection holds the token: it joins next
	closed := s.closed
	keep := ss != nil && !closed && (cn.resumable || claimed)
	if keep && !claimed {
		ss.conn = nil
		ss.parkedAt = time.Now()
	}
	if !keep {
		delete(s.sessions, cn.id)
	}
	s.mu.Unlock()
	if !claimed {
		// A gateway's simulation keeps or ends the session too
		// (upstream.go); a gateway shutting down leaves its clients'
		// sessions to resume at another.
		s.upLeave(cn.id, keep || closed && cn.resumable)
	}
	if !keep {
		s.dropClient(c)
		return
	}
	c.parked = true
	c.parkedAt = time.Now()
	c.exits = c.exits[:0]
	c.results, c.controls = c.results[:0], c.controls[:0]
	clear(c.msgs)
	c.msgs, c.msgBytes = c.msgs[:0], 0
	c.outBuf, c.build = nil, wire.Builder{}
	s.parked = append(s.parked, c)
	s.stats.parked.Store(int64(len(s.parked)))
	s.log.Debug("ebisync: session kept for a resume", "client", cn.id, "remote", cn.addr, "window", s.opts.ResumeWindow)
	s.boundParked()
}

// boundParked drops the longest-parked clients while more than
// Options.MaxResumable are parked or they hold more than
// Options.ResumeBytes. Game goroutine.
func (s *Server) boundParked() {
	total := 0
	for _, c := range s.parked {
		total += c.parkedBytes()
	}
	n := len(s.parked)
	for i := 0; i < len(s.parked) && (n > s.opts.MaxResumable || total > s.opts.ResumeBytes); {
		c := s.parked[i]
		size := c.parkedBytes()
		if !s.expire(c) {
			i++ // claimed by a connection about to join
			continue
		}
		n--
		total -= size
	}
}

// expireParked drops the clients parked for longer than the window, or
// all of them when the server is closed. Game goroutine.
func (s *Server) expireParked(all bool) {
	if len(s.parked) == 0 {
		return
	}
	now := time.Now()
	for i := 0; i < len(s.parked); {
		c := s.parked[i]
		if !all && now.Sub(c.parkedAt) <= s.opts.ResumeWindow || !s.expire(c) {
			i++
		}
	}
	s.boundParked() // parked scopes go on changing with the world
}

// expire drops parked client c and its session, and reports true, unless
// a connection has claimed the session meanwhile.
func (s *Server) expire(c *client) bool {
	s.mu.Lock()
	ss := s.sessions[c.cn.id]
	if ss != nil && ss.conn != nil && !ss.conn.left.Load() {
		s.mu.Unlock()
		return false
	}
	delete(s.sessions, c.cn.id)
	s.mu.Unlock()
	s.upLeave(c.cn.id, false)
	s.log.Debug("ebisync: session ended without a resume", "client", c.cn.id, "parked", time.Since(c.parkedAt).Round(time.Millisecond))
	s.unpark(c)
	s.dropClient(c)
	return true
}

// unpark takes c off the parked list.
func (s *Server) unpark(c *client) {
	if i := slices.Index(s.parked, c); i >= 0 {
		s.parked = slices.Delete(s.parked, i, i+1)
	}
	c.parked = false
	s.stats.parked.Store(int64(len(s.parked)))
}

// parkedBytes estimates the memory a parked client holds.
func (c *client) parkedBytes() int {
	return 256 + c.count*64 + 8*len(c.member) + 8*cap(c.dirty) + 16*len(c.entSubs)
}

// resumeClient gives client c (parked, or live on an older connection) the
// connection cn, which resumed its session, and prepares the first batch:
// the entities the client keeps, and what it misses of each since tick,
// the last batch it applied. Game goroutine.
func (s *Server) resumeClient(c *client, cn *conn, tick uint64) {
	if c.parked {
		s.unpark(c)
	} else if c.cn != cn {
		c.cn.shutdown(statusGoingAway, "session resumed on another connection")
	}
	// A claimed tick beyond the last batch handed to the old connection
	// is a lie that would skip updates: it is cut to that batch.
	t := min(s.internalTick(tick), c.lastSent)
	c.cn = cn
	c.outBuf = nil // the old connection's writer may still be reading it
	c.lastSent, c.lastVis = cn.welcomeTick, cn.welcomeVis
	c.interval = c.minIntv
	c.good, c.busyRun, c.lastSlow = 0, 0, 0
	c.exits = c.exits[:0]
	c.results, c.controls = c.results[:0], c.controls[:0]
	clear(c.msgs)
	c.msgs, c.msgBytes = c.msgs[:0], 0

	full := c.subsAt > t // a lost batch may have removed components the client still holds
	keep := c.keep[:0]
	c.eachMember(func(id uint32) {
		r := s.recs[id]
		if r == nil {
			return
		}
		i := r.viewIndex(c)
		if i < 0 {
			return
		}
		markDirty(r, i)
		v := &r.views[i]
		if v.pending {
			return // never sent: it goes as a spawn
		}
		if full || v.spawned > t {
			// The spawn may not have arrived: the client forgets whatever
			// it holds under this id and is sent the entity afresh.
			v.pending, v.held = true, 0
			return
		}
		keep = append(keep, uint64(id))
		if v.sync <= t {
			return // the client holds what the batch of tick v.sync carried
		}
		// Sent in a batch the client did not apply: what it holds is as
		// of some batch before, which is not known. It may hold any
		// component the entity has or ever had: one the lost batch
		// removed may be back now and go again before the entity's next
		// batch, which then owes the client its removal. So all of them
		// count as held: that batch carries the full value of each one
		// the client receives and the removal of every other.
		v.sync = 0
		for k := range r.comps {
			if bit := uint64(1) << uint(k); r.present&bit != 0 || r.comps[k].removedAt != 0 {
				v.held |= bit
			}
		}
	})
	slices.Sort(keep)
	s.log.Debug("ebisync: session resumed", "client", cn.id, "remote", cn.addr, "fromTick", t, "kept", len(keep), "scope", c.count)
	c.keep = keep
	c.resuming = true
	c.needScan = true
}
