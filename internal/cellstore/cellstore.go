// Package cellstore keeps the entity state of the grid cells a consumer
// follows, built from a server's published chunks (plugin.Publisher,
// docs/PROTOCOL.md §9): a snapshot per cell, then each tick's chunks.
//
// A Store is not safe for concurrent use. It trusts nothing in a chunk: a
// chunk that does not decode, or that contradicts what the Store holds,
// is an error, and the Store is unchanged by the part that failed.
package cellstore

import (
	"errors"
	"fmt"
	"unsafe"

	"github.com/ebisync/ebisync/internal/codec"
	"github.com/ebisync/ebisync/internal/wire"
)

// Chunk flags and version, as plugin writes them.
const (
	version       = 1
	flagGlobal    = 1
	flagSnapshot  = 2
	maxFlags      = flagGlobal | flagSnapshot
	maxCoordinate = 1 << 30
)

// MaxEntityID bounds the net ids a Store takes: it holds entities in a
// slice by id, and a simulation's ids are dense (a freed id is reused), so
// a larger one is a malformed chunk, not a large World.
const MaxEntityID = 1 << 24

// ErrMalformed wraps every decoding error.
var ErrMalformed = errors.New("cellstore: malformed chunk")

// ErrGap is the error of a chunk that shows that an earlier chunk of its
// cell never arrived. The cell then waits for a new snapshot: the caller
// unfollows it, follows it again and asks for one.
var ErrGap = errors.New("cellstore: a chunk of the cell was missed")

// Cell names a grid cell, or the entities without a position (Global).
type Cell struct {
	Global bool
	X, Y   int32
}

func (c Cell) String() string {
	if c.Global {
		return "global"
	}
	return fmt.Sprintf("(%d,%d)", c.X, c.Y)
}

// Header is the part of a chunk before its batch sections.
type Header struct {
	Tick     uint64
	Prev     uint64 // the tick of the cell's chunk before; 0: none (and in snapshots)
	Cell     Cell
	Snapshot bool
}

