package components_test

import (
	"math"
	"strings"
	"testing"

	"github.com/yohamta/donburi"

	"github.com/ebisync/ebisync/components"
)

type (
	withMap       struct{ M map[string]int }
	withPointer   struct{ P *int }
	withInterface struct{ I any }
	withFunc      struct{ F func() }
	withChan      struct{ C chan int }
	withIntSlice  struct{ S []int }
	withComplex   struct{ Z complex128 }
	withNested    struct {
		Outer struct {
			OK    int
			Inner struct{ Bad map[int]int }
		}
	}
	withArrayOfBad    struct{ Slots [4]struct{ P *int } }
	withArrayOfSlices struct{ Rows [2][]int }
	badStep           struct {
		X float64 `ebisync:"q=abc"`
	}
	zeroStep struct {
		X float64 `ebisync:"q=0"`
	}
	negativeStep struct {
		X float64 `ebisync:"q=-0.5"`
	}
	infStep struct {
		X float64 `ebisync:"q=inf"`
	}
	nanStep struct {
		X float64 `ebisync:"q=NaN"`
	}
	unknownTag struct {
		X float64 `ebisync:"fast"`
	}
	stepOnInt struct {
		N int32 `ebisync:"q=0.5"`
	}
	stepOnIntArray struct {
		N [2]uint8 `ebisync:"q=0.5"`
	}
	stepOnStruct struct {
		P struct{ X float64 } `ebisync:"q=0.5"`
	}
	//lint:ignore U1000 a struct of unexported fields, which registration refuses
	onlyUnexported struct{ x, y int }
	onlySkipped    struct {
		X int `ebisync:"-"`
	}
	eightBytes     struct{ A, B, C, D, E, F, G, H uint8 }
	sixtyFiveLeafs struct {
		P0, P1, P2, P3, P4, P5, P6, P7 eightBytes
		Extra                          bool
	}
)

func TestRegisterPanics(t *testing.T) {
	for _, tc := range []struct {
		name     string
		register func(r *components.Registry)
		want     []string
	}{
		{"map", regFunc[withMap], []string{`"bad"`, "field M", "unsupported type map[string]int"}},
		{"pointer", regFunc[withPointer], []string{"field P", "*int"}},
		{"interface", regFunc[withInterface], []string{"field I", "interface"}},
		{"func", regFunc[withFunc], []string{"field F", "func()"}},
		{"chan", regFunc[withChan], []string{"field C", "chan int"}},
		{"[]int", regFunc[withIntSlice], []string{"field S", "[]int", "slices other than []byte"}},
		{"complex", regFunc[withComplex], []string{"field Z", "complex128"}},
		{"nested", regFunc[withNested], []string{"field Outer.Inner.Bad", "map[int]int"}},
		{"array of structs", regFunc[withArrayOfBad], []string{"field Slots[].P", "*int"}},
		{"array of slices", regFunc[withArrayOfSlices], []string{"field Rows[]", "[]int"}},
		{"pointer component", regFunc[*shipV1], []string{"unsupported type *components_test.shipV1"}},
		{"bad q", regFunc[badStep], []string{"field X", `bad quantisation step "abc"`}},
		{"zero q", regFunc[zeroStep], []string{"field X", "bad quantisation step"}},
		{"negative q", regFunc[negativeStep], []string{"field X", "bad quantisation step"}},
		{"infinite q", regFunc[infStep], []string{"field X", "bad quantisation step"}},
		{"NaN q", regFunc[nanStep], []string{"field X", "bad quantisation step"}},
		{"unknown tag", regFunc[unknownTag], []string{"field X", `unknown ebisync tag option "fast"`}},
		{"q on an int", regFunc[stepOnInt], []string{"field N", "q= applies to float fields, not int32"}},
		{"q on an int array", regFunc[stepOnIntArray], []string{"field N[]", "q= applies to float fields, not uint8"}},
		{"q on a struct", regFunc[stepOnStruct], []string{"field P", "not a struct"}},
		{"no exported fields", regFunc[onlyUnexported], []string{"no exported fields"}},
		{"only skipped fields", regFunc[onlySkipped], []string{"no exported fields"}},
		{"65 fields", regFunc[sixtyFiveLeafs], []string{"65 synced fields, at most 64"}},
		{"empty name", func(r *components.Registry) {
			components.Register(r, "", donburi.NewComponentType[shipV1](), nil)
		}, []string{"wire name must be 1 to"}},
		{"long name", func(r *components.Registry) {
			components.Register(r, strings.Repeat("n", 257), donburi.NewComponentType[shipV1](), nil)
		}, []string{"wire name must be 1 to 256 bytes"}},
		{"nil component type", func(r *components.Registry) {
			components.Register[shipV1](r, "bad", nil, nil)
		}, []string{`"bad"`, "nil component type"}},
		{"duplicate name", func(r *components.Registry) {
			components.Register(r, "ebisync.owner", donburi.NewComponentType[shipV1](), nil)
		}, []string{`"ebisync.owner"`, "name is already registered"}},
		{"duplicate component type", func(r *components.Registry) {
			components.Register(r, "again", components.Owner, nil)
		}, []string{`"again"`, `component type already registered as "ebisync.owner"`}},
		{"duplicate Go type", func(r *components.Registry) {
			components.Register(r, "again", donburi.NewComponentType[components.OwnerData](), nil)
		}, []string{`"again"`, `Go type components.OwnerData already registered as "ebisync.owner"`}},
		{"negative MaxRate", func(r *components.Registry) {
			components.Register(r, "bad", donburi.NewComponentType[shipV1](), &components.Options{MaxRate: -1})
		}, []string{`"bad"`, "MaxRate"}},
		{"NaN MaxRate", func(r *components.Registry) {
			components.Register(r, "bad", donburi.NewComponentType[shipV1](), &components.Options{MaxRate: math.NaN()})
		}, []string{`"bad"`, "MaxRate"}},
		{"frozen", func(r *components.Registry) {
			r.Freeze()
			r.Freeze() // idempotent
			components.Register(r, "late", donburi.NewComponentType[shipV1](), nil)
		}, []string{`"late"`, "registry is frozen"}},
		{"standard twice", func(r *components.Registry) {
			components.RegisterStandard(r)
			components.RegisterStandard(r)
		}, []string{`"ebisync.position"`, "already registered"}},
		{"SetLerp once frozen", func(r *components.Registry) {
			c := components.Register(r, "ship", donburi.NewComponentType[shipV1](), nil)
			r.Freeze()
			c.SetLerp(func(a, b *shipV1, t float64) shipV1 { return *b })
		}, []string{`"ship"`, "SetLerp", "frozen"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := components.NewRegistry()
			n := r.Len()
			mustPanic(t, func() { tc.register(r) }, tc.want...)
			if tc.name != "standard twice" && tc.name != "SetLerp once frozen" {
				assert(t, r.Len() == n, "a failed registration left %d components, want %d", r.Len(), n)
			}
		})
	}
}

