package netclient_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
	"unsafe"

	"github.com/coder/websocket"
	"github.com/yohamta/donburi"

	"github.com/ebisync/ebisync/components"
	"github.com/ebisync/ebisync/internal/testutil"
	"github.com/ebisync/ebisync/internal/wire"
	"github.com/ebisync/ebisync/netclient"
)

func TestServerComponentOrder(t *testing.T) {
	reg := newRegistry()
	fs := newFakeServer(t, reg)
	var names []string
	for _, c := range reg.All() {
		names = append(names, c.Name())
	}
	slices.Reverse(names)
	fs.setNames(names)
	c, fc := dial(t, fs, nil)

	healthID := uint64(slices.Index(names, "ebisync.health"))
	comp, _ := testutil.Codec(reg.Of(components.Health))
	h := components.HealthData{Current: 4, Max: 8}
	var b wire.Batch
	b.AddSpawn(1, 1, []wire.CompValue{{Comp: healthID, Value: comp.AppendFull(nil, unsafe.Pointer(&h))}})
	fc.send(t, &b)
	updateUntil(t, c, func() bool { return c.Stats().Entities == 1 })
	got, ok := get(t, c, 1, components.Health)
	if !ok || got != h {
		t.Fatalf("health = %+v, %v", got, ok)
	}
	if err := c.Subscribe(components.Health); err != nil {
		t.Fatal(err)
	}
	m, _ := wire.DecodeSubscribe(fc.expect(t, wire.KindSubscribe))
	assertEqual(t, "server id in subscription", m.Subs[0].ID, healthID)
}

func TestIdleTimeoutReconnects(t *testing.T) {
	reg := newRegistry()
	fs := newFakeServer(t, reg)
	fs.mu.Lock()
	fs.noPong = true
	fs.mu.Unlock()
	c, fc := dial(t, fs, &netclient.Options{PingInterval: 10 * time.Millisecond, IdleTimeout: 50 * time.Millisecond, MinBackoff: time.Millisecond})
	fc.waitClosed(t)
	fs.mu.Lock()
	fs.noPong = false
	fs.mu.Unlock()
	fs.accept(t)
	updateUntil(t, c, func() bool { return c.Stats().Reconnects >= 1 && c.Connected() })
}

func TestBackpressureLosesNothing(t *testing.T) {
	reg := newRegistry()
	fs := newFakeServer(t, reg)
	c, fc := dial(t, fs, &netclient.Options{MaxPendingBatches: 2})
	const n = 100
	go func() {
		var b wire.Batch
		for i := uint64(1); i <= n; i++ {
			b.Reset()
			b.TickAdvance = 1
			b.AddSpawn(i, 1, []wire.CompValue{full(t, reg, components.Health, components.HealthData{Current: int32(i)})})
			if fc.ws.Write(fs.ctx, websocket.MessageBinary, wire.AppendBatch(nil, &b)) != nil {
				return
			}
		}
	}()
	// Without Update the reader fills the queue and waits.
	twoPending := func() bool { return c.Stats().PendingBatches == 2 }
	testutil.Eventually(t, waitFor, "two pending batches", twoPending)
	testutil.Consistently(t, 20*time.Millisecond, "two pending batches, and no more, without Update", twoPending)
	updateUntil(t, c, func() bool { return c.Stats().Entities == n })
	assertEqual(t, "server tick", c.ServerTick(), fs.tick+n)
	h, _ := get(t, c, n, components.Health)
	assertEqual(t, "last value", h.Current, int32(n))
}

