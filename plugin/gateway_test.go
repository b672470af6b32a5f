package plugin_test

import (
	"math/rand/v2"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/yohamta/donburi"

	"github.com/ebisync/ebisync"
	"github.com/ebisync/ebisync/components"
	"github.com/ebisync/ebisync/internal/testutil"
	"github.com/ebisync/ebisync/netclient"
	"github.com/ebisync/ebisync/plugin"
)

// memBus carries a simulation's chunks to a gateway in process: the
// Publisher of the one and the Feed of the other.
type memBus struct {
	mu    sync.Mutex
	sim   *plugin.Server
	gw    *plugin.Server
	cells map[plugin.Cell]bool
	fed   int
}

func (b *memBus) Chunk(c plugin.Chunk) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.gw != nil && b.cells[plugin.Cell{Global: c.Global, X: c.X, Y: c.Y}] {
		b.gw.FeedChunk(slices.Clone(c.Data))
		b.fed++
	}
}

func (b *memBus) TickEnd(tick uint64, _ int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.gw != nil {
		b.gw.FeedTickEnd(tick)
	}
}

func (b *memBus) Follow(c plugin.Cell, token uint64) {
	b.mu.Lock()
	b.cells[c] = true
	sim, gw := b.sim, b.gw
	b.mu.Unlock()
	if err := sim.Snapshot(c.Global, c.X, c.Y, func(ch plugin.Chunk) { gw.FeedSnapshot(token, slices.Clone(ch.Data)) }); err != nil {
		panic(err)
	}
}

func (b *memBus) Unfollow(c plugin.Cell) {
	b.mu.Lock()
	delete(b.cells, c)
	b.mu.Unlock()
}

// TestGatewayConvergence serves clients from a gateway that holds no
// World, fed in process by a simulation's published chunks, under random
// churn and moving interest: each client's mirror converges to its view
// of the simulation's World, as it does for a Server of the World.
func TestGatewayConvergence(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 21))
	reg := standardRegistry()
	const size, radius, hyst, cell = 2000.0, 300.0, 1.15, 250.0
	bus := &memBus{cells: map[plugin.Cell]bool{}}
	gw := plugin.NewGateway(reg, cell, bus, &plugin.Options{DefaultRadius: radius, MaxRadius: 2 * radius, Hysteresis: hyst, RescanInterval: 5, Logger: quietLogger()})
	defer gw.Close()
	h := newHarnessAfter(t, reg, &plugin.Options{Publish: bus, PublishCellSize: cell, Hysteresis: hyst}, 2*time.Millisecond, gw.Tick)
	defer h.close()
	bus.mu.Lock()
	bus.sim, bus.gw = h.srv, gw
	bus.mu.Unlock()
	ts := httptest.NewServer(gw)
	defer ts.Close()
	url := wsURL(ts)

	all := map[int]bool{}
	for i := range reg.Len() {
		all[i] = true
	}
	type watcher struct {
		p      *clientLoop
		cx, cy float64
	}
	var ws []*watcher
	for i := 0; i < 5; i++ {
		p := startClientLoop(t, url, reg, nil)
		defer p.close()
		if err := p.c.SubscribeAll(); err != nil {
			t.Fatal(err)
		}
		w := &watcher{p: p, cx: rng.Float64() * size, cy: rng.Float64() * size}
		if err := p.c.SetInterest(w.cx, w.cy, radius); err != nil {
			t.Fatal(err)
		}
		ws = append(ws, w)
	}
	var live []donburi.Entity
	h.do(func(w donburi.World) { churn(w, rng, &live, size, 300) })
	for phase := 0; phase < 3; phase++ {
		for round := 0; round < 60; round++ {
			h.do(func(w donburi.World) { churn(w, rng, &live, size, rng.IntN(3)) })
			if round%20 == 0 {
				// Interest moves, so the gateway follows new cells and lets
				// go of others.
				w := ws[rng.IntN(len(ws))]
				w.cx, w.cy = rng.Float64()*size, rng.Float64()*size
				if err := w.p.c.SetInterest(w.cx, w.cy, radius); err != nil {
					t.Fatal(err)
				}
			}
			h.ticks(1)
		}
		h.ticks(10)
		seen := 0
		for i, w := range ws {
			var want map[uint64]expectation
			var band map[uint64]bool
			h.do(func(sw donburi.World) { want, band = view(sw, reg, all, w.cx, w.cy, radius, hyst) })
			held, err := awaitConvergence(w.p, reg, want, band, 10*time.Second)
			if err != nil {
				t.Fatalf("phase %d: client %d did not converge: %v", phase, i, err)
			}
			seen += len(want)
			t.Logf("phase %d: client %d holds %d entities, view %d (+%d in band)", phase, i, held, len(want), len(band))
		}
		if seen == 0 {
			t.Fatal("no client sees anything: the test is not testing")
		}
	}
	bus.mu.Lock()
	fed := bus.fed
	bus.mu.Unlock()
	if fed == 0 {
		t.Fatal("the gateway was fed no chunk")
	}
	if gw.World() != nil {
		t.Fatal("a gateway has a World")
	}
}

