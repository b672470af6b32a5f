package sim

import (
	"math"

	"github.com/yohamta/donburi"

	"github.com/ebisync/ebisync/components"
)

// FlyData is one frame of a player's input: thrust and turn in percent,
// -100..100 (values beyond are clamped). The window client sends one per
// frame as the predicted input stream "demo.fly" (netclient.Predict on the
// client, plugin.HandleInput on the server), and both sides integrate it
// with Config.Fly.
type FlyData struct {
	Thrust int8
	Turn   int8
}

// FrameDT is the time, in seconds, one FlyData input integrates: one frame
// at 60 Hz.
const FrameDT = 1.0 / 60

// flown marks, on the server, a ship steered by FlyData inputs: Step does
// not move it; its inputs do. It is not registered, so it never leaves the
// server.
type flownData struct{}

var flown = donburi.NewComponentType[flownData]()

// Fly integrates one frame (FrameDT) of the motion of ship e under in: the
// turn, the thrust along the heading with drag and the speed limit, then
// the move, wrapped at the world's edges. It reads and writes only the
// ship's replicated Heading, Velocity and Position, so a client replaying
// it on its mirror computes what the server does. c must be the server's
// world configuration (for its size).
func (c Config) Fly(w donburi.World, e donburi.Entity, in FlyData) {
	if !w.Valid(e) {
		return
	}
	entry := w.Entry(e)
	if !entry.HasComponent(Heading) || !entry.HasComponent(components.Velocity) || !entry.HasComponent(components.Position) {
		return
	}
	h, v := Heading.Get(entry), components.Velocity.Get(entry)
	steerShip(h, v, in.Thrust, in.Turn, FrameDT, math.Exp(-PlayerDrag*FrameDT))
	p := components.Position.Get(entry)
	p.X = snapWrap(p.X+v.X*FrameDT, c.Width)
	p.Y = snapWrap(p.Y+v.Y*FrameDT, c.Height)
	// The state stays on the wire's grid (the q= steps of Heading,
	// Velocity and Position), so the values a client receives are the
	// server's exactly, and its replay of the inputs not yet acknowledged
	// computes what the server will.
	h.Angle = float32(snap(float64(h.Angle), headingStep))
	v.X, v.Y = snap(v.X, posStep), snap(v.Y, posStep)
}

// The quantisation steps of HeadingData.Angle and of components.Position
// and components.Velocity.
const (
	headingStep = 0.001
	posStep     = 0.01
)

// snap rounds v to a multiple of step, as the wire's quantisation does.
func snap(v, step float64) float64 { return math.Round(v/step) * step }

// snapWrap wraps v into [0, size) on the Position grid.
func snapWrap(v, size float64) float64 {
	v = snap(wrap(v, size), posStep)
	if v >= size {
		v = 0
	}
	return v
}

// flyOnServer is the server's step of the "demo.fly" input stream: it marks
// the ship as flown by inputs (so Step leaves its motion to them) and
// integrates the input.
func (s *Sim) flyOnServer(w donburi.World, e donburi.Entity, in FlyData) {
	if !w.Valid(e) {
		return
	}
	if entry := w.Entry(e); !entry.HasComponent(flown) {
		entry.AddComponent(flown)
	}
	s.cfg.Fly(w, e, in)
}

// steerShip turns heading h and accelerates velocity v over dt under
// thrust and turn (percent), with drag (the fraction of speed kept over
// dt) and the speed limit.
func steerShip(h *HeadingData, v *components.VelocityData, thrust, turn int8, dt, drag float64) {
	a := WrapAngle(float64(h.Angle) + float64(clampSteer(turn))/maxSteer*PlayerTurnRate*dt)
	h.Angle = float32(a)
	th := float64(clampSteer(thrust)) / maxSteer * PlayerAccel * dt
	vx, vy := (v.X+math.Cos(a)*th)*drag, (v.Y+math.Sin(a)*th)*drag
	if sp := math.Hypot(vx, vy); sp > PlayerMaxSpeed {
		vx, vy = vx/sp*PlayerMaxSpeed, vy/sp*PlayerMaxSpeed
	} else if sp < 0.5 && thrust == 0 {
		vx, vy = 0, 0 // come to rest instead of creeping forever
	}
	v.X, v.Y = vx, vy
}
