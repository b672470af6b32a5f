package codec_test

import (
	"bytes"
	"errors"
	"math"
	"reflect"
	"strconv"
	"testing"

	"github.com/yohamta/donburi"

	"github.com/ebisync/ebisync/components"
	"github.com/ebisync/ebisync/internal/codec"
	"github.com/ebisync/ebisync/internal/testutil"
	"github.com/ebisync/ebisync/internal/wire"
)

// decodeFresh decodes a full encoding into a zero value, as a client does
// on first sight of a component.
func decodeFresh[T any](t testing.TB, c *codec.Codec, enc []byte) T {
	t.Helper()
	var v T
	n, err := c.DecodeFull(enc, ptr(&v))
	assert(t, err == nil, "DecodeFull: %v", err)
	assert(t, n == len(enc), "DecodeFull consumed %d of %d bytes", n, len(enc))
	return v
}

// fullRoundTrip is what the client holds after the server sends v in full.
func fullRoundTrip[T any](t testing.TB, c *codec.Codec, v *T) T {
	t.Helper()
	enc := c.AppendFull(nil, ptr(v))
	n, err := c.FullLen(enc)
	assert(t, err == nil && n == len(enc), "FullLen = %d, %v; want %d", n, err, len(enc))
	return decodeFresh[T](t, c, enc)
}

func TestFullRoundTripAllKinds(t *testing.T) {
	c := registerAllKinds(donburi.NewComponentType[allKinds]())
	rng := newRand(t)
	for i := range iterations(20000) {
		var v allKinds
		fillRandom(rng, reflect.ValueOf(&v).Elem(), 0)
		got := fullRoundTrip(t, c, &v)
		// Quantised fields within step/2, the rest bit for bit.
		if d := diffValues(reflect.ValueOf(v), reflect.ValueOf(got), 0, true); d != "" {
			t.Fatalf("iteration %d: %s", i, d)
		}
		// The receiver's value encodes to the same bytes and is stable.
		enc := c.AppendFull(nil, ptr(&got))
		assert(t, bytes.Equal(enc, c.AppendFull(nil, ptr(&v))), "iteration %d: re-encoding the decoded value changed the bytes", i)
		again := decodeFresh[allKinds](t, c, enc)
		assertSame(t, &got, &again, "iteration %d: second round trip", i)
		assert(t, c.Equal(ptr(&v), ptr(&got)) && c.Diff(ptr(&v), ptr(&got)) == 0, "iteration %d: decoded value not Equal to the original", i)
	}
}

func TestFullRoundTripSpecialFloats(t *testing.T) {
	type floats struct {
		F32 [8]float32
		F64 [8]float64
	}
	c := register(components.NewRegistry(), "test.floats", donburi.NewComponentType[floats](), nil)
	v := floats{
		F32: [8]float32{float32(math.NaN()), math.Float32frombits(0x7f80_0001), math.Float32frombits(0xffc0_1234), float32(math.Inf(1)), float32(math.Inf(-1)), math.Float32frombits(1 << 31), math.SmallestNonzeroFloat32, -math.MaxFloat32},
		F64: [8]float64{math.NaN(), math.Float64frombits(0x7ff0_0000_0000_0001), math.Float64frombits(0xfff8_dead_beef_0000), math.Inf(1), math.Inf(-1), math.Copysign(0, -1), math.SmallestNonzeroFloat64, math.MaxFloat64},
	}
	got := fullRoundTrip(t, c, &v)
	assertSame(t, &v, &got, "special floats")

	// -0 and +0 encode differently, so a sign change is a change.
	a, b := floats{}, floats{}
	b.F64[0] = math.Copysign(0, -1)
	assert(t, c.Diff(ptr(&a), ptr(&b)) != 0, "Diff misses +0 -> -0")
}

func TestQuantisedSpecialValues(t *testing.T) {
	type q struct {
		F64 float64 `ebisync:"q=0.01"`
		F32 float32 `ebisync:"q=0.01"`
	}
	c := register(components.NewRegistry(), "test.qspecial", donburi.NewComponentType[q](), nil)
	limit := float64(1<<51) * 0.01
	for _, tc := range []struct {
		in, want float64
	}{
		{math.NaN(), 0},
		{math.Inf(1), limit},
		{math.Inf(-1), -limit},
		{1e300, limit},
		{math.Copysign(0, -1), 0},
		{0.004999, 0},
		{-2.5, -2.5},
		{12.345678, 12.35},
	} {
		v := q{F64: tc.in, F32: float32(tc.in)}
		got := fullRoundTrip(t, c, &v)
		assert(t, got.F64 == tc.want && !math.Signbit(got.F64) == !math.Signbit(tc.want), "q(%v) decoded as %v, want %v", tc.in, got.F64, tc.want)
		assert(t, got.F32 == float32(tc.want), "float32 q(%v) decoded as %v, want %v", tc.in, got.F32, float32(tc.want))
	}
}

