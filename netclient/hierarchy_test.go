package netclient_test

import (
	"testing"

	"github.com/yohamta/donburi"
	"github.com/yohamta/donburi/features/math"
	"github.com/yohamta/donburi/features/transform"

	"github.com/ebisync/ebisync/components"
	"github.com/ebisync/ebisync/internal/wire"
)

func tf(x, y float64) transform.TransformData {
	return transform.TransformData{LocalPosition: math.Vec2{X: x, Y: y}, LocalScale: math.Vec2{X: 1, Y: 1}}
}

// TestMirrorHierarchy: the mirror links children to parents as the Parent
// components say, whatever order they arrive in; a parent leaving the
// scope leaves its child a root; a cycle from a broken server is refused.
func TestMirrorHierarchy(t *testing.T) {
	reg := newRegistry()
	components.RegisterTransform(reg)
	fs := newFakeServer(t, reg)
	c, fc := dial(t, fs, nil)
	world := func(id uint32) math.Vec2 {
		t.Helper()
		e, ok := c.Entity(id)
		if !ok {
			t.Fatalf("entity %d not mirrored", id)
		}
		return transform.WorldPosition(c.World().Entry(e))
	}
	parentOf := func(id uint32) donburi.Entity {
		e, _ := c.Entity(id)
		p, ok := transform.GetParent(c.World().Entry(e))
		if !ok {
			return donburi.Null
		}
		return p.Entity()
	}

	// The child (2) spawns before its parent (1), in one batch.
	var b wire.Batch
	b.TickAdvance = 1
	b.AddSpawn(1, 1, []wire.CompValue{full(t, reg, transform.Transform, tf(10, 0)), full(t, reg, components.Parent, components.ParentData{})})
	b.AddSpawn(2, 1, []wire.CompValue{full(t, reg, transform.Transform, tf(1, 2)), full(t, reg, components.Parent, components.ParentData{Entity: ref(1, 1)})})
	b.Spawns[0], b.Spawns[1] = b.Spawns[1], b.Spawns[0]
	fc.send(t, &b)
	updateUntil(t, c, func() bool { return c.Stats().Entities == 2 })
	e1, _ := c.Entity(1)
	assertEqual(t, "parent", parentOf(2), e1)
	assertEqual(t, "world position", world(2), math.Vec2{X: 11, Y: 2})

	// The parent moves: the child's world position follows.
	b = wire.Batch{TickAdvance: 1, Updates: []wire.Update{fullUpdate(t, reg, transform.Transform, 1, tf(20, 5))}}
	fc.send(t, &b)
	updateUntil(t, c, func() bool { return world(1).X == 20 })
	assertEqual(t, "moved with the parent", world(2), math.Vec2{X: 21, Y: 7})

	// The parent leaves the scope: the child is a root; it comes back: linked.
	b = wire.Batch{TickAdvance: 1, Exits: []wire.Exit{{Reason: wire.ReasonOutOfRange, ID: 1}}}
	fc.send(t, &b)
	updateUntil(t, c, func() bool { return c.Stats().Entities == 1 })
	assertEqual(t, "root while the parent is away", parentOf(2), donburi.Null)
	assertEqual(t, "local position as world", world(2), math.Vec2{X: 1, Y: 2})
	b = wire.Batch{TickAdvance: 1}
	b.AddSpawn(1, 1, []wire.CompValue{full(t, reg, transform.Transform, tf(10, 0)), full(t, reg, components.Parent, components.ParentData{})})
	fc.send(t, &b)
	updateUntil(t, c, func() bool { return c.Stats().Entities == 2 })
	e1, _ = c.Entity(1)
	assertEqual(t, "relinked", parentOf(2), e1)

	// Reparenting 1 under 2 would close a cycle: refused, no hang.
	b = wire.Batch{TickAdvance: 1, Updates: []wire.Update{fullUpdate(t, reg, components.Parent, 1, components.ParentData{Entity: ref(2, 1)})}}
	fc.send(t, &b)
	e2, _ := c.Entity(2)
	updateUntil(t, c, func() bool {
		p, _ := get(t, c, 1, components.Parent)
		return p.Entity == e2
	})
	assertEqual(t, "cycle refused", parentOf(1), donburi.Null)
	assertEqual(t, "world position without a cycle", world(2), math.Vec2{X: 11, Y: 2})

	// The child despawns: the parent keeps no removed child.
	b = wire.Batch{TickAdvance: 1, Exits: []wire.Exit{{Reason: wire.ReasonDespawned, ID: 2}}}
	fc.send(t, &b)
	updateUntil(t, c, func() bool { return c.Stats().Entities == 1 })
	e1, _ = c.Entity(1)
	if kids, ok := transform.GetChildren(c.World().Entry(e1)); ok {
		for _, k := range kids {
			if !k.Valid() {
				t.Fatalf("the parent keeps a removed child")
			}
		}
	}
}
