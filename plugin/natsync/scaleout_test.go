package natsync_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/nats-io/nats.go"
	"github.com/yohamta/donburi"

	"github.com/ebisync/ebisync/components"
	"github.com/ebisync/ebisync/internal/codec"
	"github.com/ebisync/ebisync/internal/natstest"
	"github.com/ebisync/ebisync/internal/testutil"
	"github.com/ebisync/ebisync/netclient"
	"github.com/ebisync/ebisync/plugin"
	"github.com/ebisync/ebisync/plugin/natsync"
)

// The scene of the scale-out tests: a square world of walkers, published
// by cells of soCell units, and clients with a radius interest.
const (
	soSize     = 3000.0
	soCell     = 250.0
	soRadius   = 200.0
	soHyst     = 1.15
	soRate     = 50 // ticks per second of the simulation and the gateways
	soEntities = 1500
	soGlobals  = 12 // entities without a position, which every client sees
)

// slowRedialer dials at once the first time, and after delay every time
// after: a reconnection that takes time.
type slowRedialer struct {
	delay time.Duration
	n     atomic.Int32
}

func (d *slowRedialer) Dial(network, address string) (net.Conn, error) {
	if d.n.Add(1) > 1 {
		time.Sleep(d.delay)
	}
	return net.DialTimeout(network, address, 2*time.Second)
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// scaleOut is a simulation publishing over NATS, gateways fed by
// natsync.Feed and clients spread across the gateways. One goroutine (the
// loop) ticks the simulation then every gateway; another (the clients'
// loop) runs every client's Update.
type scaleOut struct {
	t      *testing.T
	reg    *components.Registry
	codecs []*codec.Codec
	world  donburi.World
	sim    *plugin.Server
	pub    *natsync.Publisher
	gws    []*gateway
	rng    *rand.Rand // the game's: loop goroutine
	crng   *rand.Rand // the clients' interest: test goroutine
	live   []donburi.Entity
	moving bool // loop goroutine

	jobs chan func()
	stop chan struct{}
	done chan struct{}

	clients  []*soClient
	cjobs    chan func()
	cstop    chan struct{}
	cdone    chan struct{}
	closeAll []func()
}

type gateway struct {
	nc   *nats.Conn
	feed *natsync.Feed
	srv  *plugin.Server
	url  string
	log  *warnings
}

// warnings is a slog.Handler that counts the records at Warn and above
// (a gateway warns when it refuses a chunk and follows its cells again)
// and keeps the last one's message and attributes.
type warnings struct {
	mu   sync.Mutex
	n    int
	last string
}

func (w *warnings) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }
func (w *warnings) WithAttrs([]slog.Attr) slog.Handler           { return w }
func (w *warnings) WithGroup(string) slog.Handler                { return w }
func (w *warnings) Handle(_ context.Context, r slog.Record) error {
	msg := r.Message
	r.Attrs(func(a slog.Attr) bool { msg += " " + a.String(); return true })
	w.mu.Lock()
	w.n++
	w.last = msg
	w.mu.Unlock()
	return nil
}

func (w *warnings) get() (int, string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.n, w.last
}

type soClient struct {
	c      *netclient.Client
	gw     int
	cx, cy float64 // its interest's centre; the test goroutine's
}

