package plugin

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"

	"github.com/yohamta/donburi"

	"github.com/ebisync/ebisync/components"
	"github.com/ebisync/ebisync/internal/wire"
)

// attachCapture adds a client whose writer keeps a copy of every batch;
// take returns and forgets the copies so far.
func attachCapture(s *Server) (c *client, take func() [][]byte, stop func()) {
	var mu sync.Mutex
	var got [][]byte
	c, stop = attachWriter(s, func(b []byte) {
		mu.Lock()
		got = append(got, bytes.Clone(b))
		mu.Unlock()
	})
	take = func() [][]byte {
		mu.Lock()
		defer mu.Unlock()
		b := got
		got = nil
		return b
	}
	return c, take, stop
}

// TestFastPathSameBytes: the shortcuts for the common cases, the quick
// check of an unchanged entity (unchanged) and the fast path for the
// common view of a changed one (emitFast), change nothing that is sent.
// Two servers run the same random game, one with both off; every
// batch of every client must be byte for byte the same, with a batch every
// tick and with one every third tick (changes of the ticks between wait as
// dirty views, which the fast path must leave to the general one).
func TestFastPathSameBytes(t *testing.T) {
	for _, sendRate := range []int{60, 20} {
		t.Run(fmt.Sprintf("SendRate=%d", sendRate), func(t *testing.T) {
			a := newFastPathGame(t, sendRate, false)
			b := newFastPathGame(t, sendRate, true)
			for i := range a.takes {
				a.takes[i]()
				b.takes[i]()
			}
			for tick := 0; tick < 300; tick++ {
				a.step(tick)
				b.step(tick)
				for i := range a.takes {
					ga, gb := a.takes[i](), b.takes[i]()
					if len(ga) != len(gb) {
						t.Fatalf("tick %d client %d: %d batches with the fast path, %d without", tick, i, len(ga), len(gb))
					}
					for k := range ga {
						if !bytes.Equal(ga[k], gb[k]) {
							t.Fatalf("tick %d client %d: batches differ\nfast:    %x\ngeneral: %x", tick, i, ga[k], gb[k])
						}
					}
				}
			}
			// The comparison means something only if the fast path ran,
			// and the general one too.
			if a.s.test.fastViews < 1000 || b.s.test.fastViews != 0 {
				t.Fatalf("fast path wrote %d views (want many) and %d with it off (want 0)", a.s.test.fastViews, b.s.test.fastViews)
			}
			// Every archetype took the quick check, odd sizes included.
			for k := range a.s.archs {
				if ar := &a.s.archs[k]; !a.s.planQuick(ar) {
					t.Fatalf("archetype %d (components %b) has no quick check", ar.index, ar.mask)
				}
			}
			t.Logf("fast path: %d views", a.s.test.fastViews)
		})
	}
}

// Components whose sizes are not whole 8-byte words (the quick check
// compares them with unaligned loads, codec.SameBits), and one larger than 4
// words.
type (
	tintData struct{ RGBA [4]uint8 }
	vec3Data struct{ X, Y, Z float32 }
	bigData  struct{ A, B, C, D, E float64 }
)

var (
	tint = donburi.NewComponentType[tintData]()
	vec3 = donburi.NewComponentType[vec3Data]()
	big  = donburi.NewComponentType[bigData]()
)

type fastPathGame struct {
	t     *testing.T
	s     *Server
	w     donburi.World
	rng   *rand.Rand
	ents  []donburi.Entity
	takes []func() [][]byte
}

func newFastPathGame(t *testing.T, sendRate int, noFast bool) *fastPathGame {
	reg := components.NewRegistry()
	components.RegisterStandard(reg)
	components.Register(reg, "test.tint", tint, nil)
	components.Register(reg, "test.vec3", vec3, nil)
	components.Register(reg, "test.big", big, nil)
	w := donburi.NewWorld()
	s := New(w, reg, &Options{CellSize: 100, TickRate: 60, SendRate: sendRate})
	s.test.noFastPath, s.test.noQuick = noFast, noFast
	g := &fastPathGame{t: t, s: s, w: w, rng: rand.New(rand.NewPCG(7, 8))}
	for range 300 {
		g.spawn()
	}
	pos, _ := reg.Of(components.Position)
	health, _ := reg.Of(components.Health)
	for i := range 8 {
		c, take, stop := attachCapture(s)
		t.Cleanup(stop)
		g.takes = append(g.takes, take)
		c.typeSubs = 1 << uint(pos.Index())
		if i%2 == 1 {
			c.typeSubs |= 1 << uint(health.Index())
		}
		if i%3 != 0 {
			for _, ct := range []donburi.IComponentType{tint, vec3, big} {
				oc, _ := reg.Of(ct)
				c.typeSubs |= 1 << uint(oc.Index())
			}
		}
		if i == 7 {
			continue // global interest
		}
		c.mode = wire.InterestPoint
		c.cx, c.cy = g.rng.Float64()*1000, g.rng.Float64()*1000
		c.setRadius(250)
	}
	// One client also follows a few entities by id.
	c := s.clients[2]
	for _, e := range g.ents[:5] {
		g.tick() // gives the entities their net ids
		tag := components.Replicated.Get(w.Entry(e))
		s.subscribe(c, []wire.Sub{{Kind: wire.SubEntity, ID: uint64(tag.NetID), Gen: uint64(tag.Gen)}}, true)
	}
	return g
}

