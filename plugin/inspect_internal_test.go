package plugin

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"

	"github.com/yohamta/donburi"

	"github.com/ebisync/ebisync/components"
	"github.com/ebisync/ebisync/internal/cputime"
)

// steadyGame is TestTickSteadyStateAllocs's game: 2000 entities, a tenth
// of them oscillating each tick, and 20 clients whose writers take every
// batch at once.
func steadyGame(t testing.TB) (s *Server, step func(), stop func()) {
	reg := components.NewRegistry()
	components.RegisterStandard(reg)
	w := donburi.NewWorld()
	s = New(w, reg, &Options{CellSize: 200})
	rng := rand.New(rand.NewPCG(3, 4))
	const size = 4000.0
	ents := make([]donburi.Entity, 2000)
	for i := range ents {
		e := w.Create(components.Replicated, components.Position, components.Health, components.Name)
		components.Position.SetValue(w.Entry(e), components.PositionData{X: rng.Float64() * size, Y: rng.Float64() * size})
		components.Name.SetValue(w.Entry(e), components.NameData{Value: fmt.Sprintf("rock %d", i)})
		ents[i] = e
	}
	pos, _ := reg.Of(components.Position)
	var stops []func()
	for range 20 {
		_, stop := attachSink(s, rng.Float64()*size, rng.Float64()*size, 600, 1<<uint(pos.Index()))
		stops = append(stops, stop)
	}
	phase := 0.0
	step = func() {
		phase++
		d := 3 * math.Sin(phase)
		for i, e := range ents {
			if i%10 == int(phase)%10 {
				components.Position.Get(w.Entry(e)).X += d
			}
		}
		s.Tick()
		for _, c := range s.clients {
			for c.cn.busy.Load() {
				runtime.Gosched()
			}
		}
	}
	return s, step, func() {
		for _, f := range stops {
			f()
		}
	}
}

// TestInspectorClosedCostsNothing: a server with an Inspector that nobody
// has open ticks without allocating (as TestTickSteadyStateAllocs without
// one) and takes no snapshot.
func TestInspectorClosedCostsNothing(t *testing.T) {
	s, step, stop := steadyGame(t)
	defer stop()
	in := s.Inspector(&InspectorOptions{Authenticate: StaticToken("t", Identity{User: "ops"})})
	for range 200 {
		step()
	}
	if a := testing.AllocsPerRun(100, step); a != 0 {
		t.Fatalf("%.1f allocations per tick with the Inspector closed, want 0", a)
	}
	in.mu.Lock()
	raw := in.raw
	in.mu.Unlock()
	if raw != nil || !in.lastSnap.IsZero() {
		t.Fatal("the Inspector took a snapshot while nobody had it open")
	}
	if st := s.Stats(); st.TickHistogram.Count() != st.Ticks {
		t.Errorf("the tick histogram counts %d ticks of %d", st.TickHistogram.Count(), st.Ticks)
	}
}

// TestInspectorSnapshotRate: while an Inspector is open, the tick takes a
// snapshot at most once per interval, however fast it ticks; the snapshot
// is a copy that later changes to the World do not reach.
func TestInspectorSnapshotRate(t *testing.T) {
	s, step, stop := steadyGame(t)
	defer stop()
	in := s.Inspector(&InspectorOptions{Authenticate: StaticToken("t", Identity{User: "ops"}), Interval: 200 * time.Millisecond})
	for range 50 {
		step()
	}
	in.demand.Add(1) // a page opens
	defer in.demand.Add(-1)
	defer in.watchEntity(1)()
	snaps, ticks := 0, 0
	var first *inspSnap
	start := time.Now()
	for time.Since(start) < 700*time.Millisecond {
		in.mu.Lock()
		ready := in.ready
		in.mu.Unlock()
		step()
		ticks++
		select {
		case <-ready:
			snaps++
			if first == nil {
				in.mu.Lock()
				first = in.raw
				in.mu.Unlock()
			}
		default:
		}
	}
	elapsed := time.Since(start)
	if most := int(elapsed/in.opts.Interval) + 1; snaps < 1 || snaps > most {
		t.Fatalf("%d snapshots in %d ticks over %v, want 1 to %d", snaps, ticks, elapsed, most)
	}
	t.Logf("%d snapshots in %d ticks over %v; the first took %v on the game goroutine", snaps, ticks, elapsed.Round(time.Millisecond), first.cost)
	if len(first.ents) != 2000 || first.acc.ticks == 0 {
		t.Fatalf("the snapshot lists %d entities over %d ticks", len(first.ents), first.acc.ticks)
	}
	vals := first.values[1]
	if vals == nil {
		t.Fatal("the snapshot lacks the watched entity's values")
	}
	// The copy stays as it was while the World moves on.
	pos, _ := s.reg.Of(components.Position)
	var before components.PositionData
	for _, c := range vals.comps {
		if c.index == pos.Index() {
			before = *(*components.PositionData)(c.val)
		}
	}
	components.Position.Get(s.world.Entry(s.recs[1].entity)).X += 1000
	for range 5 {
		step()
	}
	for _, c := range vals.comps {
		if c.index == pos.Index() && *(*components.PositionData)(c.val) != before {
			t.Fatal("the snapshot's value changed with the World")
		}
	}
}

