package sim_test

import (
	"github.com/ebisync/ebisync"

	"context"
	"errors"
	"math"
	"net"
	"testing"
	"time"

	"github.com/yohamta/donburi"
	"github.com/yohamta/donburi/filter"

	"github.com/ebisync/ebisync/components"
	"github.com/ebisync/ebisync/demo/sim"
	"github.com/ebisync/ebisync/internal/testutil"
	"github.com/ebisync/ebisync/netclient"
)

// startHost runs a Host on a loopback port until the test ends and
// returns its URL.
func startHost(t *testing.T, cfg *sim.HostConfig) (*sim.Host, string) {
	t.Helper()
	h := sim.NewHost(cfg)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	assert(t, err == nil, "listen: %v", err)
	h.Serve(ln)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = h.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		_ = h.Close()
	})
	return h, "ws://" + ln.Addr().String() + "/sync"
}

// player is one test client: a netclient.Client and its Pilot, whose game
// loop is the test goroutine.
type player struct {
	c *netclient.Client
	p *sim.Pilot
}

func join(t *testing.T, url, name string, radius float64) *player {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := netclient.Dial(ctx, url, sim.NewRegistry(), &netclient.Options{Name: name})
	assert(t, err == nil, "dial: %v", err)
	t.Cleanup(func() { c.Close() })
	assert(t, c.SubscribeAll() == nil, "subscribe")
	return &player{c: c, p: sim.NewPilot(c, radius, nil)}
}

// frame runs one frame of the player's game loop: the client's Update,
// then the pilot's.
func (pl *player) frame(t *testing.T) {
	t.Helper()
	err := pl.c.Update()
	assert(t, err == nil, "Update: %v", err)
	pl.p.Update()
}

// until runs the players' frames until cond holds.
func until(t *testing.T, what string, cond func() bool, players ...*player) {
	t.Helper()
	testutil.Eventually(t, 10*time.Second, what, func() bool {
		for _, pl := range players {
			pl.frame(t)
		}
		return cond()
	})
}

func TestPilotFindsFollowsAndSteersItsShip(t *testing.T) {
	const entities, radius = 2000, 500
	h, url := startHost(t, &sim.HostConfig{Sim: sim.Config{Entities: entities}, TickRate: 60, Radius: radius})
	a := join(t, url, "alice", radius)
	b := join(t, url, "bob", radius)

	shipOf := func(pl *player) donburi.Entity { e, _ := pl.p.Ship(); return e }
	found := func(pl *player) bool { _, ok := pl.p.Ship(); return ok }
	until(t, "both ships", func() bool { return found(a) && found(b) }, a, b)

	entry := a.c.World().Entry(shipOf(a))
	assert(t, components.Owner.Get(entry).Client == a.c.ClientID(), "alice's pilot picked a ship owned by %d, she is %d",
		components.Owner.Get(entry).Client, a.c.ClientID())
	assert(t, components.Name.Get(entry).Value == "alice", "ship name %q", components.Name.Get(entry).Value)

	// Interest: the mirror holds a neighbourhood, not the world.
	until(t, "a filled mirror", func() bool { return a.c.Stats().Entities > 5 }, a, b)
	n := a.c.Stats().Entities
	assert(t, n < entities/4, "mirror holds %d of %d entities: interest is not applied", n, entities)

	// Steer: full thrust moves the ship along its heading.
	start := *components.Position.Get(a.c.World().Entry(shipOf(a)))
	heading := float64(sim.Heading.Get(a.c.World().Entry(shipOf(a))).Angle)
	a.p.Steer(sim.SteerData{Thrust: 100})
	assert(t, a.p.Sent == 1, "Sent = %d", a.p.Sent)
	a.p.Steer(sim.SteerData{Thrust: 100}) // unchanged: not sent again
	assert(t, a.p.Sent == 1, "an unchanged steer was sent again")
	moved := func() float64 {
		p := components.Position.Get(a.c.World().Entry(shipOf(a)))
		return (p.X-start.X)*math.Cos(heading) + (p.Y-start.Y)*math.Sin(heading)
	}
	until(t, "the ship to fly forward", func() bool { return found(a) && moved() > 100 }, a, b)
	assert(t, a.p.Refused == 0, "%d steer mutations refused", a.p.Refused)

	// Entities keep entering and leaving as the ship flies: the mirror
	// follows it.
	p := components.Position.Get(a.c.World().Entry(shipOf(a)))
	far := 0
	q := donburi.NewQuery(filter.Contains(components.Position))
	for e := range q.Iter(a.c.World()) {
		ep := components.Position.Get(e)
		if math.Hypot(ep.X-p.X, ep.Y-p.Y) > 1.5*radius {
			far++
		}
	}
	assert(t, far == 0, "%d mirror entities far outside the followed radius", far)

	// Bob may not steer Alice's ship: the server authorises by Owner.
	var res <-chan netclient.MutationResult
	until(t, "alice's ship in bob's mirror", func() bool {
		for e := range donburi.NewQuery(filter.Contains(components.Owner)).Iter(b.c.World()) {
			if components.Owner.Get(e).Client == a.c.ClientID() {
				res = netclient.Mutate(b.c, e.Entity(), testutil.Handle(b.c.Registry(), sim.Steer), sim.SteerData{Turn: 100}, nil)
				return true
			}
		}
		return false
	}, a, b)
	var r netclient.MutationResult
	until(t, "bob's answer", func() bool {
		select {
		case r = <-res:
			return true
		default:
			return false
		}
	}, a, b)
	var me *netclient.MutationError
	assert(t, errors.As(r.Err, &me) && r.Status == ebisync.Forbidden, "bob steering alice's ship: %+v", r)

	// Leaving removes the ship, and its shield orb, on the server.
	const perPlayer = 2 // a ship and its orb
	assert(t, h.Plugin().Stats().Entities >= entities+2*perPlayer, "server has %d entities", h.Plugin().Stats().Entities)
	b.c.Close()
	until(t, "bob's ship to go", func() bool { return h.Plugin().Stats().Entities == entities+perPlayer }, a)
}
