package netclient_test

import (
	"math"
	"testing"
	"time"

	"github.com/yohamta/donburi"

	"github.com/ebisync/ebisync/components"
	"github.com/ebisync/ebisync/internal/testutil"
	"github.com/ebisync/ebisync/internal/wire"
	"github.com/ebisync/ebisync/netclient"
)

func TestInterpolation(t *testing.T) {
	reg := newRegistry()
	fs := newFakeServer(t, reg)
	c, fc := dial(t, fs, nil)
	base := float64(fs.tick)

	var b wire.Batch
	b.TickAdvance = 1
	b.AddSpawn(1, 1, []wire.CompValue{
		full(t, reg, components.Position, components.PositionData{X: 0, Y: 0}),
		full(t, reg, components.Health, components.HealthData{Current: 1}),
	})
	fc.send(t, &b)
	b.Reset()
	b.TickAdvance = 1
	b.Updates = []wire.Update{fullUpdate(t, reg, components.Position, 1, components.PositionData{X: 10, Y: -4})}
	fc.send(t, &b)
	updateUntil(t, c, func() bool { return c.ServerTick() == fs.tick+2 })
	e, _ := c.Entity(1)

	at := func(tick float64) components.PositionData {
		t.Helper()
		p, ok := netclient.Interpolated(c, e, testutil.Handle(c.Registry(), components.Position), netclient.RenderTime(c, tick))
		if !ok {
			t.Fatal("Interpolated failed")
		}
		return p
	}
	check := func(tick, x, y float64) {
		t.Helper()
		p := at(tick)
		if math.Abs(p.X-x) > 1e-6 || math.Abs(p.Y-y) > 1e-6 {
			t.Fatalf("at tick %v: %+v, want (%v, %v)", tick-base, p, x, y)
		}
	}
	check(base+1.5, 5, -2) // midpoint
	check(base+1.25, 2.5, -1)
	check(base+0.5, 0, 0) // before the oldest: clamped
	check(base+2, 10, -4) // the newest
	check(base+7, 10, -4) // no extrapolation

	// Still for a while, then a move: the move is interpolated over the
	// last tick only, not from the tick of the previous value.
	b.Reset()
	b.TickAdvance = 8
	b.Updates = []wire.Update{fullUpdate(t, reg, components.Position, 1, components.PositionData{X: 20, Y: -4})}
	fc.send(t, &b)
	updateUntil(t, c, func() bool { return c.ServerTick() == fs.tick+10 })
	check(base+5, 10, -4)
	check(base+9, 10, -4)
	check(base+9.5, 15, -4)
	check(base+10, 20, -4)

	// The world holds the newest value.
	p, _ := get(t, c, 1, components.Position)
	assertEqual(t, "world value", p, components.PositionData{X: 20, Y: -4})

	// Real time gives a value on the path.
	p, ok := netclient.Interpolated(c, e, testutil.Handle(c.Registry(), components.Position), time.Now())
	if !ok || p.X < 0 || p.X > 20 {
		t.Fatalf("Interpolated(now) = %+v, %v", p, ok)
	}
	// A component that is not interpolated gives the world value.
	h, ok := netclient.Interpolated(c, e, testutil.Handle(c.Registry(), components.Health), time.Now())
	if !ok || h.Current != 1 {
		t.Fatalf("health = %+v, %v", h, ok)
	}
	if _, ok := netclient.Interpolated(c, e, testutil.Handle(c.Registry(), components.Velocity), time.Now()); ok {
		t.Fatal("Interpolated of an absent component succeeded")
	}
	if _, ok := netclient.Interpolated(c, donburi.Null, testutil.Handle(c.Registry(), components.Position), time.Now()); ok {
		t.Fatal("Interpolated of a non-mirror entity succeeded")
	}
}
