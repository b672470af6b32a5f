package natsync_test

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/yohamta/donburi"
	"go.uber.org/goleak"

	"github.com/ebisync/ebisync/components"
	"github.com/ebisync/ebisync/internal/cellstore"
	"github.com/ebisync/ebisync/internal/codec"
	"github.com/ebisync/ebisync/internal/natstest"
	"github.com/ebisync/ebisync/internal/testutil"
	"github.com/ebisync/ebisync/plugin"
	"github.com/ebisync/ebisync/plugin/natsync"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// follower is a consumer of a world's chunks over NATS: the cells it
// follows in a cellstore, kept by one goroutine that reads chunks and
// tick markers from one ordered channel. A missed chunk (a NATS node that
// went away with messages in flight) makes it ask for every cell's
// snapshot again.
type follower struct {
	t      *testing.T
	nc     *nats.Conn
	world  string
	st     *cellstore.Store
	msgs   chan *nats.Msg
	snaps  chan snapAnswer
	ops    chan func()
	done   chan struct{}
	subs   map[cellstore.Cell]*nats.Subscription
	last   uint64
	gaps   int
	errors []error
}

type snapAnswer struct {
	gen  uint64
	data []byte
}

func newFollower(t *testing.T, nc *nats.Conn, world string, codecs []*codec.Codec) *follower {
	f := &follower{
		t: t, nc: nc, world: world,
		st:    cellstore.New(codecs),
		msgs:  make(chan *nats.Msg, 1<<16),
		snaps: make(chan snapAnswer, 256),
		ops:   make(chan func()),
		done:  make(chan struct{}),
		subs:  map[cellstore.Cell]*nats.Subscription{},
	}
	sub, err := nc.ChanSubscribe(natsync.TickSubject(world), f.msgs)
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	go f.run(stop)
	t.Cleanup(func() {
		close(stop)
		<-f.done
		_ = sub.Unsubscribe()
	})
	return f
}

func (f *follower) run(stop chan struct{}) {
	defer close(f.done)
	for {
		select {
		case <-stop:
			return
		case m := <-f.msgs:
			if m.Subject != natsync.TickSubject(f.world) {
				f.check(f.st.Chunk(m.Data))
				continue
			}
			tick, _, err := natsync.DecodeTick(m.Data)
			f.check(err)
			if f.last != 0 && tick != f.last+1 {
				// Ticks went by unseen, and their chunks with them; a
				// cell that stays quiet would not show its gap.
				f.gaps++
				f.resync()
			}
			f.last = tick
			f.check(f.st.EndTick(tick))
		case a := <-f.snaps:
			f.check(f.st.Snapshot(a.gen, a.data))
		case op := <-f.ops:
			op()
		}
	}
}

// check keeps an error, but for a missed chunk, after which the
// follower asks for every cell's snapshot again.
func (f *follower) check(err error) {
	switch {
	case errors.Is(err, cellstore.ErrGap):
		f.gaps++
		f.resync()
	case err != nil:
		f.errors = append(f.errors, err)
	}
}

// do runs op on the follower's goroutine.
func (f *follower) do(op func()) {
	done := make(chan struct{})
	f.ops <- func() { op(); close(done) }
	<-done
}

func subject(world string, c cellstore.Cell) string {
	if c.Global {
		return natsync.GlobalSubject(world)
	}
	return natsync.CellSubject(world, c.X, c.Y)
}

// follow subscribes to c and asks for its snapshot (follower goroutine).
func (f *follower) follow(c cellstore.Cell) {
	if f.subs[c] != nil {
		return
	}
	sub, err := f.nc.ChanSubscribe(subject(f.world, c), f.msgs)
	if err != nil {
		f.check(err)
		return
	}
	f.subs[c] = sub
	f.snapshot(c, f.st.Follow(c))
}

func (f *follower) unfollow(c cellstore.Cell) {
	if sub := f.subs[c]; sub != nil {
		_ = sub.Unsubscribe()
		delete(f.subs, c)
		f.st.Unfollow(c)
	}
}

