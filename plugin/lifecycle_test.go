package plugin_test

import (
	"context"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/yohamta/donburi"

	"github.com/ebisync/ebisync/components"
	"github.com/ebisync/ebisync/internal/codec"
	"github.com/ebisync/ebisync/internal/hostile"
	"github.com/ebisync/ebisync/internal/testutil"
	"github.com/ebisync/ebisync/internal/wire"
	"github.com/ebisync/ebisync/plugin"
)

func heapAfterGC() uint64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

func TestReconnectSoak(t *testing.T) {
	cycles := 2000
	if testing.Short() {
		cycles = 200
	}
	reg := standardRegistry()
	h := newHarness(t, reg, nil, 2*time.Millisecond)
	defer h.close()
	h.do(func(w donburi.World) {
		for i := 0; i < 20; i++ {
			e := w.Create(components.Replicated, components.Position, components.Name)
			components.Name.SetValue(w.Entry(e), components.NameData{Value: "e"})
		}
	})
	// Warm up once so lazily allocated server state is not counted.
	rc := dialRaw(t, h.url, reg, true)
	rc.subscribeAll()
	h.ticks(3)
	rc.close()
	testutil.Eventually(t, 5*time.Second, "warm-up client to leave", func() bool { return h.srv.Stats().Clients == 0 })

	baseG := runtime.NumGoroutine()
	baseHeap := heapAfterGC()
	for i := 0; i < cycles; i++ {
		rc := dialRaw(t, h.url, reg, false)
		rc.subscribeAll()
		rc.send(wire.AppendSubscribe(nil, wire.KindSubscribe, &wire.Subscribe{Subs: []wire.Sub{{Kind: wire.SubEntity, ID: 1, Gen: 1}}}))
		if i%2 == 0 {
			rc.ws.Close(websocket.StatusNormalClosure, "")
		} else {
			rc.ws.CloseNow() // vanish without a close frame
		}
	}
	testutil.Eventually(t, 20*time.Second, "every client freed", func() bool {
		st := h.srv.Stats()
		return st.Clients == 0 && st.Connections == 0 && st.Subscriptions == 0 && st.ScopeEntries == 0
	})
	st := h.srv.Stats()
	if st.Connects < uint64(cycles) {
		t.Fatalf("server counted %d handshakes, want >= %d", st.Connects, cycles)
	}
	testutil.Eventually(t, 10*time.Second, "goroutines back to baseline", func() bool { return runtime.NumGoroutine() <= baseG })
	if grown := int64(heapAfterGC()) - int64(baseHeap); grown > 2<<20 {
		t.Fatalf("heap grew by %d bytes over %d cycles, want < 2 MiB", grown, cycles)
	}
}

type blobData struct {
	Data string
}

var blob = donburi.NewComponentType[blobData]()

func randText(r *rand.Rand, n int) string {
	var b strings.Builder
	for b.Len() < n {
		b.WriteByte(byte('!' + r.IntN(90)))
	}
	return b.String()
}

func TestSlowClient(t *testing.T) {
	reg := standardRegistry()
	components.Register(reg, "test.blob", blob, nil)
	h := newHarness(t, reg, &plugin.Options{WriteTimeout: 400 * time.Millisecond}, 4*time.Millisecond)
	defer h.close()
	rng := rand.New(rand.NewPCG(1, 2))
	var ents []donburi.Entity
	h.do(func(w donburi.World) {
		for i := 0; i < 16; i++ {
			ents = append(ents, w.Create(components.Replicated, blob))
		}
	})
	fast1 := dialRaw(t, h.url, reg, true)
	defer fast1.close()
	fast2 := dialRaw(t, h.url, reg, true)
	defer fast2.close()
	slow := dialRaw(t, h.url, reg, false) // never reads
	defer slow.ws.CloseNow()
	for _, rc := range []*rawClient{fast1, fast2, slow} {
		rc.subscribeAll()
	}
	testutil.Eventually(t, 5*time.Second, "three clients", func() bool { return h.srv.Stats().Clients == 3 })

	// Every tick, every blob changes to incompressible text: ~32 KiB a
	// tick. The churn is paced at the tick period, the game's own rate;
	// it waits for no result.
	stop := make(chan struct{})
	churned := make(chan struct{})
	go func() {
		defer close(churned)
		pace := time.NewTicker(4 * time.Millisecond)
		defer pace.Stop()
		for {
			h.do(func(w donburi.World) {
				for _, e := range ents {
					blob.SetValue(w.Entry(e), blobData{Data: randText(rng, 2048)})
				}
			})
			select {
			case <-stop:
				return
			case <-pace.C:
			}
		}
	}()
	startTick := h.srv.CurrentTick()
	var peakHeap uint64
	testutil.Eventually(t, 20*time.Second, "slow client dropped", func() bool {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		peakHeap = max(peakHeap, ms.HeapAlloc)
		return h.srv.Stats().Clients == 2
	})
	h.ticks(20)
	close(stop)
	<-churned
	endTick := h.srv.CurrentTick()
	st := h.srv.Stats()
	if st.SkippedBusy == 0 {
		t.Errorf("the slow client's writer was never found busy")
	}
	if peakHeap > 256<<20 {
		t.Errorf("heap peaked at %d MiB while the client was slow; want bounded", peakHeap>>20)
	}
	// The fast clients kept receiving, and hold the final values.
	want := map[uint64]string{}
	h.do(func(w donburi.World) {
		for _, e := range ents {
			entry := w.Entry(e)
			want[uint64(components.Replicated.Get(entry).NetID)] = blob.Get(entry).Data
		}
	})
	bc, _ := testutil.Codec(reg.Of(blob))
	h.ticks(5)
	for i, rc := range []*rawClient{fast1, fast2} {
		testutil.Eventually(t, 10*time.Second, "fast client to converge", func() bool {
			got := rc.blobValues(bc)
			for id, v := range want {
				if got[id] != v {
					return false
				}
			}
			return true
		})
		_, bodies, err := rc.snapshot()
		if err != nil {
			t.Fatalf("fast client %d: %v", i, err)
		}
		n := 0
		for _, b := range bodies {
			if len(b.Updates) > 0 {
				n++
			}
		}
		t.Logf("fast client %d: %d update batches over %d ticks", i, n, endTick-startTick)
		if n < 20 {
			t.Errorf("fast client %d got only %d update batches", i, n)
		}
	}
	// The slow client's connection was closed by the server.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		_, _, err := slow.ws.Read(ctx)
		if err != nil {
			if ctx.Err() != nil {
				t.Fatal("slow client's connection is still open")
			}
			t.Logf("slow client connection ended: %v", err)
			break
		}
	}
}

