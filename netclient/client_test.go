package netclient_test

import (
	"github.com/ebisync/ebisync"

	"context"
	"errors"
	"math"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/coder/websocket"
	"github.com/yohamta/donburi"
	"go.uber.org/goleak"

	"github.com/ebisync/ebisync/components"
	"github.com/ebisync/ebisync/internal/testutil"
	"github.com/ebisync/ebisync/internal/wire"
	"github.com/ebisync/ebisync/netclient"
)

func TestHandshake(t *testing.T) {
	reg := newRegistry()
	fs := newFakeServer(t, reg)
	c, fc := dial(t, fs, &netclient.Options{Name: "tester"})

	assertEqual(t, "hello version", fc.hello.Version, uint64(wire.ProtocolVersion))
	assertEqual(t, "hello name", fc.hello.ClientName, "tester")
	assertEqual(t, "hello components", len(fc.hello.Components), reg.Len())
	for i, sc := range reg.Schema() {
		d := fc.hello.Components[i]
		assertEqual(t, "component name", d.Name, sc.Name)
		assertEqual(t, "component hash", d.Hash, sc.Hash)
		assertEqual(t, "field count", len(d.Fields), len(sc.Fields))
	}
	assertEqual(t, "client id", c.ClientID(), fc.welcome.ClientID)
	assertEqual(t, "connected", c.Connected(), true)
	assertEqual(t, "server tick", c.ServerTick(), fs.tick)
	if err := c.Update(); err != nil {
		t.Fatalf("Update: %v", err)
	}
}

func TestDialRefused(t *testing.T) {
	reg := newRegistry()
	fs := newFakeServer(t, reg)
	msg := `schema mismatch: component "ebisync.position" field "X": type float32 locally but float64 remotely`
	fs.setRefuse(&wire.Error{Code: wire.CloseSchemaMismatch, Message: msg})
	c, err := netclient.Dial(context.Background(), fs.url, reg, nil)
	if err == nil {
		c.Close()
		t.Fatal("Dial succeeded")
	}
	if !strings.Contains(err.Error(), msg) {
		t.Fatalf("error %q does not contain the server's message", err)
	}
	var re *netclient.RefusedError
	if !errors.As(err, &re) || re.Code != wire.CloseSchemaMismatch {
		t.Fatalf("error %v is not a RefusedError with code 4001", err)
	}
}

func TestDialWelcomeMismatch(t *testing.T) {
	reg := newRegistry()
	fs := newFakeServer(t, reg)
	names := []string{"ebisync.owner", "ebisync.control", "ebisync.position", "ebisync.velocity", "ebisync.name"} // no health
	fs.setNames(names)
	_, err := netclient.Dial(context.Background(), fs.url, reg, nil)
	var me *components.MismatchError
	if !errors.As(err, &me) || me.Component != "ebisync.health" {
		t.Fatalf("Dial error %v does not name ebisync.health", err)
	}

	fs.setNames(append(names, "ebisync.health", "game.unknown"))
	_, err = netclient.Dial(context.Background(), fs.url, reg, nil)
	if !errors.As(err, &me) || me.Component != "game.unknown" {
		t.Fatalf("Dial error %v does not name game.unknown", err)
	}
}

