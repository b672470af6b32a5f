package benchmarks_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http/httptest"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/nats-io/nats.go"
	"github.com/yohamta/donburi"

	"github.com/ebisync/ebisync/components"
	"github.com/ebisync/ebisync/internal/cputime"
	"github.com/ebisync/ebisync/internal/natstest"
	"github.com/ebisync/ebisync/internal/wire"
	"github.com/ebisync/ebisync/plugin"
	"github.com/ebisync/ebisync/plugin/natsync"
)

// The scene of BenchmarkScaleOut: entities over a square world, a share
// of them walking, and clients at random points with a radius interest
// (each sees about a hundred entities, a third of them moving).
const (
	soEntities = 5000
	soSize     = 3000.0
	soRadius   = 250.0
	soCell     = 500.0 // the published cells
	soRate     = 30
	soWarm     = 60  // ticks before measuring
	soTicks    = 150 // ticks measured
)

// BenchmarkScaleOut compares one Server of the World with the same World
// published over NATS (a 2-node embedded cluster: the simulation on one
// node, a gateway on the other) to a gateway that serves the clients, at
// 100, 500 and 2 000 clients (2 000 skipped with -short), ticking at 30 Hz.
// Run it with -benchtime 1x: each sub-benchmark measures 150 ticks of each
// mode once. It reports:
//
//   - sim-us/tick: the simulation's tick (detection and publishing) with
//     the clients on the gateway, and x-sim-cpu-growth, that figure at
//     2 000 clients over that at 100 (the simulation holds no client);
//   - gw-us/client-tick and single-us/client-tick: the CPU of the
//     gateway's tick, and of the single Server's, per client per tick,
//     and their ratio x-gw-vs-single;
//   - gw-B/client-tick and single-B/client-tick, the bytes each client
//     received per tick, and their ratio x-bytes-vs-single;
//   - nats-p50-us and nats-p99-us: the time from the simulation's tick
//     marker publish to its arrival at a subscriber on the gateway's node.
//
// CPU is the thread CPU of the goroutine that ticks (locked to its
// thread), so the readers and the NATS servers in the same process do not
// count; the writers' share of a send is not in either mode's figure.
func BenchmarkScaleOut(b *testing.B) {
	counts := []int{100, 500, 2000}
	if testing.Short() {
		counts = counts[:2]
	}
	if err := raiseFileLimit(2*uint64(counts[len(counts)-1]) + 512); err != nil {
		b.Fatal(err)
	}
	simAt := map[int]float64{}
	for _, n := range counts {
		b.Run(fmt.Sprintf("clients=%d", n), func(b *testing.B) {
			single, err := scaleOutRun(b, n, false)
			if err != nil {
				b.Fatal(err)
			}
			scaled, err := scaleOutRun(b, n, true)
			if err != nil {
				b.Fatal(err)
			}
			simAt[n] = scaled.simNs
			b.ReportMetric(scaled.simNs/1e3, "sim-us/tick")
			b.ReportMetric(scaled.serveNs/1e3/float64(n), "gw-us/client-tick")
			b.ReportMetric(single.serveNs/1e3/float64(n), "single-us/client-tick")
			b.ReportMetric(scaled.serveNs/single.serveNs, "x-gw-vs-single")
			b.ReportMetric(scaled.bytes, "gw-B/client-tick")
			b.ReportMetric(single.bytes, "single-B/client-tick")
			if single.bytes > 0 {
				b.ReportMetric(scaled.bytes/single.bytes, "x-bytes-vs-single")
			}
			b.ReportMetric(scaled.latP50/1e3, "nats-p50-us")
			b.ReportMetric(scaled.latP99/1e3, "nats-p99-us")
			if base := simAt[100]; n != 100 && base > 0 {
				b.ReportMetric(scaled.simNs/base, "x-sim-cpu-growth")
			}
			b.ReportMetric(0, "ns/op")
		})
	}
}

type scaleOutFigures struct {
	simNs   float64 // the simulation's tick (scaled) or 0
	serveNs float64 // the tick of the Server the clients are on
	bytes   float64 // per client per tick
	latP50  float64 // ns from tick marker publish to arrival
	latP99  float64
}

// timedPublisher notes when each tick's marker is published.
type timedPublisher struct {
	*natsync.Publisher
	mu   sync.Mutex
	sent map[uint64]time.Time
}

func (p *timedPublisher) TickEnd(tick uint64, chunks int) {
	p.mu.Lock()
	p.sent[tick] = time.Now()
	p.mu.Unlock()
	p.Publisher.TickEnd(tick, chunks)
}

