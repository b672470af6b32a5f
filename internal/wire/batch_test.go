package wire_test

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/ebisync/ebisync/internal/wire"
)

func TestBatchRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	var got wire.Batch
	var c wire.Compressor
	var scratch []byte
	for i := range 500 {
		want := randBatch(rng)
		msg := wire.AppendBatch(nil, want)
		if i%2 == 1 {
			msg = c.Compress(nil, msg)
		}
		var kind wire.Kind
		var body []byte
		var err error
		kind, body, scratch, err = wire.Open(msg, scratch)
		assert(t, err == nil && kind == wire.KindBatch, "Open: %v, %v", kind, err)
		err = wire.DecodeBatch(body, fakeSizer{}, &got)
		assert(t, err == nil, "batch %d: %v\n% x", i, err, msg)
		d := batchDiff(want, &got)
		assert(t, d == "", "batch %d: %s", i, d)
	}
}

// TestMessageCost: an 8-byte message alone in a batch's message section
// costs 12 bytes: the op, the count, the message id and the length.
func TestMessageCost(t *testing.T) {
	empty := len(wire.AppendBatch(nil, &wire.Batch{TickAdvance: 1}))
	one := len(wire.AppendBatch(nil, &wire.Batch{TickAdvance: 1, Messages: []wire.Msg{{ID: 3, Value: make([]byte, 8)}}}))
	assert(t, one-empty == 12, "an 8-byte message costs %d bytes", one-empty)
	two := len(wire.AppendBatch(nil, &wire.Batch{TickAdvance: 1, Messages: []wire.Msg{{ID: 3, Value: make([]byte, 8)}, {ID: 3, Value: make([]byte, 8)}}}))
	assert(t, two-one == 10, "a second 8-byte message costs %d bytes", two-one)
}

func TestBatchEmpty(t *testing.T) {
	msg := wire.AppendBatch(nil, &wire.Batch{TickAdvance: 3})
	assert(t, bytes.Equal(msg, []byte{byte(wire.KindBatch), 3}), "empty batch = % x", msg)
}

// TestBatchSections checks the section layout AppendBatch promises: one
// section per group in sorted input, and correct (if larger) output for any
// order.
func TestBatchSections(t *testing.T) {
	v := []byte{1}
	sorted := &wire.Batch{
		Exits: []wire.Exit{
			{Reason: wire.ReasonOutOfRange, ID: 1}, {Reason: wire.ReasonOutOfRange, ID: 5},
			{Reason: wire.ReasonDespawned, ID: 2},
		},
		Spawns:   []wire.Spawn{{ID: 3}, {ID: 4, Comps: []wire.CompValue{{Comp: 1, Value: v}}}},
		Removals: []wire.Removal{{Comp: 0, ID: 1}, {Comp: 0, ID: 9}, {Comp: 2, ID: 1}},
		Updates: []wire.Update{
			{Comp: 0, ID: 1, Value: v}, {Comp: 0, ID: 2, Value: v},
			{Comp: 0, ID: 1, Delta: true, Value: v}, {Comp: 0, ID: 7, Delta: true, Value: v},
			{Comp: 3, ID: 1, Delta: true, Value: v},
		},
		Results:  []wire.MutationResult{{Request: 1}, {Request: 2, Status: wire.StatusForbidden, Message: "not yours"}},
		Controls: []wire.ControlReply{{Request: 3, Result: wire.ControlTaken, ID: 4, Holder: 7}},
	}
	ops := countSections(t, wire.AppendBatch(nil, sorted))
	want := map[byte]int{
		wire.OpScopeExit: 2, wire.OpSpawn: 1, wire.OpRemove: 2, wire.OpUpdateFull: 1,
		wire.OpUpdateDelta: 2, wire.OpMutationResult: 1, wire.OpControlResult: 1,
	}
	for op, n := range want {
		assert(t, ops[op] == n, "op %d: %d sections, want %d (all: %v)", op, ops[op], n, ops)
	}

	// The same entries in reverse order still round-trip, in that order.
	unsorted := &wire.Batch{
		Exits:    slices.Clone(sorted.Exits),
		Spawns:   slices.Clone(sorted.Spawns),
		Removals: slices.Clone(sorted.Removals),
		Updates:  slices.Clone(sorted.Updates),
		Results:  sorted.Results,
		Controls: sorted.Controls,
	}
	slices.Reverse(unsorted.Exits)
	slices.Reverse(unsorted.Spawns)
	slices.Reverse(unsorted.Removals)
	slices.Reverse(unsorted.Updates)
	unsorted.Removals = append(unsorted.Removals, unsorted.Removals[0]) // a repeated id
	var got wire.Batch
	msg := wire.AppendBatch(nil, unsorted)
	err := wire.DecodeBatch(msg[1:], fakeSizer{}, &got)
	assert(t, err == nil, "decode unsorted: %v", err)
	d := batchDiff(unsorted, &got)
	assert(t, d == "", "unsorted: %s", d)
	assert(t, countSections(t, msg)[wire.OpRemove] == 4, "removals not split where ids stop ascending")
}

