package plugin_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/yohamta/donburi"

	"github.com/ebisync/ebisync/components"
	"github.com/ebisync/ebisync/internal/testutil"
	"github.com/ebisync/ebisync/internal/wire"
	"github.com/ebisync/ebisync/netclient"
	"github.com/ebisync/ebisync/plugin"
)

func TestOrigin(t *testing.T) {
	reg := standardRegistry()
	h := newHarness(t, reg, &plugin.Options{OriginPatterns: []string{"game.example", "https://*.studio.example"}}, 2*time.Millisecond)
	defer h.close()
	host := h.ts.Listener.Addr().String()
	for _, tc := range []struct {
		origin string
		ok     bool
	}{
		{"", true},                             // a native client sends none
		{"http://" + host, true},               // the page the server itself serves
		{"http://game.example", true},          // a listed host, any scheme
		{"https://game.example", true},         //
		{"https://a.studio.example", true},     // a listed scheme://host pattern
		{"http://a.studio.example", false},     // ... whose scheme matters
		{"http://evil.example", false},         // any other site
		{"http://game.example.evil.io", false}, //
		{"null", false},                        // a sandboxed frame or file:// page
	} {
		t.Run(tc.origin, func(t *testing.T) {
			hdr := http.Header{}
			if tc.origin != "" {
				hdr.Set("Origin", tc.origin)
			}
			if !tc.ok {
				expectHTTP(t, h.url, hdr, http.StatusForbidden)
				return
			}
			ws := dialWS(t, h.url, reg, hdr, true)
			ws.Close(websocket.StatusNormalClosure, "")
		})
	}
	if n := h.srv.Stats().Refusals[plugin.RefusedOrigin]; n != 4 {
		t.Fatalf("%d origin refusals counted, want 4", n)
	}
	// netclient sends no Origin: unaffected by the check.
	p := startClientLoop(t, h.url, reg, nil)
	p.close()
}

