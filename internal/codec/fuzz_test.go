package codec_test

import (
	"bytes"
	"math"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/yohamta/donburi"
)

// fuzzSeeds returns valid encodings of allKinds values to seed the corpus:
// full encodings, and deltas against fuzzBaseline.
func fuzzSeeds(t testing.TB, full bool) [][]byte {
	c := registerAllKinds(donburi.NewComponentType[allKinds]())
	rng := rand.New(rand.NewPCG(1, 2))
	base := fuzzBaseline()
	var seeds [][]byte
	for i := range 24 {
		var v allKinds
		fillRandom(rng, reflect.ValueOf(&v).Elem(), 0)
		if full {
			seeds = append(seeds, c.AppendFull(nil, ptr(&v)))
			continue
		}
		if i%2 == 0 {
			mixLeaves(rng, reflect.ValueOf(&v).Elem(), reflect.ValueOf(&base).Elem(), 0.8)
		}
		seeds = append(seeds, c.AppendDelta(nil, ptr(&base), ptr(&v), c.Diff(ptr(&base), ptr(&v))))
	}
	var zero allKinds
	if full {
		seeds = append(seeds, c.AppendFull(nil, ptr(&zero)))
	} else {
		seeds = append(seeds, c.AppendDelta(nil, ptr(&base), ptr(&base), 0))
		seeds = append(seeds, c.AppendDelta(nil, ptr(&base), ptr(&zero), c.Diff(ptr(&base), ptr(&zero))))
	}
	return seeds
}

// fuzzBaseline is the value deltas apply to: as a client holds it, after a
// full decode, with extreme integers and quantised floats near their limits.
func fuzzBaseline() allKinds {
	v := allKinds{
		Bool: true, I8: math.MinInt8, I16: math.MaxInt16, I32: -1, I64: math.MinInt64, I: 42,
		U8: math.MaxUint8, U16: 1, U32: math.MaxUint32, U64: math.MaxUint64, U: 7,
		F32: float32(math.NaN()), F64: math.Copysign(0, -1), QF32: 41943.03, QF64: -1e12,
		S: "baseline", B: []byte("bytes"), Arr: [3]int16{-1, 0, 1}, QArr: [2]float64{0.25, -1e300},
		Grid: [2][2]uint8{{1, 2}, {3, 4}}, Bufs: [2][]byte{nil, []byte("x")},
		Skipped: 99,
	}
	v.Pts[1] = point{X: float32(math.Inf(-1)), Y: 3.5, N: -128}
	v.Nest.Flag, v.Nest.Name, v.Nest.Deep.V, v.Nest.Deep.Q = true, "nest", 5, 0.3
	return v
}

func FuzzDecodeFull(f *testing.F) {
	for _, s := range fuzzSeeds(f, true) {
		f.Add(s)
	}
	c := registerAllKinds(donburi.NewComponentType[allKinds]())
	canary := fuzzBaseline()
	f.Fuzz(func(t *testing.T, data []byte) {
		n, lenErr := c.FullLen(data)
		v := canary
		m, err := c.DecodeFull(data, ptr(&v))
		assert(t, (lenErr == nil) == (err == nil), "FullLen error %v, DecodeFull error %v", lenErr, err)
		if err != nil {
			assert(t, m == 0, "DecodeFull consumed %d bytes and failed", m)
			assertSame(t, &canary, &v, "failed DecodeFull changed its destination")
			return
		}
		assert(t, n == m && m <= len(data), "FullLen %d, DecodeFull consumed %d of %d", n, m, len(data))
		assert(t, v.Skipped == canary.Skipped, "DecodeFull wrote a skipped field")
		k, err := c.FullLen(data[:n])
		assert(t, err == nil && k == n, "FullLen of its own prefix = %d, %v; want %d", k, err, n)

		// Re-encoding the decoded value and decoding again gives an equal
		// value, and from there on the encoding is stable.
		enc := c.AppendFull(nil, ptr(&v))
		k, err = c.FullLen(enc)
		assert(t, err == nil && k == len(enc), "FullLen of the re-encoding = %d, %v; want %d", k, err, len(enc))
		var w allKinds
		k, err = c.DecodeFull(enc, ptr(&w))
		assert(t, err == nil && k == len(enc), "DecodeFull of the re-encoding = %d, %v", k, err)
		assert(t, c.Equal(ptr(&v), ptr(&w)), "re-decoded value not Equal")
		assert(t, bytes.Equal(c.AppendFull(nil, ptr(&w)), enc), "encoding not stable after one round trip")
	})
}

func FuzzDecodeDelta(f *testing.F) {
	for _, s := range fuzzSeeds(f, false) {
		f.Add(s)
	}
	c := registerAllKinds(donburi.NewComponentType[allKinds]())
	orig := fuzzBaseline()
	base := fullRoundTrip(f, c, &orig) // what the client holds
	f.Fuzz(func(t *testing.T, data []byte) {
		n, lenErr := c.DeltaLen(data)
		var v allKinds
		c.Copy(ptr(&v), ptr(&base))
		m, err := c.DecodeDelta(data, ptr(&v))
		assert(t, (lenErr == nil) == (err == nil), "DeltaLen error %v, DecodeDelta error %v", lenErr, err)
		if err != nil {
			assert(t, m == 0, "DecodeDelta consumed %d bytes and failed", m)
			assertSame(t, &base, &v, "failed DecodeDelta changed its baseline")
			return
		}
		assert(t, n == m && m <= len(data), "DeltaLen %d, DecodeDelta consumed %d of %d", n, m, len(data))
		k, err := c.DeltaLen(data[:n])
		assert(t, err == nil && k == n, "DeltaLen of its own prefix = %d, %v; want %d", k, err, n)

		// The server's own delta from the baseline to the decoded value
		// reproduces it.
		mask := c.Diff(ptr(&base), ptr(&v))
		delta := c.AppendDelta(nil, ptr(&base), ptr(&v), mask)
		k, err = c.DeltaLen(delta)
		assert(t, err == nil && k == len(delta), "DeltaLen of the re-encoding = %d, %v; want %d", k, err, len(delta))
		var w allKinds
		c.Copy(ptr(&w), ptr(&base))
		k, err = c.DecodeDelta(delta, ptr(&w))
		assert(t, err == nil && k == len(delta), "DecodeDelta of the re-encoding = %d, %v", k, err)
		assert(t, c.Equal(ptr(&v), ptr(&w)), "re-decoded delta not Equal (mask %#x)", mask)

		// And the decoded value survives a full round trip.
		enc := c.AppendFull(nil, ptr(&v))
		var x allKinds
		k, err = c.DecodeFull(enc, ptr(&x))
		assert(t, err == nil && k == len(enc) && c.Equal(ptr(&v), ptr(&x)), "full round trip of the decoded value: %d, %v", k, err)
	})
}
