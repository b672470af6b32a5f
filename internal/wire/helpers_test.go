package wire_test

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/ebisync/ebisync/internal/wire"

	"github.com/ebisync/ebisync/internal/testutil"
)

var assert = testutil.Assert

// typed reports whether err wraps one of the package's typed errors.
func typed(err error) bool {
	return errors.Is(err, wire.ErrTruncated) || errors.Is(err, wire.ErrOverflow) ||
		errors.Is(err, wire.ErrTooLarge) || errors.Is(err, wire.ErrMalformed)
}

// fakeSizer measures values whose first byte is their whole length (at least
// 1). Components numbered fakeComps and above are unknown.
type fakeSizer struct{}

const fakeComps = 16

func (fakeSizer) FullLen(comp uint64, b []byte) (int, error)  { return fakeLen(comp, b) }
func (fakeSizer) DeltaLen(comp uint64, b []byte) (int, error) { return fakeLen(comp, b) }

func fakeLen(comp uint64, b []byte) (int, error) {
	if comp >= fakeComps {
		return 0, fmt.Errorf("unknown component %d", comp)
	}
	if len(b) == 0 || b[0] == 0 || int(b[0]) > len(b) {
		return 0, errors.New("bad fake value")
	}
	return int(b[0]), nil
}

func fakeValue(rng *rand.Rand) []byte {
	v := make([]byte, 1+rng.IntN(12))
	v[0] = byte(len(v))
	for i := 1; i < len(v); i++ {
		v[i] = byte(rng.Uint32())
	}
	return v
}

// randIDs returns n strictly ascending ids.
func randIDs(rng *rand.Rand, n int) []uint64 {
	ids := make([]uint64, 0, n)
	id := uint64(rng.IntN(3))
	for range n {
		ids = append(ids, id)
		if rng.IntN(8) == 0 {
			id += 1 + uint64(rng.Uint32()>>8)
		} else {
			id += 1 + uint64(rng.IntN(4))
		}
	}
	return ids
}

// randBatch returns a batch sorted the way AppendBatch encodes smallest.
func randBatch(rng *rand.Rand) *wire.Batch {
	b := &wire.Batch{TickAdvance: uint64(rng.IntN(5))}
	if rng.IntN(4) == 0 {
		b.Resume = true
		b.Keep = randIDs(rng, rng.IntN(6))
	}
	if rng.IntN(2) == 0 {
		b.InputAck = 1 + rng.Uint64N(1000)
	}
	for reason := wire.ReasonOutOfRange; reason <= wire.ReasonFiltered; reason++ {
		for _, id := range randIDs(rng, rng.IntN(4)) {
			b.Exits = append(b.Exits, wire.Exit{Reason: reason, ID: id})
		}
	}
	for _, id := range randIDs(rng, rng.IntN(5)) {
		comps := make([]wire.CompValue, rng.IntN(4))
		for i := range comps {
			comps[i] = wire.CompValue{Comp: uint64(rng.IntN(fakeComps)), Value: fakeValue(rng)}
		}
		b.AddSpawn(id, rng.Uint64N(1000), comps)
	}
	for comp := range uint64(fakeComps) {
		if rng.IntN(4) != 0 {
			continue
		}
		for _, id := range randIDs(rng, rng.IntN(4)) {
			b.Removals = append(b.Removals, wire.Removal{Comp: comp, ID: id})
		}
	}
	for comp := range uint64(fakeComps) {
		for _, delta := range []bool{false, true} {
			if rng.IntN(3) != 0 {
				continue
			}
			for _, id := range randIDs(rng, 1+rng.IntN(6)) {
				b.Updates = append(b.Updates, wire.Update{Comp: comp, ID: id, Delta: delta, Value: fakeValue(rng)})
			}
		}
	}
	for range rng.IntN(3) {
		st := wire.Status(rng.IntN(6))
		msg := ""
		if st != wire.StatusOk {
			msg = "no: " + st.String()
		}
		b.Results = append(b.Results, wire.MutationResult{Request: rng.Uint64(), Status: st, Message: msg})
	}
	for range rng.IntN(3) {
		b.Controls = append(b.Controls, wire.ControlReply{
			Request: rng.Uint64N(1 << 40),
			Result:  wire.ControlResult(1 + rng.IntN(6)),
			ID:      rng.Uint64N(wire.MaxNetID + 1),
			Gen:     rng.Uint64(),
			Holder:  rng.Uint64N(100),
		})
	}
	for range rng.IntN(4) {
		v := make([]byte, rng.IntN(20))
		for i := range v {
			v[i] = byte(rng.Uint32())
		}
		b.Messages = append(b.Messages, wire.Msg{ID: rng.Uint64N(wire.MaxComponents), Value: v})
	}
	return b
}

