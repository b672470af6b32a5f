// Package sim is the ebisync demo's game: a wrap-around space of drifting
// asteroids, wandering drones and player ships, simulated on an
// authoritative server and replicated to every client by ebisync.
//
// It does not import Ebitengine, so the headless dedicated server
// (demo/server), the bot swarm (demo/bots) and its tests run anywhere. The
// window (package main in demo) only draws what its mirror world holds.
//
// A Sim is not safe for concurrent use: it belongs to the goroutine that
// owns its World, the same one that calls the plugin's Tick. Host runs one
// behind an ebisync server on its own goroutine.
package sim

import (
	"math"
	"math/rand/v2"

	"github.com/yohamta/donburi"
	dmath "github.com/yohamta/donburi/features/math"
	"github.com/yohamta/donburi/features/transform"
	"github.com/yohamta/donburi/filter"

	"github.com/ebisync/ebisync/components"
)

// Config sizes a Sim. A nil *Config means the defaults; a zero field means
// that field's default.
type Config struct {
	// Width and Height of the world, whose edges wrap. Default 8000×8000.
	Width, Height float64
	// Entities is how many non-player entities to spawn: about 70%
	// asteroids and 30% drones. Default 3000; negative means none.
	Entities int
	// Seed makes the world reproducible. Default 1.
	Seed uint64
}

// Defaults returns the configuration with every zero field set to its
// default. c may be nil.
func (c *Config) Defaults() Config { return c.withDefaults() }

func (c *Config) withDefaults() Config {
	var v Config
	if c != nil {
		v = *c
	}
	if v.Width <= 0 {
		v.Width = 8000
	}
	if v.Height <= 0 {
		v.Height = 8000
	}
	if v.Entities == 0 {
		v.Entities = 3000
	}
	if v.Entities < 0 {
		v.Entities = 0
	}
	if v.Seed == 0 {
		v.Seed = 1
	}
	return v
}

// Ship physics of players, in world units and seconds.
const (
	PlayerRadius   = 16
	PlayerTurnRate = 3.2   // rad/s at full turn
	PlayerAccel    = 420.0 // units/s² at full thrust
	PlayerMaxSpeed = 480.0
	PlayerDrag     = 0.9 // fraction of speed lost per second ≈ 1-e^-0.9 without thrust
	// SpawnSpacing spreads player spawn points on a sunflower spiral
	// around the centre: client n spawns SpawnSpacing·√n from it. The
	// first few clients meet; two hundred bots do not all crowd into one
	// interest radius.
	SpawnSpacing = 200
	// OrbRadius is how far a ship's shield orb circles from it, OrbSpeed
	// its angular speed in rad/s.
	OrbRadius = 30
	OrbSpeed  = 2.5
	// ChaseRange is how near a player ship must be for a drone to chase
	// it, and HitDamage what a drone that reaches it takes off its Health.
	ChaseRange = 450
	HitDamage  = 10
)

// Hit is a drone reaching the ship it chased, for the host to send as a
// HitData message.
type Hit struct {
	Ship, Drone donburi.Entity
}

// wanderData is a drone's private steering state. It is not registered,
// so it never leaves the server.
type wanderData struct {
	Speed float64 // units/s
	Turn  float64 // rad/s
	Next  float64 // sim time of the next change of mind
}

var wander = donburi.NewComponentType[wanderData]()

// Sim is the demo's world and its rules.
type Sim struct {
	world   donburi.World
	cfg     Config
	rng     *rand.Rand
	now     float64
	players map[uint64]donburi.Entity
	orbs    map[uint64]donburi.Entity // each player's shield orb, a child of its ship
	hits    []Hit                     // since the last TakeHits
	// chaseGrid holds the player ships by cell as of the start of the
	// step (indexPlayers), for the drones' nearestPlayer.
	chaseGrid map[[2]int][]playerAt

	// Queries are per Sim, never shared: donburi caches query results per
	// query without a lock, so two worlds on two goroutines must not share
	// one (ComponentType.Each does).
	movers, drones, ships *donburi.Query
}

// New returns a Sim populating a new World with cfg.Entities asteroids and
// drones.
func New(cfg *Config) *Sim {
	c := cfg.withDefaults()
	s := &Sim{
		world:   donburi.NewWorld(),
		cfg:     c,
		rng:     rand.New(rand.NewPCG(c.Seed, 0x9e3779b97f4a7c15)),
		players: make(map[uint64]donburi.Entity),
		orbs:    make(map[uint64]donburi.Entity),
		// Ships flown by inputs (flown) move only by their inputs.
		movers: donburi.NewQuery(filter.And(filter.Contains(components.Position, components.Velocity), filter.Not(filter.Contains(flown)))),
		drones: donburi.NewQuery(filter.Contains(wander, Heading, components.Velocity)),
		ships:  donburi.NewQuery(filter.And(filter.Contains(Steer, Heading, components.Velocity), filter.Not(filter.Contains(flown)))),
	}
	drones := c.Entities * 3 / 10
	for i := 0; i < c.Entities-drones; i++ {
		s.spawnAsteroid()
	}
	for i := 0; i < drones; i++ {
		s.spawnDrone()
	}
	return s
}

