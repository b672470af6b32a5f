package plugin_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/yohamta/donburi"
	"go.uber.org/goleak"

	"github.com/ebisync/ebisync/components"
	"github.com/ebisync/ebisync/internal/testutil"
	"github.com/ebisync/ebisync/netclient"
	"github.com/ebisync/ebisync/plugin"
)

// TestChaos runs netclients through a loopback TCP proxy that, round after
// round, cuts their connections at random byte offsets in either direction
// (so usually in the middle of a WebSocket frame, and sometimes in the
// middle of the HTTP upgrade or the Hello/Welcome exchange of a reconnect),
// by closing both sides, resetting them (SO_LINGER 0) or half-closing one
// direction. The clients reconnect by themselves while the world churns.
// When the cutting stops, every mirror must converge to the server's world
// restricted to the client's scope (the oracle of TestConvergence), and
// once the clients close the server must be back to no connections and
// about the heap it had before they connected; TestMain's goleak and the
// check at the end of the test catch any goroutine left behind.
//
// The seed is logged; EBISYNC_CHAOS_SEED=<seed> replays the choices of a
// run (the network's timing still varies). On failure the tail of the
// server's and clients' debug log is printed.
func TestChaos(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())

	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("EBISYNC_CHAOS_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("EBISYNC_CHAOS_SEED: %v", err)
		}
		seed = v
	}
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))

	const (
		rounds     = 32
		nClients   = 10
		entities   = 300
		size       = 2000.0
		hyst       = 1.15
		tickPeriod = 5 * time.Millisecond
		// heapSlack bounds how much larger the heap may be once every
		// client has closed than before the first one connected. It
		// allows for high-water marks, 150-260 KB in practice: each
		// entity's slice of views keeps the capacity for the most
		// clients that saw it at once, the spatial grid and the state of
		// the churned entities grow. A server connection holds about
		// 30 KB (BenchmarkMemoryPerClient, more here where clients see
		// more) and a run makes 150-250 of them, so leaking a tenth of
		// them, or about 2 KB per connection, exceeds it.
		heapSlack = 512 << 10
	)

	logger, dumpLog := chaosLog(t)
	reg := standardRegistry()
	h := newHarness(t, reg, &plugin.Options{
		Hysteresis:       hyst,
		RescanInterval:   5,
		CellSize:         100,
		HandshakeTimeout: 3 * time.Second,
		Logger:           logger.With("side", "server"),
	}, tickPeriod)
	hClosed := false
	closeHarness := func() {
		if !hClosed {
			hClosed = true
			h.close()
		}
	}
	defer closeHarness()

	proxy := startChaosProxy(t, h.ts.Listener.Addr().String(), seed, logger.With("side", "proxy"))
	defer proxy.close()
	proxyURL := "ws://" + proxy.ln.Addr().String()

	crng := rand.New(rand.NewPCG(seed, 2)) // the world's: used on the game goroutine only
	var live []donburi.Entity
	h.do(func(w donburi.World) { churn(w, crng, &live, size, entities) })

	all := map[int]bool{}
	for i := range reg.Len() {
		all[i] = true
	}
	pos, _ := reg.Of(components.Position)
	health, _ := reg.Of(components.Health)
	name, _ := reg.Of(components.Name)

	var clients []*chaosClient
	closeClients := func() {
		for _, c := range clients {
			c.close()
		}
	}
	defer closeClients()
	dial := func(i int) *chaosClient {
		c := &chaosClient{tr: &http.Transport{}}
		d := &net.Dialer{}
		c.tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			nc, err := d.DialContext(ctx, network, addr)
			if err == nil {
				c.local.Store(nc.LocalAddr().String())
			}
			return nc, err
		}
		c.p = startClientLoop(t, proxyURL, reg, &netclient.Options{
			Name:             fmt.Sprintf("chaos-%d", i),
			MinBackoff:       2 * time.Millisecond,
			MaxBackoff:       30 * time.Millisecond,
			HandshakeTimeout: 3 * time.Second,
			PingInterval:     20 * time.Millisecond, // so that client→server bytes flow too
			HTTPClient:       &http.Client{Transport: c.tr},
			Logger:           logger.With("side", "client", "client", i),
		})
		return c
	}

	// Warm up once, so that lazily allocated server state is not counted as
	// growth, then take the heap's baseline.
	warm := dial(-1)
	clients = append(clients, warm)
	if err := warm.p.c.SubscribeAll(); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "warm-up client to see entities", func() bool { return warm.p.c.Stats().Entities > 0 })
	warm.close()
	clients, warm = nil, nil // unreachable: the baseline is the server's
	testutil.Eventually(t, 10*time.Second, "warm-up client to leave", func() bool {
		st := h.srv.Stats()
		return st.Connections == 0 && st.Clients == 0
	})
	baseHeap := heapAfterGC()

	// The world churns (moves, spawns, despawns, component changes) about
	// every other tick until the cutting stops.
	stopChurn := make(chan struct{})
	churned := make(chan struct{})
	go func() {
		defer close(churned)
		tk := time.NewTicker(2 * tickPeriod)
		defer tk.Stop()
		for {
			select {
			case <-stopChurn:
				return
			case <-tk.C:
			}
			h.do(func(w donburi.World) { churn(w, crng, &live, size, crng.IntN(3)) })
		}
	}()
	churnStopped := false
	endChurn := func() {
		if !churnStopped {
			churnStopped = true
			close(stopChurn)
			<-churned
		}
	}
	defer endChurn()

	// Mixed interest: global clients with every component or some, and
	// clients with a radius around a random point.
	for i := range nClients {
		c := dial(i)
		clients = append(clients, c)
		switch {
		case i < 3:
			c.subs = all
		case i < 6:
			c.subs, c.r = all, 350+rng.Float64()*250
		case i < 8:
			c.subs, c.r = map[int]bool{pos.Index(): true, health.Index(): true}, 400+rng.Float64()*200
		case i < 9:
			c.subs, c.r = map[int]bool{pos.Index(): true, name.Index(): true}, 600
		default:
			c.subs = map[int]bool{pos.Index(): true, health.Index(): true}
		}
		if c.r > 0 {
			c.cx, c.cy = 300+rng.Float64()*(size-600), 300+rng.Float64()*(size-600)
			if err := c.p.c.SetInterest(c.cx, c.cy, c.r); err != nil {
				t.Fatal(err)
			}
		}
		var cts []donburi.IComponentType
		for _, ci := range slices.Sorted(maps.Keys(c.subs)) {
			cts = append(cts, reg.At(ci).ComponentType())
		}
		if err := c.p.c.Subscribe(cts...); err != nil {
			t.Fatal(err)
		}
	}
	testutil.Eventually(t, 10*time.Second, "every client to see entities", func() bool {
		for _, c := range clients {
			if c.p.c.Stats().Entities == 0 {
				return false
			}
		}
		return true
	})

	// The rounds: cut the live connection of some clients (all of them one
	// round in five) at a random byte offset, and wait until each of them
	// reconnected and received data again. Meanwhile three in ten of the
	// new connections (reconnect attempts) are cut too, at an offset that
	// falls in their HTTP upgrade, handshake or first batches.
	proxy.setArmNew(true)
	start := time.Now()
	for round := range rounds {
		var targets []*chaosClient
		for _, c := range clients {
			if round%5 == 4 || rng.IntN(2) == 0 {
				targets = append(targets, c)
			}
		}
		if len(targets) == 0 {
			targets = append(targets, clients[rng.IntN(len(clients))])
		}
		testutil.Eventually(t, 10*time.Second, fmt.Sprintf("round %d: clients connected", round), func() bool {
			for _, c := range targets {
				if !c.p.c.Connected() {
					return false
				}
			}
			return true
		})
		type armed struct {
			c    *chaosClient
			l    *chaosLink
			rec0 uint64
		}
		var cuts []armed
		for _, c := range targets {
			rec0 := c.p.c.Stats().Reconnects
			l := proxy.link(c.localAddr())
			if l == nil || !c.p.c.Connected() {
				continue // the connection just dropped (an accept-time cut): it reconnects anyway
			}
			dir := rng.IntN(2)
			l.arm(dir, cutOffset(rng, dir, false), cutMode(rng.IntN(3)))
			logger.Debug("armed", "round", round, "client", l.key, "dir", dirNames[dir])
			cuts = append(cuts, armed{c, l, rec0})
		}
		// A cut waits for its bytes; the client→server direction carries
		// little (pings every 20ms), so after a while the link is cut at
		// once wherever it is.
		forceAt := time.Now().Add(400 * time.Millisecond)
		testutil.Eventually(t, 15*time.Second, fmt.Sprintf("round %d: %d cut clients to reconnect", round, len(cuts)), func() bool {
			if time.Now().After(forceAt) {
				for _, a := range cuts {
					a.l.force()
				}
			}
			for _, a := range cuts {
				if a.c.p.c.Stats().Reconnects <= a.rec0 || !a.c.p.c.Connected() {
					return false
				}
			}
			return true
		})
		// Let traffic flow on the new connections before the next cut.
		bytesIn := make([]uint64, len(cuts))
		for i, a := range cuts {
			bytesIn[i] = a.c.p.c.Stats().BytesIn
		}
		testutil.Eventually(t, 10*time.Second, fmt.Sprintf("round %d: data on the new connections", round), func() bool {
			for i, a := range cuts {
				if a.c.p.c.Stats().BytesIn <= bytesIn[i] {
					return false
				}
			}
			return true
		})
	}
	proxy.setArmNew(false)
	proxy.disarmAll()
	t.Logf("%d rounds of cuts in %s", rounds, time.Since(start).Round(time.Millisecond))

	// Settle: every client connected (an accept-time cut may have struck
	// just before the cutting stopped), the world still, then the oracle.
	testutil.Eventually(t, 15*time.Second, "every client connected after the cuts", func() bool {
		for _, c := range clients {
			if !c.p.c.Connected() {
				return false
			}
		}
		return true
	})
	endChurn()
	h.ticks(20)
	deadline := time.Now().Add(15 * time.Second)
	var reconnects, decodeErrors uint64
	for i, c := range clients {
		var want map[uint64]expectation
		var band map[uint64]bool
		h.do(func(sw donburi.World) { want, band = view(sw, reg, c.subs, c.cx, c.cy, c.r, hyst) })
		held, err := awaitConvergence(c.p, reg, want, band, time.Until(deadline))
		if err != nil {
			dumpLog()
			t.Fatalf("client %d (subs %v, interest (%.0f, %.0f) r %.0f) did not converge: %v; stats %+v", i, slices.Sorted(maps.Keys(c.subs)), c.cx, c.cy, c.r, err, c.p.c.Stats())
		}
		st := c.p.c.Stats()
		reconnects += st.Reconnects
		decodeErrors += st.DecodeErrors
		t.Logf("client %d: converged after %d reconnects; mirror holds %d entities, view %d (+%d in band)", i, st.Reconnects, held, len(want), len(band))
		if len(want) == 0 {
			t.Errorf("client %d sees nothing: the test is not testing", i)
		}
	}
	// A cut connection is a peer that went away, never a peer that broke
	// the protocol: coder/websocket delivers a message cut short by the end
	// of the connection as if it were complete, and both sides drop such a
	// message (see package internal/eofconn) instead of counting it
	// as bad input.
	st := h.srv.Stats()
	t.Logf("server: %d handshakes, %d entities, refusals %v; clients: %d reconnects, %d decode errors; proxy: %s",
		st.Connects, st.Entities, st.Refusals, reconnects, decodeErrors, proxy.summary())
	if len(st.Refusals) != 0 || decodeErrors != 0 {
		dumpLog()
		t.Errorf("cut connections counted as bad input: server refusals %v, client decode errors %d", st.Refusals, decodeErrors)
	}
	if n := proxy.count("watchdog"); n > 0 {
		dumpLog()
		t.Errorf("%d half-closed links were still open 10s after the cut: a peer ignored the end of its input", n)
	}
	if proxy.midFrame() == 0 {
		t.Errorf("no cut landed inside a WebSocket frame: the test is not testing")
	}

	// Leaks: once the clients close the server holds nothing for them and
	// its heap is back near the baseline.
	closeClients()
	clients = nil
	testutil.Eventually(t, 15*time.Second, "the server to forget every client", func() bool {
		st := h.srv.Stats()
		return st.Connections == 0 && st.Clients == 0 && st.Subscriptions == 0 && st.ScopeEntries == 0
	})
	proxy.close()
	heap := heapAfterGC()
	grown := int64(heap) - int64(baseHeap)
	t.Logf("heap after GC: %d B before the clients connected, %d B after they left (%+d B, bound %d B)", baseHeap, heap, grown, heapSlack)
	if grown > heapSlack {
		t.Errorf("heap grew by %d B over the run, want at most %d B", grown, heapSlack)
	}
	closeHarness()
}

