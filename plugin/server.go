package plugin

import (
	"unsafe"

	"context"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/yohamta/donburi"
	"github.com/yohamta/donburi/ecs"
	"github.com/yohamta/donburi/features/transform"

	"github.com/ebisync/ebisync/components"
	"github.com/ebisync/ebisync/internal/codec"
)

// maxSynced bounds the components a server replicates, so per-client
// bookkeeping fits in one 64-bit mask per entity.
const maxSynced = 64

// Server replicates a donburi World to WebSocket clients.
//
// It is an http.Handler: mount it on the game's own mux (commonly at
// "/sync"). Tick (or System, inside a donburi ecs) must be called once per
// game tick on the goroutine that owns the World; every World access
// happens there. ServeHTTP, Stats, ReadStats, CurrentTick and Close are
// safe for concurrent use; every other method must be called on the game
// goroutine.
type Server struct {
	world donburi.World
	reg   *components.Registry
	opts  Options
	log   *slog.Logger

	comps []*codec.Codec // registry order
	ctrl  *codec.Codec   // built-in Control

	hierarchy   bool                                     // components.Parent and transform.Transform are registered
	kidScratch  []uint32                                 // refreshChildren's list of descendants
	msgTypes    []*components.MessageType                // registry order
	msgCodecs   []*codec.Codec                           // registry order
	msgHandlers []func(ClientInfo, unsafe.Pointer) error // by message type id; nil: none
	inputSteps  []inputStep                              // by message type id; nil: not an input (input.go)
	inputVals   []unsafe.Pointer                         // by message type id: the value a plain input type decodes into; nil: a new one each time

	// Game-goroutine state, kept from tick to tick.
	tick     uint32
	records  // the replicated entities by net id (records.go)
	copts    []compOpts
	archSeen int       // archetypes of the World looked at
	archs    []archRef // those with the Replicated tag
	posIndex int       // registry index of components.Position when it gives positions; -1 otherwise
	grid     grid      // entities with a position
	globals  idSet     // replicated entities without a position
	clients  []*client
	byID     map[uint64]*client
	parked   []*client  // clients whose session may be resumed, longest parked first (resume.go)
	cgrid    clientGrid // clients by their centre, rebuilt every tick
	controls map[uint32]*controlHold
	tickDur  time.Duration
	scanGap  uint32 // least ticks between two rescans of one client
	disp     dispatcher
	frame    frame      // the buffers of one tick's data, reused by every tick
	pub      publisher  // Options.Publish's chunks (publish.go)
	gw       *gateway   // a gateway's feed and store (gateway.go); nil for a Server of a World
	remote   remoteSide // the clients that gateways serve (remote.go)
	test     testKnobs

	// Cross-goroutine state.
	mu     sync.Mutex
	joins  []*conn
	leaves []*conn
	conns  map[*conn]struct{}
	closed bool
	// sessions are the resumable sessions by client id (resume.go).
	sessions map[uint64]*session
	// Connections counted against the limits: in their handshake, and
	// open, by remote IP (see admitHTTP).
	handshaking int
	perAddr     map[string]int
	refused     refusals
	wg          sync.WaitGroup
	nextID      atomic.Uint64
	curTick     atomic.Uint32
	visTick     atomic.Uint64 // the tick clients see: curTick, or a gateway's simulation tick
	stats       serverStats
	insp        atomic.Pointer[Inspector] // set once by Server.Inspector (inspect.go)
	// hsCtx bounds handshakes in progress: Close cancels it so a client
	// that never sends its Hello cannot hold Close for HandshakeTimeout.
	hsCtx    context.Context
	hsCancel context.CancelFunc
}

// testKnobs turns the tick's shortcuts off and counts their use, for the
// tests that compare the shortcuts with the general way.
type testKnobs struct {
	noFastPath bool // every view through emitNow
	noQuick    bool // every entity through detectEntity
	fastViews  int  // views emitFast wrote
}

// compOpts is a component's options as the tick uses them.
type compOpts struct {
	Explicit bool
	minTicks uint32 // MaxRate as ticks between updates; 0: every tick
}