// World returns the simulated World.
func (s *Sim) World() donburi.World { return s.world }

// Config returns the configuration in effect, defaults filled in.
func (s *Sim) Config() Config { return s.cfg }

// Time returns the simulated seconds so far.
func (s *Sim) Time() float64 { return s.now }

// Players returns the number of player ships.
func (s *Sim) Players() int { return len(s.players) }

func (s *Sim) randPos() components.PositionData {
	return components.PositionData{X: s.rng.Float64() * s.cfg.Width, Y: s.rng.Float64() * s.cfg.Height}
}

func (s *Sim) spawnAsteroid() donburi.Entity {
	e := s.world.Create(components.Replicated, components.Position, components.Velocity, Ship)
	entry := s.world.Entry(e)
	components.Position.SetValue(entry, s.randPos())
	angle := s.rng.Float64() * 2 * math.Pi
	speed := 8 + s.rng.Float64()*40
	components.Velocity.SetValue(entry, components.VelocityData{X: math.Cos(angle) * speed, Y: math.Sin(angle) * speed})
	// Mostly pebbles, a few boulders.
	r := 6 + 30*math.Pow(s.rng.Float64(), 3)
	grey := 0x70 + s.rng.IntN(0x40)
	warm := s.rng.IntN(0x20)
	color := uint32(grey+warm)<<16 | uint32(grey+warm/2)<<8 | uint32(grey)
	Ship.SetValue(entry, ShipData{Kind: KindAsteroid, Color: color, Radius: float32(r)})
	return e
}

// dronePalette are the drones' colours: saturated, readable on a dark
// background.
var dronePalette = []uint32{0x4dd0e1, 0xff8a65, 0xba68c8, 0xaed581, 0xffd54f, 0x4fc3f7, 0xf06292}

func (s *Sim) spawnDrone() donburi.Entity {
	e := s.world.Create(components.Replicated, components.Position, components.Velocity, Heading, Ship, wander, Target)
	entry := s.world.Entry(e)
	components.Position.SetValue(entry, s.randPos())
	angle := WrapAngle(s.rng.Float64() * 2 * math.Pi)
	Heading.SetValue(entry, HeadingData{Angle: float32(angle)})
	speed := 50 + s.rng.Float64()*110
	wander.SetValue(entry, wanderData{Speed: speed, Next: s.rng.Float64() * 3})
	components.Velocity.SetValue(entry, components.VelocityData{X: math.Cos(angle) * speed, Y: math.Sin(angle) * speed})
	Ship.SetValue(entry, ShipData{Kind: KindDrone, Color: dronePalette[s.rng.IntN(len(dronePalette))], Radius: float32(9 + s.rng.Float64()*5)})
	return e
}

// playerPalette are the players' colours, picked by client id.
var playerPalette = []uint32{0x66bb6a, 0x42a5f5, 0xffa726, 0xec407a, 0x26c6da, 0xd4e157, 0xab47bc, 0xff7043}

// SpawnPoint returns where the ship of client spawns: a point on a
// sunflower spiral around the world's centre, so that a client that knows
// its id knows where to look for its ship.
func (c *Config) SpawnPoint(client uint64) (x, y float64) {
	v := c.withDefaults()
	const golden = 2.399963229728653 // π(3-√5)
	r := SpawnSpacing * math.Sqrt(float64(client))
	a := golden * float64(client)
	return wrap(v.Width/2+r*math.Cos(a), v.Width), wrap(v.Height/2+r*math.Sin(a), v.Height)
}