// scaleOutRun measures soTicks ticks with n clients on one Server of the
// World (scaled false) or on a gateway fed over NATS (scaled true).
func scaleOutRun(b *testing.B, n int, scaled bool) (*scaleOutFigures, error) {
	reg := components.NewRegistry()
	components.RegisterStandard(reg)
	w := donburi.NewWorld()
	rng := rand.New(rand.NewPCG(7, 9))
	ents := make([]donburi.Entity, soEntities)
	for i := range ents {
		ents[i] = w.Create(components.Replicated, components.Position, components.Health)
		components.Position.SetValue(w.Entry(ents[i]), components.PositionData{X: rng.Float64() * soSize, Y: rng.Float64() * soSize})
		components.Health.SetValue(w.Entry(ents[i]), components.HealthData{Current: 100, Max: 100})
	}
	moving := ents[:soEntities*35/100]
	step := func() {
		for _, e := range moving {
			p := components.Position.Get(w.Entry(e))
			p.X = math.Mod(p.X+rng.Float64()*6-3+soSize, soSize)
			p.Y = math.Mod(p.Y+rng.Float64()*6-3+soSize, soSize)
		}
	}
	limits := func(o *plugin.Options) *plugin.Options {
		o.TickRate = soRate
		o.Logger = discardLogger
		o.DefaultRadius, o.MaxRadius = soRadius, 2*soRadius
		o.MaxConnections = 2*n + 16
		o.MaxConnectionsPerAddress = 2*n + 16
		o.MaxHandshakes = 2*n + 16
		return o
	}

	var sim, serve *plugin.Server
	var tp *timedPublisher
	var arrived []time.Duration
	var arrivedMu sync.Mutex
	if !scaled {
		sim = plugin.New(w, reg, limits(&plugin.Options{}))
		serve = sim
	} else {
		nodes := natstest.Cluster(b, 2)
		simConn := natstest.Connect(b, nodes[0].ClientURL())
		gwConn := natstest.Connect(b, nodes[1].ClientURL())
		latConn := natstest.Connect(b, nodes[1].ClientURL())
		pub, err := natsync.NewPublisher(simConn, "bench")
		if err != nil {
			return nil, err
		}
		tp = &timedPublisher{Publisher: pub, sent: map[uint64]time.Time{}}
		sim = plugin.New(w, reg, &plugin.Options{Publish: tp, PublishCellSize: soCell, TickRate: soRate, Logger: discardLogger})
		svc, err := pub.Serve(sim)
		if err != nil {
			return nil, err
		}
		defer svc.Stop()
		lat, err := latConn.Subscribe(natsync.TickSubject("bench"), func(m *nats.Msg) {
			now := time.Now()
			tick, _, err := natsync.DecodeTick(m.Data)
			if err != nil {
				return
			}
			tp.mu.Lock()
			sent, ok := tp.sent[tick]
			tp.mu.Unlock()
			if ok {
				arrivedMu.Lock()
				arrived = append(arrived, now.Sub(sent))
				arrivedMu.Unlock()
			}
		})
		if err != nil {
			return nil, err
		}
		defer lat.Unsubscribe()
		if err := latConn.Flush(); err != nil {
			return nil, err
		}
		feed, err := natsync.NewFeed(gwConn, "bench")
		if err != nil {
			return nil, err
		}
		serve = plugin.NewGateway(reg, soCell, feed, limits(&plugin.Options{}))
		feed.Attach(serve)
		defer feed.Close()
	}
	defer sim.Close()
	if serve != sim {
		defer serve.Close()
	}
	ts := httptest.NewServer(serve)
	defer ts.Close()

	// The game goroutine: ticks at soRate until stop, on one locked thread.
	var mu sync.Mutex
	var simCPU, serveCPU time.Duration
	measuring := false
	ticks := 0
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		tk := time.NewTicker(time.Second / soRate)
		defer tk.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tk.C:
			}
			step()
			t0, _ := cputime.Thread()
			sim.Tick()
			t1, _ := cputime.Thread()
			if serve != sim {
				serve.Tick()
			}
			t2, _ := cputime.Thread()
			mu.Lock()
			if measuring {
				ticks++
				if serve != sim {
					simCPU += t1 - t0
					serveCPU += t2 - t1
				} else {
					serveCPU += t1 - t0
				}
			}
			mu.Unlock()
		}
	}()
	defer func() {
		close(stop)
		<-done
	}()

	// The clients: raw readers, each with its own point of interest.
	hello := cpcHello(reg)
	var subs wire.Subscribe
	for i := range reg.Schema() {
		subs.Subs = append(subs.Subs, wire.Sub{Kind: wire.SubComponent, ID: uint64(i)})
	}
	subscribe := wire.AppendSubscribe(nil, wire.KindSubscribe, &subs)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	readers := make([]*cpcReader, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	url := "ws" + ts.URL[len("http"):]
	for i := range n {
		in := wire.AppendInterest(nil, &wire.Interest{Mode: wire.InterestPoint, X: rng.Float64() * soSize, Y: rng.Float64() * soSize, Radius: soRadius})
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			r, err := dialCPCReader(ctx, url, true, hello, subscribe)
			if err == nil {
				err = r.ws.Write(ctx, websocket.MessageBinary, in)
			}
			readers[i], errs[i] = r, err
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	var rwg sync.WaitGroup
	for _, r := range readers {
		rwg.Add(1)
		go func() {
			defer rwg.Done()
			_ = r.read(nil, false)
		}()
	}
	defer func() {
		for _, r := range readers {
			r.closed.Store(true)
			r.ws.CloseNow()
		}
		rwg.Wait()
	}()

	waitTicks := func(k int) {
		end := sim.CurrentTick() + uint64(k)
		for sim.CurrentTick() < end {
			time.Sleep(time.Second / soRate / 2)
		}
	}
	waitTicks(soWarm)
	var bytes0 uint64
	for _, r := range readers {
		bytes0 += r.bytes.Load()
	}
	arrivedMu.Lock()
	arrived = arrived[:0]
	arrivedMu.Unlock()
	mu.Lock()
	measuring = true
	mu.Unlock()
	waitTicks(soTicks)
	mu.Lock()
	measuring = false
	k := ticks
	mu.Unlock()
	var bytes1 uint64
	for _, r := range readers {
		bytes1 += r.bytes.Load()
	}
	f := &scaleOutFigures{
		simNs:   float64(simCPU) / float64(k),
		serveNs: float64(serveCPU) / float64(k),
		bytes:   float64(bytes1-bytes0) / float64(n) / float64(k),
	}
	arrivedMu.Lock()
	lat := slices.Clone(arrived)
	arrivedMu.Unlock()
	if len(lat) > 0 {
		slices.Sort(lat)
		f.latP50 = float64(lat[len(lat)/2])
		f.latP99 = float64(lat[len(lat)*99/100])
	}
	return f, nil
}
