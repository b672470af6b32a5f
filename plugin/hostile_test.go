package plugin_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"maps"
	"math"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/yohamta/donburi"

	"github.com/ebisync/ebisync/components"
	"github.com/ebisync/ebisync/internal/codec"
	"github.com/ebisync/ebisync/internal/hostile"
	"github.com/ebisync/ebisync/internal/testutil"
	"github.com/ebisync/ebisync/internal/wire"
	"github.com/ebisync/ebisync/netclient"
	"github.com/ebisync/ebisync/plugin"
)

// The attacks below run against a server configured by hostileOptions:
// every client needs the bearer token testToken, and the address the
// per-address limit counts is the X-Test-Addr header (standing for the
// address a trusted proxy forwards), so that one loopback test can play
// many addresses.
const testToken = "let-me-in"

type thrustData struct{ X, Y float64 }

var thrust = donburi.NewComponentType[thrustData]()

func hostileRegistry() (*components.Registry, *codec.Codec) {
	reg := standardRegistry()
	tc := components.Register(reg, "test.thrust", thrust, &components.Options{ClientWritable: true})
	return reg, codec.Of(tc.Component())
}

func hostileOptions() *plugin.Options {
	return &plugin.Options{
		TickRate:         60,
		HandshakeTimeout: 2 * time.Second,
		Authenticate: func(r *http.Request) (plugin.Identity, error) {
			switch plugin.BearerToken(r) {
			case testToken:
				return plugin.Identity{User: r.Header.Get("X-User")}, nil
			case "banned":
				return plugin.Identity{}, fmt.Errorf("%w: this account is banned", plugin.ErrAccessDenied)
			}
			return plugin.Identity{}, plugin.ErrUnauthenticated
		},
		RemoteAddr: func(r *http.Request) string {
			if a := r.Header.Get("X-Test-Addr"); a != "" {
				return a + ":1"
			}
			return r.RemoteAddr
		},
		MaxConnections:           60,
		MaxHandshakes:            6,
		MaxConnectionsPerAddress: 3,
		MaxEntitySubscriptions:   64,
		SubscriptionRate:         200,
		InboundQueueBytes:        32 << 10,
	}
}

// creds are the request headers of a client at test address addr.
func creds(user, addr string) http.Header {
	h := http.Header{}
	h.Set("Authorization", "Bearer "+testToken)
	h.Set("X-User", user)
	h.Set("X-Test-Addr", addr)
	return h
}

// dialWS opens a WebSocket with hdr and, if hello, completes the handshake.
func dialWS(t testing.TB, url string, reg *components.Registry, hdr http.Header, hello bool) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{CompressionMode: websocket.CompressionDisabled, HTTPHeader: hdr})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	ws.SetReadLimit(wire.MaxMessageSize + 64)
	if hello {
		handshakeWS(t, ws, reg)
	}
	return ws
}

// handshakeWS sends the Hello of reg on ws and returns the Welcome.
func handshakeWS(t testing.TB, ws *websocket.Conn, reg *components.Registry) wire.Welcome {
	t.Helper()
	return handshakeHello(t, ws, hostile.Hello(reg, "raw"))
}

// handshakeHello sends hello on ws and returns the Welcome.
func handshakeHello(t testing.TB, ws *websocket.Conn, hello *wire.Hello) wire.Welcome {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := ws.Write(ctx, websocket.MessageBinary, wire.AppendHello(nil, hello)); err != nil {
		t.Fatalf("hello: %v", err)
	}
	_, msg, err := ws.Read(ctx)
	if err != nil {
		t.Fatalf("welcome: %v", err)
	}
	kind, body, _, err := wire.Open(msg, nil)
	if err != nil || kind != wire.KindWelcome {
		t.Fatalf("welcome: kind %v, err %v", kind, err)
	}
	wel, err := wire.DecodeWelcome(body)
	if err != nil {
		t.Fatalf("welcome: %v", err)
	}
	return wel
}

// expectClose reads until the connection ends and checks its close code.
// It returns the Error message the server sent first, if any.
func expectClose(t testing.TB, ws *websocket.Conn, code websocket.StatusCode) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var reason string
	for {
		_, msg, err := ws.Read(ctx)
		if err != nil {
			if got := websocket.CloseStatus(err); got != code {
				t.Fatalf("connection ended with %v (code %d), want close code %d", err, got, code)
			}
			return reason
		}
		if kind, body, _, err := wire.Open(msg, nil); err == nil && kind == wire.KindError {
			if e, err := wire.DecodeError(body); err == nil {
				reason = e.Message
			}
		}
	}
}