// SpawnPlayer creates the ship of client (owned by it, so the default
// authoriser lets that client steer it) at its SpawnPoint, and returns it.
// A client that already has a ship keeps it.
func (s *Sim) SpawnPlayer(client uint64, name string) donburi.Entity {
	if e, ok := s.players[client]; ok && s.world.Valid(e) {
		return e
	}
	e := s.world.Create(components.Replicated, components.Position, components.Velocity, Heading, Ship, Steer,
		components.Owner, components.Name, components.Health, transform.Transform, components.Parent)
	entry := s.world.Entry(e)
	x, y := s.cfg.SpawnPoint(client)
	components.Position.SetValue(entry, components.PositionData{X: x, Y: y})
	transform.Transform.SetValue(entry, transform.TransformData{LocalPosition: dmath.Vec2{X: x, Y: y}, LocalScale: dmath.Vec2{X: 1, Y: 1}})
	Heading.SetValue(entry, HeadingData{Angle: float32(WrapAngle(s.rng.Float64() * 2 * math.Pi))})
	Ship.SetValue(entry, ShipData{Kind: KindPlayer, Color: playerPalette[client%uint64(len(playerPalette))], Radius: PlayerRadius})
	components.Owner.SetValue(entry, components.OwnerData{Client: client})
	components.Name.SetValue(entry, components.NameData{Value: name})
	components.Health.SetValue(entry, components.HealthData{Current: 100, Max: 100})
	s.players[client] = e

	// The shield orb is the ship's child in donburi's transform hierarchy:
	// its Transform is relative to the ship's.
	o := s.world.Create(components.Replicated, components.Position, Ship, transform.Transform, components.Parent)
	orb := s.world.Entry(o)
	components.Position.SetValue(orb, components.PositionData{X: x, Y: y})
	Ship.SetValue(orb, ShipData{Kind: KindOrb, Color: 0x80deea, Radius: 4})
	transform.Transform.SetValue(orb, transform.TransformData{LocalScale: dmath.Vec2{X: 1, Y: 1}})
	transform.AppendChild(entry, orb, false)
	s.orbs[client] = o
	return e
}

// TakeHits appends the hits since the last call to dst and returns it.
func (s *Sim) TakeHits(dst []Hit) []Hit {
	dst = append(dst, s.hits...)
	s.hits = s.hits[:0]
	return dst
}

// RemovePlayer removes the ship of client, if it has one.
func (s *Sim) RemovePlayer(client uint64) {
	e, ok := s.players[client]
	if !ok {
		return
	}
	delete(s.players, client)
	if o, ok := s.orbs[client]; ok {
		delete(s.orbs, client)
		if s.world.Valid(o) {
			transform.RemoveParent(s.world.Entry(o), false)
			s.world.Remove(o)
		}
	}
	if s.world.Valid(e) {
		s.world.Remove(e)
	}
}

// Player returns the ship of client.
func (s *Sim) Player(client uint64) (donburi.Entity, bool) {
	e, ok := s.players[client]
	return e, ok && s.world.Valid(e)
}

// Step advances the world by dt seconds: drones change their minds, player
// ships follow their Steer, everything moves and wraps at the edges.
func (s *Sim) Step(dt float64) {
	if !(dt > 0) {
		return
	}
	s.now += dt
	s.indexPlayers()
	for entry := range s.drones.Iter(s.world) {
		w := wander.Get(entry)
		if s.chase(entry, w, dt) {
			continue
		}
		if s.now >= w.Next {
			// Half the time fly straight, else curve gently.
			w.Turn = 0
			if s.rng.IntN(2) == 0 {
				w.Turn = (s.rng.Float64()*2 - 1) * 1.1
			}
			w.Next = s.now + 1 + s.rng.Float64()*4
		}
		if w.Turn == 0 {
			continue
		}
		h := Heading.Get(entry)
		a := WrapAngle(float64(h.Angle) + w.Turn*dt)
		h.Angle = float32(a)
		components.Velocity.SetValue(entry, components.VelocityData{X: math.Cos(a) * w.Speed, Y: math.Sin(a) * w.Speed})
	}
	drag := math.Exp(-PlayerDrag * dt)
	for entry := range s.ships.Iter(s.world) {
		st := Steer.Get(entry)
		steerShip(Heading.Get(entry), components.Velocity.Get(entry), st.Thrust, st.Turn, dt, drag)
	}
	for entry := range s.movers.Iter(s.world) {
		p := components.Position.Get(entry)
		v := components.Velocity.Get(entry)
		p.X = wrap(p.X+v.X*dt, s.cfg.Width)
		p.Y = wrap(p.Y+v.Y*dt, s.cfg.Height)
	}
	s.moveOrbs()
}

