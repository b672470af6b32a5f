package benchmarks_test

import (
	"context"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/yohamta/donburi"

	"github.com/ebisync/ebisync"
	"github.com/ebisync/ebisync/components"
	"github.com/ebisync/ebisync/internal/natstest"
	"github.com/ebisync/ebisync/internal/testutil"
	"github.com/ebisync/ebisync/netclient"
	"github.com/ebisync/ebisync/plugin"
	"github.com/ebisync/ebisync/plugin/natsync"
)

// rtScore is BenchmarkRequestRoundTrip's client-writable component.
type rtScore struct{ N int32 }

var rtScoreType = donburi.NewComponentType[rtScore]()

// BenchmarkRequestRoundTrip measures a mutation's round trip, from
// netclient.Mutate to its Ok on the client, with the client on a Server of
// the World (direct) and on a gateway whose simulation is on the other
// node of a 2-node embedded NATS cluster (gateway). Each Server ticks at
// 60 Hz on its own goroutine, as separate processes would; the client
// calls Update every millisecond. Each iteration makes one round trip in
// each mode, alternately. It reports the medians, direct-ms and
// gateway-ms, and x-rtt-gw-vs-direct, their ratio.
//
// A request waits for the next tick of the Server it reaches. Through a
// gateway it waits for the gateway's tick (which forwards it), then the
// simulation's (which applies it and relays the answer), then the
// gateway's again (which puts the answer in the client's batch): about
// one and a half ticks more than direct, on average.
func BenchmarkRequestRoundTrip(b *testing.B) {
	const rate = 60
	reg := components.NewRegistry()
	components.RegisterStandard(reg)
	score := components.Register(reg, "bench.score", rtScoreType, &components.Options{ClientWritable: true})
	owned := func(w donburi.World) func(plugin.ClientInfo) {
		return func(ci plugin.ClientInfo) {
			e := w.Create(components.Replicated, components.Position, rtScoreType, components.Owner)
			components.Owner.SetValue(w.Entry(e), components.OwnerData{Client: ci.ID})
		}
	}
	ticking := func(srv ...*plugin.Server) (stop func()) {
		done := make(chan struct{})
		var stopped []chan struct{}
		for _, s := range srv {
			st := make(chan struct{})
			stopped = append(stopped, st)
			go func() {
				defer close(st)
				tk := time.NewTicker(time.Second / rate)
				defer tk.Stop()
				for {
					select {
					case <-done:
						return
					case <-tk.C:
						s.Tick()
					}
				}
			}()
		}
		return func() {
			close(done)
			for _, st := range stopped {
				<-st
			}
		}
	}

	// Direct: one Server of the World.
	w1 := donburi.NewWorld()
	direct := plugin.New(w1, reg, &plugin.Options{TickRate: rate, Logger: discardLogger, OnConnect: owned(w1)})
	defer direct.Close()
	ts1 := httptest.NewServer(direct)
	defer ts1.Close()
	defer ticking(direct)()

	// Gateway: a simulation publishing over NATS and a gateway on the
	// other node.
	nodes := natstest.Cluster(b, 2)
	pub, err := natsync.NewPublisher(natstest.Connect(b, nodes[0].ClientURL()), "rt")
	if err != nil {
		b.Fatal(err)
	}
	w2 := donburi.NewWorld()
	sim := plugin.New(w2, reg, &plugin.Options{TickRate: rate, Logger: discardLogger, Publish: pub, PublishCellSize: 500, OnConnect: owned(w2)})
	defer sim.Close()
	svc, err := pub.Serve(sim)
	if err != nil {
		b.Fatal(err)
	}
	defer svc.Stop()
	feed, err := natsync.NewFeed(natstest.Connect(b, nodes[1].ClientURL()), "rt")
	if err != nil {
		b.Fatal(err)
	}
	gw := plugin.NewGateway(reg, 500, feed, &plugin.Options{TickRate: rate, Logger: discardLogger, DefaultRadius: 300, MaxRadius: 600})
	feed.Attach(gw)
	defer feed.Close()
	defer gw.Close()
	ts2 := httptest.NewServer(gw)
	defer ts2.Close()
	defer ticking(sim, gw)()

	type peer struct {
		c    *netclient.Client
		ship donburi.Entity
		rtts []time.Duration
	}
	dial := func(url string) *peer {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, err := netclient.Dial(ctx, "ws"+url[len("http"):], reg, &netclient.Options{Logger: discardLogger})
		if err != nil {
			b.Fatal(err)
		}
		if err := c.SubscribeAll(); err != nil {
			b.Fatal(err)
		}
		p := &peer{c: c}
		if err := testutil.WaitUntil(10*time.Second, func() string { return url + ": the client's own entity" }, func() bool {
			_ = c.Update()
			if o := c.Owned(nil); len(o) == 1 {
				p.ship = o[0]
			}
			return p.ship != donburi.Null
		}); err != nil {
			b.Fatal(err)
		}
		return p
	}
	peers := []*peer{dial(ts1.URL), dial(ts2.URL)}
	defer func() {
		for _, p := range peers {
			p.c.Close()
		}
	}()
	roundTrip := func(p *peer, n int32) {
		start := time.Now()
		res := netclient.Mutate(p.c, p.ship, score, rtScore{N: n}, nil)
		var r netclient.MutationResult
		if err := testutil.WaitUntil(10*time.Second, func() string { return "a mutation's answer" }, func() bool {
			_ = p.c.Update()
			select {
			case r = <-res:
				return true
			default:
				return false
			}
		}); err != nil {
			b.Fatal(err)
		}
		if r.Status != ebisync.Ok {
			b.Fatalf("a mutation: %v %q %v", r.Status, r.Message, r.Err)
		}
		p.rtts = append(p.rtts, time.Since(start))
	}
	for _, p := range peers {
		roundTrip(p, -1) // warm: the first request of each pays for its path
		p.rtts = p.rtts[:0]
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for _, p := range peers {
			roundTrip(p, int32(i))
		}
	}
	b.StopTimer()
	median := func(d []time.Duration) float64 {
		d = slices.Clone(d)
		slices.Sort(d)
		return float64(d[len(d)/2]) / 1e6
	}
	dm, gm := median(peers[0].rtts), median(peers[1].rtts)
	b.ReportMetric(dm, "direct-ms")
	b.ReportMetric(gm, "gateway-ms")
	b.ReportMetric(gm/dm, "x-rtt-gw-vs-direct")
	b.ReportMetric(0, "ns/op")
	if testing.Verbose() {
		b.Logf("%d round trips each: direct %.1f ms, gateway %.1f ms", b.N, dm, gm)
	}
}
