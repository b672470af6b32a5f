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

	"github.com/ebisync/ebisync"
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
	ln   *connTracker
	dead bool // crashed: the loop ticks it no more (loop goroutine)
}

// connTracker is a listener that can cut every connection it accepted,
// WebSockets included (httptest.Server forgets hijacked connections).
type connTracker struct {
	net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func (l *connTracker) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.mu.Lock()
		l.conns = append(l.conns, c)
		l.mu.Unlock()
	}
	return c, err
}

// cut closes the listener and every connection accepted, as the death
// of the process would: no close frame, no close handshake.
func (l *connTracker) cut() {
	_ = l.Listener.Close()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range l.conns {
		_ = c.Close()
	}
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

// soExtras are what a test adds to the scene of newScaleOut: components
// registered after the standard ones, and the simulation's options (its
// hooks) set before the simulation is made.
type soExtras struct {
	register func(reg *components.Registry)
	sim      func(s *scaleOut, o *plugin.Options)
}

// newScaleOut starts the simulation on simURL, a gateway on each of
// gwConns, and ticks them.
func newScaleOut(t *testing.T, seed uint64, simURL string, gwConns []*nats.Conn) *scaleOut {
	return newScaleOutWith(t, seed, simURL, gwConns, soExtras{})
}

// newScaleOutWith is newScaleOut with the test's extras.
func newScaleOutWith(t *testing.T, seed uint64, simURL string, gwConns []*nats.Conn, x soExtras) *scaleOut {
	reg := components.NewRegistry()
	components.RegisterStandard(reg)
	if x.register != nil {
		x.register(reg)
	}
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
	simOpts := &plugin.Options{Publish: pub, PublishCellSize: soCell, TickRate: soRate, Logger: quiet()}
	if x.sim != nil {
		x.sim(s, simOpts)
	}
	s.sim = plugin.New(s.world, reg, simOpts)
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
		ts := httptest.NewUnstartedServer(g.srv)
		g.ln = &connTracker{Listener: ts.Listener}
		ts.Listener = g.ln
		ts.Start()
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
		if !g.dead {
			g.srv.Tick()
		}
	}
}

