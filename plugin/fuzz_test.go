package plugin_test

import (
	"context"
	"encoding/binary"
	"math"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/yohamta/donburi"

	"github.com/ebisync/ebisync/components"
	"github.com/ebisync/ebisync/internal/hostile"
	"github.com/ebisync/ebisync/internal/wire"
	"github.com/ebisync/ebisync/plugin"
)

// packMsgs joins messages as FuzzServerInbound's input: each as a uvarint
// length and its bytes.
func packMsgs(msgs ...[]byte) []byte {
	var b []byte
	for _, m := range msgs {
		b = binary.AppendUvarint(b, uint64(len(m)))
		b = append(b, m...)
	}
	return b
}

// unpackMsgs splits FuzzServerInbound's input into at most 32 messages.
func unpackMsgs(b []byte) [][]byte {
	var msgs [][]byte
	for len(b) > 0 && len(msgs) < 32 {
		n, k := binary.Uvarint(b)
		if k <= 0 {
			return append(msgs, b)
		}
		b = b[k:]
		if n > uint64(len(b)) {
			n = uint64(len(b))
		}
		msgs = append(msgs, b[:n])
		b = b[n:]
	}
	return msgs
}

// FuzzServerInbound sends arbitrary message sequences, after a Hello, from
// one connection into a live server. Nothing may panic (a panic while
// handling input is counted and closes with 1011, which fails the target),
// and the server keeps serving a second, honest client.
func FuzzServerInbound(f *testing.F) {
	reg, tc := hostileRegistry()
	h := newHarness(f, reg, &plugin.Options{MaxConnectionsPerAddress: 1 << 20, MaxHandshakes: 1 << 20, MaxConnections: 1 << 20}, time.Millisecond)
	defer h.close()
	var ship components.ReplicatedData
	h.do(func(w donburi.World) {
		for i := range 200 {
			e := w.Create(components.Replicated, components.Position, components.Health, thrust)
			components.Position.SetValue(w.Entry(e), components.PositionData{X: float64(i * 10), Y: float64(i % 7 * 10)})
		}
	})
	h.ticks(2)
	h.do(func(w donburi.World) {
		for _, a := range w.Archetypes() {
			if a.Layout().HasComponent(components.Replicated) {
				ship = *components.Replicated.Get(w.Entry(a.Entities()[0]))
				return
			}
		}
	})
	honest := dialWS(f, h.url, reg, nil, true)
	defer honest.CloseNow()

	id, gen := uint64(ship.NetID), uint64(ship.Gen)
	all := []wire.Sub{{Kind: wire.SubEntity, ID: id, Gen: gen}}
	for i := range reg.Len() {
		all = append(all, wire.Sub{Kind: wire.SubComponent, ID: uint64(i)})
	}
	sub := wire.AppendSubscribe(nil, wire.KindSubscribe, &wire.Subscribe{Subs: all})
	f.Add(packMsgs(sub, wire.AppendInterest(nil, &wire.Interest{Mode: wire.InterestPoint, X: 50, Y: 20, Radius: 100})))
	f.Add(packMsgs(sub, wire.AppendSubscribe(nil, wire.KindUnsubscribe, &wire.Subscribe{Subs: all})))
	f.Add(packMsgs(wire.AppendInterest(nil, &wire.Interest{Mode: wire.InterestFollow, ID: id, Gen: gen, Radius: 1e9})))
	f.Add(packMsgs(wire.AppendInterest(nil, &wire.Interest{Mode: wire.InterestGlobal})))
	f.Add(packMsgs(wire.AppendMutate(nil, &wire.Mutate{Request: 1, ID: id, Gen: gen, Comp: uint64(tc.Index()), Value: encodeValue(tc, thrustData{X: 1})})))
	f.Add(packMsgs(wire.AppendMutate(nil, &wire.Mutate{Request: 2, ID: id, Gen: gen, Comp: uint64(tc.Index()), Value: encodeValue(tc, thrustData{X: math.NaN()})})))
	f.Add(packMsgs(wire.AppendControl(nil, &wire.Control{Request: 3, Op: wire.ControlTake, ID: id, Gen: gen, TimeoutMs: 10, Children: true}),
		wire.AppendControl(nil, &wire.Control{Request: 4, Op: wire.ControlRelease, ID: id, Gen: gen})))
	f.Add(packMsgs(wire.AppendPing(nil, wire.KindPing, &wire.Ping{Nonce: 7}), wire.AppendPing(nil, wire.KindPong, &wire.Ping{Nonce: 8})))
	f.Add(packMsgs([]byte{0x04, 0x01, 0x02, 0xa0, 0x8d, 0x06, 0x00}))
	f.Add(packMsgs(lz4Message(wire.KindSubscribe, sub[1:], len(sub)-1)))
	f.Add(packMsgs(lz4Message(wire.KindSubscribe, make([]byte, 3000), 1<<20)))
	f.Add(packMsgs(wire.AppendHello(nil, hostile.Hello(reg, "raw"))))

	f.Fuzz(func(t *testing.T, data []byte) {
		ws := dialWS(t, h.url, reg, nil, true)
		defer ws.CloseNow()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		for _, m := range unpackMsgs(data) {
			if ws.Write(ctx, websocket.MessageBinary, m) != nil {
				break // the server closed the connection: a documented answer
			}
		}
		// Drain until the server answers a ping or closes.
		_ = ws.Write(ctx, websocket.MessageBinary, wire.AppendPing(nil, wire.KindPing, &wire.Ping{Nonce: 1}))
		for {
			_, msg, err := ws.Read(ctx)
			if err != nil {
				if code := websocket.CloseStatus(err); code == plugin.StatusInternal {
					t.Fatalf("the server failed on this input: %v", err)
				}
				break
			}
			if kind, _, _, err := wire.Open(msg, nil); err == nil && kind == wire.KindPong {
				break
			}
		}
		if n := h.srv.Stats().Refusals[plugin.RefusedPanic]; n != 0 {
			t.Fatalf("%d panics while handling input", n)
		}
		expectAlive(t, honest)
	})
}
