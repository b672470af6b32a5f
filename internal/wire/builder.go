package wire

import "encoding/binary"

// Builder writes the spawn and update sections of a batch entry by entry,
// straight into their section buffers: no Spawn or Update values, no sort.
// It is how a server fills a batch while it walks changed entities in id
// order. Exits, removals, results and control replies, which are few, stay
// in a Batch; AppendBatchBuilt writes both.
//
// Each section keeps its ids strictly ascending: an entry whose id does not
// follow the section's last one closes the section and opens another of
// the same key, so any order encodes correctly and ascending order encodes
// smallest. A Builder is meant to be reused; after Reset it allocates
// nothing once its buffers have grown.
type Builder struct {
	// upd holds update sections by key: component id × 2 (+1 for deltas).
	// It comes first: updates are the common entry, and a struct that
	// embeds a Builder near its start reads upd from the same cache line.
	upd []builderSection
	// used lists the keys of upd with entries, in first-use order.
	used  []int
	spawn builderSection
}

type builderSection struct {
	sealed []byte // earlier sections of this key, complete with headers
	body   []byte // the open section's entries
	n      int    // entries in body
	last   uint64 // id of the last entry in body
	inUse  bool
}

// Reset empties b, keeping its buffers.
func (b *Builder) Reset() {
	b.spawn.reset()
	for _, k := range b.used {
		b.upd[k].reset()
	}
	b.used = b.used[:0]
}

func (s *builderSection) reset() {
	s.sealed = s.sealed[:0]
	s.body = s.body[:0]
	s.n = 0
	s.last = 0
	s.inUse = false
}

// Empty reports whether b has no entries.
func (b *Builder) Empty() bool { return b.spawn.n == 0 && len(b.used) == 0 }

// Spawn adds a spawn of entity id, gen with the full values comps.
func (b *Builder) Spawn(id, gen uint64, comps []CompValue) {
	s := &b.spawn
	s.open(id, OpSpawn, 0, false)
	s.body = binary.AppendUvarint(s.body, gen)
	s.body = binary.AppendUvarint(s.body, uint64(len(comps)))
	for _, c := range comps {
		s.body = binary.AppendUvarint(s.body, c.Comp)
		s.body = append(s.body, c.Value...)
	}
}

// Update adds an update of component comp of entity id: a full value, or
// a delta when delta is set.
func (b *Builder) Update(comp, id uint64, delta bool, value []byte) {
	k := int(comp) * 2
	if delta {
		k++
	}
	if k >= len(b.upd) {
		b.upd = append(b.upd, make([]builderSection, k+1-len(b.upd))...)
	}
	s := &b.upd[k]
	if !s.inUse {
		s.inUse = true
		b.used = append(b.used, k)
	}
	op := OpUpdateFull
	if delta {
		op = OpUpdateDelta
	}
	s.open(id, op, comp, true)
	s.body = append(s.body, value...)
}

// open writes the id of a new entry, sealing the open section first when
// the id does not ascend or the section is full.
func (s *builderSection) open(id uint64, op byte, comp uint64, withComp bool) {
	if s.n > 0 && (id <= s.last || s.n >= MaxItems) {
		s.sealed = appendSectionHeader(s.sealed, op, comp, withComp, s.n)
		s.sealed = append(s.sealed, s.body...)
		s.body = s.body[:0]
		s.n = 0
		s.last = 0
	}
	s.body = binary.AppendUvarint(s.body, id-s.last)
	s.last = id
	s.n++
	s.inUse = true
}

func appendSectionHeader(dst []byte, op byte, comp uint64, withComp bool, n int) []byte {
	dst = append(dst, op)
	if withComp {
		dst = binary.AppendUvarint(dst, comp)
	}
	return binary.AppendUvarint(dst, uint64(n))
}

func (s *builderSection) appendTo(dst []byte, op byte, comp uint64, withComp bool) []byte {
	dst = append(dst, s.sealed...)
	if s.n > 0 {
		dst = appendSectionHeader(dst, op, comp, withComp, s.n)
		dst = append(dst, s.body...)
	}
	return dst
}

// AppendBatchBuilt appends a batch message holding everything in b and in
// bl to dst, in the section order AppendBatch uses: exits, spawns (b's
// then bl's), removals, updates (b's, then bl's by component with full
// values before deltas), results, control replies.
func AppendBatchBuilt(dst []byte, b *Batch, bl *Builder) []byte {
	w := Writer{B: dst}
	w.Byte(byte(KindBatch))
	w.Uvarint(b.TickAdvance)
	if b.Resume {
		appendKeep(&w, b.Keep)
	}
	if b.InputAck != 0 {
		w.Byte(OpInputAck)
		w.Uvarint(b.InputAck)
	}
	appendExits(&w, b.Exits)
	appendSpawns(&w, b.Spawns)
	w.B = bl.spawn.appendTo(w.B, OpSpawn, 0, false)
	appendRemovals(&w, b.Removals)
	appendUpdates(&w, b.Updates)
	// Keys in ascending order: component, then full before delta. The
	// list is short (a few components), so an insertion sort suffices.
	for i := 1; i < len(bl.used); i++ {
		for j := i; j > 0 && bl.used[j] < bl.used[j-1]; j-- {
			bl.used[j], bl.used[j-1] = bl.used[j-1], bl.used[j]
		}
	}
	for _, k := range bl.used {
		op := OpUpdateFull
		if k&1 == 1 {
			op = OpUpdateDelta
		}
		w.B = bl.upd[k].appendTo(w.B, op, uint64(k/2), true)
	}
	appendResults(&w, b.Results)
	appendControls(&w, b.Controls)
	appendMessages(&w, b.Messages)
	return w.B
}