// batchDiff describes the first difference between two batches, or returns
// "" when they are equal. Nil and empty lists are equal.
func batchDiff(a, b *wire.Batch) string {
	if a.TickAdvance != b.TickAdvance {
		return fmt.Sprintf("TickAdvance %d != %d", a.TickAdvance, b.TickAdvance)
	}
	if a.Resume != b.Resume || !slices.Equal(a.Keep, b.Keep) {
		return fmt.Sprintf("Resume %v %v != %v %v", a.Resume, a.Keep, b.Resume, b.Keep)
	}
	if a.InputAck != b.InputAck {
		return fmt.Sprintf("InputAck %d != %d", a.InputAck, b.InputAck)
	}
	if !slices.Equal(a.Exits, b.Exits) {
		return fmt.Sprintf("Exits %v != %v", a.Exits, b.Exits)
	}
	if !slices.EqualFunc(a.Spawns, b.Spawns, func(x, y wire.Spawn) bool {
		return x.ID == y.ID && x.Gen == y.Gen && slices.EqualFunc(x.Comps, y.Comps, func(p, q wire.CompValue) bool {
			return p.Comp == q.Comp && bytes.Equal(p.Value, q.Value)
		})
	}) {
		return fmt.Sprintf("Spawns %v != %v", a.Spawns, b.Spawns)
	}
	if !slices.EqualFunc(a.Updates, b.Updates, func(x, y wire.Update) bool {
		return x.Comp == y.Comp && x.ID == y.ID && x.Delta == y.Delta && bytes.Equal(x.Value, y.Value)
	}) {
		return fmt.Sprintf("Updates %v != %v", a.Updates, b.Updates)
	}
	if !slices.Equal(a.Removals, b.Removals) {
		return fmt.Sprintf("Removals %v != %v", a.Removals, b.Removals)
	}
	if !slices.Equal(a.Results, b.Results) {
		return fmt.Sprintf("Results %v != %v", a.Results, b.Results)
	}
	if !slices.Equal(a.Controls, b.Controls) {
		return fmt.Sprintf("Controls %v != %v", a.Controls, b.Controls)
	}
	if !slices.EqualFunc(a.Messages, b.Messages, func(x, y wire.Msg) bool {
		return x.ID == y.ID && bytes.Equal(x.Value, y.Value)
	}) {
		return fmt.Sprintf("Messages %v != %v", a.Messages, b.Messages)
	}
	return ""
}

// countSections returns how many sections a batch message holds, by op.
func countSections(t testing.TB, msg []byte) map[byte]int {
	t.Helper()
	// Re-decode section by section: the decoder accepts a prefix that ends
	// at a section boundary, so find boundaries by trying every prefix.
	_, body, _, err := wire.Open(msg, nil)
	assert(t, err == nil, "open: %v", err)
	var b wire.Batch
	ops := map[byte]int{}
	start := -1
	for end := 1; end <= len(body); end++ {
		if wire.DecodeBatch(body[:end], fakeSizer{}, &b) != nil {
			continue
		}
		if start >= 0 {
			ops[body[start]]++
		}
		start = end
	}
	return ops
}