func TestSubscriptionsAndInterest(t *testing.T) {
	reg := newRegistry()
	fs := newFakeServer(t, reg)
	c, fc := dial(t, fs, nil)

	if err := c.Subscribe(components.Position, components.Health); err != nil {
		t.Fatal(err)
	}
	m, err := wire.DecodeSubscribe(fc.expect(t, wire.KindSubscribe))
	if err != nil {
		t.Fatal(err)
	}
	assertEqual(t, "subs", len(m.Subs), 2)
	assertEqual(t, "sub 0", m.Subs[0], wire.Sub{Kind: wire.SubComponent, ID: compID(t, reg, components.Position)})
	assertEqual(t, "sub 1", m.Subs[1], wire.Sub{Kind: wire.SubComponent, ID: compID(t, reg, components.Health)})

	if err := c.SubscribeEntity(7, 2); err != nil {
		t.Fatal(err)
	}
	m, _ = wire.DecodeSubscribe(fc.expect(t, wire.KindSubscribe))
	assertEqual(t, "entity sub", m.Subs[0], wire.Sub{Kind: wire.SubEntity, ID: 7, Gen: 2})

	if err := c.Unsubscribe(components.Health); err != nil {
		t.Fatal(err)
	}
	m, _ = wire.DecodeSubscribe(fc.expect(t, wire.KindUnsubscribe))
	assertEqual(t, "unsub", m.Subs[0], wire.Sub{Kind: wire.SubComponent, ID: compID(t, reg, components.Health)})

	if err := c.SetInterest(10, 20, 300); err != nil {
		t.Fatal(err)
	}
	in, err := wire.DecodeInterest(fc.expect(t, wire.KindInterest))
	if err != nil {
		t.Fatal(err)
	}
	assertEqual(t, "interest", in, wire.Interest{Mode: wire.InterestPoint, X: 10, Y: 20, Radius: 300})

	if err := c.SetInterest(math.NaN(), 0, 1); err == nil {
		t.Fatal("SetInterest accepted NaN")
	}
	unknown := donburi.NewComponentType[struct{ A int }]()
	if err := c.Subscribe(unknown); !errors.Is(err, netclient.ErrUnknownComponent) {
		t.Fatalf("Subscribe(unregistered): %v", err)
	}
}

func TestApply(t *testing.T) {
	reg := newRegistry()
	fs := newFakeServer(t, reg)
	var spawned, despawned, changed int
	var lastReason netclient.ExitReason
	c, fc := dial(t, fs, &netclient.Options{
		OnSpawn: func(donburi.Entity) { spawned++ },
		OnDespawn: func(e donburi.Entity, r netclient.ExitReason) {
			despawned++
			lastReason = r
		},
		OnChange: func(donburi.Entity, *components.Component) { changed++ },
	})

	p1 := components.PositionData{X: 1.5, Y: -2}
	h1 := components.HealthData{Current: 90, Max: 100}
	var b wire.Batch
	b.TickAdvance = 1
	b.AddSpawn(1, 3, []wire.CompValue{full(t, reg, components.Position, p1), full(t, reg, components.Health, h1)})
	b.AddSpawn(2, 1, []wire.CompValue{full(t, reg, components.Position, components.PositionData{X: 5})})
	fc.send(t, &b)
	updateUntil(t, c, func() bool { return c.Stats().Entities == 2 })

	assertEqual(t, "spawned", spawned, 2)
	assertEqual(t, "world entities", c.World().Len(), 2)
	assertEqual(t, "server tick", c.ServerTick(), fs.tick+1)
	p, _ := get(t, c, 1, components.Position)
	assertEqual(t, "position", p, p1)
	h, _ := get(t, c, 1, components.Health)
	assertEqual(t, "health", h, h1)
	e1, _ := c.Entity(1)
	id, gen, ok := c.NetID(e1)
	if !ok || id != 1 || gen != 3 {
		t.Fatalf("NetID = %d, %d, %v", id, gen, ok)
	}
	tag := components.Replicated.Get(c.World().Entry(e1))
	if tag.NetID != 1 || tag.Gen != 3 {
		t.Fatalf("Replicated tag = %+v", tag)
	}

	// Full update adding a component, a delta, a removal.
	p2 := components.PositionData{X: 2.25, Y: -1}
	b.Reset()
	b.TickAdvance = 1
	b.Removals = []wire.Removal{{Comp: compID(t, reg, components.Health), ID: 1}}
	b.Updates = []wire.Update{
		deltaUpdate(t, reg, components.Position, 1, p1, p2),
		fullUpdate(t, reg, components.Name, 2, components.NameData{Value: "two"}),
	}
	fc.send(t, &b)
	updateUntil(t, c, func() bool { return c.ServerTick() == fs.tick+2 })

	p, _ = get(t, c, 1, components.Position)
	if !near(p.X, p2.X) || !near(p.Y, p2.Y) {
		t.Fatalf("position after delta = %+v, want %+v", p, p2)
	}
	if _, ok := get(t, c, 1, components.Health); ok {
		t.Fatal("health not removed")
	}
	n, ok := get(t, c, 2, components.Name)
	if !ok || n.Value != "two" {
		t.Fatalf("name = %+v, %v", n, ok)
	}
	assertEqual(t, "changes", changed, 3)

	// A second delta applies to the last server value, even though the game
	// scribbled over the world value.
	components.Position.Get(c.World().Entry(e1)).X = 1000
	p3 := components.PositionData{X: 3, Y: -1}
	b.Reset()
	b.TickAdvance = 2
	b.Updates = []wire.Update{deltaUpdate(t, reg, components.Position, 1, p2, p3)}
	fc.send(t, &b)
	updateUntil(t, c, func() bool { return c.ServerTick() == fs.tick+4 })
	p, _ = get(t, c, 1, components.Position)
	if !near(p.X, p3.X) || !near(p.Y, p3.Y) {
		t.Fatalf("position after second delta = %+v, want %+v", p, p3)
	}

	// Exit.
	b.Reset()
	b.TickAdvance = 1
	b.Exits = []wire.Exit{{Reason: wire.ReasonOutOfRange, ID: 1}}
	fc.send(t, &b)
	updateUntil(t, c, func() bool { return c.Stats().Entities == 1 })
	assertEqual(t, "despawned", despawned, 1)
	assertEqual(t, "reason", lastReason, netclient.ExitOutOfRange)
	assertEqual(t, "world entities", c.World().Len(), 1)
	if _, ok := c.Entity(1); ok {
		t.Fatal("entity 1 still mirrored")
	}
	assertEqual(t, "decode errors", c.Stats().DecodeErrors, uint64(0))
}