// chaosClient is a netclient on a clientLoop whose transport remembers the
// local address of its last connection, so the proxy's link can be found.
type chaosClient struct {
	p         *clientLoop
	tr        *http.Transport
	local     atomic.Value // string
	subs      map[int]bool
	cx, cy, r float64
	once      sync.Once
}

func (c *chaosClient) localAddr() string {
	s, _ := c.local.Load().(string)
	return s
}

func (c *chaosClient) close() {
	c.once.Do(func() {
		c.p.close()
		c.tr.CloseIdleConnections()
	})
}

// chaosLog returns a debug logger writing to a file, and a function that
// prints the file's last lines to the test log.
func chaosLog(t *testing.T) (*slog.Logger, func()) {
	path := filepath.Join(t.TempDir(), "chaos.log")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	var once sync.Once
	dump := func() {
		once.Do(func() {
			b, err := os.ReadFile(path)
			if err != nil {
				t.Logf("reading the log: %v", err)
				return
			}
			lines := strings.Split(strings.TrimSpace(string(b)), "\n")
			t.Logf("last %d of %d log lines:\n%s", min(len(lines), 300), len(lines), strings.Join(lines[max(0, len(lines)-300):], "\n"))
		})
	}
	t.Cleanup(func() {
		if t.Failed() {
			dump()
		}
	})
	return slog.New(slog.NewTextHandler(f, &slog.HandlerOptions{Level: slog.LevelDebug})), dump
}