// New returns a Server replicating world with the components of reg, which
// it freezes. It panics on a programmer error: reg has more than 64
// components, or opts.Publish is set without components.Position
// registered and the default Options.Position. Nothing happens until the game calls Tick. Call New before
// serving: a Server is safe for concurrent use only as each method says.
func New(world donburi.World, reg *components.Registry, opts *Options) *Server {
	if reg.Len() > maxSynced {
		panic(fmt.Sprintf("ebisync: a server replicates at most %d components, the registry has %d", maxSynced, reg.Len()))
	}
	reg.Freeze()
	o := opts.withDefaults()
	s := &Server{
		world:    world,
		reg:      reg,
		opts:     o,
		log:      o.Logger,
		byID:     make(map[uint64]*client),
		conns:    make(map[*conn]struct{}),
		sessions: make(map[uint64]*session),
		perAddr:  make(map[string]int),
		controls: make(map[uint32]*controlHold),
		tickDur:  time.Second / time.Duration(o.TickRate),
	}
	s.hsCtx, s.hsCancel = context.WithCancel(context.Background())
	s.remote.init()
	s.scanGap = uint32(max(1, math.Ceil(float64(o.TickRate)/o.RescanRate)))
	s.refused = refusals{log: o.Logger, interval: o.RefusalLogInterval, epoch: time.Now()}
	s.disp.run = func() {
		defer s.wg.Done()
		s.dispatch()
	}
	for _, c := range reg.All() {
		s.comps = append(s.comps, codec.Of(c))
	}
	_, hasParent := reg.Of(components.Parent)
	_, hasTransform := reg.Of(transform.Transform)
	s.hierarchy = hasParent && hasTransform
	s.msgTypes = reg.Messages()
	for _, mt := range s.msgTypes {
		s.msgCodecs = append(s.msgCodecs, codec.Of(mt))
	}
	s.msgHandlers = make([]func(ClientInfo, unsafe.Pointer) error, len(s.msgTypes))
	ctrl, _ := reg.Of(components.Control)
	s.ctrl = codec.Of(ctrl)
	s.posIndex = -1
	if pc, ok := reg.Of(components.Position); ok && o.defaultPos {
		// The default Position reads the registered position component:
		// detection reads it from the value it has just compared.
		s.posIndex = pc.Index()
	}
	for _, c := range s.comps {
		o := c.Options()
		co := compOpts{Explicit: o.Explicit}
		if o.MaxRate > 0 {
			co.minTicks = uint32(math.Ceil(float64(s.opts.TickRate) / o.MaxRate))
		}
		s.copts = append(s.copts, co)
	}
	s.records = newRecords(s.comps)
	s.refOf = s.refOfEntity
	s.grid.init(o.CellSize)
	s.cgrid.init()
	if o.Publish != nil {
		if s.posIndex < 0 {
			panic("ebisync: Options.Publish needs components.Position registered and Options.Position left nil, so that a chunk's consumers read positions from it")
		}
		s.pub.init(o.Publish, o.PublishCellSize)
	}
	return s
}

// World returns the replicated world. It is safe for concurrent use; the
// world itself is not.
func (s *Server) World() donburi.World { return s.world }

// Registry returns the server's registry, frozen. It is safe for
// concurrent use.
func (s *Server) Registry() *components.Registry { return s.reg }

// CurrentTick returns the number of the last completed tick. It is safe for
// concurrent use.
func (s *Server) CurrentTick() uint64 { return uint64(s.curTick.Load()) }

// System is Tick as a donburi ecs.System: ecs.AddSystem(server.System).
// Like Tick, it runs on the goroutine that owns the World.
func (s *Server) System(_ *ecs.ECS) { s.Tick() }