// crash stops gateway i as the death of its process would: the loop
// ticks it no more, its listener and every connection it accepted are cut
// without a close frame, and its NATS connection closes without draining
// (its subscriptions are not unsubscribed one by one: the server drops
// them with the connection).
func (s *scaleOut) crash(i int) {
	g := s.gws[i]
	s.do(func() { g.dead = true })
	g.ln.cut()
	g.nc.Close()
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
func (s *scaleOut) addClients(n int) []*soClient {
	return s.addClientsWith(n, nil)
}

// addClientsWith is addClients with each client's options from opts
// (nil: the defaults), called on the test goroutine before the client
// dials, with the client's index and its gateway and centre.
func (s *scaleOut) addClientsWith(n int, opts func(i int, c *soClient) *netclient.Options) []*soClient {
	start := time.Now()
	cs := make([]*soClient, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i := range cs {
		cs[i] = &soClient{gw: i % len(s.gws), cx: s.crng.Float64() * soSize, cy: s.crng.Float64() * soSize}
		o := &netclient.Options{}
		if opts != nil {
			o = opts(i, cs[i])
		}
		o.Logger, o.MaxPendingBatches = quiet(), 1024
		wg.Add(1)
		sem <- struct{}{}
		go func(c *soClient, i int) {
			defer wg.Done()
			defer func() { <-sem }()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			nc, err := netclient.Dial(ctx, s.gws[c.gw].url, s.reg, o)
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
	return cs
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

// TestNATSNodeFailure: as TestScaleOutConvergence with 30 clients, and
// the NATS node one gateway is connected to shuts down mid-run. The gateway's connection moves to another node, the gateway
// repairs what was lost with fresh snapshots, and every client converges
// again; the simulation, on another node, never stops publishing.
func TestNATSNodeFailure(t *testing.T) {
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

// soFuelData is a ship's component that its owner may write.
type soFuelData struct{ Level int32 }

var soFuel = donburi.NewComponentType[soFuelData]()

// soHooks records the simulation's hooks (loop goroutine) for the test
// goroutine, and makes each client's ship.
type soHooks struct {
	mu        sync.Mutex
	centres   map[string][2]float64 // where a client's ship goes, by client name
	ships     map[uint64]donburi.Entity
	connected map[uint64]int
	resumed   map[uint64]int
	departed  map[uint64]int
}

func (h *soHooks) count(m map[uint64]int, id uint64) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return m[id]
}

// soAwait waits for one answer on each of chans, polling them on the
// clients' goroutine, and returns the answers in order.
func soAwait[R any](s *scaleOut, chans []<-chan R, what string) []R {
	s.t.Helper()
	got := make([]R, len(chans))
	done := make([]bool, len(chans))
	left := len(chans)
	testutil.Eventually(s.t, 10*time.Second, what, func() bool {
		s.cdo(func() {
			for i, ch := range chans {
				if done[i] {
					continue
				}
				select {
				case got[i] = <-ch:
					done[i] = true
					left--
				default:
				}
			}
		})
		return left == 0
	})
	return got
}

// TestScaleOutGatewayFailover: one simulation publishes over node 0 of a
// 3-node NATS cluster; three gateways, one on each node, forward their
// clients to it (30 clients; 12 with -short). Each client knows every
// gateway (its gateway's URL, then the others in Options.URLs), owns a
// ship that the simulation's OnConnect makes at the centre of its
// interest, and holds control of it. Gateway 0 crashes while the World
// moves: it ticks no more, its listener and connections are cut without a
// close frame, its NATS connection closes. Its clients resume their
// sessions at the other gateways: the same client ids, no entity gone
// from their mirrors with ExitResync, their own ship the same mirror
// entity, control still theirs; the simulation ran OnResume for them and
// OnDisconnect for nobody. Every client's mutation of its own ship is
// answered Ok, and every client converges to its view of the World.
func TestScaleOutGatewayFailover(t *testing.T) {
	n := 30
	if testing.Short() {
		n = 12
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	nodes := natstest.Cluster(t, 3)
	var gwConns []*nats.Conn
	for _, node := range nodes {
		gwConns = append(gwConns, natstest.Connect(t, node.ClientURL()))
	}
	hooks := &soHooks{centres: map[string][2]float64{}, ships: map[uint64]donburi.Entity{},
		connected: map[uint64]int{}, resumed: map[uint64]int{}, departed: map[uint64]int{}}
	var fuel *components.Synced[soFuelData]
	s := newScaleOutWith(t, seed, nodes[0].ClientURL(), gwConns, soExtras{
		register: func(reg *components.Registry) {
			fuel = components.Register(reg, "test.fuel", soFuel, &components.Options{ClientWritable: true})
		},
		sim: func(s *scaleOut, o *plugin.Options) {
			o.OnConnect = func(ci plugin.ClientInfo) {
				hooks.mu.Lock()
				defer hooks.mu.Unlock()
				hooks.connected[ci.ID]++
				at, ok := hooks.centres[ci.Name]
				if !ok || ci.Gateway == "" {
					return // not one of the test's clients: it gets no ship, and the check of the ships fails
				}
				e := s.world.Create(components.Replicated, components.Position, components.Owner, soFuel)
				entry := s.world.Entry(e)
				components.Position.SetValue(entry, components.PositionData{X: at[0], Y: at[1]})
				components.Owner.SetValue(entry, components.OwnerData{Client: ci.ID})
				soFuel.SetValue(entry, soFuelData{Level: 100})
				hooks.ships[ci.ID] = e
			}
			o.OnResume = func(ci plugin.ClientInfo) {
				hooks.mu.Lock()
				hooks.resumed[ci.ID]++
				hooks.mu.Unlock()
			}
			o.OnDisconnect = func(ci plugin.ClientInfo) {
				hooks.mu.Lock()
				hooks.departed[ci.ID]++
				hooks.mu.Unlock()
			}
		},
	})
	defer s.close()

	type player struct {
		id      uint64
		ship    donburi.Entity // its own ship in its mirror
		resyncs atomic.Int64   // entities that left its mirror with ExitResync
	}
	players := make([]*player, n)
	s.run(true, 10)
	cs := s.addClientsWith(n, func(i int, c *soClient) *netclient.Options {
		pl := &player{}
		players[i] = pl
		name := fmt.Sprintf("player%d", i)
		hooks.mu.Lock()
		hooks.centres[name] = [2]float64{c.cx, c.cy}
		hooks.mu.Unlock()
		// The other gateways, in an order that turns from one client of a
		// gateway to the next: the clients of a dead gateway spread over
		// the others.
		var others []string
		for k := 1; k < len(s.gws); k++ {
			others = append(others, s.gws[(c.gw+k)%len(s.gws)].url)
		}
		r := i / len(s.gws) % len(others)
		others = append(others[r:], others[:r]...)
		return &netclient.Options{Name: name, URLs: others, OnDespawn: func(_ donburi.Entity, why netclient.ExitReason) {
			if why == netclient.ExitResync {
				pl.resyncs.Add(1)
			}
		}}
	})
	for i, c := range cs {
		players[i].id = c.c.ClientID()
	}
	s.converge("joined", 60*time.Second)

	// Each client finds its ship and takes control of it.
	ctls := make([]<-chan netclient.ControlResult, n)
	s.cdo(func() {
		for i, c := range cs {
			if owned := c.c.Owned(nil); len(owned) == 1 {
				players[i].ship = owned[0]
				ctls[i] = c.c.TakeControl(owned[0], time.Minute, false)
			}
		}
	})
	for i, pl := range players {
		if pl.ship == donburi.Null {
			t.Fatalf("client %d owns no ship, or more than one, in its mirror", i)
		}
	}
	for i, r := range soAwait(s, ctls, "the controls of the own ships") {
		if r.Status != netclient.ControlTaken || r.Holder != players[i].id {
			t.Fatalf("client %d taking its ship: %v holder %d (%v)", i, r.Status, r.Holder, r.Err)
		}
	}
	s.run(true, 25)

	// Gateway 0 crashes while the World moves.
	var moved []int
	for i, c := range cs {
		if c.gw == 0 {
			moved = append(moved, i)
		}
	}
	simBefore := s.sim.Stats()
	s.do(func() { s.moving = true })
	start := time.Now()
	s.crash(0)
	testutil.Eventually(t, 30*time.Second, "the crashed gateway's clients to resume elsewhere", func() bool {
		for _, i := range moved {
			if cs[i].c.Stats().Resumes == 0 {
				return false
			}
		}
		return true
	})
	t.Logf("the %d clients of gateway 0 resumed at the others in %v", len(moved), time.Since(start).Round(time.Millisecond))
	s.run(true, 25)
	s.converge("after the failover", 60*time.Second)

	var ships []donburi.Entity // the simulation's, by client
	hooks.mu.Lock()
	for _, pl := range players {
		ships = append(ships, hooks.ships[pl.id])
	}
	hooks.mu.Unlock()
	holders := make([]uint64, n)
	s.do(func() {
		for i, e := range ships {
			if s.world.Valid(e) && s.world.Entry(e).HasComponent(components.Control) {
				holders[i] = components.Control.Get(s.world.Entry(e)).Client
			}
		}
	})
	mirrorShips := make([]donburi.Entity, n)
	s.cdo(func() {
		for i, c := range cs {
			if owned := c.c.Owned(nil); len(owned) == 1 {
				mirrorShips[i] = owned[0]
			}
		}
	})
	byURL := map[string]int{}
	for k, g := range s.gws {
		byURL[g.url] = k
	}
	for i, c := range cs {
		pl := players[i]
		wasOn0 := c.gw == 0
		url := c.c.URL()
		if k := byURL[url]; k == 0 || !wasOn0 && k != c.gw {
			t.Fatalf("client %d of gateway %d is on gateway %d after gateway 0 crashed", i, c.gw, k)
		}
		st := c.c.Stats()
		switch {
		case wasOn0 && st.Resumes == 0:
			t.Fatalf("client %d of gateway 0 did not resume its session (%d reconnects)", i, st.Reconnects)
		case !wasOn0 && st.Reconnects != 0:
			t.Fatalf("client %d of gateway %d reconnected %d times", i, c.gw, st.Reconnects)
		}
		if id := c.c.ClientID(); id != pl.id {
			t.Fatalf("client %d came back as client %d, was %d", i, id, pl.id)
		}
		if k := pl.resyncs.Load(); k != 0 {
			t.Fatalf("client %d: %d entities left its mirror for a full resync", i, k)
		}
		if mirrorShips[i] != pl.ship {
			t.Fatalf("client %d's own ship is mirror entity %v, was %v", i, mirrorShips[i], pl.ship)
		}
		if k := hooks.count(hooks.connected, pl.id); k != 1 {
			t.Fatalf("client %d: the simulation ran OnConnect %d times", i, k)
		}
		if k := hooks.count(hooks.departed, pl.id); k != 0 {
			t.Fatalf("client %d: the simulation ran OnDisconnect", i)
		}
		if k := hooks.count(hooks.resumed, pl.id); wasOn0 && k == 0 || !wasOn0 && k != 0 {
			t.Fatalf("client %d of gateway %d: the simulation ran OnResume %d times", i, c.gw, k)
		}
		if holders[i] != pl.id {
			t.Fatalf("client %d's ship is controlled by %d after the failover, want %d", i, holders[i], pl.id)
		}
		c.gw = byURL[url]
	}
	perGW := make([]int, len(s.gws))
	for _, i := range moved {
		perGW[cs[i].gw]++
	}
	t.Logf("the clients of gateway 0 resumed at gateways 1 and 2: %d and %d", perGW[1], perGW[2])
	if perGW[1] == 0 || perGW[2] == 0 {
		t.Fatal("the clients of gateway 0 did not spread over the other gateways")
	}
	if d := s.sim.Stats().Resumes - simBefore.Resumes; d != uint64(len(moved)) {
		t.Fatalf("the simulation counted %d resumes, want %d", d, len(moved))
	}

	// Every client refuels its ship: the simulation answers each, moved or
	// not, and the World has the values.
	muts := make([]<-chan netclient.MutationResult, n)
	s.cdo(func() {
		for i, c := range cs {
			muts[i] = netclient.Mutate(c.c, players[i].ship, fuel, soFuelData{Level: int32(1000 + i)}, nil)
		}
	})
	for i, r := range soAwait(s, muts, "the mutations after the failover") {
		if r.Status != ebisync.Ok || r.Err != nil {
			t.Fatalf("client %d's mutation after the failover: %v %q %v", i, r.Status, r.Message, r.Err)
		}
	}
	s.do(func() {
		for i, e := range ships {
			if got := soFuel.Get(s.world.Entry(e)).Level; got != int32(1000+i) {
				t.Errorf("client %d's ship has fuel %d in the World, want %d", i, got, 1000+i)
			}
		}
	})
	s.run(true, 25)
	if held := s.converge("after the mutations", 60*time.Second); held == 0 {
		t.Fatal("the clients hold nothing: the test is not testing")
	}
	s.logStats("end")
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