// Decode decodes a chunk into b, its component values sized by codecs
// (registry order). b's values alias data.
func Decode(data []byte, codecs []*codec.Codec, b *wire.Batch) (Header, error) {
	var h Header
	r := wire.NewReader(data)
	if v := r.Byte(); r.Err() == nil && v != version {
		return h, fmt.Errorf("%w: version %d", ErrMalformed, v)
	}
	h.Tick = r.Uvarint()
	h.Prev = r.Uvarint()
	if r.Err() == nil && h.Prev >= h.Tick && h.Tick != 0 {
		return h, fmt.Errorf("%w: tick %d after tick %d", ErrMalformed, h.Tick, h.Prev)
	}
	flags := r.Byte()
	if r.Err() == nil && flags > maxFlags {
		return h, fmt.Errorf("%w: flags %#x", ErrMalformed, flags)
	}
	h.Cell.Global = flags&flagGlobal != 0
	h.Snapshot = flags&flagSnapshot != 0
	if !h.Cell.Global {
		x, y := r.Varint(), r.Varint()
		if x < -maxCoordinate || x > maxCoordinate || y < -maxCoordinate || y > maxCoordinate {
			return h, fmt.Errorf("%w: cell (%d,%d)", ErrMalformed, x, y)
		}
		h.Cell.X, h.Cell.Y = int32(x), int32(y)
	}
	if k := r.Byte(); r.Err() == nil && wire.Kind(k) != wire.KindBatch {
		return h, fmt.Errorf("%w: kind %d", ErrMalformed, k)
	}
	if err := r.Err(); err != nil {
		return h, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if err := wire.DecodeBatch(data[r.Offset():], sizer(codecs), b); err != nil {
		return h, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if b.Resume || b.InputAck != 0 || len(b.Removals)+len(b.Results)+len(b.Controls)+len(b.Messages) != 0 {
		return h, fmt.Errorf("%w: sections a chunk does not carry", ErrMalformed)
	}
	if h.Snapshot && len(b.Exits)+len(b.Updates) != 0 {
		return h, fmt.Errorf("%w: a snapshot with exits or updates", ErrMalformed)
	}
	return h, nil
}

type sizer []*codec.Codec

func (s sizer) FullLen(comp uint64, b []byte) (int, error) {
	if comp >= uint64(len(s)) {
		return 0, fmt.Errorf("component %d of %d", comp, len(s))
	}
	return s[comp].FullLen(b)
}

func (s sizer) DeltaLen(comp uint64, b []byte) (int, error) {
	if comp >= uint64(len(s)) {
		return 0, fmt.Errorf("component %d of %d", comp, len(s))
	}
	return s[comp].DeltaLen(b)
}

// Entity is what a Store holds of one entity.
type Entity struct {
	ID, Gen uint32
	Cell    Cell
	At      uint64           // the tick of the state held
	Vals    []unsafe.Pointer // by registry index; nil where the entity lacks the component
}

// Store holds the entities of the cells it follows.
type Store struct {
	codecs []*codec.Codec
	ents   []*Entity // by net id; nil where none is held
	n      int       // entities held
	cells  map[Cell]*cell
	tick   uint64   // the last tick applied
	gen    uint64   // the last follow's number
	cur    []*chunk // this tick's chunks of ready cells, applied at EndTick
	b      wire.Batch

	touched []uint32 // entities added, changed or removed since ClearTouched
	stamps  []uint32 // by net id: epoch when in touched
	epoch   uint32
}

type cell struct {
	gen   uint64 // the follow this state belongs to
	ready bool
	since uint64   // the snapshot's tick: chunks of ticks up to it are in it
	last  uint64   // the tick of the last chunk taken (or since)
	held  []*chunk // chunks that arrived before the snapshot
}

type chunk struct {
	h   Header
	gen uint64     // the follow of its cell it was taken under
	b   wire.Batch // decoded once; its values alias the chunk's data
}

// New returns an empty Store of values of codecs (registry order).
func New(codecs []*codec.Codec) *Store {
	return &Store{codecs: codecs, cells: map[Cell]*cell{}, epoch: 1}
}

// Touched returns the ids of the entities added, changed or removed since
// the last ClearTouched, in no order. The slice is valid until the next
// change of s.
func (s *Store) Touched() []uint32 { return s.touched }

// ClearTouched empties the list Touched returns.
func (s *Store) ClearTouched() {
	s.touched = s.touched[:0]
	s.epoch++
	if s.epoch == 0 { // wrapped: no stamp may equal a future epoch
		clear(s.stamps)
		s.epoch = 1
	}
}

func (s *Store) touch(id uint32) {
	for int(id) >= len(s.stamps) {
		s.stamps = append(s.stamps, 0)
	}
	if s.stamps[id] != s.epoch {
		s.stamps[id] = s.epoch
		s.touched = append(s.touched, id)
	}
}

// remove forgets entity id.
func (s *Store) remove(id uint32) {
	if s.ents[id] != nil {
		s.ents[id] = nil
		s.n--
	}
	s.touch(id)
}

// Tick returns the last tick applied.
func (s *Store) Tick() uint64 { return s.tick }

// Len returns the number of entities held.
func (s *Store) Len() int { return s.n }

// Entities calls f for every entity held, in no order. f must not change
// the Store.
func (s *Store) Entities(f func(*Entity)) {
	for _, e := range s.ents {
		if e != nil {
			f(e)
		}
	}
}

// Get returns entity id, or nil.
func (s *Store) Get(id uint32) *Entity {
	if int(id) < len(s.ents) {
		return s.ents[id]
	}
	return nil
}

// Follow starts following c: its chunks are kept from now on, and apply
// once Snapshot gives its state. It returns the number of this follow,
// which the snapshot's answer must name: an answer to an earlier follow
// of c misses chunks that were never kept. Following a followed cell
// returns the number of its follow.
//
// The snapshot must be asked for after the subscription to c's chunks is
// in place, so that every chunk after the snapshot's tick arrives.
func (s *Store) Follow(c Cell) uint64 {
	if st := s.cells[c]; st != nil {
		return st.gen
	}
	s.gen++
	s.cells[c] = &cell{gen: s.gen}
	return s.gen
}

// Following reports whether c is followed, and whether its snapshot has
// arrived.
func (s *Store) Following(c Cell) (followed, ready bool) {
	st := s.cells[c]
	return st != nil, st != nil && st.ready
}

// Unfollow stops following c and forgets its entities.
func (s *Store) Unfollow(c Cell) {
	if s.cells[c] == nil {
		return
	}
	delete(s.cells, c)
	for id, e := range s.ents {
		if e != nil && e.Cell == c {
			s.remove(uint32(id))
		}
	}
}

// Snapshot applies the snapshot of a cell that follow number gen asked
// for, with the chunks kept for the cell since. A snapshot for a follow
// that has ended, or a second one, is ignored. Snapshot keeps data.
func (s *Store) Snapshot(gen uint64, data []byte) error {
	h, err := Decode(data, s.codecs, &s.b)
	if err != nil {
		return err
	}
	if !h.Snapshot {
		return fmt.Errorf("cellstore: a tick's chunk given as a snapshot")
	}
	st := s.cells[h.Cell]
	if st == nil || st.gen != gen || st.ready {
		return nil
	}
	{
		held := st.held
		last := h.Tick
		for _, c := range held {
			if c.h.Tick <= h.Tick {
				continue
			}
			if c.h.Prev > last {
				return fmt.Errorf("%w: cell %v, tick %d after %d, its last before %d", ErrGap, h.Cell, c.h.Tick, last, c.h.Prev)
			}
			last = c.h.Tick
		}
		if err := s.applySnapshot(h, st); err != nil {
			return err
		}
		st.ready, st.since, st.last = true, h.Tick, last
		st.held = nil
		for _, c := range held {
			if c.h.Tick <= h.Tick {
				continue
			}
			if c.h.Tick <= s.tick {
				if err := s.applyTick([]*chunk{c}); err != nil {
					return err
				}
			} else {
				s.cur = append(s.cur, c)
			}
		}
	}
	return nil
}

// Chunk takes one tick's chunk. A chunk of a ready cell applies at that
// tick's EndTick; one of a cell waiting for its snapshot is kept. Chunks
// of cells not followed are ignored. Chunk keeps data.
func (s *Store) Chunk(data []byte) error {
	ck := &chunk{}
	h, err := Decode(data, s.codecs, &ck.b)
	if err != nil {
		return err
	}
	if h.Snapshot {
		return fmt.Errorf("cellstore: a snapshot given as a tick's chunk")
	}
	st := s.cells[h.Cell]
	if st == nil {
		return nil
	}
	ck.h, ck.gen = h, st.gen
	switch {
	case !st.ready:
		st.held = append(st.held, ck)
	case h.Tick > st.last:
		if h.Prev > st.last {
			return fmt.Errorf("%w: cell %v, tick %d after %d, its last before %d", ErrGap, h.Cell, h.Tick, st.last, h.Prev)
		}
		st.last = h.Tick
		s.cur = append(s.cur, ck)
	}
	return nil
}

// EndTick applies the chunks of tick that arrived before its end marker.
func (s *Store) EndTick(tick uint64) error {
	var now, later []*chunk
	for _, c := range s.cur {
		if c.h.Tick <= tick {
			now = append(now, c)
		} else {
			later = append(later, c)
		}
	}
	s.cur = later
	s.tick = max(s.tick, tick)
	return s.applyTick(now)
}

// applySnapshot replaces what s holds of the snapshot's cell.
func (s *Store) applySnapshot(h Header, st *cell) error {
	for id, e := range s.ents {
		if e != nil && e.Cell == h.Cell && e.At <= h.Tick {
			s.remove(uint32(id))
		}
	}
	for _, sp := range s.b.Spawns {
		if err := s.entry(h, sp); err != nil {
			return err
		}
	}
	return nil
}

// applyTick applies one tick's chunks: every exit, then every entry, then
// every update, so an entity that moved between two followed cells ends
// in the new one whatever the order of the chunks.
func (s *Store) applyTick(cs []*chunk) error {
	for pass := 0; pass < 3; pass++ {
		for _, c := range cs {
			if st := s.cells[c.h.Cell]; st == nil || st.gen != c.gen || !st.ready {
				continue // taken under a follow that has ended since
			}
			h := c.h
			switch pass {
			case 0:
				for _, x := range c.b.Exits {
					if e := s.Get(uint32(x.ID)); e != nil && e.Cell == h.Cell && e.At <= h.Tick {
						s.remove(uint32(x.ID))
					}
				}
			case 1:
				for _, sp := range c.b.Spawns {
					if err := s.entry(h, sp); err != nil {
						return err
					}
				}
			case 2:
				for _, u := range c.b.Updates {
					if err := s.update(h, u); err != nil {
						return err
					}
				}
			}
		}
	}
	return nil
}

// entry replaces entity sp with its state in h's cell as of h's tick,
// unless s holds a later state of it (an entity that moved on, whose
// cell's snapshot came late).
func (s *Store) entry(h Header, sp wire.Spawn) error {
	if sp.ID == 0 || sp.ID > MaxEntityID || sp.Gen > 1<<32-1 {
		return fmt.Errorf("%w: entity %d generation %d", ErrMalformed, sp.ID, sp.Gen)
	}
	if old := s.Get(uint32(sp.ID)); old != nil && old.At > h.Tick {
		return nil
	}
	e := &Entity{ID: uint32(sp.ID), Gen: uint32(sp.Gen), Cell: h.Cell, At: h.Tick, Vals: make([]unsafe.Pointer, len(s.codecs))}
	for _, v := range sp.Comps {
		cd := s.codecs[v.Comp] // Decode checked the index
		p := cd.New()
		if _, err := cd.DecodeFull(v.Value, p); err != nil {
			return fmt.Errorf("%w: entity %d %s: %v", ErrMalformed, sp.ID, cd.Name(), err)
		}
		e.Vals[v.Comp] = p
	}
	for int(e.ID) >= len(s.ents) {
		s.ents = append(s.ents, nil)
	}
	if s.ents[e.ID] == nil {
		s.n++
	}
	s.ents[e.ID] = e
	s.touch(e.ID)
	return nil
}

// update applies an update of h's tick to an entity s holds in h's cell.
func (s *Store) update(h Header, u wire.Update) error {
	e := s.Get(uint32(u.ID))
	if e != nil && e.At > h.Tick {
		return nil // a later state came first (see entry)
	}
	if e == nil || e.Cell != h.Cell {
		return fmt.Errorf("cellstore: an update of entity %d, not held in cell %v", u.ID, h.Cell)
	}
	e.At = h.Tick
	s.touch(e.ID)
	cd := s.codecs[u.Comp]
	p := e.Vals[u.Comp]
	if p == nil {
		if u.Delta {
			return fmt.Errorf("cellstore: a delta of %s for entity %d, which lacks it", cd.Name(), u.ID)
		}
		p = cd.New()
		e.Vals[u.Comp] = p
	}
	var err error
	if u.Delta {
		_, err = cd.DecodeDelta(u.Value, p)
	} else {
		_, err = cd.DecodeFull(u.Value, p)
	}
	if err != nil {
		return fmt.Errorf("%w: entity %d %s: %v", ErrMalformed, u.ID, cd.Name(), err)
	}
	return nil
}