// Tick runs one replication step: it applies what clients sent, detects
// what changed in the World, updates every client's scope and sends each
// client its batch. Call it once per game tick, after the simulation, on
// the goroutine that owns the World. It does not block on the network. It
// panics on its 2³²−1st call (over two years at 60 Hz), since every
// client's baseline counts ticks in 32 bits; no input from the network
// makes it panic.
func (s *Server) Tick() {
	start := time.Now()
	s.tick++
	if s.tick == components.VersionTouched {
		// 2^32 ticks is over two years at 60 Hz; wrapping would confuse
		// every baseline, so stop replicating loudly instead.
		panic("ebisync: server tick counter exhausted")
	}
	// Each step takes the value the step before returns (see frame).
	f := s.frame.reset()
	s.admit()
	s.applyInbound(f)
	s.applyRemote() // the requests gateways forwarded (remote.go)
	s.applyEdits()  // an Inspector's edits, through the mutation path (inspect_tick.go)
	s.syncParents()
	t1 := time.Now()
	var ch *changes
	if s.gw != nil {
		s.followCells()
		ch = s.detectFed(&f.changes)
	} else {
		ch = s.detect(&f.changes)
	}
	t2 := time.Now()
	s.expireControls()
	out := s.plan(&f.out)
	s.updateScopes(ch, out)
	t3 := time.Now()
	s.send(out)
	s.publish(ch)
	s.relay()  // the answers to gateways' clients (remote.go)
	s.upward() // a gateway's requests to its simulation (upstream.go)
	t4 := time.Now()
	s.publishStats(ch, out)
	s.stats.phases[0].Store(int64(t1.Sub(start)))
	s.stats.phases[1].Store(int64(t2.Sub(t1)))
	s.stats.phases[2].Store(int64(t3.Sub(t2)))
	s.stats.phases[3].Store(int64(t4.Sub(t3)))
	s.curTick.Store(s.tick)
	s.noteVisible() // upstream.go
	s.stats.tickNanos.Store(int64(time.Since(start)))
	s.stats.ticks.Add(1)
	s.observeTick(start) // tickstats.go
}

// Close disconnects every client with close code 1001 (going away), waits
// for their goroutines and refuses new connections. It returns within about
// a second: the network connection of a peer that has not answered the
// close by then is cut. It is safe for concurrent use and idempotent. The
// World is left as it is.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		s.wg.Wait()
		return nil
	}
	s.closed = true
	s.hsCancel()
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.shutdown(statusGoingAway, "server shutting down")
	}
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	t := time.NewTimer(closeGrace)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		// coder/websocket waits up to 5 s for a peer's answer to the
		// close, and a writer may wait WriteTimeout for a peer that does
		// not read: cutting the connection ends both.
		for _, c := range conns {
			_ = c.net.Close()
		}
		<-done
	}
	return nil
}

// closeGrace is how long Close waits for peers to answer its close before
// it cuts their connections.
const closeGrace = time.Second

// ServeHTTP accepts a WebSocket connection and serves it until it ends. It
// is safe for concurrent use, as net/http calls it.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		http.Error(w, "ebisync server closed", http.StatusServiceUnavailable)
		return
	}
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()
	s.serve(w, r)
}

// admit moves connections that finished their handshake into the tick's
// client list, parks or frees clients that left, and ends the sessions
// whose window passed (all of them once the server is closed).
func (s *Server) admit() {
	s.mu.Lock()
	joins, leaves := s.joins, s.leaves
	s.joins, s.leaves = nil, nil
	closed := s.closed
	s.mu.Unlock()
	for _, cn := range joins {
		if s.forwards() {
			s.upJoined(cn) // upstream.go
		}
		if cn.left.Load() {
			s.unclaim(cn)
			continue
		}
		if cn.resume != nil && !s.holdsClaim(cn) {
			// A newer connection claimed the session since: it joins
			// instead.
			cn.shutdown(statusGoingAway, "session resumed on another connection")
			continue
		}
		cn.joined.Store(true)
		if cn.resume != nil {
			if cl := s.byID[cn.id]; cl != nil {
				s.resumeClient(cl, cn, cn.resume.tick)
				s.stats.resumes.Add(1)
				if s.opts.OnResume != nil {
					s.opts.OnResume(cl.info())
				}
				continue
			}
		}
		cl := newClient(s, cn)
		s.clients = append(s.clients, cl)
		if r := cn.resume; r != nil && r.elsewhere {
			s.byID[cn.id] = cl
			s.resumeElsewhere(cl, r) // upstream.go
			s.joinSession(cn)
			s.stats.resumes.Add(1)
			if s.opts.OnResume != nil {
				s.opts.OnResume(cl.info())
			}
			continue
		}
		s.byID[cn.id] = cl
		if cn.resume != nil {
			// The session ended between its claim and now: the client,
			// told it resumed, keeps nothing and is sent everything, and
			// its input stream goes on.
			cl.resuming = true
			cl.inputs.resync = true
		}
		s.joinSession(cn)
		if s.opts.OnConnect != nil {
			s.opts.OnConnect(cl.info())
		}
	}
	for _, cn := range leaves {
		cl, ok := s.byID[cn.id]
		if !ok || cl.cn != cn {
			continue // a resumed session's old connection
		}
		s.leaveOrPark(cl, cn)
	}
	s.expireParked(closed)
}
