package components_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/yohamta/donburi"

	"github.com/ebisync/ebisync/components"
)

// Variants of one component, as two builds of a game might define it.
type (
	shipV1 struct {
		X    float64 `ebisync:"q=0.01"`
		Fuel int32
	}
	shipSameLayout struct { // another Go type, same wire layout
		X    float64 `ebisync:"q=0.01"`
		Fuel int32
	}
	shipRenamed struct {
		X      float64 `ebisync:"q=0.01"`
		Energy int32
	}
	shipRetyped struct {
		X    float64 `ebisync:"q=0.01"`
		Fuel int64
	}
	shipReordered struct {
		Fuel int32
		X    float64 `ebisync:"q=0.01"`
	}
	shipRequantised struct {
		X    float64 `ebisync:"q=0.1"`
		Fuel int32
	}
	shipUnquantised struct {
		X    float64
		Fuel int32
	}
	shipFloat32 struct {
		X    float32 `ebisync:"q=0.01"`
		Fuel int32
	}
	shipExtraField struct {
		X    float64 `ebisync:"q=0.01"`
		Fuel int32
		Ammo uint8
	}
	shipNestedRenamed struct {
		X    float64 `ebisync:"q=0.01"`
		Fuel int32
		Arr  [2]struct{ A, B int8 }
	}
	shipNestedRenamed2 struct {
		X    float64 `ebisync:"q=0.01"`
		Fuel int32
		Arr  [2]struct{ A, C int8 }
	}
)

// shipRegistry registers T as "game.ship" in a fresh registry.
func shipRegistry[T any]() (*components.Registry, *components.Component) {
	r := components.NewRegistry()
	c := components.Register(r, "game.ship", donburi.NewComponentType[T](), nil).Component()
	return r, c
}

func TestSchemaHashAndCheck(t *testing.T) {
	base, baseC := shipRegistry[shipV1]()

	same, sameC := shipRegistry[shipSameLayout]()
	assert(t, sameC.SchemaHash() == baseC.SchemaHash(), "same layout, different hash")
	assert(t, base.Check(same.Schema()) == nil, "same layout: Check = %v", base.Check(same.Schema()))
	assert(t, same.Check(base.Schema()) == nil, "same layout, reversed: Check = %v", same.Check(base.Schema()))

	for _, tc := range []struct {
		name   string
		reg    func() (*components.Registry, *components.Component)
		field  string // field the local side (base) names
		reason string
	}{
		{"renamed", shipRegistry[shipRenamed], "Fuel", "renamed or reordered"},
		{"retyped", shipRegistry[shipRetyped], "Fuel", "int32 locally but int64 on the remote side"},
		{"reordered", shipRegistry[shipReordered], "X", "renamed or reordered"},
		{"requantised", shipRegistry[shipRequantised], "X", "quantisation step 0.01 locally but 0.1 on the remote side"},
		{"unquantised", shipRegistry[shipUnquantised], "X", "quantisation step 0.01 locally but none on the remote side"},
		{"float32", shipRegistry[shipFloat32], "X", "float64 locally but float32 on the remote side"},
		{"extra field", shipRegistry[shipExtraField], "Ammo", "missing locally"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			other, otherC := tc.reg()
			assert(t, otherC.SchemaHash() != baseC.SchemaHash(), "hash unchanged: %#x", baseC.SchemaHash())
			err := base.Check(other.Schema())
			var me *components.MismatchError
			assert(t, errors.As(err, &me), "Check = %v, want a *MismatchError", err)
			assert(t, me.Component == "game.ship" && me.Field == tc.field, "mismatch names %q field %q, want %q field %q", me.Component, me.Field, "game.ship", tc.field)
			assert(t, strings.Contains(me.Reason, tc.reason), "reason %q does not contain %q", me.Reason, tc.reason)
			msg := err.Error()
			assert(t, strings.Contains(msg, `"game.ship"`) && strings.Contains(msg, `"`+tc.field+`"`), "Error() = %q names neither component nor field", msg)

			// The other side sees the mismatch too.
			var back *components.MismatchError
			assert(t, errors.As(other.Check(base.Schema()), &back) && back.Component == "game.ship" && back.Field != "", "reverse Check = %v", other.Check(base.Schema()))
		})
	}

	// A change inside an array element's struct changes the array's type.
	a, aC := shipRegistry[shipNestedRenamed]()
	b, bC := shipRegistry[shipNestedRenamed2]()
	assert(t, aC.SchemaHash() != bC.SchemaHash(), "array element rename: same hash")
	var me *components.MismatchError
	assert(t, errors.As(a.Check(b.Schema()), &me) && me.Field == "Arr", "array element rename: %v", a.Check(b.Schema()))
	assert(t, aC.Fields()[2].Type == "[2]struct{A int8;B int8}", "array type %q", aC.Fields()[2].Type)

	// The wire name is part of the hash.
	r := components.NewRegistry()
	renamed := components.Register(r, "game.boat", donburi.NewComponentType[shipV1](), nil).Component()
	assert(t, renamed.SchemaHash() != baseC.SchemaHash(), "wire name not in the hash")
}