// newScaleOut starts the simulation on simURL, a gateway on each of
// gwConns, and ticks them.
func newScaleOut(t *testing.T, seed uint64, simURL string, gwConns []*nats.Conn) *scaleOut {
	reg := components.NewRegistry()
	components.RegisterStandard(reg)
	s := &scaleOut{
		t: t, reg: reg, world: donburi.NewWorld(),
		rng:  rand.New(rand.NewPCG(seed, 7)),
		crng: rand.New(rand.NewPCG(seed, 8)),
		jobs: make(chan func()), stop: make(chan struct{}), done: make(chan struct{}),
		cjobs: make(chan func()), cstop: make(chan struct{}), cdone: make(chan struct{}),
	}
	for _, c := range reg.All() {
		s.codecs = append(s.codecs, codec.Of(c))
	}
	pub, err := natsync.NewPublisher(natstest.Connect(t, simURL), "so")
	if err != nil {
		t.Fatal(err)
	}
	s.pub = pub
	s.sim = plugin.New(s.world, reg, &plugin.Options{Publish: pub, PublishCellSize: soCell, TickRate: soRate, Logger: quiet()})
	svc, err := pub.Serve(s.sim)
	if err != nil {
		t.Fatal(err)
	}
	s.closeAll = append(s.closeAll, func() { _ = svc.Stop(); _ = s.sim.Close() })
	for _, nc := range gwConns {
		g := &gateway{nc: nc, log: &warnings{}}
		if g.feed, err = natsync.NewFeed(g.nc, "so"); err != nil {
			t.Fatal(err)
		}
		g.srv = plugin.NewGateway(reg, soCell, g.feed, &plugin.Options{
			TickRate: soRate, DefaultRadius: soRadius, MaxRadius: 2 * soRadius, Hysteresis: soHyst,
			MaxConnectionsPerAddress: 1000, Logger: slog.New(g.log),
		})
		g.feed.Attach(g.srv)
		ts := httptest.NewServer(g.srv)
		g.url = "ws" + strings.TrimPrefix(ts.URL, "http")
		s.closeAll = append(s.closeAll, func() { _ = g.srv.Close(); ts.Close(); _ = g.feed.Close() })
		s.gws = append(s.gws, g)
	}
	// The World before anyone watches.
	for range soGlobals {
		e := s.world.Create(components.Replicated, components.Health, components.Name)
		components.Health.SetValue(s.world.Entry(e), components.HealthData{Current: 50, Max: 100})
		components.Name.SetValue(s.world.Entry(e), components.NameData{Value: "g"})
		s.live = append(s.live, e)
	}
	for range soEntities {
		s.spawn()
	}
	go s.loop()
	go s.clientLoop()
	return s
}

// close stops everything newScaleOut and addClients started.
func (s *scaleOut) close() {
	close(s.cstop)
	<-s.cdone
	for _, c := range s.clients {
		_ = c.c.Close()
	}
	close(s.stop)
	<-s.done
	for i := len(s.closeAll) - 1; i >= 0; i-- {
		s.closeAll[i]()
	}
}

func (s *scaleOut) spawn() {
	e := s.world.Create(components.Replicated, components.Position, components.Health)
	entry := s.world.Entry(e)
	components.Position.SetValue(entry, components.PositionData{X: s.rng.Float64() * soSize, Y: s.rng.Float64() * soSize})
	components.Health.SetValue(entry, components.HealthData{Current: int32(s.rng.IntN(100)), Max: 100})
	s.live = append(s.live, e)
}

// step is one tick of the game: a third of the walkers move, a few
// spawn and despawn, components change, come and go.
func (s *scaleOut) step() {
	w := s.world
	for i := 0; i < len(s.live); i++ {
		e := s.live[i]
		entry := w.Entry(e)
		if !entry.HasComponent(components.Position) {
			if s.rng.IntN(20) == 0 {
				components.Health.Get(entry).Current = int32(s.rng.IntN(100))
			}
			continue
		}
		switch r := s.rng.IntN(300); {
		case r == 0:
			w.Remove(e)
			s.live[i] = s.live[len(s.live)-1]
			s.live = s.live[:len(s.live)-1]
			i--
			continue
		case r < 4:
			components.Health.Get(entry).Current = int32(s.rng.IntN(100))
		case r < 6:
			if entry.HasComponent(components.Name) {
				entry.RemoveComponent(components.Name)
			} else {
				entry.AddComponent(components.Name)
				components.Name.SetValue(entry, components.NameData{Value: fmt.Sprintf("n%d", s.rng.IntN(1000))})
			}
		case r < 8:
			if entry.HasComponent(components.Velocity) {
				entry.RemoveComponent(components.Velocity)
			} else {
				entry.AddComponent(components.Velocity)
				components.Velocity.SetValue(entry, components.VelocityData{X: s.rng.Float64(), Y: -s.rng.Float64()})
			}
		case r < 100:
			p := components.Position.Get(entry)
			p.X = math.Mod(p.X+s.rng.NormFloat64()*10+soSize, soSize)
			p.Y = math.Mod(p.Y+s.rng.NormFloat64()*10+soSize, soSize)
		}
	}
	for len(s.live) < soGlobals+soEntities {
		s.spawn()
	}
}

