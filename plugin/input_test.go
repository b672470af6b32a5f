package plugin_test

import (
	"math"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/yohamta/donburi"

	"github.com/ebisync/ebisync/components"
	"github.com/ebisync/ebisync/internal/codec"
	"github.com/ebisync/ebisync/internal/testutil"
	"github.com/ebisync/ebisync/internal/wire"
	"github.com/ebisync/ebisync/plugin"
)

// inputRig is a server that ticks only when told, a ship owned by the
// first client, and a record of the inputs applied.
type inputRig struct {
	h  *harness
	m  *components.Message[moveIn]
	mu sync.Mutex
	// Game goroutine, read under mu by the test.
	ship    donburi.Entity
	applied []uint64
}

func newInputRig(t *testing.T, opts *plugin.Options) *inputRig {
	r := &inputRig{}
	reg, _, m := predictRegistry()
	r.m = m
	opts.OnConnect = func(ci plugin.ClientInfo) {
		w := r.h.w
		e := w.Create(components.Replicated, components.Position, components.Owner)
		components.Owner.SetValue(w.Entry(e), components.OwnerData{Client: ci.ID})
		r.mu.Lock()
		r.ship = e
		r.mu.Unlock()
	}
	r.h = newHarness(t, reg, opts, time.Hour) // ticks by tick()
	plugin.HandleInput(r.h.srv, m, func(w donburi.World, e donburi.Entity, in moveIn) {
		r.mu.Lock()
		r.applied = append(r.applied, in.N)
		r.mu.Unlock()
		moveStep(w, e, in)
	})
	return r
}

func (r *inputRig) tick() { r.h.do(func(donburi.World) { r.h.srv.Tick() }) }

// connect dials a raw client, ticks until its own ship is replicated and
// returns the client with the ship's net id and generation.
func (r *inputRig) connect(t *testing.T) (*rawClient, uint64, uint64) {
	r.mu.Lock()
	before := r.ship // the last client's: the new client's ship is another
	r.mu.Unlock()
	rc := dialRaw(t, r.h.url, r.h.reg, true)
	rc.subscribeAll()
	var tag components.ReplicatedData
	testutil.Eventually(t, 5*time.Second, "the ship replicated", func() bool {
		r.tick()
		r.h.do(func(w donburi.World) {
			r.mu.Lock()
			e := r.ship
			r.mu.Unlock()
			if e != donburi.Null && e != before {
				tag = *components.Replicated.Get(w.Entry(e))
			}
		})
		return tag.NetID != 0
	})
	return rc, uint64(tag.NetID), uint64(tag.Gen)
}

// sendInputs sends inputs seqs for the ship, numbered N = seq, then a
// Ping, and waits until the server has read the Ping: every input before
// it is then in the client's inbound queue.
func (r *inputRig) sendInputs(t *testing.T, rc *rawClient, id, gen uint64, seqs ...uint64) {
	t.Helper()
	before := r.h.srv.Stats().Traffic.MessagesIn
	for _, seq := range seqs {
		val := codecMsg(r.h.reg, r.m.Index()).AppendFull(nil, unsafePtr(&moveIn{DX: 1, N: seq}))
		rc.send(wire.AppendInput(nil, &wire.Input{Seq: seq, ID: uint64(r.m.Index()), Entity: id, Gen: gen, Value: val}))
	}
	rc.send(wire.AppendPing(nil, wire.KindPing, &wire.Ping{Nonce: 1}))
	want := before + uint64(len(seqs)) + 1
	testutil.Eventually(t, 5*time.Second, "the server reading the inputs", func() bool {
		return r.h.srv.Stats().Traffic.MessagesIn >= want
	})
}

func (r *inputRig) appliedSeqs() []uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.applied)
}

// acks returns the InputAck of every batch the client received that
// carried one.
func acks(rc *rawClient) []uint64 {
	_, bodies, _ := rc.snapshot()
	var out []uint64
	for _, b := range bodies {
		if b.InputAck != 0 {
			out = append(out, b.InputAck)
		}
	}
	return out
}

