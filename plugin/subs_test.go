package plugin_test

import (
	"context"
	"log/slog"
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

// TestEntitySubscription: an entity subscribed by itself is in scope
// wherever it is, with all its components, while the client's component
// subscriptions cover only Position within its radius.
func TestEntitySubscription(t *testing.T) {
	reg := standardRegistry()
	h := newHarness(t, reg, &plugin.Options{DefaultRadius: 100}, 2*time.Millisecond)
	defer h.close()
	h.do(func(w donburi.World) {
		near := w.Create(components.Replicated, components.Position, components.Health)
		components.Health.SetValue(w.Entry(near), components.HealthData{Current: 1, Max: 1})
		far := w.Create(components.Replicated, components.Position, components.Health, components.Name)
		components.Position.SetValue(w.Entry(far), components.PositionData{X: 5000, Y: 5000})
		components.Name.SetValue(w.Entry(far), components.NameData{Value: "far away"})
	})
	h.ticks(2)
	farTag := findTag(h, func(e *donburi.Entry) bool { return e.HasComponent(components.Name) })
	rc := dialRaw(t, h.url, reg, true)
	defer rc.close()
	pos, _ := reg.Of(components.Position)
	subscribeTo(rc, pos.Index())
	rc.send(wire.AppendSubscribe(nil, wire.KindSubscribe, &wire.Subscribe{Subs: []wire.Sub{{Kind: wire.SubEntity, ID: uint64(farTag.NetID), Gen: uint64(farTag.Gen)}}}))
	m := newRawMirror(reg)
	testutil.Eventually(t, 5*time.Second, "near (Position only) and far (everything)", func() bool {
		_, bodies, _ := rc.snapshot()
		if err := m.apply(bodies); err != nil {
			t.Fatal(err)
		}
		if len(m.ents) != 2 {
			return false
		}
		farComps := m.ents[uint64(farTag.NetID)]
		for id, cs := range m.ents {
			if id != uint64(farTag.NetID) && len(cs) != 1 {
				return false
			}
		}
		return len(farComps) == 3
	})
	// Unsubscribing the entity takes it out of scope (it is out of range).
	rc.send(wire.AppendSubscribe(nil, wire.KindUnsubscribe, &wire.Subscribe{Subs: []wire.Sub{{Kind: wire.SubEntity, ID: uint64(farTag.NetID), Gen: uint64(farTag.Gen)}}}))
	testutil.Eventually(t, 5*time.Second, "far entity to leave", func() bool {
		_, bodies, _ := rc.snapshot()
		if err := m.apply(bodies); err != nil {
			t.Fatal(err)
		}
		_, ok := m.ents[uint64(farTag.NetID)]
		return !ok && len(m.ents) == 1
	})
}

// TestExplicitTouch: a component registered Explicit is sent only after
// Registry.Touch, and an idle world sends no batches at all.
func TestExplicitTouch(t *testing.T) {
	reg := components.NewRegistry()
	sc := components.Register(reg, "test.score", score, &components.Options{Explicit: true})
	h := newHarness(t, reg, nil, 2*time.Millisecond)
	defer h.close()
	var e donburi.Entity
	h.do(func(w donburi.World) { e = w.Create(components.Replicated, score) })
	rc := dialRaw(t, h.url, reg, true)
	defer rc.close()
	rc.subscribeAll()
	value := func() (int32, int) {
		_, bodies, _ := rc.snapshot()
		m := newRawMirror(reg)
		if err := m.apply(bodies); err != nil {
			t.Fatal(err)
		}
		for _, cs := range m.ents {
			if v, ok := cs[uint64(sc.Index())]; ok {
				return (*scoreData)(v).Points, len(bodies)
			}
		}
		return -1, len(bodies)
	}
	testutil.Eventually(t, 5*time.Second, "spawn", func() bool { v, _ := value(); return v == 0 })
	h.do(func(w donburi.World) { score.Get(w.Entry(e)).Points = 5 })
	h.ticks(10)
	if v, _ := value(); v != 0 {
		t.Fatalf("untouched Explicit component was sent: %d", v)
	}
	_, idle := value()
	h.ticks(10)
	if _, n := value(); n != idle {
		t.Fatalf("%d batches sent on idle ticks", n-idle)
	}
	h.do(func(w donburi.World) { reg.Touch(w.Entry(e), score) })
	testutil.Eventually(t, 5*time.Second, "touched value", func() bool { v, _ := value(); return v == 5 })
}

// errorCounter is a slog handler that counts records at Error level.
type errorCounter struct{ n atomic.Int64 }

func (h *errorCounter) Enabled(context.Context, slog.Level) bool { return true }
func (h *errorCounter) Handle(_ context.Context, r slog.Record) error {
	if r.Level >= slog.LevelError {
		h.n.Add(1)
	}
	return nil
}
func (h *errorCounter) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *errorCounter) WithGroup(string) slog.Handler      { return h }

