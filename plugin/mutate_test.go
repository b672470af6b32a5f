package plugin_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/yohamta/donburi"

	"github.com/ebisync/ebisync/components"
	"github.com/ebisync/ebisync/internal/codec"
	"github.com/ebisync/ebisync/internal/testutil"
	"github.com/ebisync/ebisync/internal/wire"
	"github.com/ebisync/ebisync/plugin"
)

type scoreData struct {
	Points int32
}

var score = donburi.NewComponentType[scoreData]()

type noteData struct {
	Text string
}

var note = donburi.NewComponentType[noteData]()

// mutationRegistry registers a client-writable Score (and Note), plus a
// read-only standard set.
func mutationRegistry() (*components.Registry, *codec.Codec, *codec.Codec) {
	reg := standardRegistry()
	sc := components.Register(reg, "test.score", score, &components.Options{ClientWritable: true})
	nc := components.Register(reg, "test.note", note, &components.Options{ClientWritable: true})
	return reg, codec.Of(sc.Component()), codec.Of(nc.Component())
}

// results collects mutation results seen by a raw client.
func (rc *rawClient) results() map[uint64]wire.MutationResult {
	_, bodies, _ := rc.snapshot()
	out := make(map[uint64]wire.MutationResult)
	for _, b := range bodies {
		for _, r := range b.Results {
			out[r.Request] = r
		}
	}
	return out
}

func (rc *rawClient) controlReplies() map[uint64]wire.ControlReply {
	_, bodies, _ := rc.snapshot()
	out := make(map[uint64]wire.ControlReply)
	for _, b := range bodies {
		for _, r := range b.Controls {
			out[r.Request] = r
		}
	}
	return out
}

func encodeValue[T any](c *codec.Codec, v T) []byte {
	return c.AppendFull(nil, unsafePtr(&v))
}

