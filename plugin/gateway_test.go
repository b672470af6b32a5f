package plugin_test

import (
	"math/rand/v2"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
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

// TestGatewayFailover: three gateways forward their clients to one
// simulation; each client owns a ship, holds control of it, and knows
// every gateway. Gateway A is killed mid-run, as by a crash, while the
// World churns. Its clients reconnect to the other gateways and resume
// their sessions there within the window: the same client ids, their
// mirrors kept (no entity leaves with ExitResync, their own ship stays the
// same mirror entity), their control held, the simulation's OnResume run
// and no OnDisconnect. Every client converges to its view of the World,
// and a resumed client's mutation is answered.
func TestGatewayFailover(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 22))
	reg := standardRegistry()
	points := components.Register(reg, "test.score", score, &components.Options{ClientWritable: true})
	const size, radius, hyst = 1500.0, 300.0, 1.15
	var seen infos
	var rig *remoteRig
	rig = newRemoteRig(t, reg, 3, &plugin.Options{
		Hysteresis: hyst,
		OnConnect: func(ci plugin.ClientInfo) {
			seen.mu.Lock()
			seen.connected = append(seen.connected, ci)
			seen.mu.Unlock()
			w := rig.h.w
			e := w.Create(components.Replicated, components.Position, score, components.Owner)
			components.Position.SetValue(w.Entry(e), components.PositionData{X: size / 2, Y: size / 2})
			components.Owner.SetValue(w.Entry(e), components.OwnerData{Client: ci.ID})
		},
		OnResume: func(ci plugin.ClientInfo) {
			seen.mu.Lock()
			seen.resumed = append(seen.resumed, ci)
			seen.mu.Unlock()
		},
		OnDisconnect: func(ci plugin.ClientInfo) {
			seen.mu.Lock()
			seen.departed = append(seen.departed, ci)
			seen.mu.Unlock()
		},
	}, &plugin.Options{DefaultRadius: radius, MaxRadius: 2 * radius, Hysteresis: hyst})
	defer rig.close()
	all := map[int]bool{}
	for i := range reg.Len() {
		all[i] = true
	}
	type player struct {
		p       *clientLoop
		gw      int
		id      uint64
		cx, cy  float64
		ship    donburi.Entity // its own ship in its mirror
		resyncs atomic.Int64   // entities that left its mirror with ExitResync
	}
	var players []*player
	for i := range 6 {
		pl := &player{gw: i % 3, cx: size/2 + (rng.Float64()-0.5)*300, cy: size/2 + (rng.Float64()-0.5)*300} // near the ships
		var others []string
		for k, u := range rig.urls {
			if k != pl.gw {
				others = append(others, u)
			}
		}
		pl.p = startClientLoop(t, rig.urls[pl.gw], reg, &netclient.Options{
			URLs: others,
			OnDespawn: func(_ donburi.Entity, why netclient.ExitReason) {
				if why == netclient.ExitResync {
					pl.resyncs.Add(1)
				}
			},
		})
		defer pl.p.close()
		pl.id = pl.p.c.ClientID()
		if err := pl.p.c.SubscribeAll(); err != nil {
			t.Fatal(err)
		}
		if err := pl.p.c.SetInterest(pl.cx, pl.cy, radius); err != nil {
			t.Fatal(err)
		}
		players = append(players, pl)
	}
	var live []donburi.Entity
	rig.h.do(func(w donburi.World) { churn(w, rng, &live, size, 200) })
	converge := func(what string) {
		t.Helper()
		rig.h.ticks(10)
		for i, pl := range players {
			var want map[uint64]expectation
			var band map[uint64]bool
			rig.h.do(func(sw donburi.World) { want, band = view(sw, reg, all, pl.cx, pl.cy, radius, hyst) })
			held, err := awaitConvergence(pl.p, reg, want, band, 10*time.Second)
			if err != nil {
				t.Fatalf("%s: client %d did not converge: %v (on %s, %+v)", what, i, err, pl.p.c.URL(), pl.p.c.Stats())
			}
			if len(want) == 0 {
				t.Fatalf("%s: client %d sees nothing: the test is not testing", what, i)
			}
			t.Logf("%s: client %d on %s holds %d entities, view %d (+%d in band)", what, i, pl.p.c.URL(), held, len(want), len(band))
		}
	}
	converge("before the failure")
	for _, pl := range players {
		testutil.Eventually(t, 5*time.Second, "the own ship in the mirror", func() bool {
			pl.p.do(func(donburi.World) {
				if owned := pl.p.c.Owned(nil); len(owned) == 1 {
					pl.ship = owned[0]
				}
			})
			return pl.ship != donburi.Null
		})
		var ctl <-chan netclient.ControlResult
		pl.p.do(func(donburi.World) { ctl = pl.p.c.TakeControl(pl.ship, time.Minute, false) })
		if r := waitResult(t, pl.p, ctl, "the control of the own ship"); r.Status != netclient.ControlTaken {
			t.Fatalf("taking the own ship: %v", r.Status)
		}
	}

	// Gateway A dies, as by a crash; the World goes on.
	rig.kill(0)
	for round := 0; round < 30; round++ {
		rig.h.do(func(w donburi.World) { churn(w, rng, &live, size, rng.IntN(3)) })
		rig.h.ticks(1)
	}
	converge("after the failure")
	for i, pl := range players {
		moved := pl.gw == 0
		if got := pl.p.c.URL(); got == rig.urls[0] || !moved && got != rig.urls[pl.gw] {
			t.Fatalf("client %d is on %s after gateway A died", i, got)
		}
		st := pl.p.c.Stats()
		if moved && st.Resumes == 0 {
			t.Fatalf("client %d of gateway A did not resume its session (%d reconnects)", i, st.Reconnects)
		}
		if id := pl.p.c.ClientID(); id != pl.id {
			t.Fatalf("client %d came back as client %d, was %d", i, id, pl.id)
		}
		if n := pl.resyncs.Load(); n != 0 {
			t.Fatalf("client %d: %d entities left its mirror for a full resync", i, n)
		}
		var ship donburi.Entity
		pl.p.do(func(donburi.World) {
			if owned := pl.p.c.Owned(nil); len(owned) == 1 {
				ship = owned[0]
			}
		})
		if ship != pl.ship {
			t.Fatalf("client %d's own ship is mirror entity %v, was %v", i, ship, pl.ship)
		}
		if _, ok := seen.find(&seen.departed, pl.id); ok {
			t.Fatalf("client %d: the simulation ran OnDisconnect", i)
		}
		if _, ok := seen.find(&seen.resumed, pl.id); moved && !ok {
			t.Fatalf("client %d: the simulation did not run OnResume", i)
		}
		var holder uint64
		rig.h.do(func(w donburi.World) {
			for _, a := range w.Archetypes() {
				if !a.Layout().HasComponent(components.Owner) || !a.Layout().HasComponent(components.Control) {
					continue
				}
				for _, e := range a.Entities() {
					if components.Owner.Get(w.Entry(e)).Client == pl.id {
						holder = components.Control.Get(w.Entry(e)).Client
					}
				}
			}
		})
		if holder != pl.id {
			t.Fatalf("client %d's ship is controlled by %d after the failover, want %d", i, holder, pl.id)
		}
		if moved {
			var res <-chan netclient.MutationResult
			pl.p.do(func(donburi.World) { res = netclient.Mutate(pl.p.c, pl.ship, points, scoreData{Points: 42}, nil) })
			if r := waitResult(t, pl.p, res, "a resumed client's mutation"); r.Status != ebisync.Ok {
				t.Fatalf("client %d's mutation after the failover: %v %q %v", i, r.Status, r.Message, r.Err)
			}
		}
	}
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