// TestQuantisedExactRange checks the package doc's bound: within it, the
// receiver's value maps back to the step it was sent as, which deltas rely
// on.
func TestQuantisedExactRange(t *testing.T) {
	type q struct {
		F64 float64 `ebisync:"q=0.01"`
		G64 float64 `ebisync:"q=0.001"`
		H64 float64 `ebisync:"q=0.3"`
		F32 float32 `ebisync:"q=0.01"`
		G32 float32 `ebisync:"q=0.001"`
		H32 float32 `ebisync:"q=0.3"`
	}
	c := register(components.NewRegistry(), "test.qrange", donburi.NewComponentType[q](), nil)
	rng := newRand(t)
	for i := range iterations(50000) {
		// Encode step counts directly, as the sender would for any value.
		var steps [6]int64
		for j := range steps {
			bound := int64(1 << 51)
			if j >= 3 {
				bound = 1 << 22
			}
			switch rng.IntN(4) {
			case 0:
				steps[j] = bound - rng.Int64N(1000)
			case 1:
				steps[j] = -(bound - rng.Int64N(1000))
			default:
				steps[j] = rng.Int64N(2*bound-1) - (bound - 1)
			}
		}
		var enc []byte
		for _, s := range steps {
			enc = appendVarint(enc, s)
		}
		got := decodeFresh[q](t, c, enc)
		again := c.AppendFull(nil, ptr(&got))
		assert(t, bytes.Equal(enc, again), "iteration %d: steps %v decoded as %+v re-encode as %x, want %x", i, steps, got, again, enc)
	}

	// Past 2^22 steps a float32 loses precision, but any step count the
	// decoder accepts gives a value that is stable from the first
	// re-encoding on.
	for i := range iterations(50000) {
		var enc []byte
		for range 3 {
			enc = appendVarint(enc, 0)
		}
		for range 3 {
			enc = appendVarint(enc, rng.Int64N(1<<52+1)-1<<51)
		}
		got := decodeFresh[q](t, c, enc)
		first := c.AppendFull(nil, ptr(&got))
		again := decodeFresh[q](t, c, first)
		second := c.AppendFull(nil, ptr(&again))
		assert(t, bytes.Equal(first, second) && c.Equal(ptr(&got), ptr(&again)), "iteration %d: %x decodes to %+v, re-encodes to %x then %x", i, enc, got, first, second)
	}
}

func TestDeltaAgainstRandomBaseline(t *testing.T) {
	c := registerAllKinds(donburi.NewComponentType[allKinds]())
	rng := newRand(t)
	var delta []byte
	for i := range iterations(20000) {
		var old, cur allKinds
		fillRandom(rng, reflect.ValueOf(&old).Elem(), 0)
		fillRandom(rng, reflect.ValueOf(&cur).Elem(), 0)
		if i%4 != 0 {
			// Most updates change a few fields.
			mixLeaves(rng, reflect.ValueOf(&cur).Elem(), reflect.ValueOf(&old).Elem(), rng.Float64())
		}
		clientBase := fullRoundTrip(t, c, &old)
		want := fullRoundTrip(t, c, &cur)

		mask := c.Diff(ptr(&old), ptr(&cur))
		delta = c.AppendDelta(delta[:0], ptr(&old), ptr(&cur), mask)
		n, err := c.DeltaLen(delta)
		assert(t, err == nil && n == len(delta), "iteration %d: DeltaLen = %d, %v; want %d", i, n, err, len(delta))

		got := clientBase
		n, err = c.DecodeDelta(delta, ptr(&got))
		assert(t, err == nil && n == len(delta), "iteration %d: DecodeDelta = %d, %v; want %d", i, n, err, len(delta))
		assertSame(t, &want, &got, "iteration %d: mask %#x", i, mask)

		// The mask names exactly the fields whose encoding differs.
		assert(t, (mask == 0) == c.Equal(ptr(&old), ptr(&cur)), "iteration %d: mask %#x but Equal %v", i, mask, c.Equal(ptr(&old), ptr(&cur)))
		assert(t, c.Diff(ptr(&clientBase), ptr(&want)) == mask, "iteration %d: Diff of the received values %#x, of the sent values %#x", i, c.Diff(ptr(&clientBase), ptr(&want)), mask)
	}
}

