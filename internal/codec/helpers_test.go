package codec_test

import (
	"bytes"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	"github.com/yohamta/donburi"

	"github.com/ebisync/ebisync/components"
	"github.com/ebisync/ebisync/internal/codec"

	"github.com/ebisync/ebisync/internal/testutil"
)

var seedFlag = flag.Uint64("seed", 0x5eed_eb15, "seed of the property tests' random values")

// assert fails the test with the formatted message unless ok.
var assert = testutil.Assert

// newRand returns the property tests' generator, logging its seed so a
// failure can be replayed with -seed.
func newRand(t testing.TB) *rand.Rand {
	t.Helper()
	t.Logf("seed %#x (replay with -seed=%d)", *seedFlag, *seedFlag)
	return rand.New(rand.NewPCG(*seedFlag, 0x9e3779b97f4a7c15))
}

// iterations scales a property test's loop count down under -short and
// under the race detector.
func iterations(n int) int {
	if testing.Short() {
		n /= 10
	}
	if raceEnabled {
		n /= 5
	}
	return n
}

// ptr returns an unsafe.Pointer to v, for the raw codec methods.
func ptr[T any](v *T) unsafe.Pointer { return unsafe.Pointer(v) }

// point is a struct used as an array element.
type point struct {
	X float32
	Y float32 `ebisync:"q=0.5"`
	N int8
}

// allKinds has a field of every supported kind, including nested structs,
// arrays of primitives and of structs, quantised floats and fields the codec
// skips.
type allKinds struct {
	Bool bool
	I8   int8
	I16  int16
	I32  int32
	I64  int64
	I    int
	U8   uint8
	U16  uint16
	U32  uint32
	U64  uint64
	U    uint
	F32  float32
	F64  float64
	QF32 float32 `ebisync:"q=0.01"`
	QF64 float64 `ebisync:"q=0.001"`
	S    string
	B    []byte
	Arr  [3]int16
	QArr [2]float64 `ebisync:"q=0.25"`
	Pts  [2]point
	Grid [2][2]uint8
	Bufs [2][]byte
	Zero [0]int32
	Nest struct {
		Flag bool
		Name string
		Deep struct {
			V uint32
			Q float32 `ebisync:"q=0.1"`
		}
	}
	Skipped int `ebisync:"-"`
	//lint:ignore U1000 an unexported field the codec must skip
	hidden int
}

// registerAllKinds registers allKinds in a fresh registry.
func registerAllKinds(ct *donburi.ComponentType[allKinds]) *codec.Codec {
	return register(components.NewRegistry(), "test.allkinds", ct, nil)
}

// stepOf parses the quantisation step of a struct field's tag (0: none).
func stepOf(sf reflect.StructField) float64 {
	tag, _ := strings.CutPrefix(sf.Tag.Get("ebisync"), "q=")
	s, err := strconv.ParseFloat(tag, 64)
	if err != nil {
		return 0
	}
	return s
}

// synced reports whether the codec encodes the struct field.
func synced(sf reflect.StructField) bool {
	return sf.IsExported() && sf.Tag.Get("ebisync") != "-"
}

// fillRandom sets every synced leaf of v to a random value biased towards
// edge cases. Quantised floats stay within the documented exact range
// (|v/step| < 2^22 for float32, < 2^51 for float64).
func fillRandom(rng *rand.Rand, v reflect.Value, step float64) {
	switch v.Kind() {
	case reflect.Bool:
		v.SetBool(rng.IntN(2) == 1)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(int64(randBits(rng, v.Type().Bits()))) // SetInt truncates
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(randBits(rng, v.Type().Bits()))
	case reflect.Float32:
		if step != 0 {
			v.SetFloat(float64(float32(randQuant(rng, step, 1<<21))))
		} else {
			v.SetFloat(float64(randFloat32(rng)))
		}
	case reflect.Float64:
		if step != 0 {
			v.SetFloat(randQuant(rng, step, 1<<50))
		} else {
			v.SetFloat(randFloat64(rng))
		}
	case reflect.String:
		v.SetString(string(randBytes(rng, false)))
	case reflect.Slice:
		v.SetBytes(randBytes(rng, true))
	case reflect.Array:
		for i := 0; i < v.Len(); i++ {
			fillRandom(rng, v.Index(i), step)
		}
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			if sf := v.Type().Field(i); synced(sf) {
				fillRandom(rng, v.Field(i), stepOf(sf))
			}
		}
	default:
		panic("fillRandom: unexpected kind " + v.Kind().String())
	}
}

