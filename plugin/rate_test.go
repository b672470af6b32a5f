package plugin_test

import (
	"testing"
	"time"

	"github.com/yohamta/donburi"

	"github.com/ebisync/ebisync/components"
	"github.com/ebisync/ebisync/internal/testutil"
	"github.com/ebisync/ebisync/plugin"
)

type teamData struct {
	Team uint8
}

var team = donburi.NewComponentType[teamData]()

// TestFilterHidesEntities: a game rule (teams) keeps entities out of a
// client's scope, and re-evaluates when the rule's answer changes.
func TestFilterHidesEntities(t *testing.T) {
	reg := standardRegistry()
	components.Register(reg, "test.team", team, nil)
	clientTeam := map[uint64]uint8{}
	opts := &plugin.Options{
		RescanInterval: 2,
		DefaultRadius:  1e6,
		Filter: func(ci plugin.ClientInfo, e *donburi.Entry) bool {
			return !e.HasComponent(team) || team.Get(e).Team == clientTeam[ci.ID]
		},
		OnConnect: func(ci plugin.ClientInfo) { clientTeam[ci.ID] = uint8(ci.ID % 2) },
	}
	h := newHarness(t, reg, opts, 2*time.Millisecond)
	defer h.close()
	var ents []donburi.Entity
	h.do(func(w donburi.World) {
		for i := 0; i < 10; i++ {
			e := w.Create(components.Replicated, components.Position, team)
			team.SetValue(w.Entry(e), teamData{Team: uint8(i % 2)})
			ents = append(ents, e)
		}
	})
	rc := dialRaw(t, h.url, reg, true)
	defer rc.close()
	rc.subscribeAll()
	m := newRawMirror(reg)
	tc, _ := reg.Of(team)
	count := func() (mine, other int) {
		_, bodies, err := rc.snapshot()
		if err != nil {
			t.Fatal(err)
		}
		if err := m.apply(bodies); err != nil {
			t.Fatal(err)
		}
		for _, cs := range m.ents {
			if (*teamData)(cs[uint64(tc.Index())]).Team == uint8(rc.wel.ClientID%2) {
				mine++
			} else {
				other++
			}
		}
		return
	}
	testutil.Eventually(t, 5*time.Second, "own team only", func() bool { a, b := count(); return a == 5 && b == 0 })
	// Switch the client's team: the rule's answer changes, the scope follows.
	h.do(func(donburi.World) { clientTeam[rc.wel.ClientID] ^= 1 })
	testutil.Eventually(t, 5*time.Second, "other team only", func() bool { a, b := count(); return a == 0 && b == 5 })
}

// TestMaxRateCoalesces: a component capped at 10 updates per second on a
// 100 Hz server reaches the client at most that often, and its last value
// always arrives.
func TestMaxRateCoalesces(t *testing.T) {
	reg := components.NewRegistry()
	sc := components.Register(reg, "test.score", score, &components.Options{MaxRate: 10})
	h := newHarness(t, reg, &plugin.Options{TickRate: 100}, 2*time.Millisecond)
	defer h.close()
	var e donburi.Entity
	h.do(func(w donburi.World) { e = w.Create(components.Replicated, score) })
	rc := dialRaw(t, h.url, reg, true)
	defer rc.close()
	rc.subscribeAll()
	h.ticks(3)
	start := h.srv.CurrentTick()
	for i := 1; i <= 100; i++ {
		h.do(func(w donburi.World) { score.Get(w.Entry(e)).Points = int32(i) })
		h.ticks(1)
	}
	span := h.srv.CurrentTick() - start
	h.ticks(15)
	_, bodies, _ := rc.snapshot()
	updates := 0
	var last int32
	for _, b := range bodies {
		for _, u := range b.Updates {
			if u.Comp == uint64(sc.Index()) {
				updates++
			}
		}
	}
	m := newRawMirror(reg)
	if err := m.apply(bodies); err != nil {
		t.Fatal(err)
	}
	for _, cs := range m.ents {
		last = (*scoreData)(cs[uint64(sc.Index())]).Points
	}
	// One update per 10 ticks at most, over span ticks (+1 for the edge).
	if max := int(span)/10 + 2; updates > max {
		t.Fatalf("%d updates over %d ticks, want at most %d (MaxRate 10/s at 100 Hz)", updates, span, max)
	}
	if updates < 3 {
		t.Fatalf("only %d updates", updates)
	}
	if last != 100 {
		t.Fatalf("last value %d, want 100: a coalesced change was lost", last)
	}
}

// TestSendRate: a client is sent at most SendRate batches per second.
func TestSendRate(t *testing.T) {
	reg := standardRegistry()
	h := newHarness(t, reg, &plugin.Options{TickRate: 60, SendRate: 20}, 2*time.Millisecond)
	defer h.close()
	var e donburi.Entity
	h.do(func(w donburi.World) { e = w.Create(components.Replicated, components.Position) })
	rc := dialRaw(t, h.url, reg, true)
	defer rc.close()
	rc.subscribeAll()
	h.ticks(5)
	_, before, _ := rc.snapshot()
	start := h.srv.CurrentTick()
	for i := 0; i < 90; i++ {
		h.do(func(w donburi.World) { components.Position.Get(w.Entry(e)).X += 1 })
		h.ticks(1)
	}
	span := h.srv.CurrentTick() - start
	h.ticks(5)
	_, after, _ := rc.snapshot()
	got := len(after) - len(before)
	if max := int(span)/3 + 2; got > max {
		t.Fatalf("%d batches over %d ticks, want at most %d (20 of 60 per second)", got, span, max)
	}
	for _, b := range after[len(before):] {
		if b.TickAdvance < 3 {
			t.Fatalf("a batch advanced %d ticks, want >= 3", b.TickAdvance)
		}
	}
}