// memHub publishes a simulation's chunks to several in-process buses,
// one per gateway.
type memHub struct{ buses []*memBus }

func (h *memHub) Chunk(c plugin.Chunk) {
	for _, b := range h.buses {
		b.Chunk(c)
	}
}

func (h *memHub) TickEnd(tick uint64, n int) {
	for _, b := range h.buses {
		b.TickEnd(tick, n)
	}
}

// TestGatewayFailover: a client knows two gateways; the one it is on
// dies mid-run. The client reconnects to the other, and converges to its
// view of the simulation's World there.
func TestGatewayFailover(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 22))
	reg := standardRegistry()
	const size, radius, hyst, cell = 1500.0, 300.0, 1.15, 250.0
	hub := &memHub{}
	var gws []*plugin.Server
	var urls []string
	for i := 0; i < 2; i++ {
		bus := &memBus{cells: map[plugin.Cell]bool{}}
		gw := plugin.NewGateway(reg, cell, bus, &plugin.Options{DefaultRadius: radius, MaxRadius: 2 * radius, Hysteresis: hyst, Logger: quietLogger()})
		bus.gw = gw
		hub.buses = append(hub.buses, bus)
		gws = append(gws, gw)
	}
	var tsA, tsB *httptest.Server
	tsA, tsB = httptest.NewServer(gws[0]), httptest.NewServer(gws[1])
	defer tsB.Close()
	urls = []string{wsURL(tsA), wsURL(tsB)}
	alive := []bool{true, true}
	var aliveMu sync.Mutex
	h := newHarnessAfter(t, reg, &plugin.Options{Publish: hub, PublishCellSize: cell, Hysteresis: hyst}, 2*time.Millisecond, func() {
		aliveMu.Lock()
		defer aliveMu.Unlock()
		for i, gw := range gws {
			if alive[i] {
				gw.Tick()
			}
		}
	})
	defer h.close()
	for _, b := range hub.buses {
		b.mu.Lock()
		b.sim = h.srv
		b.mu.Unlock()
	}
	p := startClientLoop(t, urls[0], reg, &netclient.Options{URLs: urls[1:]})
	defer p.close()
	if err := p.c.SubscribeAll(); err != nil {
		t.Fatal(err)
	}
	cx, cy := size/2, size/2
	if err := p.c.SetInterest(cx, cy, radius); err != nil {
		t.Fatal(err)
	}
	all := map[int]bool{}
	for i := range reg.Len() {
		all[i] = true
	}
	var live []donburi.Entity
	h.do(func(w donburi.World) { churn(w, rng, &live, size, 200) })
	converge := func(what string) {
		t.Helper()
		h.ticks(10)
		var want map[uint64]expectation
		var band map[uint64]bool
		h.do(func(sw donburi.World) { want, band = view(sw, reg, all, cx, cy, radius, hyst) })
		held, err := awaitConvergence(p, reg, want, band, 10*time.Second)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if len(want) == 0 {
			t.Fatalf("%s: the client sees nothing: the test is not testing", what)
		}
		t.Logf("%s: the client holds %d entities, view %d (+%d in band)", what, held, len(want), len(band))
	}
	converge("on gateway A")
	if got := p.c.URL(); got != urls[0] {
		t.Fatalf("the client is on %s, want gateway A %s", got, urls[0])
	}
	// Gateway A dies; the World goes on.
	aliveMu.Lock()
	alive[0] = false
	aliveMu.Unlock()
	tsA.CloseClientConnections()
	tsA.Close()
	_ = gws[0].Close()
	for round := 0; round < 30; round++ {
		h.do(func(w donburi.World) { churn(w, rng, &live, size, rng.IntN(3)) })
		h.ticks(1)
	}
	converge("on gateway B")
	if got := p.c.URL(); got != urls[1] {
		t.Fatalf("the client is on %s, want gateway B %s", got, urls[1])
	}
	if st := p.c.Stats(); st.Reconnects == 0 {
		t.Fatal("the client never reconnected")
	}
	_ = gws[1].Close()
}