// Directions of a link.
const (
	up   = 0 // client → server
	down = 1 // server → client
)

var dirNames = [2]string{"up", "down"}

// cutMode is how a link is cut.
type cutMode int

const (
	cutClose cutMode = iota // close both sides
	cutReset                // SO_LINGER 0 on both sides, then close: the peers get RST
	cutHalf                 // FIN towards the receiver of the cut direction only; the other direction flows until a peer gives up
)

var modeNames = [3]string{"close", "reset", "half-close"}

// cutOffset picks how many more bytes a direction forwards before the cut.
// Client→server carries little (setup, pings), server→client batches.
func cutOffset(rng *rand.Rand, dir int, fresh bool) int64 {
	switch {
	case dir == up && fresh:
		return rng.Int64N(768) // the HTTP request, Hello, interest, subscriptions
	case dir == up:
		return rng.Int64N(64) // a few pings

	case fresh && rng.IntN(3) == 0:
		return rng.Int64N(200) // the 101 response, the Welcome
	case fresh:
		return rng.Int64N(8192) // the first batches
	case rng.IntN(4) == 0:
		return rng.Int64N(32) // within the next frame's header or so
	default:
		return rng.Int64N(1024) // some batches

	}
}

// chaosProxy forwards loopback TCP connections to backend and cuts them on
// demand.
type chaosProxy struct {
	ln      net.Listener
	backend string
	log     *slog.Logger
	wg      sync.WaitGroup // the acceptor and every link's pipes

	mu     sync.Mutex
	rng    *rand.Rand
	links  map[string]*chaosLink // by the client's address
	armNew bool
	closed bool
	counts map[string]int
}