// TestVanishedPeersAreNotErrors: clients that drop their connections in
// every way a peer can are never logged at Error level.
func TestVanishedPeersAreNotErrors(t *testing.T) {
	reg := standardRegistry()
	counter := &errorCounter{}
	h := newHarness(t, reg, &plugin.Options{Logger: slog.New(counter)}, 2*time.Millisecond)
	defer h.close()
	h.do(func(w donburi.World) {
		for i := 0; i < 50; i++ {
			w.Create(components.Replicated, components.Position)
		}
	})
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { // keep the world changing so writes are in flight
		defer close(done)
		// Paced, every millisecond (about every tick): the churn waits
		// for no result.
		pace := time.NewTicker(time.Millisecond)
		defer pace.Stop()
		for {
			h.do(func(w donburi.World) {
				for _, a := range w.Archetypes() {
					if a.Layout().HasComponent(components.Position) {
						for _, e := range a.Entities() {
							components.Position.Get(w.Entry(e)).X++
						}
					}
				}
			})
			select {
			case <-stop:
				return
			case <-pace.C:
			}
		}
	}()
	for i := 0; i < 60; i++ {
		rc := dialRaw(t, h.url, reg, i%3 != 0)
		rc.subscribeAll()
		h.ticks(1)
		switch i % 3 {
		case 0:
			rc.ws.CloseNow() // vanish mid-stream
		case 1:
			rc.close()
		case 2:
			rc.ws.CloseNow()
			<-rc.done
		}
	}
	close(stop)
	<-done
	testutil.Eventually(t, 10*time.Second, "clients freed", func() bool { return h.srv.Stats().Clients == 0 })
	if n := counter.n.Load(); n != 0 {
		t.Fatalf("%d Error-level logs for peers that simply left", n)
	}
}

// TestOversizedMessage: a message over the read limit closes that
// connection with 1009 (message too big); the server goes on.
func TestOversizedMessage(t *testing.T) {
	reg := standardRegistry()
	h := newHarness(t, reg, &plugin.Options{ReadLimit: 4 << 10}, 2*time.Millisecond)
	defer h.close()
	good := dialRaw(t, h.url, reg, true)
	defer good.close()
	bad := dialRaw(t, h.url, reg, false)
	defer bad.ws.CloseNow()
	big := wire.AppendMutate(nil, &wire.Mutate{Request: 1, ID: 1, Gen: 1, Value: make([]byte, 8<<10)})
	bad.send(big)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, _, err := bad.ws.Read(ctx)
	if code := websocket.CloseStatus(err); code != websocket.StatusMessageTooBig {
		t.Fatalf("close status %v (%v), want 1009", code, err)
	}
	before := h.srv.CurrentTick()
	h.ticks(3)
	if h.srv.CurrentTick() < before+3 {
		t.Fatal("server stopped ticking")
	}
	testutil.Eventually(t, 5*time.Second, "only the good client left", func() bool { return h.srv.Stats().Clients == 1 })
}

// TestEntitySubscriptionInScope: subscribing to an entity that is already
// in scope for its position sends its other components at once, and
// unsubscribing removes them at once, though the entity does not change.
func TestEntitySubscriptionInScope(t *testing.T) {
	reg := standardRegistry()
	h := newHarness(t, reg, nil, 2*time.Millisecond)
	defer h.close()
	var e donburi.Entity
	h.do(func(w donburi.World) {
		e = w.Create(components.Replicated, components.Position, components.Health)
		components.Health.SetValue(w.Entry(e), components.HealthData{Current: 7, Max: 9})
	})
	h.ticks(2)
	var tag components.ReplicatedData
	h.do(func(w donburi.World) { tag = *components.Replicated.Get(w.Entry(e)) })
	pos, _ := reg.Of(components.Position)
	health, _ := reg.Of(components.Health)
	rc := dialRaw(t, h.url, reg, true)
	defer rc.close()
	subscribeTo(rc, pos.Index())
	holds := func(comp int) func() bool {
		return func() bool {
			_, bodies, _ := rc.snapshot()
			held := map[int]bool{}
			for _, b := range bodies {
				for _, sp := range b.Spawns {
					if sp.ID == uint64(tag.NetID) {
						clear(held)
						for _, cv := range sp.Comps {
							held[int(cv.Comp)] = true
						}
					}
				}
				for _, u := range b.Updates {
					if u.ID == uint64(tag.NetID) {
						held[int(u.Comp)] = true
					}
				}
				for _, r := range b.Removals {
					if r.ID == uint64(tag.NetID) {
						delete(held, int(r.Comp))
					}
				}
			}
			return held[comp]
		}
	}
	testutil.Eventually(t, 5*time.Second, "the entity's position", holds(pos.Index()))
	sub := &wire.Subscribe{Subs: []wire.Sub{{Kind: wire.SubEntity, ID: uint64(tag.NetID), Gen: uint64(tag.Gen)}}}
	rc.send(wire.AppendSubscribe(nil, wire.KindSubscribe, sub))
	testutil.Eventually(t, 5*time.Second, "its health, once subscribed to", holds(health.Index()))
	rc.send(wire.AppendSubscribe(nil, wire.KindUnsubscribe, sub))
	testutil.Eventually(t, 5*time.Second, "its health removed, once unsubscribed", func() bool { return !holds(health.Index())() })
}
