package netclient_test

import (
	"math"
	"testing"
	"time"
	"unsafe"

	"github.com/coder/websocket"
	"github.com/yohamta/donburi"

	"github.com/ebisync/ebisync/components"
	"github.com/ebisync/ebisync/internal/codec"
	"github.com/ebisync/ebisync/internal/wire"
	"github.com/ebisync/ebisync/netclient"
)

type nudgeIn struct{ DX float64 }

func nudgeStep(w donburi.World, e donburi.Entity, in nudgeIn) {
	components.Position.Get(w.Entry(e)).X += in.DX
}

func predictRegistry() (*components.Registry, *components.Synced[components.PositionData], *components.Message[nudgeIn]) {
	reg := components.NewRegistry()
	std := components.RegisterStandard(reg)
	m := components.RegisterMessage[nudgeIn](reg, "test.nudge", &components.MessageOptions{FromClient: true})
	return reg, std.Position, m
}

// spawnShip sends the spawn of entity 1 at generation 1 at (x, 0), owned by
// the client, and waits for it in the mirror.
func spawnShip(t *testing.T, c *netclient.Client, fc *fakeConn, reg *components.Registry, x float64) donburi.Entity {
	t.Helper()
	fc.send(t, &wire.Batch{TickAdvance: 1, Spawns: []wire.Spawn{{ID: 1, Gen: 1, Comps: []wire.CompValue{
		full(t, reg, components.Position, components.PositionData{X: x}),
		full(t, reg, components.Owner, components.OwnerData{Client: fc.welcome.ClientID}),
	}}}})
	var e donburi.Entity
	updateUntil(t, c, func() bool {
		var ok bool
		e, ok = c.Entity(1)
		return ok
	})
	return e
}

// expectInput returns the client's next Input.
func expectInput(t *testing.T, fc *fakeConn) wire.Input {
	t.Helper()
	in, err := wire.DecodeInput(fc.expect(t, wire.KindInput))
	if err != nil {
		t.Fatal(err)
	}
	return in
}

// TestPredictReconcile drives the reconciliation by hand: inputs move the
// mirror at once and go out numbered; a batch acknowledging some of them
// with the server's state keeps the rest predicted; a state the client
// could not predict is a correction whose offset decays on screen with
// SmoothingTime.
func TestPredictReconcile(t *testing.T) {
	reg, pos, m := predictRegistry()
	fs := newFakeServer(t, reg)
	c, fc := dial(t, fs, nil)
	e := spawnShip(t, c, fc, reg, 0)
	p := netclient.Predict(c, m, nudgeStep)

	t0 := time.Now()
	for i := 0; i < 3; i++ {
		if err := p.Input(e, nudgeIn{DX: 1}); err != nil {
			t.Fatal(err)
		}
	}
	drawn := func(at time.Time) float64 {
		v, ok := netclient.Interpolated(c, e, pos, at)
		if !ok {
			t.Fatal("Interpolated: not mirrored")
		}
		return v.X
	}
	if x := drawn(t0); x != 3 {
		t.Fatalf("three inputs of +1 drawn at %v, want 3 at once", x)
	}
	for seq := uint64(1); seq <= 3; seq++ {
		in := expectInput(t, fc)
		var v nudgeIn
		if _, err := codec.Of(m.Type()).DecodeFull(in.Value, unsafe.Pointer(&v)); err != nil {
			t.Fatal(err)
		}
		if in.Seq != seq || in.ID != uint64(m.Index()) || in.Entity != 1 || in.Gen != 1 || v.DX != 1 {
			t.Fatalf("input %d went out as %+v (value %+v)", seq, in, v)
		}
	}

	// The server applied 1 and 2: input 3 is replayed on its state.
	fc.send(t, &wire.Batch{TickAdvance: 1, InputAck: 2, Updates: []wire.Update{fullUpdate(t, reg, components.Position, 1, components.PositionData{X: 2})}})
	updateUntil(t, c, func() bool { return c.Stats().PendingInputs == 1 })
	if x := drawn(t0); x != 3 {
		t.Fatalf("after ack 2 of 3: drawn %v, want 3", x)
	}
	if n := c.Stats().PredictionCorrections; n != 0 {
		t.Fatalf("%d corrections of a prediction the server confirmed", n)
	}

	// The server applied 3 and pushed the ship by 10.
	fc.send(t, &wire.Batch{TickAdvance: 1, InputAck: 3, Updates: []wire.Update{fullUpdate(t, reg, components.Position, 1, components.PositionData{X: 13})}})
	updateUntil(t, c, func() bool { return c.Stats().PendingInputs == 0 })
	st := c.Stats()
	if st.PredictionCorrections != 1 || math.Abs(st.LargestCorrection-10) > 1e-9 {
		t.Fatalf("a push of 10: %d corrections, largest %v", st.PredictionCorrections, st.LargestCorrection)
	}
	if w, _ := pos.Get(c.World(), e); w.X != 13 {
		t.Fatalf("the mirror holds %v after the push, want 13", w.X)
	}
	// On screen: where it was at the last frame, then 13 − 10·exp(−t/τ).
	tau := netclient.SmoothingTime
	for _, d := range []time.Duration{0, tau / 2, tau, 3 * tau, 10 * tau} {
		want := 13 - 10*math.Exp(-d.Seconds()/tau.Seconds())
		if d == 10*tau {
			want = 13 // the offset is done
		}
		if x := drawn(t0.Add(d)); math.Abs(x-want) > 1e-6 {
			t.Fatalf("drawn %v after %v, want %v", x, d, want)
		}
	}
}

// TestPredictFreshSession: a new session that is not a resumed one drops
// the pending inputs and numbers the next input 1.
func TestPredictFreshSession(t *testing.T) {
	reg, _, m := predictRegistry()
	fs := newFakeServer(t, reg)
	c, fc := dial(t, fs, &netclient.Options{MinBackoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond})
	e := spawnShip(t, c, fc, reg, 0)
	p := netclient.Predict(c, m, nudgeStep)
	for i := 0; i < 2; i++ {
		if err := p.Input(e, nudgeIn{DX: 1}); err != nil {
			t.Fatal(err)
		}
	}
	expectInput(t, fc)
	expectInput(t, fc)
	fc.ws.Close(websocket.StatusGoingAway, "restart")
	fc2 := fs.accept(t)
	updateUntil(t, c, func() bool { _, ok := c.Entity(1); return !ok && c.Connected() })
	if n := c.Stats().PendingInputs; n != 0 {
		t.Fatalf("%d inputs pending after a fresh session", n)
	}
	e = spawnShip(t, c, fc2, reg, 5)
	if err := p.Input(e, nudgeIn{DX: 1}); err != nil {
		t.Fatal(err)
	}
	if in := expectInput(t, fc2); in.Seq != 1 {
		t.Fatalf("the first input of a fresh session is numbered %d", in.Seq)
	}
}
