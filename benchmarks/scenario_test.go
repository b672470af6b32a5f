package benchmarks_test

import (
	"math"
	"math/rand/v2"

	"github.com/yohamta/donburi"

	"github.com/ebisync/ebisync/components"
)

// tickScenario is BenchmarkServerTick's world: entities at random positions
// on a square map, clients looking at random fixed points with a radius
// that covers 5% of the map, and a precomputed cycle of ticks in which 10%
// of the entities move a little.
//
// The cycle is planned ahead so that the measured loop does nothing but
// apply a tick's moves and run the server's tick, and so that the
// (entity, client) pairs of every tick are known exactly. Its second half
// undoes the first in reverse order, so the positions after a whole cycle
// are the starting ones and the cycle can repeat for ever.
type tickScenario struct {
	entities, clients int
	side, radius      float64
	start             []point // entity positions when a cycle begins
	centres           []point // client interest centres
	plan              []tickPlan
}

type point struct{ x, y float64 }

// tickPlan is one tick of the cycle.
type tickPlan struct {
	changed []int32 // entities that move this tick, by index
	to      []point // where they move
	pairs   int     // Σ over changed entities of the clients whose radius contains it
}

const (
	mapSide      = 4096.0
	interestArea = 0.05 // of the map, per client
	changedShare = 10   // percent of the entities that move per tick
	maxStep      = 2.0  // units per axis per tick (up to 120 units/s at 60 Hz)
	planCycle    = 60   // ticks
)

func newTickScenario(entities, clients int) *tickScenario {
	rng := rand.New(rand.NewPCG(uint64(entities), uint64(clients)))
	s := &tickScenario{
		entities: entities,
		clients:  clients,
		side:     mapSide,
		radius:   math.Sqrt(interestArea * mapSide * mapSide / math.Pi),
	}
	uniform := func() point { return point{rng.Float64() * s.side, rng.Float64() * s.side} }
	for range entities {
		s.start = append(s.start, uniform())
	}
	for range clients {
		s.centres = append(s.centres, uniform())
	}

	cur := append([]point(nil), s.start...)
	nChanged := max(1, entities*changedShare/100)
	half := make([]tickPlan, planCycle/2)
	undo := make([][]point, planCycle/2)
	for t := range half {
		perm := rng.Perm(entities)[:nChanged]
		p := tickPlan{changed: make([]int32, nChanged), to: make([]point, nChanged)}
		undo[t] = make([]point, nChanged)
		for i, e := range perm {
			p.changed[i] = int32(e)
			undo[t][i] = cur[e]
			p.to[i] = point{
				clamp(cur[e].x+(rng.Float64()*2-1)*maxStep, 0, s.side),
				clamp(cur[e].y+(rng.Float64()*2-1)*maxStep, 0, s.side),
			}
			cur[e] = p.to[i]
		}
		half[t] = p
	}
	s.plan = append(s.plan, half...)
	for t := len(half) - 1; t >= 0; t-- {
		s.plan = append(s.plan, tickPlan{changed: half[t].changed, to: undo[t]})
	}

	// Count the pairs by replaying the cycle.
	copy(cur, s.start)
	r2 := s.radius * s.radius
	for t := range s.plan {
		p := &s.plan[t]
		for i, e := range p.changed {
			cur[e] = p.to[i]
			for _, c := range s.centres {
				dx, dy := cur[e].x-c.x, cur[e].y-c.y
				if dx*dx+dy*dy <= r2 {
					p.pairs++
				}
			}
		}
	}
	return s
}

func clamp(v, lo, hi float64) float64 { return min(max(v, lo), hi) }

// tickWorld is the scenario's donburi world.
type tickWorld struct {
	world donburi.World
	ents  []donburi.Entity
	next  int // next tick of the plan
}

// newTickWorld creates the entities: Replicated, Position and Health.
func newTickWorld(s *tickScenario) *tickWorld {
	w := &tickWorld{world: donburi.NewWorld()}
	for i := range s.entities {
		e := w.world.Create(components.Replicated, components.Position, components.Health)
		entry := w.world.Entry(e)
		*components.Position.Get(entry) = components.PositionData{X: s.start[i].x, Y: s.start[i].y}
		*components.Health.Get(entry) = components.HealthData{Current: 100, Max: 100}
		w.ents = append(w.ents, e)
	}
	return w
}

// step applies the next tick of the plan and returns its pair count. It
// does not allocate.
func (w *tickWorld) step(s *tickScenario) int {
	p := &s.plan[w.next]
	w.next = (w.next + 1) % len(s.plan)
	for i, e := range p.changed {
		pos := components.Position.Get(w.world.Entry(w.ents[e]))
		pos.X, pos.Y = p.to[i].x, p.to[i].y
	}
	return p.pairs
}