// regFunc registers a fresh component type of T as "bad".
func regFunc[T any](r *components.Registry) {
	components.Register(r, "bad", donburi.NewComponentType[T](), nil)
}

func TestRegisterSupportedShapes(t *testing.T) {
	type scalar int16
	type embedded struct{ E uint8 }
	type shapes struct {
		embedded
		Named  scalar
		Byte   byte
		Rune   rune
		Nested [2][3]float32 `ebisync:"q=0.5"`
		Skip   map[int]int   `ebisync:"-"`
		//lint:ignore U1000 an unexported field the layout must leave out
		skip func()
	}
	r := components.NewRegistry()
	c := components.Register(r, "shapes", donburi.NewComponentType[shapes](), &components.Options{ClientWritable: true, MaxRate: 10}).Component()
	var got []string
	for _, f := range c.Fields() {
		got = append(got, f.Name+" "+f.Type)
	}
	want := "Named int16,Byte uint8,Rune int32,Nested [2][3]float32@0.5"
	assert(t, strings.Join(got, ",") == want, "fields %q, want %q", strings.Join(got, ","), want)
	assert(t, c.Options().ClientWritable && c.Options().MaxRate == 10, "options %+v", c.Options())

	// A non-struct component type is one field named "value".
	s := components.Register(r, "score", donburi.NewComponentType[scalar](), nil).Component()
	assert(t, s.NumFields() == 1 && s.Fields()[0] == components.FieldLayout{Name: "value", Type: "int16"}, "scalar fields %+v", s.Fields())

	// int and uint share the wire type of int64 and uint64.
	type native struct {
		I int
		U uint
	}
	n := components.Register(r, "native", donburi.NewComponentType[native](), nil).Component()
	assert(t, n.Fields()[0].Type == "int64" && n.Fields()[1].Type == "uint64", "native fields %+v", n.Fields())
}

func TestTouch(t *testing.T) {
	r := components.NewRegistry()
	components.RegisterStandard(r)
	pos, _ := r.Of(components.Position)
	hp, _ := r.Of(components.Health)
	w := donburi.NewWorld()

	e := w.Entry(w.Create(components.Replicated, components.Position, components.Health))
	r.Touch(e, components.Position)
	tag := components.Replicated.Get(e)
	assert(t, len(tag.Versions) == r.Len(), "Versions has %d entries, want %d", len(tag.Versions), r.Len())
	for i, v := range tag.Versions {
		want := uint32(0)
		if i == pos.Index() {
			want = components.VersionTouched
		}
		assert(t, v == want, "Versions[%d] = %d, want %d", i, v, want)
	}

	// Existing stamps survive a later Touch.
	tag.Versions[hp.Index()] = 42
	r.Touch(e, components.Health)
	assert(t, tag.Versions[hp.Index()] == components.VersionTouched && tag.Versions[pos.Index()] == components.VersionTouched, "Versions %v", tag.Versions)

	// Not replicated, not registered, or removed: nothing happens.
	plain := w.Entry(w.Create(components.Position))
	r.Touch(plain, components.Position)
	unregistered := donburi.NewComponentType[shipV1]()
	e2 := w.Entry(w.Create(components.Replicated, unregistered))
	r.Touch(e2, unregistered)
	assert(t, components.Replicated.Get(e2).Versions == nil, "Touch of an unregistered type stamped %v", components.Replicated.Get(e2).Versions)
	w.Remove(e2.Entity())
	r.Touch(e2, components.Position)
}