func (g *fastPathGame) spawn() {
	var e donburi.Entity
	if g.rng.IntN(4) == 0 {
		e = g.w.Create(components.Replicated, components.Position)
	} else {
		e = g.w.Create(components.Replicated, components.Position, components.Health)
		components.Health.SetValue(g.w.Entry(e), components.HealthData{Current: 100, Max: 100})
	}
	entry := g.w.Entry(e)
	components.Position.SetValue(entry, components.PositionData{X: g.rng.Float64() * 1000, Y: g.rng.Float64() * 1000})
	if g.rng.IntN(2) == 0 {
		donburi.Add(entry, tint, &tintData{RGBA: [4]uint8{1, 2, 3, 4}})
		donburi.Add(entry, vec3, &vec3Data{X: 1, Y: 2, Z: 3})
		donburi.Add(entry, big, &bigData{A: 1, E: 5})
	}
	g.ents = append(g.ents, e)
}

// step plays one tick of random changes (the same on both servers, whose
// generators have the same seed) and waits for every batch.
func (g *fastPathGame) step(tick int) {
	for _, e := range g.ents {
		switch k := g.rng.IntN(100); {
		case k < 20:
			p := components.Position.Get(g.w.Entry(e))
			p.X += g.rng.Float64()*20 - 10
			p.Y += g.rng.Float64()*20 - 10
		case k < 22:
			// Below the quantum: no update, but a move in the spatial
			// index, which the quick check must not miss.
			components.Position.Get(g.w.Entry(e)).X += 0.001
		case k < 25:
			if entry := g.w.Entry(e); entry.HasComponent(components.Health) {
				components.Health.Get(entry).Current = int32(g.rng.IntN(100))
			}
		case k < 28:
			// Only the last bytes of one value: those past its last whole
			// word for the odd sizes.
			if entry := g.w.Entry(e); entry.HasComponent(tint) {
				switch k {
				case 25:
					tint.Get(entry).RGBA[3]++
				case 26:
					vec3.Get(entry).Z++
				default:
					big.Get(entry).E++
				}
			}
		}
	}
	if tick%7 == 0 {
		i := g.rng.IntN(len(g.ents))
		g.w.Remove(g.ents[i])
		g.ents = append(g.ents[:i], g.ents[i+1:]...)
		g.spawn()
	}
	if tick%11 == 0 {
		entry := g.w.Entry(g.ents[g.rng.IntN(len(g.ents))])
		if entry.HasComponent(components.Health) {
			entry.RemoveComponent(components.Health)
		} else {
			donburi.Add(entry, components.Health, &components.HealthData{Current: 1, Max: 5})
		}
	}
	if tick%13 == 0 {
		c := g.s.clients[g.rng.IntN(7)]
		c.cx += g.rng.Float64()*200 - 100
	}
	g.tick()
}

// tick runs the server's tick and waits until every writer is idle, so
// that no client is skipped as busy: both servers must decide alike.
func (g *fastPathGame) tick() {
	g.s.Tick()
	for _, c := range g.s.clients {
		for c.cn.busy.Load() {
			runtime.Gosched()
		}
	}
}

// TestStorageReadsMatchEntry holds detection's way of reading donburi
// values, the storage reader (the public Storage.Component, by archetype
// and row in Archetype.Entities()), against Entry.Component, after
// entities were created, removed and moved between archetypes. It is the
// one assumption detection makes about donburi: that an entity's row in
// its archetype is its row in every component storage.
func TestStorageReadsMatchEntry(t *testing.T) {
	for seed := uint64(1); seed <= 2; seed++ {
		w := churnedWorld(seed)
		store := w.StorageAccessor().Components
		checked := 0
		for ai, arch := range w.Archetypes() {
			for _, ct := range []donburi.IComponentType{components.Replicated, components.Position, components.Health} {
				if !arch.Layout().HasComponent(ct) {
					continue
				}
				read := storageReader(store.Storage(ct).Component, ai)
				for i, e := range arch.Entities() {
					want := w.Entry(e).Component(ct)
					if got := read(i); got != want {
						t.Fatalf("world %d archetype %d entity %d (%v): storage reader %p, Entry.Component %p", seed, ai, i, e, got, want)
					}
					checked++
				}
			}
		}
		if checked < 300 {
			t.Fatalf("world %d: only %d values checked", seed, checked)
		}
	}
}

// churnedWorld returns a World whose replicated entities went through
// random creates, removes and archetype moves (Health added and removed),
// so values no longer sit in creation order.
func churnedWorld(seed uint64) donburi.World {
	w := donburi.NewWorld()
	rng := rand.New(rand.NewPCG(seed, seed))
	var ents []donburi.Entity
	for range 200 {
		ents = append(ents, w.Create(components.Replicated, components.Position))
	}
	for i := 0; i < 300; i++ {
		k := rng.IntN(len(ents))
		switch rng.IntN(3) {
		case 0:
			w.Remove(ents[k])
			ents = append(ents[:k], ents[k+1:]...)
		case 1:
			entry := w.Entry(ents[k])
			if entry.HasComponent(components.Health) {
				entry.RemoveComponent(components.Health)
			} else {
				donburi.Add(entry, components.Health, &components.HealthData{})
			}
		default:
			ents = append(ents, w.Create(components.Replicated, components.Position, components.Health))
		}
	}
	return w
}
