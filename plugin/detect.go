package plugin

import (
	"encoding/binary"
	"math/bits"
	"slices"
	"unsafe"

	"github.com/yohamta/donburi"

	"github.com/ebisync/ebisync/components"
	"github.com/ebisync/ebisync/internal/prefetch"
	"github.com/ebisync/ebisync/internal/wire"
)

// entityRec is the server's record of one replicated entity, by net id.
type entityRec struct {
	id      uint32
	gen     uint32
	entity  donburi.Entity
	present uint64 // mask of registered components it has (mirrored in idRec)
	maxVer  uint32 // the latest version of any of its components
	plan    int32  // when dirty: its fast path, in Server.plans
	comps   []compRec

	hasPos bool
	x, y   float64
	cell   cellKey
	cellAt int32 // index in the grid cell's slice, -1 when not in the grid

	views []view    // clients that have it in scope (or pending spawn)
	subs  []*client // clients subscribed to this entity individually
	dirty bool      // in s.changed this tick
}

// idRec is what detection needs to find an entity unchanged without
// reading its entityRec: dense by net id, so the check of an unchanged
// entity reads a few bytes of a sequential array instead of two records
// of a few hundred bytes each.
type idRec struct {
	entity  donburi.Entity // donburi.Null when the id is free
	gen     uint32         // kept after the id is freed, for its next use
	seen    uint32         // last tick the entity was found in the World
	present uint64         // = entityRec.present
}

// compRec is the change-tracking state of one component of one entity.
type compRec struct {
	version     uint32         // tick of the last change (or add)
	prevVersion uint32         // tick of the change before; 0 if added at version
	addedAt     uint32         // tick it was (last) added
	removedAt   uint32         // tick it was (last) removed
	shadow      unsafe.Pointer // the value as of version, unless kept in a slab
	delta       []byte         // delta from the value at prevVersion to version
	full        []byte         // full encoding at fullVersion
	fullVersion uint32
}

// slabMaxWords bounds the plain values whose shadows are kept in a dense
// slab by net id (a position, a health, a colour, a small transform)
// instead of an allocation each. Only components with a slab take the
// quick check.
const slabMaxWords = 8

// slab holds the shadows of one plain component, words per entity, by
// net id.
type slab struct {
	words int      // 0: the component's shadows are allocated one by one
	size  int      // the value's size: words*8, or less (padded with zeros)
	mem   []uint64 // len(recs) × words
}

// newSlab returns the slab for a component of the given size, plain or
// not; words is 0 (no slab) for values that are not plain or are larger
// than slabMaxWords words. (Registration refuses a component without
// fields, but a value of no size would still get a word.)
func newSlab(size uintptr, plain bool) slab {
	if !plain || size > slabMaxWords*8 {
		return slab{}
	}
	words := max(1, int((size+7)/8))
	return slab{words: words, size: int(size), mem: make([]uint64, words)} // net id 0
}

// shadow returns the server's copy of component i of r, as of its version.
func (s *Server) shadow(r *entityRec, i int) unsafe.Pointer {
	if sl := &s.slabs[i]; sl.words > 0 {
		return unsafe.Pointer(&sl.mem[int(r.id)*sl.words])
	}
	cr := &r.comps[i]
	if cr.shadow == nil {
		cr.shadow = s.comps[i].New()
	}
	return cr.shadow
}

