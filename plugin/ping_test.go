package plugin_test

import (
	"context"
	"log/slog"
	"math"
	mrand "math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/ebisync/ebisync/internal/wire"
	"github.com/ebisync/ebisync/plugin"
)

// warnLog is a slog handler that keeps the records at Warn level and above.
type warnLog struct {
	mu   sync.Mutex
	msgs []string
}

func (h *warnLog) Enabled(context.Context, slog.Level) bool { return true }
func (h *warnLog) Handle(_ context.Context, r slog.Record) error {
	if r.Level >= slog.LevelWarn {
		h.mu.Lock()
		h.msgs = append(h.msgs, r.Level.String()+" "+r.Message)
		h.mu.Unlock()
	}
	return nil
}
func (h *warnLog) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *warnLog) WithGroup(string) slog.Handler      { return h }

func (h *warnLog) records() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.msgs...)
}

// TestServerPingRTT drives the server's round-trip measurement with a raw
// WebSocket client:
//
//   - Pongs nobody asked for, whatever their nonce, measure nothing;
//   - Pongs that answer a real Ping with the wrong nonce measure nothing;
//   - the Pong that echoes the Ping in flight gives a positive RTT;
//   - that Pong replayed later changes nothing;
//   - a client that stops answering keeps getting Pings, stays connected,
//     and nothing is refused or logged at Warn or Error for it;
//   - a Pong that does not decode is a protocol error (4000), as any
//     message that does not decode.
func TestServerPingRTT(t *testing.T) {
	reg := standardRegistry()
	logs := &warnLog{}
	h := newHarness(t, reg, &plugin.Options{PingInterval: 20 * time.Millisecond, Logger: slog.New(logs)}, 10*time.Millisecond)
	defer h.close()
	ws := dialWS(t, h.url, reg, nil, true)
	defer ws.CloseNow()

	rtt := func() (time.Duration, time.Duration) {
		t.Helper()
		st := h.srv.Stats()
		if len(st.PerClient) != 1 {
			t.Fatalf("%d clients in Stats, want 1", len(st.PerClient))
		}
		return st.PerClient[0].RTT, st.PerClient[0].RTTLast
	}
	pong := func(nonce uint64) {
		t.Helper()
		send(t, ws, websocket.MessageBinary, wire.AppendPing(nil, wire.KindPong, &wire.Ping{Nonce: nonce}))
	}
	pings := 0
	nextPing := func() uint64 {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for {
			_, msg, err := ws.Read(ctx)
			if err != nil {
				t.Fatalf("waiting for the server's Ping: %v", err)
			}
			kind, body, _, err := wire.Open(msg, nil)
			if err != nil {
				t.Fatalf("the server sent a bad message: %v", err)
			}
			if kind == wire.KindPing {
				p, err := wire.DecodePing(body)
				if err != nil {
					t.Fatalf("the server's Ping: %v", err)
				}
				pings++
				return p.Nonce
			}
		}
	}
	// expectAlive's Ping is answered after every message sent before it:
	// once it returns, the server has handled the Pongs sent so far.

	// Unsolicited Pongs.
	for _, n := range []uint64{0, 1, 2, 1 << 32, math.MaxUint64, mrand.Uint64()} {
		pong(n)
	}
	expectAlive(t, ws)
	if r, l := rtt(); r != 0 || l != 0 {
		t.Fatalf("unsolicited Pongs measured an RTT of %v (last %v)", r, l)
	}

	// Wrong answers to a real Ping.
	n := nextPing()
	for _, f := range []uint64{n + 1, n - 1, n ^ 1<<31, n << 1, 0, math.MaxUint64} {
		pong(f)
	}
	expectAlive(t, ws)
	if r, l := rtt(); r != 0 || l != 0 {
		t.Fatalf("forged Pongs measured an RTT of %v (last %v)", r, l)
	}

	// The right answer. A Ping awaited for four intervals gives way to a
	// new one, so on a slow machine the answer may come too late: then the
	// next Ping is answered.
	for i := 0; ; i++ {
		pong(n)
		expectAlive(t, ws)
		if r, _ := rtt(); r > 0 {
			break
		}
		if i == 20 {
			t.Fatalf("no RTT after answering %d Pings", i+1)
		}
		n = nextPing()
	}
	r0, l0 := rtt()
	if r0 != l0 || r0 > 10*time.Second {
		t.Fatalf("the first RTT %v, last %v: want one positive sample", r0, l0)
	}
	t.Logf("RTT %v after %d Pings", r0, pings)

	// The same Pong again, once the next Ping is in flight.
	nextPing()
	pong(n)
	pong(n)
	expectAlive(t, ws)
	if r, l := rtt(); r != r0 || l != l0 {
		t.Fatalf("a replayed Pong changed the RTT from %v (last %v) to %v (last %v)", r0, l0, r, l)
	}

	// A client that never answers again: the server goes on pinging it
	// (a new Ping after each four unanswered intervals) and keeps it.
	for range 4 {
		nextPing()
	}
	expectAlive(t, ws)
	st := h.srv.Stats()
	if st.Connections != 1 || st.Clients != 1 || len(st.Refusals) != 0 {
		t.Fatalf("after unanswered Pings: %d connections, %d clients, refusals %v; want 1, 1, none", st.Connections, st.Clients, st.Refusals)
	}
	if r, l := rtt(); r != r0 || l != l0 {
		t.Fatalf("unanswered Pings changed the RTT from %v (last %v) to %v (last %v)", r0, l0, r, l)
	}
	if recs := logs.records(); len(recs) != 0 {
		t.Fatalf("logged for a client that does not answer Pings: %q", recs)
	}
	t.Logf("%d Pings read", pings)

	// A Pong without its nonce.
	send(t, ws, websocket.MessageBinary, []byte{byte(wire.KindPong)})
	expectClose(t, ws, plugin.StatusProtocolError)
}