func TestAuthenticate(t *testing.T) {
	reg, _ := hostileRegistry()
	var mu sync.Mutex
	seen := map[string]map[string]bool{} // hook → users it saw
	saw := func(hook string, ci plugin.ClientInfo) {
		mu.Lock()
		defer mu.Unlock()
		if seen[hook] == nil {
			seen[hook] = map[string]bool{}
		}
		seen[hook][ci.Identity.User] = true
	}
	type account struct{ user, role string }
	tokens := map[string]account{"tok-alice": {"alice", "admin"}, "tok-bob": {"bob", "player"}}
	opts := &plugin.Options{
		Authenticate: func(r *http.Request) (plugin.Identity, error) {
			tok := plugin.BearerToken(r)
			if tok == "tok-mallory" {
				return plugin.Identity{}, fmt.Errorf("%w: banned", plugin.ErrAccessDenied)
			}
			a, ok := tokens[tok]
			if !ok {
				return plugin.Identity{}, plugin.ErrUnauthenticated
			}
			return plugin.Identity{User: a.user, Data: a.role}, nil
		},
		OnConnect: func(ci plugin.ClientInfo) { saw("OnConnect", ci) },
		Filter: func(ci plugin.ClientInfo, _ *donburi.Entry) bool {
			saw("Filter", ci)
			return true
		},
		Authorize: func(req *plugin.Request) error {
			saw("Authorize", req.Client)
			if req.Client.Identity.Data == "admin" {
				return nil // admins may steer anything
			}
			return plugin.DefaultAuthorize(req)
		},
	}
	h := newHarness(t, reg, opts, 2*time.Millisecond)
	defer h.close()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, bad := range []struct {
		token string
		want  error
	}{{"", netclient.ErrUnauthorized}, {"tok-eve", netclient.ErrUnauthorized}, {"tok-mallory", netclient.ErrForbidden}} {
		_, err := netclient.Dial(ctx, h.url, reg, &netclient.Options{Token: bad.token, Logger: quietLogger()})
		if !errors.Is(err, bad.want) {
			t.Fatalf("token %q: Dial returned %v, want %v", bad.token, err, bad.want)
		}
		var he *netclient.HTTPError
		if !errors.As(err, &he) || !strings.Contains(he.Message, "not authenticated") && !strings.Contains(he.Message, "banned") {
			t.Fatalf("token %q: %v carries no reason", bad.token, err)
		}
	}
	st := h.srv.Stats()
	if st.Refusals[plugin.RefusedUnauthenticated] != 2 || st.Refusals[plugin.RefusedAccessDenied] != 1 {
		t.Fatalf("refusals %v", st.Refusals)
	}

	alice := startClientLoop(t, h.url, reg, &netclient.Options{Token: "tok-alice"})
	defer alice.close()
	bob := startClientLoop(t, h.url, reg, &netclient.Options{Token: "tok-bob"})
	defer bob.close()
	for _, p := range []*clientLoop{alice, bob} {
		if err := p.c.SubscribeAll(); err != nil {
			t.Fatal(err)
		}
	}
	// Bob's ship, steered by alice (an admin).
	h.do(func(w donburi.World) {
		e := w.Create(components.Replicated, components.Position, components.Owner, thrust)
		components.Owner.SetValue(w.Entry(e), components.OwnerData{Client: bob.c.ClientID()})
	})
	var bobShip donburi.Entity
	testutil.Eventually(t, 5*time.Second, "bob's ship in alice's mirror", func() bool {
		alice.do(func(w donburi.World) { bobShip = findOwned(w, bob.c.ClientID()) })
		return bobShip != donburi.Null
	})
	var res <-chan netclient.MutationResult
	alice.do(func(w donburi.World) {
		res = netclient.Mutate(alice.c, bobShip, testutil.Handle(alice.c.Registry(), thrust), thrustData{X: 3}, nil)
	})
	if r := <-res; r.Err != nil {
		t.Fatalf("alice's (admin) mutation: %v", r.Err)
	}
	h.do(func(w donburi.World) {
		if v := *thrust.Get(w.Entry(findOwned(w, bob.c.ClientID()))); v.X != 3 {
			t.Errorf("bob's ship thrust %+v after alice's mutation", v)
		}
	})
	testutil.Eventually(t, 5*time.Second, "the identities to reach the hooks", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, hook := range []string{"OnConnect", "Filter"} {
			if !seen[hook]["alice"] || !seen[hook]["bob"] {
				return false
			}
		}
		return seen["Authorize"]["alice"]
	})
	users := map[string]bool{}
	for _, pc := range h.srv.Stats().PerClient {
		users[pc.Identity.User] = true
	}
	if !users["alice"] || !users["bob"] {
		t.Fatalf("Stats.PerClient identities %v", users)
	}
}

// findOwned returns the entity owned by client, or Null.
func findOwned(w donburi.World, client uint64) donburi.Entity {
	for _, a := range w.Archetypes() {
		if !a.Layout().HasComponent(components.Owner) {
			continue
		}
		for _, e := range a.Entities() {
			if components.Owner.Get(w.Entry(e)).Client == client {
				return e
			}
		}
	}
	return donburi.Null
}