func TestMutationStatuses(t *testing.T) {
	reg, sc, _ := mutationRegistry()
	pos, _ := testutil.Codec(reg.Of(components.Position))
	opts := &plugin.Options{
		Authorize: func(req *plugin.Request) error {
			if req.Component != nil && req.Component.Name() == "test.score" {
				if v := req.Value.(*scoreData); v.Points == 666 {
					panic("authoriser bug")
				}
			}
			return plugin.DefaultAuthorize(req)
		},
		Validate: func(req *plugin.Request) error {
			if v, ok := req.Value.(*scoreData); ok && v.Points < 0 {
				return errors.New("points must not be negative")
			}
			return nil
		},
		// The burst covers the table but for its last row, which the
		// token bucket refuses.
		MutationRate:  0.01,
		MutationBurst: 10,
	}
	h := newHarness(t, reg, opts, 2*time.Millisecond)
	defer h.close()
	rc := dialRaw(t, h.url, reg, true)
	defer rc.close()
	rc.subscribeAll()
	me := rc.wel.ClientID

	var mine, theirs components.ReplicatedData
	h.do(func(w donburi.World) {
		a := w.Create(components.Replicated, components.Owner, score, components.Position)
		components.Owner.SetValue(w.Entry(a), components.OwnerData{Client: me})
		b := w.Create(components.Replicated, components.Owner, score)
		components.Owner.SetValue(w.Entry(b), components.OwnerData{Client: me + 1000})
	})
	h.ticks(2)
	h.do(func(w donburi.World) {
		for _, a := range w.Archetypes() {
			for _, e := range a.Entities() {
				entry := w.Entry(e)
				tag := components.Replicated.Get(entry)
				if components.Owner.Get(entry).Client == me {
					mine = *tag
				} else {
					theirs = *tag
				}
			}
		}
	})

	cases := []struct {
		name   string
		m      wire.Mutate
		want   wire.Status
		substr string
	}{
		{"ok", wire.Mutate{ID: uint64(mine.NetID), Gen: uint64(mine.Gen), Comp: uint64(sc.Index()), Value: encodeValue(sc, scoreData{Points: 7})}, wire.StatusOk, ""},
		{"forbidden not owner", wire.Mutate{ID: uint64(theirs.NetID), Gen: uint64(theirs.Gen), Comp: uint64(sc.Index()), Value: encodeValue(sc, scoreData{Points: 7})}, wire.StatusForbidden, "owner"},
		{"forbidden not writable", wire.Mutate{ID: uint64(mine.NetID), Gen: uint64(mine.Gen), Comp: uint64(pos.Index()), Value: encodeValue(pos, components.PositionData{X: 1})}, wire.StatusForbidden, "not client-writable"},
		{"not found entity", wire.Mutate{ID: 999, Gen: 1, Comp: uint64(sc.Index()), Value: encodeValue(sc, scoreData{})}, wire.StatusNotFound, "no entity"},
		{"not found generation", wire.Mutate{ID: uint64(mine.NetID), Gen: uint64(mine.Gen) + 1, Comp: uint64(sc.Index()), Value: encodeValue(sc, scoreData{})}, wire.StatusNotFound, "generation"},
		{"not found component", wire.Mutate{ID: uint64(mine.NetID), Gen: uint64(mine.Gen), Comp: 500, Value: []byte{0}}, wire.StatusNotFound, "unknown component"},
		{"validation", wire.Mutate{ID: uint64(mine.NetID), Gen: uint64(mine.Gen), Comp: uint64(sc.Index()), Value: encodeValue(sc, scoreData{Points: -3})}, wire.StatusValidationError, "negative"},
		{"malformed value", wire.Mutate{ID: uint64(mine.NetID), Gen: uint64(mine.Gen), Comp: uint64(sc.Index()), Value: []byte{0xff}}, wire.StatusValidationError, "malformed"},
		{"trailing bytes", wire.Mutate{ID: uint64(mine.NetID), Gen: uint64(mine.Gen), Comp: uint64(sc.Index()), Value: []byte{2, 0}}, wire.StatusValidationError, "trailing"},
		{"internal", wire.Mutate{ID: uint64(mine.NetID), Gen: uint64(mine.Gen), Comp: uint64(sc.Index()), Value: encodeValue(sc, scoreData{Points: 666})}, wire.StatusInternalError, "panicked"},
		{"rate limited", wire.Mutate{ID: uint64(mine.NetID), Gen: uint64(mine.Gen), Comp: uint64(sc.Index()), Value: encodeValue(sc, scoreData{Points: 8})}, wire.StatusRateLimited, "rate limit"},
	}
	for i := range cases {
		cases[i].m.Request = uint64(i + 1)
		rc.send(wire.AppendMutate(nil, &cases[i].m))
	}
	testutil.Eventually(t, 5*time.Second, "all mutation results", func() bool { return len(rc.results()) == len(cases) })
	got := rc.results()
	for i, tc := range cases {
		r := got[uint64(i+1)]
		if r.Status != tc.want || !strings.Contains(r.Message, tc.substr) {
			t.Errorf("%s: got %s %q, want %s containing %q", tc.name, r.Status.String(), r.Message, tc.want.String(), tc.substr)
		}
	}
	// The Ok mutation was applied on the server.
	h.do(func(w donburi.World) {
		for _, a := range w.Archetypes() {
			for _, e := range a.Entities() {
				entry := w.Entry(e)
				if entry.HasComponent(components.Owner) && components.Owner.Get(entry).Client == me {
					if got := score.Get(entry).Points; got != 7 {
						t.Errorf("score after Ok mutation = %d, want 7", got)
					}
				}
			}
		}
	})
}