func TestCompressedBatch(t *testing.T) {
	reg := newRegistry()
	fs := newFakeServer(t, reg)
	c, fc := dial(t, fs, nil)
	var b wire.Batch
	b.TickAdvance = 1
	for i := uint64(1); i <= 50; i++ {
		b.AddSpawn(i, 1, []wire.CompValue{full(t, reg, components.Name, components.NameData{Value: "the same long name, again and again"})})
	}
	var comp wire.Compressor
	msg := comp.Compress(nil, wire.AppendBatch(nil, &b))
	if msg[0]&wire.FlagCompressed == 0 {
		t.Fatal("batch did not compress")
	}
	fc.sendRaw(t, msg)
	updateUntil(t, c, func() bool { return c.Stats().Entities == 50 })
	st := c.Stats()
	if st.CompressedIn != uint64(len(msg)) || st.UncompressedIn <= st.CompressedIn {
		t.Fatalf("compressed %d uncompressed %d, message %d", st.CompressedIn, st.UncompressedIn, len(msg))
	}
	n, _ := get(t, c, 50, components.Name)
	assertEqual(t, "name", n.Value, "the same long name, again and again")
}

func TestGameRemovedMirrorEntity(t *testing.T) {
	reg := newRegistry()
	fs := newFakeServer(t, reg)
	spawned := 0
	c, fc := dial(t, fs, &netclient.Options{OnSpawn: func(donburi.Entity) { spawned++ }})
	var b wire.Batch
	b.AddSpawn(4, 1, []wire.CompValue{
		full(t, reg, components.Position, components.PositionData{X: 1}),
		full(t, reg, components.Health, components.HealthData{Current: 5}),
	})
	fc.send(t, &b)
	updateUntil(t, c, func() bool { return spawned == 1 })

	e, _ := c.Entity(4)
	c.World().Remove(e)
	if _, ok := c.Entity(4); ok {
		t.Fatal("Entity returned a removed entity")
	}
	// Updates of a removed entity bring it back, with all its components.
	b.Reset()
	b.TickAdvance = 1
	b.Updates = []wire.Update{deltaUpdate(t, reg, components.Position, 4, components.PositionData{X: 1}, components.PositionData{X: 2})}
	b.Removals = []wire.Removal{{Comp: compID(t, reg, components.Velocity), ID: 4}} // not present: ignored
	fc.send(t, &b)
	updateUntil(t, c, func() bool { return spawned == 2 })
	p, ok := get(t, c, 4, components.Position)
	if !ok || !near(p.X, 2) {
		t.Fatalf("position = %+v, %v", p, ok)
	}
	h, ok := get(t, c, 4, components.Health)
	if !ok || h.Current != 5 {
		t.Fatalf("health = %+v, %v", h, ok)
	}
	// A removed component comes back with the next full update, and the
	// game's removal of an exiting entity does not bother the client.
	e, _ = c.Entity(4)
	c.World().Entry(e).RemoveComponent(components.Health)
	b.Reset()
	b.TickAdvance = 1
	b.Updates = []wire.Update{fullUpdate(t, reg, components.Health, 4, components.HealthData{Current: 6})}
	fc.send(t, &b)
	updateUntil(t, c, func() bool { h, ok := get(t, c, 4, components.Health); return ok && h.Current == 6 })
	c.World().Remove(e)
	b.Reset()
	b.Exits = []wire.Exit{{Reason: wire.ReasonDespawned, ID: 4}}
	fc.send(t, &b)
	updateUntil(t, c, func() bool { return c.Stats().Entities == 0 })
	assertEqual(t, "decode errors", c.Stats().DecodeErrors, uint64(0))
}