func TestConnectionLimits(t *testing.T) {
	reg := standardRegistry()
	t.Run("total", func(t *testing.T) {
		h := newHarness(t, reg, &plugin.Options{MaxConnections: 3}, 2*time.Millisecond)
		defer h.close()
		var ps []*clientLoop
		for range 3 {
			ps = append(ps, startClientLoop(t, h.url, reg, nil))
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := netclient.Dial(ctx, h.url, reg, &netclient.Options{Logger: quietLogger()})
		var he *netclient.HTTPError
		if !errors.Is(err, netclient.ErrServerBusy) || !errors.As(err, &he) || he.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("fourth Dial: %v, want HTTP 503 (ErrServerBusy)", err)
		}
		ps[0].close()
		testutil.Eventually(t, 5*time.Second, "a free place", func() bool { return h.srv.Stats().Connections == 2 })
		p := startClientLoop(t, h.url, reg, nil) // admitted again
		p.close()
		for _, p := range ps[1:] {
			p.close()
		}
		if n := h.srv.Stats().Refusals[plugin.RefusedConnections]; n != 1 {
			t.Fatalf("%d refusals counted", n)
		}
	})
	t.Run("per address", func(t *testing.T) {
		h := newHarness(t, reg, &plugin.Options{MaxConnectionsPerAddress: 2}, 2*time.Millisecond)
		defer h.close()
		a := dialWS(t, h.url, reg, nil, true)
		b := dialWS(t, h.url, reg, nil, false) // in its handshake: counted too
		expectHTTP(t, h.url, nil, http.StatusTooManyRequests)
		a.CloseNow()
		b.CloseNow()
		testutil.Eventually(t, 5*time.Second, "the address to be free", func() bool { return h.srv.Stats().Connections == 0 })
		c := dialWS(t, h.url, reg, nil, true)
		c.Close(websocket.StatusNormalClosure, "")
		if n := h.srv.Stats().Refusals[plugin.RefusedPerAddress]; n != 1 {
			t.Fatalf("%d refusals counted", n)
		}
	})
	t.Run("a refused peer that does not read", func(t *testing.T) {
		// It would hold its handshake place for the WebSocket library's
		// 5 s wait on the close; the server cuts it after a short grace.
		h := newHarness(t, reg, &plugin.Options{MaxHandshakes: 1}, 2*time.Millisecond)
		defer h.close()
		deaf := dialWS(t, h.url, reg, nil, false)
		defer deaf.CloseNow()
		send(t, deaf, websocket.MessageBinary, []byte{0x3f}) // not a Hello; then it never reads
		start := time.Now()
		testutil.Eventually(t, 5*time.Second, "the place to be free", func() bool { return h.srv.Stats().Connections == 0 })
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("the refused peer held its handshake place for %v", d)
		}
	})
	t.Run("handshakes", func(t *testing.T) {
		h := newHarness(t, reg, &plugin.Options{MaxHandshakes: 2, HandshakeTimeout: 200 * time.Millisecond}, 2*time.Millisecond)
		defer h.close()
		a := dialWS(t, h.url, reg, nil, false)
		b := dialWS(t, h.url, reg, nil, false)
		expectHTTP(t, h.url, nil, http.StatusServiceUnavailable)
		// The silent ones are refused when their time is up, which frees
		// the places.
		expectClose(t, a, plugin.StatusProtocolError)
		expectClose(t, b, plugin.StatusProtocolError)
		testutil.Eventually(t, 5*time.Second, "the handshakes to end", func() bool { return h.srv.Stats().Connections == 0 })
		c := dialWS(t, h.url, reg, nil, true)
		c.Close(websocket.StatusNormalClosure, "")
		st := h.srv.Stats()
		if st.Refusals[plugin.RefusedHandshakes] != 1 || st.Refusals[plugin.RefusedHandshake] != 2 {
			t.Fatalf("refusals %v", st.Refusals)
		}
	})
}

// TestControlRules: control follows the rules of mutation. A client may
// take control of its own entity only (by default); the owner may end
// another client's hold on its entity (when the game's Authorize let that
// client take it); and a hold nobody uses ends after ControlIdleTimeout,
// also when it was taken with no timeout.
func TestControlRules(t *testing.T) {
	reg, tc := hostileRegistry()
	admins := map[uint64]bool{}
	var adminsMu sync.Mutex
	h := newHarness(t, reg, &plugin.Options{
		ControlIdleTimeout: 300 * time.Millisecond,
		Authorize: func(req *plugin.Request) error {
			adminsMu.Lock()
			admin := admins[req.Client.ID]
			adminsMu.Unlock()
			if admin && !req.Release {
				return nil // the game lets admins take and steer anything
			}
			return plugin.DefaultAuthorize(req)
		},
	}, 2*time.Millisecond)
	defer h.close()
	owner := dialRaw(t, h.url, reg, true)
	defer owner.close()
	other := dialRaw(t, h.url, reg, true)
	defer other.close()
	admin := dialRaw(t, h.url, reg, true)
	defer admin.close()
	adminsMu.Lock()
	admins[admin.wel.ClientID] = true
	adminsMu.Unlock()

	var ship components.ReplicatedData
	h.do(func(w donburi.World) {
		e := w.Create(components.Replicated, components.Position, components.Owner, thrust)
		components.Owner.SetValue(w.Entry(e), components.OwnerData{Client: owner.wel.ClientID})
	})
	h.ticks(2)
	h.do(func(w donburi.World) {
		for _, a := range w.Archetypes() {
			if a.Layout().HasComponent(components.Owner) {
				ship = *components.Replicated.Get(w.Entry(a.Entities()[0]))
			}
		}
	})
	var req uint64
	control := func(rc *rawClient, op wire.ControlOp, timeoutMs uint64) wire.ControlReply {
		t.Helper()
		req++
		id := req
		rc.send(wire.AppendControl(nil, &wire.Control{Request: id, Op: op, ID: uint64(ship.NetID), Gen: uint64(ship.Gen), TimeoutMs: timeoutMs}))
		var r wire.ControlReply
		testutil.Eventually(t, 5*time.Second, "control reply", func() bool {
			var ok bool
			r, ok = rc.controlReplies()[id]
			return ok
		})
		return r
	}
	mutate := func(rc *rawClient) wire.MutationResult {
		t.Helper()
		req++
		id := req
		rc.send(wire.AppendMutate(nil, &wire.Mutate{Request: id, ID: uint64(ship.NetID), Gen: uint64(ship.Gen), Comp: uint64(tc.Index()), Value: encodeValue(tc, thrustData{X: float64(id)})}))
		var r wire.MutationResult
		testutil.Eventually(t, 5*time.Second, "mutation result", func() bool {
			var ok bool
			r, ok = rc.results()[id]
			return ok
		})
		return r
	}
	holder := func() uint64 { return controlOf(h)[ship.NetID] }

	// Another player may neither take nor steer it.
	if r := control(other, wire.ControlTake, 0); r.Result != wire.ControlForbidden {
		t.Fatalf("other's take: %+v", r)
	}
	if r := mutate(other); r.Status != wire.StatusForbidden {
		t.Fatalf("other's mutation: %+v", r)
	}
	// The owner may.
	if r := control(owner, wire.ControlTake, 0); r.Result != wire.ControlTaken {
		t.Fatalf("owner's take: %+v", r)
	}
	if r := control(owner, wire.ControlRelease, 0); r.Result != wire.ControlReleased {
		t.Fatalf("owner's release: %+v", r)
	}
	// The game lets the admin take it, with no timeout; the owner ends
	// that hold, and the other player may not.
	if r := control(admin, wire.ControlTake, 0); r.Result != wire.ControlTaken {
		t.Fatalf("admin's take: %+v", r)
	}
	if r := control(other, wire.ControlRelease, 0); r.Result != wire.ControlForbidden || holder() != admin.wel.ClientID {
		t.Fatalf("other's release of the admin's hold: %+v, holder %d", r, holder())
	}
	if r := control(owner, wire.ControlRelease, 0); r.Result != wire.ControlReleased {
		t.Fatalf("owner's release of the admin's hold: %+v", r)
	}
	testutil.Eventually(t, 5*time.Second, "the hold to end", func() bool { return holder() == 0 })
	// A hold in use lasts past the idle timeout; an unused one ends after
	// it, though it was taken with no timeout.
	if r := control(admin, wire.ControlTake, 0); r.Result != wire.ControlTaken {
		t.Fatalf("admin's take: %+v", r)
	}
	start := time.Now()
	var lastUse time.Time
	steer := time.NewTicker(50 * time.Millisecond) // the admin steers at 20 Hz: pacing, not a wait for a result
	defer steer.Stop()
	for time.Since(start) < 700*time.Millisecond {
		if r := mutate(admin); r.Status != wire.StatusOk {
			t.Fatalf("admin's mutation: %+v", r)
		}
		lastUse = time.Now()
		if holder() != admin.wel.ClientID {
			t.Fatalf("a hold in use ended after %v", time.Since(start))
		}
		<-steer.C
	}
	testutil.Eventually(t, 5*time.Second, "the idle hold to end", func() bool { return holder() == 0 })
	if d := time.Since(lastUse); d < 250*time.Millisecond {
		t.Fatalf("the hold ended %v after its last use, before the idle timeout", d)
	}
}

// TestRescanRate: however fast a client sends subscriptions and interest
// changes, its scope is evaluated whole at most RescanRate times a second;
// a Subscribe that changes nothing asks for no evaluation at all.
func TestRescanRate(t *testing.T) {
	reg := standardRegistry()
	const tickRate, rescanRate = 100, 10
	h := newHarness(t, reg, &plugin.Options{TickRate: tickRate, RescanRate: rescanRate, RescanInterval: 1 << 20}, 2*time.Millisecond)
	defer h.close()
	h.do(func(w donburi.World) {
		for i := range 500 {
			e := w.Create(components.Replicated, components.Position)
			components.Position.SetValue(w.Entry(e), components.PositionData{X: float64(i), Y: float64(i)})
		}
	})
	ws := dialWS(t, h.url, reg, nil, true)
	defer ws.CloseNow()
	go func() { // read what the server sends, or its writes would block
		for {
			if _, _, err := ws.Read(context.Background()); err != nil {
				return
			}
		}
	}()
	send(t, ws, websocket.MessageBinary, wire.AppendSubscribe(nil, wire.KindSubscribe, &wire.Subscribe{Subs: []wire.Sub{{Kind: wire.SubComponent, ID: 0}}}))
	// The subscription's own rescan may wait out the rescan gap; it is
	// done once the scope holds every entity.
	testutil.Eventually(t, 5*time.Second, "the subscription to be evaluated", func() bool {
		return h.srv.Stats().ScopeEntries == 500
	})

	// Empty Subscribes change nothing: no rescan.
	before := h.srv.Stats().Rescans
	for range 200 {
		send(t, ws, websocket.MessageBinary, wire.AppendSubscribe(nil, wire.KindSubscribe, &wire.Subscribe{}))
	}
	testutil.Eventually(t, 5*time.Second, "the Subscribes to arrive", func() bool {
		st := h.srv.Stats()
		return len(st.PerClient) == 1 && st.PerClient[0].MessagesIn >= 201
	})
	h.ticks(3) // and to be applied
	if n := h.srv.Stats().Rescans - before; n != 0 {
		t.Fatalf("%d rescans for Subscribes that changed nothing", n)
	}

	// Interest changes every tick for 50 ticks (half a second at 100 Hz):
	// at most 10 a second are evaluated, plus the first.
	before = h.srv.Stats().Rescans
	start := h.srv.CurrentTick()
	pace := time.NewTicker(time.Millisecond) // paces the client, not a wait for a result
	defer pace.Stop()
	for i := 0; h.srv.CurrentTick() < start+50; i++ {
		in := wire.Interest{Mode: wire.InterestPoint, X: float64(i % 2 * 400), Y: 0, Radius: 300}
		send(t, ws, websocket.MessageBinary, wire.AppendInterest(nil, &in))
		<-pace.C
	}
	ticks := h.srv.CurrentTick() - start
	n := h.srv.Stats().Rescans - before
	limit := ticks*rescanRate/tickRate + 1
	t.Logf("%d rescans in %d ticks of interest changes (limit %d)", n, ticks, limit)
	if n > limit {
		t.Fatalf("%d rescans in %d ticks, over the rate's %d", n, ticks, limit)
	}
	if n < limit/2 {
		t.Fatalf("only %d rescans in %d ticks of interest changes: moves are not evaluated", n, ticks)
	}
}

// TestRefusalLogs: a burst of bad peers is counted in full but logged once
// per reason and interval; the next line carries the count since.
func TestRefusalLogs(t *testing.T) {
	reg := standardRegistry()
	var logs testutil.SyncBuffer
	const interval = 3 * time.Second
	h := newHarness(t, reg, &plugin.Options{Logger: slog.New(slog.NewTextHandler(&logs, nil)), RefusalLogInterval: interval}, 2*time.Millisecond)
	defer h.close()
	hdr := http.Header{}
	hdr.Set("Origin", "http://evil.example")
	burst := func(n int) {
		for range n {
			ws := dialWS(t, h.url, reg, nil, true)
			send(t, ws, websocket.MessageBinary, []byte{0x3f})
			expectClose(t, ws, plugin.StatusProtocolError)
			expectHTTP(t, h.url, hdr, http.StatusForbidden)
		}
	}
	start := time.Now()
	burst(10)
	if time.Since(start) > interval {
		t.Skip("the burst took longer than the log interval on this machine")
	}
	st := h.srv.Stats()
	if st.Refusals[plugin.RefusedProtocol] != 10 || st.Refusals[plugin.RefusedOrigin] != 10 {
		t.Fatalf("refusals %v, want 10 of each", st.Refusals)
	}
	lines := func(reason string) []string {
		var out []string
		for _, l := range strings.Split(logs.String(), "\n") {
			if strings.Contains(l, "reason="+reason) {
				out = append(out, l)
			}
		}
		return out
	}
	for _, reason := range []string{plugin.RefusedProtocol, plugin.RefusedOrigin} {
		if l := lines(reason); len(l) != 1 || !strings.Contains(l[0], "count=1 ") {
			t.Fatalf("%s: %d log lines, want 1 with count=1:\n%s", reason, len(l), strings.Join(l, "\n"))
		}
	}
	testutil.LetTimePass(interval) // every first line was written before now: their interval passes
	burst(1)
	for _, reason := range []string{plugin.RefusedProtocol, plugin.RefusedOrigin} {
		if l := lines(reason); len(l) != 2 || !strings.Contains(l[1], "count=10 ") {
			t.Fatalf("%s: want a second line with the 10 refusals since the first:\n%s", reason, strings.Join(l, "\n"))
		}
	}
}

// TestMaxRadiusHoldsForGlobal: with MaxRadius set, a client cannot escape
// the cap by asking for global interest.
func TestMaxRadiusHoldsForGlobal(t *testing.T) {
	reg := standardRegistry()
	h := newHarness(t, reg, &plugin.Options{DefaultRadius: 100, MaxRadius: 100}, 2*time.Millisecond)
	defer h.close()
	h.do(func(w donburi.World) {
		for i := range 100 {
			e := w.Create(components.Replicated, components.Position)
			components.Position.SetValue(w.Entry(e), components.PositionData{X: float64(i * 50), Y: 0}) // 2 within 100 of (0, 0)
		}
	})
	rc := dialRaw(t, h.url, reg, true)
	defer rc.close()
	rc.subscribeAll()
	testutil.Eventually(t, 5*time.Second, "the scope", func() bool { return h.srv.Stats().ScopeEntries == 3 })
	rc.send(wire.AppendInterest(nil, &wire.Interest{Mode: wire.InterestGlobal}))
	rc.send(wire.AppendInterest(nil, &wire.Interest{Mode: wire.InterestPoint, X: 0, Y: 0, Radius: 1e9}))
	rc.send(wire.AppendInterest(nil, &wire.Interest{Mode: wire.InterestGlobal}))
	h.ticks(20)
	if n := h.srv.Stats().ScopeEntries; n > 3 {
		t.Fatalf("%d entities in scope after a request for global interest, want at most the 3 within MaxRadius", n)
	}
}