func TestSchemaMismatchRaw(t *testing.T) {
	reg := standardRegistry()
	h := newHarness(t, reg, nil, 5*time.Millisecond)
	defer h.close()
	hello := hostile.Hello(reg, "raw")
	for i := range hello.Components {
		if hello.Components[i].Name == "ebisync.health" {
			hello.Components[i].Fields[1].Type = "int64"
			hello.Components[i].Hash++
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, h.url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	if err := ws.Write(ctx, websocket.MessageBinary, wire.AppendHello(nil, hello)); err != nil {
		t.Fatal(err)
	}
	_, msg, err := ws.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	kind, body, _, err := wire.Open(msg, nil)
	if err != nil || kind != wire.KindError {
		t.Fatalf("got kind %d err %v, want an Error", kind, err)
	}
	e, err := wire.DecodeError(body)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(e.Message, "ebisync.health") || !strings.Contains(e.Message, "Max") {
		t.Fatalf("error %q does not name the component and field", e.Message)
	}
	_, _, err = ws.Read(ctx)
	if websocket.CloseStatus(err) != plugin.StatusSchema {
		t.Fatalf("close status %v, want %d", err, plugin.StatusSchema)
	}
}

// blobValues replays the client's batches into the latest blob text per
// entity.
func (rc *rawClient) blobValues(bc *codec.Codec) map[uint64]string {
	_, bodies, _ := rc.snapshot()
	out := map[uint64]string{}
	for _, b := range bodies {
		for _, sp := range b.Spawns {
			for _, cv := range sp.Comps {
				if cv.Comp == uint64(bc.Index()) {
					var v blobData
					bc.DecodeFull(cv.Value, unsafePtr(&v))
					out[sp.ID] = v.Data
				}
			}
		}
		for _, u := range b.Updates {
			if u.Comp == uint64(bc.Index()) {
				var v blobData
				v.Data = out[u.ID]
				if u.Delta {
					bc.DecodeDelta(u.Value, unsafePtr(&v))
				} else {
					bc.DecodeFull(u.Value, unsafePtr(&v))
				}
				out[u.ID] = v.Data
			}
		}
	}
	return out
}

// TestCloseDuringHandshake: a client that connects and never says Hello
// does not hold Close for the handshake timeout, and is told 1001 (going
// away) like every other client; one that does not even read is dropped
// after a short grace.
func TestCloseDuringHandshake(t *testing.T) {
	h := newHarness(t, standardRegistry(), &plugin.Options{HandshakeTimeout: time.Minute}, 5*time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	reader, _, err := websocket.Dial(ctx, h.url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer reader.CloseNow()
	deaf, _, err := websocket.Dial(ctx, h.url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer deaf.CloseNow()
	testutil.Eventually(t, 5*time.Second, "two handshakes", func() bool { return h.srv.Stats().Connections == 2 })
	closed := make(chan error, 1)
	go func() {
		_, _, err := reader.Read(ctx)
		closed <- err
	}()
	start := time.Now()
	h.close()
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Close took %s with handshakes pending", d)
	}
	if err := <-closed; websocket.CloseStatus(err) != websocket.StatusGoingAway {
		t.Fatalf("the client in its handshake saw %v, want close 1001", err)
	}
}

// TestCloseBound: Close returns within about a second even when a client
// never answers the close (it does not read at all).
func TestCloseBound(t *testing.T) {
	reg := standardRegistry()
	h := newHarness(t, reg, nil, 5*time.Millisecond)
	deaf := dialWS(t, h.url, reg, nil, true) // handshaken, then never reads
	defer deaf.CloseNow()
	testutil.Eventually(t, 5*time.Second, "the client to be admitted", func() bool { return h.srv.Stats().Clients == 1 })
	start := time.Now()
	h.close()
	if d := time.Since(start); d > 2500*time.Millisecond {
		t.Fatalf("Close took %v with a client that does not answer", d)
	}
}