func TestCheckMissingComponent(t *testing.T) {
	withShip, _ := shipRegistry[shipV1]()
	without := components.NewRegistry()

	err := withShip.Check(without.Schema())
	var me *components.MismatchError
	assert(t, errors.As(err, &me) && me.Component == "game.ship" && me.Field == "", "local only: %v", err)
	assert(t, strings.Contains(err.Error(), `"game.ship"`) && strings.Contains(err.Error(), "not on the remote side"), "local only: %q", err)

	err = without.Check(withShip.Schema())
	assert(t, errors.As(err, &me) && me.Component == "game.ship" && me.Field == "", "remote only: %v", err)
	assert(t, strings.Contains(err.Error(), `"game.ship"`) && strings.Contains(err.Error(), "not locally"), "remote only: %q", err)

	// Registration order does not matter: components match by name.
	r1, r2 := components.NewRegistry(), components.NewRegistry()
	components.Register(r1, "a", donburi.NewComponentType[shipV1](), nil)
	components.Register(r1, "b", donburi.NewComponentType[shipRetyped](), nil)
	components.Register(r2, "b", donburi.NewComponentType[shipRetyped](), nil)
	components.Register(r2, "a", donburi.NewComponentType[shipV1](), nil)
	assert(t, r1.Check(r2.Schema()) == nil, "reordered registries: %v", r1.Check(r2.Schema()))

	// A remote listing a component twice is refused.
	dup := append(r2.Schema(), r2.Schema()[2])
	assert(t, errors.As(r1.Check(dup), &me) && me.Component == "b", "duplicate remote entry: %v", r1.Check(dup))

	// A hash that disagrees with identical fields is still a mismatch.
	lying := r2.Schema()
	lying[2].Hash++
	assert(t, errors.As(r1.Check(lying), &me) && me.Component == "b" && strings.Contains(me.Reason, "schema hash"), "wrong hash: %v", r1.Check(lying))
}

func TestSchemaListsFields(t *testing.T) {
	r := components.NewRegistry()
	components.RegisterStandard(r)
	s := r.Schema()
	assert(t, len(s) == r.Len() && r.Len() == 6, "schema of %d components, registry of %d", len(s), r.Len())
	for i, c := range r.All() {
		assert(t, s[i].Name == c.Name() && s[i].Hash == c.SchemaHash() && c.Index() == i, "schema[%d] = %+v for %s", i, s[i], c)
		got, ok := r.ByName(c.Name())
		assert(t, ok && got == c && r.At(i) == c, "lookup of %s", c)
	}
	assert(t, r.At(-1) == nil && r.At(r.Len()) == nil, "At out of range is not nil")
	pos, _ := r.Of(components.Position)
	assert(t, pos.Name() == "ebisync.position" && pos.Options().Interpolate, "position: %s %+v", pos, pos.Options())
	want := []components.FieldLayout{{Name: "X", Type: "float64", Quant: 0.01}, {Name: "Y", Type: "float64", Quant: 0.01}}
	got := pos.Fields()
	assert(t, len(got) == 2 && got[0] == want[0] && got[1] == want[1], "position fields %+v", got)
}
