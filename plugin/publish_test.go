package plugin_test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/yohamta/donburi"

	"github.com/ebisync/ebisync/components"
	"github.com/ebisync/ebisync/internal/cellstore"
	"github.com/ebisync/ebisync/plugin"
)

// chunkLog is a Publisher that keeps copies of each tick's chunks.
type chunkLog struct {
	chunks [][]byte
	ends   []uint64
	calls  int
}

func (l *chunkLog) Chunk(c plugin.Chunk) {
	l.chunks = append(l.chunks, slices.Clone(c.Data))
	l.calls++
}

func (l *chunkLog) TickEnd(tick uint64, n int) { l.ends = append(l.ends, tick) }

// TestPublishedCellsConverge runs random churn (spawns, despawns, moves
// across cells, component adds and removes) and a consumer that follows a
// changing set of cells, each from a snapshot answered a random number of
// ticks late, so that snapshots and chunks interleave in every order. After
// every tick the consumer holds exactly the World's entities in the cells
// it follows.
func TestPublishedCellsConverge(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if v, err := strconv.ParseUint(os.Getenv("EBISYNC_SEED"), 10, 64); err == nil {
		seed = v
	}
	t.Logf("seed %d (EBISYNC_SEED repeats it)", seed)
	rng := rand.New(rand.NewPCG(seed, 7))
	const size, cellSize = 600.0, 100.0
	reg := standardRegistry()
	w := donburi.NewWorld()
	log := &chunkLog{}
	s := plugin.New(w, reg, &plugin.Options{Publish: log, PublishCellSize: cellSize, Logger: quietLogger()})
	defer s.Close()
	st := cellstore.New(codecsOf(reg))

	type reply struct {
		due  int
		gen  uint64
		data []byte
	}
	var replies []reply
	followed := map[cellstore.Cell]bool{}
	var live, globals []donburi.Entity
	tick := 0
	follow := func(c cellstore.Cell) {
		if followed[c] {
			return
		}
		followed[c] = true
		gen := st.Follow(c)
		delay := rng.IntN(4)
		if err := s.Snapshot(c.Global, c.X, c.Y, func(ch plugin.Chunk) {
			if !ch.Snapshot || ch.Global != c.Global || !c.Global && (ch.X != c.X || ch.Y != c.Y) {
				t.Errorf("snapshot of %v answered for (%v %d %d %v)", c, ch.Global, ch.X, ch.Y, ch.Snapshot)
			}
			replies = append(replies, reply{due: tick + delay, gen: gen, data: slices.Clone(ch.Data)})
		}); err != nil {
			t.Fatal(err)
		}
	}
	// donburi's Create can panic for an archetype first reached through
	// AddComponent: create the global archetype first.
	globals = append(globals, w.Create(components.Replicated, components.Health))
	live = append(live, w.Create(components.Replicated, components.Position, components.Health))
	follow(cellstore.Cell{Global: true})
	follow(cellstore.Cell{X: 0, Y: 0})

	checked := 0
	for tick = 1; tick <= 400; tick++ {
		// Follow and unfollow cells as an interest area moving about would.
		switch rng.IntN(6) {
		case 0:
			follow(cellstore.Cell{X: int32(rng.IntN(6)), Y: int32(rng.IntN(6))})
		case 1:
			var cells []cellstore.Cell
			for c := range followed {
				if !c.Global {
					cells = append(cells, c)
				}
			}
			if len(cells) > 0 {
				slices.SortFunc(cells, func(a, b cellstore.Cell) int { return int(a.X-b.X)*16 + int(a.Y-b.Y) })
				c := cells[rng.IntN(len(cells))]
				delete(followed, c)
				st.Unfollow(c)
			}
		}
		churn(w, rng, &live, size, rng.IntN(4))
		// Entities without a position (the global chunk), some of which
		// gain one and some of the positioned ones lose theirs.
		switch rng.IntN(12) {
		case 0:
			e := w.Create(components.Replicated, components.Health)
			components.Health.SetValue(w.Entry(e), components.HealthData{Current: int32(rng.IntN(100)), Max: 100})
			globals = append(globals, e)
		case 1:
			if k := len(live); k > 0 && w.Valid(live[k-1]) {
				w.Entry(live[k-1]).RemoveComponent(components.Position)
				globals = append(globals, live[k-1])
				live = live[:k-1]
			}
		case 2:
			if k := len(globals); k > 0 {
				entry := w.Entry(globals[k-1])
				entry.AddComponent(components.Position)
				components.Position.SetValue(entry, components.PositionData{X: rng.Float64() * size, Y: rng.Float64() * size})
				live = append(live, globals[k-1])
				globals = globals[:k-1]
			}
		case 3:
			if k := len(globals); k > 0 {
				w.Remove(globals[k-1])
				globals = globals[:k-1]
			}
		}
		for _, e := range globals {
			if rng.IntN(4) == 0 {
				components.Health.Get(w.Entry(e)).Current = int32(rng.IntN(100))
			}
		}
		log.chunks, log.ends = log.chunks[:0], log.ends[:0]
		s.Tick()
		if len(log.ends) != 1 || log.ends[0] != s.CurrentTick() {
			t.Fatalf("tick %d: TickEnd calls %v", s.CurrentTick(), log.ends)
		}
		// Chunks arrive in publication order; the snapshot replies due now
		// arrive either before or after them.
		deliver := func() {
			keep := replies[:0]
			for _, r := range replies {
				if r.due > tick {
					keep = append(keep, r)
					continue
				}
				if err := st.Snapshot(r.gen, r.data); err != nil {
					t.Fatalf("tick %d: snapshot: %v", tick, err)
				}
			}
			replies = keep
		}
		early := rng.IntN(2) == 0
		if early {
			deliver()
		}
		for _, c := range log.chunks {
			if err := st.Chunk(c); err != nil {
				t.Fatalf("tick %d: %v", tick, err)
			}
		}
		if err := st.EndTick(s.CurrentTick()); err != nil {
			t.Fatalf("tick %d: %v", tick, err)
		}
		if !early {
			deliver()
		}
		ready := func(c cellstore.Cell) bool {
			_, ok := st.Following(c)
			return ok
		}
		want := cellstore.Expected(w, codecsOf(reg), cellSize, ready)
		if err := st.Diff(want); err != nil {
			t.Fatalf("tick %d (seed %d): %v", tick, seed, err)
		}
		checked += len(want)
	}
	if checked == 0 {
		t.Fatal("the consumer never held an entity")
	}
	t.Logf("%d entity-ticks checked, %d entities live", checked, len(live))
}

