package plugin

import (
	"cmp"
	"math/bits"
	"slices"
	"sync"

	"github.com/ebisync/ebisync/internal/wire"
)

// Upper bounds of what a batch spends besides component values, so a
// capped batch never exceeds its budget: the message header and section
// headers of exits and results; per entity its id delta, generation and
// component count; per component record its component id or id delta and
// the header of a section it may open (op, component id, count).
const (
	batchOverhead     = 16 + 4*16
	perRecordOverhead = 5 + 1 + 2 + 5
)

// perEntityOverhead bounds the bytes a batch spends on one entity besides
// its component values: id delta, generation, counts, component ids.
const perEntityOverhead = 16

// emitNow writes what the client needs of view i of r, which changed this
// tick, straight into the client's batch. It reports false, leaving the
// caller to mark the view dirty, when the batch is not being built this
// tick or might not have room.
func (s *Server) emitNow(out *batches, r *entityRec, i int) bool {
	v := &r.views[i]
	c := v.c
	if !c.direct || v.dirty {
		return v.dirty
	}
	// Room is kept for the exits this tick may still add to the batch
	// (at most one per entity in scope) and for results and replies.
	if reserve := 8*c.count + 4096 + batchOverhead; c.usedNow+reserve > maxBatch/4 &&
		c.usedNow+s.entitySize(c, r, v)+reserve > maxBatch {
		return false
	}
	c.usedNow += s.emitEntity(out, c, r, v)
	return true
}

// emitFast writes view v of r into its client's batch when p, r's fast
// path in ch, applies to it, and reports whether it did.
func (s *Server) emitFast(ch *changes, r *entityRec, v *view, p *fastPath) bool {
	c := v.c
	if !p.ok || s.test.noFastPath || !c.direct || v.dirty || v.pending || v.sync < p.minSync || c.nsubs != 0 || v.held != c.typeSubs&r.present {
		return false
	}
	// The same room rule as emitNow, with the entity's exact size.
	send := p.changed & v.held
	var size int
	if send == p.changed {
		size = perEntityOverhead + int(p.bytes) + bits.OnesCount64(p.changed)*perRecordOverhead
	} else {
		size = perEntityOverhead
		for m, k := p.changed, p.first; m != 0; m &= m - 1 {
			if send&(m&-m) != 0 {
				size += len(ch.deltas[k]) + perRecordOverhead
			}
			k++
		}
	}
	if c.usedNow+size+8*c.count+4096+batchOverhead > maxBatch {
		return false
	}
	for m, k := p.changed, p.first; m != 0; m &= m - 1 {
		if send&(m&-m) != 0 {
			c.build.Update(uint64(bits.TrailingZeros64(m)), uint64(r.id), true, ch.deltas[k])
		}
		k++
	}
	c.usedNow += size
	v.sync = s.tick
	s.test.fastViews++
	return true
}

// send encodes the batch of each client in out and hands them all to the
// writers through the dispatcher.
func (s *Server) send(out *batches) {
	out.ready = out.ready[:0]
	for _, c := range out.clients {
		s.sendTo(out, c)
	}
	if len(out.ready) == 0 {
		return
	}
	s.disp.mu.Lock()
	for i, c := range out.ready {
		// busy before the batch leaves the tick: the tick builds nothing
		// more for the client until its writer has taken and written it.
		c.cn.busy.Store(true)
		s.disp.queue = append(s.disp.queue, outgoing{cn: c.cn, buf: c.outBuf})
		if cap(c.outBuf) > batchKeep {
			c.outBuf = nil // the writer's alone: garbage once written
		}
		out.ready[i] = nil
	}
	start := !s.disp.running
	s.disp.running = true
	s.disp.mu.Unlock()
	out.sent += uint64(len(out.ready))
	if start {
		s.startDispatch()
	}
}

// dispatcher hands the tick's batches to the connections' writer
// goroutines, off the game thread: the tick queues its batches and wakes
// at most one goroutine, which wakes the writers. Waking a writer costs the
// waker a cache miss on another core's channel and goroutine, which with
// hundreds of clients would be a large part of the tick.
type dispatcher struct {
	mu      sync.Mutex
	queue   []outgoing // batches waiting for the dispatcher
	spare   []outgoing // the dispatcher's emptied slice, for reuse
	running bool       // a dispatch goroutine is running or about to
	run     func()     // s.dispatch then s.wg.Done
}

// outgoing is one batch for one connection's writer.
type outgoing struct {
	cn  *conn
	buf []byte
}

// startDispatch starts a dispatch goroutine, or hands the queue over on
// this goroutine once the server is closed (Close waits for s.wg, which no
// longer takes new goroutines).
func (s *Server) startDispatch() {
	s.mu.Lock()
	closed := s.closed
	if !closed {
		s.wg.Add(1)
	}
	s.mu.Unlock()
	if closed {
		s.dispatch()
		return
	}
	go s.disp.run() // a func value made once: a go statement with arguments would allocate
}

