package plugin_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"
	"unsafe"

	"github.com/yohamta/donburi"

	"github.com/ebisync/ebisync/components"
	"github.com/ebisync/ebisync/internal/testutil"
	"github.com/ebisync/ebisync/internal/wire"
	"github.com/ebisync/ebisync/plugin"
)

// rawMirror replays a raw client's batches into a model of its mirror and
// checks the protocol's invariants on the way.
type rawMirror struct {
	reg  *components.Registry
	ents map[uint64]map[uint64]unsafe.Pointer // net id → comp → value
	gens map[uint64]uint64
	seen int // batches applied
}

func newRawMirror(reg *components.Registry) *rawMirror {
	return &rawMirror{reg: reg, ents: map[uint64]map[uint64]unsafe.Pointer{}, gens: map[uint64]uint64{}}
}

func (m *rawMirror) apply(bodies []wire.Batch) error {
	for ; m.seen < len(bodies); m.seen++ {
		b := &bodies[m.seen]
		for _, ex := range b.Exits {
			if _, ok := m.ents[ex.ID]; !ok {
				return fmt.Errorf("batch %d: exit (reason %d) of entity %d the client never saw", m.seen, ex.Reason, ex.ID)
			}
			delete(m.ents, ex.ID)
		}
		for _, sp := range b.Spawns {
			if _, ok := m.ents[sp.ID]; ok {
				return fmt.Errorf("batch %d: entity %d spawned twice", m.seen, sp.ID)
			}
			cs := map[uint64]unsafe.Pointer{}
			for _, cv := range sp.Comps {
				c := codecAt(m.reg, int(cv.Comp))
				v := c.New()
				if _, err := c.DecodeFull(cv.Value, v); err != nil {
					return err
				}
				cs[cv.Comp] = v
			}
			m.ents[sp.ID] = cs
			m.gens[sp.ID] = sp.Gen
		}
		for _, rm := range b.Removals {
			cs, ok := m.ents[rm.ID]
			if !ok {
				return fmt.Errorf("batch %d: removal on unknown entity %d", m.seen, rm.ID)
			}
			delete(cs, rm.Comp)
		}
		for _, u := range b.Updates {
			cs, ok := m.ents[u.ID]
			if !ok {
				return fmt.Errorf("batch %d: update of unknown entity %d", m.seen, u.ID)
			}
			c := codecAt(m.reg, int(u.Comp))
			v, ok := cs[u.Comp]
			if u.Delta {
				if !ok {
					return fmt.Errorf("batch %d: delta for %s the client does not hold on %d", m.seen, c.Name(), u.ID)
				}
				if _, err := c.DecodeDelta(u.Value, v); err != nil {
					return err
				}
				continue
			}
			if !ok {
				v = c.New()
				cs[u.Comp] = v
			}
			if _, err := c.DecodeFull(u.Value, v); err != nil {
				return err
			}
		}
	}
	return nil
}

// expectation is the server's view of one entity as a client should see it.
type expectation struct {
	gen   uint64
	comps map[uint64]unsafe.Pointer
}

// diff compares the mirror with the expected view; allowed lists entities
// that may be present or absent (the hysteresis band).
func (m *rawMirror) diff(want map[uint64]expectation, allowed map[uint64]bool) error {
	for id, exp := range want {
		cs, ok := m.ents[id]
		if !ok {
			return fmt.Errorf("entity %d missing from mirror", id)
		}
		if m.gens[id] != exp.gen {
			return fmt.Errorf("entity %d: generation %d, want %d", id, m.gens[id], exp.gen)
		}
		if len(cs) != len(exp.comps) {
			return fmt.Errorf("entity %d: %d components, want %d", id, len(cs), len(exp.comps))
		}
		for ci, v := range exp.comps {
			got, ok := cs[ci]
			c := codecAt(m.reg, int(ci))
			if !ok {
				return fmt.Errorf("entity %d: missing %s", id, c.Name())
			}
			if !c.Equal(got, v) {
				return fmt.Errorf("entity %d: %s differs", id, c.Name())
			}
		}
	}
	for id := range m.ents {
		if _, ok := want[id]; !ok && !allowed[id] {
			return fmt.Errorf("entity %d in mirror but not in the client's view", id)
		}
	}
	return nil
}

// view computes, on the game goroutine, what a client subscribed to subs
// with interest (cx, cy, r) — r 0 for global — should hold; entities within
// the hysteresis band go to band.
func view(w donburi.World, reg *components.Registry, subs map[int]bool, cx, cy, r, hyst float64) (map[uint64]expectation, map[uint64]bool) {
	want := map[uint64]expectation{}
	band := map[uint64]bool{}
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
			if r > 0 && entry.HasComponent(components.Position) {
				p := components.Position.Get(entry)
				d := math.Hypot(p.X-cx, p.Y-cy)
				if d > r*hyst {
					continue
				}
				if d > r {
					band[uint64(tag.NetID)] = true
					continue
				}
			}
			exp := expectation{gen: uint64(tag.Gen), comps: map[uint64]unsafe.Pointer{}}
			for _, c := range codecsOf(reg) {
				if subs[c.Index()] && entry.HasComponent(c.ComponentType()) {
					v := c.New()
					c.Copy(v, entry.Component(c.ComponentType()))
					exp.comps[uint64(c.Index())] = v
				}
			}
			want[uint64(tag.NetID)] = exp
		}
	}
	return want, band
}

func subscribeTo(rc *rawClient, idx ...int) map[int]bool {
	var subs []wire.Sub
	m := map[int]bool{}
	for _, i := range idx {
		subs = append(subs, wire.Sub{Kind: wire.SubComponent, ID: uint64(i)})
		m[i] = true
	}
	rc.send(wire.AppendSubscribe(nil, wire.KindSubscribe, &wire.Subscribe{Subs: subs}))
	return m
}

