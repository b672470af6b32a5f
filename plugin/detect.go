package plugin

import (
	"math/bits"
	"slices"
	"unsafe"

	"github.com/yohamta/donburi"

	"github.com/ebisync/ebisync/components"
	"github.com/ebisync/ebisync/internal/codec"
	"github.com/ebisync/ebisync/internal/prefetch"
)

// detect finds what changed in the World since the last tick: spawns,
// despawns, component adds and removes, value changes and moves. It
// updates the records, shadows, encoded deltas and spatial index, and
// returns ch, emptied by frame.reset, filled with this tick's changes.
func (s *Server) detect(ch *changes) *changes {
	s.addArchetypes()
	archs := s.world.Archetypes()
	// The quick check needs positions to come from compared values.
	quick := s.posIndex >= 0 && !s.test.noQuick
	for k := range s.archs {
		a := &s.archs[k]
		ents := archs[a.index].Entities()
		quick := quick && s.planQuick(a)
		// Entities that need the full check wait in a short queue, their
		// records prefetched, so the misses on several records overlap
		// instead of stalling the check one after another. They are still
		// checked in archetype order.
		var q detectQueue
		for i := 0; i < len(ents); i++ {
			tag := (*components.ReplicatedData)(a.tagAt(i))
			if quick && s.unchanged(a, i, ents[i], tag) {
				continue
			}
			if r := s.byTag(tag); r != nil {
				prefetchRec(r)
			}
			if q.n == len(q.rows) {
				s.detectQueued(ch, a, ents, &q)
			}
			q.push(i, tag)
		}
		for q.n > 0 {
			s.detectQueued(ch, a, ents, &q)
		}
	}
	// In net id order, so the scope step writes each client's batch in
	// the order its sections want.
	slices.Sort(ch.ids)
	// Sweep: records not seen this tick were removed from the World (or
	// lost their tag).
	for id := 1; id < len(s.ids); id++ {
		if d := &s.ids[id]; d.seen != s.tick && d.entity != donburi.Null {
			s.despawn(ch, s.recs[id])
		}
	}
	return ch
}

// archRef is an archetype with the Replicated tag, and how to read its
// values without an Entry per entity: through donburi's public
// Storage.Component, by the entity's row in Archetype.Entities().
type archRef struct {
	index int
	mask  uint64                     // registered components the archetype holds
	tag   func(i int) unsafe.Pointer // Replicated of the archetype's entity i
	vals  []func(i int) unsafe.Pointer
	// The quick check of this tick: see Server.planQuick.
	quick    []quickComp
	explicit uint64 // Explicit components: compared only when touched
}

// addArchetypes adds the archetypes with the Replicated tag that appeared
// since the last tick to s.archs. Layouts never change, so which
// registered components an archetype holds is worked out once.
func (s *Server) addArchetypes() {
	archs := s.world.Archetypes()
	for ; s.archSeen < len(archs); s.archSeen++ {
		layout := archs[s.archSeen].Layout()
		if !layout.HasComponent(components.Replicated) {
			continue
		}
		var mask uint64
		for i, c := range s.comps {
			if layout.HasComponent(c.ComponentType()) {
				mask |= 1 << uint(i)
			}
		}
		store := s.world.StorageAccessor().Components
		a := archRef{
			index: s.archSeen,
			mask:  mask,
			tag:   storageReader(store.Storage(components.Replicated).Component, s.archSeen),
			vals:  make([]func(int) unsafe.Pointer, len(s.comps)),
		}
		for i, c := range s.comps {
			if mask&(1<<uint(i)) != 0 {
				a.vals[i] = storageReader(store.Storage(c.ComponentType()).Component, s.archSeen)
			}
		}
		s.archs = append(s.archs, a)
	}
}

// detectQueue is a first-in first-out queue of rows waiting for the full
// check.
type detectQueue struct {
	rows    [4]int
	tags    [4]*components.ReplicatedData
	head, n int
}

func (q *detectQueue) push(row int, tag *components.ReplicatedData) {
	j := (q.head + q.n) % len(q.rows)
	q.rows[j], q.tags[j] = row, tag
	q.n++
}