// expectAlive checks that the server still serves ws: a Ping gets its Pong.
func expectAlive(t testing.TB, ws *websocket.Conn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	nonce := mrand.Uint64()
	if err := ws.Write(ctx, websocket.MessageBinary, wire.AppendPing(nil, wire.KindPing, &wire.Ping{Nonce: nonce})); err != nil {
		t.Fatalf("ping: %v", err)
	}
	for {
		_, msg, err := ws.Read(ctx)
		if err != nil {
			t.Fatalf("connection dropped, want it served: %v", err)
		}
		kind, body, _, err := wire.Open(msg, nil)
		if err != nil {
			t.Fatalf("server sent a bad message: %v", err)
		}
		if kind == wire.KindPong {
			if p, err := wire.DecodePing(body); err == nil && p.Nonce == nonce {
				return
			}
		}
	}
}

// results reads batches from ws until want results (or control replies)
// arrived, and returns them by request id.
func readResults(t testing.TB, ws *websocket.Conn, reg *components.Registry, want int) (map[uint64]wire.MutationResult, map[uint64]wire.ControlReply) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res := map[uint64]wire.MutationResult{}
	ctl := map[uint64]wire.ControlReply{}
	for len(res)+len(ctl) < want {
		_, msg, err := ws.Read(ctx)
		if err != nil {
			t.Fatalf("waiting for %d answers (have %d): %v", want, len(res)+len(ctl), err)
		}
		kind, body, _, err := wire.Open(msg, nil)
		if err != nil || kind != wire.KindBatch {
			continue
		}
		var b wire.Batch
		if err := wire.DecodeBatch(append([]byte(nil), body...), regSizer{Reg: reg}, &b); err != nil {
			t.Fatalf("batch: %v", err)
		}
		for _, r := range b.Results {
			res[r.Request] = r
		}
		for _, r := range b.Controls {
			ctl[r.Request] = r
		}
	}
	return res, ctl
}

// expectHTTP checks that an upgrade with hdr is refused with status.
func expectHTTP(t testing.TB, url string, hdr http.Header, status int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ws, resp, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPHeader: hdr})
	if err == nil {
		ws.CloseNow()
		t.Fatalf("upgrade accepted, want HTTP %d", status)
	}
	if resp == nil || resp.StatusCode != status {
		t.Fatalf("upgrade refused with %v (response %v), want HTTP %d", err, resp, status)
	}
}

func send(t testing.TB, ws *websocket.Conn, typ websocket.MessageType, msg []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := ws.Write(ctx, typ, msg); err != nil {
		t.Fatalf("send: %v", err)
	}
}

// rawUpgrade upgrades a plain TCP connection by hand, for attacks below
// the WebSocket library.
func rawUpgrade(t testing.TB, hostport, path string, hdr http.Header) net.Conn {
	t.Helper()
	c, _, err := hostile.Upgrade(context.Background(), hostport, path, hdr, 5*time.Second)
	if err != nil {
		t.Fatalf("raw upgrade: %v", err)
	}
	return c
}

// lz4Message is hostile.Compressed, for bodies that compress.
func lz4Message(kind wire.Kind, body []byte, size int) []byte {
	m, err := hostile.Compressed(kind, body, size)
	if err != nil {
		panic(err)
	}
	return m
}

// hostileEnv is a server under attack with honest clients beside it.
type hostileEnv struct {
	h      *harness
	reg    *components.Registry
	thrust *codec.Codec
	ships  map[uint64]components.ReplicatedData // owner client id → its ship
	tags   []components.ReplicatedData          // live replicated entities
}

func (e *hostileEnv) refusals(reason string) uint64 { return e.h.srv.Stats().Refusals[reason] }

