package plugin

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
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

// BenchmarkTickInspector measures what an open Inspector adds to the tick
// at 10 000 entities and 500 clients (as BenchmarkTickInternal), one
// entity's values watched. An open Inspector costs every tick a few sums
// and, once per InspectorOptions.Interval, a snapshot; in a game that is
// one tick in Interval×TickRate (30 at the defaults, 500 ms and 60 Hz).
// Each iteration runs three ticks of one server, interleaved so that the
// machine's drift reaches all three alike: one with the Inspector closed,
// one open without a snapshot, and one open with a snapshot (so a run of
// any length takes a snapshot per iteration). It reports, as CPU time of
// the tick's thread:
//
//   - closed-ns/tick and open-ns/tick: the medians of the closed ticks and
//     of the open ticks without a snapshot;
//   - open-extra-ns: the median over iterations of an open tick's CPU
//     over the closed tick's (paired, so that a burst of noise on the
//     machine counts once, not against one kind);
//   - snapshot-cpu-µs: the mean over iterations of a snapshot tick's CPU
//     over the open tick's, the snapshot's cost with everything it brings
//     to its tick (allocation, GC assists, caches); a mean, so that its
//     occasional costs count; snapshot-µs: the snapshot's own wall time,
//     as the Inspector measures it;
//   - cpu-ns/tick: the open Inspector's tick as a game sees it,
//     closed-ns/tick + open-extra-ns + snapshot-cpu-µs per
//     Interval×TickRate ticks;
//   - extra-%: cpu-ns/tick over closed-ns/tick, minus 100; snapshot-%
//     the snapshots' part of it. The rest, open-extra-ns, is a few sums
//     and below the machine's noise, which a short run (-benchtime 20x)
//     leaves at a few percent either way.
//
// ns/op, B/op and allocs/op are those of an iteration's three ticks.
func BenchmarkTickInspector(b *testing.B) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	const nEnt, nCli = 10000, 500
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
	defer in.watchEntity(1)()
	perSnap := in.opts.Interval.Seconds() * float64(s.opts.TickRate)

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
	const (
		closed = iota
		open   // no snapshot due
		snap   // a snapshot due
	)
	// tick runs one tick of the kind and returns its CPU time.
	tick := func(kind int) time.Duration {
		step()
		wait()
		switch kind {
		case closed:
			in.demand.Store(0)
		case open:
			in.demand.Store(1)
			in.lastSnap = time.Now() // the last snapshot was just now
		case snap:
			in.demand.Store(1)
			in.lastSnap = time.Now().Add(-in.opts.Interval) // one is due
		}
		c0, _ := cputime.Thread()
		s.Tick()
		c1, _ := cputime.Thread()
		return c1 - c0
	}
	for range 10 {
		for kind := range 3 {
			tick(kind)
		}
	}
	var cpu [3][]time.Duration // by kind, by iteration
	for k := range cpu {
		cpu[k] = make([]time.Duration, b.N)
	}
	var wall time.Duration // the snapshots' own
	b.ResetTimer()
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		// closed, open, snap, then closed, snap, open: over two
		// iterations each kind follows each other kind once.
		for _, kind := range [2][3]int{{closed, open, snap}, {closed, snap, open}}[i%2] {
			cpu[kind][i] = tick(kind)
		}
		in.mu.Lock()
		wall += in.raw.cost // nobody views it: the snapshot of this iteration
		in.mu.Unlock()
	}
	b.StopTimer()
	in.demand.Store(0)
	median := func(ds []time.Duration) float64 {
		ds = slices.Clone(ds)
		slices.Sort(ds)
		return float64(ds[len(ds)/2]+ds[(len(ds)-1)/2]) / 2
	}
	openExtra := make([]time.Duration, b.N)
	var snapSum time.Duration
	for i := range b.N {
		openExtra[i] = cpu[open][i] - cpu[closed][i]
		snapSum += cpu[snap][i] - cpu[open][i]
	}
	closedNs := median(cpu[closed])
	extraNs := median(openExtra)
	snapNs := float64(snapSum) / float64(b.N)
	gameNs := closedNs + extraNs + snapNs/perSnap
	b.ReportMetric(closedNs, "closed-ns/tick")
	b.ReportMetric(median(cpu[open]), "open-ns/tick")
	b.ReportMetric(extraNs, "open-extra-ns")
	b.ReportMetric(snapNs/1e3, "snapshot-cpu-µs")
	b.ReportMetric(float64(wall)/float64(b.N)/1e3, "snapshot-µs")
	b.ReportMetric(gameNs, "cpu-ns/tick")
	b.ReportMetric(100*(gameNs-closedNs)/closedNs, "extra-%")
	b.ReportMetric(100*snapNs/perSnap/closedNs, "snapshot-%")
}