func TestDeltaChainsDoNotDrift(t *testing.T) {
	c := registerAllKinds(donburi.NewComponentType[allKinds]())
	rng := newRand(t)
	for chain := range iterations(300) {
		var server allKinds
		fillRandom(rng, reflect.ValueOf(&server).Elem(), 0)
		client := fullRoundTrip(t, c, &server)
		var delta []byte
		for step := range 100 {
			prev := server
			walk(rng, reflect.ValueOf(&server).Elem(), 0)
			delta = c.AppendDelta(delta[:0], ptr(&prev), ptr(&server), c.Diff(ptr(&prev), ptr(&server)))
			n, err := c.DecodeDelta(delta, ptr(&client))
			assert(t, err == nil && n == len(delta), "chain %d step %d: DecodeDelta = %d, %v", chain, step, n, err)
			want := fullRoundTrip(t, c, &server)
			assertSame(t, &want, &client, "chain %d step %d", chain, step)
		}
	}
}

// TestPositionChainSubStepMotion moves a position by less than a step each
// tick: deltas carry a step only when the value crosses into another one,
// and the client ends where a full update would put it.
func TestPositionChainSubStepMotion(t *testing.T) {
	r := components.NewRegistry()
	components.RegisterStandard(r)
	c, _ := testutil.Codec(r.Of(components.Position))
	server := components.PositionData{X: 1234.56, Y: -77.7}
	client := fullRoundTrip(t, c, &server)
	sent := 0
	for range 10000 {
		prev := server
		server.X += 0.0031
		server.Y -= 0.0007
		mask := c.Diff(ptr(&prev), ptr(&server))
		if mask == 0 {
			continue
		}
		sent++
		delta := c.AppendDelta(nil, ptr(&prev), ptr(&server), mask)
		_, err := c.DecodeDelta(delta, ptr(&client))
		assert(t, err == nil, "DecodeDelta: %v", err)
	}
	want := fullRoundTrip(t, c, &server)
	assert(t, client == want, "client %+v, full update %+v", client, want)
	assert(t, math.Abs(client.X-server.X) <= 0.005+1e-9 && math.Abs(client.Y-server.Y) <= 0.005+1e-9, "client %+v, server %+v", client, server)
	assert(t, sent > 3000 && sent < 10000, "%d deltas for 10000 sub-step moves", sent)
}

func TestDeltaIntWrapAround(t *testing.T) {
	type ints struct {
		I8  int8
		I16 int16
		I32 int32
		I64 int64
		I   int
		U8  uint8
		U16 uint16
		U32 uint32
		U64 uint64
		U   uint
	}
	c := register(components.NewRegistry(), "test.ints", donburi.NewComponentType[ints](), nil)
	for _, tc := range []struct {
		name     string
		old, cur ints
	}{
		{"int8 -128 to 127", ints{I8: -128}, ints{I8: 127}},
		{"int8 127 to -128", ints{I8: 127}, ints{I8: -128}},
		{"int16 min to max", ints{I16: math.MinInt16}, ints{I16: math.MaxInt16}},
		{"int32 max to min", ints{I32: math.MaxInt32}, ints{I32: math.MinInt32}},
		{"int64 min to max", ints{I64: math.MinInt64}, ints{I64: math.MaxInt64}},
		{"int64 max to min", ints{I64: math.MaxInt64}, ints{I64: math.MinInt64}},
		{"int min to max", ints{I: math.MinInt}, ints{I: math.MaxInt}},
		{"uint8 0 to 255", ints{U8: 0}, ints{U8: 255}},
		{"uint8 255 to 0", ints{U8: 255}, ints{U8: 0}},
		{"uint16 0 to max", ints{U16: 0}, ints{U16: math.MaxUint16}},
		{"uint32 max to 0", ints{U32: math.MaxUint32}, ints{U32: 0}},
		{"uint64 0 to max", ints{U64: 0}, ints{U64: math.MaxUint64}},
		{"uint64 max to 0", ints{U64: math.MaxUint64}, ints{U64: 0}},
		{"uint64 half", ints{U64: 1 << 63}, ints{U64: 0}},
		{"uint 0 to max", ints{U: 0}, ints{U: math.MaxUint}},
		{"all at once", ints{math.MinInt8, math.MinInt16, math.MinInt32, math.MinInt64, math.MinInt, 0, 0, 0, 0, 0},
			ints{math.MaxInt8, math.MaxInt16, math.MaxInt32, math.MaxInt64, math.MaxInt, math.MaxUint8, math.MaxUint16, math.MaxUint32, math.MaxUint64, math.MaxUint}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mask := c.Diff(ptr(&tc.old), ptr(&tc.cur))
			delta := c.AppendDelta(nil, ptr(&tc.old), ptr(&tc.cur), mask)
			got := tc.old
			n, err := c.DecodeDelta(delta, ptr(&got))
			assert(t, err == nil && n == len(delta), "DecodeDelta = %d, %v", n, err)
			assert(t, got == tc.cur, "got %+v, want %+v", got, tc.cur)
			native := tc.old.I != tc.cur.I || tc.old.U != tc.cur.U
			if tc.name != "all at once" && tc.name != "uint64 half" && !(native && strconv.IntSize == 32) {
				// A wrap by one costs one byte: the difference is ±1. (int
				// and uint wrap at 64 bits on the wire, so not on 32-bit.)
				assert(t, len(delta) == 2+1, "delta %x: want mask (2 bytes) + 1 byte", delta)
			}
		})
	}
}