// chase steers a drone that chases a ship towards it, records a Hit when
// it reaches it, and picks a ship to chase when it is time to. It reports
// whether the drone is chasing.
func (s *Sim) chase(entry *donburi.Entry, w *wanderData, dt float64) bool {
	t := Target.Get(entry)
	p := components.Position.Get(entry)
	if s.now >= w.Next {
		t.Ship = s.nearestPlayer(p.X, p.Y)
	}
	if t.Ship == donburi.Null || !s.world.Valid(t.Ship) {
		t.Ship = donburi.Null
		return false
	}
	sp := components.Position.Get(s.world.Entry(t.Ship))
	dx, dy := sp.X-p.X, sp.Y-p.Y
	if d := math.Hypot(dx, dy); d > 1.5*ChaseRange {
		t.Ship = donburi.Null // out ran
		return false
	} else if d < PlayerRadius+float64(Ship.Get(entry).Radius) {
		s.hits = append(s.hits, Hit{Ship: t.Ship, Drone: entry.Entity()})
		hp := components.Health.Get(s.world.Entry(t.Ship))
		if hp.Current -= HitDamage; hp.Current <= 0 {
			hp.Current = hp.Max
		}
		t.Ship = donburi.Null
		w.Next = s.now + 4 // a rest before the next chase
		return false
	}
	h := Heading.Get(entry)
	want := math.Atan2(dy, dx)
	turn := WrapAngle(want - float64(h.Angle))
	maxTurn := 2.0 * dt
	a := WrapAngle(float64(h.Angle) + max(-maxTurn, min(maxTurn, turn)))
	h.Angle = float32(a)
	components.Velocity.SetValue(entry, components.VelocityData{X: math.Cos(a) * w.Speed, Y: math.Sin(a) * w.Speed})
	return true
}

// nearestPlayer returns the player ship nearest (x, y) within ChaseRange,
// or Null, from the grid indexPlayers built at the start of the step.
func (s *Sim) nearestPlayer(x, y float64) donburi.Entity {
	best, bestD := donburi.Null, float64(ChaseRange)
	cx, cy := chaseCell(x), chaseCell(y)
	for gx := cx - 1; gx <= cx+1; gx++ {
		for gy := cy - 1; gy <= cy+1; gy++ {
			for _, p := range s.chaseGrid[[2]int{gx, gy}] {
				if d := math.Hypot(p.x-x, p.y-y); d < bestD {
					best, bestD = p.e, d
				}
			}
		}
	}
	return best
}

// playerAt is a player ship and its position, in the chase grid.
type playerAt struct {
	e    donburi.Entity
	x, y float64
}

// chaseCell is the chase grid's cell of a coordinate: cells are ChaseRange
// wide, so a ship within ChaseRange of a point is in the point's cell or
// one of its eight neighbours.
func chaseCell(v float64) int { return int(math.Floor(v / ChaseRange)) }

// indexPlayers files every player ship by its chase grid cell, so that a
// drone looking for a ship to chase checks the ships near it, not every
// ship. The grid's lists are reused from step to step.
func (s *Sim) indexPlayers() {
	if s.chaseGrid == nil {
		s.chaseGrid = make(map[[2]int][]playerAt)
	}
	for k, l := range s.chaseGrid {
		if len(l) == 0 {
			delete(s.chaseGrid, k) // empty since the last step
			continue
		}
		s.chaseGrid[k] = l[:0]
	}
	for _, e := range s.players {
		if !s.world.Valid(e) {
			continue
		}
		p := components.Position.Get(s.world.Entry(e))
		k := [2]int{chaseCell(p.X), chaseCell(p.Y)}
		s.chaseGrid[k] = append(s.chaseGrid[k], playerAt{e: e, x: p.X, y: p.Y})
	}
}

// moveOrbs keeps each player ship's Transform at its Position, turns its
// orb around it (the orb's local position), and sets the orb's Position,
// which interest management reads, to its place in the world.
func (s *Sim) moveOrbs() {
	for client, o := range s.orbs {
		ship, ok := s.players[client]
		if !ok || !s.world.Valid(ship) || !s.world.Valid(o) {
			continue
		}
		se := s.world.Entry(ship)
		sp := components.Position.Get(se)
		transform.GetTransform(se).LocalPosition = dmath.Vec2{X: sp.X, Y: sp.Y}
		a := s.now*OrbSpeed + float64(client)
		oe := s.world.Entry(o)
		transform.GetTransform(oe).LocalPosition = dmath.Vec2{X: OrbRadius * math.Cos(a), Y: OrbRadius * math.Sin(a)}
		wp := transform.WorldPosition(oe)
		components.Position.SetValue(oe, components.PositionData{X: wrap(wp.X, s.cfg.Width), Y: wrap(wp.Y, s.cfg.Height)})
	}
}

func clampSteer(v int8) int8 { return max(-maxSteer, min(maxSteer, v)) }

// wrap returns v in [0, size).
func wrap(v, size float64) float64 {
	v = math.Mod(v, size)
	if v < 0 {
		v += size
	}
	if v >= size { // -tiny + size rounds to size
		v = 0
	}
	return v
}
