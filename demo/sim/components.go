package sim

import (
	"math"

	"github.com/yohamta/donburi"

	"github.com/ebisync/ebisync/components"
)

// Entity kinds, as carried by ShipData.Kind.
const (
	KindAsteroid uint8 = 1 // drifts in a straight line, never steers
	KindDrone    uint8 = 2 // an NPC ship that wanders
	KindPlayer   uint8 = 3 // a connected client's ship, steered by Steer
	KindOrb      uint8 = 4 // a shield orb circling a player's ship: its child in the transform hierarchy
)

// ShipData is what a client needs to draw an entity: what it is, its colour
// and its size. It is set at spawn and never changes, so after the first
// full state it costs no bandwidth.
type ShipData struct {
	Kind   uint8
	Color  uint32 // 0xRRGGBB
	Radius float32
}

// Ship is the component "demo.ship".
var Ship = donburi.NewComponentType[ShipData]()

// HeadingData is the direction a ship points, in radians in [-π, π).
// Quantised to a milliradian: a sub-pixel error at any drawn size.
type HeadingData struct {
	Angle float32 `ebisync:"q=0.001"`
}

// Heading is the component "demo.heading", interpolated on clients with an
// angle-aware lerp (the short way round).
var Heading = donburi.NewComponentType[HeadingData]()

// SteerData is a player's input: thrust and turn in percent, -100..100.
// Clients write it with mutations; the server authorises them by
// components.Owner and ValidateSteer checks the range. Small integers keep
// a mutation to a few bytes.
type SteerData struct {
	Thrust int8 // forward (+) or reverse (-)
	Turn   int8 // clockwise (+) on screen, where y grows downwards
}

// Steer is the client-writable component "demo.steer".
var Steer = donburi.NewComponentType[SteerData]()

// TargetData is the player ship a drone chases, an entity reference: a
// client sees its own mirror of the ship, or donburi.Null while that ship
// is out of its sight.
type TargetData struct {
	Ship donburi.Entity
}

// Target is the component "demo.target".
var Target = donburi.NewComponentType[TargetData]()

// HitData is the message "demo.hit": a drone reached the ship it chased.
// The server sends it to the clients that see the ship, after the batch's
// state.
type HitData struct {
	Ship  donburi.Entity
	Drone donburi.Entity
}

// maxSteer bounds SteerData's fields.
const maxSteer = 100

// snapDistance is the largest jump an interpolated position or angle
// glides over. Anything larger is a wrap around the world's edge or a
// teleport, and interpolating it would sweep the entity across the map.
const snapDistance = 500

// NewRegistry returns the component registry every peer of the demo
// shares: ebisync's standard components and the demo's own, under fixed
// wire names. Call it once per peer (a server and each client need their
// own registry, because using one freezes it).
func NewRegistry() *components.Registry {
	reg := components.NewRegistry()
	std := components.RegisterStandard(reg)
	std.Position.SetLerp(lerpPosition)
	components.RegisterTransform(reg)
	components.Register(reg, "demo.ship", Ship, nil)
	components.Register(reg, "demo.heading", Heading, &components.Options{Interpolate: true}).SetLerp(lerpHeading)
	components.Register(reg, "demo.steer", Steer, &components.Options{ClientWritable: true})
	components.Register(reg, "demo.target", Target, nil)
	components.RegisterMessage[HitData](reg, "demo.hit", nil)
	components.RegisterMessage[FlyData](reg, "demo.fly", &components.MessageOptions{FromClient: true})
	return reg
}

// lerpPosition interpolates linearly but snaps across edge wraps.
func lerpPosition(a, b *components.PositionData, t float64) components.PositionData {
	dx, dy := b.X-a.X, b.Y-a.Y
	if math.Abs(dx) > snapDistance || math.Abs(dy) > snapDistance {
		return *b
	}
	return components.PositionData{X: a.X + dx*t, Y: a.Y + dy*t}
}

// lerpHeading interpolates an angle the short way round.
func lerpHeading(a, b *HeadingData, t float64) HeadingData {
	d := WrapAngle(float64(b.Angle) - float64(a.Angle))
	return HeadingData{Angle: float32(WrapAngle(float64(a.Angle) + d*t))}
}

// WrapAngle returns a in [-π, π).
func WrapAngle(a float64) float64 {
	a = math.Mod(a+math.Pi, 2*math.Pi)
	if a < 0 {
		a += 2 * math.Pi
	}
	return a - math.Pi
}