// TestInputSequence: inputs apply in order, once; a resent input is a
// counted duplicate; each change of the last processed input is acked
// once; a gap in the sequence closes the connection with 4000.
func TestInputSequence(t *testing.T) {
	r := newInputRig(t, &plugin.Options{TickRate: 30})
	defer r.h.close()
	rc, id, gen := r.connect(t)
	defer rc.close()

	r.sendInputs(t, rc, id, gen, 1, 2, 3)
	r.tick()
	r.waitAcks(t, rc, 3)
	r.sendInputs(t, rc, id, gen, 2, 3, 4) // 2 and 3 again, as after a resume
	r.waitAcks(t, rc, 4, 3)
	if got := r.appliedSeqs(); !slices.Equal(got, []uint64{1, 2, 3, 4}) {
		t.Fatalf("applied %v, want [1 2 3 4]", got)
	}
	st := r.h.srv.Stats()
	if st.InputsApplied != 4 || st.InputsDuplicate != 2 || st.InputsRefused != 0 {
		t.Fatalf("stats: %d applied, %d duplicate, %d refused; want 4, 2, 0", st.InputsApplied, st.InputsDuplicate, st.InputsRefused)
	}
	var p components.PositionData
	r.h.do(func(w donburi.World) { p = *components.Position.Get(w.Entry(r.ship)) })
	if p.X != 4 {
		t.Fatalf("the ship moved to %v after 4 inputs of +1", p.X)
	}

	r.sendInputs(t, rc, id, gen, 6) // 5 is missing
	r.tick()
	testutil.Eventually(t, 5*time.Second, "the connection closing", func() bool {
		_, _, err := rc.snapshot()
		return err != nil
	})
	if _, _, err := rc.snapshot(); websocket.CloseStatus(err) != plugin.StatusProtocolError {
		t.Fatalf("a gap in the input sequence closed with %v, want 4000", err)
	}
	if got := r.appliedSeqs(); len(got) != 4 {
		t.Fatalf("input after the gap applied: %v", got)
	}
}

// TestInputBudget: past MaxInputsPerTick, inputs wait for later ticks; past
// MaxInputsQueued the oldest waiting one is dropped and acked all the same.
func TestInputBudget(t *testing.T) {
	r := newInputRig(t, &plugin.Options{TickRate: 30, MaxInputsPerTick: 2, MaxInputsQueued: 3})
	defer r.h.close()
	rc, id, gen := r.connect(t)
	defer rc.close()

	r.sendInputs(t, rc, id, gen, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10)
	// Tick 1 applies 1 and 2; 3…10 wait, the oldest dropped past 3, so
	// 8, 9, 10 wait (ack 7). Tick 2 applies 8, 9 (ack 9), tick 3 applies
	// 10.
	r.waitAcks(t, rc, 10, 7, 9)
	if got := r.appliedSeqs(); !slices.Equal(got, []uint64{1, 2, 8, 9, 10}) {
		t.Fatalf("applied %v, want [1 2 8 9 10]", got)
	}
	st := r.h.srv.Stats()
	if st.InputsApplied != 5 || st.InputsLate != 8 || st.InputsDropped != 5 {
		t.Fatalf("stats: %d applied, %d late, %d dropped; want 5, 8, 5", st.InputsApplied, st.InputsLate, st.InputsDropped)
	}
}

// TestInputRefusedTypes: an input of a type without a step is refused and
// acked; one of a type id past the Welcome's closes with 4000.
func TestInputRefusedTypes(t *testing.T) {
	r := newInputRig(t, &plugin.Options{TickRate: 30})
	defer r.h.close()
	plugin.HandleInput[moveIn](r.h.srv, r.m, nil)
	rc, id, gen := r.connect(t)
	defer rc.close()
	r.sendInputs(t, rc, id, gen, 1)
	r.waitAcks(t, rc, 1)
	if st := r.h.srv.Stats(); st.InputsRefused != 1 || st.InputsApplied != 0 {
		t.Fatalf("an input without a step: %d refused, %d applied", st.InputsRefused, st.InputsApplied)
	}
	rc.send(wire.AppendInput(nil, &wire.Input{Seq: 2, ID: 99, Entity: id, Gen: gen}))
	testutil.Eventually(t, 5*time.Second, "the connection closing", func() bool {
		_, _, err := rc.snapshot()
		return err != nil
	})
	if _, _, err := rc.snapshot(); websocket.CloseStatus(err) != plugin.StatusProtocolError {
		t.Fatalf("an input of an unknown type closed with %v, want 4000", err)
	}
}

// codecMsg returns the codec of reg's message type with wire id i.
func codecMsg(reg *components.Registry, i int) *codec.Codec { return codec.Of(reg.Messages()[i]) }

// waitAcks ticks until a batch carries InputAck last, then requires the
// acks the client received to ascend strictly (an unchanged ack is not
// sent again) through values of last and earlier (a batch skipped for a
// busy writer carries the next one).
func (r *inputRig) waitAcks(t *testing.T, rc *rawClient, last uint64, earlier ...uint64) {
	t.Helper()
	testutil.Eventually(t, 5*time.Second, "the ack", func() bool {
		r.tick()
		a := acks(rc)
		return len(a) > 0 && a[len(a)-1] == last
	})
	r.tick() // no news: no ack
	r.tick()
	a := acks(rc)
	for i, v := range a {
		if i > 0 && v <= a[i-1] || v != last && !slices.Contains(earlier, v) {
			t.Fatalf("acks %v: want ascending values of %v, then %d", a, earlier, last)
		}
	}
}

// TestHostileInputs: a raw client's inputs for another player's ship, with
// a NaN, with bytes after the value, or for no entity are refused without
// running a step, and a gap in its sequence closes it with 4000; meanwhile
// an honest player's inputs apply, once each, and a mirror converges.
func TestHostileInputs(t *testing.T) {
	r := newInputRig(t, &plugin.Options{TickRate: 30})
	defer r.h.close()
	honest, hID, hGen := r.connect(t)
	defer honest.close()
	var hShip donburi.Entity
	r.mu.Lock()
	hShip = r.ship
	r.mu.Unlock()
	attacker, aID, aGen := r.connect(t)
	defer attacker.close()
	mirror := startClientLoop(t, r.h.url, r.h.reg, nil)
	defer mirror.close()
	if err := mirror.c.SubscribeAll(); err != nil {
		t.Fatal(err)
	}

	mc := codecMsg(r.h.reg, r.m.Index())
	typ := uint64(r.m.Index())
	value := func(v moveIn) []byte { return mc.AppendFull(nil, unsafePtr(&v)) }
	attacks := []wire.Input{
		{Seq: 1, ID: typ, Entity: hID, Gen: hGen, Value: value(moveIn{DX: 100, N: 101})},          // another player's ship
		{Seq: 2, ID: typ, Entity: aID, Gen: aGen, Value: value(moveIn{DX: math.NaN(), N: 102})},   // a NaN
		{Seq: 3, ID: typ, Entity: aID, Gen: aGen, Value: append(value(moveIn{DX: 1, N: 103}), 7)}, // a byte after the value
		{Seq: 4, ID: typ, Entity: aID + 1000, Gen: 1, Value: value(moveIn{DX: 1, N: 104})},        // no such entity
		{Seq: 5, ID: typ, Entity: aID, Gen: aGen + 1, Value: value(moveIn{DX: 1, N: 105})},        // another generation
		{Seq: 6, ID: typ, Entity: aID, Gen: aGen, Value: value(moveIn{DX: 1, N: 106})},            // its own ship: applies
	}
	for i := range attacks {
		attacker.send(wire.AppendInput(nil, &attacks[i]))
	}
	r.sendInputs(t, honest, hID, hGen, 1, 2, 3)
	// The two streams interleave, so a tick may process part of either.
	r.waitAcks(t, honest, 3, 1, 2)
	r.waitAcks(t, attacker, 6, 1, 2, 3, 4, 5)
	if got := r.appliedSeqs(); !slices.Contains(got, 106) || slices.ContainsFunc(got, func(n uint64) bool { return n > 100 && n < 106 }) || len(got) != 4 {
		t.Fatalf("applied %v: want the honest 1, 2, 3 and the attacker's 106 only", got)
	}
	if st := r.h.srv.Stats(); st.InputsRefused != 5 {
		t.Fatalf("%d inputs refused, want 5", st.InputsRefused)
	}

	// A gap closes the attacker; the honest player goes on.
	attacker.send(wire.AppendInput(nil, &wire.Input{Seq: 9, ID: typ, Entity: aID, Gen: aGen, Value: value(moveIn{DX: 1, N: 109})}))
	testutil.Eventually(t, 5*time.Second, "the attacker closed", func() bool {
		r.tick()
		_, _, err := attacker.snapshot()
		return err != nil
	})
	if _, _, err := attacker.snapshot(); websocket.CloseStatus(err) != plugin.StatusProtocolError {
		t.Fatalf("the attacker's gap closed with %v, want 4000", err)
	}
	r.sendInputs(t, honest, hID, hGen, 4)
	r.waitAcks(t, honest, 4, 1, 2, 3)
	var p components.PositionData
	r.h.do(func(w donburi.World) { p = *components.Position.Get(w.Entry(hShip)) })
	if p.X != 4 {
		t.Fatalf("the honest ship is at x %v after 4 inputs of +1", p.X)
	}
	all := map[int]bool{}
	for i := range r.h.reg.Len() {
		all[i] = true
	}
	testutil.Eventually(t, 10*time.Second, "the mirror to converge", func() bool {
		r.tick()
		var want map[uint64]expectation
		r.h.do(func(w donburi.World) { want, _ = view(w, r.h.reg, all, 0, 0, 0, 1) })
		var got map[uint64]expectation
		mirror.do(func(mw donburi.World) { got = mirrorView(mw, r.h.reg) })
		return compareViews(r.h.reg, got, want, nil) == nil
	})
}
