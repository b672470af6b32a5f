package sim_test

import (
	"context"
	"math"
	"net"
	"testing"
	"time"

	"github.com/yohamta/donburi"
	"github.com/yohamta/donburi/filter"

	"github.com/ebisync/ebisync/components"
	"github.com/ebisync/ebisync/demo/sim"
	"github.com/ebisync/ebisync/plugin"

	"github.com/ebisync/ebisync/internal/testutil"
)

var assert = testutil.Assert

func kinds(w donburi.World) map[uint8]int {
	n := make(map[uint8]int)
	q := donburi.NewQuery(filter.Contains(sim.Ship))
	for e := range q.Iter(w) {
		n[sim.Ship.Get(e).Kind]++
	}
	return n
}

func TestNewPopulates(t *testing.T) {
	s := sim.New(&sim.Config{Entities: 1000})
	n := kinds(s.World())
	assert(t, n[sim.KindAsteroid] == 700 && n[sim.KindDrone] == 300 && n[sim.KindPlayer] == 0, "kinds = %v", n)
	cfg := s.Config()
	assert(t, cfg.Width == 8000 && cfg.Height == 8000, "default size %vx%v", cfg.Width, cfg.Height)
	q := donburi.NewQuery(filter.Contains(components.Position, components.Replicated))
	assert(t, q.Count(s.World()) == 1000, "replicated with position = %d", q.Count(s.World()))
}

func TestStepStaysInBounds(t *testing.T) {
	s := sim.New(&sim.Config{Width: 500, Height: 300, Entities: 300, Seed: 7})
	for i := 0; i < 600; i++ { // 20 s at 30 Hz: everything crosses an edge
		s.Step(1.0 / 30)
	}
	q := donburi.NewQuery(filter.Contains(components.Position))
	for e := range q.Iter(s.World()) {
		p := components.Position.Get(e)
		assert(t, p.X >= 0 && p.X < 500 && p.Y >= 0 && p.Y < 300, "position %v out of the world", *p)
	}
	assert(t, math.Abs(s.Time()-20) < 1e-6, "time = %v", s.Time())
}

func TestStepIsDeterministic(t *testing.T) {
	positions := func() []components.PositionData {
		s := sim.New(&sim.Config{Entities: 200, Seed: 3})
		for i := 0; i < 90; i++ {
			s.Step(1.0 / 30)
		}
		var out []components.PositionData
		q := donburi.NewQuery(filter.Contains(components.Position))
		for e := range q.Iter(s.World()) {
			out = append(out, *components.Position.Get(e))
		}
		return out
	}
	a, b := positions(), positions()
	assert(t, len(a) == 200 && len(a) == len(b), "lengths %d, %d", len(a), len(b))
	for i := range a {
		assert(t, a[i] == b[i], "entity %d: %v vs %v", i, a[i], b[i])
	}
}

func TestPlayerSteers(t *testing.T) {
	s := sim.New(&sim.Config{Entities: -1})
	e := s.SpawnPlayer(42, "ace")
	assert(t, s.Players() == 1, "players = %d", s.Players())
	again := s.SpawnPlayer(42, "ace")
	assert(t, again == e && s.Players() == 1, "second spawn made a second ship")
	entry := s.World().Entry(e)
	assert(t, components.Owner.Get(entry).Client == 42, "owner = %d", components.Owner.Get(entry).Client)
	assert(t, components.Name.Get(entry).Value == "ace", "name = %q", components.Name.Get(entry).Value)
	c := s.Config()
	p0 := *components.Position.Get(entry)
	x, y := c.SpawnPoint(42)
	assert(t, p0 == components.PositionData{X: x, Y: y}, "spawned at %v, not at the spawn point (%v, %v)", p0, x, y)
	assert(t, math.Hypot(p0.X-c.Width/2, p0.Y-c.Height/2) <= sim.SpawnSpacing*math.Sqrt(42)+1e-9, "spawned at %v, far from the centre", p0)

	// Idle: nothing moves.
	s.Step(0.5)
	assert(t, *components.Position.Get(entry) == p0, "idle ship moved")

	// Full thrust along the heading.
	sim.Heading.SetValue(entry, sim.HeadingData{Angle: 0})
	sim.Steer.SetValue(entry, sim.SteerData{Thrust: 100})
	for i := 0; i < 30; i++ {
		s.Step(1.0 / 30)
	}
	p1 := *components.Position.Get(entry)
	assert(t, p1.X-p0.X > 100 && math.Abs(p1.Y-p0.Y) < 1, "after 1 s of thrust at angle 0: %v → %v", p0, p1)
	v := components.Velocity.Get(entry)
	assert(t, math.Hypot(v.X, v.Y) <= sim.PlayerMaxSpeed+1e-9, "speed %v over the cap", math.Hypot(v.X, v.Y))

	// Turning right (clockwise on screen) increases the angle.
	sim.Steer.SetValue(entry, sim.SteerData{Turn: 100})
	s.Step(0.25)
	a := sim.Heading.Get(entry).Angle
	assert(t, math.Abs(float64(a)-0.25*sim.PlayerTurnRate) < 1e-3, "angle after turning = %v", a)

	// Out-of-range steer (only a buggy server would store it) is clamped.
	sim.Steer.SetValue(entry, sim.SteerData{Thrust: 127, Turn: -128})
	s.Step(1.0 / 30)

	s.RemovePlayer(42)
	assert(t, s.Players() == 0 && !s.World().Valid(e), "player not removed")
	_, ok := s.Player(42)
	assert(t, !ok, "Player(42) after removal")
	s.RemovePlayer(42) // no-op
}