// BenchmarkTickInspector measures the tick at 10 000 entities and 500
// clients (as BenchmarkTickInternal) with an Inspector closed and open
// (snapshots at the default interval, one entity's values watched), and
// reports the open one's extra cost over the closed one as extra-%, and
// the last snapshot's time on the game goroutine as snapshot-µs.
func BenchmarkTickInspector(b *testing.B) {
	var closed float64
	for _, open := range []bool{false, true} {
		name := "closed"
		if open {
			name = "open"
		}
		b.Run(name, func(b *testing.B) {
			ns := benchInspector(b, 10000, 500, open)
			if !open {
				closed = ns
			} else if closed > 0 {
				b.ReportMetric(100*(ns-closed)/closed, "extra-%")
			}
		})
	}
}

// benchInspector returns the tick's CPU time in nanoseconds.
func benchInspector(b *testing.B, nEnt, nCli int, open bool) float64 {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	reg := components.NewRegistry()
	components.RegisterStandard(reg)
	w := donburi.NewWorld()
	s := New(w, reg, &Options{CellSize: 200})
	const size = 10000.0
	radius := math.Sqrt(0.05 * size * size / math.Pi)
	rng := rand.New(rand.NewPCG(1, 2))
	ents := make([]donburi.Entity, nEnt)
	for i := range ents {
		e := w.Create(components.Replicated, components.Position, components.Health)
		components.Position.SetValue(w.Entry(e), components.PositionData{X: rng.Float64() * size, Y: rng.Float64() * size})
		ents[i] = e
	}
	pos, _ := reg.Of(components.Position)
	health, _ := reg.Of(components.Health)
	for range nCli {
		_, stop := attachSink(s, rng.Float64()*size, rng.Float64()*size, radius, 1<<uint(pos.Index())|1<<uint(health.Index()))
		defer stop()
	}
	in := s.Inspector(&InspectorOptions{Authenticate: StaticToken("t", Identity{User: "ops"})})
	if open {
		in.demand.Add(1)
		defer in.watchEntity(1)()
	}
	step := func() {
		for range nEnt / 10 {
			p := components.Position.Get(w.Entry(ents[rng.IntN(nEnt)]))
			p.X += rng.Float64()*4 - 2
			p.Y += rng.Float64()*4 - 2
		}
	}
	wait := func() {
		for _, c := range s.clients {
			for c.cn.busy.Load() {
				runtime.Gosched()
			}
		}
	}
	for range 30 {
		step()
		s.Tick()
		wait()
	}
	var cpu time.Duration
	b.ResetTimer()
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		step()
		wait()
		b.StartTimer()
		c0, _ := cputime.Thread()
		s.Tick()
		c1, _ := cputime.Thread()
		cpu += c1 - c0
	}
	b.StopTimer()
	ns := float64(cpu) / float64(b.N)
	b.ReportMetric(ns, "cpu-ns/tick")
	if open {
		if v := in.view(); v != nil {
			b.ReportMetric(float64(v.cost.Microseconds()), "snapshot-µs")
		}
	}
	return ns
}