func TestMalformedBatchReconnects(t *testing.T) {
	reg := newRegistry()
	fs := newFakeServer(t, reg)
	despawns := map[netclient.ExitReason]int{}
	c, fc := dial(t, fs, &netclient.Options{
		OnDespawn: func(_ donburi.Entity, r netclient.ExitReason) { despawns[r]++ },
	})
	if err := c.Subscribe(components.Position); err != nil {
		t.Fatal(err)
	}
	if err := c.SetInterest(1, 2, 50); err != nil {
		t.Fatal(err)
	}
	var b wire.Batch
	b.AddSpawn(1, 1, []wire.CompValue{full(t, reg, components.Position, components.PositionData{X: 1})})
	fc.send(t, &b)
	updateUntil(t, c, func() bool { return c.Stats().Entities == 1 })

	// A section op that does not exist.
	fc.sendRaw(t, []byte{byte(wire.KindBatch), 1, 99, 0})
	assertEqual(t, "close code", fc.waitClosed(t), websocket.StatusCode(wire.CloseProtocolError))

	fc2 := fs.accept(t)
	// Interest first, then the subscriptions.
	first := <-fc2.in
	for first.kind == wire.KindPong {
		first = <-fc2.in
	}
	assertEqual(t, "first message after reconnect", first.kind, wire.KindInterest)
	m, _ := wire.DecodeSubscribe(fc2.expect(t, wire.KindSubscribe))
	assertEqual(t, "resubscribed", m.Subs[0], wire.Sub{Kind: wire.SubComponent, ID: compID(t, reg, components.Position)})

	b.Reset()
	b.AddSpawn(2, 1, []wire.CompValue{full(t, reg, components.Position, components.PositionData{X: 2})})
	fc2.send(t, &b)
	updateUntil(t, c, func() bool { _, ok := c.Entity(2); return ok })
	st := c.Stats()
	assertEqual(t, "decode errors", st.DecodeErrors, uint64(1))
	assertEqual(t, "reconnects", st.Reconnects, uint64(1))
	assertEqual(t, "entities", st.Entities, 1)
	assertEqual(t, "resync despawns", despawns[netclient.ExitResync], 1)
	if _, ok := c.Entity(1); ok {
		t.Fatal("entity of the old connection still mirrored")
	}
	assertEqual(t, "client id", c.ClientID(), fc2.welcome.ClientID)
}

func TestDesyncReconnects(t *testing.T) {
	reg := newRegistry()
	fs := newFakeServer(t, reg)
	c, fc := dial(t, fs, nil)
	// A well-formed delta for an entity the client never got.
	var b wire.Batch
	b.Updates = []wire.Update{deltaUpdate(t, reg, components.Position, 9, components.PositionData{}, components.PositionData{X: 1})}
	fc.send(t, &b)
	updateUntil(t, c, func() bool { return c.Stats().DecodeErrors == 1 })
	assertEqual(t, "close code", fc.waitClosed(t), websocket.StatusCode(wire.CloseProtocolError))
	fs.accept(t)
	updateUntil(t, c, func() bool { return c.Stats().Reconnects == 1 && c.Connected() })
}