// dispatch hands queued batches to their writers until the queue is empty.
// A send never blocks: the tick hands a connection a batch only when its
// writer is idle (busy false), so the writer's channel (capacity 1) is
// empty; a writer that has since exited leaves the batch in its channel.
func (s *Server) dispatch() {
	d := &s.disp
	d.mu.Lock()
	work := d.spare
	d.spare = nil
	for len(d.queue) > 0 {
		work, d.queue = d.queue, work[:0]
		d.mu.Unlock()
		for i, o := range work {
			o.cn.out <- o.buf
			work[i] = outgoing{}
		}
		d.mu.Lock()
	}
	d.running = false
	d.spare = work[:0]
	d.mu.Unlock()
}

// batchKeep is the largest batch whose buffers a client keeps for the
// next one. Steady ticks reuse their buffers without allocating; a larger
// batch (a snapshot, a spawn burst) allocates its own, so an idle client
// does not hold the room of the largest batch it was ever sent.
const batchKeep = 64 << 10

// sendTo writes out what is left for the client (exits, results, control
// replies, its dirty entities within its budget) and encodes its batch.
func (s *Server) sendTo(out *batches, c *client) {
	b := &c.batch
	b.InputAck = c.inputAck() // input.go
	if len(c.exits) == 0 && len(c.dirty) == 0 && len(c.results) == 0 && len(c.controls) == 0 && len(c.msgs) == 0 && c.build.Empty() && len(b.Removals) == 0 && !c.resuming && b.InputAck == 0 {
		return
	}
	if c.resuming {
		b.Resume = true
		if c.keepAll {
			c.keep = s.keepScope(c) // upstream.go
		}
		b.Keep = append(b.Keep, c.keep...)
		c.resuming, c.keep = false, nil
	}
	b.TickAdvance = s.visibleTick() - c.lastVis
	used := batchOverhead
	if len(c.exits) > 1 {
		sortExits(c.exits)
	}
	b.Exits = append(b.Exits, c.exits...)
	used += 8 * len(c.exits)
	c.exits = c.exits[:0]
	b.Results = append(b.Results, c.results...)
	for _, r := range c.results {
		used += 16 + len(r.Message)
	}
	c.results = c.results[:0]
	b.Controls = append(b.Controls, c.controls...)
	used += 32 * len(c.controls)
	c.controls = c.controls[:0]

	if len(c.msgs) > 0 {
		// Messages count against the budget first, with the spawns of the
		// entities they name that the client still waits for; what does
		// not fit waits for the next batch, in order.
		used += s.takeMsgs(out, c, b, s.budget(c)-used-c.usedNow, maxBatch-used-c.usedNow)
	}
	budget := s.budget(c) - used
	if len(c.dirty) > 0 {
		// Ascending ids make the fewest, smallest sections.
		if !slices.IsSortedFunc(c.dirty, byID) {
			slices.SortFunc(c.dirty, byID)
		}
		if c.direct {
			s.emitUncapped(out, c, budget-c.usedNow)
		} else {
			s.chooseSized(out, c, budget)
			slices.SortFunc(out.order, byID)
			for _, d := range out.order {
				if r, v := c.resolve(d); v != nil {
					s.emitEntity(out, c, r, v)
				}
			}
		}
	}
	if len(b.Exits)+len(b.Removals)+len(b.Results)+len(b.Controls)+len(b.Messages) == 0 && c.build.Empty() && !b.Resume && b.InputAck == 0 {
		return
	}
	c.ackSent(b.InputAck)
	if len(b.Removals) > 1 {
		sortRemovals(b.Removals)
	}
	// The writer is idle (pace checked), so it is done with the buffer it
	// was handed last time: busy went false after its last use.
	c.outBuf = wire.AppendBatchBuilt(c.outBuf[:0], b, &c.build)
	if len(c.outBuf) > batchKeep {
		c.build = wire.Builder{} // a snapshot's room is not kept for the deltas after it
	}
	out.ready = append(out.ready, c)
	s.sent(c)
}

// emitUncapped emits dirty entities in order, stopping only near the
// message size limit; the rest stay dirty for the next batch.
func (s *Server) emitUncapped(out *batches, c *client, budget int) {
	used := 0
	for i, d := range c.dirty {
		r, v := c.resolve(d)
		if v == nil || !v.dirty {
			continue
		}
		if used > budget/2 {
			// Large batch: size what is left exactly before adding it.
			sz := s.entitySize(c, r, v)
			if used+sz > budget {
				c.dirty = c.dirty[:copy(c.dirty, c.dirty[i:])]
				return
			}
		}
		used += s.emitEntity(out, c, r, v)
	}
	c.dirty = c.dirty[:0]
}