// TestHostileInput plays attacks from raw WebSocket (and TCP) clients,
// each of which gets its documented answer (docs/SECURITY.md), while 20
// honest netclient clients play beside them; nothing panics, and at the
// end every honest mirror converges.
func TestHostileInput(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := mrand.New(mrand.NewPCG(seed, 13))
	reg, tc := hostileRegistry()
	const size, radius, hyst = 2000.0, 450.0, 1.15
	opts := hostileOptions()
	opts.Hysteresis = hyst
	opts.RescanInterval = 5
	h := newHarness(t, reg, opts, 3*time.Millisecond)
	defer h.close()
	env := &hostileEnv{h: h, reg: reg, thrust: tc, ships: map[uint64]components.ReplicatedData{}}

	// 20 honest clients: half see everything, half an interest circle.
	type honest struct {
		p      *clientLoop
		cx, cy float64
		r      float64
	}
	var honests []*honest
	for i := range 20 {
		p := startClientLoop(t, h.url, reg, &netclient.Options{HTTPHeader: creds(fmt.Sprintf("player-%d", i), fmt.Sprintf("honest-%d", i))})
		defer p.close()
		if err := p.c.SubscribeAll(); err != nil {
			t.Fatal(err)
		}
		hc := &honest{p: p}
		if i%2 == 1 {
			hc.cx, hc.cy, hc.r = rng.Float64()*size, rng.Float64()*size, radius
			if err := p.c.SetInterest(hc.cx, hc.cy, hc.r); err != nil {
				t.Fatal(err)
			}
		}
		honests = append(honests, hc)
	}
	// A ship for each honest client, owned by it.
	var live []donburi.Entity
	h.do(func(w donburi.World) {
		for _, hc := range honests {
			e := w.Create(components.Replicated, components.Position, components.Owner, thrust)
			entry := w.Entry(e)
			components.Position.SetValue(entry, components.PositionData{X: rng.Float64() * size, Y: rng.Float64() * size})
			components.Owner.SetValue(entry, components.OwnerData{Client: hc.p.c.ClientID()})
		}
		churn(w, rng, &live, size, 400)
	})
	h.ticks(2)
	env.refresh()

	// The world keeps changing while the attacks run.
	stopChurn := make(chan struct{})
	churned := make(chan struct{})
	go func() {
		defer close(churned)
		tk := time.NewTicker(5 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-stopChurn:
				return
			case <-tk.C:
				h.do(func(w donburi.World) { churn(w, rng, &live, size, 1) })
			}
		}
	}()

	attacks := hostileAttacks()
	if len(attacks) < 25 {
		t.Fatalf("only %d attacks", len(attacks))
	}
	for _, a := range attacks {
		t.Run(a.name, func(t *testing.T) {
			env.refresh()
			a.run(t, env)
		})
	}
	close(stopChurn)
	<-churned

	// Every honest client is still connected, on its first connection,
	// and its mirror converges.
	h.ticks(20)
	subs := map[int]bool{}
	for i := range reg.Len() {
		subs[i] = true
	}
	for i, hc := range honests {
		if st := hc.p.c.Stats(); st.Reconnects != 0 {
			t.Errorf("honest client %d reconnected %d times during the attacks", i, st.Reconnects)
		}
		var want map[uint64]expectation
		var band map[uint64]bool
		h.do(func(sw donburi.World) { want, band = view(sw, reg, subs, hc.cx, hc.cy, hc.r, hyst) })
		if _, err := awaitConvergence(hc.p, reg, want, band, 10*time.Second); err != nil {
			t.Fatalf("honest client %d did not converge: %v", i, err)
		}
		if len(want) == 0 {
			t.Fatalf("honest client %d sees nothing: the test is not testing", i)
		}
	}
	st := h.srv.Stats()
	t.Logf("refusals: %v", st.Refusals)
	if st.Refusals[plugin.RefusedPanic] != 0 {
		t.Fatalf("%d panics while handling client input", st.Refusals[plugin.RefusedPanic])
	}
}

// waitQuiet waits until only the 20 honest clients are connected.
func (e *hostileEnv) waitQuiet(t testing.TB) {
	t.Helper()
	testutil.Eventually(t, 5*time.Second, "the attackers to be gone", func() bool {
		st := e.h.srv.Stats()
		return st.Connections == 20 && st.Clients == 20
	})
}

// refresh reads the live entities and the ships.
func (e *hostileEnv) refresh() {
	e.h.do(func(w donburi.World) {
		e.tags = e.tags[:0]
		clear(e.ships)
		for _, a := range w.Archetypes() {
			if !a.Layout().HasComponent(components.Replicated) {
				continue
			}
			for _, ent := range a.Entities() {
				entry := w.Entry(ent)
				tag := *components.Replicated.Get(entry)
				if tag.NetID == 0 {
					continue
				}
				e.tags = append(e.tags, tag)
				if entry.HasComponent(components.Owner) {
					e.ships[components.Owner.Get(entry).Client] = tag
				}
			}
		}
	})
}

// someShip returns a ship and its owner.
func (e *hostileEnv) someShip() (uint64, components.ReplicatedData) {
	for owner, tag := range e.ships {
		return owner, tag
	}
	panic("no ships")
}

type attack struct {
	name string
	run  func(t *testing.T, e *hostileEnv)
}

// attacker returns the headers of a fresh attacking address.
var attackerN struct {
	sync.Mutex
	n int
}

func attacker() http.Header {
	attackerN.Lock()
	defer attackerN.Unlock()
	attackerN.n++
	return creds("mallory", fmt.Sprintf("attacker-%d", attackerN.n))
}

