package wire_test

import (
	"bytes"
	"cmp"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/ebisync/ebisync/internal/wire"
)

// TestBuilderMatchesAppendBatch: a batch built entry by entry with a
// Builder is byte for byte the batch AppendBatch writes for the same
// entries grouped by section key (insertion order kept within a key), and
// it decodes to those entries. Ids come mostly ascending, with some runs
// out of order, so sections get split as AppendBatch splits them.
func TestBuilderMatchesAppendBatch(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	var bl wire.Builder
	for round := range 300 {
		bl.Reset()
		var rest, want wire.Batch
		rest.TickAdvance = uint64(rng.IntN(3))
		for range rng.IntN(3) {
			rest.Exits = append(rest.Exits, wire.Exit{Reason: wire.ReasonOutOfRange, ID: uint64(rng.IntN(100))})
		}
		for range rng.IntN(2) {
			rest.Removals = append(rest.Removals, wire.Removal{Comp: uint64(rng.IntN(4)), ID: uint64(rng.IntN(100))})
		}
		for range rng.IntN(2) {
			rest.Results = append(rest.Results, wire.MutationResult{Request: uint64(rng.IntN(9)), Status: wire.StatusOk})
		}
		want.TickAdvance = rest.TickAdvance
		want.Exits = rest.Exits
		want.Removals = rest.Removals
		want.Results = rest.Results
		id := uint64(0)
		for range rng.IntN(60) {
			switch rng.IntN(12) {
			case 0:
				id = uint64(rng.IntN(50)) // out of order now and then
			case 1:
				// the same id again (another component, or a repeat)
			default:
				id += 1 + uint64(rng.IntN(300))
			}
			if rng.IntN(4) == 0 {
				comps := []wire.CompValue{}
				for c := range rng.IntN(3) {
					comps = append(comps, wire.CompValue{Comp: uint64(c), Value: fakeValue(rng)})
				}
				gen := 1 + uint64(rng.IntN(3))
				bl.Spawn(id, gen, comps)
				want.AddSpawn(id, gen, comps)
				continue
			}
			u := wire.Update{Comp: uint64(rng.IntN(5)), ID: id, Delta: rng.IntN(2) == 0, Value: fakeValue(rng)}
			bl.Update(u.Comp, u.ID, u.Delta, u.Value)
			want.Updates = append(want.Updates, u)
		}
		slices.SortStableFunc(want.Updates, func(x, y wire.Update) int {
			if c := cmp.Compare(x.Comp, y.Comp); c != 0 {
				return c
			}
			if x.Delta == y.Delta {
				return 0
			}
			if x.Delta {
				return 1
			}
			return -1
		})
		got := wire.AppendBatchBuilt(nil, &rest, &bl)
		exp := wire.AppendBatch(nil, &want)
		if !bytes.Equal(got, exp) {
			t.Fatalf("round %d: built %x\nwant %x", round, got, exp)
		}
		var dec wire.Batch
		if err := wire.DecodeBatch(got[1:], fakeSizer{}, &dec); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		assert(t, len(dec.Spawns) == len(want.Spawns) && len(dec.Updates) == len(want.Updates),
			"round %d: decoded %d spawns, %d updates; want %d, %d", round, len(dec.Spawns), len(dec.Updates), len(want.Spawns), len(want.Updates))
		assert(t, bl.Empty() == (len(want.Spawns)+len(want.Updates) == 0), "round %d: Empty", round)
	}
}