// fullBytes returns the full encoding of component i of r as of its
// version, encoding it at most once per version.
func (s *Server) fullBytes(r *entityRec, i int) []byte {
	cr := &r.comps[i]
	if cr.fullVersion != cr.version || cr.full == nil {
		cr.full = s.comps[i].AppendFull(cr.full[:0], s.shadow(r, i))
		cr.fullVersion = cr.version
	}
	return cr.full
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
		shadow := q.mem[id*words : (id+1)*words]
		if q.whole {
			if uintptr(cur)&7 != 0 {
				return false
			}
			for w, v := range shadow {
				if *(*uint64)(unsafe.Add(cur, w*8)) != v {
					return false
				}
			}
		} else if !bytesEqual(cur, unsafe.Pointer(&shadow[0]), int(q.size)) {
			// A size that is not whole words (a colour, three float32s),
			// which Go may place at any 4- or 1-byte boundary.
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
	whole bool                         // size == words*8: compared word by word
	at    func(row int) unsafe.Pointer // the archetype's value at row (a storageReader)
	mem   []uint64                     // the component's slab
}

// bytesEqual reports whether the n bytes at a and b are equal, with loads
// of 8, 4 and 1 bytes that need no alignment and no call into the
// runtime, so the quick check stays free of calls.
func bytesEqual(a, b unsafe.Pointer, n int) bool {
	x, y := unsafe.Slice((*byte)(a), n), unsafe.Slice((*byte)(b), n)
	for len(x) >= 8 {
		if binary.LittleEndian.Uint64(x) != binary.LittleEndian.Uint64(y) {
			return false
		}
		x, y = x[8:], y[8:]
	}
	if len(x) >= 4 {
		if binary.LittleEndian.Uint32(x) != binary.LittleEndian.Uint32(y) {
			return false
		}
		x, y = x[4:], y[4:]
	}
	for i := range x {
		if x[i] != y[i] {
			return false
		}
	}
	return true
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
		a.quick = append(a.quick, quickComp{i: int32(i), words: int32(sl.words), size: int32(sl.size), whole: sl.size == sl.words*8, at: a.vals[i], mem: sl.mem})
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

// detect finds spawns, despawns, component adds/removes and value changes.
func (s *Server) detect() {
	s.changed = s.changed[:0]
	s.removed = s.removed[:0]
	clear(s.planDeltas) // they alias the records' buffers: keep none alive
	s.plans, s.planDeltas = s.plans[:0], s.planDeltas[:0]
	archs := s.world.Archetypes()
	for ; s.archSeen < len(archs); s.archSeen++ {
		layout := archs[s.archSeen].Layout()
		if !layout.HasComponent(components.Replicated) {
			continue
		}
		// Layouts never change, so which registered components an
		// archetype holds is worked out once.
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
	// The quick check needs positions to come from compared values.
	quick := s.posIndex >= 0 && !s.noQuick
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
			if r := s.queuedRec(tag); r != nil {
				prefetchRec(r)
			}
			if q.n == len(q.rows) {
				s.detectQueued(a, ents, &q)
			}
			q.push(i, tag)
		}
		for q.n > 0 {
			s.detectQueued(a, ents, &q)
		}
	}
	// In net id order, so scope updates write each client's batch in the
	// order its sections want.
	slices.Sort(s.changed)
	// Sweep: records not seen this tick were removed from the World (or
	// lost their tag).
	for id := 1; id < len(s.ids); id++ {
		if d := &s.ids[id]; d.seen != s.tick && d.entity != donburi.Null {
			s.despawn(s.recs[id])
		}
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
func (s *Server) detectQueued(a *archRef, ents []donburi.Entity, q *detectQueue) {
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
			if r := s.queuedRec(q.tags[(q.head+1)%len(q.rows)]); r != nil && s.posIndex < len(r.comps) {
				prefetch.Line(unsafe.Pointer(&r.comps[s.posIndex]))
			}
		}
		if q.n > 0 {
			if r := s.queuedRec(q.tags[q.head]); r != nil && s.posIndex < len(r.comps) {
				if d := r.comps[s.posIndex].delta; cap(d) > 0 {
					prefetch.Line(unsafe.Pointer(unsafe.SliceData(d)))
				}
			}
		}
	}
	s.detectEntity(a, row, ents[row], tag)
}

// queuedRec returns the record a queued entity's tag names, if any.
func (s *Server) queuedRec(tag *components.ReplicatedData) *entityRec {
	if id := tag.NetID; id != 0 && int(id) < len(s.recs) {
		return s.recs[id]
	}
	return nil
}

// detectEntity checks entity e, at index row of archetype a, in full.
func (s *Server) detectEntity(a *archRef, row int, e donburi.Entity, tag *components.ReplicatedData) {
	has := a.mask
	var r *entityRec
	if id := tag.NetID; id != 0 && int(id) < len(s.recs) {
		r = s.recs[id]
	}
	if r == nil || r.entity != e || r.gen != tag.Gen || s.ids[r.id].seen == s.tick {
		// A new entity, or a tag the game copied from another one: give
		// it its own identity.
		r = s.spawn(e, tag)
	}
	s.ids[r.id].seen = s.tick
	if len(tag.Versions) < len(s.comps) {
		v := make([]uint32, len(s.comps))
		copy(v, tag.Versions)
		tag.Versions = v
	}
	changed := false
	// What the fast path needs is gathered here, while the component
	// records are in cache: which components have a delta, and whether
	// one was added.
	var deltas uint64
	added := false
	first, size := len(s.planDeltas), perEntityOverhead
	var pos *components.PositionData
	for m := has | r.present; m != 0; m &= m - 1 {
		i := bits.TrailingZeros64(m)
		c := s.comps[i]
		cr := &r.comps[i]
		bit := uint64(1) << uint(i)
		if has&bit == 0 {
			r.present &^= bit
			cr.removedAt = s.tick
			tag.Versions[i] = 0
			changed = true
			continue
		}
		cur := a.val(i, row)
		if i == s.posIndex {
			pos = (*components.PositionData)(cur)
		}
		shadow := s.shadow(r, i)
		if r.present&bit == 0 {
			r.present |= bit
			c.Copy(shadow, cur)
			cr.addedAt, cr.version, cr.prevVersion = s.tick, s.tick, 0
			cr.delta = cr.delta[:0]
			tag.Versions[i] = s.tick
			changed, added = true, true
			continue
		}
		opts := &s.copts[i]
		touched := tag.Versions[i] == components.VersionTouched
		if opts.Explicit && !touched {
			continue
		}
		if opts.minTicks > 0 && !touched && s.tick-cr.version < opts.minTicks {
			continue
		}
		mask := c.Diff(shadow, cur)
		if mask == 0 {
			if touched {
				tag.Versions[i] = cr.version
			}
			continue
		}
		cr.delta = c.AppendDelta(cr.delta[:0], shadow, cur, mask)
		c.Copy(shadow, cur)
		cr.prevVersion, cr.version = cr.version, s.tick
		tag.Versions[i] = s.tick
		changed = true
		deltas |= bit
		s.planDeltas = append(s.planDeltas, cr.delta)
		size += len(cr.delta) + perRecordOverhead
	}
	var x, y float64
	var ok bool
	switch {
	case s.posIndex < 0:
		x, y, ok = s.opts.Position(s.world.Entry(e))
	case pos != nil:
		x, y, ok = pos.X, pos.Y, true
	}
	if ok != r.hasPos || (ok && (x != r.x || y != r.y)) {
		s.move(r, x, y, ok)
		changed = true
	}
	s.ids[r.id].present = r.present
	// A view synced as of the latest version before this tick needs only
	// this tick's deltas. (A component removed this tick still counts in
	// maxVer: that only sends more views the general way.)
	f := fastPath{ok: !added, minSync: r.maxVer, changed: deltas, first: int32(first), size: int32(size)}
	if deltas != 0 || added {
		r.maxVer = s.tick
	}
	if !f.ok {
		s.planDeltas = s.planDeltas[:first]
	}
	if changed && !r.dirty {
		r.dirty = true
		r.plan = int32(len(s.plans))
		s.plans = append(s.plans, f)
		s.changed = append(s.changed, r.id)
	}
}

// spawn creates the record of a newly seen entity and stamps its tag.
func (s *Server) spawn(e donburi.Entity, tag *components.ReplicatedData) *entityRec {
	var id uint32
	var gen uint32 = 1
	if n := len(s.freeIDs); n > 0 {
		id = s.freeIDs[n-1]
		s.freeIDs = s.freeIDs[:n-1]
		gen = s.genOf(id) + 1
	} else {
		id = uint32(len(s.recs))
		s.recs = append(s.recs, nil)
		s.ids = append(s.ids, idRec{})
		for i := range s.slabs {
			if sl := &s.slabs[i]; sl.words > 0 {
				sl.mem = append(sl.mem, make([]uint64, sl.words)...)
			}
		}
	}
	s.ids[id] = idRec{entity: e, gen: gen}
	r := &entityRec{id: id, gen: gen, entity: e, comps: make([]compRec, len(s.comps)), cellAt: -1}
	s.recs[id] = r
	tag.NetID, tag.Gen = id, gen
	s.globals.add(id) // until move() gives it a position
	s.tickEntities++
	return r
}

func (s *Server) genOf(id uint32) uint32 {
	if int(id) < len(s.ids) {
		return s.ids[id].gen
	}
	return 0
}

// despawn forgets a record: every client that sees it gets a scope exit.
func (s *Server) despawn(r *entityRec) {
	for i := range r.views {
		v := &r.views[i]
		if !v.pending {
			v.c.exits = append(v.c.exits, wire.Exit{Reason: reasonDespawned, ID: uint64(r.id)})
		}
		v.c.clearMember(r.id)
	}
	r.views = nil
	for _, cl := range r.subs {
		cl.forgetEntitySub(r.id)
	}
	r.subs = nil
	if r.hasPos {
		s.grid.remove(r)
	} else {
		s.globals.remove(r.id)
	}
	s.releaseAll(r)
	s.recs[r.id] = nil
	s.ids[r.id].entity, s.ids[r.id].present = donburi.Null, 0
	s.freeIDs = append(s.freeIDs, r.id)
	s.removed = append(s.removed, r.id)
	s.tickEntities--
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