// TestPublishRequiresPosition: a Server cannot publish without positions
// its chunks' consumers can read.
func TestPublishRequiresPosition(t *testing.T) {
	defer func() {
		if r := recover(); r == nil || !containsAll(fmt.Sprint(r), "Publish", "Position") {
			t.Fatalf("New did not panic with a message naming Publish and Position: %v", r)
		}
	}()
	plugin.New(donburi.NewWorld(), standardRegistry(), &plugin.Options{
		Publish:  &chunkLog{},
		Position: func(*donburi.Entry) (float64, float64, bool) { return 0, 0, false },
	})
}

func TestSnapshotWithoutPublish(t *testing.T) {
	s := plugin.New(donburi.NewWorld(), standardRegistry(), nil)
	defer s.Close()
	if err := s.Snapshot(true, 0, 0, func(plugin.Chunk) {}); err != plugin.ErrNotPublishing {
		t.Fatalf("Snapshot without Publish: %v", err)
	}
}

// nopPublisher drops what it is given.
type nopPublisher struct{ bytes int }

func (p *nopPublisher) Chunk(c plugin.Chunk) { p.bytes += len(c.Data) }
func (p *nopPublisher) TickEnd(uint64, int)  {}

// TestPublishAllocs: publishing keeps a steady tick, with entities moving
// within and across cells, free of allocations.
func TestPublishAllocs(t *testing.T) {
	reg := standardRegistry()
	w := donburi.NewWorld()
	pub := &nopPublisher{}
	s := plugin.New(w, reg, &plugin.Options{Publish: pub, CellSize: 100, Logger: quietLogger()})
	defer s.Close()
	var ents []donburi.Entity
	for i := 0; i < 500; i++ {
		e := w.Create(components.Replicated, components.Position, components.Health)
		components.Position.SetValue(w.Entry(e), components.PositionData{X: float64(i%25) * 40, Y: float64(i/25) * 40})
		ents = append(ents, e)
	}
	step := 0
	move := func() {
		step++
		for i, e := range ents {
			p := components.Position.Get(w.Entry(e))
			p.X += float64((i+step)%7) - 3
			p.Y += float64((i*3+step)%5) - 2
		}
	}
	for i := 0; i < 50; i++ {
		move()
		s.Tick()
	}
	allocs := testing.AllocsPerRun(50, func() {
		move()
		s.Tick()
	})
	if allocs != 0 {
		t.Fatalf("%.1f allocations per tick with a Publisher", allocs)
	}
	if pub.bytes == 0 {
		t.Fatal("nothing was published")
	}
}