// mixLeaves overwrites each synced leaf of dst (array elements one by one)
// with src's with probability p, so dst differs from src in a random
// subset of fields.
func mixLeaves(rng *rand.Rand, dst, src reflect.Value, p float64) {
	switch dst.Kind() {
	case reflect.Struct:
		for i := 0; i < dst.NumField(); i++ {
			if synced(dst.Type().Field(i)) {
				mixLeaves(rng, dst.Field(i), src.Field(i), p)
			}
		}
	case reflect.Array:
		for i := 0; i < dst.Len(); i++ {
			mixLeaves(rng, dst.Index(i), src.Index(i), p)
		}
	default:
		if rng.Float64() < p {
			dst.Set(src)
		}
	}
}

// walk moves every synced leaf of v a small random step, as a simulation
// does between ticks: numbers drift (integers wrap), bools sometimes flip,
// strings and bytes sometimes change.
func walk(rng *rand.Rand, v reflect.Value, step float64) {
	switch v.Kind() {
	case reflect.Bool:
		if rng.IntN(10) == 0 {
			v.SetBool(!v.Bool())
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(v.Int() + rng.Int64N(21) - 10)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(v.Uint() + uint64(rng.Int64N(21)-10))
	case reflect.Float32, reflect.Float64:
		scale := step * 3
		if scale == 0 {
			scale = 1
		}
		if rng.IntN(4) != 0 {
			v.SetFloat(v.Float() + rng.NormFloat64()*scale)
		}
	case reflect.String:
		if rng.IntN(5) == 0 {
			v.SetString(string(randBytes(rng, false)))
		}
	case reflect.Slice:
		if rng.IntN(5) == 0 {
			v.SetBytes(randBytes(rng, true))
		}
	case reflect.Array:
		for i := 0; i < v.Len(); i++ {
			walk(rng, v.Index(i), step)
		}
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			if sf := v.Type().Field(i); synced(sf) {
				walk(rng, v.Field(i), stepOf(sf))
			}
		}
	}
}

func randBits(rng *rand.Rand, bits int) uint64 {
	switch rng.IntN(10) {
	case 0:
		return 0
	case 1:
		return ^uint64(0) // -1, or the unsigned maximum
	case 2:
		return 1 << (bits - 1) // signed minimum
	case 3:
		return 1<<(bits-1) - 1 // signed maximum
	case 4:
		return rng.Uint64N(200)
	case 5:
		return -rng.Uint64N(200)
	}
	return rng.Uint64()
}

func randFloat64(rng *rand.Rand) float64 {
	switch rng.IntN(16) {
	case 0:
		return math.NaN()
	case 1:
		return math.Float64frombits(0xfff0_0000_dead_beef) // NaN, sign and payload set
	case 2:
		return math.Inf(1)
	case 3:
		return math.Inf(-1)
	case 4:
		return math.Copysign(0, -1)
	case 5:
		return 0
	case 6:
		return math.SmallestNonzeroFloat64
	case 7:
		return -math.MaxFloat64
	case 8, 9, 10:
		return math.Float64frombits(rng.Uint64())
	}
	return (rng.Float64() - 0.5) * 1e6
}

func randFloat32(rng *rand.Rand) float32 {
	switch rng.IntN(16) {
	case 0:
		return float32(math.NaN())
	case 1:
		return math.Float32frombits(0xffc0_beef) // NaN, sign and payload set
	case 2:
		return float32(math.Inf(1))
	case 3:
		return float32(math.Inf(-1))
	case 4:
		return math.Float32frombits(1 << 31) // -0
	case 5:
		return 0
	case 6:
		return math.SmallestNonzeroFloat32
	case 7:
		return math.MaxFloat32
	case 8, 9, 10:
		return math.Float32frombits(rng.Uint32())
	}
	return float32((rng.Float64() - 0.5) * 1e4)
}