// snapshot asks for c's state once the subscriptions are in place.
func (f *follower) snapshot(c cellstore.Cell, gen uint64) {
	req := natsync.AppendSnapshotRequest(nil, c.Global, c.X, c.Y)
	go func() {
		for try := 0; try < 50; try++ {
			if f.nc.FlushTimeout(time.Second) != nil {
				continue
			}
			m, err := f.nc.Request(natsync.SnapshotSubject(f.world), req, time.Second)
			if err == nil && len(m.Data) > 0 {
				f.snaps <- snapAnswer{gen: gen, data: m.Data}
				return
			}
		}
	}()
}

// resync forgets every followed cell's state and asks for it again.
func (f *follower) resync() {
	for c := range f.subs {
		f.st.Unfollow(c)
		f.snapshot(c, f.st.Follow(c))
	}
}

// walkers is a small game: entities that walk at random across cells,
// some spawning and despawning, with a health that changes.
type walkers struct {
	w    donburi.World
	rng  *rand.Rand
	live []donburi.Entity
	size float64
}

func (g *walkers) step() {
	for len(g.live) < 150 || g.rng.IntN(3) == 0 {
		e := g.w.Create(components.Replicated, components.Position, components.Health)
		entry := g.w.Entry(e)
		components.Position.SetValue(entry, components.PositionData{X: g.rng.Float64() * g.size, Y: g.rng.Float64() * g.size})
		components.Health.SetValue(entry, components.HealthData{Current: 100, Max: 100})
		g.live = append(g.live, e)
		if len(g.live) >= 150 {
			break
		}
	}
	for i := 0; i < len(g.live); i++ {
		entry := g.w.Entry(g.live[i])
		switch g.rng.IntN(40) {
		case 0:
			g.w.Remove(g.live[i])
			g.live[i] = g.live[len(g.live)-1]
			g.live = g.live[:len(g.live)-1]
			i--
			continue
		case 1:
			components.Health.Get(entry).Current = int32(g.rng.IntN(100))
		}
		p := components.Position.Get(entry)
		p.X = math.Mod(p.X+g.rng.NormFloat64()*8+g.size, g.size)
		p.Y = math.Mod(p.Y+g.rng.NormFloat64()*8+g.size, g.size)
	}
}

type world struct {
	srv    *plugin.Server
	pub    *natsync.Publisher
	game   *walkers
	codecs []*codec.Codec
}

const cellSize = 100.0

func newWorld(t *testing.T, nc *nats.Conn, name string, seed uint64) *world {
	reg := components.NewRegistry()
	components.RegisterStandard(reg)
	pub, err := natsync.NewPublisher(nc, name)
	if err != nil {
		t.Fatal(err)
	}
	w := donburi.NewWorld()
	srv := plugin.New(w, reg, &plugin.Options{Publish: pub, PublishCellSize: cellSize})
	t.Cleanup(func() { _ = srv.Close() })
	svc, err := pub.Serve(srv)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Stop() })
	var codecs []*codec.Codec
	for _, c := range reg.All() {
		codecs = append(codecs, codec.Of(c))
	}
	return &world{srv: srv, pub: pub, game: &walkers{w: w, rng: rand.New(rand.NewPCG(seed, 1)), size: 800}, codecs: codecs}
}

// converge ticks the World, standing still, until the follower has
// applied the last tick with every followed cell ready (a snapshot is
// answered at the end of the tick after its request), then checks the
// oracle on the follower's goroutine.
func converge(t *testing.T, wd *world, f *follower, what string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		wd.srv.Tick()
		tick := wd.srv.CurrentTick()
		var err error
		caught := false
		// Up to 20 ms for this tick; then tick again.
		_ = testutil.WaitUntil(20*time.Millisecond, func() string { return "the follower" }, func() bool {
			f.do(func() {
				if f.last < tick {
					return
				}
				for c := range f.subs {
					if _, ready := f.st.Following(c); !ready {
						return
					}
				}
				caught = true
				err = f.st.Diff(cellstore.Expected(wd.game.w, wd.codecs, cellSize, func(c cellstore.Cell) bool { return f.subs[c] != nil }))
				if len(f.errors) > 0 && err == nil {
					err = fmt.Errorf("follower: %v", f.errors)
				}
			})
			return caught
		})
		if caught {
			if err != nil {
				t.Fatalf("%s: tick %d: %v", what, tick, err)
			}
			return
		}
	}
	t.Fatalf("%s: the follower did not catch up in 15 s", what)
}