// detectQueued gives the oldest queued row the full check.
func (s *Server) detectQueued(ch *changes, a *archRef, ents []donburi.Entity, q *detectQueue) {
	row, tag := q.rows[q.head], q.tags[q.head]
	q.tags[q.head] = nil
	q.head = (q.head + 1) % len(q.rows)
	q.n--
	// Further stages for the component that changes most, the
	// position: the record after next has had time to arrive, so ask for
	// its position's component record; the next one's has arrived, so ask
	// for the buffer its delta will be written to.
	if s.posIndex >= 0 {
		if q.n > 1 {
			if r := s.byTag(q.tags[(q.head+1)%len(q.rows)]); r != nil && s.posIndex < len(r.comps) {
				prefetch.Line(unsafe.Pointer(&r.comps[s.posIndex]))
			}
		}
		if q.n > 0 {
			if r := s.byTag(q.tags[q.head]); r != nil && s.posIndex < len(r.comps) {
				if d := r.comps[s.posIndex].enc.delta; cap(d) > 0 {
					prefetch.Line(unsafe.Pointer(unsafe.SliceData(d)))
				}
			}
		}
	}
	s.detectEntity(ch, a, row, ents[row], tag)
}

// detectEntity checks entity e, at index row of archetype a, in full: its
// identity, then its components, then its position; a change lists it in
// ch with its fast path.
func (s *Server) detectEntity(ch *changes, a *archRef, row int, e donburi.Entity, tag *components.ReplicatedData) {
	r := s.identify(ch, e, tag)
	d := s.compare(ch, a, row, r, tag)
	if s.locate(r, e, d.pos) {
		d.changed = true
	}
	s.ids[r.id].present = r.present
	// A view synced as of the latest version before this tick needs only
	// this tick's deltas. (A component removed this tick still counts in
	// maxVer: that only sends more views the general way.)
	p := fastPath{ok: !d.added, minSync: r.maxVer, changed: d.deltas, first: d.first, bytes: d.bytes}
	if d.deltas != 0 || d.added {
		r.maxVer = s.tick
	}
	if d.changed {
		ch.add(r.id, p)
	}
}

// identify returns e's record, giving e a new one when the tag names none
// or another entity's (a tag the game copied), marks it seen this tick and
// gives the tag a version per registered component.
func (s *Server) identify(ch *changes, e donburi.Entity, tag *components.ReplicatedData) *entityRec {
	r := s.byTag(tag)
	if r == nil || r.entity != e || r.gen != tag.Gen || s.ids[r.id].seen == s.tick {
		r = s.spawn(ch, e, tag)
	}
	s.ids[r.id].seen = s.tick
	if len(tag.Versions) < len(s.comps) {
		v := make([]uint32, len(s.comps))
		copy(v, tag.Versions)
		tag.Versions = v
	}
	return r
}

// entityDiff is what compare found of one entity. What the fast path needs
// is gathered here, while the component records are in cache.
type entityDiff struct {
	changed bool                     // a component was added, removed or changed
	added   bool                     // a component was added
	deltas  uint64                   // the components with a delta this tick
	first   int32                    // index in changes.deltas of the first delta
	bytes   int32                    // the deltas' total length
	pos     *components.PositionData // the compared position, when the registry's Position gives positions
}

// compare compares every registered component of the entity at row of a
// with r's shadows: a removed component is stamped removed, an added one
// copied, a changed one gets its delta encoded (appended to ch.deltas)
// and its shadow updated. Each stamps its version in the tag.
func (s *Server) compare(ch *changes, a *archRef, row int, r *entityRec, tag *components.ReplicatedData) entityDiff {
	has := a.mask
	d := entityDiff{first: int32(len(ch.deltas))}
	for m := has | r.present; m != 0; m &= m - 1 {
		i := bits.TrailingZeros64(m)
		var cur unsafe.Pointer
		if has&(1<<uint(i)) != 0 {
			cur = a.val(i, row)
		}
		s.compareOne(ch, r, i, tag, cur, &d)
	}
	return d
}

