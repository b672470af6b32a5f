package plugin_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
	"unsafe"

	"github.com/yohamta/donburi"

	"github.com/ebisync/ebisync/components"
	"github.com/ebisync/ebisync/internal/testutil"
	"github.com/ebisync/ebisync/netclient"
	"github.com/ebisync/ebisync/plugin"
)

// clientLoop is a netclient whose Update runs every 2 ms on its own
// goroutine, the client's "game goroutine"; tests reach its mirror world
// with do.
type clientLoop struct {
	c    *netclient.Client
	jobs chan func()
	stop chan struct{}
	done chan struct{}
}

// startClientLoop dials url and starts the client's game goroutine.
func startClientLoop(t testing.TB, url string, reg *components.Registry, opts *netclient.Options) *clientLoop {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if opts == nil {
		opts = &netclient.Options{}
	}
	if opts.Logger == nil {
		opts.Logger = quietLogger()
	}
	c, err := netclient.Dial(ctx, url, reg, opts)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	p := &clientLoop{c: c, jobs: make(chan func()), stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		tk := time.NewTicker(2 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-p.stop:
				return
			case f := <-p.jobs:
				f()
			case <-tk.C:
				_ = c.Update()
			}
		}
	}()
	return p
}

// do runs Update, then f on the mirror world, on the game goroutine.
func (p *clientLoop) do(f func(w donburi.World)) {
	ch := make(chan struct{})
	p.jobs <- func() { _ = p.c.Update(); f(p.c.World()); close(ch) }
	<-ch
}

func (p *clientLoop) close() {
	close(p.stop)
	<-p.done
	p.c.Close()
}

// mirrorView reads a mirror world: net id → component id → value copy.
func mirrorView(w donburi.World, reg *components.Registry) map[uint64]expectation {
	out := map[uint64]expectation{}
	for _, a := range w.Archetypes() {
		if !a.Layout().HasComponent(components.Replicated) {
			continue
		}
		for _, e := range a.Entities() {
			entry := w.Entry(e)
			tag := components.Replicated.Get(entry)
			exp := expectation{gen: uint64(tag.Gen), comps: map[uint64]unsafe.Pointer{}}
			for _, c := range codecsOf(reg) {
				if entry.HasComponent(c.ComponentType()) {
					v := c.New()
					c.Copy(v, entry.Component(c.ComponentType()))
					exp.comps[uint64(c.Index())] = v
				}
			}
			out[uint64(tag.NetID)] = exp
		}
	}
	return out
}

// awaitConvergence waits until p's mirror holds want (and nothing else
// but entities in band). It returns how many entities the mirror holds,
// and after timeout the difference it last found.
func awaitConvergence(p *clientLoop, reg *components.Registry, want map[uint64]expectation, band map[uint64]bool, timeout time.Duration) (held int, err error) {
	var last error
	if testutil.WaitUntil(timeout, func() string { return "convergence" }, func() bool {
		var got map[uint64]expectation
		p.do(func(mw donburi.World) { got = mirrorView(mw, reg) })
		held = len(got)
		last = compareViews(reg, got, want, band)
		return last == nil
	}) != nil {
		return held, last
	}
	return held, nil
}

func compareViews(reg *components.Registry, got, want map[uint64]expectation, band map[uint64]bool) error {
	for id, exp := range want {
		g, ok := got[id]
		if !ok {
			return fmt.Errorf("entity %d missing from mirror", id)
		}
		if g.gen != exp.gen {
			return fmt.Errorf("entity %d: generation %d, want %d", id, g.gen, exp.gen)
		}
		if len(g.comps) != len(exp.comps) {
			return fmt.Errorf("entity %d: %d components, want %d", id, len(g.comps), len(exp.comps))
		}
		for ci, v := range exp.comps {
			c := codecAt(reg, int(ci))
			gv, ok := g.comps[ci]
			if !ok {
				return fmt.Errorf("entity %d: missing %s", id, c.Name())
			}
			if !c.Equal(gv, v) {
				return fmt.Errorf("entity %d: %s differs", id, c.Name())
			}
		}
	}
	for id := range got {
		if _, ok := want[id]; !ok && !band[id] {
			return fmt.Errorf("entity %d in mirror but not in the client's view", id)
		}
	}
	return nil
}

func TestConvergence(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 11))
	reg := standardRegistry()
	const size, radius, hyst = 2000.0, 500.0, 1.15
	h := newHarness(t, reg, &plugin.Options{Hysteresis: hyst, RescanInterval: 5}, 2*time.Millisecond)
	defer h.close()

	pos, _ := reg.Of(components.Position)
	health, _ := reg.Of(components.Health)
	name, _ := reg.Of(components.Name)
	type watcher struct {
		p      *clientLoop
		subs   map[int]bool
		cx, cy float64
		r      float64
	}
	var ws []*watcher
	all := map[int]bool{}
	for i := range reg.Len() {
		all[i] = true
	}
	a := startClientLoop(t, h.url, reg, nil)
	defer a.close()
	if err := a.c.SubscribeAll(); err != nil {
		t.Fatal(err)
	}
	ws = append(ws, &watcher{p: a, subs: all})
	b := startClientLoop(t, h.url, reg, nil)
	defer b.close()
	if err := b.c.Subscribe(components.Position, components.Health); err != nil {
		t.Fatal(err)
	}
	ws = append(ws, &watcher{p: b, subs: map[int]bool{pos.Index(): true, health.Index(): true}})
	c := startClientLoop(t, h.url, reg, nil)
	defer c.close()
	if err := c.c.Subscribe(components.Position, components.Name); err != nil {
		t.Fatal(err)
	}
	cw := &watcher{p: c, subs: map[int]bool{pos.Index(): true, name.Index(): true}, cx: size / 2, cy: size / 2, r: radius}
	if err := c.c.SetInterest(cw.cx, cw.cy, cw.r); err != nil {
		t.Fatal(err)
	}
	ws = append(ws, cw)

	var live []donburi.Entity
	h.do(func(w donburi.World) { churn(w, rng, &live, size, 200) })
	for round := 0; round < 200; round++ {
		h.do(func(w donburi.World) { churn(w, rng, &live, size, 1+rng.IntN(3)) })
		h.ticks(1)
	}
	h.ticks(20)
	for i, w := range ws {
		var want map[uint64]expectation
		var band map[uint64]bool
		h.do(func(sw donburi.World) { want, band = view(sw, reg, w.subs, w.cx, w.cy, w.r, hyst) })
		held, err := awaitConvergence(w.p, reg, want, band, 10*time.Second)
		if err != nil {
			t.Fatalf("client %d did not converge: %v", i, err)
		}
		t.Logf("client %d: mirror holds %d entities, view %d (+%d in band)", i, held, len(want), len(band))
		if len(want) == 0 {
			t.Errorf("client %d sees nothing: the test is not testing", i)
		}
	}
}
