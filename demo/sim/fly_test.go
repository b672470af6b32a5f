package sim_test

import (
	"math"
	"sync"
	"testing"
	"time"

	"github.com/yohamta/donburi"

	"github.com/ebisync/ebisync/components"
	"github.com/ebisync/ebisync/demo/sim"
)

// TestPilotFlies: the window client's way of steering. Each Fly moves the
// mirrored ship at once (predicted); the server applies the same inputs,
// so once they are acknowledged the mirror holds the server's position;
// and the server's Step does not move a flown ship on its own.
func TestPilotFlies(t *testing.T) {
	const radius = 500
	var (
		mu   sync.Mutex
		last components.PositionData // the ship's position after the last input the server applied
	)
	_, url := startHost(t, &sim.HostConfig{Sim: sim.Config{Entities: 200}, TickRate: 30, Radius: radius,
		OnFly: func(ship *donburi.Entry, _ sim.FlyData) {
			mu.Lock()
			last = *components.Position.Get(ship)
			mu.Unlock()
		}})
	a := join(t, url, "alice", radius)
	until(t, "the ship", func() bool { _, ok := a.p.Ship(); return ok }, a)
	ship, _ := a.p.Ship()
	pos := func() components.PositionData { return *components.Position.Get(a.c.World().Entry(ship)) }

	start := pos()
	// One input a frame at 60 Hz, as the window sends them: the server
	// applies at most MaxInputsPerTick of a client's inputs per tick and
	// drops a backlog past its queue.
	tk := time.NewTicker(time.Second / 60)
	defer tk.Stop()
	for i := 0; i < 60; i++ {
		<-tk.C
		a.frame(t)
		before := pos()
		a.p.Fly(sim.SteerData{Thrust: 100, Turn: 30})
		assert(t, pos() != before || i == 0, "frame %d: Fly did not move the mirrored ship at once", i)
	}
	assert(t, a.p.Inputs == 60, "Inputs = %d", a.p.Inputs)
	flown := pos()
	assert(t, math.Hypot(flown.X-start.X, flown.Y-start.Y) > 50, "60 frames of full thrust moved the ship %v → %v", start, flown)

	// Acknowledged: the mirror is the server's state, and stays there
	// (the ship coasts only when inputs say so).
	until(t, "every input acknowledged", func() bool { return a.c.Stats().PendingInputs == 0 }, a)
	mu.Lock()
	sp := last
	mu.Unlock()
	mp := pos()
	assert(t, math.Abs(sp.X-mp.X) <= 0.01 && math.Abs(sp.Y-mp.Y) <= 0.01, "acknowledged mirror %+v, server %+v", mp, sp)
	tick := a.c.ServerTick()
	until(t, "ten more server ticks in the mirror", func() bool { return a.c.ServerTick() > tick+10 }, a)
	assert(t, pos() == mp, "the server moved a flown ship without inputs: %+v → %+v", mp, pos())
	assert(t, a.c.Stats().PredictionCorrections == 0, "%d corrections of a ship nothing else moves", a.c.Stats().PredictionCorrections)
}