// compareOne compares registered component i of r with the entity's value
// cur (nil: the entity lacks it) and adds what it found to d.
func (s *Server) compareOne(ch *changes, r *entityRec, i int, tag *components.ReplicatedData, cur unsafe.Pointer, d *entityDiff) {
	bit := uint64(1) << uint(i)
	switch {
	case cur == nil:
		r.present &^= bit
		r.comps[i].removedAt = s.tick
		tag.Versions[i] = 0
		d.changed = true
		return
	case i == s.posIndex:
		d.pos = (*components.PositionData)(cur)
	}
	if r.present&bit == 0 {
		s.addComp(r, i, tag, cur)
		d.changed, d.added = true, true
		return
	}
	if delta, ok := s.compareComp(r, i, tag, cur); ok {
		d.changed = true
		d.deltas |= bit
		d.bytes += int32(len(delta))
		ch.deltas = append(ch.deltas, delta)
	}
}

// addComp records that r gained component i this tick, with value cur.
func (s *Server) addComp(r *entityRec, i int, tag *components.ReplicatedData, cur unsafe.Pointer) {
	c := s.comps[i]
	cr := &r.comps[i]
	r.present |= 1 << uint(i)
	c.Copy(s.shadow(r, i, c), cur)
	cr.addedAt, cr.version, cr.prevVersion = s.tick, s.tick, 0
	cr.enc.dropDelta()
	tag.Versions[i] = s.tick
}

// compareComp compares r's component i, which it had last tick, with its
// value cur. A change is stamped as a new version, its shadow updated,
// and compareComp returns its encoded delta and true.
// An Explicit component is compared only when touched, a MaxRate one no
// sooner than its interval after its last change.
func (s *Server) compareComp(r *entityRec, i int, tag *components.ReplicatedData, cur unsafe.Pointer) ([]byte, bool) {
	c := s.comps[i]
	cr := &r.comps[i]
	opts := &s.copts[i]
	touched := tag.Versions[i] == components.VersionTouched
	if opts.Explicit && !touched {
		return nil, false
	}
	if opts.minTicks > 0 && !touched && s.tick-cr.version < opts.minTicks {
		return nil, false
	}
	shadow := s.shadow(r, i, c)
	mask := c.Diff(shadow, cur)
	if mask == 0 {
		if touched {
			tag.Versions[i] = cr.version
		}
		return nil, false
	}
	if c.HasRefs() && s.refsPending(c, cur) {
		return nil, false // named entities get their net ids this tick; sent next tick
	}
	delta := cr.enc.setDelta(c, s.wireValue(c, shadow, 0), s.wireValue(c, cur, 1), mask)
	c.Copy(shadow, cur)
	cr.prevVersion, cr.version = cr.version, s.tick
	tag.Versions[i] = s.tick
	return delta, true
}

// locate reads e's position, from pos (the compared Position) or through
// Options.Position, and moves r in the spatial index when it changed. It
// reports whether it did.
func (s *Server) locate(r *entityRec, e donburi.Entity, pos *components.PositionData) bool {
	var x, y float64
	var ok bool
	switch {
	case s.posIndex < 0:
		x, y, ok = s.opts.Position(s.world.Entry(e))
	case pos != nil:
		x, y, ok = pos.X, pos.Y, true
	}
	if ok == r.hasPos && (!ok || x == r.x && y == r.y) {
		return false
	}
	s.move(r, x, y, ok)
	return true
}

// spawn creates the record of a newly seen entity and stamps its tag.
func (s *Server) spawn(ch *changes, e donburi.Entity, tag *components.ReplicatedData) *entityRec {
	r := s.records.add(e, tag, len(s.comps))
	s.globals.add(r.id) // until move() gives it a position
	ch.entities++
	return r
}

// despawn forgets a record and lists it in ch.removed, for the scope step
// to take it out of every client's scope.
func (s *Server) despawn(ch *changes, r *entityRec) {
	if r.hasPos {
		s.grid.remove(r)
	} else {
		s.globals.remove(r.id)
	}
	s.releaseAll(r)
	s.records.free(r)
	ch.removed = append(ch.removed, r)
	ch.entities--
}

