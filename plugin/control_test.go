package plugin_test

import (
	"sync"
	"testing"
	"time"

	"github.com/yohamta/donburi"
	"github.com/yohamta/donburi/features/transform"

	"github.com/ebisync/ebisync/components"
	"github.com/ebisync/ebisync/internal/testutil"
	"github.com/ebisync/ebisync/internal/wire"
	"github.com/ebisync/ebisync/plugin"
)

// controlOf reads the Control component of every replicated entity, by net
// id.
func controlOf(h *harness) map[uint32]uint64 {
	out := map[uint32]uint64{}
	h.do(func(w donburi.World) {
		for _, a := range w.Archetypes() {
			if !a.Layout().HasComponent(components.Replicated) {
				continue
			}
			for _, e := range a.Entities() {
				entry := w.Entry(e)
				id := components.Replicated.Get(entry).NetID
				if entry.HasComponent(components.Control) {
					out[id] = components.Control.Get(entry).Client
				} else {
					out[id] = 0
				}
			}
		}
	})
	return out
}

func TestExclusiveControl(t *testing.T) {
	reg, sc, _ := mutationRegistry()
	h := newHarness(t, reg, &plugin.Options{Authorize: plugin.RequireControl}, 2*time.Millisecond)
	defer h.close()

	var parent, child, grandchild components.ReplicatedData
	h.do(func(w donburi.World) {
		p := w.Create(components.Replicated, transform.Transform, score)
		c := w.Create(components.Replicated, transform.Transform, score)
		g := w.Create(components.Replicated, transform.Transform)
		transform.AppendChild(w.Entry(p), w.Entry(c), false)
		transform.AppendChild(w.Entry(c), w.Entry(g), false)
	})
	h.ticks(2)
	h.do(func(w donburi.World) {
		for _, a := range w.Archetypes() {
			if !a.Layout().HasComponent(components.Replicated) {
				continue
			}
			for _, e := range a.Entities() {
				entry := w.Entry(e)
				tag := *components.Replicated.Get(entry)
				_, hasParent := transform.GetParent(entry)
				kids, _ := transform.GetChildren(entry)
				switch {
				case !hasParent:
					parent = tag
				case len(kids) > 0:
					child = tag
				default:
					grandchild = tag
				}
			}
		}
	})

	a := dialRaw(t, h.url, reg, true)
	defer a.close()
	b := dialRaw(t, h.url, reg, true)
	defer b.close()
	take := func(rc *rawClient, req uint64, tag components.ReplicatedData, timeout uint64, children bool) {
		rc.send(wire.AppendControl(nil, &wire.Control{Request: req, Op: wire.ControlTake, ID: uint64(tag.NetID), Gen: uint64(tag.Gen), TimeoutMs: timeout, Children: children}))
	}
	reply := func(rc *rawClient, req uint64) wire.ControlReply {
		t.Helper()
		var r wire.ControlReply
		testutil.Eventually(t, 5*time.Second, "control reply", func() bool {
			var ok bool
			r, ok = rc.controlReplies()[req]
			return ok
		})
		return r
	}

	// Race: both take the parent at once; exactly one wins.
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); take(a, 1, parent, 0, true) }()
	go func() { defer wg.Done(); take(b, 1, parent, 0, true) }()
	wg.Wait()
	ra, rb := reply(a, 1), reply(b, 1)
	winner, loser := a, b
	if rb.Result == wire.ControlTaken {
		winner, loser = b, a
		ra, rb = rb, ra
	}
	if ra.Result != wire.ControlTaken || rb.Result != wire.ControlAlreadyControlled || rb.Holder != winner.wel.ClientID {
		t.Fatalf("race: replies %+v and %+v; want one Taken and one AlreadyControlled naming the winner", ra, rb)
	}
	// Propagation reached the children, and is visible as a component.
	h.ticks(2)
	ctl := controlOf(h)
	for _, tag := range []components.ReplicatedData{parent, child, grandchild} {
		if ctl[tag.NetID] != winner.wel.ClientID {
			t.Fatalf("entity %d controlled by %d, want %d (propagation)", tag.NetID, ctl[tag.NetID], winner.wel.ClientID)
		}
	}
	// The loser cannot take a child either, nor mutate (RequireControl).
	take(loser, 2, child, 0, false)
	if r := reply(loser, 2); r.Result != wire.ControlAlreadyControlled {
		t.Fatalf("taking a controlled child: %+v", r)
	}
	loser.send(wire.AppendMutate(nil, &wire.Mutate{Request: 3, ID: uint64(child.NetID), Gen: uint64(child.Gen), Comp: uint64(sc.Index()), Value: encodeValue(sc, scoreData{Points: 1})}))
	winner.send(wire.AppendMutate(nil, &wire.Mutate{Request: 3, ID: uint64(child.NetID), Gen: uint64(child.Gen), Comp: uint64(sc.Index()), Value: encodeValue(sc, scoreData{Points: 2})}))
	testutil.Eventually(t, 5*time.Second, "mutation results", func() bool {
		_, l := loser.results()[3]
		_, w := winner.results()[3]
		return l && w
	})
	if r := loser.results()[3]; r.Status != wire.StatusForbidden {
		t.Fatalf("loser's mutation: %s %q, want Forbidden", r.Status.String(), r.Message)
	}
	if r := winner.results()[3]; r.Status != wire.StatusOk {
		t.Fatalf("winner's mutation: %s %q, want Ok", r.Status.String(), r.Message)
	}
	// Release, by someone who does not hold it (nor own it, so Authorize
	// refuses) and by the holder.
	loser.send(wire.AppendControl(nil, &wire.Control{Request: 4, Op: wire.ControlRelease, ID: uint64(parent.NetID), Gen: uint64(parent.Gen)}))
	if r := reply(loser, 4); r.Result != wire.ControlForbidden || r.Holder != winner.wel.ClientID {
		t.Fatalf("release by non-holder: %+v", r)
	}
	winner.send(wire.AppendControl(nil, &wire.Control{Request: 5, Op: wire.ControlRelease, ID: uint64(parent.NetID), Gen: uint64(parent.Gen)}))
	if r := reply(winner, 5); r.Result != wire.ControlReleased {
		t.Fatalf("release by holder: %+v", r)
	}
	h.ticks(2)
	for id, holder := range controlOf(h) {
		if holder != 0 {
			t.Fatalf("entity %d still controlled by %d after release", id, holder)
		}
	}
	// Timeout releases.
	take(loser, 6, child, 50, false)
	if r := reply(loser, 6); r.Result != wire.ControlTaken {
		t.Fatalf("take with timeout: %+v", r)
	}
	testutil.Eventually(t, 5*time.Second, "timeout to release", func() bool { return controlOf(h)[child.NetID] == 0 })
	// Disconnect releases.
	take(loser, 7, grandchild, 0, false)
	if r := reply(loser, 7); r.Result != wire.ControlTaken {
		t.Fatalf("take: %+v", r)
	}
	loser.close()
	testutil.Eventually(t, 5*time.Second, "disconnect to release", func() bool { return controlOf(h)[grandchild.NetID] == 0 })
	// Unknown entity.
	take(winner, 8, components.ReplicatedData{NetID: 999, Gen: 1}, 0, false)
	if r := reply(winner, 8); r.Result != wire.ControlNotFound {
		t.Fatalf("take unknown: %+v", r)
	}
}

