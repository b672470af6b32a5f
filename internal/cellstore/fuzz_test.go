package cellstore_test

import (
	"encoding/binary"
	"errors"
	"slices"
	"testing"

	"github.com/yohamta/donburi"

	"github.com/ebisync/ebisync/components"
	"github.com/ebisync/ebisync/internal/cellstore"
	"github.com/ebisync/ebisync/internal/codec"
	"github.com/ebisync/ebisync/internal/wire"
	"github.com/ebisync/ebisync/plugin"
)

// chunks is a Publisher that keeps what it is given.
type chunks struct{ data [][]byte }

func (c *chunks) Chunk(ch plugin.Chunk) { c.data = append(c.data, slices.Clone(ch.Data)) }
func (c *chunks) TickEnd(uint64, int)   {}

func codecs(reg *components.Registry) []*codec.Codec {
	var out []*codec.Codec
	for _, c := range reg.All() {
		out = append(out, codec.Of(c))
	}
	return out
}

// op appends one operation of FuzzStore's input: a kind byte, a 2-byte
// length and the payload.
func op(dst []byte, kind byte, payload []byte) []byte {
	dst = append(dst, kind)
	dst = binary.LittleEndian.AppendUint16(dst, uint16(len(payload)))
	return append(dst, payload...)
}

// FuzzStore drives a Store with arbitrary sequences of follows, chunks,
// snapshots, tick ends and unfollows. Whatever the bytes, it never panics,
// and Len counts exactly the entities Entities visits.
func FuzzStore(f *testing.F) {
	reg := components.NewRegistry()
	components.RegisterStandard(reg)
	cs := codecs(reg)
	// Seeds: real chunks and a real snapshot of a small World.
	w := donburi.NewWorld()
	log := &chunks{}
	s := plugin.New(w, reg, &plugin.Options{Publish: log, PublishCellSize: 100})
	defer s.Close()
	var snap []byte
	_ = s.Snapshot(false, 0, 0, func(c plugin.Chunk) { snap = slices.Clone(c.Data) })
	var es []donburi.Entity
	for i := 0; i < 6; i++ {
		e := w.Create(components.Replicated, components.Position, components.Health)
		components.Position.SetValue(w.Entry(e), components.PositionData{X: float64(i * 30), Y: 10})
		es = append(es, e)
	}
	var seed []byte
	seed = op(seed, 0, []byte{0, 0, 0})
	for tick := 1; tick <= 4; tick++ {
		for _, e := range es {
			components.Position.Get(w.Entry(e)).X += 40
		}
		if tick == 3 {
			w.Remove(es[0])
		}
		log.data = log.data[:0]
		s.Tick()
		if snap != nil && tick == 1 {
			seed = op(seed, 2, snap)
		}
		for _, c := range log.data {
			seed = op(seed, 1, c)
		}
		seed = op(seed, 3, binary.AppendUvarint(nil, uint64(tick)))
	}
	seed = op(seed, 4, []byte{0, 0, 0})
	f.Add(seed)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, in []byte) {
		st := cellstore.New(cs)
		gens := []uint64{0}
		for len(in) >= 3 {
			kind := in[0]
			n := int(binary.LittleEndian.Uint16(in[1:3]))
			in = in[3:]
			if n > len(in) {
				n = len(in)
			}
			p := slices.Clone(in[:n])
			in = in[n:]
			cell := cellstore.Cell{Global: len(p) > 0 && p[0]&1 != 0}
			if len(p) > 2 && !cell.Global {
				cell.X, cell.Y = int32(int8(p[1])), int32(int8(p[2]))
			}
			switch kind % 5 {
			case 0:
				gens = append(gens, st.Follow(cell))
			case 1:
				_ = st.Chunk(p)
			case 2:
				g := gens[len(gens)-1]
				if len(p) > 0 && p[0]&2 != 0 {
					g = gens[int(p[0])%len(gens)]
				}
				_ = st.Snapshot(g, p)
			case 3:
				tick, _ := binary.Uvarint(p)
				_ = st.EndTick(tick)
			case 4:
				st.Unfollow(cell)
			}
			seen := 0
			st.Entities(func(*cellstore.Entity) { seen++ })
			if seen != st.Len() {
				t.Fatalf("Len %d, Entities visits %d", st.Len(), seen)
			}
		}
	})
}

// TestHugeIDRefused: an entry naming a net id past MaxEntityID is refused
// before the store grows to hold it.
func TestHugeIDRefused(t *testing.T) {
	reg := components.NewRegistry()
	components.RegisterStandard(reg)
	st := cellstore.New(codecs(reg))
	gen := st.Follow(cellstore.Cell{})
	for _, id := range []uint64{cellstore.MaxEntityID + 1, 1<<32 - 1} {
		var b wire.Batch
		var bl wire.Builder
		bl.Spawn(id, 1, nil)
		snap := []byte{1}                    // chunk version
		snap = binary.AppendUvarint(snap, 5) // tick
		snap = binary.AppendUvarint(snap, 0) // prev
		snap = append(snap, 2)               // flags: snapshot
		snap = binary.AppendVarint(snap, 0)  // x
		snap = binary.AppendVarint(snap, 0)  // y
		snap = wire.AppendBatchBuilt(snap, &b, &bl)
		if err := st.Snapshot(gen, snap); !errors.Is(err, cellstore.ErrMalformed) {
			t.Fatalf("a snapshot naming entity %d: %v, want ErrMalformed", id, err)
		}
	}
	// The same chunk with a small id is taken: the refusal is the id's.
	var b wire.Batch
	var bl wire.Builder
	bl.Spawn(7, 1, nil)
	snap := append([]byte{1}, 5, 0, 2, 0, 0)
	snap = wire.AppendBatchBuilt(snap, &b, &bl)
	if err := st.Snapshot(gen, snap); err != nil {
		t.Fatal(err)
	}
	if st.Len() != 1 || st.Get(7) == nil {
		t.Fatalf("the store holds %d entities, want entity 7", st.Len())
	}
}