// move updates an entity's position in the spatial index.
func (s *Server) move(r *entityRec, x, y float64, ok bool) {
	switch {
	case ok && r.hasPos:
		r.x, r.y = x, y
		s.grid.update(r)
	case ok && !r.hasPos:
		s.globals.remove(r.id)
		r.hasPos, r.x, r.y = true, x, y
		s.grid.insert(r)
	case !ok && r.hasPos:
		s.grid.remove(r)
		r.hasPos = false
		s.globals.add(r.id)
	}
}

// unchanged reports, without the entity's entityRec, that nothing of
// entity e (net id id, in archetype a at row) needs a look this tick:
// same entity and components as last tick, no touched marks, and every
// compared value bit for bit equal to its slab shadow. Anything else (a
// component without a slab, MaxRate) is left to the full check.
func (s *Server) unchanged(a *archRef, row int, e donburi.Entity, tag *components.ReplicatedData) bool {
	id := int(tag.NetID)
	vers := tag.Versions
	if id == 0 || id >= len(s.ids) || len(vers) < len(s.comps) {
		return false
	}
	d := &s.ids[id]
	if d.entity != e || d.gen != tag.Gen || d.seen == s.tick || d.present != a.mask {
		return false
	}
	for m := a.explicit; m != 0; m &= m - 1 {
		if vers[bits.TrailingZeros64(m)] == components.VersionTouched {
			return false
		}
	}
	for k := range a.quick {
		q := &a.quick[k]
		if vers[q.i] == components.VersionTouched {
			return false
		}
		// Bit for bit: any difference, even one Diff would call no
		// change (below a quantum), gets the full check, which also
		// moves the entity in the spatial index.
		cur := q.at(row)
		words := int(q.words)
		if (id+1)*words > len(q.mem) {
			return false // an id spawned during this sweep: the slab has grown since planQuick
		}
		if !codec.SameBits(cur, unsafe.Pointer(&q.mem[id*words]), uintptr(q.size)) {
			return false
		}
	}
	d.seen = s.tick
	return true
}

// quickComp is what the quick check needs of one compared component of
// an archetype, gathered once per tick instead of looked up per entity.
type quickComp struct {
	i     int32                        // registry index
	words int32                        // slab words per entity
	size  int32                        // the value's size in bytes
	at    func(row int) unsafe.Pointer // the archetype's value at row (a storageReader)
	mem   []uint64                     // the component's slab
}

// planQuick gathers the archetype's quick check for this tick and reports
// whether the quick check applies to it at all: every compared component
// must have a slab and no MaxRate.
func (s *Server) planQuick(a *archRef) bool {
	a.quick = a.quick[:0]
	a.explicit = 0
	for m := a.mask; m != 0; m &= m - 1 {
		i := bits.TrailingZeros64(m)
		o := &s.copts[i]
		if o.Explicit {
			a.explicit |= 1 << uint(i)
			continue
		}
		sl := &s.slabs[i]
		if sl.words == 0 || o.minTicks > 0 {
			return false
		}
		a.quick = append(a.quick, quickComp{i: int32(i), words: int32(sl.words), size: int32(sl.size), at: a.vals[i], mem: sl.mem})
	}
	return true
}

// storageReader returns a function that reads the value of one component
// type in archetype arch by the entity's index in Archetype.Entities():
// the pointer Entry.Component gives, without the per-entity Entry and
// location lookups. donburi keeps each component's values per archetype in
// entity order (entities and values are appended and swap-removed
// together), so that index is the value's index. f is a component
// storage's Component method; its index types are donburi's own.
func storageReader[A, C ~int](f func(A, C) unsafe.Pointer, arch int) func(i int) unsafe.Pointer {
	a := A(arch)
	return func(i int) unsafe.Pointer { return f(a, C(i)) }
}

// tagAt returns the Replicated value of the archetype's entity at row.
func (a *archRef) tagAt(row int) unsafe.Pointer { return a.tag(row) }

// val returns the value of registered component i of the entity at row.
func (a *archRef) val(i, row int) unsafe.Pointer { return a.vals[i](row) }
