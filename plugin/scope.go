package plugin

import (
	"unsafe"

	"github.com/yohamta/donburi"

	"github.com/ebisync/ebisync/components"
	"github.com/ebisync/ebisync/internal/prefetch"
	"github.com/ebisync/ebisync/internal/wire"
)

// updateScopes decides, for every client, which entities enter and leave
// its scope and which in-scope entities have something new to send, and
// writes what it can into the batches of out at once. Its cost follows
// the changes in ch: a changed entity is checked against the clients that
// see it and the clients near it, not against every client.
func (s *Server) updateScopes(ch *changes, out *batches) {
	leaveRemoved(ch.removed)
	for _, c := range s.clients {
		s.updateCentre(c)
	}
	s.cgrid.rebuild(s.clients)

	// Rescans first: a change written into a batch below must not be
	// followed by the entity's exit in the same batch.
	// A client's rescans are spaced by scanGap ticks (Options.RescanRate),
	// so no stream of subscriptions or interest changes makes a client cost
	// a whole scope evaluation every tick; a pending one waits.
	for _, c := range s.clients {
		if (c.needScan || s.scanDue(c)) && s.tick >= c.nextScan {
			s.rescan(c)
			out.rescans++
		}
	}

	for k, x := range ch.ids {
		prefetchChanged(s.recs, ch.ids, k)
		r := s.recs[x.id()]
		if r == nil {
			continue
		}
		// Clients that see it: still visible → dirty, else exit. They are
		// stamped, so the search for clients it enters skips them without
		// a look at their scope. The client grid is rebuilt every tick, so
		// a changed entity's place in ch.ids stamps it uniquely.
		stamp := uint64(k + 1)
		p := &ch.plans[x.plan()]
		simple := s.opts.Filter == nil && r.hasPos
		for i := 0; i < len(r.views); {
			v := &r.views[i]
			c := v.c
			// The common case, tested inline: a client with no entity
			// subscriptions keeps an entity inside its leave radius.
			if simple && c.nsubs == 0 && c.typeSubs != 0 && c.mode != wire.InterestGlobal {
				dx, dy := r.x-c.cx, r.y-c.cy
				if dx*dx+dy*dy > c.leaveR*c.leaveR {
					exitAt(r, i, reasonOutOfRange) // moves the last view into i
					continue
				}
			} else if ok, reason := c.visibility(r, true); !ok {
				exitAt(r, i, reason)
				continue
			}
			if c.ref != nil {
				c.ref.stamp = stamp
			}
			if !s.emitFast(ch, r, v, p) && !s.emitNow(out, r, i) {
				markDirty(r, i)
			}
			i++
		}
		// Clients that may start seeing it.
		if r.hasPos {
			s.cgrid.near(r.x, r.y, stamp, func(c *client) { s.maybeEnter(c, r) })
		} else {
			for _, c := range s.clients {
				if c.radiusMode() {
					s.maybeEnter(c, r)
				}
			}
		}
		for _, c := range s.cgrid.global {
			s.maybeEnter(c, r)
		}
		for _, c := range r.subs {
			s.maybeEnter(c, r)
		}
	}
}

// leaveRemoved takes the records of entities that left the World out of
// every client's scope, with an exit for each client that was sent the
// spawn, and ends their entity subscriptions.
func leaveRemoved(removed []*entityRec) {
	for _, r := range removed {
		for i := range r.views {
			v := &r.views[i]
			if (!v.pending || v.kept) && !v.c.parked {
				v.c.exits = append(v.c.exits, wire.Exit{Reason: reasonDespawned, ID: uint64(r.id)})
			}
			v.c.clearMember(r.id)
		}
		r.views = nil
		for _, cl := range r.subs {
			cl.forgetEntitySub(r.id)
		}
		r.subs = nil
	}
}