func TestOptimisticMutationAccepted(t *testing.T) {
	reg := newRegistry()
	fs := newFakeServer(t, reg)
	c, fc := dial(t, fs, nil)
	var b wire.Batch
	p0 := components.PositionData{X: 1, Y: 1}
	b.AddSpawn(2, 1, []wire.CompValue{full(t, reg, components.Position, p0)})
	fc.send(t, &b)
	updateUntil(t, c, func() bool { return c.Stats().Entities == 1 })
	e, _ := c.Entity(2)

	opt := &netclient.MutateOptions{Optimistic: true}
	r1 := netclient.Mutate(c, e, testutil.Handle(c.Registry(), components.Position), components.PositionData{X: 2, Y: 1}, opt)
	r2 := netclient.Mutate(c, e, testutil.Handle(c.Registry(), components.Position), components.PositionData{X: 3.004, Y: 1}, opt)
	m1, _ := wire.DecodeMutate(fc.expect(t, wire.KindMutate))
	m2, _ := wire.DecodeMutate(fc.expect(t, wire.KindMutate))
	p, _ := get(t, c, 2, components.Position)
	assertEqual(t, "latest optimistic value", p.X, 3.004)
	// While a position mutation is in flight, Interpolated shows the
	// world's (optimistic) value.
	ip, _ := netclient.Interpolated(c, e, testutil.Handle(c.Registry(), components.Position), time.Now())
	assertEqual(t, "interpolated optimistic value", ip.X, 3.004)

	// The first is accepted: the second still holds the world value.
	b.Reset()
	b.TickAdvance = 1
	b.Updates = []wire.Update{deltaUpdate(t, reg, components.Position, 2, p0, components.PositionData{X: 2, Y: 1})}
	b.Results = []wire.MutationResult{{Request: m1.Request}}
	fc.send(t, &b)
	updateUntil(t, c, func() bool { return len(r1) == 1 })
	p, _ = get(t, c, 2, components.Position)
	assertEqual(t, "still the latest optimistic value", p.X, 3.004)

	// The second is accepted with the server's (quantised) value: the
	// world takes the server's value.
	b.Reset()
	b.TickAdvance = 1
	b.Updates = []wire.Update{deltaUpdate(t, reg, components.Position, 2, components.PositionData{X: 2, Y: 1}, components.PositionData{X: 3, Y: 1})}
	b.Results = []wire.MutationResult{{Request: m2.Request}}
	fc.send(t, &b)
	updateUntil(t, c, func() bool { return len(r2) == 1 })
	if r := <-r2; r.Err != nil {
		t.Fatalf("result %+v", r)
	}
	p, _ = get(t, c, 2, components.Position)
	if !near(p.X, 3) {
		t.Fatalf("position %+v, want the server's X=3", p)
	}
}

func TestDesyncCases(t *testing.T) {
	reg := newRegistry()
	fs := newFakeServer(t, reg)
	c, fc := dial(t, fs, &netclient.Options{MinBackoff: time.Millisecond})
	health := full(t, reg, components.Health, components.HealthData{Current: 1})
	cases := []struct {
		name  string
		batch func(b *wire.Batch)
	}{
		{"delta for an unknown entity", func(b *wire.Batch) {
			b.Updates = []wire.Update{deltaUpdate(t, reg, components.Position, 9, components.PositionData{}, components.PositionData{X: 1})}
		}},
		{"full update for an unknown entity", func(b *wire.Batch) {
			b.Updates = []wire.Update{fullUpdate(t, reg, components.Health, 9, components.HealthData{})}
		}},
		{"delta for a component the entity lacks", func(b *wire.Batch) {
			b.AddSpawn(1, 1, []wire.CompValue{health})
			b.Updates = []wire.Update{deltaUpdate(t, reg, components.Position, 1, components.PositionData{}, components.PositionData{X: 1})}
		}},
		{"component listed twice in a spawn", func(b *wire.Batch) {
			b.AddSpawn(1, 1, []wire.CompValue{health, health})
		}},
		{"generation beyond 32 bits", func(b *wire.Batch) {
			b.AddSpawn(1, 1<<40, []wire.CompValue{health})
		}},
		{"removal of an unknown component id", func(b *wire.Batch) {
			b.Removals = []wire.Removal{{Comp: 500, ID: 1}}
		}},
		{"value of an unknown component id", func(b *wire.Batch) {
			b.AddSpawn(1, 1, []wire.CompValue{{Comp: 600, Value: []byte{0}}})
		}},
	}
	for i, tc := range cases {
		var b wire.Batch
		tc.batch(&b)
		fc.send(t, &b)
		updateUntil(t, c, func() bool { return c.Stats().DecodeErrors == uint64(i+1) })
		if code := fc.waitClosed(t); code != websocket.StatusCode(wire.CloseProtocolError) {
			t.Fatalf("%s: close code %v", tc.name, code)
		}
		fc = fs.accept(t)
		updateUntil(t, c, func() bool { return c.Stats().Reconnects == uint64(i+1) && c.Connected() })
		updateUntil(t, c, func() bool { return c.Stats().Entities == 0 })
	}
}