func startChaosProxy(t testing.TB, backend string, seed uint64, log *slog.Logger) *chaosProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &chaosProxy{
		ln:      ln,
		backend: backend,
		log:     log,
		rng:     rand.New(rand.NewPCG(seed, 3)),
		links:   map[string]*chaosLink{},
		counts:  map[string]int{},
	}
	p.wg.Add(1)
	go p.accept()
	return p
}

func (p *chaosProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.DialTimeout("tcp", p.backend, 5*time.Second)
		if err != nil {
			c.Close()
			p.add("backend dial failed", 1)
			continue
		}
		l := &chaosLink{
			p:      p,
			key:    c.RemoteAddr().String(),
			conns:  [2]*net.TCPConn{c.(*net.TCPConn), s.(*net.TCPConn)},
			budget: [2]int64{-1, -1},
			done:   make(chan struct{}),
		}
		l.fr[up].http, l.fr[down].http = true, true
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			c.Close()
			s.Close()
			return
		}
		p.links[l.key] = l
		p.counts["links"]++
		if p.armNew && p.rng.IntN(10) < 3 {
			dir := p.rng.IntN(2)
			l.budget[dir] = cutOffset(p.rng, dir, true)
			l.mode = cutMode(p.rng.IntN(3))
			p.counts["armed at accept"]++
		}
		p.wg.Add(2)
		p.mu.Unlock()
		go l.pipe(up)
		go l.pipe(down)
	}
}

