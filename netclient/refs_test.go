package netclient_test

import (
	"testing"
	"unsafe"

	"github.com/yohamta/donburi"

	"github.com/ebisync/ebisync/components"
	"github.com/ebisync/ebisync/internal/codec"
	"github.com/ebisync/ebisync/internal/wire"
	"github.com/ebisync/ebisync/netclient"
)

type aimData struct {
	Target donburi.Entity
	Power  int32
}

var aim = donburi.NewComponentType[aimData]()

// ref is how the server writes a reference to net id id at gen.
func ref(id, gen uint32) donburi.Entity { return donburi.Entity(codec.MakeRef(id, gen)) }

// TestReferencesResolve: a reference to an entity outside the mirror is
// Null, resolves (firing OnChange) when its target arrives, goes back to
// Null when the target leaves or a different generation arrives, and a
// mutation naming a mirror entity sends the server's id.
func TestReferencesResolve(t *testing.T) {
	reg := newRegistry()
	aims := components.Register(reg, "test.aim", aim, &components.Options{ClientWritable: true})
	fs := newFakeServer(t, reg)
	changes := map[donburi.Entity]int{}
	c, fc := dial(t, fs, &netclient.Options{
		OnChange: func(e donburi.Entity, comp *components.Component) {
			if comp.Name() == "test.aim" {
				changes[e]++
			}
		},
	})
	valid := func(e donburi.Entity) {
		t.Helper()
		if e != donburi.Null && !c.World().Valid(e) {
			t.Fatalf("reference %v is not alive in the mirror", e)
		}
	}

	// 1 aims at 2, which is not in scope yet.
	var b wire.Batch
	b.TickAdvance = 1
	b.AddSpawn(1, 1, []wire.CompValue{full(t, reg, aim, aimData{Target: ref(2, 7), Power: 3})})
	fc.send(t, &b)
	updateUntil(t, c, func() bool { return c.Stats().Entities == 1 })
	a, _ := get(t, c, 1, aim)
	assertEqual(t, "target out of scope", a.Target, donburi.Null)
	assertEqual(t, "power", a.Power, int32(3))
	e1, _ := c.Entity(1)

	// 2 arrives: the reference resolves and OnChange fires.
	before := changes[e1]
	b = wire.Batch{TickAdvance: 1}
	b.AddSpawn(2, 7, []wire.CompValue{full(t, reg, components.Position, components.PositionData{X: 1})})
	fc.send(t, &b)
	updateUntil(t, c, func() bool { return c.Stats().Entities == 2 })
	e2, _ := c.Entity(2)
	a, _ = get(t, c, 1, aim)
	assertEqual(t, "resolved target", a.Target, e2)
	valid(a.Target)
	if changes[e1] <= before {
		t.Fatalf("no OnChange when the reference resolved")
	}
	got, ok := aims.Get(c.World(), e1)
	assertEqual(t, "typed Get", ok && got.Target == e2, true)

	// A mutation naming the mirror entity sends the server's reference.
	netclient.Mutate(c, e1, aims, aimData{Target: e2, Power: 4}, nil)
	m, err := wire.DecodeMutate(fc.expect(t, wire.KindMutate))
	if err != nil {
		t.Fatal(err)
	}
	var sent aimData
	if _, err := codec.Of(aims.Component()).DecodeFull(m.Value, unsafe.Pointer(&sent)); err != nil {
		t.Fatal(err)
	}
	assertEqual(t, "sent reference", codec.Ref(sent.Target), codec.MakeRef(2, 7))

	// 2 leaves: the reference is Null again, never a dead entity.
	b = wire.Batch{TickAdvance: 1}
	b.Exits = []wire.Exit{{Reason: wire.ReasonOutOfRange, ID: 2}}
	fc.send(t, &b)
	updateUntil(t, c, func() bool { return c.Stats().Entities == 1 })
	a, _ = get(t, c, 1, aim)
	assertEqual(t, "target left", a.Target, donburi.Null)

	// Another generation of net id 2 is another entity: still Null.
	b = wire.Batch{TickAdvance: 1}
	b.AddSpawn(2, 8, []wire.CompValue{full(t, reg, components.Position, components.PositionData{X: 2})})
	fc.send(t, &b)
	updateUntil(t, c, func() bool { return c.Stats().Entities == 2 })
	a, _ = get(t, c, 1, aim)
	assertEqual(t, "other generation", a.Target, donburi.Null)

	// A delta that points at the new generation resolves at once.
	b = wire.Batch{TickAdvance: 1}
	b.Updates = append(b.Updates, deltaUpdate(t, reg, aim, 1, aimData{Target: ref(2, 7), Power: 3}, aimData{Target: ref(2, 8), Power: 3}))
	fc.send(t, &b)
	e2b, _ := c.Entity(2)
	updateUntil(t, c, func() bool { a, _ = get(t, c, 1, aim); return a.Target == e2b })
	valid(a.Target)
}
