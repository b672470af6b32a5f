package plugin_test

import (
	"github.com/ebisync/ebisync"

	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/yohamta/donburi"

	"github.com/ebisync/ebisync/components"
	"github.com/ebisync/ebisync/internal/testutil"
	"github.com/ebisync/ebisync/internal/wire"
	"github.com/ebisync/ebisync/netclient"
	"github.com/ebisync/ebisync/plugin"
)

type healthV2 struct {
	Current int32
	Max     int64 // the server has int32
}

var healthV2Type = donburi.NewComponentType[healthV2]()

func TestSchemaMismatch(t *testing.T) {
	h := newHarness(t, standardRegistry(), nil, 5*time.Millisecond)
	defer h.close()
	creg := components.NewRegistry()
	components.Register(creg, "ebisync.position", components.Position, &components.Options{Interpolate: true})
	components.Register(creg, "ebisync.velocity", components.Velocity, nil)
	components.Register(creg, "ebisync.name", components.Name, nil)
	components.Register(creg, "ebisync.health", healthV2Type, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := netclient.Dial(ctx, h.url, creg, &netclient.Options{Logger: quietLogger()})
	if err == nil {
		c.Close()
		t.Fatal("Dial succeeded with a mismatched schema")
	}
	msg := err.Error()
	if !strings.Contains(msg, `"ebisync.health"`) || !strings.Contains(msg, `"Max"`) || !strings.Contains(msg, "int64") {
		t.Fatalf("Dial error %q does not name the component, the field and the difference", msg)
	}
	t.Logf("Dial: %v", err)
	if h.srv.Stats().Clients != 0 {
		t.Fatal("a refused client holds server state")
	}
}

// findNetID returns the tag of the first replicated entity matching ok.
func findTag(h *harness, ok func(*donburi.Entry) bool) components.ReplicatedData {
	var tag components.ReplicatedData
	h.do(func(w donburi.World) {
		for _, a := range w.Archetypes() {
			if !a.Layout().HasComponent(components.Replicated) {
				continue
			}
			for _, e := range a.Entities() {
				entry := w.Entry(e)
				if ok(entry) {
					tag = *components.Replicated.Get(entry)
				}
			}
		}
	})
	return tag
}

func TestMutationBadInput(t *testing.T) {
	reg, sc, nc := mutationRegistry()
	h := newHarness(t, reg, &plugin.Options{Authorize: plugin.AllowAll, MutationRate: 20, MutationBurst: 20, ReadLimit: 64 << 10}, 2*time.Millisecond)
	defer h.close()
	var ents []donburi.Entity
	h.do(func(w donburi.World) {
		for i := 0; i < 50; i++ {
			e := w.Create(components.Replicated, components.Position, score, note)
			components.Position.SetValue(w.Entry(e), components.PositionData{X: float64(i), Y: 1})
			ents = append(ents, e)
		}
	})
	h.ticks(2)
	target := findTag(h, func(*donburi.Entry) bool { return true })

	// A well-behaved client watches the world throughout.
	good := startClientLoop(t, h.url, reg, nil)
	defer good.close()
	if err := good.c.SubscribeAll(); err != nil {
		t.Fatal(err)
	}

	bad := dialRaw(t, h.url, reg, true)
	defer bad.close()
	huge := make([]byte, 20<<10) // over the mutation value bound, under the read limit
	huge[0] = 0xff
	cases := []struct {
		name string
		m    wire.Mutate
		want wire.Status
	}{
		{"unknown entity", wire.Mutate{ID: 4000, Gen: 1, Comp: uint64(sc.Index()), Value: encodeValue(sc, scoreData{Points: 1})}, wire.StatusNotFound},
		{"stale generation", wire.Mutate{ID: uint64(target.NetID), Gen: uint64(target.Gen) + 5, Comp: uint64(sc.Index()), Value: encodeValue(sc, scoreData{Points: 1})}, wire.StatusNotFound},
		{"unknown component", wire.Mutate{ID: uint64(target.NetID), Gen: uint64(target.Gen), Comp: 63, Value: []byte{1}}, wire.StatusNotFound},
		{"malformed value", wire.Mutate{ID: uint64(target.NetID), Gen: uint64(target.Gen), Comp: uint64(nc.Index()), Value: []byte{0x80}}, wire.StatusValidationError},
		{"string longer than its bytes", wire.Mutate{ID: uint64(target.NetID), Gen: uint64(target.Gen), Comp: uint64(nc.Index()), Value: []byte{0x7f, 'a'}}, wire.StatusValidationError},
		{"oversized value", wire.Mutate{ID: uint64(target.NetID), Gen: uint64(target.Gen), Comp: uint64(nc.Index()), Value: huge}, wire.StatusValidationError},
	}
	for i := range cases {
		cases[i].m.Request = uint64(i + 1)
		bad.send(wire.AppendMutate(nil, &cases[i].m))
	}
	testutil.Eventually(t, 5*time.Second, "bad-input results", func() bool { return len(bad.results()) >= len(cases) })
	for i, tc := range cases {
		if r := bad.results()[uint64(i+1)]; r.Status != tc.want {
			t.Errorf("%s: %s %q, want %s", tc.name, r.Status.String(), r.Message, tc.want.String())
		}
	}
	// A flood past the rate limit: RateLimited, not a crash.
	const flood = 300
	for i := 0; i < flood; i++ {
		bad.send(wire.AppendMutate(nil, &wire.Mutate{Request: uint64(100 + i), ID: uint64(target.NetID), Gen: uint64(target.Gen), Comp: uint64(sc.Index()), Value: encodeValue(sc, scoreData{Points: int32(i)})}))
	}
	testutil.Eventually(t, 10*time.Second, "flood results", func() bool { return len(bad.results()) >= len(cases)+flood })
	limited := 0
	for i := 0; i < flood; i++ {
		if bad.results()[uint64(100+i)].Status == wire.StatusRateLimited {
			limited++
		}
	}
	if limited < flood/2 {
		t.Fatalf("only %d of %d flooded mutations were rate limited", limited, flood)
	}

	// The server kept ticking and the good client still converges.
	h.do(func(w donburi.World) {
		for i, e := range ents {
			components.Position.Get(w.Entry(e)).X += float64(i) / 2
		}
	})
	before := h.srv.CurrentTick()
	h.ticks(10)
	if h.srv.CurrentTick() < before+10 {
		t.Fatal("server stopped ticking")
	}
	all := map[int]bool{}
	for i := range reg.Len() {
		all[i] = true
	}
	var want map[uint64]expectation
	h.do(func(w donburi.World) { want, _ = view(w, reg, all, 0, 0, 0, 1) })
	testutil.Eventually(t, 5*time.Second, "good client to converge", func() bool {
		var got map[uint64]expectation
		good.do(func(mw donburi.World) { got = mirrorView(mw, reg) })
		return compareViews(reg, got, want, nil) == nil
	})
	// A protocol violation (garbage bytes) closes that connection only.
	bad.send([]byte{0x7f, 1, 2, 3})
	<-bad.done
	if _, _, err := bad.snapshot(); err == nil {
		t.Fatal("garbage did not end the bad connection")
	}
	h.ticks(3)
	if !good.c.Connected() {
		t.Fatal("the good client lost its connection")
	}
}

func TestOptimisticRevert(t *testing.T) {
	reg, _, _ := mutationRegistry()
	refuse := true
	h := newHarness(t, reg, &plugin.Options{Authorize: func(r *plugin.Request) error {
		if refuse {
			return errors.New("no")
		}
		return nil
	}}, 2*time.Millisecond)
	defer h.close()
	h.do(func(w donburi.World) {
		e := w.Create(components.Replicated, score)
		score.SetValue(w.Entry(e), scoreData{Points: 10})
	})
	p := startClientLoop(t, h.url, reg, nil)
	defer p.close()
	if err := p.c.SubscribeAll(); err != nil {
		t.Fatal(err)
	}
	var local donburi.Entity
	testutil.Eventually(t, 5*time.Second, "entity mirrored", func() bool {
		ok := false
		p.do(func(w donburi.World) {
			for _, a := range w.Archetypes() {
				if a.Layout().HasComponent(score) && len(a.Entities()) > 0 {
					local, ok = a.Entities()[0], true
				}
			}
		})
		return ok
	})
	read := func() int32 {
		var v int32
		p.do(func(w donburi.World) { v = score.Get(w.Entry(local)).Points })
		return v
	}
	var ch <-chan netclient.MutationResult
	var during int32
	p.do(func(w donburi.World) {
		ch = netclient.Mutate(p.c, local, testutil.Handle(p.c.Registry(), score), scoreData{Points: 99}, &netclient.MutateOptions{Optimistic: true})
		during = score.Get(w.Entry(local)).Points
	})
	if during != 99 {
		t.Fatalf("optimistic value not applied at once: %d", during)
	}
	var res netclient.MutationResult
	select {
	case res = <-ch:
	case <-time.After(5 * time.Second):
		t.Fatal("no mutation result")
	}
	if res.Status != ebisync.Forbidden {
		t.Fatalf("status %v, want Forbidden", res.Status)
	}
	testutil.Eventually(t, 5*time.Second, "revert", func() bool { return read() == 10 })

	// Accepted: the mirror keeps (then confirms) the value.
	h.do(func(donburi.World) { refuse = false })
	p.do(func(w donburi.World) {
		ch = netclient.Mutate(p.c, local, testutil.Handle(p.c.Registry(), score), scoreData{Points: 42}, &netclient.MutateOptions{Optimistic: true})
	})
	select {
	case res = <-ch:
	case <-time.After(5 * time.Second):
		t.Fatal("no mutation result")
	}
	if res.Status != ebisync.Ok {
		t.Fatalf("status %v %q, want Ok", res.Status, res.Message)
	}
	testutil.Eventually(t, 5*time.Second, "confirmed value", func() bool { return read() == 42 })
	var server int32
	h.do(func(w donburi.World) {
		for _, a := range w.Archetypes() {
			if a.Layout().HasComponent(score) {
				server = score.Get(w.Entry(a.Entities()[0])).Points
			}
		}
	})
	if server != 42 {
		t.Fatalf("server value %d, want 42", server)
	}
}