func (p *chaosProxy) add(what string, n int) {
	p.mu.Lock()
	p.counts[what] += n
	p.mu.Unlock()
}

func (p *chaosProxy) count(what string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.counts[what]
}

// midFrame counts the cuts that fell inside a WebSocket frame.
func (p *chaosProxy) midFrame() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for k, v := range p.counts {
		if strings.HasPrefix(k, "cut ") && (strings.HasSuffix(k, " in frame header") || strings.HasSuffix(k, " in payload")) {
			n += v
		}
	}
	return n
}

func (p *chaosProxy) summary() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(p.counts)) {
		parts = append(parts, fmt.Sprintf("%s: %d", k, p.counts[k]))
	}
	return strings.Join(parts, ", ")
}

func (p *chaosProxy) setArmNew(on bool) {
	p.mu.Lock()
	p.armNew = on
	p.mu.Unlock()
}

// link returns the live link of the client at addr, or nil.
func (p *chaosProxy) link(addr string) *chaosLink {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.links[addr]
}

// disarmAll cancels every cut not yet made.
func (p *chaosProxy) disarmAll() {
	p.mu.Lock()
	links := slices.Collect(maps.Values(p.links))
	p.mu.Unlock()
	for _, l := range links {
		l.mu.Lock()
		l.budget = [2]int64{-1, -1}
		l.mu.Unlock()
	}
}

// close stops accepting, closes every link and waits for their goroutines.
func (p *chaosProxy) close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	links := slices.Collect(maps.Values(p.links))
	p.mu.Unlock()
	p.ln.Close()
	for _, l := range links {
		l.closeBoth(false)
	}
	p.wg.Wait()
}

// chaosLink is one proxied connection: conns[up] is the client's side,
// conns[down] the server's; pipe(d) reads conns[d] and writes the other.
type chaosLink struct {
	p     *chaosProxy
	key   string
	conns [2]*net.TCPConn
	fr    [2]frameTracker // of the bytes each direction forwarded; owned by its pipe
	pipes atomic.Int32
	done  chan struct{} // closed once both directions ended and both sides are closed

	mu       sync.Mutex
	budget   [2]int64 // bytes a direction still forwards before the cut; -1: no cut armed
	mode     cutMode
	cut      bool
	finished bool
	watchdog *time.Timer
}

// arm cuts direction dir after n more bytes.
func (l *chaosLink) arm(dir int, n int64, mode cutMode) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cut {
		return
	}
	l.budget = [2]int64{-1, -1}
	l.budget[dir] = n
	l.mode = mode
}

// force cuts the link now (closing both sides) if it was not cut yet.
func (l *chaosLink) force() {
	l.mu.Lock()
	if l.cut {
		l.mu.Unlock()
		return
	}
	l.cut = true
	l.budget = [2]int64{-1, -1}
	l.mu.Unlock()
	l.p.add("cut forced", 1)
	l.p.log.Debug("cut forced", "client", l.key)
	l.closeBoth(false)
}

func (l *chaosLink) closeBoth(rst bool) {
	for _, c := range l.conns {
		if rst {
			_ = c.SetLinger(0)
		}
		_ = c.Close()
	}
}