func TestMutationRateLimited(t *testing.T) {
	reg, sc, _ := mutationRegistry()
	h := newHarness(t, reg, &plugin.Options{MutationRate: 1, MutationBurst: 5, Authorize: plugin.AllowAll}, 2*time.Millisecond)
	defer h.close()
	rc := dialRaw(t, h.url, reg, true)
	defer rc.close()
	var tag components.ReplicatedData
	h.do(func(w donburi.World) { w.Create(components.Replicated, score) })
	h.ticks(2)
	h.do(func(w donburi.World) {
		for _, a := range w.Archetypes() {
			for _, e := range a.Entities() {
				tag = *components.Replicated.Get(w.Entry(e))
			}
		}
	})
	const n = 40
	for i := 1; i <= n; i++ {
		rc.send(wire.AppendMutate(nil, &wire.Mutate{Request: uint64(i), ID: uint64(tag.NetID), Gen: uint64(tag.Gen), Comp: uint64(sc.Index()), Value: encodeValue(sc, scoreData{Points: int32(i)})}))
	}
	testutil.Eventually(t, 5*time.Second, "all results", func() bool { return len(rc.results()) == n })
	ok, limited := 0, 0
	for _, r := range rc.results() {
		switch r.Status {
		case wire.StatusOk:
			ok++
		case wire.StatusRateLimited:
			limited++
		default:
			t.Errorf("unexpected status %s", r.Status.String())
		}
	}
	if ok < 5 || ok > 7 || limited != n-ok {
		t.Fatalf("ok=%d limited=%d; want about the burst (5) ok and the rest limited", ok, limited)
	}
	// Control requests share the bucket, now empty (it refills one token a
	// second), and are answered with their own rate-limited result.
	const nc = 10
	for i := 1; i <= nc; i++ {
		rc.send(wire.AppendControl(nil, &wire.Control{Request: uint64(n + i), Op: wire.ControlRelease, ID: uint64(tag.NetID), Gen: uint64(tag.Gen)}))
	}
	testutil.Eventually(t, 5*time.Second, "all control replies", func() bool { return len(rc.controlReplies()) == nc })
	limited = 0
	for _, r := range rc.controlReplies() {
		switch r.Result {
		case wire.ControlRateLimited:
			limited++
		case wire.ControlNotControlled: // a token refilled meanwhile
		default:
			t.Errorf("unexpected control result %d", r.Result)
		}
	}
	if limited < nc-2 {
		t.Fatalf("%d of %d control requests rate limited; want all but the refilled", limited, nc)
	}
}

// TestMutationExplicit: an Ok mutation of an Explicit component is
// replicated without the game touching it, since the server itself wrote
// the value.
func TestMutationExplicit(t *testing.T) {
	reg := components.NewRegistry()
	sc := components.Register(reg, "test.score", score, &components.Options{ClientWritable: true, Explicit: true})
	h := newHarness(t, reg, nil, 2*time.Millisecond)
	defer h.close()
	writer := dialRaw(t, h.url, reg, true)
	defer writer.close()
	writer.subscribeAll()
	watcher := dialRaw(t, h.url, reg, true)
	defer watcher.close()
	watcher.subscribeAll()
	var tag components.ReplicatedData
	h.do(func(w donburi.World) {
		e := w.Create(components.Replicated, components.Owner, score)
		components.Owner.SetValue(w.Entry(e), components.OwnerData{Client: writer.wel.ClientID})
	})
	h.ticks(2)
	h.do(func(w donburi.World) {
		for _, a := range w.Archetypes() {
			for _, e := range a.Entities() {
				tag = *components.Replicated.Get(w.Entry(e))
			}
		}
	})
	points := func(rc *rawClient) int32 {
		_, bodies, _ := rc.snapshot()
		m := newRawMirror(reg)
		if err := m.apply(bodies); err != nil {
			t.Fatal(err)
		}
		if v, ok := m.ents[uint64(tag.NetID)][uint64(sc.Index())]; ok {
			return (*scoreData)(v).Points
		}
		return -1
	}
	testutil.Eventually(t, 5*time.Second, "spawn", func() bool { return points(watcher) == 0 })
	writer.send(wire.AppendMutate(nil, &wire.Mutate{Request: 1, ID: uint64(tag.NetID), Gen: uint64(tag.Gen), Comp: uint64(sc.Index()), Value: encodeValue(codec.Of(sc.Component()), scoreData{Points: 9})}))
	testutil.Eventually(t, 5*time.Second, "mutation result", func() bool { _, ok := writer.results()[1]; return ok })
	if r := writer.results()[1]; r.Status != wire.StatusOk {
		t.Fatalf("mutation answered %s %q, want Ok", r.Status.String(), r.Message)
	}
	testutil.Eventually(t, 5*time.Second, "mutated value at the watcher", func() bool { return points(watcher) == 9 })
	testutil.Eventually(t, 5*time.Second, "mutated value at the writer", func() bool { return points(writer) == 9 })
}