// TestBytesNilAndEmpty pins the []byte contract: the encoding does not tell
// nil from empty, both decode to nil, and a decoded slice shares memory
// with neither the input nor the destination's old slice.
func TestBytesNilAndEmpty(t *testing.T) {
	type blob struct{ B []byte }
	c := register(components.NewRegistry(), "test.blob", donburi.NewComponentType[blob](), nil)

	nilEnc := c.AppendFull(nil, ptr(&blob{}))
	emptyEnc := c.AppendFull(nil, ptr(&blob{B: []byte{}}))
	assert(t, bytes.Equal(nilEnc, []byte{0}) && bytes.Equal(emptyEnc, []byte{0}), "nil encodes as %x, empty as %x; want 00", nilEnc, emptyEnc)
	assert(t, c.Equal(ptr(&blob{}), ptr(&blob{B: []byte{}})), "nil and empty are not Equal")

	for _, dst := range []blob{{}, {B: []byte{}}, {B: []byte{1, 2, 3}}} {
		_, err := c.DecodeFull(emptyEnc, ptr(&dst))
		assert(t, err == nil && dst.B == nil, "empty decoded as %#v, %v; want nil", dst.B, err)
	}

	// The decoded slice does not alias the input.
	enc := c.AppendFull(nil, ptr(&blob{B: []byte("abc")}))
	var got blob
	_, err := c.DecodeFull(enc, ptr(&got))
	assert(t, err == nil && string(got.B) == "abc", "decoded %q, %v", got.B, err)
	enc[1] = 'X'
	assert(t, string(got.B) == "abc", "decoded value aliases the input: %q", got.B)

	// Decoding never writes into the destination's old backing array, which
	// a shallow copy (a plain Go assignment) may share.
	shared := blob{B: make([]byte, 3, 16)}
	copy(shared.B, "old")
	dst := shared
	_, err = c.DecodeFull(c.AppendFull(nil, ptr(&blob{B: []byte("new")})), ptr(&dst))
	assert(t, err == nil && string(dst.B) == "new", "decoded %q, %v", dst.B, err)
	assert(t, string(shared.B) == "old", "decoding overwrote a shared backing array: %q", shared.B)
	delta := c.AppendDelta(nil, ptr(&blob{B: []byte("new")}), ptr(&blob{B: []byte("NEW")}), 1)
	dst2 := dst
	_, err = c.DecodeDelta(delta, ptr(&dst2))
	assert(t, err == nil && string(dst2.B) == "NEW" && string(dst.B) == "new", "delta: dst %q, shared %q, %v", dst2.B, dst.B, err)
}

