package plugin

import (
	"github.com/ebisync/ebisync"

	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"runtime"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/yohamta/donburi"

	"github.com/ebisync/ebisync/components"
	"github.com/ebisync/ebisync/internal/cputime"
	"github.com/ebisync/ebisync/internal/testutil"
	"github.com/ebisync/ebisync/internal/wire"
)

// attachWriter adds a client whose "writer" passes every batch to take
// at once and is idle again as soon as take returns.
func attachWriter(s *Server, take func(b []byte)) (*client, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	cn := &conn{s: s, id: s.nextID.Add(1), out: make(chan []byte, 1), ctrl: make(chan []byte, 1), ctx: ctx, cancel: cancel}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-ctx.Done():
				return
			case b := <-cn.out:
				take(b)
				cn.busy.Store(false)
			}
		}
	}()
	c := newClient(s, cn)
	s.clients = append(s.clients, c)
	s.byID[cn.id] = c
	return c, func() { cancel(); <-done }
}

// attachSink adds a client whose writer only counts the bytes of every
// batch, so a benchmark measures the tick alone.
func attachSink(s *Server, x, y, radius float64, subs uint64) (*client, func()) {
	var c *client
	c, stop := attachWriter(s, func(b []byte) { c.cn.bytesOut.Add(uint64(len(b))) })
	c.typeSubs = subs
	if radius > 0 {
		c.mode = wire.InterestPoint
		c.cx, c.cy = x, y
		c.setRadius(radius)
	}
	return c, stop
}

func BenchmarkTickInternal(b *testing.B) {
	for _, nEnt := range []int{1000, 10000} {
		for _, nCli := range []int{10, 100, 500} {
			b.Run(benchName(nEnt, nCli), func(b *testing.B) { benchTick(b, nEnt, nCli) })
		}
	}
}

func benchName(e, c int) string { return fmt.Sprintf("entities=%d/clients=%d", e, c) }

func benchTick(b *testing.B, nEnt, nCli int) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	reg := components.NewRegistry()
	components.RegisterStandard(reg)
	w := donburi.NewWorld()
	s := New(w, reg, &Options{Logger: nil, CellSize: 200})
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
	var stops []func()
	for i := 0; i < nCli; i++ {
		_, stop := attachSink(s, rng.Float64()*size, rng.Float64()*size, radius, 1<<uint(pos.Index())|1<<uint(health.Index()))
		stops = append(stops, stop)
	}
	defer func() {
		for _, f := range stops {
			f()
		}
	}()
	step := func() {
		for k := 0; k < nEnt/10; k++ {
			e := ents[rng.IntN(nEnt)]
			p := components.Position.Get(w.Entry(e))
			p.X += rng.Float64()*4 - 2
			p.Y += rng.Float64()*4 - 2
		}
	}
	for i := 0; i < 30; i++ {
		step()
		s.Tick()
		for _, c := range s.clients {
			for c.cn.busy.Load() {
				runtime.Gosched()
			}
		}
	}
	pairs := 0
	var cpu time.Duration
	var phases [3]time.Duration
	b.ResetTimer()
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		step()
		for _, c := range s.clients {
			for c.cn.busy.Load() {
				runtime.Gosched()
			}
		}
		b.StartTimer()
		c0, _ := cputime.Thread()
		s.Tick()
		c1, _ := cputime.Thread()
		cpu += c1 - c0
		st := s.Stats()
		phases[0] += st.Phases.Detect
		phases[1] += st.Phases.Scopes
		phases[2] += st.Phases.Send
		for _, x := range s.frame.changes.ids {
			if r := s.recs[x.id()]; r != nil {
				pairs += len(r.views)
			}
		}
	}
	b.StopTimer()
	if pairs > 0 {
		b.ReportMetric(float64(cpu)/float64(pairs), "cpu-ns/pair")
		b.ReportMetric(float64(phases[0])/float64(pairs), "detect-ns/pair")
		b.ReportMetric(float64(phases[1])/float64(pairs), "scopes-ns/pair")
		b.ReportMetric(float64(phases[2])/float64(pairs), "send-ns/pair")
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(pairs), "ns/pair")
	}
}