func TestBatchSplitsAtMaxItems(t *testing.T) {
	if testing.Short() {
		t.Skip("encodes MaxItems entries")
	}
	b := &wire.Batch{Removals: make([]wire.Removal, wire.MaxItems+1)}
	for i := range b.Removals {
		b.Removals[i].ID = uint64(i)
	}
	var got wire.Batch
	msg := wire.AppendBatch(nil, b)
	err := wire.DecodeBatch(msg[1:], fakeSizer{}, &got)
	assert(t, err == nil, "decode: %v", err)
	assert(t, len(got.Removals) == wire.MaxItems+1 && got.Removals[wire.MaxItems].ID == wire.MaxItems, "got %d removals", len(got.Removals))
}

func TestBatchAllocs(t *testing.T) {
	b := randBatch(rand.New(rand.NewPCG(13, 14)))
	b.Results = nil // decoding a non-empty message allocates its string
	b.Results = append(b.Results, wire.MutationResult{Request: 1})
	dst := wire.AppendBatch(nil, b)
	var got wire.Batch
	err := wire.DecodeBatch(dst[1:], fakeSizer{}, &got)
	assert(t, err == nil, "decode: %v", err)
	allocs := testing.AllocsPerRun(100, func() {
		dst = wire.AppendBatch(dst[:0], b)
		if err := wire.DecodeBatch(dst[1:], fakeSizer{}, &got); err != nil {
			t.Fatal(err)
		}
	})
	assert(t, allocs == 0, "AppendBatch+DecodeBatch allocated %v times per run", allocs)

	var built wire.Batch
	comps := []wire.CompValue{{Comp: 1, Value: []byte{1}}, {Comp: 2, Value: []byte{1}}}
	build := func() {
		built.Reset()
		for id := range uint64(50) {
			built.AddSpawn(id, 0, comps)
		}
	}
	build()
	allocs = testing.AllocsPerRun(100, build)
	assert(t, allocs == 0, "Reset+AddSpawn allocated %v times per run", allocs)
}

type errSizer struct{}

var errBadValue = errors.New("bad value")

func (errSizer) FullLen(uint64, []byte) (int, error)  { return 0, errBadValue }
func (errSizer) DeltaLen(uint64, []byte) (int, error) { return 0, errBadValue }

type lenSizer int

func (n lenSizer) FullLen(uint64, []byte) (int, error)  { return int(n), nil }
func (n lenSizer) DeltaLen(uint64, []byte) (int, error) { return int(n), nil }

