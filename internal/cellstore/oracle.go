package cellstore

import (
	"fmt"
	"math"
	"unsafe"

	"github.com/yohamta/donburi"

	"github.com/ebisync/ebisync/components"
	"github.com/ebisync/ebisync/internal/codec"
)

// Expected returns what a Store following the cells for which follow
// returns true should hold of w, the server's World, after the tick that
// left w as it is: every replicated entity in those cells (by
// components.Position and cellSize; the global cell holds the entities
// without a position), with copies of its values. It is the convergence
// oracle of the tests of published chunks; call it on the World's
// goroutine.
func Expected(w donburi.World, codecs []*codec.Codec, cellSize float64, follow func(Cell) bool) map[uint32]*Entity {
	want := map[uint32]*Entity{}
	for _, a := range w.Archetypes() {
		if !a.Layout().HasComponent(components.Replicated) {
			continue
		}
		for _, e := range a.Entities() {
			entry := w.Entry(e)
			tag := components.Replicated.Get(entry)
			if tag.NetID == 0 {
				continue
			}
			c := Cell{Global: true}
			if entry.HasComponent(components.Position) {
				p := components.Position.Get(entry)
				c = Cell{X: int32(math.Floor(p.X / cellSize)), Y: int32(math.Floor(p.Y / cellSize))}
			}
			if !follow(c) {
				continue
			}
			ent := &Entity{ID: tag.NetID, Gen: tag.Gen, Cell: c, Vals: make([]unsafe.Pointer, len(codecs))}
			for i, cd := range codecs {
				if entry.HasComponent(cd.ComponentType()) {
					v := cd.New()
					cd.Copy(v, entry.Component(cd.ComponentType()))
					ent.Vals[i] = v
				}
			}
			want[ent.ID] = ent
		}
	}
	return want
}

// Diff returns nil when s holds exactly want (as Expected returns it),
// values compared with each codec's Equal, and otherwise the first
// difference it finds.
func (s *Store) Diff(want map[uint32]*Entity) error {
	for id, w := range want {
		g := s.Get(id)
		switch {
		case g == nil:
			return fmt.Errorf("entity %d (cell %v) missing", id, w.Cell)
		case g.Gen != w.Gen:
			return fmt.Errorf("entity %d: generation %d, want %d", id, g.Gen, w.Gen)
		case g.Cell != w.Cell:
			return fmt.Errorf("entity %d: in cell %v, want %v", id, g.Cell, w.Cell)
		}
		for i, cd := range s.codecs {
			gv, wv := g.Vals[i], w.Vals[i]
			switch {
			case (gv == nil) != (wv == nil):
				return fmt.Errorf("entity %d: has %s %v, want %v", id, cd.Name(), gv != nil, wv != nil)
			case gv != nil && !cd.Equal(gv, wv):
				return fmt.Errorf("entity %d: %s differs", id, cd.Name())
			}
		}
	}
	for id, g := range s.ents {
		if g != nil && want[uint32(id)] == nil {
			return fmt.Errorf("entity %d (cell %v) held but not expected", id, g.Cell)
		}
	}
	return nil
}