// tick runs one tick of the game (when moving), the simulation and the
// gateways (loop goroutine).
func (s *scaleOut) tick() {
	if s.moving {
		s.step()
	}
	s.sim.Tick()
	for _, g := range s.gws {
		g.srv.Tick()
	}
}

func (s *scaleOut) loop() {
	defer close(s.done)
	tk := time.NewTicker(time.Second / soRate)
	defer tk.Stop()
	for {
		select {
		case <-s.stop:
			return
		case f := <-s.jobs:
			f()
		case <-tk.C:
			s.tick()
		}
	}
}

// do runs f on the loop goroutine.
func (s *scaleOut) do(f func()) {
	ch := make(chan struct{})
	s.jobs <- func() { f(); close(ch) }
	<-ch
}

// run lets the game move (or stand still) for n ticks.
func (s *scaleOut) run(moving bool, n int) {
	s.do(func() { s.moving = moving })
	end := s.sim.CurrentTick() + uint64(n)
	if err := testutil.WaitUntil(time.Duration(n)*time.Second/soRate+30*time.Second, func() string { return fmt.Sprintf("%d ticks", n) }, func() bool {
		return s.sim.CurrentTick() >= end
	}); err != nil {
		s.t.Fatal(err)
	}
}

// clientLoop runs every client's Update every 5 ms, and jobs, on one
// goroutine: the clients' game goroutine.
func (s *scaleOut) clientLoop() {
	defer close(s.cdone)
	tk := time.NewTicker(5 * time.Millisecond)
	defer tk.Stop()
	for {
		select {
		case <-s.cstop:
			return
		case f := <-s.cjobs:
			f()
		case <-tk.C:
			for _, c := range s.clients {
				_ = c.c.Update()
			}
		}
	}
}

// cdo runs f on the clients' goroutine.
func (s *scaleOut) cdo(f func()) {
	ch := make(chan struct{})
	s.cjobs <- func() { f(); close(ch) }
	<-ch
}

