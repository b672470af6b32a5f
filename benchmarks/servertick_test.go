package benchmarks_test

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ebisync/ebisync/components"
	"github.com/ebisync/ebisync/internal/cputime"
	"github.com/ebisync/ebisync/internal/testutil"
	"github.com/ebisync/ebisync/plugin"
)

// BenchmarkServerTick measures the server's tick with many clients, each
// looking at its own 5% of the map, while 10% of the entities move every
// tick; then the naive JSON baseline on the same world and moves. One
// iteration is one tick: the simulation's moves and Server.Tick are timed;
// the delivery of the tick's batches to every client is waited for with
// the timer stopped.
func BenchmarkServerTick(b *testing.B) {
	for _, entities := range []int{1000, 10000} {
		for _, clients := range []int{10, 100, 500} {
			b.Run(fmt.Sprintf("entities=%d/clients=%d", entities, clients), func(b *testing.B) {
				if testing.Short() && entities*clients > 100_000 {
					b.Skip("large case skipped in -short mode")
				}
				benchServerTick(b, entities, clients)
			})
		}
	}
}

// allocDiffDir, when set, makes BenchmarkServerTick record every allocation
// and write the allocs profile before and after its measured ticks, to
// compare with go tool pprof -diff_base: see the package doc.
var allocDiffDir = flag.String("allocdiff", "", "directory for BenchmarkServerTick's before/after allocs profiles")

// writeAllocs writes the allocs profile as of now to dir/name.
func writeAllocs(b *testing.B, name string) {
	runtime.GC() // the profile is as of the last GC
	f, err := os.Create(filepath.Join(*allocDiffDir, name))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
		b.Fatal(err)
	}
}