// TestRandomBatches drives the client with random but valid batches and
// checks the mirror against a model of what the server sent.
func TestRandomBatches(t *testing.T) {
	reg := newRegistry()
	fs := newFakeServer(t, reg)
	var spawns, despawns int
	c, fc := dial(t, fs, &netclient.Options{
		MaxPendingBatches: 4,
		OnSpawn:           func(donburi.Entity) { spawns++ },
		OnDespawn:         func(donburi.Entity, netclient.ExitReason) { despawns++ },
	})
	rng := rand.New(rand.NewPCG(1, 2))

	type state struct {
		gen    uint64
		pos    *components.PositionData
		health *components.HealthData
		name   *components.NameData
	}
	model := map[uint64]*state{}
	gens := map[uint64]uint64{}
	posComp, _ := testutil.Codec(reg.Of(components.Position))
	roundTrip := func(p components.PositionData) components.PositionData {
		var out components.PositionData
		posComp.DecodeFull(posComp.AppendFull(nil, unsafe.Pointer(&p)), unsafe.Pointer(&out))
		return out
	}
	randPos := func() components.PositionData {
		return roundTrip(components.PositionData{X: rng.Float64()*2000 - 1000, Y: rng.Float64()*2000 - 1000})
	}
	modelSpawns, modelDespawns := 0, 0
	tick := fs.tick
	const steps = 300
	for step := 0; step < steps; step++ {
		var b wire.Batch
		b.TickAdvance = uint64(rng.IntN(3))
		tick += b.TickAdvance
		// Exits.
		for id := range model {
			if rng.IntN(8) == 0 {
				b.Exits = append(b.Exits, wire.Exit{Reason: wire.ScopeReason(1 + rng.IntN(4)), ID: id})
			}
		}
		slices.SortFunc(b.Exits, func(a, b wire.Exit) int { return int(a.ID) - int(b.ID) })
		for _, x := range b.Exits {
			delete(model, x.ID)
			modelDespawns++
		}
		// Spawns.
		for id := uint64(1); id <= 12; id++ {
			if model[id] != nil || rng.IntN(4) != 0 {
				continue
			}
			gens[id]++
			st := &state{gen: gens[id]}
			var cvs []wire.CompValue
			if rng.IntN(2) == 0 {
				p := randPos()
				st.pos = &p
				cvs = append(cvs, full(t, reg, components.Position, p))
			}
			if rng.IntN(2) == 0 {
				h := components.HealthData{Current: rng.Int32N(100), Max: 100}
				st.health = &h
				cvs = append(cvs, full(t, reg, components.Health, h))
			}
			rng.Shuffle(len(cvs), func(i, j int) { cvs[i], cvs[j] = cvs[j], cvs[i] })
			b.AddSpawn(id, st.gen, cvs)
			model[id] = st
			modelSpawns++
		}
		// Removals, then updates, per entity in id order.
		ids := slices.Sorted(func(yield func(uint64) bool) {
			for id := range model {
				if !yield(id) {
					return
				}
			}
		})
		for _, id := range ids {
			st := model[id]
			if st.health != nil && rng.IntN(6) == 0 {
				b.Removals = append(b.Removals, wire.Removal{Comp: compID(t, reg, components.Health), ID: id})
				st.health = nil
			}
		}
		for _, id := range ids {
			st := model[id]
			switch {
			case st.pos != nil && rng.IntN(2) == 0:
				p := randPos()
				b.Updates = append(b.Updates, deltaUpdate(t, reg, components.Position, id, *st.pos, p))
				st.pos = &p
			case rng.IntN(5) == 0:
				p := randPos()
				b.Updates = append(b.Updates, fullUpdate(t, reg, components.Position, id, p))
				st.pos = &p
			}
			switch {
			case st.health != nil && rng.IntN(3) == 0:
				h := components.HealthData{Current: st.health.Current - rng.Int32N(5), Max: 100}
				b.Updates = append(b.Updates, deltaUpdate(t, reg, components.Health, id, *st.health, h))
				st.health = &h
			case rng.IntN(6) == 0:
				n := components.NameData{Value: fmt.Sprint("e", id, "-", step)}
				b.Updates = append(b.Updates, fullUpdate(t, reg, components.Name, id, n))
				st.name = &n
			}
		}
		fc.send(t, &b)
		if step%50 == 49 || step == steps-1 {
			updateUntil(t, c, func() bool { return c.ServerTick() == tick && c.Stats().PendingBatches == 0 })
			c.Update()
			// Compare the mirror with the model.
			assertEqual(t, "entities", c.Stats().Entities, len(model))
			assertEqual(t, "world entities", c.World().Len(), len(model))
			for id, st := range model {
				e, ok := c.Entity(uint32(id))
				if !ok {
					t.Fatalf("step %d: entity %d not mirrored", step, id)
				}
				_, gen, _ := c.NetID(e)
				assertEqual(t, "gen", uint64(gen), st.gen)
				p, ok := get(t, c, uint32(id), components.Position)
				if (st.pos != nil) != ok || ok && (math.Abs(p.X-st.pos.X) > 1e-9 || math.Abs(p.Y-st.pos.Y) > 1e-9) {
					t.Fatalf("step %d entity %d: position %+v (%v), want %+v", step, id, p, ok, st.pos)
				}
				h, ok := get(t, c, uint32(id), components.Health)
				if (st.health != nil) != ok || ok && h != *st.health {
					t.Fatalf("step %d entity %d: health %+v (%v), want %+v", step, id, h, ok, st.health)
				}
				n, ok := get(t, c, uint32(id), components.Name)
				if (st.name != nil) != ok || ok && n != *st.name {
					t.Fatalf("step %d entity %d: name %+v (%v), want %+v", step, id, n, ok, st.name)
				}
			}
		}
	}
	assertEqual(t, "spawn hooks", spawns, modelSpawns)
	assertEqual(t, "despawn hooks", despawns, modelDespawns)
	assertEqual(t, "decode errors", c.Stats().DecodeErrors, uint64(0))
}