func TestTickSteadyStateAllocs(t *testing.T) {
	reg := components.NewRegistry()
	components.RegisterStandard(reg)
	w := donburi.NewWorld()
	s := New(w, reg, &Options{CellSize: 200})
	rng := rand.New(rand.NewPCG(3, 4))
	const size = 4000.0
	ents := make([]donburi.Entity, 2000)
	for i := range ents {
		e := w.Create(components.Replicated, components.Position, components.Health)
		components.Position.SetValue(w.Entry(e), components.PositionData{X: rng.Float64() * size, Y: rng.Float64() * size})
		ents[i] = e
	}
	pos, _ := reg.Of(components.Position)
	var stops []func()
	for i := 0; i < 20; i++ {
		_, stop := attachSink(s, rng.Float64()*size, rng.Float64()*size, 600, 1<<uint(pos.Index()))
		stops = append(stops, stop)
	}
	defer func() {
		for _, f := range stops {
			f()
		}
	}()
	// Entities oscillate, so after warm-up every slice and cell has the
	// capacity it will ever need.
	phase := 0.0
	step := func() {
		phase += 1
		d := 3 * math.Sin(phase)
		for i, e := range ents {
			if i%10 == int(phase)%10 {
				p := components.Position.Get(w.Entry(e))
				p.X += d
			}
		}
		s.Tick()
		for _, c := range s.clients {
			for c.cn.busy.Load() {
				runtime.Gosched()
			}
		}
	}
	for i := 0; i < 200; i++ {
		step()
	}
	if a := testing.AllocsPerRun(100, step); a != 0 {
		t.Fatalf("%.1f allocations per tick in steady state, want 0", a)
	}
}

// TestAdaptiveSendRate: a client whose writes are slow gets batches less
// often, and its rate comes back by itself when its writes are prompt again.
func TestAdaptiveSendRate(t *testing.T) {
	reg := components.NewRegistry()
	components.RegisterStandard(reg)
	w := donburi.NewWorld()
	s := New(w, reg, &Options{TickRate: 60})
	e := w.Create(components.Replicated, components.Position)
	pos, _ := reg.Of(components.Position)
	c, stop := attachSink(s, 0, 0, 0, 1<<uint(pos.Index()))
	defer stop()
	var slow atomic.Bool
	// Replace the sink's writer behaviour: each batch "takes" longer than a
	// tick while slow is set.
	slowSink := func() {
		for c.cn.busy.Load() {
			runtime.Gosched()
		}
	}
	tick := func() {
		components.Position.Get(w.Entry(e)).X += 1
		if slow.Load() {
			c.cn.slowWrites.Add(1) // the writer reports a write longer than a tick
		}
		s.Tick()
		slowSink()
	}
	for i := 0; i < 10; i++ {
		tick()
	}
	if c.interval != c.minIntv {
		t.Fatalf("interval %d before any slowness, want %d", c.interval, c.minIntv)
	}
	slow.Store(true)
	for i := 0; i < 60; i++ {
		tick()
	}
	if c.interval <= c.minIntv {
		t.Fatalf("interval %d after slow writes, want it raised", c.interval)
	}
	t.Logf("slow: interval %d ticks", c.interval)
	slow.Store(false)
	for i := 0; i < 600 && c.interval > c.minIntv; i++ {
		tick()
	}
	if c.interval != c.minIntv {
		t.Fatalf("interval %d after recovery, want %d", c.interval, c.minIntv)
	}
}

// TestStatsPhases: the last tick's phases are reported and add up to no
// more than the tick.
func TestStatsPhases(t *testing.T) {
	reg := components.NewRegistry()
	components.RegisterStandard(reg)
	w := donburi.NewWorld()
	s := New(w, reg, &Options{})
	for i := range 500 {
		e := w.Create(components.Replicated, components.Position)
		components.Position.SetValue(w.Entry(e), components.PositionData{X: float64(i), Y: 1})
	}
	_, stop := attachSink(s, 0, 0, 0, ^uint64(0))
	defer stop()
	s.Tick()
	st := s.Stats()
	p := st.Phases
	if p.Detect <= 0 || p.Scopes <= 0 || p.Send <= 0 || p.Inbound < 0 {
		t.Fatalf("phases %+v: want each measured", p)
	}
	if sum := p.Inbound + p.Detect + p.Scopes + p.Send; sum > st.TickTime {
		t.Fatalf("phases add up to %s, more than the tick's %s", sum, st.TickTime)
	}
}