func TestMutation(t *testing.T) {
	reg := newRegistry()
	fs := newFakeServer(t, reg)
	c, fc := dial(t, fs, nil)
	var b wire.Batch
	b.AddSpawn(3, 2, []wire.CompValue{full(t, reg, components.Health, components.HealthData{Current: 1, Max: 10})})
	fc.send(t, &b)
	updateUntil(t, c, func() bool { return c.Stats().Entities == 1 })
	e, _ := c.Entity(3)

	res := netclient.Mutate(c, e, testutil.Handle(c.Registry(), components.Health), components.HealthData{Current: 7, Max: 10}, nil)
	m, err := wire.DecodeMutate(fc.expect(t, wire.KindMutate))
	if err != nil {
		t.Fatal(err)
	}
	assertEqual(t, "id", m.ID, uint64(3))
	assertEqual(t, "gen", m.Gen, uint64(2))
	assertEqual(t, "comp", m.Comp, compID(t, reg, components.Health))
	var got components.HealthData
	comp, _ := testutil.Codec(reg.Of(components.Health))
	if _, err := comp.DecodeFull(m.Value, unsafe.Pointer(&got)); err != nil || got.Current != 7 {
		t.Fatalf("mutate value %+v, %v", got, err)
	}
	// Not optimistic: the world waits for the server.
	h, _ := get(t, c, 3, components.Health)
	assertEqual(t, "health before the answer", h.Current, int32(1))

	b.Reset()
	b.Results = []wire.MutationResult{{Request: m.Request, Status: wire.StatusOk}}
	fc.send(t, &b)
	var r netclient.MutationResult
	updateUntil(t, c, func() bool {
		select {
		case r = <-res:
			return true
		default:
			return false
		}
	})
	if r.Status != ebisync.Ok || r.Err != nil {
		t.Fatalf("result %+v", r)
	}

	// Local failures resolve at once.
	// A handle from another registry, of a type the client's lacks.
	unknown := components.Register(components.NewRegistry(), "other", donburi.NewComponentType[struct{ A int }](), nil)
	r = <-netclient.Mutate(c, e, unknown, struct{ A int }{}, nil)
	if r.Status != ebisync.NoReply || !errors.Is(r.Err, netclient.ErrUnknownComponent) {
		t.Fatalf("unknown component: %+v", r)
	}
	r = <-netclient.Mutate(c, donburi.Null, testutil.Handle(c.Registry(), components.Health), components.HealthData{}, nil)
	if !errors.Is(r.Err, netclient.ErrNotMirrored) {
		t.Fatalf("unmirrored entity: %+v", r)
	}
}

func TestOptimisticMutationReverted(t *testing.T) {
	reg := newRegistry()
	fs := newFakeServer(t, reg)
	var changes int
	c, fc := dial(t, fs, &netclient.Options{OnChange: func(donburi.Entity, *components.Component) { changes++ }})
	var b wire.Batch
	h0 := components.HealthData{Current: 1, Max: 10}
	b.AddSpawn(3, 1, []wire.CompValue{full(t, reg, components.Health, h0)})
	fc.send(t, &b)
	updateUntil(t, c, func() bool { return c.Stats().Entities == 1 })
	e, _ := c.Entity(3)

	res := netclient.Mutate(c, e, testutil.Handle(c.Registry(), components.Health), components.HealthData{Current: 99, Max: 10}, &netclient.MutateOptions{Optimistic: true})
	h, _ := get(t, c, 3, components.Health)
	assertEqual(t, "optimistic value", h.Current, int32(99))
	m, _ := wire.DecodeMutate(fc.expect(t, wire.KindMutate))

	// A server update meanwhile moves the confirmed value but not the world.
	h1 := components.HealthData{Current: 2, Max: 10}
	b.Reset()
	b.TickAdvance = 1
	b.Updates = []wire.Update{deltaUpdate(t, reg, components.Health, 3, h0, h1)}
	fc.send(t, &b)
	updateUntil(t, c, func() bool { return c.ServerTick() == fs.tick+1 })
	h, _ = get(t, c, 3, components.Health)
	assertEqual(t, "held optimistic value", h.Current, int32(99))
	assertEqual(t, "changes while held", changes, 0)

	b.Reset()
	b.Results = []wire.MutationResult{{Request: m.Request, Status: wire.StatusForbidden, Message: "not yours"}}
	fc.send(t, &b)
	var r netclient.MutationResult
	updateUntil(t, c, func() bool {
		select {
		case r = <-res:
			return true
		default:
			return false
		}
	})
	assertEqual(t, "status", r.Status, ebisync.Forbidden)
	assertEqual(t, "message", r.Message, "not yours")
	var me *netclient.MutationError
	if !errors.As(r.Err, &me) || me.Status != ebisync.Forbidden {
		t.Fatalf("err %v", r.Err)
	}
	h, _ = get(t, c, 3, components.Health)
	assertEqual(t, "reverted to the latest server value", h, h1)
	assertEqual(t, "changes", changes, 1)
	assertEqual(t, "status string", ebisync.Forbidden.String(), "Forbidden")
	assertEqual(t, "control status string", netclient.ControlRateLimited.String(), "RateLimited")
}