func benchServerTick(b *testing.B, entities, clients int) {
	if *allocDiffDir != "" {
		defer func(rate int) { runtime.MemProfileRate = rate }(runtime.MemProfileRate)
		runtime.MemProfileRate = 1
	}
	// Pin the tick's goroutine to its thread, so the thread's CPU time is
	// the tick's (the machine's other load does not count).
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	// Every server, client and listener goroutine must be gone at the end.
	defer func(ignore goleak.Option) {
		if err := goleak.Find(ignore); err != nil {
			b.Error(err)
		}
	}(goleak.IgnoreCurrent())
	setupStart := time.Now()
	s := newTickScenario(entities, clients)
	w := newTickWorld(s)
	reg := components.NewRegistry()
	components.RegisterStandard(reg)
	srv := plugin.New(w.world, reg, &plugin.Options{
		CellSize: s.radius / 4, // the documented rule of thumb
		Logger:   discardLogger,
		// Every client comes from 127.0.0.1, and they dial at once.
		MaxConnectionsPerAddress: loopbackClients,
		MaxHandshakes:            loopbackClients,
	})
	es := startEbisync(srv)
	hello := helloFor(reg, "bench")
	subscribe := subscribeMsg(compIndex(b, reg, components.Position), compIndex(b, reg, components.Health))
	cls, err := connectAll(clients, func(ctx context.Context, i int) (*rawClient, error) {
		c := s.centres[i]
		// Interest before Subscribe: a client that subscribed without its
		// interest would briefly see the whole map.
		return dialEbisync(ctx, es.ts.URL, reg, hello, false, pointInterest(c.x, c.y, s.radius), subscribe)
	})
	if err != nil {
		es.close(nil)
		b.Fatal(err)
	}
	closed := false
	closeAll := func() {
		if !closed {
			closed = true
			es.close(cls)
		}
	}
	defer closeAll()

	tick := func() error {
		w.step(s)
		srv.Tick()
		return waitDelivered(srv, cls)
	}
	// Warm up: every client joined, subscribed and received its initial
	// scope, then a few ticks of steady state.
	err = testutil.WaitUntil(30*time.Second, func() string { return "connections" }, func() bool {
		return srv.Stats().Connections == clients
	})
	if err != nil {
		b.Fatal(err)
	}
	var warm plugin.Stats
	var tickErr error
	err = testutil.WaitUntil(30*time.Second, func() string {
		return fmt.Sprintf("warm-up: %d clients with %d subscriptions, want %d and %d", warm.Clients, warm.Subscriptions, clients, 2*clients)
	}, func() bool {
		if tickErr = tick(); tickErr != nil {
			return true
		}
		srv.ReadStats(&warm)
		return warm.Clients == clients && warm.Subscriptions == 2*clients
	})
	if tickErr != nil {
		b.Fatal(tickErr)
	}
	if err != nil {
		b.Fatal(err)
	}
	for range 10 {
		if err := tick(); err != nil {
			b.Fatal(err)
		}
	}
	setup := time.Since(setupStart)

	profName := strings.NewReplacer("/", "-", "=", "").Replace(b.Name())
	if *allocDiffDir != "" {
		writeAllocs(b, profName+".before.pb.gz")
	}
	// The harness reads the counters into st, which stops allocating
	// once its map and slice have grown (here).
	var st plugin.Stats
	srv.ReadStats(&st)
	before := srv.Stats()
	var (
		tickNanos, e2eNanos   int64
		tickCPU, simCPU       time.Duration
		pairs                 int
		tickAllocs, e2eAllocs uint64
		m0, m1                runtime.MemStats
		phases                [3]time.Duration // wall time of detect, scopes, send
	)
	runtime.ReadMemStats(&m0)
	for b.Loop() {
		t0 := time.Now()
		c0, _ := cputime.Thread()
		pairs += w.step(s)
		cs, _ := cputime.Thread()
		srv.Tick()
		c1, _ := cputime.Thread()
		tickNanos += int64(time.Since(t0))
		tickCPU += c1 - c0
		simCPU += cs - c0
		b.StopTimer()
		runtime.ReadMemStats(&m1)
		tickAllocs += m1.Mallocs - m0.Mallocs
		if err := waitDeliveredInto(srv, cls, &st); err != nil {
			b.Fatal(err)
		}
		ph := st.Phases
		phases[0] += ph.Detect
		phases[1] += ph.Scopes
		phases[2] += ph.Send
		e2eNanos += int64(time.Since(t0))
		m1 = m0
		runtime.ReadMemStats(&m0)
		e2eAllocs += m0.Mallocs - m1.Mallocs
		b.StartTimer()
	}
	ticks := b.N
	after := srv.Stats()
	if *allocDiffDir != "" {
		writeAllocs(b, profName+".after.pb.gz")
	}
	closeAll()

	nr, err := runNaive(s, w, min(ticks, 20))
	if err != nil {
		b.Fatal(err)
	}

	perTick := float64(tickNanos) / float64(ticks)
	cpuPerTick := float64(tickCPU) / float64(ticks)
	bytesPerClientTick := float64(after.BytesOut-before.BytesOut) / float64(clients) / float64(ticks)
	naivePerTick := float64(nr.tickNanos) / float64(nr.ticks)
	naiveCPUPerTick := float64(nr.tickCPU) / float64(nr.ticks)
	naiveBytes := float64(nr.bytes) / float64(clients) / float64(nr.ticks)
	b.ReportMetric(float64(tickNanos)/float64(max(pairs, 1)), "ns/pair")
	b.ReportMetric(float64(pairs)/float64(ticks), "pairs/tick")
	for i, name := range []string{"detect", "scopes", "send"} {
		b.ReportMetric(float64(phases[i])/float64(max(pairs, 1)), name+"-ns/pair")
	}
	b.ReportMetric(bytesPerClientTick, "B/client/tick")
	b.ReportMetric(float64(tickAllocs)/float64(ticks), "allocs/tick")
	b.ReportMetric(float64(e2eAllocs)/float64(ticks), "allocs/tick-e2e")
	b.ReportMetric(naivePerTick, "naive-ns/tick")
	b.ReportMetric(naiveBytes, "naive-B/client/tick")
	b.ReportMetric(naiveBytes/bytesPerClientTick, "x-bytes-vs-naive")
	b.ReportMetric(naivePerTick/perTick, "x-wall-vs-naive")
	if _, ok := cputime.Thread(); ok {
		b.ReportMetric(float64(tickCPU)/float64(max(pairs, 1)), "cpu-ns/pair")
		b.ReportMetric(float64(simCPU)/float64(max(pairs, 1)), "sim-cpu-ns/pair")
		b.ReportMetric(naiveCPUPerTick/cpuPerTick, "x-cpu-vs-naive")
	}
	b.Logf("%d entities, %d clients, radius %.0f on a %.0f map, CellSize %.0f; setup %s. "+
		"ebisync: %d ticks, %.0f ns/tick (%.0f ns thread CPU), %.0f ns/tick until delivered, %.2f batches/client/tick, %d skipped busy, %.0f raw B/client/tick, %.1f scope entries/client. "+
		"naive: setup %s, %d ticks (+1 warm-up of %s), %.0f ns/tick (%.0f ns thread CPU), %.0f ns/tick until delivered",
		entities, clients, s.radius, s.side, s.radius/4, setup.Round(time.Millisecond),
		ticks, perTick, cpuPerTick, float64(e2eNanos)/float64(ticks), float64(after.Batches-before.Batches)/float64(clients)/float64(ticks),
		after.SkippedBusy-before.SkippedBusy, float64(after.RawBytesOut-before.RawBytesOut)/float64(clients)/float64(ticks), float64(after.ScopeEntries)/float64(clients),
		nr.setup.Round(time.Millisecond), nr.ticks, nr.warmUpTick.Round(time.Millisecond), naivePerTick, naiveCPUPerTick, float64(nr.e2eNanos)/float64(nr.ticks))
}
