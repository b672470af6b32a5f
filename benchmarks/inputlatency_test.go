package benchmarks_test

import (
	"context"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/yohamta/donburi"

	"github.com/ebisync/ebisync/components"
	"github.com/ebisync/ebisync/netclient"
	"github.com/ebisync/ebisync/netsim"
	"github.com/ebisync/ebisync/plugin"
)

// nudge is one input of BenchmarkInputLatency: move the ship along X.
type nudge struct{ DX float64 }

// latencyPos is the benchmark's position component: interpolated, and
// writable by its owner, so the unpredicted case can steer it by mutation.
type latencyPos struct {
	X float64 `ebisync:"q=0.01"`
	Y float64 `ebisync:"q=0.01"`
}

var latencyPosType = donburi.NewComponentType[latencyPos]()

func latencyRegistry() (*components.Registry, *components.Synced[latencyPos], *components.Message[nudge]) {
	reg := components.NewRegistry()
	pos := components.Register(reg, "bench.pos", latencyPosType, &components.Options{Interpolate: true, ClientWritable: true})
	m := components.RegisterMessage[nudge](reg, "bench.nudge", &components.MessageOptions{FromClient: true})
	return reg, pos, m
}

// BenchmarkInputLatency measures how many frames pass, on a client drawing
// at 60 fps through a proxy adding a 150 ms round trip to a 30 Hz server,
// from the frame in which the player acts to the first frame whose drawn
// position of the player's ship (netclient.Interpolated) shows the move,
// counting both: 1 frame means the move is drawn in the frame of the
// input. The frame loop calls Update, then acts, then reads the drawn
// position, every 1/60 s on a frame clock.
//
//   - predicted: the act is an input (netclient.Predict, plugin.HandleInput)
//     that the client applies to its mirror at once. The target is 1.
//   - unpredicted: the act is a mutation of the ship's position
//     (netclient.Mutate), which the drawn position shows once the server's
//     batch has arrived and the interpolation delay (two ticks) has passed.
//
// frames is the mean over the iterations.
func BenchmarkInputLatency(b *testing.B) {
	b.Run("predicted", func(b *testing.B) { benchInputLatency(b, true) })
	b.Run("unpredicted", func(b *testing.B) { benchInputLatency(b, false) })
}

func benchInputLatency(b *testing.B, predicted bool) {
	const tickRate = 30
	frame := time.Second / 60
	sreg, _, sm := latencyRegistry()
	w := donburi.NewWorld()
	srv := plugin.New(w, sreg, &plugin.Options{
		TickRate: tickRate,
		Logger:   discardLogger,
		OnConnect: func(ci plugin.ClientInfo) {
			e := w.Create(components.Replicated, latencyPosType, components.Owner)
			components.Owner.SetValue(w.Entry(e), components.OwnerData{Client: ci.ID})
		},
	})
	plugin.HandleInput(srv, sm, func(w donburi.World, e donburi.Entity, in nudge) {
		latencyPosType.Get(w.Entry(e)).X += in.DX
	})
	ts := httptest.NewServer(srv)
	stop := make(chan struct{})
	ticked := make(chan struct{})
	go func() {
		defer close(ticked)
		tk := time.NewTicker(time.Second / tickRate)
		defer tk.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tk.C:
				srv.Tick()
			}
		}
	}()
	defer func() {
		srv.Close()
		close(stop)
		<-ticked
		ts.Close()
	}()
	u, err := url.Parse(ts.URL)
	if err != nil {
		b.Fatal(err)
	}
	proxy, err := netsim.Listen(u.Host, &netsim.Options{Latency: 150 * time.Millisecond})
	if err != nil {
		b.Fatal(err)
	}
	defer proxy.Close()
	creg, pos, cm := latencyRegistry()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := netclient.Dial(ctx, proxy.URL(wsURL(ts.URL)), creg, &netclient.Options{Logger: discardLogger})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	if err := c.SubscribeAll(); err != nil {
		b.Fatal(err)
	}
	pred := netclient.Predict(c, cm, func(w donburi.World, e donburi.Entity, in nudge) {
		latencyPosType.Get(w.Entry(e)).X += in.DX
	})

	tk := time.NewTicker(frame)
	defer tk.Stop()
	base := time.Now()
	frames := 0
	// next runs one frame: Update, act, then the drawn position.
	next := func(act func()) (latencyPos, bool) {
		<-tk.C
		frames++
		if err := c.Update(); err != nil {
			b.Fatal(err)
		}
		if act != nil {
			act()
		}
		own := c.Owned(nil)
		if len(own) == 0 {
			return latencyPos{}, false
		}
		return netclient.Interpolated(c, own[0], pos, base.Add(time.Duration(frames)*frame))
	}
	var drawn latencyPos
	for ok := false; !ok; {
		if frames > 600 {
			b.Fatal("the ship did not reach the mirror within 600 frames")
		}
		drawn, ok = next(nil)
	}
	// settle runs frames until the drawn position is the server's and
	// nothing is pending.
	settle := func() {
		for start := frames; ; {
			d, _ := next(nil)
			if c.Stats().PendingInputs == 0 && d == drawn {
				own := c.Owned(nil)
				if p, ok := pos.Get(c.World(), own[0]); ok && p == d {
					return
				}
			}
			drawn = d
			if frames-start > 600 {
				b.Fatal("the drawn position did not settle within 600 frames")
			}
		}
	}
	settle()

	b.ResetTimer()
	total := 0
	for i := 0; i < b.N; i++ {
		dx := 1.0
		if i%2 == 1 {
			dx = -1
		}
		own := c.Owned(nil)[0]
		act := func() {
			if predicted {
				if err := pred.Input(own, nudge{DX: dx}); err != nil {
					b.Fatal(err)
				}
				return
			}
			p, _ := pos.Get(c.World(), own)
			p.X += dx
			netclient.Mutate(c, own, pos, p, nil)
		}
		start := drawn
		n := 0
		for {
			d, _ := next(act)
			act = nil
			n++
			if d != start {
				drawn = d
				break
			}
			if n > 600 {
				b.Fatal("the act was not drawn within 600 frames")
			}
		}
		total += n
		b.StopTimer()
		settle()
		b.StartTimer()
	}
	b.ReportMetric(float64(total)/float64(b.N), "frames")
}