func TestPendingResolvedOnDisconnect(t *testing.T) {
	reg := newRegistry()
	fs := newFakeServer(t, reg)
	c, fc := dial(t, fs, &netclient.Options{MinBackoff: time.Hour})
	var b wire.Batch
	h0 := components.HealthData{Current: 1}
	b.AddSpawn(5, 1, []wire.CompValue{full(t, reg, components.Health, h0)})
	fc.send(t, &b)
	updateUntil(t, c, func() bool { return c.Stats().Entities == 1 })
	e, _ := c.Entity(5)

	mut := netclient.Mutate(c, e, testutil.Handle(c.Registry(), components.Health), components.HealthData{Current: 50}, &netclient.MutateOptions{Optimistic: true})
	ctl := c.TakeControl(e, time.Second, false)
	fc.expect(t, wire.KindMutate)
	cm, err := wire.DecodeControl(fc.expect(t, wire.KindControl))
	if err != nil {
		t.Fatal(err)
	}
	assertEqual(t, "control op", cm.Op, wire.ControlTake)
	assertEqual(t, "control timeout", cm.TimeoutMs, uint64(1000))

	fc.ws.Close(websocket.StatusGoingAway, "bye")
	var mr netclient.MutationResult
	var cr netclient.ControlResult
	updateUntil(t, c, func() bool {
		select {
		case mr = <-mut:
		default:
			return false
		}
		cr = <-ctl
		return true
	})
	if mr.Status != ebisync.NoReply || !errors.Is(mr.Err, netclient.ErrDisconnected) {
		t.Fatalf("mutation result %+v", mr)
	}
	if cr.Status != netclient.ControlNoReply || !errors.Is(cr.Err, netclient.ErrDisconnected) {
		t.Fatalf("control result %+v", cr)
	}
	h, _ := get(t, c, 5, components.Health)
	assertEqual(t, "optimistic value reverted", h, h0)
	assertEqual(t, "connected", c.Connected(), false)
	r := <-netclient.Mutate(c, e, testutil.Handle(c.Registry(), components.Health), h0, nil)
	if !errors.Is(r.Err, netclient.ErrNotConnected) {
		t.Fatalf("mutation while disconnected: %+v", r)
	}
}

func TestControl(t *testing.T) {
	reg := newRegistry()
	fs := newFakeServer(t, reg)
	c, fc := dial(t, fs, nil)
	var b wire.Batch
	b.AddSpawn(8, 4, []wire.CompValue{full(t, reg, components.Control, components.ControlData{})})
	fc.send(t, &b)
	updateUntil(t, c, func() bool { return c.Stats().Entities == 1 })
	e, _ := c.Entity(8)

	take := c.TakeControl(e, 0, true)
	cm, _ := wire.DecodeControl(fc.expect(t, wire.KindControl))
	assertEqual(t, "control", cm, wire.Control{Request: cm.Request, Op: wire.ControlTake, ID: 8, Gen: 4, Children: true})
	release := c.ReleaseControl(e)
	rm, _ := wire.DecodeControl(fc.expect(t, wire.KindControl))
	assertEqual(t, "release op", rm.Op, wire.ControlRelease)

	b.Reset()
	b.Controls = []wire.ControlReply{
		{Request: cm.Request, Result: wire.ControlTaken, ID: 8, Gen: 4, Holder: c.ClientID()},
		{Request: rm.Request, Result: wire.ControlNotControlled, ID: 8, Gen: 4, Holder: 77},
	}
	fc.send(t, &b)
	var tr, rr netclient.ControlResult
	updateUntil(t, c, func() bool {
		select {
		case tr = <-take:
			rr = <-release
			return true
		default:
			return false
		}
	})
	if tr.Status != netclient.ControlTaken || tr.Err != nil || tr.Holder != c.ClientID() {
		t.Fatalf("take: %+v", tr)
	}
	var ce *netclient.ControlError
	if rr.Status != netclient.ControlNotControlled || !errors.As(rr.Err, &ce) || ce.Holder != 77 {
		t.Fatalf("release: %+v", rr)
	}
}

