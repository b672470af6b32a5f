package components_test

import (
	"errors"
	"fmt"
	"unsafe"

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
	components.RegisterStandard(reg)
	c := components.Register(reg, "game.ship", ship, nil)
	reg.Freeze() // the server or client does this when it starts

	for _, f := range c.Fields() {
		fmt.Println(f.Name, f.Type, f.Quant)
	}

	// The server encodes a value...
	v := ShipData{Heading: 1.2345, Fuel: 300, Pilot: "Ada"}
	enc := c.AppendFull(nil, unsafe.Pointer(&v))
	fmt.Printf("% x\n", enc)

	// ...and the client decodes it.
	var got ShipData
	n, err := c.DecodeFull(enc, unsafe.Pointer(&got))
	fmt.Println(n, err, got.Heading, got.Fuel, got.Boost, got.Pilot)
	// Output:
	// Heading float32 0.01
	// Fuel uint16 0
	// Boost bool 0
	// Pilot string 0
	// f6 01 ac 02 00 03 41 64 61
	// 9 <nil> 1.23 300 false Ada
}

func ExampleComponent_AppendDelta() {
	reg := components.NewRegistry()
	components.RegisterStandard(reg)
	pos, _ := reg.Of(components.Position)

	// The client holds what the last full update gave it.
	old := components.PositionData{X: 1234.56, Y: 789.01}
	var client components.PositionData
	full := pos.AppendFull(nil, unsafe.Pointer(&old))
	if _, err := pos.DecodeFull(full, unsafe.Pointer(&client)); err != nil {
		panic(err)
	}

	// One tick later the server sends only what changed, as differences.
	cur := components.PositionData{X: 1235.93, Y: 788.17}
	mask := pos.Diff(unsafe.Pointer(&old), unsafe.Pointer(&cur))
	delta := pos.AppendDelta(nil, unsafe.Pointer(&old), unsafe.Pointer(&cur), mask)
	fmt.Printf("full %d bytes, delta %d bytes: % x\n", len(full), len(delta), delta)

	if _, err := pos.DecodeDelta(delta, unsafe.Pointer(&client)); err != nil {
		panic(err)
	}
	fmt.Printf("%.2f %.2f\n", client.X, client.Y)
	// Output:
	// full 6 bytes, delta 5 bytes: 03 92 02 a7 01
	// 1235.93 788.17
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