// TestHostileServer sends garbage and checks the client survives it.
func TestHostileServer(t *testing.T) {
	reg := newRegistry()
	fs := newFakeServer(t, reg)
	c, fc := dial(t, fs, &netclient.Options{MinBackoff: time.Millisecond, MaxBackoff: 2 * time.Millisecond})
	rng := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < 40; i++ {
		msg := make([]byte, 1+rng.IntN(40))
		for j := range msg {
			msg[j] = byte(rng.IntN(256))
		}
		if rng.IntN(2) == 0 {
			msg[0] = byte(wire.KindBatch)
		}
		// The first message may already end the connection.
		fc.ws.Write(fs.ctx, websocket.MessageBinary, msg)
		fc.ws.Write(fs.ctx, websocket.MessageBinary, []byte{byte(wire.KindBatch), 0, 99}) // surely bad
		updateUntil(t, c, func() bool { return !c.Connected() || c.Stats().DecodeErrors > uint64(i) })
		fc.waitClosed(t)
		fc = fs.accept(t)
	}
	updateUntil(t, c, func() bool { return c.Connected() })
	if c.Stats().DecodeErrors < 40 {
		t.Fatalf("decode errors %d", c.Stats().DecodeErrors)
	}
}

func TestCloseUnresponsiveServer(t *testing.T) {
	reg := newRegistry()
	fs := newFakeServer(t, reg)
	fs.mu.Lock()
	fs.stall = true
	fs.mu.Unlock()
	c, _ := dial(t, fs, nil)
	start := time.Now()
	c.Close()
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("Close took %v", d)
	}
}