func TestValidateSteer(t *testing.T) {
	ok := &plugin.Request{Value: &sim.SteerData{Thrust: 100, Turn: -100}}
	assert(t, sim.ValidateSteer(ok) == nil, "in range refused")
	bad := &plugin.Request{Value: &sim.SteerData{Thrust: 101}}
	assert(t, sim.ValidateSteer(bad) != nil, "thrust 101 accepted")
	bad = &plugin.Request{Value: &sim.SteerData{Turn: -128}}
	assert(t, sim.ValidateSteer(bad) != nil, "turn -128 accepted")
	other := &plugin.Request{Value: &components.NameData{Value: "x"}}
	assert(t, sim.ValidateSteer(other) == nil, "other component refused")
}

func TestRegistriesAgree(t *testing.T) {
	a, b := sim.NewRegistry(), sim.NewRegistry()
	assert(t, a.Check(b.Schema()) == nil, "two registries differ: %v", a.Check(b.Schema()))
	steer, ok := a.ByName("demo.steer")
	assert(t, ok && steer.Options().ClientWritable, "demo.steer missing or not client-writable")
	h, ok := a.ByName("demo.heading")
	assert(t, ok && h.Options().Interpolate, "demo.heading missing or not interpolated")
}

func TestLerps(t *testing.T) {
	reg := sim.NewRegistry()
	h, _ := components.Lookup(reg, sim.Heading)
	// From just below +π to just above -π: the short way is through π.
	a := sim.HeadingData{Angle: 3.0}
	b := sim.HeadingData{Angle: -3.0}
	out := h.Lerp(a, b, 0.5)
	assert(t, math.Abs(math.Abs(float64(out.Angle))-math.Pi) < 1e-3, "heading lerp mid = %v, want ±π", out.Angle)

	p, _ := components.Lookup(reg, components.Position)
	pa := components.PositionData{X: 7990, Y: 100}
	pb := components.PositionData{X: 5, Y: 100} // wrapped around the edge
	po := p.Lerp(pa, pb, 0.5)
	assert(t, po == pb, "position lerp across a wrap = %v, want a snap to %v", po, pb)
	pb = components.PositionData{X: 8000 - 20, Y: 110}
	po = p.Lerp(pa, pb, 0.5)
	assert(t, math.Abs(po.X-7985) < 1e-9 && math.Abs(po.Y-105) < 1e-9, "position lerp = %v", po)
}

func TestWrapAngle(t *testing.T) {
	for _, c := range []struct{ in, want float64 }{
		{0, 0}, {math.Pi, -math.Pi}, {-math.Pi, -math.Pi}, {3 * math.Pi / 2, -math.Pi / 2}, {-7 * math.Pi / 2, math.Pi / 2},
	} {
		got := sim.WrapAngle(c.in)
		assert(t, math.Abs(got-c.want) < 1e-12, "WrapAngle(%v) = %v, want %v", c.in, got, c.want)
	}
}

func TestHostTicks(t *testing.T) {
	h := sim.NewHost(&sim.HostConfig{Sim: sim.Config{Entities: 100}, TickRate: 100})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	assert(t, err == nil, "listen: %v", err)
	h.Serve(ln)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	assert(t, h.Run(ctx) == nil, "Run failed")
	st := h.TickStats()
	assert(t, st.Ticks >= 10, "only %d ticks in 300ms at 100 Hz", st.Ticks)
	assert(t, st.Max >= st.Avg && st.Avg > 0, "tick stats %+v", st)
	assert(t, h.Plugin().Stats().Entities == 100, "plugin sees %d entities", h.Plugin().Stats().Entities)
	assert(t, h.Close() == nil, "Close failed")
	assert(t, h.TickStats().Ticks == 0, "TickStats did not reset")
}