// sampleMessages returns one valid message of each kind.
func sampleMessages() [][]byte {
	rng := rand.New(rand.NewPCG(1, 2))
	var msgs [][]byte
	msgs = append(msgs,
		wire.AppendHello(nil, &sampleHello),
	)
	for _, h := range resumedHellos() {
		msgs = append(msgs, wire.AppendHello(nil, &h))
	}
	msgs = append(msgs,
		wire.AppendWelcome(nil, &wire.Welcome{Version: 1, ClientID: 7, TickRate: 30, Tick: 12345, Components: []string{"position", "velocity", "name"}}),
		wire.AppendError(nil, &wire.Error{Code: wire.CloseSchemaMismatch, Message: `component "position" field "X": float64 on the server, float32 here`}),
		wire.AppendSubscribe(nil, wire.KindSubscribe, &wire.Subscribe{Subs: []wire.Sub{{Kind: wire.SubComponent, ID: 3}, {Kind: wire.SubEntity, ID: 99, Gen: 2}}}),
		wire.AppendSubscribe(nil, wire.KindUnsubscribe, &wire.Subscribe{Subs: []wire.Sub{{Kind: wire.SubComponent, ID: 0}}}),
		wire.AppendInterest(nil, &wire.Interest{Mode: wire.InterestGlobal}),
		wire.AppendInterest(nil, &wire.Interest{Mode: wire.InterestPoint, X: -12.5, Y: 3e9, Radius: 400}),
		wire.AppendInterest(nil, &wire.Interest{Mode: wire.InterestFollow, ID: 5, Gen: 1, Radius: 250}),
		wire.AppendMutate(nil, &wire.Mutate{Request: 1, ID: 42, Gen: 3, Comp: 2, Value: []byte{5, 'h', 'e', 'l', 'l', 'o'}}),
		wire.AppendControl(nil, &wire.Control{Request: 2, Op: wire.ControlTake, ID: 42, Gen: 3, TimeoutMs: 5000, Children: true}),
		wire.AppendPing(nil, wire.KindPing, &wire.Ping{Nonce: 1 << 40}),
		wire.AppendPing(nil, wire.KindPong, &wire.Ping{Nonce: 0}),
	)
	for range 4 {
		msgs = append(msgs, wire.AppendBatch(nil, randBatch(rng)))
	}
	return msgs
}

var sampleHello = wire.Hello{
	Version:    wire.ProtocolVersion,
	ClientName: "bot-17 ☃",
	Components: []wire.ComponentDesc{
		{Name: "position", Hash: 0x1234_5678_9abc_def0, Fields: []wire.FieldDesc{
			{Name: "X", Type: "float64", Quant: 0.01},
			{Name: "Y", Type: "float64", Quant: 0.01},
		}},
		{Name: "name", Hash: 42, Fields: []wire.FieldDesc{{Name: "Value", Type: "string"}}},
		{Name: "tag", Hash: 7},
	},
}

// resumedHellos returns sampleHello asking to resume a session: with an
// interest of each mode, or none, and with or without subscriptions.
func resumedHellos() []wire.Hello {
	subs := []wire.Sub{
		{Kind: wire.SubComponent, ID: 0},
		{Kind: wire.SubComponent, ID: wire.MaxComponents - 1},
		{Kind: wire.SubEntity, ID: wire.MaxNetID, Gen: 1 << 40},
		{Kind: wire.SubEntity, ID: 7, Gen: 0},
	}
	interests := []*wire.Interest{
		nil,
		{Mode: wire.InterestGlobal},
		{Mode: wire.InterestPoint, X: -12.5, Y: 3e9, Radius: 400},
		{Mode: wire.InterestFollow, ID: 5, Gen: 1, Radius: 250},
	}
	var out []wire.Hello
	for i, in := range interests {
		h := sampleHello
		h.Resume = &wire.Resume{ClientID: 1<<40 + uint64(i), Tick: 99_000 + uint64(i), Interest: in}
		copy(h.Resume.Token[:], "0123456789abcdef")
		if i%2 == 0 {
			h.Resume.Subs = subs[i/2:]
		}
		out = append(out, h)
	}
	return out
}