// TestCellsOverNATS: the simulation publishes through one node of a
// 3-node NATS cluster, a follower reads through another, following an
// interest area that moves across the grid; after every tick the follower
// holds exactly the World's entities in the cells it follows.
func TestCellsOverNATS(t *testing.T) {
	nodes := natstest.Cluster(t, 3)
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	wd := newWorld(t, natstest.Connect(t, nodes[0].ClientURL()), "w1", seed)
	f := newFollower(t, natstest.Connect(t, nodes[2].ClientURL()), "w1", wd.codecs)
	for i := 0; i < 10; i++ {
		wd.game.step()
		wd.srv.Tick()
	}
	checked := 0
	for i := 0; i < 150; i++ {
		// The interest area: a 3×3 block of cells whose centre walks.
		cx, cy := int32(1+i/20%6), int32(1+i/30%6)
		f.do(func() {
			for c := range f.subs {
				if !c.Global && (abs(c.X-cx) > 1 || abs(c.Y-cy) > 1) {
					f.unfollow(c)
				}
			}
			f.follow(cellstore.Cell{Global: true})
			for x := cx - 1; x <= cx+1; x++ {
				for y := cy - 1; y <= cy+1; y++ {
					f.follow(cellstore.Cell{X: x, Y: y})
				}
			}
		})
		wd.game.step()
		converge(t, wd, f, fmt.Sprintf("step %d", i))
		f.do(func() { checked += f.st.Len() })
	}
	if checked == 0 {
		t.Fatal("the follower never held an entity")
	}
	if n := wd.pub.Errors(); n != 0 {
		t.Fatalf("%d publishes failed: %v", n, wd.pub.LastError())
	}
	t.Logf("%d entity-ticks checked; %d gaps", checked, f.gaps)
}

// TestCellsSurviveNATSNodeFailure: the NATS node the follower reads
// through is shut down mid-run. The follower's connection moves to
// another node, it sees the gap in the ticks, asks for its cells again,
// and converges; the simulation never stops publishing.
func TestCellsSurviveNATSNodeFailure(t *testing.T) {
	nodes := natstest.Cluster(t, 3)
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	wd := newWorld(t, natstest.Connect(t, nodes[0].ClientURL()), "w2", seed)
	// The follower's redial waits, so that ticks are surely lost while
	// it moves to another node.
	f := newFollower(t, natstest.Connect(t, natstest.URLs(nodes[2:]...)+","+nodes[1].ClientURL(), nats.SetCustomDialer(&slowRedialer{delay: 100 * time.Millisecond})), "w2", wd.codecs)
	if got := f.nc.ConnectedUrl(); got != nodes[2].ClientURL() {
		t.Fatalf("the follower is on %s, not on node 2", got)
	}
	f.do(func() {
		f.follow(cellstore.Cell{Global: true})
		for x := int32(0); x < 8; x++ {
			for y := int32(0); y < 8; y++ {
				f.follow(cellstore.Cell{X: x, Y: y})
			}
		}
	})
	for i := 0; i < 20; i++ {
		wd.game.step()
		converge(t, wd, f, fmt.Sprintf("before, step %d", i))
	}
	// The World goes on while the node shuts down and the follower's
	// connection moves to another node.
	down := make(chan struct{})
	go func() {
		nodes[2].Shutdown()
		nodes[2].WaitForShutdown()
		close(down)
	}()
	for moved := 0; moved < 30; {
		wd.game.step()
		wd.srv.Tick()
		if f.nc.Stats().Reconnects > 0 {
			moved++
		} else {
			testutil.LetTimePass(time.Millisecond) // the World ticks on while the follower is away
		}
	}
	<-down
	for i := 0; i < 20; i++ {
		wd.game.step()
		converge(t, wd, f, fmt.Sprintf("after, step %d", i))
	}
	var gaps int
	f.do(func() { gaps = f.gaps })
	if gaps == 0 {
		t.Fatal("the follower saw no gap: the node's shutdown lost nothing?")
	}
	if got := f.nc.ConnectedUrl(); got == nodes[2].ClientURL() {
		t.Fatalf("the follower is still on the node that was shut down: %s", got)
	}
	t.Logf("%d gaps; reconnected to %s", gaps, f.nc.ConnectedUrl())
}

func abs(v int32) int32 {
	if v < 0 {
		return -v
	}
	return v
}