func TestAppendDeltaIgnoresMaskBitsPastFields(t *testing.T) {
	r := components.NewRegistry()
	components.RegisterStandard(r)
	c, _ := testutil.Codec(r.Of(components.Position))
	old, cur := components.PositionData{X: 1}, components.PositionData{X: 2, Y: 3}
	delta := c.AppendDelta(nil, ptr(&old), ptr(&cur), ^uint64(0))
	got := old
	_, err := c.DecodeDelta(delta, ptr(&got))
	assert(t, err == nil && got == cur, "all-ones mask: %x decoded as %+v, %v", delta, got, err)
	assert(t, delta[0] == 0b11, "mask byte %#x, want 0b11", delta[0])
}

func TestSixtyFourFields(t *testing.T) {
	type eight struct{ A, B, C, D, E, F, G, H uint8 }
	type sixtyFour struct{ P0, P1, P2, P3, P4, P5, P6, P7 eight }
	c := register(components.NewRegistry(), "test.64", donburi.NewComponentType[sixtyFour](), nil)
	assert(t, c.NumFields() == 64, "NumFields %d", c.NumFields())
	var old, cur sixtyFour
	cur.P7.H = 200 // field 63: the mask's top bit
	cur.P0.A = 1
	mask := c.Diff(ptr(&old), ptr(&cur))
	assert(t, mask == 1<<63|1, "mask %#x", mask)
	delta := c.AppendDelta(nil, ptr(&old), ptr(&cur), mask)
	assert(t, len(delta) == 8+1+1, "delta %x: want 8 mask bytes, +1 and -56 (200 wrapped)", delta)
	got := old
	_, err := c.DecodeDelta(delta, ptr(&got))
	assert(t, err == nil && got == cur, "got %+v, %v", got, err)
}

// TestTruncatedInputs checks that every strict prefix of a valid encoding
// is refused by all four decoders, and that a failed decode leaves the
// destination as it was.
func TestTruncatedInputs(t *testing.T) {
	c := registerAllKinds(donburi.NewComponentType[allKinds]())
	rng := newRand(t)
	for i := range iterations(200) {
		var old, cur allKinds
		fillRandom(rng, reflect.ValueOf(&old).Elem(), 0)
		fillRandom(rng, reflect.ValueOf(&cur).Elem(), 0)
		if i%2 == 0 {
			mixLeaves(rng, reflect.ValueOf(&cur).Elem(), reflect.ValueOf(&old).Elem(), 0.7)
		}
		full := c.AppendFull(nil, ptr(&cur))
		delta := c.AppendDelta(nil, ptr(&old), ptr(&cur), c.Diff(ptr(&old), ptr(&cur)))
		base := fullRoundTrip(t, c, &old)
		for n := range len(full) {
			prefix := full[:n:n]
			_, err := c.FullLen(prefix)
			assert(t, errors.Is(err, wire.ErrTruncated), "FullLen of %d/%d bytes: %v", n, len(full), err)
			dst := base
			m, err := c.DecodeFull(prefix, ptr(&dst))
			assert(t, err != nil && m == 0, "DecodeFull of %d/%d bytes: %d, %v", n, len(full), m, err)
			assertSame(t, &base, &dst, "DecodeFull of %d/%d bytes changed the destination", n, len(full))
		}
		for n := range len(delta) {
			prefix := delta[:n:n]
			_, err := c.DeltaLen(prefix)
			assert(t, errors.Is(err, wire.ErrTruncated), "DeltaLen of %d/%d bytes: %v", n, len(delta), err)
			dst := base
			m, err := c.DecodeDelta(prefix, ptr(&dst))
			assert(t, err != nil && m == 0, "DecodeDelta of %d/%d bytes: %d, %v", n, len(delta), m, err)
			assertSame(t, &base, &dst, "DecodeDelta of %d/%d bytes changed the destination", n, len(delta))
		}
	}
}

