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

// plan decides, before scopes are updated, which clients get a batch this
// tick, and starts those batches.
func (s *Server) plan() {
	for _, c := range s.clients {
		c.sendNow = s.pace(c)
		c.direct = false
		c.usedNow = 0
		if c.sendNow {
			c.batch.Reset()
			c.build.Reset()
			c.spawnComps = c.spawnComps[:0]
			c.direct = s.budget(c) >= maxBatch-4096
		}
	}
}

// emitNow writes what the client needs of view i of r, which changed this
// tick, straight into the client's batch. It reports false, leaving the
// caller to mark the view dirty, when the batch is not being built this
// tick or might not have room.
func (s *Server) emitNow(r *entityRec, i int) bool {
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
	c.usedNow += s.emitEntity(c, r, v)
	return true
}

// fastPath is what the common view of a changed entity needs: a client
// that holds every component it receives and was up to date before this
// tick gets the encoded delta of each component that changed, and nothing
// else. Detection records it for each changed entity (entityRec.plan) with
// the encoded deltas in per-tick arrays (Server.plans, Server.planDeltas),
// so emitFast applies it to one view in a few comparisons without reading
// the entity's component records, which are cache misses by then.
type fastPath struct {
	ok      bool   // false when a component was added this tick
	minSync uint32 // a view synced before this has more to catch up
	changed uint64 // components with a delta this tick
	first   int32  // index in Server.planDeltas of the first changed component's delta
	size    int32  // batch bytes of the entity when every changed component is sent
}

// emitFast writes view v of r into its client's batch when the fast path
// applies and reports whether it did.
func (s *Server) emitFast(r *entityRec, v *view, f *fastPath) bool {
	c := v.c
	if !f.ok || s.noFastPath || !c.direct || v.dirty || v.pending || v.sync < f.minSync || c.nsubs != 0 || v.held != c.typeSubs&r.present {
		return false
	}
	// The same room rule as emitNow, with the entity's exact size.
	send := f.changed & v.held
	size := int(f.size)
	if send != f.changed {
		size = perEntityOverhead
		for m, k := f.changed, f.first; m != 0; m &= m - 1 {
			if send&(m&-m) != 0 {
				size += len(s.planDeltas[k]) + perRecordOverhead
			}
			k++
		}
	}
	if c.usedNow+size+8*c.count+4096+batchOverhead > maxBatch {
		return false
	}
	for m, k := f.changed, f.first; m != 0; m &= m - 1 {
		if send&(m&-m) != 0 {
			c.build.Update(uint64(bits.TrailingZeros64(m)), uint64(r.id), true, s.planDeltas[k])
		}
		k++
	}
	c.usedNow += size
	v.sync = s.tick
	s.fastViews++
	return true
}

// send builds each client's batch, then hands them all to the writers
// through the dispatcher.
func (s *Server) send() {
	s.handoff = s.handoff[:0]
	for _, c := range s.clients {
		s.sendTo(c)
	}
	if len(s.handoff) == 0 {
		return
	}
	s.disp.mu.Lock()
	for i, c := range s.handoff {
		// busy before the batch leaves the tick: the tick builds nothing
		// more for the client until its writer has taken and written it.
		c.cn.busy.Store(true)
		s.disp.queue = append(s.disp.queue, outgoing{cn: c.cn, buf: c.outBuf})
		if cap(c.outBuf) > batchKeep {
			c.outBuf = nil // the writer's alone: garbage once written
		}
		s.handoff[i] = nil
	}
	start := !s.disp.running
	s.disp.running = true
	s.disp.mu.Unlock()
	s.tickBatches += uint64(len(s.handoff))
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

// budget returns the most bytes the client's next batch may carry.
func (s *Server) budget(c *client) int {
	if s.opts.BytesPerSecond <= 0 {
		return maxBatch
	}
	b := s.opts.BytesPerSecond * int(s.tick-c.lastSent) / s.opts.TickRate
	if b > maxBatch {
		b = maxBatch
	}
	return b
}

// pace adapts the client's send interval. A writer still busy on two
// build attempts in a row, or two writes slower than a tick since the last
// look, doubles it (up to 8× the base, at most a second); a run of prompt
// batches worth about half a second steps it back down by one. One slow
// write alone (a GC pause, a busy core) changes nothing.
func (s *Server) pace(c *client) bool {
	if c.cn.busy.Load() {
		c.good = 0
		c.busyRun++
		if c.busyRun >= 2 {
			c.busyRun = 0
			s.slowDown(c)
		}
		s.tickSkipped++
		return false
	}
	c.busyRun = 0
	if slow := c.cn.slowWrites.Load(); slow-c.lastSlow >= 2 {
		c.lastSlow = slow
		c.good = 0
		s.slowDown(c)
	}
	return s.tick-c.lastSent >= c.interval
}

func (s *Server) slowDown(c *client) {
	if c.interval < 8*c.minIntv && c.interval < uint32(s.opts.TickRate) {
		c.interval *= 2
	}
}

// batchKeep is the largest batch whose buffers a client keeps for the
// next one. Steady ticks reuse their buffers without allocating; a larger
// batch (a snapshot, a spawn burst) allocates its own, so an idle client
// does not hold the room of the largest batch it was ever sent.
const batchKeep = 64 << 10

func (s *Server) sendTo(c *client) {
	if !c.sendNow {
		return
	}
	b := &c.batch
	if len(c.exits) == 0 && len(c.dirty) == 0 && len(c.results) == 0 && len(c.controls) == 0 && c.build.Empty() && len(b.Removals) == 0 {
		return
	}
	b.TickAdvance = uint64(s.tick - c.lastSent)
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

	budget := s.budget(c) - used
	if len(c.dirty) > 0 {
		// Ascending ids make the fewest, smallest sections.
		if !slices.IsSortedFunc(c.dirty, byID) {
			slices.SortFunc(c.dirty, byID)
		}
		if c.direct {
			s.emitUncapped(c, budget-c.usedNow)
		} else {
			s.chooseSized(c, budget)
			slices.SortFunc(c.order, byID)
			for _, d := range c.order {
				if r, v := c.resolve(d); v != nil {
					s.emitEntity(c, r, v)
				}
			}
		}
	}
	if len(b.Exits)+len(b.Removals)+len(b.Results)+len(b.Controls) == 0 && c.build.Empty() {
		return
	}
	if len(b.Removals) > 1 {
		sortRemovals(b.Removals)
	}
	// The writer is idle (pace checked), so it is done with the buffer it
	// was handed last time: busy went false after its last use.
	c.outBuf = wire.AppendBatchBuilt(c.outBuf[:0], b, &c.build)
	if len(c.outBuf) > batchKeep {
		c.build = wire.Builder{} // a snapshot's room is not kept for the deltas after it
	}
	s.handoff = append(s.handoff, c)
	c.lastSent = s.tick
	if c.interval > c.minIntv {
		c.good++
		if c.good >= max(1, s.opts.TickRate/(2*int(c.interval))) {
			c.interval--
			c.good = 0
			c.lastSlow = c.cn.slowWrites.Load()
		}
	}
}

// emitUncapped emits dirty entities in order, stopping only near the
// message size limit; the rest stay dirty for the next batch.
func (s *Server) emitUncapped(c *client, budget int) {
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
		used += s.emitEntity(c, r, v)
	}
	c.dirty = c.dirty[:0]
}

