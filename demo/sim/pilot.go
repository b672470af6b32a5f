package sim

import (
	"github.com/yohamta/donburi"

	"github.com/ebisync/ebisync/components"
	"github.com/ebisync/ebisync/netclient"
)

// Pilot is the client side of a player: it finds the ship the server
// spawned for this client in the mirror world, points the client's
// interest at it (FollowInterest), and steers it: with Fly, one predicted
// FlyData input a frame (the window client), or with Steer, mutations of
// the ship's Steer that the server's Step follows (the bots).
//
// A new client's interest is the server's default, which is not where its
// ship is, and the client does not know its ship's network id. So the
// Pilot first looks at its spawn point (Config.SpawnPoint of its client
// id), takes the ship from the entities the client owns (Client.Owned),
// then follows it. After a reconnect (a new client id, a new ship) it does so
// again.
//
// A Pilot is used on the client's game goroutine only.
type Pilot struct {
	c         *netclient.Client
	radius    float64
	world     *Config
	owned     []donburi.Entity // Client.Owned's buffer
	steerSync *components.Synced[SteerData]
	ship      donburi.Entity
	owner     uint64 // client id the ship was found for
	looking   bool   // the interest is on the spawn area

	steer   SteerData // last value sent for ship
	unsent  bool      // steer must be sent (new ship, or the last send failed)
	pending []<-chan netclient.MutationResult

	fly    *netclient.Predictor[FlyData]
	flying FlyData // the last input sent

	// Sent counts the Steer mutations sent, Refused the ones that did not
	// come back Ok. Inputs counts the FlyData inputs sent.
	Sent, Refused, Inputs int
}

// NewPilot returns a Pilot for c, whose interest radius around the ship
// will be radius. world is the server's world configuration (nil: the
// default world), which tells where ships spawn.
//
// It panics if c's registry lacks the demo's Steer component.
func NewPilot(c *netclient.Client, radius float64, world *Config) *Pilot {
	steer, ok := components.Lookup(c.Registry(), Steer)
	if !ok {
		panic("sim.NewPilot: the client's registry has no demo.steer; make it with sim.NewRegistry")
	}
	cfg := world.withDefaults()
	fly, ok := components.LookupMessage[FlyData](c.Registry(), "demo.fly")
	if !ok {
		panic("sim.NewPilot: the client's registry has no demo.fly; make it with sim.NewRegistry")
	}
	return &Pilot{
		c:         c,
		fly:       netclient.Predict(c, fly, cfg.Fly),
		steerSync: steer,
		radius:    radius,
		world:     world,
		ship:      donburi.Null,
	}
}

// Radius returns the interest radius.
func (p *Pilot) Radius() float64 { return p.radius }

// Ship returns this client's ship in the mirror world, once found.
func (p *Pilot) Ship() (donburi.Entity, bool) {
	return p.ship, p.ship != donburi.Null
}

// Update finds the ship if needed and collects mutation results. Call it
// after each Client.Update.
func (p *Pilot) Update() {
	for i := 0; i < len(p.pending); i++ {
		select {
		case r := <-p.pending[i]:
			if r.Err != nil {
				p.Refused++
				p.unsent = true
			}
			p.pending[i] = p.pending[len(p.pending)-1]
			p.pending = p.pending[:len(p.pending)-1]
			i--
		default:
		}
	}
	if !p.c.Connected() {
		return
	}
	id := p.c.ClientID()
	w := p.c.World()
	if p.ship != donburi.Null && p.owner == id && w.Valid(p.ship) {
		return
	}
	p.ship = donburi.Null
	p.owned = p.c.Owned(p.owned[:0])
	for _, e := range p.owned {
		if entry := w.Entry(e); !entry.HasComponent(Ship) || Ship.Get(entry).Kind != KindPlayer {
			continue
		}
		netID, gen, ok := p.c.NetID(e)
		if !ok {
			continue
		}
		p.ship, p.owner, p.looking = e, id, false
		p.steer, p.unsent = SteerData{}, true
		// An error means the client is closed; Update reports that.
		_ = p.c.FollowInterest(netID, gen, p.radius)
		return
	}
	if !p.looking || p.owner != id {
		p.looking, p.owner = true, id
		x, y := p.world.SpawnPoint(id)
		_ = p.c.SetInterest(x, y, p.radius)
	}
}

// Steer asks the server to set the ship's Steer to s, if it differs from
// what was last sent. It does nothing until the ship is found. Values are
// clamped to -100..100.
func (p *Pilot) Steer(s SteerData) {
	s = SteerData{Thrust: clampSteer(s.Thrust), Turn: clampSteer(s.Turn)}
	if p.ship == donburi.Null || (s == p.steer && !p.unsent) {
		return
	}
	p.steer, p.unsent = s, false
	p.Sent++
	p.pending = append(p.pending, netclient.Mutate(p.c, p.ship, p.steerSync, s, nil))
}

// Fly sends s as this frame's input for the ship and moves the mirrored
// ship by it at once (netclient.Predict): call it once per frame, at
// 60 Hz, after Update. It does nothing until the ship is found. Values are
// clamped to -100..100.
func (p *Pilot) Fly(s SteerData) {
	if p.ship == donburi.Null {
		return
	}
	in := FlyData{Thrust: clampSteer(s.Thrust), Turn: clampSteer(s.Turn)}
	if p.fly.Input(p.ship, in) == nil {
		p.flying = in
		p.Inputs++
	}
}

// Thrusting reports whether the last input sent by Fly has thrust.
func (p *Pilot) Thrusting() bool { return p.flying.Thrust > 0 }
