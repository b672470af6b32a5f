package components_test

import (
	"errors"
	"fmt"
	"math"

	"github.com/yohamta/donburi"

	"github.com/ebisync/ebisync/components"
)

// ShipData is a game's own component.
type ShipData struct {
	Heading float32 `ebisync:"q=0.01"` // radians, sent in steps of 0.01
	Fuel    uint16
	Boost   bool
	Pilot   string
	Cache   []int `ebisync:"-"` // local only: not synced
}

func ExampleRegister() {
	ship := donburi.NewComponentType[ShipData]()

	reg := components.NewRegistry()
	std := components.RegisterStandard(reg)
	ships := components.Register(reg, "game.ship", ship, nil) // *components.Synced[ShipData]
	reg.Freeze()                                              // the server or client does this when it starts

	for _, f := range ships.Component().Fields() {
		fmt.Println(f.Name, f.Type, f.Quant)
	}

	// The handle reads and writes values as their Go type.
	world := donburi.NewWorld()
	e := world.Create(components.Replicated)
	ships.Set(world, e, ShipData{Heading: 1.2345, Fuel: 300, Pilot: "Ada"})
	std.Position.Set(world, e, components.PositionData{X: 10, Y: 20})
	v, ok := ships.Get(world, e)
	fmt.Println(ok, v.Fuel, v.Pilot)
	// Output:
	// Heading float32 0.01
	// Fuel uint16 0
	// Boost bool 0
	// Pilot string 0
	// true 300 Ada
}

func ExampleSynced_Lerp() {
	reg := components.NewRegistry()
	std := components.RegisterStandard(reg)

	// The client draws Position between two server values.
	a := components.PositionData{X: 0, Y: 100}
	b := components.PositionData{X: 10, Y: 50}
	fmt.Println(std.Position.Lerp(a, b, 0.25))

	// A game can install its own interpolation before the registry is used.
	type Angle struct{ Rad float64 }
	angle := components.Register(reg, "game.angle", donburi.NewComponentType[Angle](), &components.Options{Interpolate: true})
	angle.SetLerp(func(a, b *Angle, t float64) Angle {
		d := math.Remainder(b.Rad-a.Rad, 2*math.Pi) // the short way round
		return Angle{Rad: a.Rad + d*t}
	})
	fmt.Printf("%.2f\n", angle.Lerp(Angle{Rad: 3.0}, Angle{Rad: -3.0}, 0.5).Rad)
	// Output:
	// {2.5 87.5}
	// 3.14
}

func ExampleRegistry_Check() {
	type shipV1 struct {
		Fuel uint16
	}
	type shipV2 struct {
		Fuel uint32 // a newer build widened the field
	}
	server := components.NewRegistry()
	components.Register(server, "game.ship", donburi.NewComponentType[shipV1](), nil)
	client := components.NewRegistry()
	components.Register(client, "game.ship", donburi.NewComponentType[shipV2](), nil)

	err := server.Check(client.Schema())
	fmt.Println(err)
	var mismatch *components.MismatchError
	if errors.As(err, &mismatch) {
		fmt.Println(mismatch.Component, mismatch.Field)
	}
	// Output:
	// schema mismatch: component "game.ship" field "Fuel": type uint16 locally but uint32 on the remote side
	// game.ship Fuel
}