// chooseSized fills out.order with the dirty entities that fit the budget,
// most urgent first when they do not all fit; the rest stay dirty.
func (s *Server) chooseSized(out *batches, c *client, budget int) {
	out.order = out.order[:0]
	out.sizes = out.sizes[:0]
	total := 0
	n := 0
	for _, d := range c.dirty {
		r, v := c.resolve(d)
		if v == nil || !v.dirty {
			continue
		}
		c.dirty[n] = d
		n++
		sz := s.entitySize(c, r, v)
		out.sizes = append(out.sizes, sz)
		total += sz
	}
	c.dirty = c.dirty[:n]
	if total <= budget {
		out.order = append(out.order, c.dirty...)
		c.dirty = c.dirty[:0]
		return
	}
	// Over budget: rank by how long each waited, weighted by closeness.
	out.prio = out.prio[:0]
	out.rank = out.rank[:0]
	for i, d := range c.dirty {
		r, v := c.resolve(d)
		waited := float64(s.tick - max(v.sync, v.since))
		out.prio = append(out.prio, waited*(1+c.closeness(r)))
		out.rank = append(out.rank, uint32(i))
	}
	slices.SortFunc(out.rank, func(a, b uint32) int { return cmp.Compare(out.prio[b], out.prio[a]) })
	used := 0
	rest := c.dirtyTmp[:0]
	for _, i := range out.rank {
		sz := out.sizes[i]
		if used+sz > budget && len(out.order) > 0 {
			rest = append(rest, c.dirty[i])
			continue
		}
		used += sz
		out.order = append(out.order, c.dirty[i])
	}
	c.dirtyTmp = c.dirty[:0]
	c.dirty = rest
}

// entitySize is an upper bound of the bytes emitEntity will write.
func (s *Server) entitySize(c *client, r *entityRec, e *view) int {
	mask := c.recvMask(r) & r.present
	size := perEntityOverhead
	for i, cd := range s.comps {
		bit := uint64(1) << uint(i)
		if mask&bit == 0 {
			if e.held&bit != 0 {
				size += perRecordOverhead
			}
			continue
		}
		switch {
		case e.pending || e.held&bit == 0:
			size += len(s.full(r, i, cd)) + perRecordOverhead
		case r.comps[i].version > e.sync:
			v, _ := s.catchUp(r, i, cd, e.sync)
			size += len(v) + perRecordOverhead
		}
	}
	return size
}

// emitEntity adds what the client needs of one entity to its batch and
// records that the client holds it as of this tick.
func (s *Server) emitEntity(out *batches, c *client, r *entityRec, e *view) int {
	id := r.id
	size := perEntityOverhead
	b := &c.batch
	mask := c.recvMask(r) & r.present
	if e.pending {
		out.spawn = out.spawn[:0]
		for i, cd := range s.comps {
			if mask&(1<<uint(i)) != 0 {
				v := s.full(r, i, cd)
				size += len(v) + perRecordOverhead
				out.spawn = append(out.spawn, wire.CompValue{Comp: uint64(i), Value: v})
			}
		}
		c.build.Spawn(uint64(id), uint64(r.gen), out.spawn)
		e.spawned = s.tick
	} else {
		for m := mask | e.held; m != 0; m &= m - 1 {
			i := bits.TrailingZeros64(m)
			bit := uint64(1) << uint(i)
			switch {
			case mask&bit == 0:
				if e.held&bit != 0 {
					b.Removals = append(b.Removals, wire.Removal{Comp: uint64(i), ID: uint64(id)})
					size += perRecordOverhead
				}
			case e.held&bit == 0:
				v := s.full(r, i, s.comps[i])
				size += len(v) + perRecordOverhead
				c.build.Update(uint64(i), uint64(id), false, v)
			case r.comps[i].version > e.sync:
				v, delta := s.catchUp(r, i, s.comps[i], e.sync)
				size += len(v) + perRecordOverhead
				c.build.Update(uint64(i), uint64(id), delta, v)
			}
		}
	}
	e.pending = false
	e.dirty = false
	e.held = mask
	e.sync = s.tick
	return size
}

func byID(a, b dirtyRef) int { return cmp.Compare(a.id, b.id) }

// sortRemovals orders removals by component, then id, as their sections
// want.
func sortRemovals(rs []wire.Removal) {
	slices.SortFunc(rs, func(x, y wire.Removal) int {
		if x.Comp != y.Comp {
			return cmp.Compare(x.Comp, y.Comp)
		}
		return cmp.Compare(x.ID, y.ID)
	})
}

// sortExits orders exits by reason, then id, as their sections want.
func sortExits(es []wire.Exit) {
	slices.SortFunc(es, func(a, b wire.Exit) int {
		if a.Reason != b.Reason {
			return cmp.Compare(a.Reason, b.Reason)
		}
		return cmp.Compare(a.ID, b.ID)
	})
}
