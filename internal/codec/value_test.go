package codec_test

import (
	"math"
	"testing"

	"github.com/yohamta/donburi"

	"github.com/ebisync/ebisync/components"
	"github.com/ebisync/ebisync/internal/codec"
	"github.com/ebisync/ebisync/internal/testutil"
)

type lerped struct {
	F64  float64
	F32  float32
	Q    float64 `ebisync:"q=0.01"`
	N    int32
	On   bool
	S    string
	B    []byte
	Arr  [2]float32
	Pts  [1]struct{ X, Y float64 }
	Tick uint64
}

func TestLerp(t *testing.T) {
	c := register(components.NewRegistry(), "test.lerp", donburi.NewComponentType[lerped](), nil)
	a := lerped{F64: 10, F32: -4, Q: 1.5, N: 1, On: false, S: "a", B: []byte("a"), Arr: [2]float32{0, 100}, Pts: [1]struct{ X, Y float64 }{{0, 8}}, Tick: 1}
	b := lerped{F64: 20, F32: 4, Q: 2.5, N: 2, On: true, S: "b", B: []byte("b"), Arr: [2]float32{1, 200}, Pts: [1]struct{ X, Y float64 }{{4, 0}}, Tick: 2}

	var out lerped
	c.Lerp(ptr(&out), ptr(&a), ptr(&b), 0.25)
	want := lerped{F64: 12.5, F32: -2, Q: 1.75, N: 2, On: true, S: "b", B: []byte("b"), Arr: [2]float32{0.25, 125}, Pts: [1]struct{ X, Y float64 }{{1, 6}}, Tick: 2}
	assertSame(t, &want, &out, "Lerp at 0.25")
	b.B[0] = 'X'
	assert(t, string(out.B) == "b", "Lerp's []byte aliases b's")

	// Exact at the ends, even where x + (y-x)*t is not.
	a2 := lerped{F64: 1e20, F32: -0.1, Arr: [2]float32{3e30, -7}}
	b2 := lerped{F64: 1, F32: 0.3, Arr: [2]float32{1e-30, 7}}
	c.Lerp(ptr(&out), ptr(&a2), ptr(&b2), 1)
	assertSame(t, &b2, &out, "Lerp at 1")
	c.Lerp(ptr(&out), ptr(&a2), ptr(&b2), 0)
	assert(t, out.F64 == a2.F64 && out.F32 == a2.F32 && out.Arr == a2.Arr, "Lerp at 0: floats %v %v %v, want a's", out.F64, out.F32, out.Arr)

	// Extrapolation past b continues the line.
	c.Lerp(ptr(&out), ptr(&a), ptr(&b), 1.5)
	assert(t, out.F64 == 25, "Lerp at 1.5: %v", out.F64)

	// out may be b.
	b3 := b
	c.Lerp(ptr(&b3), ptr(&a), ptr(&b3), 0.5)
	assert(t, b3.F64 == 15 && b3.N == 2, "Lerp into b: %+v", b3)

	// SetLerp replaces the default.
	codec.SetLerp(c, func(a, b *lerped, t float64) lerped {
		v := *b
		v.N = -1
		return v
	})
	c.Lerp(ptr(&out), ptr(&a), ptr(&b), 0.5)
	assert(t, out.N == -1 && out.F64 == 20, "SetLerp function not used: %+v", out)
}

func TestLerpNonFinite(t *testing.T) {
	c := register(components.NewRegistry(), "test.lerpnan", donburi.NewComponentType[lerped](), nil)
	a := lerped{F64: math.Inf(1), F32: float32(math.NaN())}
	b := lerped{F64: 1, F32: 2}
	var out lerped
	c.Lerp(ptr(&out), ptr(&a), ptr(&b), 0.5) // no panic; values are whatever IEEE gives
	assert(t, math.IsInf(out.F64, 1) && math.IsNaN(float64(out.F32)), "non-finite lerp: %v %v", out.F64, out.F32)
}

func TestCopy(t *testing.T) {
	type holder struct {
		B      []byte
		Bufs   [2][]byte
		Nested struct{ Inner [1]struct{ B []byte } }
		S      string
		N      int
		Skip   []byte `ebisync:"-"`
		hidden int
	}
	c := register(components.NewRegistry(), "test.copy", donburi.NewComponentType[holder](), nil)
	src := holder{B: []byte{1, 2, 3}, Bufs: [2][]byte{{4}, {}}, S: "s", N: 7, Skip: []byte{9}, hidden: 5}
	src.Nested.Inner[0].B = []byte{5, 6}
	var dst holder
	c.Copy(ptr(&dst), ptr(&src))

	assert(t, string(dst.B) == "\x01\x02\x03" && string(dst.Bufs[0]) == "\x04" && string(dst.Nested.Inner[0].B) == "\x05\x06", "copied %+v", dst)
	assert(t, dst.S == "s" && dst.N == 7, "plain fields not copied: %+v", dst)
	assert(t, dst.Bufs[1] == nil, "an empty []byte copies as %#v, want nil", dst.Bufs[1])

	src.B[0], src.Bufs[0][0], src.Nested.Inner[0].B[0] = 0xEE, 0xEE, 0xEE
	assert(t, dst.B[0] == 1 && dst.Bufs[0][0] == 4 && dst.Nested.Inner[0].B[0] == 5, "dst aliases src after Copy: %+v", dst)
	assert(t, c.Diff(ptr(&dst), ptr(&src)) != 0, "Diff misses the mutation")

	// Unsynced fields keep the destination's values.
	assert(t, dst.Skip == nil && dst.hidden == 0, "unsynced fields copied: %+v", dst)

	// Copy of a value into itself is harmless.
	c.Copy(ptr(&dst), ptr(&dst))
	assert(t, dst.B[0] == 1 && dst.N == 7, "self copy: %+v", dst)
}

func TestNew(t *testing.T) {
	r := components.NewRegistry()
	components.RegisterStandard(r)
	c, _ := testutil.Codec(r.Of(components.Health))
	p := c.New()
	h := (*components.HealthData)(p)
	assert(t, *h == components.HealthData{}, "New is not zero: %+v", *h)
	assert(t, c.Type().String() == "components.HealthData" && c.ComponentType() == components.Health, "type %v", c.Type())
}

// TestCopyKeepsUnsynced: Copy leaves the fields the codec does not sync as
// they are in the destination, at any depth.
func TestCopyKeepsUnsynced(t *testing.T) {
	type inner struct {
		A     int32
		local int32
	}
	type partial struct {
		X     float64
		Cache []int `ebisync:"-"`
		In    [2]inner
		Blob  []byte
		flag  bool
	}
	c := register(components.NewRegistry(), "test.partial", donburi.NewComponentType[partial](), nil)
	src := partial{X: 1, Cache: []int{9}, In: [2]inner{{A: 1, local: 5}, {A: 2, local: 6}}, Blob: []byte{1}, flag: true}
	dst := partial{Cache: []int{7}, In: [2]inner{{local: 50}, {local: 60}}}
	c.Copy(ptr(&dst), ptr(&src))
	assert(t, dst.X == 1 && dst.In[0].A == 1 && dst.In[1].A == 2 && len(dst.Blob) == 1, "synced fields not copied: %+v", dst)
	assert(t, dst.Cache[0] == 7 && dst.In[0].local == 50 && dst.In[1].local == 60 && !dst.flag, "unsynced fields overwritten: %+v", dst)
	src.Blob[0] = 2
	assert(t, dst.Blob[0] == 1, "Blob aliases the source")
}