// TestReadStats: ReadStats gives what Stats gives, and once its map and
// slice have grown it allocates nothing, so a game can poll it per frame.
func TestReadStats(t *testing.T) {
	reg := components.NewRegistry()
	s := New(donburi.NewWorld(), reg, &Options{})
	defer func() {
		s.mu.Lock()
		clear(s.conns) // fakes: nothing to shut down
		s.mu.Unlock()
		s.Close()
	}()
	s.mu.Lock()
	for i := range 3 {
		cn := &conn{s: s, id: uint64(i + 1), name: fmt.Sprint("c", i)}
		cn.bytesOut.Store(uint64(100 * (i + 1)))
		cn.batchWire.Store(uint64(10 * (i + 1)))
		s.conns[cn] = struct{}{}
	}
	s.mu.Unlock()
	s.stats.mutations[wire.StatusOk].Add(4)
	s.stats.mutations[wire.StatusRateLimited].Add(2)
	byID := func(st Stats) Stats {
		slices.SortFunc(st.PerClient, func(a, b ClientStats) int { return int(a.ID) - int(b.ID) })
		return st
	}
	want := byID(s.Stats())
	if len(want.PerClient) != 3 || want.BytesOut != 60 || want.Mutations[ebisync.Ok] != 4 || want.Mutations[ebisync.RateLimited] != 2 {
		t.Fatalf("Stats = %+v", want)
	}
	var st Stats
	s.ReadStats(&st)
	if got := byID(st); !reflect.DeepEqual(got, want) {
		t.Fatalf("ReadStats = %+v, want %+v", got, want)
	}
	if n := testing.AllocsPerRun(100, func() { s.ReadStats(&st) }); n != 0 {
		t.Fatalf("ReadStats allocates %.1f times per call once warm", n)
	}
	// A connection gone: the reused slice shrinks with it.
	s.mu.Lock()
	for cn := range s.conns {
		delete(s.conns, cn)
		break
	}
	s.mu.Unlock()
	s.ReadStats(&st)
	if len(st.PerClient) != 2 || st.Connections != 2 {
		t.Fatalf("after a connection left: %d per-client entries, %d connections", len(st.PerClient), st.Connections)
	}
}

// TestDispatch covers the hand-off of batches to the writers: every batch
// of a tick reaches its writer, ticks racing Close lose none, and after
// Close a tick hands its batches over itself (no goroutine is started,
// which TestMain's leak check would catch).
func TestDispatch(t *testing.T) {
	reg := components.NewRegistry()
	components.RegisterStandard(reg)
	w := donburi.NewWorld()
	s := New(w, reg, &Options{CellSize: 200})
	pos, _ := reg.Of(components.Position)
	e := w.Create(components.Replicated, components.Position)
	const writers = 50
	var got [writers]atomic.Int64
	var stops []func()
	for i := range writers {
		c, stop := attachWriter(s, func([]byte) { got[i].Add(1) })
		c.typeSubs = 1 << uint(pos.Index())
		stops = append(stops, stop)
	}
	defer func() {
		for _, f := range stops {
			f()
		}
	}()
	// Every tick moves the entity, so every idle writer gets a batch.
	tick := func(n int) {
		for range n {
			components.Position.Get(w.Entry(e)).X++
			s.Tick()
			for _, c := range s.clients {
				for c.cn.busy.Load() {
					runtime.Gosched()
				}
			}
		}
	}
	want := func(n int64) {
		t.Helper()
		for i := range got {
			if g := got[i].Load(); g != n {
				t.Fatalf("writer %d took %d batches, want %d", i, g, n)
			}
		}
	}
	tick(20)
	want(20)
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick(20)
	}()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	<-done
	want(40)
	// The dispatch goroutine ends once its queue is empty.
	testutil.Eventually(t, 5*time.Second, "the dispatch goroutine to end with its queue empty", func() bool {
		s.disp.mu.Lock()
		defer s.disp.mu.Unlock()
		return !s.disp.running
	})
	tick(5)
	want(45)
}
