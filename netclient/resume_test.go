package netclient_test

import (
	"math"
	"slices"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/yohamta/donburi"

	"github.com/ebisync/ebisync"
	"github.com/ebisync/ebisync/components"
	"github.com/ebisync/ebisync/internal/testutil"
	"github.com/ebisync/ebisync/internal/wire"
	"github.com/ebisync/ebisync/netclient"
)

// fastReconnect returns options that reconnect within milliseconds.
func fastReconnect() *netclient.Options {
	return &netclient.Options{MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// next returns the next message the client sent on fc (pings excepted).
func (fc *fakeConn) next(t *testing.T) clientMsg {
	t.Helper()
	select {
	case m := <-fc.in:
		return m
	case <-time.After(waitFor):
		t.Fatal("no message from the client")
		return clientMsg{}
	}
}

// expectSubs reads the client's next message, which must be a Subscribe
// or Unsubscribe (kind) of want.
func (fc *fakeConn) expectSubs(t *testing.T, kind wire.Kind, want []wire.Sub) {
	t.Helper()
	m := fc.next(t)
	if m.kind != kind {
		t.Fatalf("got a %s message, want %s of %v", m.kind, kind, want)
	}
	s, err := wire.DecodeSubscribe(m.body)
	must(t, err)
	if !slices.Equal(s.Subs, want) {
		t.Fatalf("%s of %v, want %v", kind, s.Subs, want)
	}
}

// TestResumeHelloCarriesScope: the Hello of a reconnect that asks to
// resume carries the remembered interest and subscriptions, component ids
// numbered as the session's server numbered them; the client sends them
// again after the Welcome. A client that never set an interest or
// subscribed sends none.
func TestResumeHelloCarriesScope(t *testing.T) {
	reg := newRegistry()
	fs := newFakeServer(t, reg)
	c, fc := dial(t, fs, fastReconnect())
	if fc.hello.Resume != nil {
		t.Fatalf("Dial's Hello asks to resume: %+v", fc.hello.Resume)
	}
	must(t, c.Subscribe(components.Health, components.Position))
	must(t, c.SubscribeEntity(7, 2))
	must(t, c.SubscribeEntity(3, 1))
	must(t, c.SetInterest(10, 20, 300))
	fc.expect(t, wire.KindInterest)

	fc.ws.Close(websocket.StatusGoingAway, "restart")
	fc2 := fs.accept(t)
	r := fc2.hello.Resume
	if r == nil {
		t.Fatal("the reconnect's Hello does not ask to resume")
	}
	assertEqual(t, "client id", r.ClientID, fc.welcome.ClientID)
	assertEqual(t, "tick", r.Tick, fs.tick)
	in := wire.Interest{Mode: wire.InterestPoint, X: 10, Y: 20, Radius: 300}
	if r.Interest == nil || *r.Interest != in {
		t.Fatalf("Hello interest %+v, want %+v", r.Interest, in)
	}
	subs := []wire.Sub{ // components in registry order, then entities by id
		{Kind: wire.SubComponent, ID: compID(t, reg, components.Position)},
		{Kind: wire.SubComponent, ID: compID(t, reg, components.Health)},
		{Kind: wire.SubEntity, ID: 3, Gen: 1},
		{Kind: wire.SubEntity, ID: 7, Gen: 2},
	}
	if !slices.Equal(r.Subs, subs) {
		t.Fatalf("Hello subscriptions %v, want %v", r.Subs, subs)
	}

	// After the Welcome (of a fresh session here), the same again.
	m := fc2.next(t)
	assertEqual(t, "first message", m.kind, wire.KindInterest)
	got, err := wire.DecodeInterest(m.body)
	must(t, err)
	assertEqual(t, "interest", got, in)
	fc2.expectSubs(t, wire.KindSubscribe, subs)

	// Nothing remembered: nothing carried.
	_, fc = dial(t, fs, fastReconnect())
	fc.ws.Close(websocket.StatusGoingAway, "restart")
	fc2 = fs.accept(t)
	r = fc2.hello.Resume
	if r == nil || r.ClientID != fc.welcome.ClientID || r.Interest != nil || r.Subs != nil {
		t.Fatalf("Hello resume %+v, want client %d with no interest or subscriptions", r, fc.welcome.ClientID)
	}
}

// TestResumeHelloOtherNumbering: a resumed session's server that numbers
// the components otherwise than the last one read the Hello's component
// subscriptions as other components; after the Welcome the client
// unsubscribes those and subscribes to its own under the new numbering.
func TestResumeHelloOtherNumbering(t *testing.T) {
	reg := newRegistry()
	fs := newFakeServer(t, reg)
	c, fc := dial(t, fs, fastReconnect())
	must(t, c.Subscribe(components.Position, components.Health))
	must(t, c.SubscribeEntity(9, 4))
	fc.expect(t, wire.KindSubscribe)

	var names []string
	for _, comp := range reg.All() {
		names = append(names, comp.Name())
	}
	slices.Reverse(names)
	newID := func(ct donburi.IComponentType) uint64 {
		comp, _ := reg.Of(ct)
		return uint64(slices.Index(names, comp.Name()))
	}
	fs.setNames(names)
	fs.setResume(true)
	fc.ws.Close(websocket.StatusGoingAway, "restart")
	fc2 := fs.accept(t)
	assertEqual(t, "resumed", fc2.welcome.Resumed, true)

	pos, health := compID(t, reg, components.Position), compID(t, reg, components.Health)
	entity := wire.Sub{Kind: wire.SubEntity, ID: 9, Gen: 4}
	hello := []wire.Sub{{Kind: wire.SubComponent, ID: pos}, {Kind: wire.SubComponent, ID: health}, entity}
	if !slices.Equal(fc2.hello.Resume.Subs, hello) {
		t.Fatalf("Hello subscriptions %v, want %v", fc2.hello.Resume.Subs, hello)
	}
	if pos == newID(components.Position) || pos == newID(components.Health) || health == newID(components.Position) || health == newID(components.Health) {
		t.Fatal("the test's numbering does not move position and health")
	}
	fc2.expectSubs(t, wire.KindUnsubscribe, []wire.Sub{{Kind: wire.SubComponent, ID: pos}, {Kind: wire.SubComponent, ID: health}})
	fc2.expectSubs(t, wire.KindSubscribe, []wire.Sub{
		{Kind: wire.SubComponent, ID: newID(components.Position)},
		{Kind: wire.SubComponent, ID: newID(components.Health)},
		entity,
	})
	updateUntil(t, c, func() bool { return c.Stats().Resumes == 1 })

	// The same numbering again: nothing to take back.
	fc2.ws.Close(websocket.StatusGoingAway, "restart")
	fc3 := fs.accept(t)
	assertEqual(t, "resumed", fc3.welcome.Resumed, true)
	fc3.expectSubs(t, wire.KindSubscribe, []wire.Sub{
		{Kind: wire.SubComponent, ID: newID(components.Position)},
		{Kind: wire.SubComponent, ID: newID(components.Health)},
		entity,
	})
}

// TestSpawnRefreshesHeldEntity: in a resumed session's first batch, the
// spawn of a kept entity at the same generation refreshes the mirror
// entity in place: the same donburi entity, the spawn's values, the
// components it does not list removed, OnChange for what changed only,
// no OnSpawn or OnDespawn, interpolation continuing from the values
// before, ownership updated, and an optimistic value held as for an
// update. A spawn of another generation replaces the entity.
func TestSpawnRefreshesHeldEntity(t *testing.T) {
	reg := newRegistry()
	fs := newFakeServer(t, reg)
	fs.setResume(true)
	var spawned []donburi.Entity
	type change struct {
		e    donburi.Entity
		comp string
	}
	var changed []change
	type exit struct {
		e      donburi.Entity
		reason netclient.ExitReason
	}
	var exits []exit
	opts := fastReconnect()
	opts.OnSpawn = func(e donburi.Entity) { spawned = append(spawned, e) }
	opts.OnDespawn = func(e donburi.Entity, r netclient.ExitReason) { exits = append(exits, exit{e, r}) }
	opts.OnChange = func(e donburi.Entity, comp *components.Component) { changed = append(changed, change{e, comp.Name()}) }
	c, fc := dial(t, fs, opts)

	p1 := components.PositionData{X: 10, Y: -4}
	h1 := components.HealthData{Current: 5, Max: 10}
	var b wire.Batch
	b.TickAdvance = 1
	b.AddSpawn(1, 3, []wire.CompValue{
		full(t, reg, components.Owner, components.OwnerData{Client: 999}),
		full(t, reg, components.Position, p1),
		full(t, reg, components.Name, components.NameData{Value: "one"}),
		full(t, reg, components.Health, h1),
	})
	b.AddSpawn(2, 1, []wire.CompValue{full(t, reg, components.Health, h1)})
	fc.send(t, &b)
	updateUntil(t, c, func() bool { return c.Stats().Entities == 2 })
	e1, _ := c.Entity(1)
	e2, _ := c.Entity(2)
	if c.Owns(e1) {
		t.Fatal("owns entity 1 before its owner changed")
	}

	fc.ws.Close(websocket.StatusGoingAway, "restart")
	fc = fs.accept(t)
	updateUntil(t, c, func() bool { return c.Stats().Resumes == 1 })
	spawned, changed, exits = nil, nil, nil

	// An optimistic mutation of entity 1's health is in flight.
	hOpt := components.HealthData{Current: 99, Max: 10}
	res := netclient.Mutate(c, e1, testutil.Handle(reg, components.Health), hOpt, &netclient.MutateOptions{Optimistic: true})
	mut, err := wire.DecodeMutate(fc.expect(t, wire.KindMutate))
	must(t, err)

	p2 := components.PositionData{X: 30, Y: -4}
	h2 := components.HealthData{Current: 6, Max: 10}
	b.Reset()
	b.TickAdvance = 3
	b.Resume, b.Keep = true, []uint64{1, 2}
	b.AddSpawn(1, 3, []wire.CompValue{
		full(t, reg, components.Owner, components.OwnerData{Client: c.ClientID()}),
		full(t, reg, components.Position, p2),
		full(t, reg, components.Health, h2),
		full(t, reg, components.Velocity, components.VelocityData{X: 1}),
	})
	b.AddSpawn(2, 2, []wire.CompValue{full(t, reg, components.Health, h1)})
	fc.send(t, &b)
	updateUntil(t, c, func() bool { return c.ServerTick() == fs.tick+3 })

	got, ok := c.Entity(1)
	assertEqual(t, "entity 1 mirrored", ok, true)
	assertEqual(t, "entity 1", got, e1)
	p, _ := get(t, c, 1, components.Position)
	assertEqual(t, "position", p, p2)
	v, ok := get(t, c, 1, components.Velocity)
	assertEqual(t, "velocity added", ok, true)
	assertEqual(t, "velocity", v, components.VelocityData{X: 1})
	if _, ok := get(t, c, 1, components.Name); ok {
		t.Fatal("the name the spawn does not list is still there")
	}
	h, _ := get(t, c, 1, components.Health)
	assertEqual(t, "held optimistic health", h, hOpt)
	if !c.Owns(e1) {
		t.Fatal("does not own entity 1 after its owner changed to this client")
	}

	// Interpolation goes on from the position before: halfway between the
	// two batches, halfway between the two values.
	pos := testutil.Handle(reg, components.Position)
	at := netclient.RenderTime(c, float64(fs.tick)+2.5)
	ip, ok := netclient.Interpolated(c, e1, pos, at)
	if !ok || math.Abs(ip.X-20) > 1e-3 {
		t.Fatalf("interpolated position %+v, %v; want X 20", ip, ok)
	}

	// Entity 2 came back at another generation: a new entity.
	e2b, ok := c.Entity(2)
	if !ok || e2b == e2 {
		t.Fatalf("entity 2 = %v, %v; want a new entity, not %v", e2b, ok, e2)
	}
	if _, gen, _ := c.NetID(e2b); gen != 2 {
		t.Fatalf("entity 2 generation %d, want 2", gen)
	}
	assertEqual(t, "spawned", len(spawned), 1)
	assertEqual(t, "spawned entity", spawned[0], e2b)
	assertEqual(t, "exits", len(exits), 1)
	assertEqual(t, "exit", exits[0], exit{e2, netclient.ExitDespawned})

	var of1 []string
	for _, ch := range changed {
		if ch.e == e1 {
			of1 = append(of1, ch.comp)
		}
	}
	slices.Sort(of1)
	want := []string{"ebisync.name", "ebisync.owner", "ebisync.position", "ebisync.velocity"}
	if !slices.Equal(of1, want) {
		t.Fatalf("OnChange of entity 1 for %v, want %v", of1, want)
	}

	// The mutation's answer hands the world the server's health.
	changed = nil
	b.Reset()
	b.Results = []wire.MutationResult{{Request: mut.Request, Status: wire.StatusOk}}
	fc.send(t, &b)
	updateUntil(t, c, func() bool {
		select {
		case r := <-res:
			assertEqual(t, "mutation status", r.Status, ebisync.Ok)
			return true
		default:
			return false
		}
	})
	h, _ = get(t, c, 1, components.Health)
	assertEqual(t, "health after the answer", h, h2)
	if !slices.Equal(changed, []change{{e1, "ebisync.health"}}) {
		t.Fatalf("OnChange after the answer: %v", changed)
	}
	assertEqual(t, "decode errors", c.Stats().DecodeErrors, uint64(0))
}
