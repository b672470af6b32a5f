package components

import (
	"github.com/yohamta/donburi"
)

// VersionTouched in ReplicatedData.Versions marks a component that
// Registry.Touch flagged and the server has not yet stamped.
const VersionTouched = ^uint32(0)

// ReplicatedData is the versioned tag. An entity takes part in replication
// when it has the Replicated component. On the server, NetID and Gen are
// assigned on the tick the server first sees the entity, and Versions[i] is
// the server tick at which the component with wire id i last changed (0:
// never present). On a client's mirror entity, NetID and Gen name the
// server entity it mirrors.
//
// Game code creates the tag zeroed and otherwise only reads it.
type ReplicatedData struct {
	NetID    uint32
	Gen      uint32
	Versions []uint32
}

// Replicated is the versioned tag component. Add it to an entity to
// replicate it:
//
//	e := world.Create(components.Replicated, components.Position)
var Replicated = donburi.NewComponentType[ReplicatedData]()

// OwnerData names the client that owns an entity: the server sets it, and a
// client's interest can follow an entity it owns. Client 0 is the server.
type OwnerData struct {
	Client uint64
}

// Owner is the built-in component "ebisync.owner".
var Owner = donburi.NewComponentType[OwnerData]()

// ControlData names the client holding exclusive control of an entity (0:
// nobody). The server maintains it; every subscriber sees who controls what.
type ControlData struct {
	Client uint64
}

// Control is the built-in component "ebisync.control".
var Control = donburi.NewComponentType[ControlData]()

// PositionData is a 2D position, sent in steps of 0.01.
type PositionData struct {
	X float64 `ebisync:"q=0.01"`
	Y float64 `ebisync:"q=0.01"`
}

// Position is the standard component "ebisync.position". The server's
// interest management uses it by default.
var Position = donburi.NewComponentType[PositionData]()

// VelocityData is a 2D velocity in units per second, sent in steps of 0.01.
type VelocityData struct {
	X float64 `ebisync:"q=0.01"`
	Y float64 `ebisync:"q=0.01"`
}

// Velocity is the standard component "ebisync.velocity".
var Velocity = donburi.NewComponentType[VelocityData]()

// NameData is a display name.
type NameData struct {
	Value string
}

// Name is the standard component "ebisync.name".
var Name = donburi.NewComponentType[NameData]()

// HealthData is hit points.
type HealthData struct {
	Current int32
	Max     int32
}

// Health is the standard component "ebisync.health".
var Health = donburi.NewComponentType[HealthData]()

// Standard holds the typed handles of the standard components in one
// registry.
type Standard struct {
	Position *Synced[PositionData]
	Velocity *Synced[VelocityData]
	Name     *Synced[NameData]
	Health   *Synced[HealthData]
}

// RegisterStandard registers Position (interpolated), Velocity, Name and
// Health under their "ebisync.*" wire names and returns their handles. It
// panics if any is already registered.
// Like Register, it is not safe for concurrent use.
func RegisterStandard(r *Registry) Standard {
	return Standard{
		Position: Register(r, "ebisync.position", Position, &Options{Interpolate: true}),
		Velocity: Register(r, "ebisync.velocity", Velocity, nil),
		Name:     Register(r, "ebisync.name", Name, nil),
		Health:   Register(r, "ebisync.health", Health, nil),
	}
}