func (s *Server) maybeEnter(c *client, r *entityRec) {
	// The distance test touches only the client's own fields, so it goes
	// before the scope lookup, which is a likely cache miss.
	if c.typeSubs != 0 && c.nsubs == 0 && !c.inRange(r, c.enterR) {
		return
	}
	if c.has(r.id) {
		return
	}
	if ok, _ := c.visibility(r, false); ok {
		c.enter(r)
	}
}

// updateCentre moves a following client's centre to its entity.
func (s *Server) updateCentre(c *client) {
	if c.mode != wire.InterestFollow {
		return
	}
	if c.followEntity != donburi.Null {
		if s.world == nil || !s.world.Valid(c.followEntity) {
			return
		}
		entry := s.world.Entry(c.followEntity)
		if !entry.HasComponent(components.Replicated) {
			return
		}
		tag := components.Replicated.Get(entry)
		c.followID, c.followGen = tag.NetID, tag.Gen
	}
	if int(c.followID) < len(s.recs) {
		if r := s.recs[c.followID]; r != nil && r.gen == c.followGen && r.hasPos {
			c.cx, c.cy = r.x, r.y
		}
	}
}

// scanDue reports whether a client's centre moved far enough, or long
// enough ago, that entities which did not move may have entered or left.
func (s *Server) scanDue(c *client) bool {
	if !c.radiusMode() {
		return false
	}
	age := s.tick - c.lastScan
	moved := c.cx != c.scanX || c.cy != c.scanY
	if moved {
		band := (c.leaveR - c.enterR) / 2
		dx, dy := c.cx-c.scanX, c.cy-c.scanY
		if dx*dx+dy*dy > band*band {
			return true
		}
	}
	if age >= uint32(s.opts.RescanInterval) && (moved || s.opts.Filter != nil) {
		return true
	}
	return false
}

// rescan evaluates a client's whole scope: exits for what is no longer
// visible, enters for what became visible.
func (s *Server) rescan(c *client) {
	c.needScan = false
	c.lastScan = s.tick
	c.nextScan = s.tick + s.scanGap
	c.scanX, c.scanY = c.cx, c.cy
	c.eachMember(func(id uint32) {
		r := s.recs[id]
		if ok, reason := c.visibility(r, true); !ok {
			c.exit(r, reason)
		}
	})
	for id := range c.entSubs {
		if r := s.recs[id]; r != nil {
			s.maybeEnter(c, r)
		}
	}
	if c.typeSubs == 0 {
		return
	}
	if c.mode == wire.InterestGlobal {
		for _, r := range s.recs {
			if r != nil {
				s.maybeEnter(c, r)
			}
		}
		return
	}
	for _, id := range s.globals.ids {
		s.maybeEnter(c, s.recs[id])
	}
	s.grid.each(c.cx, c.cy, c.enterR, func(r *entityRec) { s.maybeEnter(c, r) })
}

// Prefetch distances, in changed entities, for the record and, once the
// record has arrived, for the start of its view list.
const (
	aheadRec   = 4
	aheadViews = 2
)

// prefetchChanged asks for the memory the scope pass will read of the
// entities a few places after ids[k]: their records at once, their view
// lists once those records are in cache. Met one at a time, these are a
// cache miss each (detection and the network goroutines have evicted
// them).
func prefetchChanged(recs []*entityRec, ids []change, k int) {
	if j := k + aheadRec; j < len(ids) {
		if r := recs[ids[j].id()]; r != nil {
			prefetchRec(r)
		}
	}
	if j := k + aheadViews; j < len(ids) {
		if r := recs[ids[j].id()]; r != nil && len(r.views) > 0 {
			prefetch.Line(unsafe.Pointer(&r.views[0]))
			prefetch.Line(unsafe.Pointer(&r.views[len(r.views)/4]))
		}
	}
}

// prefetchRec asks for every cache line of a record.
func prefetchRec(r *entityRec) {
	p := unsafe.Pointer(r)
	prefetch.Line(p)
	prefetch.Line(unsafe.Add(p, 64))
	prefetch.Line(unsafe.Add(p, 128))
	prefetch.Line(unsafe.Add(p, unsafe.Sizeof(*r)-1))
}
