package plugin_test

import (
	"sync"
	"testing"
	"time"

	"github.com/yohamta/donburi"

	"github.com/ebisync/ebisync/components"
	"github.com/ebisync/ebisync/internal/testutil"
	"github.com/ebisync/ebisync/netclient"
	"github.com/ebisync/ebisync/plugin"
)

// TestMessageSpawnUnderCap: under a bandwidth cap that spreads a burst of
// spawns over many batches, a message naming the last entity of the burst
// still reaches the client no sooner than that entity's spawn: it names
// the client's mirror of the entity, never Null. A message naming an
// entity out of the client's scope is not held back for it: it arrives,
// naming Null, while the client's own spawns are still coming.
func TestMessageSpawnUnderCap(t *testing.T) {
	const burst = 300
	sreg, _, shit := msgRegistry()
	h := newHarness(t, sreg, &plugin.Options{BytesPerSecond: 20000}, 2*time.Millisecond)
	defer h.close()

	type heard struct {
		v     hitMsg
		live  bool   // a live mirror entity in the handler
		at    uint64 // the server tick of the batch that carried the message
		spawn uint64 // the server tick of the batch that spawned the victim (0: none)
	}
	var mu sync.Mutex
	listen := func(opts *netclient.Options, spawnedAt map[donburi.Entity]uint64, p **clientLoop) *[]heard {
		creg, _, chit := msgRegistry()
		var got []heard
		*p = startClientLoop(t, h.url, creg, opts)
		(*p).do(func(w donburi.World) {
			netclient.OnMessage((*p).c, chit, func(v hitMsg) {
				mu.Lock()
				defer mu.Unlock()
				got = append(got, heard{v: v, live: v.Victim != donburi.Null && w.Valid(v.Victim), at: (*p).c.ServerTick(), spawn: spawnedAt[v.Victim]})
			})
		})
		return &got
	}
	count := func(got *[]heard) int {
		mu.Lock()
		defer mu.Unlock()
		return len(*got)
	}

	// a sees everything; b sees only the start of each burst.
	var a, b *clientLoop
	spawnedAt := map[donburi.Entity]uint64{} // a's game goroutine only
	aGot := listen(&netclient.Options{OnSpawn: func(e donburi.Entity) { spawnedAt[e] = a.c.ServerTick() }}, spawnedAt, &a)
	defer a.close()
	bGot := listen(nil, map[donburi.Entity]uint64{}, &b)
	defer b.close()
	a.c.SubscribeAll()
	b.c.SubscribeAll()
	b.c.SetInterest(0, 0, 500)
	testutil.Eventually(t, 5*time.Second, "the clients join", func() bool { return h.srv.Stats().Clients == 2 })
	h.ticks(5)

	mirrored := func(p *clientLoop) int {
		n := 0
		p.do(func(w donburi.World) { n = w.Len() })
		return n
	}
	for round := range 3 {
		var last donburi.Entity
		h.do(func(w donburi.World) {
			for i := range burst {
				e := w.Create(components.Replicated, components.Position)
				components.Position.SetValue(w.Entry(e), components.PositionData{X: float64(i) * 10, Y: float64(round)})
				last = e
			}
			plugin.Send(h.srv, a.c.ClientID(), shit, hitMsg{Victim: last, Damage: int32(round)})
			plugin.Send(h.srv, b.c.ClientID(), shit, hitMsg{Victim: last, Damage: int32(round)})
		})
		// b's message names an entity out of its scope: it goes at once,
		// not after b's own spawns, which the cap spreads out too.
		testutil.Eventually(t, 5*time.Second, "b's hit", func() bool {
			b.do(func(donburi.World) {})
			return count(bGot) == round+1
		})
		testutil.Eventually(t, 10*time.Second, "a's hit and burst", func() bool {
			return mirrored(a) == (round+1)*burst && count(aGot) == round+1
		})
		mu.Lock()
		ga, gb := (*aGot)[round], (*bGot)[round]
		mu.Unlock()
		if gb.v.Victim != donburi.Null || gb.v.Damage != int32(round) {
			t.Fatalf("round %d: b heard %+v, want damage %d naming Null (out of its scope)", round, gb.v, round)
		}
		id, gen := serverRef(h, last)
		var mirror donburi.Entity
		a.do(func(donburi.World) {
			if e, ok := a.c.Entity(id); ok {
				if _, g, _ := a.c.NetID(e); g == gen {
					mirror = e
				}
			}
		})
		if mirror == donburi.Null {
			t.Fatalf("round %d: a mirrors no entity %d gen %d", round, id, gen)
		}
		if !ga.live || ga.v.Victim != mirror || ga.v.Damage != int32(round) {
			t.Fatalf("round %d: a heard victim %v (live %v, damage %d), want its mirror %v: the message arrived before the spawn", round, ga.v.Victim, ga.live, ga.v.Damage, mirror)
		}
		if ga.spawn == 0 || ga.spawn > ga.at {
			t.Fatalf("round %d: the message came in the batch of tick %d, the victim's spawn in that of tick %d", round, ga.at, ga.spawn)
		}
	}
	if n := mirrored(b); n == 0 {
		t.Fatalf("b mirrors nothing: its interest saw no entity")
	}
}