func (l *chaosLink) pipe(d int) {
	defer l.p.wg.Done()
	defer l.ended()
	src, dst := l.conns[d], l.conns[1-d]
	buf := make([]byte, 4096)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			send, cut := n, false
			l.mu.Lock()
			mode := l.mode
			if b := l.budget[d]; b >= 0 {
				if int64(n) >= b {
					send, cut = int(b), true
					l.budget[d] = -1
					l.cut = true
				} else {
					l.budget[d] -= int64(n)
				}
			}
			l.mu.Unlock()
			if send > 0 {
				if _, err := dst.Write(buf[:send]); err != nil {
					l.closeBoth(false) // the receiver is gone
					return
				}
				l.fr[d].feed(buf[:send])
			}
			if cut {
				l.cutNow(d, mode)
				return
			}
		}
		if err != nil {
			// The sender closed or failed: pass its end on, as a TCP
			// proxy does.
			_ = dst.CloseWrite()
			return
		}
	}
}

// cutNow makes the cut armed on direction d, which its pipe reached.
func (l *chaosLink) cutNow(d int, mode cutMode) {
	what := fmt.Sprintf("cut %s %s %s", dirNames[d], modeNames[mode], l.fr[d].where())
	l.p.add(what, 1)
	l.p.log.Debug(what, "client", l.key)
	switch mode {
	case cutClose:
		l.closeBoth(false)
	case cutReset:
		l.closeBoth(true)
	case cutHalf:
		// The receiver reads the end of its input; the sender's bytes
		// are no longer read. Both peers must notice and close.
		_ = l.conns[1-d].CloseWrite()
		l.mu.Lock()
		if !l.finished {
			l.watchdog = time.AfterFunc(10*time.Second, func() {
				l.p.add("watchdog", 1)
				l.closeBoth(false)
			})
		}
		l.mu.Unlock()
	}
}

// ended runs when a pipe returns; the second one closes the link.
func (l *chaosLink) ended() {
	if l.pipes.Add(1) < 2 {
		return
	}
	l.closeBoth(false)
	l.mu.Lock()
	l.finished = true
	if l.watchdog != nil {
		l.watchdog.Stop()
	}
	l.mu.Unlock()
	l.p.mu.Lock()
	if l.p.links[l.key] == l {
		delete(l.p.links, l.key)
	}
	l.p.mu.Unlock()
	close(l.done)
}

// frameTracker follows a WebSocket byte stream (RFC 6455 §5.2) after its
// HTTP upgrade, to tell where a cut fell.
type frameTracker struct {
	http    bool // still in the HTTP request or response
	crlf    int  // bytes of "\r\n\r\n" matched
	hdr     [14]byte
	nhdr    int // header bytes seen of the current frame
	need    int // the header's length, once its second byte is known
	payload uint64
}

func (f *frameTracker) feed(b []byte) {
	for len(b) > 0 {
		switch {
		case f.http:
			c := b[0]
			b = b[1:]
			switch {
			case c == "\r\n\r\n"[f.crlf]:
				f.crlf++
			case c == '\r':
				f.crlf = 1
			default:
				f.crlf = 0
			}
			if f.crlf == 4 {
				f.http = false
			}
		case f.payload > 0:
			n := min(uint64(len(b)), f.payload)
			f.payload -= n
			b = b[n:]
		default:
			f.hdr[f.nhdr] = b[0]
			f.nhdr++
			b = b[1:]
			if f.nhdr == 2 {
				f.need = 2
				switch f.hdr[1] & 0x7f {
				case 126:
					f.need += 2
				case 127:
					f.need += 8
				}
				if f.hdr[1]&0x80 != 0 {
					f.need += 4 // the client's masking key
				}
			}
			if f.nhdr >= 2 && f.nhdr == f.need {
				f.payload = uint64(f.hdr[1] & 0x7f)
				switch f.payload {
				case 126:
					f.payload = uint64(binary.BigEndian.Uint16(f.hdr[2:4]))
				case 127:
					f.payload = binary.BigEndian.Uint64(f.hdr[2:10])
				}
				f.nhdr, f.need = 0, 0
			}
		}
	}
}

// where says where the stream stopped.
func (f *frameTracker) where() string {
	switch {
	case f.http:
		return "in HTTP upgrade"
	case f.nhdr > 0:
		return "in frame header"
	case f.payload > 0:
		return "in payload"
	}
	return "at frame boundary"
}