func TestServerPing(t *testing.T) {
	reg := newRegistry()
	fs := newFakeServer(t, reg)
	c, fc := dial(t, fs, &netclient.Options{PingInterval: 10 * time.Millisecond})
	fc.sendRaw(t, wire.AppendPing(nil, wire.KindPing, &wire.Ping{Nonce: 12345}))
	p, err := wire.DecodePing(fc.expect(t, wire.KindPong))
	if err != nil || p.Nonce != 12345 {
		t.Fatalf("pong %+v, %v", p, err)
	}
	// The fake server answers the client's pings.
	updateUntil(t, c, func() bool { return c.Stats().RTT > 0 })
	st := c.Stats()
	if st.MessagesOut < 2 || st.BytesOut == 0 || st.MessagesIn < 2 || st.BytesInPerSec <= 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestNoReconnect(t *testing.T) {
	reg := newRegistry()
	fs := newFakeServer(t, reg)
	c, fc := dial(t, fs, &netclient.Options{NoReconnect: true})
	fc.ws.Close(websocket.StatusGoingAway, "maintenance")
	var err error
	updateUntil(t, c, func() bool { err = c.Update(); return err != nil })
	if !strings.Contains(err.Error(), "maintenance") {
		t.Fatalf("Update error %v does not say why", err)
	}
	if !errors.Is(c.Err(), err) && c.Err().Error() != err.Error() {
		t.Fatalf("Err %v, Update %v", c.Err(), err)
	}
}

func TestReconnectRefusedIsPermanent(t *testing.T) {
	reg := newRegistry()
	fs := newFakeServer(t, reg)
	c, fc := dial(t, fs, &netclient.Options{MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond})
	msg := `schema mismatch: component "ebisync.position" field "X": changed`
	fs.setRefuse(&wire.Error{Code: wire.CloseSchemaMismatch, Message: msg})
	fc.ws.Close(websocket.StatusGoingAway, "restart")
	var err error
	updateUntil(t, c, func() bool { err = c.Update(); return err != nil })
	if !strings.Contains(err.Error(), msg) {
		t.Fatalf("Update error %v lacks the server's message", err)
	}
}

func TestUpdateAfterClose(t *testing.T) {
	reg := newRegistry()
	fs := newFakeServer(t, reg)
	c, fc := dial(t, fs, nil)
	var b wire.Batch
	b.AddSpawn(1, 1, []wire.CompValue{full(t, reg, components.Health, components.HealthData{})})
	fc.send(t, &b)
	updateUntil(t, c, func() bool { return c.Stats().Entities == 1 })
	e, _ := c.Entity(1)
	res := netclient.Mutate(c, e, testutil.Handle(c.Registry(), components.Health), components.HealthData{Current: 3}, nil)
	fc.expect(t, wire.KindMutate)

	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	assertEqual(t, "close code", fc.waitClosed(t), websocket.StatusNormalClosure)
	if r := <-res; !errors.Is(r.Err, netclient.ErrClosed) {
		t.Fatalf("pending mutation after Close: %+v", r)
	}
	if err := c.Update(); !errors.Is(err, netclient.ErrClosed) {
		t.Fatalf("Update after Close: %v", err)
	}
	if err := c.Subscribe(components.Health); !errors.Is(err, netclient.ErrClosed) {
		t.Fatalf("Subscribe after Close: %v", err)
	}
	assertEqual(t, "mirror left as is", c.World().Len(), 1)
}

func TestCloseLeavesNoGoroutines(t *testing.T) {
	reg := newRegistry()
	fs := newFakeServer(t, reg)
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	c, err := netclient.Dial(ctx, fs.url, reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	fc := fs.accept(t)
	// Close while the reader is blocked on a full queue and a reconnect
	// may be pending: nothing may be left behind.
	var b wire.Batch
	for i := uint64(1); i <= 100; i++ {
		b.Reset()
		b.TickAdvance = 1
		b.AddSpawn(i, 1, []wire.CompValue{full(t, reg, components.Health, components.HealthData{})})
		fc.send(t, &b)
	}
	go c.Close() // from another goroutine
	c.Close()
	fc.waitClosed(t)
	fs.cancel()
	fs.srv.Close()
	fs.handlers.Wait()
	goleak.VerifyNone(t)
}
