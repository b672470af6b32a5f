package plugin

import (
	"fmt"
	"slices"

	"github.com/yohamta/donburi"

	"github.com/ebisync/ebisync/internal/wire"
)

// applyInbound drains every client's inbound queue, in arrival order per
// connection, into f's buffers, and applies it: to the World, and as
// replies queued for the client's next batch.
func (s *Server) applyInbound(f *frame) {
	for _, c := range s.clients {
		f.limited = c.cn.takeLimited(f.limited)
		for _, l := range f.limited {
			if l.control {
				s.controlReply(c, &l.ctl, wire.ControlRateLimited, 0)
			} else {
				s.result(c, l.request, wire.StatusRateLimited, "mutation rate limit exceeded")
			}
		}
		s.noteLimited(c, f.limited) // the Inspector's log (inspect_tick.go)
		f.inbound = c.cn.takeInbound(f.inbound)
		s.startInputs(c) // inputs left waiting by earlier ticks go first (input.go)
		for i := range f.inbound {
			if !s.applyOne(c, &f.inbound[i]) {
				break // the client was closed; the rest is dropped with it
			}
		}
		clear(f.inbound) // drop the references to subscriptions and values
	}
}

// applyOne applies one message and reports whether the client stays. A
// panic while applying it is logged with its stack, counted, and closes
// that client with 1011; the tick goes on.
func (s *Server) applyOne(c *client, m *inbound) (ok bool) {
	defer func() {
		if v := recover(); v != nil {
			_ = c.cn.panicked("applying its "+m.kind.String()+" message", v)
			ok = false
		}
	}()
	if inputHook != nil {
		inputHook("apply", m.kind)
	}
	if s.forwards() && (m.kind == wire.KindMutate || m.kind == wire.KindControl || m.kind == wire.KindMessage || m.kind == wire.KindInput) {
		s.forward(c, m) // a gateway's requests go to its simulation (upstream.go)
		s.noteRequest(c, m)
		return c.cn.ctx.Err() == nil
	}
	switch m.kind {
	case wire.KindSubscribe:
		s.subscribe(c, m.subs, true)
	case wire.KindUnsubscribe:
		s.subscribe(c, m.subs, false)
	case wire.KindInterest:
		s.setInterest(c, &m.interest)
	case wire.KindMutate:
		s.mutate(c, &m.mutate)
	case wire.KindControl:
		s.control(c, &m.control)
	case wire.KindMessage:
		s.handleMessage(c, &m.message)
	case wire.KindInput:
		s.input(c, &m.input)
	}
	s.noteRequest(c, m) // the Inspector's log (inspect_tick.go)
	return c.cn.ctx.Err() == nil
}

// subscribe adds or removes subscriptions. A component id past the
// registry and an entity that does not exist (or not at that generation)
// are ignored: entity ids are the server's, so a client can only name what
// it was sent. A client past Options.MaxEntitySubscriptions is closed with
// 4002. Only a subscription that changes something asks for a rescan.
func (s *Server) subscribe(c *client, subs []wire.Sub, add bool) {
	before := c.typeSubs
	changed := false
	for _, sub := range subs {
		switch sub.Kind {
		case wire.SubComponent:
			if sub.ID >= uint64(len(s.comps)) {
				continue // unknown ids are ignored: the handshake agreed on the list
			}
			if add {
				c.typeSubs |= 1 << sub.ID
			} else {
				c.typeSubs &^= 1 << sub.ID
			}
		case wire.SubEntity:
			r := s.record(sub.ID, sub.Gen)
			if r == nil {
				continue
			}
			_, had := c.entSubs[r.id]
			if add && !had {
				if c.nsubs >= s.opts.MaxEntitySubscriptions {
					_ = c.cn.violation(refSubscriptions, StatusAbuse, fmt.Sprintf("more than %d entity subscriptions", s.opts.MaxEntitySubscriptions))
					return
				}
				c.entSubs[r.id] = r.gen
				c.nsubs++
				r.subs = append(r.subs, c)
				markInScope(c, r) // already in scope: its other components go now
				changed = true
			} else if !add && had {
				c.subsAt = s.tick // its components beyond the client's types leave the client
				c.forgetEntitySub(r.id)
				r.subs = shrunk(slices.DeleteFunc(r.subs, func(v *client) bool { return v == c }))
				markInScope(c, r) // staying in scope: the components beyond the client's types are removed now
				changed = true
			}
		}
	}
	if before&^c.typeSubs != 0 {
		c.subsAt = s.tick
	}
	if c.typeSubs != before {
		// Components gained or lost: every in-scope entity is re-examined
		// (emitEntity sends full values of new ones, removals of dropped ones).
		c.eachMember(func(id uint32) {
			if r := s.recs[id]; r != nil {
				if i := r.viewIndex(c); i >= 0 {
					markDirty(r, i)
				}
			}
		})
		changed = true
	}
	if changed {
		c.needScan = true
	}
}

// markInScope marks c's view of r for its next batch, if r is in c's
// scope: what c receives of r changed.
func markInScope(c *client, r *entityRec) {
	if c.has(r.id) {
		if i := r.viewIndex(c); i >= 0 {
			markDirty(r, i)
		}
	}
}

// subscriptionCount is the number of component and entity subscriptions.
func (c *client) subscriptionCount() int {
	n := c.nsubs
	for m := c.typeSubs; m != 0; m &= m - 1 {
		n++
	}
	return n
}

// setInterest applies a client's Interest. With Options.MaxRadius set, a
// client may not ask for global interest (it would see the whole world
// whatever the cap): such a request is ignored, and the client keeps the
// interest it had.
func (s *Server) setInterest(c *client, in *wire.Interest) {
	if in.Mode == wire.InterestGlobal && s.opts.MaxRadius > 0 {
		return
	}
	c.mode = in.Mode
	switch in.Mode {
	case wire.InterestPoint:
		c.cx, c.cy = in.X, in.Y
	case wire.InterestFollow:
		c.followID, c.followGen = uint32(in.ID), uint32(in.Gen)
		c.followEntity = donburi.Null
		s.updateCentre(c)
	}
	c.setRadius(in.Radius)
	c.needScan = true
}

// FollowEntity centres a client's interest on entity e with the given
// radius, for example in OnConnect on the ship spawned for that client; the
// centre moves with the entity. A radius <= 0 keeps the current radius (or
// Options.DefaultRadius). It must be called on the game goroutine and
// reports whether the client is connected. The client may replace it by
// sending its own interest.
func (s *Server) FollowEntity(clientID uint64, e donburi.Entity, radius float64) bool {
	c, ok := s.byID[clientID]
	if !ok {
		return false
	}
	c.mode = wire.InterestFollow
	c.followEntity = e
	c.followID, c.followGen = 0, 0
	s.setServerRadius(c, radius)
	c.needScan = true
	return true
}

// SetInterest centres a client's interest on a fixed point. A radius <= 0
// keeps the current radius (or Options.DefaultRadius). It must be called on
// the game goroutine and reports whether the client is connected.
func (s *Server) SetInterest(clientID uint64, x, y, radius float64) bool {
	c, ok := s.byID[clientID]
	if !ok {
		return false
	}
	c.mode = wire.InterestPoint
	c.cx, c.cy = x, y
	c.followEntity = donburi.Null
	s.setServerRadius(c, radius)
	c.needScan = true
	return true
}

// SetGlobalInterest gives a client every entity it subscribes to, at any
// distance. It must be called on the game goroutine and reports whether the
// client is connected.
func (s *Server) SetGlobalInterest(clientID uint64) bool {
	c, ok := s.byID[clientID]
	if !ok {
		return false
	}
	c.mode = wire.InterestGlobal
	c.followEntity = donburi.Null
	c.needScan = true
	return true
}

func (s *Server) setServerRadius(c *client, radius float64) {
	switch {
	case radius > 0:
		c.setRadius(radius)
	case c.enterR == 0 && s.opts.DefaultRadius > 0:
		c.setRadius(s.opts.DefaultRadius)
	}
}