func hostileAttacks() []attack {
	closesWith := func(code websocket.StatusCode, msg func(e *hostileEnv) []byte) func(t *testing.T, e *hostileEnv) {
		return func(t *testing.T, e *hostileEnv) {
			ws := dialWS(t, e.h.url, e.reg, attacker(), true)
			defer ws.CloseNow()
			send(t, ws, websocket.MessageBinary, msg(e))
			expectClose(t, ws, code)
		}
	}
	refusedAtHandshake := func(code websocket.StatusCode, msg func(e *hostileEnv) []byte) func(t *testing.T, e *hostileEnv) {
		return func(t *testing.T, e *hostileEnv) {
			ws := dialWS(t, e.h.url, e.reg, attacker(), false)
			defer ws.CloseNow()
			send(t, ws, websocket.MessageBinary, msg(e))
			if reason := expectClose(t, ws, code); reason == "" {
				t.Fatal("no Error message with the reason before the close")
			}
		}
	}
	interest := func(in wire.Interest) func(*hostileEnv) []byte {
		return func(*hostileEnv) []byte {
			// AppendInterest refuses nothing: the bytes are what an
			// attacker would send.
			return wire.AppendInterest(nil, &in)
		}
	}
	servedAfter := func(msgs func(e *hostileEnv) [][]byte) func(t *testing.T, e *hostileEnv) {
		return func(t *testing.T, e *hostileEnv) {
			ws := dialWS(t, e.h.url, e.reg, attacker(), true)
			defer ws.CloseNow()
			for _, m := range msgs(e) {
				send(t, ws, websocket.MessageBinary, m)
			}
			e.h.ticks(3)
			expectAlive(t, ws)
		}
	}
	answered := func(build func(e *hostileEnv) []byte, check func(t *testing.T, res map[uint64]wire.MutationResult, ctl map[uint64]wire.ControlReply)) func(t *testing.T, e *hostileEnv) {
		return func(t *testing.T, e *hostileEnv) {
			ws := dialWS(t, e.h.url, e.reg, attacker(), true)
			defer ws.CloseNow()
			send(t, ws, websocket.MessageBinary, build(e))
			res, ctl := readResults(t, ws, e.reg, 1)
			check(t, res, ctl)
		}
	}
	status := func(want wire.Status) func(t *testing.T, res map[uint64]wire.MutationResult, _ map[uint64]wire.ControlReply) {
		return func(t *testing.T, res map[uint64]wire.MutationResult, _ map[uint64]wire.ControlReply) {
			if r, ok := res[1]; !ok || r.Status != want {
				t.Fatalf("result %+v, want %s", r, want.String())
			}
		}
	}
	mutateShip := func(v thrustData) func(e *hostileEnv) []byte {
		return func(e *hostileEnv) []byte {
			_, ship := e.someShip()
			return wire.AppendMutate(nil, &wire.Mutate{Request: 1, ID: uint64(ship.NetID), Gen: uint64(ship.Gen), Comp: uint64(e.thrust.Index()), Value: encodeValue(e.thrust, v)})
		}
	}
	random := func(n int, first byte) []byte {
		b := make([]byte, n)
		rand.Read(b)
		b[0] = first
		return b
	}

	return []attack{
		// Before the upgrade.
		{"cross-site origin", func(t *testing.T, e *hostileEnv) {
			hdr := attacker()
			hdr.Set("Origin", "http://evil.example")
			expectHTTP(t, e.h.url, hdr, http.StatusForbidden)
		}},
		{"null origin", func(t *testing.T, e *hostileEnv) {
			hdr := attacker()
			hdr.Set("Origin", "null")
			expectHTTP(t, e.h.url, hdr, http.StatusForbidden)
		}},
		{"missing credentials", func(t *testing.T, e *hostileEnv) {
			hdr := attacker()
			hdr.Del("Authorization")
			expectHTTP(t, e.h.url, hdr, http.StatusUnauthorized)
		}},
		{"forged credentials", func(t *testing.T, e *hostileEnv) {
			hdr := attacker()
			hdr.Set("Authorization", "Bearer guess")
			expectHTTP(t, e.h.url, hdr, http.StatusUnauthorized)
		}},
		{"plain HTTP", func(t *testing.T, e *hostileEnv) {
			req, _ := http.NewRequest(http.MethodGet, "http"+strings.TrimPrefix(e.h.url, "ws"), nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusUpgradeRequired {
				t.Fatalf("plain GET: %d, want 426", resp.StatusCode)
			}
		}},
		// The handshake.
		{"no Hello in time", func(t *testing.T, e *hostileEnv) {
			ws := dialWS(t, e.h.url, e.reg, attacker(), false)
			defer ws.CloseNow()
			if reason := expectClose(t, ws, plugin.StatusProtocolError); !strings.Contains(reason, "no Hello") {
				t.Fatalf("reason %q", reason)
			}
		}},
		{"random bytes instead of Hello", refusedAtHandshake(plugin.StatusProtocolError, func(*hostileEnv) []byte { return random(200, 0x3f) })},
		{"mutation before Hello", refusedAtHandshake(plugin.StatusProtocolError, mutateShip(thrustData{1, 1}))},
		{"schema mismatch", refusedAtHandshake(plugin.StatusSchema, func(e *hostileEnv) []byte {
			hello := hostile.Hello(e.reg, "raw")
			hello.Components[0].Fields[0].Type = "complex128"
			hello.Components[0].Hash ^= 1
			return wire.AppendHello(nil, hello)
		})},
		{"lz4 Hello declaring 4 MiB", refusedAtHandshake(plugin.StatusProtocolError, func(e *hostileEnv) []byte {
			return lz4Message(wire.KindHello, make([]byte, 30000), wire.MaxMessageSize)
		})},
		{"text frame", func(t *testing.T, e *hostileEnv) {
			ws := dialWS(t, e.h.url, e.reg, attacker(), true)
			defer ws.CloseNow()
			send(t, ws, websocket.MessageText, []byte(`{"kind":"subscribe"}`))
			expectClose(t, ws, plugin.StatusProtocolError)
		}},
		// Malformed messages.
		{"random bytes", closesWith(plugin.StatusProtocolError, func(*hostileEnv) []byte { return random(300, byte(wire.KindInterest)) })},
		{"unknown kind", closesWith(plugin.StatusProtocolError, func(*hostileEnv) []byte { return []byte{0x3f, 1, 2, 3} })},
		{"a server's kind", closesWith(plugin.StatusProtocolError, func(*hostileEnv) []byte { return []byte{byte(wire.KindBatch), 0, 0, 0} })},
		{"second Hello", closesWith(plugin.StatusProtocolError, func(e *hostileEnv) []byte { return wire.AppendHello(nil, hostile.Hello(e.reg, "raw")) })},
		{"message over the read limit", closesWith(websocket.StatusMessageTooBig, func(*hostileEnv) []byte {
			return append([]byte{byte(wire.KindSubscribe)}, make([]byte, 40<<10)...)
		})},
		{"lz4 declaring past the budget", closesWith(plugin.StatusProtocolError, func(*hostileEnv) []byte {
			return lz4Message(wire.KindSubscribe, make([]byte, 4000), 1<<20)
		})},
		{"lz4 expanding past its declared size", closesWith(plugin.StatusProtocolError, func(*hostileEnv) []byte {
			return lz4Message(wire.KindSubscribe, make([]byte, 30000), 100)
		})},
		{"truncated frame, then gone", func(t *testing.T, e *hostileEnv) {
			e.waitQuiet(t)
			before := e.h.srv.Stats().Refusals
			c := rawUpgrade(t, e.h.ts.Listener.Addr().String(), "/", attacker())
			hello := wire.AppendHello(nil, hostile.Hello(e.reg, "raw"))
			frame := append(hostile.FrameHeader(len(hello)), hello...)
			if _, err := c.Write(frame[:len(frame)/2]); err != nil {
				t.Fatal(err)
			}
			c.Close()
			// The peer vanished: no refusal is counted (it is a Debug
			// log), and the server forgets the connection.
			testutil.Eventually(t, 5*time.Second, "the half-sent connection to be forgotten", func() bool {
				return e.h.srv.Stats().Connections == 20
			})
			after := e.h.srv.Stats().Refusals
			for k, v := range after {
				if v != before[k] {
					t.Fatalf("a peer that vanished counted as refusal %q", k)
				}
			}
		}},
		{"frame header after the handshake, then gone", func(t *testing.T, e *hostileEnv) {
			// A peer that vanishes right after a frame header: the
			// WebSocket library ends such a message at the EOF as if it
			// were complete (and empty); the server must see a peer that
			// left, not one that broke the protocol.
			e.waitQuiet(t)
			before := e.h.srv.Stats().Refusals
			c := rawUpgrade(t, e.h.ts.Listener.Addr().String(), "/", attacker())
			hello := wire.AppendHello(nil, hostile.Hello(e.reg, "raw"))
			if _, err := c.Write(append(hostile.FrameHeader(len(hello)), hello...)); err != nil {
				t.Fatal(err)
			}
			testutil.Eventually(t, 5*time.Second, "the handshake", func() bool { return e.h.srv.Stats().Clients == 21 })
			if _, err := c.Write(hostile.FrameHeader(10)); err != nil {
				t.Fatal(err)
			}
			// A FIN, not a reset: the unread Welcome would make Close
			// send a reset, which no library mistakes for the end of a
			// message.
			c.(*net.TCPConn).CloseWrite()
			e.waitQuiet(t)
			c.Close()
			if after := e.h.srv.Stats().Refusals; !maps.Equal(before, after) {
				t.Fatalf("a peer that vanished was counted as a refusal: %v, then %v", before, after)
			}
		}},
		// Names that do not exist.
		{"unknown component in Subscribe", servedAfter(func(*hostileEnv) [][]byte {
			return [][]byte{wire.AppendSubscribe(nil, wire.KindSubscribe, &wire.Subscribe{Subs: []wire.Sub{{Kind: wire.SubComponent, ID: 1000}}})}
		})},
		{"7-byte Subscribe past the records, then gone", func(t *testing.T, e *hostileEnv) {
			ws := dialWS(t, e.h.url, e.reg, attacker(), true)
			send(t, ws, websocket.MessageBinary, []byte{0x04, 0x01, 0x02, 0xa0, 0x8d, 0x06, 0x00})
			ws.CloseNow()
			testutil.Eventually(t, 5*time.Second, "the attacker to be dropped", func() bool {
				return e.h.srv.Stats().Clients == 20
			})
			e.h.ticks(5) // the server ticks on
		}},
		{"unknown component in Mutate", answered(func(e *hostileEnv) []byte {
			_, ship := e.someShip()
			return wire.AppendMutate(nil, &wire.Mutate{Request: 1, ID: uint64(ship.NetID), Gen: uint64(ship.Gen), Comp: 900, Value: []byte{1}})
		}, status(wire.StatusNotFound))},
		{"out-of-range net id in Mutate", answered(func(e *hostileEnv) []byte {
			return wire.AppendMutate(nil, &wire.Mutate{Request: 1, ID: wire.MaxNetID, Gen: 1, Comp: uint64(e.thrust.Index()), Value: encodeValue(e.thrust, thrustData{})})
		}, status(wire.StatusNotFound))},
		{"out-of-range net id in Control", answered(func(e *hostileEnv) []byte {
			return wire.AppendControl(nil, &wire.Control{Request: 1, Op: wire.ControlTake, ID: 100000, Gen: 1})
		}, func(t *testing.T, _ map[uint64]wire.MutationResult, ctl map[uint64]wire.ControlReply) {
			if r := ctl[1]; r.Result != wire.ControlNotFound {
				t.Fatalf("reply %+v, want not found", r)
			}
		})},
		// Numbers that are not numbers.
		{"NaN interest radius", closesWith(plugin.StatusProtocolError, interest(wire.Interest{Mode: wire.InterestPoint, Radius: math.NaN()}))},
		{"infinite interest centre", closesWith(plugin.StatusProtocolError, interest(wire.Interest{Mode: wire.InterestPoint, X: math.Inf(1), Radius: 10}))},
		{"negative interest radius", closesWith(plugin.StatusProtocolError, interest(wire.Interest{Mode: wire.InterestPoint, Radius: -5}))},
		{"huge interest radius and centre", func(t *testing.T, e *hostileEnv) {
			ws := dialWS(t, e.h.url, e.reg, attacker(), true)
			defer ws.CloseNow()
			for _, in := range []wire.Interest{
				{Mode: wire.InterestPoint, X: 1e300, Y: -1e300, Radius: 1e300},
				{Mode: wire.InterestPoint, X: math.MaxFloat64, Y: math.MaxFloat64, Radius: math.MaxFloat64},
				{Mode: wire.InterestFollow, ID: wire.MaxNetID, Gen: math.MaxUint64, Radius: 1e308},
			} {
				send(t, ws, websocket.MessageBinary, wire.AppendInterest(nil, &in))
				send(t, ws, websocket.MessageBinary, wire.AppendSubscribe(nil, wire.KindSubscribe, &wire.Subscribe{Subs: []wire.Sub{{Kind: wire.SubComponent, ID: 0}}}))
				e.h.ticks(3)
			}
			expectAlive(t, ws)
			if d := e.h.srv.Stats().TickTime; d > 500*time.Millisecond {
				t.Fatalf("tick took %v with a huge interest", d)
			}
		}},
		{"NaN in a mutated float", answered(func(e *hostileEnv) []byte {
			_, ship := e.someShip()
			// The mutation names a ship it does not own: the NaN is refused
			// before any hook runs, so the answer is ValidationError.
			return wire.AppendMutate(nil, &wire.Mutate{Request: 1, ID: uint64(ship.NetID), Gen: uint64(ship.Gen), Comp: uint64(e.thrust.Index()), Value: encodeValue(e.thrust, thrustData{X: math.NaN()})})
		}, status(wire.StatusValidationError))},
		// Taking what is not yours.
		{"mutation of another player's ship", answered(mutateShip(thrustData{5, 5}), status(wire.StatusForbidden))},
		{"control take of another player's ship", func(t *testing.T, e *hostileEnv) {
			owner, ship := e.someShip()
			ws := dialWS(t, e.h.url, e.reg, attacker(), true)
			defer ws.CloseNow()
			send(t, ws, websocket.MessageBinary, wire.AppendControl(nil, &wire.Control{Request: 1, Op: wire.ControlTake, ID: uint64(ship.NetID), Gen: uint64(ship.Gen)}))
			_, ctl := readResults(t, ws, e.reg, 1)
			if r := ctl[1]; r.Result != wire.ControlForbidden {
				t.Fatalf("reply %+v, want forbidden", r)
			}
			if got := controlOf(e.h)[ship.NetID]; got != 0 {
				t.Fatalf("ship of client %d controlled by %d", owner, got)
			}
		}},
		// Floods.
		{"entity subscriptions past the cap", closesWith(plugin.StatusAbuse, func(e *hostileEnv) []byte {
			var subs []wire.Sub
			for _, tag := range e.tags[:120] { // some may despawn before it is applied
				subs = append(subs, wire.Sub{Kind: wire.SubEntity, ID: uint64(tag.NetID), Gen: uint64(tag.Gen)})
			}
			return wire.AppendSubscribe(nil, wire.KindSubscribe, &wire.Subscribe{Subs: subs})
		})},
		{"1.2 million subscriptions in 10 KB of lz4", closesWith(plugin.StatusProtocolError, func(e *hostileEnv) []byte {
			subs := make([]wire.Sub, 1_200_000)
			for i := range subs {
				subs[i] = wire.Sub{Kind: wire.SubComponent, ID: 0}
			}
			// 2.4 MB raw, about 10 KB as lz4: refused for its declared
			// size before it is inflated.
			body := wire.AppendSubscribe(nil, wire.KindSubscribe, &wire.Subscribe{Subs: subs})[1:]
			return lz4Message(wire.KindSubscribe, body, len(body))
		})},
		{"subscription changes past the rate", func(t *testing.T, e *hostileEnv) {
			ws := dialWS(t, e.h.url, e.reg, attacker(), true)
			defer ws.CloseNow()
			var subs []wire.Sub
			for i := range e.reg.Len() {
				subs = append(subs, wire.Sub{Kind: wire.SubComponent, ID: uint64(i)})
			}
			for range 40 {
				if ws.Write(context.Background(), websocket.MessageBinary, wire.AppendSubscribe(nil, wire.KindSubscribe, &wire.Subscribe{Subs: subs})) != nil {
					break
				}
				if ws.Write(context.Background(), websocket.MessageBinary, wire.AppendSubscribe(nil, wire.KindUnsubscribe, &wire.Subscribe{Subs: subs})) != nil {
					break
				}
			}
			expectClose(t, ws, plugin.StatusAbuse)
		}},
		{"rescan requests every few milliseconds", func(t *testing.T, e *hostileEnv) {
			ws := dialWS(t, e.h.url, e.reg, attacker(), true)
			defer ws.CloseNow()
			send(t, ws, websocket.MessageBinary, wire.AppendSubscribe(nil, wire.KindSubscribe, &wire.Subscribe{Subs: []wire.Sub{{Kind: wire.SubComponent, ID: 0}}}))
			pace := time.NewTicker(2 * time.Millisecond) // paces the attack, not a wait for a result
			defer pace.Stop()
			for i := range 60 {
				in := wire.Interest{Mode: wire.InterestPoint, X: float64(i%2) * 2000, Y: 0, Radius: 2000}
				send(t, ws, websocket.MessageBinary, wire.AppendInterest(nil, &in))
				send(t, ws, websocket.MessageBinary, wire.AppendSubscribe(nil, wire.KindSubscribe, &wire.Subscribe{}))
				<-pace.C
			}
			expectAlive(t, ws)
		}},
		{"inbound queue overflow", func(t *testing.T, e *hostileEnv) {
			ws := dialWS(t, e.h.url, e.reg, attacker(), true)
			defer ws.CloseNow()
			e.h.ticks(1) // admitted
			// Hold the game goroutine, so nothing drains the queue.
			release := make(chan struct{})
			held := make(chan struct{})
			go e.h.do(func(donburi.World) { close(held); <-release })
			<-held
			in := wire.AppendInterest(nil, &wire.Interest{Mode: wire.InterestPoint, X: 1, Y: 1, Radius: 10})
			for range 2000 {
				if ws.Write(context.Background(), websocket.MessageBinary, in) != nil {
					break
				}
				if n := e.refusals(plugin.RefusedFlood); n > 0 {
					break
				}
			}
			close(release)
			expectClose(t, ws, plugin.StatusAbuse)
		}},
		{"mutation flood", func(t *testing.T, e *hostileEnv) {
			ws := dialWS(t, e.h.url, e.reg, attacker(), true)
			defer ws.CloseNow()
			_, ship := e.someShip()
			for i := range 200 {
				send(t, ws, websocket.MessageBinary, wire.AppendMutate(nil, &wire.Mutate{Request: uint64(i + 1), ID: uint64(ship.NetID), Gen: uint64(ship.Gen), Comp: uint64(e.thrust.Index()), Value: encodeValue(e.thrust, thrustData{})}))
			}
			res, _ := readResults(t, ws, e.reg, 200)
			limited := 0
			for _, r := range res {
				if r.Status == wire.StatusRateLimited {
					limited++
				} else if r.Status != wire.StatusForbidden {
					t.Fatalf("result %+v", r)
				}
			}
			if limited < 100 {
				t.Fatalf("%d of 200 answered RateLimited", limited)
			}
		}},
		// Limits on connections.
		{"connections from one address over the limit", func(t *testing.T, e *hostileEnv) {
			hdr := attacker()
			var held []*websocket.Conn
			for range 3 {
				held = append(held, dialWS(t, e.h.url, e.reg, hdr, true))
			}
			expectHTTP(t, e.h.url, hdr, http.StatusTooManyRequests)
			for _, ws := range held {
				ws.Close(websocket.StatusNormalClosure, "")
			}
		}},
		{"handshakes over the limit", func(t *testing.T, e *hostileEnv) {
			e.waitQuiet(t)
			var held []*websocket.Conn
			for range 6 {
				held = append(held, dialWS(t, e.h.url, e.reg, attacker(), false))
			}
			expectHTTP(t, e.h.url, attacker(), http.StatusServiceUnavailable)
			for _, ws := range held {
				ws.CloseNow()
			}
			testutil.Eventually(t, 5*time.Second, "handshakes to end", func() bool { return e.h.srv.Stats().Connections == 20 })
		}},
		{"connections over the server limit", func(t *testing.T, e *hostileEnv) {
			e.waitQuiet(t)
			var held []*websocket.Conn
			for range 60 - 20 {
				held = append(held, dialWS(t, e.h.url, e.reg, attacker(), true))
			}
			testutil.Eventually(t, 5*time.Second, "60 connections", func() bool { return e.h.srv.Stats().Connections == 60 })
			expectHTTP(t, e.h.url, attacker(), http.StatusServiceUnavailable)
			for _, ws := range held {
				ws.CloseNow()
			}
			testutil.Eventually(t, 5*time.Second, "connections to end", func() bool { return e.h.srv.Stats().Connections == 20 })
		}},
	}
}

// TestInputPanic stands in for a bug that panics while a client's message
// is read or applied: that client is closed with 1011, the stack is
// logged, and the server and its other clients go on.
func TestInputPanic(t *testing.T) {
	reg := standardRegistry()
	restore := plugin.SetInputHook(func(stage string, kind wire.Kind) {
		if kind == wire.KindInterest {
			panic("a bug while handling " + stage)
		}
		if kind == wire.KindUnsubscribe && stage == "apply" {
			panic("a bug while applying")
		}
	})
	defer restore()
	h := newHarness(t, reg, nil, 2*time.Millisecond)
	defer h.close()
	honest := dialWS(t, h.url, reg, nil, true)
	defer honest.CloseNow()

	reader := dialWS(t, h.url, reg, nil, true)
	send(t, reader, websocket.MessageBinary, wire.AppendInterest(nil, &wire.Interest{Mode: wire.InterestGlobal}))
	expectClose(t, reader, plugin.StatusInternal)

	applier := dialWS(t, h.url, reg, nil, true)
	send(t, applier, websocket.MessageBinary, wire.AppendSubscribe(nil, wire.KindUnsubscribe, &wire.Subscribe{}))
	expectClose(t, applier, plugin.StatusInternal)

	h.ticks(3)
	expectAlive(t, honest)
	if n := h.srv.Stats().Refusals[plugin.RefusedPanic]; n != 2 {
		t.Fatalf("%d panics counted, want 2", n)
	}
}