func TestDecodeBatchRejects(t *testing.T) {
	v := []byte{2, 0xaa}
	tests := []struct {
		name  string
		body  []byte
		sizer wire.ValueSizer
		want  error
	}{
		{"empty", nil, fakeSizer{}, wire.ErrTruncated},
		{"unknown op", body(1, byte(0)), fakeSizer{}, wire.ErrMalformed},
		{"unknown op 11", body(1, byte(11)), fakeSizer{}, wire.ErrMalformed},
		{"input ack 0", body(1, wire.OpInputAck, 0), fakeSizer{}, wire.ErrMalformed},
		{"keep repeats an id", body(1, wire.OpKeep, 2, 5, 0), fakeSizer{}, wire.ErrMalformed},
		{"keep count beyond input", body(1, wire.OpKeep, 3, 1), fakeSizer{}, wire.ErrTruncated},
		{"message value past the end", body(1, wire.OpMessage, 1, 0, 5, byte(1)), fakeSizer{}, wire.ErrTruncated},
		{"message id too large", body(1, wire.OpMessage, 1, wire.MaxComponents, 0), fakeSizer{}, wire.ErrTooLarge},
		{"exit reason 0", body(1, wire.OpScopeExit, byte(0), 1, 1), fakeSizer{}, wire.ErrMalformed},
		{"exit reason 5", body(1, wire.OpScopeExit, byte(5), 1, 1), fakeSizer{}, wire.ErrMalformed},
		{"exit count over limit", body(1, wire.OpScopeExit, byte(1), wire.MaxItems+1), fakeSizer{}, wire.ErrTooLarge},
		{"exit count beyond input", body(1, wire.OpScopeExit, byte(1), 3, 1, 1), fakeSizer{}, wire.ErrTruncated},
		{"repeated id", body(1, wire.OpScopeExit, byte(1), 2, 5, 0), fakeSizer{}, wire.ErrMalformed},
		{"first id 0 then repeat", body(1, wire.OpRemove, 0, 2, 0, 0), fakeSizer{}, wire.ErrMalformed},
		{"id over MaxNetID", body(1, wire.OpRemove, 0, 1, uint64(wire.MaxNetID)+1), fakeSizer{}, wire.ErrTooLarge},
		{"id sum over MaxNetID", body(1, wire.OpRemove, 0, 2, uint64(wire.MaxNetID), 1), fakeSizer{}, wire.ErrTooLarge},
		{"id delta overflow", body(1, wire.OpRemove, 0, 2, 5, ^uint64(0)), fakeSizer{}, wire.ErrTooLarge},
		{"remove comp over limit", body(1, wire.OpRemove, wire.MaxComponents, 1, 1), fakeSizer{}, wire.ErrTooLarge},
		{"spawn count beyond input", body(1, wire.OpSpawn, 2, 1, 0, 0), fakeSizer{}, wire.ErrTruncated},
		{"spawn comps over limit", body(1, wire.OpSpawn, 1, 1, 0, wire.MaxComponents+1), fakeSizer{}, wire.ErrTooLarge},
		{"spawn value unknown comp", body(1, wire.OpSpawn, 1, 1, 0, 1, fakeComps, v), fakeSizer{}, wire.ErrMalformed},
		{"update comp over limit", body(1, wire.OpUpdateFull, wire.MaxComponents, 1, 1, v), fakeSizer{}, wire.ErrTooLarge},
		{"update bad value", body(1, wire.OpUpdateDelta, 0, 1, 1, []byte{9, 1}), fakeSizer{}, wire.ErrMalformed},
		{"sizer error", body(1, wire.OpUpdateFull, 0, 1, 1, v), errSizer{}, errBadValue},
		{"sizer error typed", body(1, wire.OpUpdateFull, 0, 1, 1, v), errSizer{}, wire.ErrMalformed},
		{"sizer negative", body(1, wire.OpUpdateFull, 0, 1, 1, v), lenSizer(-1), wire.ErrMalformed},
		{"sizer past end", body(1, wire.OpUpdateFull, 0, 1, 1, v), lenSizer(3), wire.ErrMalformed},
		{"result status 6", body(1, wire.OpMutationResult, 1, 1, byte(6), ""), fakeSizer{}, wire.ErrMalformed},
		{"result long message", body(1, wire.OpMutationResult, 1, 1, byte(1), strings.Repeat("m", wire.MaxNameLen+1)), fakeSizer{}, wire.ErrTooLarge},
		{"result invalid UTF-8", body(1, wire.OpMutationResult, 1, 1, byte(1), "\xff"), fakeSizer{}, wire.ErrMalformed},
		{"control result 0", body(1, wire.OpControlResult, 1, 1, byte(0), 1, 1, 1), fakeSizer{}, wire.ErrMalformed},
		{"control result 8", body(1, wire.OpControlResult, 1, 1, byte(8), 1, 1, 1), fakeSizer{}, wire.ErrMalformed},
		{"control id over MaxNetID", body(1, wire.OpControlResult, 1, 1, byte(1), uint64(wire.MaxNetID)+1, 1, 1), fakeSizer{}, wire.ErrTooLarge},
		{"control count beyond input", body(1, wire.OpControlResult, 2, 1, byte(1), 1, 1, 1), fakeSizer{}, wire.ErrTruncated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := randBatch(rand.New(rand.NewPCG(1, 1))) // stale content must not survive
			err := wire.DecodeBatch(tt.body, tt.sizer, b)
			assert(t, errors.Is(err, tt.want), "got %v, want %v", err, tt.want)
			assert(t, typed(err), "error %v is not typed", err)
			assert(t, batchDiff(b, &wire.Batch{}) == "", "batch not empty after error")
		})
	}
}

func TestDecodeBatchAcceptsAnySectionOrder(t *testing.T) {
	v := []byte{1}
	b := body(2,
		wire.OpControlResult, 1, 1, byte(wire.ControlReleased), 4, 0, 0,
		wire.OpUpdateFull, 1, 1, 4, v,
		wire.OpScopeExit, byte(wire.ReasonFiltered), 1, 9,
		wire.OpUpdateFull, 1, 2, 1, 1, v, v,
		wire.OpSpawn, 0, // an empty section is allowed
	)
	var got wire.Batch
	err := wire.DecodeBatch(b, fakeSizer{}, &got)
	assert(t, err == nil, "decode: %v", err)
	want := &wire.Batch{
		TickAdvance: 2,
		Controls:    []wire.ControlReply{{Request: 1, Result: wire.ControlReleased, ID: 4}},
		Updates:     []wire.Update{{Comp: 1, ID: 4, Value: v}, {Comp: 1, ID: 1, Value: v}, {Comp: 1, ID: 2, Value: v}},
		Exits:       []wire.Exit{{Reason: wire.ReasonFiltered, ID: 9}},
	}
	d := batchDiff(want, &got)
	assert(t, d == "", "%s", d)
}