func TestBandwidthBudget(t *testing.T) {
	reg := standardRegistry()
	const perSecond, rate = 6000, 60
	h := newHarness(t, reg, &plugin.Options{BytesPerSecond: perSecond, TickRate: rate}, 2*time.Millisecond)
	defer h.close()
	rc := dialRaw(t, h.url, reg, true)
	defer rc.close()
	rc.subscribeAll()
	var ents []donburi.Entity
	h.do(func(w donburi.World) {
		for i := 0; i < 400; i++ {
			e := w.Create(components.Replicated, components.Position, components.Name)
			components.Position.SetValue(w.Entry(e), components.PositionData{X: float64(i), Y: float64(i % 17)})
			components.Name.SetValue(w.Entry(e), components.NameData{Value: "entity with a fairly long name to fill bytes"})
			ents = append(ents, e)
		}
	})
	for round := 0; round < 60; round++ {
		h.do(func(w donburi.World) {
			for i, e := range ents {
				if (i+round)%3 == 0 {
					components.Position.Get(w.Entry(e)).X += 1.5
				}
			}
		})
		h.ticks(1)
	}
	m := newRawMirror(reg)
	subs := map[int]bool{}
	for i := range reg.Len() {
		subs[i] = true
	}
	var want map[uint64]expectation
	h.do(func(w donburi.World) { want, _ = view(w, reg, subs, 0, 0, 0, 1) })
	testutil.Eventually(t, 30*time.Second, "every change delivered", func() bool {
		_, bodies, err := rc.snapshot()
		if err != nil {
			t.Fatal(err)
		}
		if err := m.apply(bodies); err != nil {
			t.Fatal(err)
		}
		return m.diff(want, nil) == nil
	})
	msgs, bodies, _ := rc.snapshot()
	for i, msg := range msgs {
		// The budget covers the ticks since the previous batch.
		limit := perSecond * int(bodies[i].TickAdvance) / rate
		if len(msg) > limit {
			t.Fatalf("batch %d is %d bytes, over the budget of %d for %d ticks", i, len(msg), limit, bodies[i].TickAdvance)
		}
	}
	t.Logf("%d batches delivered 400 entities and their changes within %d B/s", len(msgs), perSecond)
}

// TestControlThenCreate guards against a donburi v1.15.8 bug: World.Create
// panics for an archetype whose first entity arrived through AddComponent,
// which is how taking control adds the Control component.
func TestControlThenCreate(t *testing.T) {
	reg, _, _ := mutationRegistry()
	h := newHarness(t, reg, &plugin.Options{Authorize: plugin.AllowAll}, 2*time.Millisecond)
	defer h.close()
	h.do(func(w donburi.World) { w.Create(components.Replicated, score, note) })
	h.ticks(2)
	tag := findTag(h, func(*donburi.Entry) bool { return true })
	rc := dialRaw(t, h.url, reg, true)
	defer rc.close()
	rc.send(wire.AppendControl(nil, &wire.Control{Request: 1, Op: wire.ControlTake, ID: uint64(tag.NetID), Gen: uint64(tag.Gen)}))
	testutil.Eventually(t, 5*time.Second, "control taken", func() bool { return rc.controlReplies()[1].Result == wire.ControlTaken })
	h.do(func(w donburi.World) {
		// The game creates an entity of the layout the server moved into.
		e := w.Create(components.Replicated, score, note, components.Control)
		if !w.Valid(e) {
			t.Error("created entity is not valid")
		}
	})
	h.ticks(2)
}