// churn applies one round of random spawns, changes, component adds and
// removals, moves and despawns.
func churn(w donburi.World, rng *rand.Rand, live *[]donburi.Entity, size float64, spawns int) {
	ents := *live
	for i := 0; i < spawns; i++ {
		e := w.Create(components.Replicated, components.Position, components.Health)
		entry := w.Entry(e)
		components.Position.SetValue(entry, components.PositionData{X: rng.Float64() * size, Y: rng.Float64() * size})
		components.Health.SetValue(entry, components.HealthData{Current: int32(rng.IntN(100)), Max: 100})
		if rng.IntN(3) == 0 {
			entry.AddComponent(components.Name)
			components.Name.SetValue(entry, components.NameData{Value: fmt.Sprintf("n%d", rng.IntN(1000))})
		}
		ents = append(ents, e)
	}
	for i := 0; i < len(ents); i++ {
		e := ents[i]
		if !w.Valid(e) {
			continue
		}
		entry := w.Entry(e)
		switch rng.IntN(30) {
		case 0:
			if rng.IntN(10) != 0 {
				continue
			}
			w.Remove(e)
			ents[i] = ents[len(ents)-1]
			ents = ents[:len(ents)-1]
			i--
		case 1, 2, 3, 4, 5, 6, 7, 8:
			p := components.Position.Get(entry)
			p.X = math.Mod(p.X+rng.NormFloat64()*size/20+size, size)
			p.Y = math.Mod(p.Y+rng.NormFloat64()*size/20+size, size)
		case 9:
			components.Health.Get(entry).Current = int32(rng.IntN(100))
		case 10:
			if entry.HasComponent(components.Name) {
				entry.RemoveComponent(components.Name)
			} else {
				entry.AddComponent(components.Name)
				components.Name.SetValue(entry, components.NameData{Value: fmt.Sprintf("m%d", rng.IntN(1000))})
			}
		case 11:
			if entry.HasComponent(components.Velocity) {
				entry.RemoveComponent(components.Velocity)
			} else {
				entry.AddComponent(components.Velocity)
				components.Velocity.SetValue(entry, components.VelocityData{X: rng.Float64(), Y: -rng.Float64()})
			}
		}
	}
	*live = ents
}

func TestInterestConvergence(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 7))
	reg := standardRegistry()
	const size, radius, hyst = 2000.0, 350.0, 1.2
	h := newHarness(t, reg, &plugin.Options{CellSize: 100, Hysteresis: hyst, RescanInterval: 5}, 2*time.Millisecond)
	defer h.close()

	type watcher struct {
		rc     *rawClient
		m      *rawMirror
		subs   map[int]bool
		cx, cy float64
		r      float64
	}
	pos, _ := reg.Of(components.Position)
	health, _ := reg.Of(components.Health)
	name, _ := reg.Of(components.Name)
	var ws []*watcher
	for i := 0; i < 4; i++ {
		rc := dialRaw(t, h.url, reg, true)
		defer rc.close()
		wt := &watcher{rc: rc, m: newRawMirror(reg), r: radius}
		switch i {
		case 0:
			wt.subs = subscribeTo(rc, pos.Index(), health.Index(), name.Index())
			wt.r = 0 // global
		case 1:
			wt.subs = subscribeTo(rc, pos.Index(), health.Index())
		default:
			wt.subs = subscribeTo(rc, pos.Index(), name.Index())
		}
		if wt.r > 0 {
			wt.cx, wt.cy = rng.Float64()*size, rng.Float64()*size
			rc.send(wire.AppendInterest(nil, &wire.Interest{Mode: wire.InterestPoint, X: wt.cx, Y: wt.cy, Radius: wt.r}))
		}
		ws = append(ws, wt)
	}
	var live []donburi.Entity
	h.do(func(w donburi.World) { churn(w, rng, &live, size, 300) })
	for round := 0; round < 150; round++ {
		h.do(func(w donburi.World) { churn(w, rng, &live, size, 1+rng.IntN(4)) })
		if round%10 == 0 {
			for _, wt := range ws[1:] {
				wt.cx = math.Mod(wt.cx+rng.NormFloat64()*200+size, size)
				wt.cy = math.Mod(wt.cy+rng.NormFloat64()*200+size, size)
				wt.rc.send(wire.AppendInterest(nil, &wire.Interest{Mode: wire.InterestPoint, X: wt.cx, Y: wt.cy, Radius: wt.r}))
			}
		}
		h.ticks(1)
		for _, wt := range ws {
			_, bodies, err := wt.rc.snapshot()
			if err != nil {
				t.Fatal(err)
			}
			if err := wt.m.apply(bodies); err != nil {
				t.Fatal(err)
			}
		}
	}
	h.ticks(12) // settle: a full rescan interval and more
	for i, wt := range ws {
		var want map[uint64]expectation
		var band map[uint64]bool
		h.do(func(w donburi.World) { want, band = view(w, reg, wt.subs, wt.cx, wt.cy, wt.r, hyst) })
		testutil.Eventually(t, 5*time.Second, fmt.Sprintf("client %d to converge", i), func() bool {
			_, bodies, _ := wt.rc.snapshot()
			if err := wt.m.apply(bodies); err != nil {
				t.Fatal(err)
			}
			return wt.m.diff(want, band) == nil
		})
		t.Logf("client %d: %d entities in view (%d in the band), mirror holds %d", i, len(want), len(band), len(wt.m.ents))
		if len(want) == 0 {
			t.Errorf("client %d sees nothing: the test is not testing", i)
		}
	}
}
