package plugin_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/yohamta/donburi"

	"github.com/ebisync/ebisync/components"
	"github.com/ebisync/ebisync/internal/testutil"
	"github.com/ebisync/ebisync/internal/wire"
	"github.com/ebisync/ebisync/plugin"
)

// amplificationBound is the most the server's heap may grow while 100
// connections each hold the most expensive state one message can buy
// (docs/SECURITY.md). The figure includes the 100 test clients' own
// connections, which live in the same process.
const amplificationBound = 64 << 20

// TestAmplification connects 100 clients that each send the most
// expensive message the protocol allows and then stay: one Subscribe,
// lz4-compressed, that asks for every component and for the most entity
// subscriptions a client may hold, with a global interest (so each client's
// scope is the whole world of 2000 entities). The server's heap growth
// stays under amplificationBound, and returns to its baseline once they
// leave.
func TestAmplification(t *testing.T) {
	if testing.Short() {
		t.Skip("100 connections")
	}
	const n = 100 // all from 127.0.0.1
	reg := standardRegistry()
	h := newHarness(t, reg, &plugin.Options{MaxConnectionsPerAddress: n}, 5*time.Millisecond)
	defer h.close()
	var tags []components.ReplicatedData
	h.do(func(w donburi.World) {
		for i := range 2000 {
			e := w.Create(components.Replicated, components.Position, components.Health, components.Name)
			entry := w.Entry(e)
			components.Position.SetValue(entry, components.PositionData{X: float64(i % 50 * 40), Y: float64(i / 50 * 40)})
			components.Name.SetValue(entry, components.NameData{Value: "a name of some thirty two bytes."})
		}
	})
	h.ticks(2)
	h.do(func(w donburi.World) {
		for _, a := range w.Archetypes() {
			for _, e := range a.Entities() {
				if entry := w.Entry(e); entry.HasComponent(components.Replicated) {
					tags = append(tags, *components.Replicated.Get(entry))
				}
			}
		}
	})

	// The message: every component, then entity subscriptions up to the
	// default cap (1024), then global interest.
	var subs []wire.Sub
	for i := range reg.Len() {
		subs = append(subs, wire.Sub{Kind: wire.SubComponent, ID: uint64(i)})
	}
	for _, tag := range tags[:1024] {
		subs = append(subs, wire.Sub{Kind: wire.SubEntity, ID: uint64(tag.NetID), Gen: uint64(tag.Gen)})
	}
	raw := wire.AppendSubscribe(nil, wire.KindSubscribe, &wire.Subscribe{Subs: subs})
	msg := lz4Message(wire.KindSubscribe, raw[1:], len(raw)-1)
	global := wire.AppendInterest(nil, &wire.Interest{Mode: wire.InterestGlobal})
	t.Logf("the message: %d bytes as sent, %d decompressed, %d subscriptions", len(msg), len(raw), len(subs))

	base := heapAfterGC()
	var received atomic.Int64 // clients that received their snapshot
	var wg sync.WaitGroup
	conns := make([]*websocket.Conn, n)
	for i := range conns {
		ws := dialWS(t, h.url, reg, nil, true)
		conns[i] = ws
		send(t, ws, websocket.MessageBinary, msg)
		send(t, ws, websocket.MessageBinary, global)
		wg.Add(1)
		go func() {
			defer wg.Done()
			first := true
			for {
				_, b, err := ws.Read(context.Background())
				if err != nil {
					return
				}
				if first && len(b) > 4000 { // the snapshot (lz4: about 14 KB)
					first = false
					received.Add(1)
				}
			}
		}()
	}
	testutil.Eventually(t, 30*time.Second, "every client's snapshot", func() bool {
		st := h.srv.Stats()
		return received.Load() == n && st.Clients == n && st.ScopeEntries == n*len(tags)
	})
	h.ticks(5)
	st := h.srv.Stats()
	if st.Subscriptions != n*(reg.Len()+1024) {
		t.Fatalf("%d subscriptions held, want %d: the message did not buy its state", st.Subscriptions, n*(reg.Len()+1024))
	}
	held := heapAfterGC()
	growth := int64(held) - int64(base)
	t.Logf("heap: %.1f MiB before, %.1f MiB with %d clients (%.0f KiB each), bound %d MiB", mib(base), mib(held), n, float64(growth)/n/1024, amplificationBound>>20)
	if growth > amplificationBound {
		t.Fatalf("heap grew by %.1f MiB, over the bound of %d MiB", float64(growth)/(1<<20), amplificationBound>>20)
	}

	for _, ws := range conns {
		ws.Close(websocket.StatusNormalClosure, "")
	}
	wg.Wait()
	testutil.Eventually(t, 10*time.Second, "the clients to be freed", func() bool {
		st := h.srv.Stats()
		return st.Connections == 0 && st.Clients == 0 && st.ScopeEntries == 0 && st.Subscriptions == 0
	})
	h.ticks(2)
	after := heapAfterGC()
	t.Logf("heap after they left: %.1f MiB", mib(after))
	if int64(after)-int64(base) > 2<<20 {
		t.Fatalf("heap %.1f MiB after the clients left, baseline %.1f MiB: state was not freed", mib(after), mib(base))
	}
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }
