package plugin_test

import (
	"context"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/yohamta/donburi"

	"github.com/ebisync/ebisync/components"
	"github.com/ebisync/ebisync/internal/hostile"
	"github.com/ebisync/ebisync/internal/testutil"
	"github.com/ebisync/ebisync/internal/wire"
	"github.com/ebisync/ebisync/netclient"
	"github.com/ebisync/ebisync/netsim"
	"github.com/ebisync/ebisync/plugin"
)

// exitLog counts a client's spawns and exits by reason, and the spawns of
// entities it already held.
type exitLog struct {
	mu      sync.Mutex
	held    map[donburi.Entity]bool
	exits   map[netclient.ExitReason]int
	spawns  int
	doubles int
}

func newExitLog() *exitLog {
	return &exitLog{held: map[donburi.Entity]bool{}, exits: map[netclient.ExitReason]int{}}
}

func (l *exitLog) count(r netclient.ExitReason) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.exits[r]
}

// resumeWorld creates n entities with a position and a health, scattered.
func resumeWorld(w donburi.World, n int) []donburi.Entity {
	rng := rand.New(rand.NewPCG(3, 4))
	ents := make([]donburi.Entity, n)
	for i := range ents {
		e := w.Create(components.Replicated, components.Position, components.Health)
		components.Position.SetValue(w.Entry(e), components.PositionData{X: rng.Float64() * 1000, Y: rng.Float64() * 1000})
		components.Health.SetValue(w.Entry(e), components.HealthData{Current: 100, Max: 100})
		ents[i] = e
	}
	return ents
}

// TestResume: a connection cut mid-stream and resumed within the window
// keeps the client's id, ownership and mirror: no ExitResync, no spawn of
// an entity it holds, and the oracle converges. When 1% of the world
// changed during the cut, the resume costs at most a tenth of a full
// snapshot. A client that comes back after the window gets a fresh session
// and a full resync.
func TestResume(t *testing.T) {
	const n = 2000
	reg := standardRegistry()
	var resumed, connected, disconnected atomic.Int32
	h := newHarness(t, reg, &plugin.Options{
		ResumeWindow: 2 * time.Second,
		OnResume:     func(plugin.ClientInfo) { resumed.Add(1) },
		OnConnect:    func(plugin.ClientInfo) { connected.Add(1) },
		OnDisconnect: func(plugin.ClientInfo) { disconnected.Add(1) },
	}, 5*time.Millisecond)
	defer h.close()
	var ents []donburi.Entity
	h.do(func(w donburi.World) { ents = resumeWorld(w, n) })

	proxy, err := netsim.Listen(h.ts.Listener.Addr().String(), &netsim.Options{Latency: 60 * time.Millisecond, Jitter: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()

	log := newExitLog()
	p := startClientLoop(t, proxy.URL(h.url), reg, &netclient.Options{
		MinBackoff: time.Millisecond,
		MaxBackoff: 5 * time.Millisecond,
		OnSpawn: func(e donburi.Entity) {
			log.mu.Lock()
			defer log.mu.Unlock()
			log.spawns++
			if log.held[e] {
				log.doubles++
			}
			log.held[e] = true
		},
		OnDespawn: func(e donburi.Entity, r netclient.ExitReason) {
			log.mu.Lock()
			defer log.mu.Unlock()
			log.exits[r]++
			delete(log.held, e)
		},
	})
	defer p.close()
	if err := p.c.SubscribeAll(); err != nil {
		t.Fatal(err)
	}
	id := p.c.ClientID()
	ship := ents[0]
	h.do(func(w donburi.World) {
		w.Entry(ship).AddComponent(components.Owner)
		components.Owner.SetValue(w.Entry(ship), components.OwnerData{Client: id})
	})
	all := map[int]bool{}
	for i := range reg.Len() {
		all[i] = true
	}
	converge := func(what string) {
		t.Helper()
		h.ticks(3)
		var want map[uint64]expectation
		h.do(func(sw donburi.World) { want, _ = view(sw, reg, all, 0, 0, 0, 1) })
		if _, err := awaitConvergence(p, reg, want, nil, 10*time.Second); err != nil {
			t.Fatalf("%s: did not converge: %v", what, err)
		}
	}
	converge("before the cut")
	snapshot := p.c.Stats().BytesIn // the full first sync, and a few small batches
	shipNet := func() (id uint32) {
		h.do(func(w donburi.World) { id = components.Replicated.Get(w.Entry(ship)).NetID })
		return id
	}()

	// The cut: the proxy holds the reconnect while 1% of the world
	// changes (moves, a despawn, a spawn, a component removed), then lets
	// it through.
	rng := rand.New(rand.NewPCG(1, 2))
	cut := func(changes int) {
		t.Helper()
		reconnects := p.c.Stats().Reconnects
		proxy.SetPaused(true)
		proxy.Cut()
		testutil.Eventually(t, 5*time.Second, "the server to park the client", func() bool { return h.srv.Stats().Parked == 1 })
		h.do(func(w donburi.World) {
			for range changes {
				e := ents[1+rng.IntN(len(ents)-1)]
				if !w.Valid(e) {
					continue
				}
				p := components.Position.Get(w.Entry(e))
				components.Position.SetValue(w.Entry(e), components.PositionData{X: p.X + 3, Y: p.Y - 2})
			}
			w.Remove(ents[n-1])
			ents[n-1] = w.Create(components.Replicated, components.Position)
			if e := w.Entry(ents[n-2]); e.HasComponent(components.Health) {
				e.RemoveComponent(components.Health)
			}
		})
		h.ticks(2)
		proxy.SetPaused(false)
		testutil.Eventually(t, 10*time.Second, "the client to reconnect", func() bool {
			return p.c.Stats().Reconnects > reconnects && p.c.Connected()
		})
	}

	before := p.c.Stats().BytesIn
	cut(n / 100)
	converge("after a resume")
	cost := p.c.Stats().BytesIn - before
	if got := p.c.ClientID(); got != id {
		t.Fatalf("client id %d after the resume, want %d", got, id)
	}
	if st := p.c.Stats(); st.Resumes != 1 {
		t.Fatalf("Resumes = %d, want 1", st.Resumes)
	}
	if n := log.count(netclient.ExitResync); n != 0 {
		t.Fatalf("%d ExitResync on a resume", n)
	}
	if log.doubles != 0 {
		t.Fatalf("%d spawns of entities the mirror held", log.doubles)
	}
	if n := log.count(netclient.ExitAway); n != 1 {
		t.Errorf("%d entities exited as away, want 1 (the one despawned)", n)
	}
	if e, ok := p.c.Entity(shipNet); !ok || !p.c.Owns(e) {
		t.Fatalf("the client does not own its ship after the resume")
	}
	if resumed.Load() != 1 || connected.Load() != 1 || disconnected.Load() != 0 {
		t.Fatalf("hooks: %d resumes, %d connects, %d disconnects; want 1, 1, 0", resumed.Load(), connected.Load(), disconnected.Load())
	}
	t.Logf("resume after 1%% of %d entities changed: %d bytes; the first sync %d bytes (%.1f%%)", n, cost, snapshot, 100*float64(cost)/float64(snapshot))
	if cost*10 > snapshot {
		t.Errorf("the resume cost %d bytes, more than a tenth of the first sync's %d", cost, snapshot)
	}

	// Beyond the window: a fresh session, the mirror cleared and sent again.
	reconnects := p.c.Stats().Reconnects
	proxy.SetPaused(true)
	proxy.Cut()
	testutil.Eventually(t, 10*time.Second, "the parked session to expire", func() bool { return disconnected.Load() == 1 })
	if st := h.srv.Stats(); st.Parked != 0 {
		t.Fatalf("%d sessions parked after the window", st.Parked)
	}
	proxy.SetPaused(false)
	testutil.Eventually(t, 10*time.Second, "the client to reconnect", func() bool {
		return p.c.Stats().Reconnects > reconnects && p.c.Connected()
	})
	converge("after the window")
	if got := p.c.ClientID(); got == id {
		t.Fatalf("client id %d kept after the window", got)
	}
	if n := log.count(netclient.ExitResync); n == 0 {
		t.Fatalf("no ExitResync after the window: the mirror was not cleared")
	}
	if connected.Load() != 2 {
		t.Fatalf("%d connects, want 2", connected.Load())
	}
}

// resumeRaw opens a raw connection whose Hello asks to resume session id
// with token, from tick, and returns the connection and its Welcome.
func resumeRaw(t *testing.T, url string, reg *components.Registry, hdr http.Header, id uint64, token [wire.TokenLen]byte, tick uint64) (*websocket.Conn, wire.Welcome) {
	t.Helper()
	ws := dialWS(t, url, reg, hdr, false)
	hello := hostile.Hello(reg, "resumer")
	hello.Resume = &wire.Resume{ClientID: id, Token: token, Tick: tick}
	return ws, handshakeHello(t, ws, hello)
}

// TestResumeTokens: a forged token, another client's token, another
// identity's session and an expired token are each refused, and each of
// them gets a fresh session, while the session they aimed at stays
// parked for its owner; the owner's own token resumes it.
func TestResumeTokens(t *testing.T) {
	reg := standardRegistry()
	users := map[string]string{"alice-key": "alice", "bob-key": "bob"}
	h := newHarness(t, reg, &plugin.Options{
		ResumeWindow: 500 * time.Millisecond,
		Authenticate: func(r *http.Request) (plugin.Identity, error) {
			user, ok := users[plugin.BearerToken(r)]
			if !ok {
				return plugin.Identity{}, plugin.ErrUnauthenticated
			}
			return plugin.Identity{User: user}, nil
		},
	}, 2*time.Millisecond)
	defer h.close()
	h.do(func(w donburi.World) { resumeWorld(w, 10) })
	alice := http.Header{"Authorization": {"Bearer alice-key"}}
	bob := http.Header{"Authorization": {"Bearer bob-key"}}

	a := dialWS(t, h.url, reg, alice, false)
	aw := handshakeWS(t, a, reg)
	b := dialWS(t, h.url, reg, alice, false)
	bw := handshakeWS(t, b, reg)
	defer b.CloseNow()
	if aw.Token == bw.Token || aw.Token == ([wire.TokenLen]byte{}) {
		t.Fatalf("tokens: %x and %x", aw.Token, bw.Token)
	}
	testutil.Eventually(t, 5*time.Second, "both to join", func() bool { return h.srv.Stats().Clients == 2 })
	a.CloseNow() // vanishes: its session is parked
	testutil.Eventually(t, 5*time.Second, "alice's first session to be parked", func() bool { return h.srv.Stats().Parked == 1 })

	refused := func(what string, hdr http.Header, token [wire.TokenLen]byte) {
		t.Helper()
		before := h.srv.Stats().ResumesRefused
		ws, wel := resumeRaw(t, h.url, reg, hdr, aw.ClientID, token, aw.Tick)
		defer ws.Close(websocket.StatusNormalClosure, "") // leaves for good: not parked
		if wel.Resumed || wel.ClientID == aw.ClientID {
			t.Fatalf("%s: resumed (client %d, resumed %v)", what, wel.ClientID, wel.Resumed)
		}
		if got := h.srv.Stats().ResumesRefused - before; got != 1 {
			t.Fatalf("%s: %d resumes refused, want 1", what, got)
		}
		if st := h.srv.Stats(); st.Parked != 1 {
			t.Fatalf("%s: %d sessions parked, want alice's one", what, st.Parked)
		}
	}
	forged := aw.Token
	forged[0] ^= 1
	refused("a forged token", alice, forged)
	refused("another client's token", alice, bw.Token)
	refused("another identity", bob, aw.Token)

	// The owner resumes: same id, and a first batch that says so.
	ws, wel := resumeRaw(t, h.url, reg, alice, aw.ClientID, aw.Token, aw.Tick)
	if !wel.Resumed || wel.ClientID != aw.ClientID || wel.Token != aw.Token {
		t.Fatalf("the owner's resume: %+v", wel)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, msg, err := ws.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	kind, body, _, err := wire.Open(msg, nil)
	var first wire.Batch
	if err == nil && kind == wire.KindBatch {
		err = wire.DecodeBatch(body, testutil.RegistrySizer{Reg: reg}, &first)
	}
	if err != nil || !first.Resume {
		t.Fatalf("the resumed session's first message: kind %v, err %v, resume %v", kind, err, first.Resume)
	}

	// Expired: the session is parked again and outlives its window.
	testutil.Eventually(t, 5*time.Second, "the resumed session to join", func() bool { return h.srv.Stats().Parked == 0 })
	ws.CloseNow()
	testutil.Eventually(t, 5*time.Second, "the session to be parked and expire", func() bool {
		st := h.srv.Stats()
		return st.Parked == 0 && st.Clients == 1 // bob's stays
	})
	refused2 := h.srv.Stats().ResumesRefused
	late, lw := resumeRaw(t, h.url, reg, alice, aw.ClientID, aw.Token, aw.Tick)
	defer late.CloseNow()
	if lw.Resumed || lw.ClientID == aw.ClientID || h.srv.Stats().ResumesRefused != refused2+1 {
		t.Fatalf("an expired token resumed: %+v", lw)
	}
}

// TestResumeBounds: the sessions kept for departed clients are bounded by
// count (the longest departed ends first) and by bytes.
func TestResumeBounds(t *testing.T) {
	reg := standardRegistry()
	var gone sync.Map
	h := newHarness(t, reg, &plugin.Options{
		MaxResumable: 2,
		OnDisconnect: func(c plugin.ClientInfo) { gone.Store(c.ID, true) },
	}, 2*time.Millisecond)
	defer h.close()
	h.do(func(w donburi.World) { resumeWorld(w, 100) })
	var ids []uint64
	for i := range 3 {
		rc := dialRaw(t, h.url, reg, true)
		rc.subscribeAll()
		ids = append(ids, rc.wel.ClientID)
		testutil.Eventually(t, 5*time.Second, "the client to join", func() bool { return h.srv.Stats().Clients == 1 })
		rc.ws.CloseNow()
		testutil.Eventually(t, 5*time.Second, "the client to be parked", func() bool { st := h.srv.Stats(); return st.Clients == 0 && st.Parked == min(i+1, 2) })
	}
	testutil.Eventually(t, 5*time.Second, "the first departed to end", func() bool { _, ok := gone.Load(ids[0]); return ok })
	for _, id := range ids[1:] {
		if _, ok := gone.Load(id); ok {
			t.Fatalf("client %d ended; the bound keeps the two latest", id)
		}
	}

	// A byte bound below one client's state keeps none.
	h2 := newHarness(t, reg, &plugin.Options{ResumeBytes: 1}, 2*time.Millisecond)
	defer h2.close()
	h2.do(func(w donburi.World) { resumeWorld(w, 100) })
	rc := dialRaw(t, h2.url, reg, true)
	rc.subscribeAll()
	testutil.Eventually(t, 5*time.Second, "the client to see entities", func() bool { return h2.srv.Stats().ScopeEntries == 100 })
	rc.ws.CloseNow()
	testutil.Eventually(t, 5*time.Second, "the client to be freed", func() bool {
		st := h2.srv.Stats()
		return st.Clients == 0 && st.Parked == 0 && st.ScopeEntries == 0
	})
}
