package plugin

import (
	"runtime"
	"testing"
	"time"

	"github.com/yohamta/donburi"

	"github.com/ebisync/ebisync/components"
	"github.com/ebisync/ebisync/internal/cputime"
)

type (
	pairData struct{ A, B float64 }     // 16 bytes: whole words
	hugeData struct{ V [9]float64 }     // 72 bytes: past the slabs
	oddData  struct{ A, B, C [5]uint8 } // 15 bytes
)

var (
	pair = donburi.NewComponentType[pairData]()
	huge = donburi.NewComponentType[hugeData]()
	odd  = donburi.NewComponentType[oddData]()
)

// BenchmarkDetectSizes measures a tick's change detection over 10 000
// entities, 1% of which move per tick, each with a second component that
// never changes, by that component's size. Every iteration also ticks a
// baseline world whose second component is 16 bytes (two whole words), so
// x-vs-16B compares the two in the same run. Components with a slab
// (plain, up to 64 bytes) take the quick check whatever their size; the
// 72-byte one shows the cost of the full check for every entity.
func BenchmarkDetectSizes(b *testing.B) {
	cases := []struct {
		name string
		ct   donburi.IComponentType
		reg  func(*components.Registry)
	}{
		{"4B", tint, func(r *components.Registry) { components.Register(r, "test.tint", tint, nil) }},
		{"12B", vec3, func(r *components.Registry) { components.Register(r, "test.vec3", vec3, nil) }},
		{"15B", odd, func(r *components.Registry) { components.Register(r, "test.odd", odd, nil) }},
		{"16B", pair, func(r *components.Registry) { components.Register(r, "test.pair", pair, nil) }},
		{"40B", big, func(r *components.Registry) { components.Register(r, "test.big", big, nil) }},
		{"72B", huge, func(r *components.Registry) { components.Register(r, "test.huge", huge, nil) }},
	}
	for _, k := range cases {
		b.Run(k.name, func(b *testing.B) {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			base := newSizeWorld(pair, func(r *components.Registry) { components.Register(r, "test.pair", pair, nil) })
			subj := newSizeWorld(k.ct, k.reg)
			var cpu, baseCPU time.Duration
			for b.Loop() {
				cpu += subj.tick()
				baseCPU += base.tick()
			}
			n := float64(b.N * sizeWorldEntities)
			b.ReportMetric(float64(cpu)/n, "cpu-ns/entity")
			b.ReportMetric(float64(baseCPU)/n, "base-cpu-ns/entity")
			b.ReportMetric(float64(cpu)/float64(baseCPU), "x-vs-16B")
		})
	}
}

const sizeWorldEntities = 10000

type sizeWorld struct {
	w    donburi.World
	s    *Server
	ents []donburi.Entity
	next int
}

func newSizeWorld(ct donburi.IComponentType, reg func(*components.Registry)) *sizeWorld {
	r := components.NewRegistry()
	components.RegisterStandard(r)
	reg(r)
	w := donburi.NewWorld()
	sw := &sizeWorld{w: w, s: New(w, r, &Options{CellSize: 200})}
	for i := range sizeWorldEntities {
		e := w.Create(components.Replicated, components.Position, ct)
		components.Position.SetValue(w.Entry(e), components.PositionData{X: float64(i % 100 * 50), Y: float64(i / 100 * 50)})
		sw.ents = append(sw.ents, e)
	}
	for range 3 {
		sw.tick()
	}
	return sw
}

// tick moves the next 1% of the entities and returns the CPU time of the
// server's tick.
func (sw *sizeWorld) tick() time.Duration {
	for range sizeWorldEntities / 100 {
		p := components.Position.Get(sw.w.Entry(sw.ents[sw.next]))
		p.X++
		sw.next = (sw.next + 1) % len(sw.ents)
	}
	c0, _ := cputime.Thread()
	sw.s.Tick()
	c1, _ := cputime.Thread()
	return c1 - c0
}