func TestMalformedInputs(t *testing.T) {
	type small struct {
		U8  uint8
		I8  int8
		Q   float32 `ebisync:"q=0.5"`
		On  bool
		S   string
		Arr [2]uint16
	}
	c := register(components.NewRegistry(), "test.small", donburi.NewComponentType[small](), nil)
	valid := small{U8: 7, I8: -3, Q: 1.5, On: true, S: "hi", Arr: [2]uint16{1, 2}}
	good := c.AppendFull(nil, ptr(&valid))
	tooLong := appendUvarint(nil, wire.MaxValueLen+1)
	for _, tc := range []struct {
		name  string
		full  bool
		input []byte
		want  error
		field string
	}{
		{"uint8 300", true, cat(appendUvarint(nil, 300), good[1:]), wire.ErrOverflow, "U8"},
		{"int8 -129", true, cat(good[:1], appendVarint(nil, -129), good[2:]), wire.ErrOverflow, "I8"},
		{"uint16 in array 70000", true, cat(good[:len(good)-2], appendUvarint(nil, 70000), []byte{2}), wire.ErrOverflow, "Arr[]"},
		{"steps past 2^51", true, cat(good[:2], appendVarint(nil, 1<<51+1), good[3:]), wire.ErrOverflow, "Q"},
		{"steps past -2^51", true, cat(good[:2], appendVarint(nil, -1<<51-1), good[3:]), wire.ErrOverflow, "Q"},
		{"bool byte 2", true, cat(good[:3], []byte{2}, good[4:]), wire.ErrMalformed, ""},
		{"string past the limit", true, cat(good[:4], tooLong), wire.ErrTooLarge, "S"},
		{"string past the input", true, cat(good[:4], []byte{50, 'a'}), wire.ErrTruncated, "S"},
		{"varint of 11 bytes", true, bytes.Repeat([]byte{0xff}, 11), wire.ErrOverflow, ""},
		{"mask bit past the fields", false, []byte{0b1000_0000}, wire.ErrMalformed, ""},
		{"mask bit 6", false, []byte{0b0100_0000}, wire.ErrMalformed, ""},
		{"uint8 delta 200", false, cat([]byte{0b1}, appendVarint(nil, 200)), wire.ErrOverflow, "U8"},
		{"int8 delta -129", false, cat([]byte{0b10}, appendVarint(nil, -129)), wire.ErrOverflow, "I8"},
		{"step delta past 2^52", false, cat([]byte{0b100}, appendVarint(nil, 1<<52+1)), wire.ErrOverflow, "Q"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dst := valid
			var err1, err2 error
			if tc.full {
				_, err1 = c.FullLen(tc.input)
				_, err2 = c.DecodeFull(tc.input, ptr(&dst))
			} else {
				_, err1 = c.DeltaLen(tc.input)
				_, err2 = c.DecodeDelta(tc.input, ptr(&dst))
			}
			for _, err := range []error{err1, err2} {
				assert(t, errors.Is(err, tc.want), "error %v, want %v", err, tc.want)
				if tc.field != "" {
					assert(t, bytes.Contains([]byte(err.Error()), []byte("field "+tc.field)), "error %q does not name field %s", err, tc.field)
				}
			}
			assert(t, dst == valid, "destination changed to %+v", dst)
		})
	}

	// A 9-field component has a 2-byte mask; bits 9 to 15 are refused.
	type nine struct{ A, B, C, D, E, F, G, H, I bool }
	c9 := register(components.NewRegistry(), "test.nine", donburi.NewComponentType[nine](), nil)
	_, err := c9.DeltaLen([]byte{0xff, 0x01})
	assert(t, err == nil, "all 9 bits: %v", err)
	for bit := 9; bit < 16; bit++ {
		mask := uint16(1) << bit
		_, err := c9.DeltaLen([]byte{byte(mask), byte(mask >> 8)})
		assert(t, errors.Is(err, wire.ErrMalformed), "mask bit %d: %v", bit, err)
	}
}

func TestDecodeErrorsNameComponent(t *testing.T) {
	r := components.NewRegistry()
	components.RegisterStandard(r)
	c, _ := testutil.Codec(r.Of(components.Health))
	_, err := c.DecodeFull(nil, ptr(&components.HealthData{}))
	assert(t, err != nil && bytes.Contains([]byte(err.Error()), []byte("failed to decode ebisync.health")), "error %v", err)
	_, err = c.DecodeDelta(nil, ptr(&components.HealthData{}))
	assert(t, err != nil && bytes.Contains([]byte(err.Error()), []byte("failed to decode ebisync.health delta")), "error %v", err)
}

func appendVarint(dst []byte, v int64) []byte {
	return appendUvarint(dst, uint64(v<<1)^uint64(v>>63))
}

func appendUvarint(dst []byte, v uint64) []byte {
	for v >= 0x80 {
		dst = append(dst, byte(v)|0x80)
		v >>= 7
	}
	return append(dst, byte(v))
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func TestScalarRoundTrip(t *testing.T) {
	type scalar int16
	c := register(components.NewRegistry(), "score", donburi.NewComponentType[scalar](), nil)
	v := scalar(-300)
	got := fullRoundTrip(t, c, &v)
	assert(t, got == v, "scalar round trip %d", got)
}
