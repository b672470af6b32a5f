package codec_test

import (
	"testing"

	"github.com/ebisync/ebisync/components"
	"github.com/ebisync/ebisync/internal/codec"
	"github.com/ebisync/ebisync/internal/testutil"
)

// A typical tick of movement at a typical world coordinate: both axes
// change, by a few dozen to a few hundred steps of 0.01.
var (
	benchOld = components.PositionData{X: 1234.56, Y: 789.01}
	benchNew = components.PositionData{X: 1234.56 + 1.37, Y: 789.01 - 0.84}
)

func positionComponent(tb testing.TB) *codec.Codec {
	tb.Helper()
	r := components.NewRegistry()
	components.RegisterStandard(r)
	c, ok := testutil.Codec(r.Of(components.Position))
	assert(tb, ok, "Position not registered")
	return c
}

// BenchmarkPositionDelta measures what the server does per changed
// Position per tick: Diff against the last sent value, then AppendDelta
// into a reused buffer.
func BenchmarkPositionDelta(b *testing.B) {
	c := positionComponent(b)
	old, cur := benchOld, benchNew
	delta := make([]byte, 0, 64)
	b.ReportAllocs()
	for b.Loop() {
		delta = c.AppendDelta(delta[:0], ptr(&old), ptr(&cur), c.Diff(ptr(&old), ptr(&cur)))
	}
	assert(b, len(delta) <= 6, "delta of %d bytes, want at most 6", len(delta))
	b.ReportMetric(float64(len(delta)), "B/delta")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/encode")
}

func BenchmarkDiff(b *testing.B) {
	c := positionComponent(b)
	old, cur := benchOld, benchNew
	var mask uint64
	b.ReportAllocs()
	for b.Loop() {
		mask = c.Diff(ptr(&old), ptr(&cur))
	}
	assert(b, mask == 0b11, "mask %#x", mask)
}

func BenchmarkDecodeDelta(b *testing.B) {
	c := positionComponent(b)
	old, cur := benchOld, benchNew
	delta := c.AppendDelta(nil, ptr(&old), ptr(&cur), c.Diff(ptr(&old), ptr(&cur)))
	base := fullRoundTrip(b, c, &old)
	var v components.PositionData
	b.ReportAllocs()
	for b.Loop() {
		v = base
		if _, err := c.DecodeDelta(delta, ptr(&v)); err != nil {
			b.Fatal(err)
		}
	}
	assert(b, v == fullRoundTrip(b, c, &cur), "decoded %+v", v)
}

func TestPositionDeltaSize(t *testing.T) {
	c := positionComponent(t)
	old, cur := benchOld, benchNew
	delta := c.AppendDelta(nil, ptr(&old), ptr(&cur), c.Diff(ptr(&old), ptr(&cur)))
	// Mask 0b11, then zigzag(+137) and zigzag(-84): 2 bytes each.
	assert(t, string(delta) == "\x03\x92\x02\xa7\x01", "delta %x", delta)
}

// TestHotPathsDoNotAllocate pins the zero-allocation contract of the
// per-tick paths (the server's change detection and delta encoding, the
// client's decoding of unchanged-size values).
func TestHotPathsDoNotAllocate(t *testing.T) {
	c := positionComponent(t)
	old, cur := benchOld, benchNew
	buf := make([]byte, 0, 64)
	delta := c.AppendDelta(nil, ptr(&old), ptr(&cur), c.Diff(ptr(&old), ptr(&cur)))
	full := c.AppendFull(nil, ptr(&cur))
	var v components.PositionData

	r := components.NewRegistry()
	components.RegisterStandard(r)
	name, _ := testutil.Codec(r.Of(components.Name))
	nameVal := components.NameData{Value: "player one"}
	nameEnc := name.AppendFull(nil, ptr(&nameVal))

	for _, tc := range []struct {
		name string
		f    func()
	}{
		{"Diff+AppendDelta", func() { buf = c.AppendDelta(buf[:0], ptr(&old), ptr(&cur), c.Diff(ptr(&old), ptr(&cur))) }},
		{"AppendFull", func() { buf = c.AppendFull(buf[:0], ptr(&cur)) }},
		{"DecodeDelta", func() { v = old; _, _ = c.DecodeDelta(delta, ptr(&v)) }},
		{"DecodeFull", func() { _, _ = c.DecodeFull(full, ptr(&v)) }},
		{"DeltaLen", func() { _, _ = c.DeltaLen(delta) }},
		{"Equal", func() { _ = c.Equal(ptr(&old), ptr(&cur)) }},
		{"Lerp", func() { c.Lerp(ptr(&v), ptr(&old), ptr(&cur), 0.5) }},
		{"Copy", func() { c.Copy(ptr(&v), ptr(&cur)) }},
		{"string unchanged", func() { _, _ = name.DecodeFull(nameEnc, ptr(&nameVal)) }},
	} {
		allocs := testing.AllocsPerRun(100, tc.f)
		assert(t, allocs == 0, "%s: %v allocations, want 0", tc.name, allocs)
	}
}
