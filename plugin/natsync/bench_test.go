package natsync_test

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/yohamta/donburi"

	"github.com/ebisync/ebisync/components"
	"github.com/ebisync/ebisync/internal/cputime"
	"github.com/ebisync/ebisync/internal/natstest"
	"github.com/ebisync/ebisync/plugin"
	"github.com/ebisync/ebisync/plugin/natsync"
)

// BenchmarkPublish measures the simulation side of scale-out: a World of
// entities of which a share moves every tick, ticked by a Server without a
// Publisher (publish=off, the baseline of the same run) and by one
// publishing over NATS to an embedded server (publish=nats), with a
// subscriber reading every cell. It reports the tick's CPU on the game
// goroutine (cpu-ns/tick), the publishing's share per changed entity
// (pub-ns/change, against the baseline measured just before), and the
// NATS traffic: messages and bytes per tick, and bytes per cell chunk.
// No client is connected: the simulation's cost does not depend on them.
func BenchmarkPublish(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		var base float64
		for _, mode := range []string{"off", "nats"} {
			b.Run(fmt.Sprintf("entities=%d/publish=%s", n, mode), func(b *testing.B) {
				perTick, changes, msgs, bytes, chunkBytes := benchPublish(b, n, mode == "nats")
				b.ReportMetric(perTick, "cpu-ns/tick")
				if mode == "off" {
					base = perTick
					return
				}
				if base > 0 && changes > 0 {
					b.ReportMetric((perTick-base)/changes, "pub-ns/change")
					b.ReportMetric(perTick/base, "x-vs-off")
				}
				b.ReportMetric(msgs, "msgs/tick")
				b.ReportMetric(bytes, "B/tick")
				if chunkBytes > 0 {
					b.ReportMetric(chunkBytes, "B/chunk")
				}
			})
		}
	}
}

type countingSub struct{ msgs, bytes, chunks, chunkBytes atomic.Int64 }

// benchPublish returns the tick's CPU, the changed entities per tick, the
// NATS messages and bytes per tick and the mean size of a cell's chunk.
func benchPublish(b *testing.B, n int, publish bool) (perTick, changes, msgs, bytes, chunkBytes float64) {
	b.StopTimer()
	reg := components.NewRegistry()
	components.RegisterStandard(reg)
	w := donburi.NewWorld()
	opts := &plugin.Options{CellSize: 128}
	var cnt countingSub
	var pc *nats.Conn
	end := make(chan struct{})
	if publish {
		nodes := natstest.Cluster(b, 1)
		var err error
		pc, err = nats.Connect(nodes[0].ClientURL())
		if err != nil {
			b.Fatal(err)
		}
		defer pc.Close()
		sc, err := nats.Connect(nodes[0].ClientURL())
		if err != nil {
			b.Fatal(err)
		}
		defer sc.Close()
		sub, err := sc.Subscribe("ebisync.bench.>", func(m *nats.Msg) {
			switch m.Subject {
			case "ebisync.bench.end":
				close(end)
				return
			case natsync.TickSubject("bench"):
			default:
				cnt.chunks.Add(1)
				cnt.chunkBytes.Add(int64(len(m.Data)))
			}
			cnt.msgs.Add(1)
			cnt.bytes.Add(int64(len(m.Data)))
		})
		if err != nil {
			b.Fatal(err)
		}
		defer sub.Unsubscribe()
		if err := sc.Flush(); err != nil {
			b.Fatal(err)
		}
		pub, err := natsync.NewPublisher(pc, "bench")
		if err != nil {
			b.Fatal(err)
		}
		opts.Publish = pub
	}
	srv := plugin.New(w, reg, opts)
	defer srv.Close()
	rng := rand.New(rand.NewPCG(1, 2))
	const size = 4000.0
	ents := make([]donburi.Entity, n)
	for i := range ents {
		ents[i] = w.Create(components.Replicated, components.Position, components.Health)
		components.Position.SetValue(w.Entry(ents[i]), components.PositionData{X: rng.Float64() * size, Y: rng.Float64() * size})
	}
	moving := ents[:n*35/100]
	step := func() {
		for _, e := range moving {
			p := components.Position.Get(w.Entry(e))
			p.X += rng.Float64()*4 - 2
			p.Y += rng.Float64()*4 - 2
		}
	}
	for i := 0; i < 30; i++ {
		step()
		srv.Tick()
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var m0, b0, c0, cb0 int64
	if publish {
		// What the warm-up published has arrived once this has.
		if err := pc.Publish("ebisync.bench.end", nil); err != nil {
			b.Fatal(err)
		}
		<-end
		end = make(chan struct{})
		m0, b0, c0, cb0 = cnt.msgs.Load(), cnt.bytes.Load(), cnt.chunks.Load(), cnt.chunkBytes.Load()
	}
	var cpu int64
	b.StartTimer()
	for i := 0; i < b.N; i++ {
		step()
		t0, _ := cputime.Thread()
		srv.Tick()
		t1, _ := cputime.Thread()
		cpu += int64(t1 - t0)
	}
	b.StopTimer()
	ticks := float64(b.N)
	if !publish {
		return float64(cpu) / ticks, float64(len(moving)), 0, 0, 0
	}
	if err := pc.Publish("ebisync.bench.end", nil); err != nil {
		b.Fatal(err)
	}
	<-end
	if p := opts.Publish.(*natsync.Publisher); p.Errors() != 0 {
		b.Fatalf("%d publishes failed: %v", p.Errors(), p.LastError())
	}
	chunks := float64(cnt.chunks.Load() - c0)
	return float64(cpu) / ticks, float64(len(moving)), float64(cnt.msgs.Load()-m0) / ticks, float64(cnt.bytes.Load()-b0) / ticks, float64(cnt.chunkBytes.Load()-cb0) / max(chunks, 1)
}
