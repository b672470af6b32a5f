package netclient_test

import (
	"slices"
	"testing"

	"github.com/yohamta/donburi"

	"github.com/ebisync/ebisync/components"
	"github.com/ebisync/ebisync/internal/wire"
)

// TestOwned: the client knows which mirror entities it owns as Owner
// values arrive, change and leave, without the game searching.
func TestOwned(t *testing.T) {
	reg := newRegistry()
	fs := newFakeServer(t, reg)
	c, fc := dial(t, fs, nil)
	me := c.ClientID()

	var b wire.Batch
	b.TickAdvance = 1
	b.AddSpawn(1, 1, []wire.CompValue{full(t, reg, components.Owner, components.OwnerData{Client: me})})
	b.AddSpawn(2, 1, []wire.CompValue{full(t, reg, components.Owner, components.OwnerData{Client: me + 1})})
	b.AddSpawn(3, 1, []wire.CompValue{full(t, reg, components.Position, components.PositionData{})})
	fc.send(t, &b)
	updateUntil(t, c, func() bool { return c.Stats().Entities == 3 })
	e1, _ := c.Entity(1)
	e2, _ := c.Entity(2)
	assertEqual(t, "owned", slices.Equal(c.Owned(nil), []donburi.Entity{e1}), true)
	assertEqual(t, "Owns(1)", c.Owns(e1), true)
	assertEqual(t, "Owns(2)", c.Owns(e2), false)

	// Ownership moves from 1 to 2.
	b = wire.Batch{TickAdvance: 1, Updates: []wire.Update{
		fullUpdate(t, reg, components.Owner, 1, components.OwnerData{Client: 0}),
		fullUpdate(t, reg, components.Owner, 2, components.OwnerData{Client: me}),
	}}
	fc.send(t, &b)
	updateUntil(t, c, func() bool { return c.Owns(e2) })
	assertEqual(t, "Owns(1) after the change", c.Owns(e1), false)

	// 2 leaves: nothing is owned.
	b = wire.Batch{TickAdvance: 1, Exits: []wire.Exit{{Reason: wire.ReasonOutOfRange, ID: 2}}}
	fc.send(t, &b)
	updateUntil(t, c, func() bool { return c.Stats().Entities == 2 })
	assertEqual(t, "owned after the exit", len(c.Owned(nil)), 0)
	assertEqual(t, "Owns a gone entity", c.Owns(e2), false)
}