// addClients dials n clients, round robin over the gateways, each with
// a radius interest at a random point.
func (s *scaleOut) addClients(n int) {
	start := time.Now()
	cs := make([]*soClient, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i := range cs {
		cs[i] = &soClient{gw: i % len(s.gws), cx: s.crng.Float64() * soSize, cy: s.crng.Float64() * soSize}
		wg.Add(1)
		sem <- struct{}{}
		go func(c *soClient, i int) {
			defer wg.Done()
			defer func() { <-sem }()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			nc, err := netclient.Dial(ctx, s.gws[c.gw].url, s.reg, &netclient.Options{Logger: quiet(), MaxPendingBatches: 1024})
			if err == nil {
				c.c = nc
				if err = nc.SubscribeAll(); err == nil {
					err = nc.SetInterest(c.cx, c.cy, soRadius)
				}
			}
			errs[i] = err
		}(cs[i], i)
	}
	wg.Wait()
	s.t.Logf("%d clients dialled in %v", n, time.Since(start).Round(time.Millisecond))
	s.cdo(func() {
		for _, c := range cs {
			if c.c != nil {
				s.clients = append(s.clients, c)
			}
		}
	})
	for i, err := range errs {
		if err != nil {
			s.t.Fatalf("client %d: %v", i, err)
		}
	}
}

// moveSome moves the interest of one client in every k to a new point.
func (s *scaleOut) moveSome(k int) {
	for i, c := range s.clients {
		if i%k != 0 {
			continue
		}
		c.cx, c.cy = s.crng.Float64()*soSize, s.crng.Float64()*soSize
		if err := c.c.SetInterest(c.cx, c.cy, soRadius); err != nil {
			s.t.Fatal(err)
		}
	}
}

// soEntity is one entity as the World holds it, or as a mirror does.
type soEntity struct {
	gen    uint32
	hasPos bool
	x, y   float64
	comps  map[int]unsafe.Pointer // by registry index
}

// entities reads w's replicated entities by net id.
func (s *scaleOut) entities(w donburi.World) map[uint32]soEntity {
	out := map[uint32]soEntity{}
	for _, a := range w.Archetypes() {
		if !a.Layout().HasComponent(components.Replicated) {
			continue
		}
		for _, e := range a.Entities() {
			entry := w.Entry(e)
			tag := components.Replicated.Get(entry)
			if tag.NetID == 0 {
				continue
			}
			se := soEntity{gen: tag.Gen, comps: map[int]unsafe.Pointer{}}
			if entry.HasComponent(components.Position) {
				p := components.Position.Get(entry)
				se.hasPos, se.x, se.y = true, p.X, p.Y
			}
			for i, c := range s.codecs {
				if entry.HasComponent(c.ComponentType()) {
					v := c.New()
					c.Copy(v, entry.Component(c.ComponentType()))
					se.comps[i] = v
				}
			}
			out[tag.NetID] = se
		}
	}
	return out
}

// diff compares a client's mirror with its view of the World: every
// entity without a position or within the radius of its centre, and
// perhaps those in the hysteresis band, with the same generation and
// component values. The gateway knows positions in Position's steps of
// 0.01, so the band takes in the entities that close to its edges.
func (s *scaleOut) diff(world, mirror map[uint32]soEntity, cx, cy float64) (seen int, err error) {
	const eps = 0.02
	for id, e := range world {
		d := math.Hypot(e.x-cx, e.y-cy)
		m, held := mirror[id]
		if e.hasPos && d > soRadius-eps {
			if held && d > soRadius*soHyst+eps {
				return seen, fmt.Errorf("entity %d at %.0f from the centre is held", id, d)
			}
			if !held {
				continue
			}
		}
		if !held {
			return seen, fmt.Errorf("entity %d at %.0f from the centre is missing", id, d)
		}
		seen++
		if m.gen != e.gen {
			return seen, fmt.Errorf("entity %d: generation %d, want %d", id, m.gen, e.gen)
		}
		if len(m.comps) != len(e.comps) {
			return seen, fmt.Errorf("entity %d: %d components, want %d", id, len(m.comps), len(e.comps))
		}
		for i, v := range e.comps {
			mv, ok := m.comps[i]
			if !ok {
				return seen, fmt.Errorf("entity %d: %s missing", id, s.codecs[i].Name())
			}
			if !s.codecs[i].Equal(mv, v) {
				return seen, fmt.Errorf("entity %d: %s differs", id, s.codecs[i].Name())
			}
		}
	}
	for id := range mirror {
		if _, ok := world[id]; !ok {
			return seen, fmt.Errorf("entity %d is held but not in the World", id)
		}
	}
	return seen, nil
}

// converge stands the World still and waits until every client's mirror
// equals its view of the World. It returns the entities the clients hold
// in all.
func (s *scaleOut) converge(what string, timeout time.Duration) int {
	s.t.Helper()
	start := time.Now()
	s.do(func() { s.moving = false })
	s.run(false, 5)
	var world map[uint32]soEntity
	s.do(func() { world = s.entities(s.world) })
	var clients []*soClient
	s.cdo(func() { clients = append(clients, s.clients...) })
	pending := map[int]bool{}
	for i := range clients {
		pending[i] = true
	}
	last := map[int]error{}
	total := 0
	err := testutil.WaitUntil(timeout, func() string {
		for i, err := range last {
			return fmt.Sprintf("%s: %d of %d clients converged; client %d (gateway %d): %v", what, len(clients)-len(pending), len(clients), i, clients[i].gw, err)
		}
		return what
	}, func() bool {
		s.cdo(func() {
			for i := range pending {
				c := clients[i]
				_ = c.c.Update()
				seen, err := s.diff(world, s.entities(c.c.World()), c.cx, c.cy)
				if err != nil {
					last = map[int]error{i: err}
					continue
				}
				total += seen
				delete(pending, i)
			}
		})
		return len(pending) == 0
	})
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Logf("%s: %d clients converged in %v, %d entities held in all (tick %d)", what, len(clients), time.Since(start).Round(time.Millisecond), total, s.sim.CurrentTick())
	return total
}

func (s *scaleOut) logStats(what string) {
	for i, g := range s.gws {
		st := g.feed.Stats()
		s.t.Logf("%s: gateway %d on %s: %d cells, %d chunks, %d ticks (%d tick gaps), %d snapshots (%d retries), %d dropped; %d clients",
			what, i, g.nc.ConnectedUrl(), st.Cells, st.Chunks, st.Ticks, st.TickGaps, st.Snapshots, st.SnapshotRetries, st.Dropped, g.srv.Stats().Clients)
		if n, last := g.log.get(); n > 0 {
			s.t.Logf("%s: gateway %d logged %d warnings, the last: %s", what, i, n, last)
		}
	}
}

// TestScaleOutConvergence: one simulation publishes over node 0 of a
// 3-node NATS cluster; three gateways, one on each node, each fed by a
// natsync.Feed, serve clients (300; 30 with -short) spread across them.
// The World moves, spawns, despawns and changes components while some
// clients move their interest; each time it stands still, every client's
// mirror converges to its view of the World.
func TestScaleOutConvergence(t *testing.T) {
	n := 300
	if testing.Short() {
		n = 30
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	nodes := natstest.Cluster(t, 3)
	var gwConns []*nats.Conn
	for _, node := range nodes {
		gwConns = append(gwConns, natstest.Connect(t, node.ClientURL()))
	}
	s := newScaleOut(t, seed, nodes[0].ClientURL(), gwConns)
	defer s.close()
	s.run(true, 10)
	s.addClients(n)
	s.converge("joined", 60*time.Second)
	for round := 0; round < 3; round++ {
		s.run(true, 25)
		s.moveSome(4)
		s.run(true, 25)
		if held := s.converge(fmt.Sprintf("round %d", round), 60*time.Second); held == 0 {
			t.Fatal("the clients hold nothing: the test is not testing")
		}
	}
	s.logStats("end")
	for i, g := range s.gws {
		if st := g.feed.Stats(); st.Chunks == 0 || st.Snapshots == 0 || st.SubscribeErrors != 0 || st.Malformed != 0 {
			t.Fatalf("gateway %d: %+v", i, st)
		}
	}
	if n := s.pub.Errors(); n != 0 {
		t.Fatalf("%d publishes failed: %v", n, s.pub.LastError())
	}
}

// TestScaleOutNATSNodeFailure: as TestScaleOutConvergence with 30
// clients, and the NATS node one gateway is connected to shuts down
// mid-run. The gateway's connection moves to another node, the gateway
// repairs what was lost with fresh snapshots, and every client converges
// again; the simulation, on another node, never stops publishing.
func TestScaleOutNATSNodeFailure(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	nodes := natstest.Cluster(t, 3)
	// Gateway 1 starts on node 2 and, when node 2 goes, moves to node 0
	// after 100 ms (a failover is not instant): the ticks published
	// meanwhile are lost to it.
	s := newScaleOut(t, seed, nodes[0].ClientURL(), []*nats.Conn{
		natstest.Connect(t, natstest.URLs(nodes[1:2]...)+","+nodes[0].ClientURL()),
		natstest.Connect(t, natstest.URLs(nodes[2:]...)+","+natstest.URLs(nodes[:2]...), nats.SetCustomDialer(&slowRedialer{delay: 100 * time.Millisecond})),
	})
	defer s.close()
	victim := s.gws[1]
	if got := victim.nc.ConnectedUrl(); got != nodes[2].ClientURL() {
		t.Fatalf("gateway 1 is on %s, not on node 2", got)
	}
	s.run(true, 10)
	s.addClients(30)
	s.run(true, 25)
	s.moveSome(3)
	s.run(true, 25)
	s.converge("before", 60*time.Second)
	before := victim.feed.Stats()

	// The World goes on while the node shuts down and the gateway's
	// connection moves to another node.
	s.do(func() { s.moving = true })
	nodes[2].Shutdown()
	nodes[2].WaitForShutdown()
	testutil.Eventually(t, 30*time.Second, "gateway 1's reconnection", func() bool { return victim.nc.Stats().Reconnects > 0 })
	// The gateways' cells do not change while no interest moves: a
	// snapshot now is the repair of a gap.
	s.run(true, 25)
	after := victim.feed.Stats()
	s.moveSome(3)
	s.run(true, 25)
	s.converge("after", 60*time.Second)
	s.logStats("end")
	if got := victim.nc.ConnectedUrl(); got == nodes[2].ClientURL() || got == "" {
		t.Fatalf("gateway 1 is on %q, not on a live node", got)
	}
	if after.TickGaps == before.TickGaps {
		t.Fatal("gateway 1 lost no tick marker: the node's shutdown lost nothing?")
	}
	if after.Snapshots == before.Snapshots {
		t.Fatal("gateway 1 took no snapshot after the node's shutdown: it repaired no gap")
	}
	t.Logf("gateway 1 after the shutdown: %d tick gaps, %d snapshots, %d snapshot retries",
		after.TickGaps-before.TickGaps, after.Snapshots-before.Snapshots, after.SnapshotRetries-before.SnapshotRetries)
	if n := s.pub.Errors(); n != 0 {
		t.Fatalf("%d publishes failed: %v", n, s.pub.LastError())
	}
}

// TestFeedSnapshotRequests: a Feed that finds no simulation asks for a
// cell's snapshot again, with a backoff, until one answers; it stops
// asking for a cell the gateway let go of; Close ends the requests in
// flight at once, and leaves no goroutine behind.
func TestFeedSnapshotRequests(t *testing.T) {
	nodes := natstest.Cluster(t, 1)
	reg := components.NewRegistry()
	components.RegisterStandard(reg)
	nc := natstest.Connect(t, nodes[0].ClientURL())
	feed, err := natsync.NewFeed(nc, "fr")
	if err != nil {
		t.Fatal(err)
	}
	gw := plugin.NewGateway(reg, 100, feed, &plugin.Options{DefaultRadius: 50, MaxRadius: 100, Logger: quiet()})
	defer gw.Close()
	feed.Attach(gw)
	defer feed.Close()

	// No simulation: the global cell's request finds no responder.
	gw.Tick() // follows the global cell
	feed.Follow(plugin.Cell{X: 5, Y: 5}, 1000)
	testutil.Eventually(t, 10*time.Second, "requests sent again", func() bool {
		st := feed.Stats()
		return st.SnapshotRetries >= 4 && st.SnapshotsWaiting == 2 && st.Snapshots == 0 && st.Cells == 2
	})
	feed.Unfollow(plugin.Cell{X: 5, Y: 5})
	testutil.Eventually(t, 10*time.Second, "the request of a cell let go of to stop", func() bool {
		st := feed.Stats()
		return st.SnapshotsWaiting == 1 && st.Cells == 1
	})

	// The simulation comes up and answers at the end of its next tick.
	pub, err := natsync.NewPublisher(natstest.Connect(t, nodes[0].ClientURL()), "fr")
	if err != nil {
		t.Fatal(err)
	}
	sim := plugin.New(donburi.NewWorld(), reg, &plugin.Options{Publish: pub, PublishCellSize: 100, Logger: quiet()})
	defer sim.Close()
	svc, err := pub.Serve(sim)
	if err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "the snapshot", func() bool {
		sim.Tick()
		st := feed.Stats()
		return st.Snapshots == 1 && st.SnapshotsWaiting == 0
	})
	if err := svc.Stop(); err != nil {
		t.Fatal(err)
	}

	// A simulation that never answers: Close does not wait for the
	// request's timeout.
	silent, err := nc.Subscribe(natsync.SnapshotSubject("fr"), func(*nats.Msg) {})
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Unsubscribe()
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	feed.Follow(plugin.Cell{X: 1, Y: 2}, 1001)
	testutil.Eventually(t, 10*time.Second, "a request in flight", func() bool { return feed.Stats().SnapshotsWaiting == 1 })
	start := time.Now()
	if err := feed.Close(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > natsync.SnapshotTimeout/2 {
		t.Fatalf("Close took %v with a request in flight", d)
	}
	feed.Follow(plugin.Cell{X: 3, Y: 3}, 1002) // after Close: nothing
	if st := feed.Stats(); st.Cells != 0 || st.SnapshotsWaiting != 0 {
		t.Fatalf("after Close: %+v", st)
	}
}