// randQuant returns a value whose step count stays below maxSteps in
// magnitude, mostly game-sized, sometimes near the bound.
func randQuant(rng *rand.Rand, step float64, maxSteps float64) float64 {
	switch rng.IntN(8) {
	case 0:
		return 0
	case 1:
		return (rng.Float64()*2 - 1) * maxSteps * step
	case 2:
		return float64(rng.Int64N(2001)-1000) * step // exactly on a step
	case 3:
		return (float64(rng.Int64N(2001)-1000) + 0.5) * step // on a tie
	}
	return (rng.Float64() - 0.5) * 2e4 * step
}

// randBytes returns random contents of random length; for []byte
// (nilOK) it returns nil, empty and non-empty slices.
func randBytes(rng *rand.Rand, nilOK bool) []byte {
	switch rng.IntN(6) {
	case 0:
		if nilOK {
			return nil
		}
		return []byte{}
	case 1:
		return []byte{}
	}
	b := make([]byte, rng.IntN(40))
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// diffValues describes the first difference between synced leaves of want
// and got as "path: got …, want …", or returns "". Floats compare by bit
// pattern; with tolerance, quantised floats may differ by step/2 plus
// rounding. A []byte in got must be nil when empty (the decoder's
// contract). Paths are built only on failure: this runs in hot loops.
func diffValues(want, got reflect.Value, step float64, tolerance bool) string {
	switch want.Kind() {
	case reflect.Float32, reflect.Float64:
		w, g := want.Float(), got.Float()
		if step != 0 && tolerance {
			ulp := 0x1p-52
			if want.Kind() == reflect.Float32 {
				ulp = 0x1p-23
			}
			bound := step/2*(1+1e-9) + 2*ulp*(math.Abs(w)+step)
			if !(math.Abs(g-w) <= bound) {
				return fmt.Sprintf(": got %v, want %v within %v", g, w, bound)
			}
			return ""
		}
		if want.Kind() == reflect.Float32 {
			if math.Float32bits(float32(w)) != math.Float32bits(float32(g)) {
				return fmt.Sprintf(": got %v (%#x), want %v (%#x)", float32(g), math.Float32bits(float32(g)), float32(w), math.Float32bits(float32(w)))
			}
			return ""
		}
		if math.Float64bits(w) != math.Float64bits(g) {
			return fmt.Sprintf(": got %v (%#x), want %v (%#x)", g, math.Float64bits(g), w, math.Float64bits(w))
		}
	case reflect.Slice:
		w, g := want.Bytes(), got.Bytes()
		if !bytes.Equal(w, g) {
			return fmt.Sprintf(": got %x, want %x", g, w)
		}
		if len(g) == 0 && g != nil {
			return ": got an empty non-nil slice, want nil"
		}
	case reflect.Array:
		for i := 0; i < want.Len(); i++ {
			if d := diffValues(want.Index(i), got.Index(i), step, tolerance); d != "" {
				return fmt.Sprintf("[%d]%s", i, d)
			}
		}
	case reflect.Struct:
		for i := 0; i < want.NumField(); i++ {
			if sf := want.Type().Field(i); synced(sf) {
				if d := diffValues(want.Field(i), got.Field(i), stepOf(sf), tolerance); d != "" {
					return "." + sf.Name + d
				}
			}
		}
	case reflect.Bool:
		if want.Bool() != got.Bool() {
			return fmt.Sprintf(": got %v, want %v", got, want)
		}
	case reflect.String:
		if want.String() != got.String() {
			return fmt.Sprintf(": got %q, want %q", got, want)
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		if want.Int() != got.Int() {
			return fmt.Sprintf(": got %v, want %v", got, want)
		}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if want.Uint() != got.Uint() {
			return fmt.Sprintf(": got %v, want %v", got, want)
		}
	default:
		panic("diffValues: unexpected kind " + want.Kind().String())
	}
	return ""
}

// assertSame fails unless got equals want exactly (floats by bits).
func assertSame[T any](t testing.TB, want, got *T, format string, args ...any) {
	t.Helper()
	if d := diffValues(reflect.ValueOf(want).Elem(), reflect.ValueOf(got).Elem(), 0, false); d != "" {
		t.Fatalf("%s: %s", fmt.Sprintf(format, args...), d)
	}
}

// register registers ct in r and returns its codec.
func register[T any](r *components.Registry, name string, ct *donburi.ComponentType[T], opts *components.Options) *codec.Codec {
	return codec.Of(components.Register(r, name, ct, opts).Component())
}