// TestGatewayRefusesRequests: a gateway forwards no request; it answers a
// mutation Forbidden, and goes on serving.
func TestGatewayRefusesRequests(t *testing.T) {
	reg := standardRegistry()
	bus := &memBus{cells: map[plugin.Cell]bool{}}
	gw := plugin.NewGateway(reg, 250, bus, &plugin.Options{DefaultRadius: 300, MaxRadius: 600, Logger: quietLogger()})
	defer gw.Close()
	h := newHarnessAfter(t, reg, &plugin.Options{Publish: bus, PublishCellSize: 250}, 2*time.Millisecond, gw.Tick)
	defer h.close()
	bus.mu.Lock()
	bus.sim, bus.gw = h.srv, gw
	bus.mu.Unlock()
	ts := httptest.NewServer(gw)
	defer ts.Close()
	h.do(func(w donburi.World) {
		e := w.Create(components.Replicated, components.Position, components.Health)
		components.Position.SetValue(w.Entry(e), components.PositionData{X: 10, Y: 10})
		components.Health.SetValue(w.Entry(e), components.HealthData{Current: 5, Max: 10})
	})
	p := startClientLoop(t, wsURL(ts), reg, nil)
	defer p.close()
	if err := p.c.SubscribeAll(); err != nil {
		t.Fatal(err)
	}
	if err := p.c.SetInterest(0, 0, 300); err != nil {
		t.Fatal(err)
	}
	var mine donburi.Entity
	if err := testutil.WaitUntil(5*time.Second, func() string { return "the entity in the mirror" }, func() bool {
		p.do(func(w donburi.World) {
			for _, a := range w.Archetypes() {
				if a.Layout().HasComponent(components.Health) && len(a.Entities()) > 0 {
					mine = a.Entities()[0]
				}
			}
		})
		return mine != donburi.Null
	}); err != nil {
		t.Fatal(err)
	}
	health := testutil.Handle(reg, components.Health)
	var res <-chan netclient.MutationResult
	p.do(func(donburi.World) {
		res = netclient.Mutate(p.c, mine, health, components.HealthData{Current: 1, Max: 10}, nil)
	})
	var got netclient.MutationResult
	if err := testutil.WaitUntil(5*time.Second, func() string { return "the mutation's answer" }, func() bool {
		p.do(func(donburi.World) {
			select {
			case got = <-res:
			default:
			}
		})
		return got.Status != 0 || got.Err != nil
	}); err != nil {
		t.Fatal(err)
	}
	if got.Status != ebisync.Forbidden || !strings.Contains(got.Message, "gateway") {
		t.Fatalf("a mutation on a gateway: %v %q %v, want Forbidden naming the gateway", got.Status, got.Message, got.Err)
	}
	// The gateway serves on: the simulation's change reaches the client.
	h.do(func(w donburi.World) {
		for _, a := range w.Archetypes() {
			if a.Layout().HasComponent(components.Health) {
				for _, e := range a.Entities() {
					components.Health.Get(w.Entry(e)).Current = 9
				}
			}
		}
	})
	if err := testutil.WaitUntil(5*time.Second, func() string { return "the simulation's change in the mirror" }, func() bool {
		var cur int32
		p.do(func(w donburi.World) {
			if w.Valid(mine) {
				cur = components.Health.Get(w.Entry(mine)).Current
			}
		})
		return cur == 9
	}); err != nil {
		t.Fatal(err)
	}
}