// chooseSized fills c.order with the dirty entities that fit the budget,
// most urgent first when they do not all fit; the rest stay dirty.
func (s *Server) chooseSized(c *client, budget int) {
	c.order = c.order[:0]
	c.sizes = c.sizes[:0]
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
		c.sizes = append(c.sizes, sz)
		total += sz
	}
	c.dirty = c.dirty[:n]
	if total <= budget {
		c.order = append(c.order, c.dirty...)
		c.dirty = c.dirty[:0]
		return
	}
	// Over budget: rank by how long each waited, weighted by closeness.
	c.prio = c.prio[:0]
	c.rank = c.rank[:0]
	for i, d := range c.dirty {
		r, v := c.resolve(d)
		waited := float64(s.tick - max(v.sync, v.since))
		c.prio = append(c.prio, waited*(1+c.closeness(r)))
		c.rank = append(c.rank, uint32(i))
	}
	slices.SortFunc(c.rank, func(a, b uint32) int { return cmp.Compare(c.prio[b], c.prio[a]) })
	used := 0
	rest := c.dirtyTmp[:0]
	for _, i := range c.rank {
		sz := c.sizes[i]
		if used+sz > budget && len(c.order) > 0 {
			rest = append(rest, c.dirty[i])
			continue
		}
		used += sz
		c.order = append(c.order, c.dirty[i])
	}
	c.dirtyTmp = c.dirty[:0]
	c.dirty = rest
}

// entitySize is an upper bound of the bytes emitEntity will write.
func (s *Server) entitySize(c *client, r *entityRec, e *view) int {
	mask := c.recvMask(r) & r.present
	size := perEntityOverhead
	for i := range s.comps {
		bit := uint64(1) << uint(i)
		if mask&bit == 0 {
			if e.held&bit != 0 {
				size += perRecordOverhead
			}
			continue
		}
		cr := &r.comps[i]
		switch {
		case e.pending || e.held&bit == 0:
			size += len(s.fullBytes(r, i)) + perRecordOverhead
		case cr.version > e.sync:
			if cr.prevVersion != 0 && cr.prevVersion <= e.sync {
				size += len(cr.delta) + perRecordOverhead
			} else {
				size += len(s.fullBytes(r, i)) + perRecordOverhead
			}
		}
	}
	return size
}

// emitEntity adds what the client needs of one entity to its batch and
// records that it now holds it.
func (s *Server) emitEntity(c *client, r *entityRec, e *view) int {
	id := r.id
	size := perEntityOverhead
	b := &c.batch
	mask := c.recvMask(r) & r.present
	if e.pending {
		c.spawnComps = c.spawnComps[:0]
		for i := range s.comps {
			if mask&(1<<uint(i)) != 0 {
				v := s.fullBytes(r, i)
				size += len(v) + perRecordOverhead
				c.spawnComps = append(c.spawnComps, wire.CompValue{Comp: uint64(i), Value: v})
			}
		}
		c.build.Spawn(uint64(id), uint64(r.gen), c.spawnComps)
	} else {
		for m := mask | e.held; m != 0; m &= m - 1 {
			i := bits.TrailingZeros64(m)
			bit := uint64(1) << uint(i)
			cr := &r.comps[i]
			switch {
			case mask&bit == 0:
				if e.held&bit != 0 {
					b.Removals = append(b.Removals, wire.Removal{Comp: uint64(i), ID: uint64(id)})
					size += perRecordOverhead
				}
			case e.held&bit == 0:
				v := s.fullBytes(r, i)
				size += len(v) + perRecordOverhead
				c.build.Update(uint64(i), uint64(id), false, v)
			case cr.version > e.sync:
				if cr.prevVersion != 0 && cr.prevVersion <= e.sync {
					size += len(cr.delta) + perRecordOverhead
					c.build.Update(uint64(i), uint64(id), true, cr.delta)
				} else {
					v := s.fullBytes(r, i)
					size += len(v) + perRecordOverhead
					c.build.Update(uint64(i), uint64(id), false, v)
				}
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
