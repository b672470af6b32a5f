package plugin_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/yohamta/donburi"

	"github.com/ebisync/ebisync"
	"github.com/ebisync/ebisync/components"
	"github.com/ebisync/ebisync/internal/codec"
	"github.com/ebisync/ebisync/internal/hostile"
	"github.com/ebisync/ebisync/internal/testutil"
	"github.com/ebisync/ebisync/internal/wire"
	"github.com/ebisync/ebisync/netclient"
	"github.com/ebisync/ebisync/plugin"
)

// remoteReg is the registry of the remote-client tests: the standard
// components, a client-writable score, a chat clients send, a hit only
// the simulation sends, and a move input.
type remoteReg struct {
	reg    *components.Registry
	points *components.Synced[scoreData]
	chat   *components.Message[chatMsg]
	hit    *components.Message[hitMsg]
	move   *components.Message[moveIn]
}

func newRemoteReg() *remoteReg {
	reg, chat, hit := msgRegistry()
	move := components.RegisterMessage[moveIn](reg, "test.move", &components.MessageOptions{FromClient: true})
	points := components.Register(reg, "test.score", score, &components.Options{ClientWritable: true})
	return &remoteReg{reg: reg, points: points, chat: chat, hit: hit, move: move}
}

func (rr *remoteReg) scoreCodec() *codec.Codec { return codec.Of(rr.points.Component()) }

// mutateScore is a Mutate of entity tag's score.
func (rr *remoteReg) mutateScore(req uint64, tag components.ReplicatedData, points int32) []byte {
	return wire.AppendMutate(nil, &wire.Mutate{Request: req, ID: uint64(tag.NetID), Gen: uint64(tag.Gen), Comp: uint64(rr.points.Index()), Value: encodeValue(rr.scoreCodec(), scoreData{Points: points})})
}

// moveInput is input seq of entity tag.
func (rr *remoteReg) moveInput(seq uint64, tag components.ReplicatedData) []byte {
	val := codecMsg(rr.reg, rr.move.Index()).AppendFull(nil, unsafePtr(&moveIn{DX: 1, N: seq}))
	return wire.AppendInput(nil, &wire.Input{Seq: seq, ID: uint64(rr.move.Index()), Entity: uint64(tag.NetID), Gen: uint64(tag.Gen), Value: val})
}

// chatMessage is a chat from a client.
func (rr *remoteReg) chatMessage(req uint64, text string) []byte {
	val := codecMsg(rr.reg, rr.chat.Index()).AppendFull(nil, unsafePtr(&chatMsg{Text: text}))
	return wire.AppendMessage(nil, &wire.Message{Request: req, ID: uint64(rr.chat.Index()), Value: val})
}

// remoteGame is a simulation's game for the remote tests: each client
// that connects gets a ship it owns, near the origin, which leaves with
// it; the hooks are recorded.
type remoteGame struct {
	seen infos
	mu   sync.Mutex
	// Game goroutine, read under mu.
	ships       map[uint64]donburi.Entity
	disconnects map[uint64]int
}

func newRemoteGame() *remoteGame {
	return &remoteGame{ships: map[uint64]donburi.Entity{}, disconnects: map[uint64]int{}}
}

// options sets o's hooks; world returns the simulation's World.
func (g *remoteGame) options(world func() donburi.World, o *plugin.Options) *plugin.Options {
	o.OnConnect = func(ci plugin.ClientInfo) {
		g.seen.mu.Lock()
		g.seen.connected = append(g.seen.connected, ci)
		g.seen.mu.Unlock()
		w := world()
		e := w.Create(components.Replicated, components.Position, score, components.Owner)
		components.Position.SetValue(w.Entry(e), components.PositionData{X: float64(10 + ci.ID%40*5), Y: 10})
		components.Owner.SetValue(w.Entry(e), components.OwnerData{Client: ci.ID})
		g.mu.Lock()
		g.ships[ci.ID] = e
		g.mu.Unlock()
	}
	o.OnResume = func(ci plugin.ClientInfo) {
		g.seen.mu.Lock()
		g.seen.resumed = append(g.seen.resumed, ci)
		g.seen.mu.Unlock()
	}
	o.OnDisconnect = func(ci plugin.ClientInfo) {
		g.seen.mu.Lock()
		g.seen.departed = append(g.seen.departed, ci)
		g.seen.mu.Unlock()
		g.mu.Lock()
		e, ok := g.ships[ci.ID]
		delete(g.ships, ci.ID)
		g.disconnects[ci.ID]++
		g.mu.Unlock()
		if w := world(); ok && w.Valid(e) {
			w.Remove(e)
		}
	}
	return o
}

// departures returns how many times OnDisconnect ran for client id.
func (g *remoteGame) departures(id uint64) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.disconnects[id]
}

// ship waits until client id's ship is replicated on h and returns its
// tag.
func (g *remoteGame) ship(t testing.TB, h *harness, id uint64) components.ReplicatedData {
	t.Helper()
	var tag components.ReplicatedData
	testutil.Eventually(t, 5*time.Second, "the ship of the client", func() bool {
		h.do(func(w donburi.World) {
			g.mu.Lock()
			e, ok := g.ships[id]
			g.mu.Unlock()
			if ok && w.Valid(e) {
				tag = *components.Replicated.Get(w.Entry(e))
			}
		})
		return tag.NetID != 0
	})
	return tag
}

// points reads the score of client id's ship on h.
func (g *remoteGame) points(h *harness, id uint64) int32 {
	var p int32 = -1
	h.do(func(w donburi.World) {
		g.mu.Lock()
		e, ok := g.ships[id]
		g.mu.Unlock()
		if ok && w.Valid(e) {
			p = score.Get(w.Entry(e)).Points
		}
	})
	return p
}

// payloadLog records what a rig carries between its gateways and its
// simulation: each join with its answer, each requests envelope and each
// relay envelope, as the Server handed them over.
type payloadLog struct {
	mu       sync.Mutex
	joins    []joinRecord
	requests [][]byte
	relays   []relayRecord
}

type joinRecord struct{ req, rep []byte }

type relayRecord struct {
	gateway string
	data    []byte
}

func (l *payloadLog) lastJoin() joinRecord {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.joins) == 0 {
		return joinRecord{}
	}
	return l.joins[len(l.joins)-1]
}

func (l *payloadLog) nJoins() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.joins)
}

// joinHook, when set, carries a join instead of the plain call: deliver
// hands the request to the simulation and returns its answer. Its
// requests function, when set, runs after each requests envelope the
// gateway hands the simulation, on the gateway's game goroutine.
type joinHook struct {
	mu       sync.Mutex
	f        func(ctx context.Context, deliver func() []byte) ([]byte, error)
	requests func(data []byte)
}

func (h *joinHook) setRequests(f func(data []byte)) {
	h.mu.Lock()
	h.requests = f
	h.mu.Unlock()
}

func (h *joinHook) set(f func(ctx context.Context, deliver func() []byte) ([]byte, error)) {
	h.mu.Lock()
	h.f = f
	h.mu.Unlock()
}

// recBus is a relayBus that records the joins and requests envelopes it
// carries.
type recBus struct {
	relayBus
	log  *payloadLog
	hook *joinHook
}

func (b recBus) Join(ctx context.Context, req []byte) ([]byte, error) {
	req = slices.Clone(req)
	deliver := func() []byte {
		rep := b.server().RemoteJoin(req)
		b.log.mu.Lock()
		b.log.joins = append(b.log.joins, joinRecord{req: req, rep: slices.Clone(rep)})
		b.log.mu.Unlock()
		return rep
	}
	b.hook.mu.Lock()
	f := b.hook.f
	b.hook.mu.Unlock()
	if f != nil {
		return f(ctx, deliver)
	}
	return deliver(), nil
}

func (b recBus) Requests(data []byte) {
	b.log.mu.Lock()
	b.log.requests = append(b.log.requests, slices.Clone(data))
	b.log.mu.Unlock()
	b.relayBus.Requests(data)
	b.hook.mu.Lock()
	f := b.hook.requests
	b.hook.mu.Unlock()
	if f != nil {
		f(data)
	}
}

// recHub is a relayHub that records the relay envelopes.
type recHub struct {
	*relayHub
	log *payloadLog
}

func (h recHub) Relay(gateway string, data []byte) {
	h.log.mu.Lock()
	h.log.relays = append(h.log.relays, relayRecord{gateway: gateway, data: slices.Clone(data)})
	h.log.mu.Unlock()
	h.relayHub.Relay(gateway, data)
}

// newRecRig is newRemoteRig over recording buses: it returns the rig, the
// log of its payloads and each gateway's join hook.
func newRecRig(t testing.TB, reg *components.Registry, n int, simOpts, gwOpts *plugin.Options) (*remoteRig, *payloadLog, []*joinHook) {
	t.Helper()
	const cell = 250.0
	log := &payloadLog{}
	var hooks []*joinHook
	r := &remoteRig{hub: &relayHub{down: map[string]bool{}}}
	for range n {
		bus := relayBus{&memBus{cells: map[plugin.Cell]bool{}}}
		hook := &joinHook{}
		hooks = append(hooks, hook)
		o := *gwOpts
		if o.Logger == nil {
			o.Logger = quietLogger()
		}
		gw := plugin.NewGateway(reg, cell, recBus{relayBus: bus, log: log, hook: hook}, &o)
		bus.gw = gw
		r.hub.buses = append(r.hub.buses, bus)
		r.gws = append(r.gws, gw)
		ts := httptest.NewUnstartedServer(gw)
		ln := &connTracker{Listener: ts.Listener}
		ts.Listener = ln
		ts.Start()
		r.ts = append(r.ts, ts)
		r.lns = append(r.lns, ln)
		r.urls = append(r.urls, wsURL(ts))
		r.alive = append(r.alive, true)
	}
	simOpts.Publish, simOpts.PublishCellSize = recHub{relayHub: r.hub, log: log}, cell
	r.h = newHarnessAfter(t, reg, simOpts, 3*time.Millisecond, func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		for i, gw := range r.gws {
			if r.alive[i] {
				gw.Tick()
			}
		}
	})
	for _, b := range r.hub.buses {
		b.mu.Lock()
		b.sim = r.h.srv
		b.mu.Unlock()
	}
	return r, log, hooks
}

// silence stops (or restarts) gateway i's ticks: it sends its simulation
// nothing and applies nothing, but keeps its connections.
func (r *remoteRig) silence(i int, silent bool) {
	r.mu.Lock()
	r.alive[i] = !silent
	r.mu.Unlock()
}

// joinReq is a join request as a gateway encodes it (joinUpstream).
type joinReq struct {
	version          byte
	gateway          string
	user, name, addr string
	resume           bool
	id               uint64
	token            [wire.TokenLen]byte
}

// decodeJoinReq reads a join request: version, gateway name, user, client
// name, address, then a bool and, when set, the client id and token.
// Fields a later version appends are not read.
func decodeJoinReq(b []byte) (joinReq, error) {
	r := wire.NewReader(b)
	var j joinReq
	j.version = r.Byte()
	j.gateway = r.StringMax(64, "gateway")
	j.user = r.TextMax(wire.MaxNameLen, "user")
	j.name = r.TextMax(wire.MaxNameLen, "name")
	j.addr = r.TextMax(wire.MaxNameLen, "addr")
	if j.resume = r.Bool(); j.resume {
		j.id = r.Uvarint()
		copy(j.token[:], r.Raw(wire.TokenLen))
	}
	return j, r.Err()
}

// joinRep is a simulation's answer to a join (RemoteJoin).
type joinRep struct {
	version, status byte
	id              uint64
	token           [wire.TokenLen]byte
}

// Join answers' statuses.
const (
	joinStatusFresh   = 0
	joinStatusResumed = 1
	joinStatusRefused = 2
)

// decodeJoinRep reads a join's answer: version, status, client id and
// token. Fields a later version appends are not read.
func decodeJoinRep(b []byte) (joinRep, error) {
	r := wire.NewReader(b)
	var j joinRep
	j.version, j.status = r.Byte(), r.Byte()
	j.id = r.Uvarint()
	copy(j.token[:], r.Raw(wire.TokenLen))
	return j, r.Err()
}

// watchedConn is a connection read until it ends, discarding what it reads.
type watchedConn struct {
	ws   *websocket.Conn
	done chan struct{}
	err  error
}

func watchConn(ws *websocket.Conn) *watchedConn {
	c := &watchedConn{ws: ws, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		for {
			if _, _, err := ws.Read(context.Background()); err != nil {
				c.err = err
				return
			}
		}
	}()
	return c
}

func (c *watchedConn) ended() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// closedWith waits for the connection to end and checks its close code.
func (c *watchedConn) closedWith(t testing.TB, code websocket.StatusCode) {
	t.Helper()
	select {
	case <-c.done:
	case <-time.After(5 * time.Second):
		t.Fatalf("the connection did not end, want close code %d", code)
	}
	if got := websocket.CloseStatus(c.err); got != code {
		t.Fatalf("the connection ended with %v (code %d), want close code %d", c.err, got, code)
	}
}

func (c *watchedConn) cut() {
	c.ws.CloseNow()
	<-c.done
}

// handshakeAs opens a WebSocket to url as user and completes a handshake
// whose Hello carries resume (nil for a fresh session).
func handshakeAs(t testing.TB, url string, reg *components.Registry, user string, resume *wire.Resume) (*websocket.Conn, wire.Welcome) {
	t.Helper()
	hdr := http.Header{}
	hdr.Set("X-User", user)
	ws := dialWS(t, url, reg, hdr, false)
	hello := hostile.Hello(reg, "raw")
	hello.Resume = resume
	return ws, handshakeHello(t, ws, hello)
}

// userFromHeader authenticates every request as the user its X-User
// header names.
func userFromHeader(r *http.Request) (plugin.Identity, error) {
	return plugin.Identity{User: r.Header.Get("X-User")}, nil
}

// TestGatewayHostileClients: raw clients attack a gateway that forwards
// its clients to a simulation. A gap in an input sequence closes with
// 4000; a flood of mutations past the token bucket is answered
// RateLimited, and one far past it (more refusals than a tick may hold)
// closes with 4002; a malformed Mutate closes with 4000; a control
// request for another client's ship is answered ControlForbidden and a
// mutation of an entity that does not exist NotFound. The simulation ends
// the remote client of every closed attacker (OnDisconnect, once); the
// gateway and the simulation go on ticking, nothing panics, and an honest
// client of the same gateway has its mutations answered Ok throughout and
// converges.
func TestGatewayHostileClients(t *testing.T) {
	rr := newRemoteReg()
	reg := rr.reg
	const hyst = 1.15
	game := newRemoteGame()
	var rig *remoteRig
	rig = newRemoteRig(t, reg, 1, game.options(func() donburi.World { return rig.h.w }, &plugin.Options{Hysteresis: hyst}),
		&plugin.Options{DefaultRadius: 300, MaxRadius: 600, Hysteresis: hyst})
	defer rig.close()
	rig.h.do(func(donburi.World) { plugin.HandleInput(rig.h.srv, rr.move, moveStep) })
	gw, url := rig.gws[0], rig.urls[0]

	honest := startClientLoop(t, url, reg, nil)
	defer honest.close()
	if err := honest.c.SubscribeAll(); err != nil {
		t.Fatal(err)
	}
	if err := honest.c.SetInterest(0, 0, 300); err != nil {
		t.Fatal(err)
	}
	hid := honest.c.ClientID()
	hShip := game.ship(t, rig.h, hid)
	var mine donburi.Entity
	testutil.Eventually(t, 5*time.Second, "the honest client's ship in its mirror", func() bool {
		honest.do(func(donburi.World) {
			if owned := honest.c.Owned(nil); len(owned) == 1 {
				mine = owned[0]
			}
		})
		return mine != donburi.Null
	})
	honestPoints := int32(100)
	honestMutates := func(t *testing.T, when string) {
		t.Helper()
		honestPoints++
		var res <-chan netclient.MutationResult
		honest.do(func(donburi.World) {
			res = netclient.Mutate(honest.c, mine, rr.points, scoreData{Points: honestPoints}, nil)
		})
		if r := waitResult(t, honest, res, "the honest mutation "+when); r.Status != ebisync.Ok {
			t.Fatalf("the honest client's mutation %s: %v %q %v", when, r.Status, r.Message, r.Err)
		}
		if p := game.points(rig.h, hid); p != honestPoints {
			t.Fatalf("the honest ship has %d points %s, want %d", p, when, honestPoints)
		}
	}
	honestMutates(t, "before the attacks")
	simTick, gwTick := rig.h.srv.CurrentTick(), gw.CurrentTick()

	// attacker connects a raw client to the gateway and waits for the
	// simulation to admit it (its ship) and the gateway to serve it (a
	// mutation of its ship answered Ok, request 1000).
	attacker := func(t *testing.T) (*websocket.Conn, uint64, components.ReplicatedData) {
		t.Helper()
		ws := dialWS(t, url, reg, nil, false)
		wel := handshakeWS(t, ws, reg)
		ship := game.ship(t, rig.h, wel.ClientID)
		send(t, ws, websocket.MessageBinary, rr.mutateScore(1000, ship, 1))
		if res, _ := readResults(t, ws, reg, 1); res[1000].Status != wire.StatusOk {
			t.Fatalf("the attacker's first mutation was answered %+v", res[1000])
		}
		return ws, wel.ClientID, ship
	}
	// ended waits for the simulation to end client id's remote client,
	// once.
	ended := func(t *testing.T, id uint64) {
		t.Helper()
		testutil.Eventually(t, 5*time.Second, "the simulation's OnDisconnect of the attacker", func() bool { return game.departures(id) > 0 })
		rig.h.ticks(3)
		if n := game.departures(id); n != 1 {
			t.Fatalf("OnDisconnect ran %d times for the attacker", n)
		}
	}

	t.Run("input sequence gap", func(t *testing.T) {
		ws, id, ship := attacker(t)
		defer ws.CloseNow()
		send(t, ws, websocket.MessageBinary, rr.moveInput(1, ship))
		send(t, ws, websocket.MessageBinary, rr.moveInput(3, ship))
		expectClose(t, ws, plugin.StatusProtocolError)
		ended(t, id)
		honestMutates(t, "after an input gap")
	})

	t.Run("mutation flood", func(t *testing.T) {
		ws, _, ship := attacker(t)
		defer ws.Close(websocket.StatusNormalClosure, "")
		const n = 200
		for i := range n {
			send(t, ws, websocket.MessageBinary, rr.mutateScore(uint64(i+1), ship, int32(i)))
		}
		res, _ := readResults(t, ws, reg, n)
		ok, limited := 0, 0
		for req, r := range res {
			switch r.Status {
			case wire.StatusOk:
				ok++
			case wire.StatusRateLimited:
				limited++
			default:
				t.Fatalf("request %d answered %v %q, want Ok or RateLimited", req, r.Status, r.Message)
			}
		}
		if ok == 0 || limited < n/2 {
			t.Fatalf("%d of %d mutations answered Ok and %d RateLimited: want some Ok and at least half RateLimited", ok, n, limited)
		}
		expectAlive(t, ws)
		honestMutates(t, "during a mutation flood")
	})

	t.Run("flood past the bounds", func(t *testing.T) {
		ws, id, ship := attacker(t)
		defer ws.CloseNow()
		before := gw.Stats().Refusals[plugin.RefusedFlood]
		// Hold the game goroutine (the simulation's and the gateway's
		// ticks), so that no tick answers the refusals.
		release := make(chan struct{})
		held := make(chan struct{})
		go rig.h.do(func(donburi.World) { close(held); <-release })
		<-held
		msg := rr.mutateScore(1, ship, 1)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		for range 3 * 4096 {
			if ws.Write(ctx, websocket.MessageBinary, msg) != nil || gw.Stats().Refusals[plugin.RefusedFlood] > before {
				break
			}
		}
		cancel()
		close(release)
		expectClose(t, ws, plugin.StatusAbuse)
		ended(t, id)
		honestMutates(t, "after a flood past the bounds")
	})

	t.Run("malformed Mutate", func(t *testing.T) {
		ws, id, ship := attacker(t)
		defer ws.CloseNow()
		m := rr.mutateScore(1, ship, 1)
		send(t, ws, websocket.MessageBinary, m[:len(m)-2])
		expectClose(t, ws, plugin.StatusProtocolError)
		ended(t, id)
		honestMutates(t, "after a malformed Mutate")
	})

	t.Run("control of another client's ship", func(t *testing.T) {
		ws, _, _ := attacker(t)
		defer ws.Close(websocket.StatusNormalClosure, "")
		send(t, ws, websocket.MessageBinary, wire.AppendControl(nil, &wire.Control{Request: 1, Op: wire.ControlTake, ID: uint64(hShip.NetID), Gen: uint64(hShip.Gen)}))
		_, ctl := readResults(t, ws, reg, 1)
		if r := ctl[1]; r.Result != wire.ControlForbidden {
			t.Fatalf("reply %+v, want ControlForbidden", r)
		}
		if holder := controlOf(rig.h)[hShip.NetID]; holder != 0 {
			t.Fatalf("the honest ship is controlled by client %d", holder)
		}
		honestMutates(t, "after a control request for it")
	})

	t.Run("mutation of no entity", func(t *testing.T) {
		ws, _, ship := attacker(t)
		defer ws.Close(websocket.StatusNormalClosure, "")
		gone := ship
		gone.NetID += 5000
		send(t, ws, websocket.MessageBinary, rr.mutateScore(1, gone, 1))
		send(t, ws, websocket.MessageBinary, wire.AppendMutate(nil, &wire.Mutate{Request: 2, ID: wire.MaxNetID, Gen: 1, Comp: uint64(rr.points.Index()), Value: encodeValue(rr.scoreCodec(), scoreData{})}))
		other := ship
		other.Gen++
		send(t, ws, websocket.MessageBinary, rr.mutateScore(3, other, 1))
		res, _ := readResults(t, ws, reg, 3)
		for req := uint64(1); req <= 3; req++ {
			if r := res[req]; r.Status != wire.StatusNotFound {
				t.Fatalf("request %d answered %+v, want NotFound", req, r)
			}
		}
		honestMutates(t, "after mutations of no entity")
	})

	// Both servers ticked on; the attackers are gone from the simulation;
	// nothing panicked; the honest client converges.
	testutil.Eventually(t, 5*time.Second, "the simulation and the gateway ticking on", func() bool {
		return rig.h.srv.CurrentTick() > simTick+10 && gw.CurrentTick() > gwTick+10
	})
	testutil.Eventually(t, 5*time.Second, "the simulation serving the honest client only", func() bool {
		st := rig.h.srv.Stats()
		return st.RemoteClients == 1 && st.RemoteParked == 0
	})
	for _, srv := range []*plugin.Server{rig.h.srv, gw} {
		if n := srv.Stats().Refusals[plugin.RefusedPanic]; n != 0 {
			t.Fatalf("%d panics while handling client input", n)
		}
	}
	if st := honest.c.Stats(); st.Reconnects != 0 {
		t.Fatalf("the honest client reconnected %d times", st.Reconnects)
	}
	all := map[int]bool{}
	for i := range reg.Len() {
		all[i] = true
	}
	var want map[uint64]expectation
	var band map[uint64]bool
	rig.h.do(func(sw donburi.World) { want, band = view(sw, reg, all, 0, 0, 300, hyst) })
	if _, err := awaitConvergence(honest, reg, want, band, 10*time.Second); err != nil {
		t.Fatalf("the honest client did not converge: %v", err)
	}
	if len(want) == 0 {
		t.Fatal("the honest client sees nothing: the test is not testing")
	}
}

// TestRemoteJoinResumeChecks: a simulation resumes a remote session only
// for a join with its token, from the user that made it, within the
// window. Joins are made by real handshakes at two gateways, and each is
// checked as the simulation received and answered it: a wrong token or
// another user gets a fresh id; the right token and user resume the
// session at the other gateway (its old connection closed with 1001,
// OnResume run, no OnDisconnect); a session parked past ResumeWindow is
// ended (OnDisconnect, once), and a join for it gets a fresh session.
func TestRemoteJoinResumeChecks(t *testing.T) {
	rr := newRemoteReg()
	reg := rr.reg
	const window = 100 * time.Millisecond
	game := newRemoteGame()
	var rig *remoteRig
	rig, log, _ := newRecRig(t, reg, 2, game.options(func() donburi.World { return rig.h.w }, &plugin.Options{ResumeWindow: window}),
		&plugin.Options{DefaultRadius: 300, MaxRadius: 600, ResumeWindow: window, Authenticate: userFromHeader})
	defer rig.close()
	gw0, gw1 := rig.gws[0].GatewayName(), rig.gws[1].GatewayName()

	// join checks the last join the simulation received and its answer.
	join := func(t *testing.T, gw, user string, resume *wire.Resume, status byte, id uint64) {
		t.Helper()
		rec := log.lastJoin()
		req, err := decodeJoinReq(rec.req)
		if err != nil {
			t.Fatalf("the join request does not decode: %v", err)
		}
		if req.version != 1 || req.gateway != gw || req.user != user || req.name != "raw" || req.addr == "" {
			t.Fatalf("join request %+v, want version 1 from gateway %q for user %q named raw", req, gw, user)
		}
		if req.resume != (resume != nil) || resume != nil && (req.id != resume.ClientID || req.token != resume.Token) {
			t.Fatalf("join request %+v does not carry the Hello's resume %+v", req, resume)
		}
		rep, err := decodeJoinRep(rec.rep)
		if err != nil {
			t.Fatalf("the join's answer does not decode: %v", err)
		}
		if rep.version != 1 || rep.status != status || rep.id != id {
			t.Fatalf("join answer %+v, want status %d for client %d", rep, status, id)
		}
	}

	alice, wel := handshakeAs(t, rig.urls[0], reg, "alice", nil)
	aliceConn := watchConn(alice)
	defer aliceConn.cut()
	id, tok := wel.ClientID, wel.Token
	join(t, gw0, "alice", nil, joinStatusFresh, id)
	game.ship(t, rig.h, id)
	testutil.Eventually(t, 5*time.Second, "gateway 0 to serve the client", func() bool { return rig.gws[0].Stats().Clients == 1 })

	t.Run("wrong token", func(t *testing.T) {
		bad := tok
		bad[3] ^= 0x40
		ws, w := handshakeAs(t, rig.urls[1], reg, "alice", &wire.Resume{ClientID: id, Token: bad})
		defer ws.CloseNow()
		if w.Resumed || w.ClientID == id {
			t.Fatalf("a wrong token resumed: Welcome %+v", w)
		}
		join(t, gw1, "alice", &wire.Resume{ClientID: id, Token: bad}, joinStatusFresh, w.ClientID)
	})
	t.Run("another user", func(t *testing.T) {
		ws, w := handshakeAs(t, rig.urls[1], reg, "mallory", &wire.Resume{ClientID: id, Token: tok})
		defer ws.CloseNow()
		if w.Resumed || w.ClientID == id {
			t.Fatalf("another user resumed: Welcome %+v", w)
		}
		join(t, gw1, "mallory", &wire.Resume{ClientID: id, Token: tok}, joinStatusFresh, w.ClientID)
	})
	if aliceConn.ended() {
		t.Fatalf("the refused resumes ended the session's connection: %v", aliceConn.err)
	}
	refused := rig.h.srv.Stats().ResumesRefused
	if refused < 2 {
		t.Fatalf("the simulation counted %d refused resumes, want at least 2", refused)
	}

	// The right token and user: the session moves to the other gateway.
	ws, w := handshakeAs(t, rig.urls[1], reg, "alice", &wire.Resume{ClientID: id, Token: tok})
	moved := watchConn(ws)
	if !w.Resumed || w.ClientID != id || w.Token != tok {
		t.Fatalf("the right token did not resume: Welcome %+v", w)
	}
	join(t, gw1, "alice", &wire.Resume{ClientID: id, Token: tok}, joinStatusResumed, id)
	aliceConn.closedWith(t, websocket.StatusGoingAway)
	testutil.Eventually(t, 5*time.Second, "the simulation's OnResume", func() bool {
		ci, ok := game.seen.find(&game.seen.resumed, id)
		return ok && ci.Gateway == gw1
	})
	rig.h.ticks(5)
	if n := game.departures(id); n != 0 {
		t.Fatalf("OnDisconnect ran %d times for a session that moved", n)
	}

	// Parked past the window: the session ends, and a join for it gets a
	// fresh one.
	moved.cut() // vanished: the gateway parks the session, and the simulation too
	testutil.Eventually(t, 5*time.Second, "the simulation's OnDisconnect after the window", func() bool { return game.departures(id) > 0 })
	// The gateway's own window passes too; its final leave ends nothing
	// more.
	testutil.Consistently(t, 3*window, "OnDisconnect run once for the ended session", func() bool { return game.departures(id) == 1 })
	joins := log.nJoins()
	late, lw := handshakeAs(t, rig.urls[0], reg, "alice", &wire.Resume{ClientID: id, Token: tok})
	defer late.CloseNow()
	if lw.Resumed || lw.ClientID == id {
		t.Fatalf("a join after the window resumed: Welcome %+v", lw)
	}
	if log.nJoins() != joins+1 {
		t.Fatalf("the late handshake made %d joins, want 1", log.nJoins()-joins)
	}
	join(t, gw0, "alice", &wire.Resume{ClientID: id, Token: tok}, joinStatusFresh, lw.ClientID)
	game.ship(t, rig.h, lw.ClientID)
	if _, ok := game.seen.find(&game.seen.connected, lw.ClientID); !ok {
		t.Fatal("the simulation ran no OnConnect for the fresh session")
	}
}

// TestGatewayHostileQuickLeave: a client that completes its handshake at a
// gateway and leaves before the gateway's next tick was joined at the
// simulation (OnConnect ran there, its ship spawned); the simulation ends
// it too (OnDisconnect, once), whether it said goodbye or vanished, and
// serves only the clients still connected. Otherwise connecting and
// leaving at once leaves a remote client on the simulation for as long as
// the gateway lives.
func TestGatewayHostileQuickLeave(t *testing.T) {
	rr := newRemoteReg()
	reg := rr.reg
	const window = 200 * time.Millisecond
	game := newRemoteGame()
	var rig *remoteRig
	rig = newRemoteRig(t, reg, 1, game.options(func() donburi.World { return rig.h.w }, &plugin.Options{ResumeWindow: window}),
		&plugin.Options{DefaultRadius: 300, MaxRadius: 600, ResumeWindow: window})
	defer rig.close()
	gw := rig.gws[0]
	honest := watchConn(dialWS(t, rig.urls[0], reg, nil, true))
	defer honest.cut()
	testutil.Eventually(t, 5*time.Second, "the honest client at the simulation", func() bool { return rig.h.srv.Stats().RemoteClients == 1 })

	for _, how := range []string{"goodbye", "vanished"} {
		t.Run(how, func(t *testing.T) {
			// Hold the game goroutine (the simulation's and the gateway's
			// ticks) while the client comes and goes.
			release := make(chan struct{})
			held := make(chan struct{})
			go rig.h.do(func(donburi.World) { close(held); <-release })
			<-held
			ws := dialWS(t, rig.urls[0], reg, nil, false)
			wel := handshakeWS(t, ws, reg)
			if how == "goodbye" {
				ws.Close(websocket.StatusNormalClosure, "")
			} else {
				ws.CloseNow()
			}
			err := testutil.WaitUntil(5*time.Second, func() string { return "the gateway to see the client leave" }, func() bool {
				return gw.Stats().Connections == 1
			})
			close(release)
			if err != nil {
				t.Fatal(err)
			}
			testutil.Eventually(t, 5*time.Second, "the simulation's OnConnect", func() bool {
				_, ok := game.seen.find(&game.seen.connected, wel.ClientID)
				return ok
			})
			testutil.Eventually(t, 5*time.Second, "the simulation's OnDisconnect of the client that left", func() bool {
				return game.departures(wel.ClientID) > 0
			})
			rig.h.ticks(3)
			if n := game.departures(wel.ClientID); n != 1 {
				t.Fatalf("OnDisconnect ran %d times", n)
			}
			testutil.Eventually(t, 5*time.Second, "the simulation serving the honest client only", func() bool {
				st := rig.h.srv.Stats()
				return st.RemoteClients == 1 && st.RemoteParked == 0
			})
		})
	}
	if honest.ended() {
		t.Fatalf("the honest client was closed: %v", honest.err)
	}
}

// silentRig is a simulation that takes a gateway silent for a second for
// dead, and two gateways; bob is a raw client of gateway 0, carol one of
// gateway 1 (which keeps that gateway heard from).
type silentRig struct {
	rr         *remoteReg
	game       *remoteGame
	rig        *remoteRig
	bob, carol *rawClient
	bobShip    components.ReplicatedData
}

func newSilentRig(t *testing.T, window time.Duration) *silentRig {
	s := &silentRig{rr: newRemoteReg(), game: newRemoteGame()}
	s.rig, _, _ = newRecRig(t, s.rr.reg, 2, s.game.options(func() donburi.World { return s.rig.h.w }, &plugin.Options{ResumeWindow: window, GatewayTimeout: time.Second}),
		&plugin.Options{DefaultRadius: 300, MaxRadius: 600, Authenticate: userFromHeader})
	s.bob = dialRawHeader(t, s.rig.urls[0], s.rr.reg, http.Header{"X-User": {"bob"}}, true)
	s.carol = dialRawHeader(t, s.rig.urls[1], s.rr.reg, http.Header{"X-User": {"carol"}}, true)
	s.bobShip = s.game.ship(t, s.rig.h, s.bob.wel.ClientID)
	carolShip := s.game.ship(t, s.rig.h, s.carol.wel.ClientID)
	// Each gateway serves its client: a mutation is answered.
	s.bob.send(s.rr.mutateScore(100, s.bobShip, 1))
	s.carol.send(s.rr.mutateScore(100, carolShip, 1))
	testutil.Eventually(t, 5*time.Second, "the first mutations answered", func() bool {
		_, b := s.bob.results()[100]
		_, c := s.carol.results()[100]
		return b && c
	})
	return s
}

func (s *silentRig) close() {
	s.bob.ws.CloseNow()
	s.carol.ws.CloseNow()
	<-s.bob.done
	<-s.carol.done
	s.rig.close()
}

// TestRemoteJoinGatewaySilentThenBack: a gateway silent past
// GatewayTimeout has its clients' sessions parked at the simulation. When
// the gateway is heard from again within ResumeWindow, a request of its
// client is not lost: it is answered, or the gateway closes the client
// with 1001 (going away) and the client's resume, at the same gateway,
// gets the session back (same id, OnResume, no OnDisconnect) and then its
// mutation answered Ok and applied.
func TestRemoteJoinGatewaySilentThenBack(t *testing.T) {
	s := newSilentRig(t, 5*time.Second)
	defer s.close()
	h, bob := s.rig.h, s.bob.wel.ClientID
	s.rig.silence(0, true)
	testutil.Eventually(t, 5*time.Second, "the simulation to park the silent gateway's client", func() bool {
		return h.srv.Stats().RemoteParked == 1
	})
	s.rig.silence(0, false)
	s.bob.send(s.rr.mutateScore(1, s.bobShip, 7))
	var closed error
	testutil.Eventually(t, 5*time.Second, "an answer to the mutation, or a close", func() bool {
		_, ok := s.bob.results()[1]
		_, _, closed = s.bob.snapshot()
		return ok || closed != nil
	})
	if r, ok := s.bob.results()[1]; ok {
		if r.Status != wire.StatusOk {
			t.Fatalf("the mutation was answered %+v, want Ok", r)
		}
	} else {
		if code := websocket.CloseStatus(closed); code != websocket.StatusGoingAway {
			t.Fatalf("the client was closed with %v (code %d), want 1001 or an answer", closed, code)
		}
		t.Logf("the gateway closed its client: %v", closed)
		ws, w := handshakeAs(t, s.rig.urls[0], s.rr.reg, "bob", &wire.Resume{ClientID: bob, Token: s.bob.wel.Token})
		again := &rawClient{t: t, ws: ws, reg: s.rr.reg, wel: w, done: make(chan struct{})}
		go again.readLoop()
		defer again.close()
		if !w.Resumed || w.ClientID != bob {
			t.Fatalf("the resume within the window did not resume: Welcome %+v", w)
		}
		testutil.Eventually(t, 5*time.Second, "the simulation's OnResume", func() bool {
			_, ok := s.game.seen.find(&s.game.seen.resumed, bob)
			return ok
		})
		again.send(s.rr.mutateScore(2, s.bobShip, 7))
		testutil.Eventually(t, 5*time.Second, "the answer to the resumed client's mutation", func() bool {
			_, ok := again.results()[2]
			return ok
		})
		if r := again.results()[2]; r.Status != wire.StatusOk {
			t.Fatalf("the resumed client's mutation was answered %+v, want Ok", r)
		}
	}
	if p := s.game.points(h, bob); p != 7 {
		t.Fatalf("the ship has %d points, want 7", p)
	}
	if n := s.game.departures(bob); n != 0 {
		t.Fatalf("OnDisconnect ran %d times for a client whose gateway came back within the window", n)
	}
}

// TestRemoteJoinAfterGatewaySilence: a gateway silent past GatewayTimeout
// and then ResumeWindow has its clients' sessions ended at the simulation
// (OnDisconnect, once); a join for such a session, at another gateway,
// gets a fresh one; and when the silent gateway is heard from again, it
// closes the connection of the client whose session ended, so that the
// client learns it and starts afresh.
func TestRemoteJoinAfterGatewaySilence(t *testing.T) {
	const window = 200 * time.Millisecond
	s := newSilentRig(t, window)
	defer s.close()
	h, bob := s.rig.h, s.bob.wel.ClientID
	s.rig.silence(0, true)
	testutil.Eventually(t, 5*time.Second, "the simulation's OnDisconnect of the silent gateway's client", func() bool {
		return s.game.departures(bob) > 0
	})
	h.ticks(5)
	if n := s.game.departures(bob); n != 1 {
		t.Fatalf("OnDisconnect ran %d times, want 1", n)
	}
	ws, w := handshakeAs(t, s.rig.urls[1], s.rr.reg, "bob", &wire.Resume{ClientID: bob, Token: s.bob.wel.Token})
	late := watchConn(ws)
	defer late.cut()
	if w.Resumed || w.ClientID == bob {
		t.Fatalf("a join after the window resumed: Welcome %+v", w)
	}
	s.game.ship(t, h, w.ClientID)

	s.rig.silence(0, false)
	s.bob.send(s.rr.mutateScore(1, s.bobShip, 7))
	testutil.Eventually(t, 5*time.Second, "the gateway back from silence to close the client whose session ended", func() bool {
		_, _, err := s.bob.snapshot()
		return err != nil
	})
	if _, ok := s.bob.results()[1]; ok {
		t.Fatalf("a client whose session ended had its mutation answered %+v", s.bob.results()[1])
	}
	_, _, err := s.bob.snapshot()
	t.Logf("the client whose session ended was closed: %v", err)
}

// TestGatewayHostileUserNames: an Identity.User that a join cannot carry
// as it is (longer than a name may be, cut inside a UTF-8 sequence, or not
// UTF-8 at all: an authenticator may take it from a header) does not keep
// its client out: the client is welcomed through the gateway as it is by
// a Server of the World, its session resumes at another gateway under the
// same identity, and not under another.
func TestGatewayHostileUserNames(t *testing.T) {
	rr := newRemoteReg()
	reg := rr.reg
	game := newRemoteGame()
	var rig *remoteRig
	rig, _, _ = newRecRig(t, reg, 2, game.options(func() donburi.World { return rig.h.w }, &plugin.Options{}),
		&plugin.Options{DefaultRadius: 300, MaxRadius: 600, Authenticate: userFromHeader})
	defer rig.close()
	for _, tc := range []struct{ name, user string }{
		{"300 bytes of ASCII", string(slices.Repeat([]byte("a"), 300))},
		{"300 bytes of 3-byte runes", string(slices.Repeat([]byte("€"), 100))},
		{"not UTF-8", "user-\xff\xfe"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hdr := http.Header{}
			hdr.Set("X-User", tc.user)
			ws := dialWS(t, rig.urls[0], reg, hdr, false)
			defer ws.CloseNow()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := ws.Write(ctx, websocket.MessageBinary, wire.AppendHello(nil, hostile.Hello(reg, "raw"))); err != nil {
				t.Fatal(err)
			}
			_, msg, err := ws.Read(ctx)
			if err != nil {
				t.Fatalf("no Welcome: %v", err)
			}
			kind, body, _, err := wire.Open(msg, nil)
			if err != nil || kind != wire.KindWelcome {
				reason := ""
				if kind == wire.KindError {
					e, _ := wire.DecodeError(body)
					reason = e.Message
				}
				t.Fatalf("the gateway answered %v (%q), want a Welcome", kind, reason)
			}
			wel, err := wire.DecodeWelcome(body)
			if err != nil {
				t.Fatal(err)
			}
			conn := watchConn(ws)
			game.ship(t, rig.h, wel.ClientID)
			testutil.Eventually(t, 5*time.Second, "gateway 0 to serve the client", func() bool { return rig.gws[0].Stats().Clients == 1 })
			other, w := handshakeAs(t, rig.urls[1], reg, "someone else", &wire.Resume{ClientID: wel.ClientID, Token: wel.Token})
			other.CloseNow()
			if w.Resumed {
				t.Fatal("another user resumed the session")
			}
			again, w := handshakeAs(t, rig.urls[1], reg, tc.user, &wire.Resume{ClientID: wel.ClientID, Token: wel.Token})
			defer again.CloseNow()
			if !w.Resumed || w.ClientID != wel.ClientID {
				t.Fatalf("the same user did not resume its session: Welcome %+v", w)
			}
			conn.closedWith(t, websocket.StatusGoingAway)
		})
	}
}

// TestGatewayHostileAbandonedJoin: a join that reaches the simulation but
// whose answer comes too late for the handshake (the client is closed
// with 1013, StatusTryAgain) leaves no remote client on the simulation:
// either the simulation never runs OnConnect for it, or it ends it
// (OnDisconnect) within seconds (with a short ResumeWindow). Otherwise a
// slow transport leaves a client that no gateway serves on the simulation
// for as long as the gateway lives. It holds beside a connected client of
// the gateway, and beside only a session the gateway keeps for a resume.
func TestGatewayHostileAbandonedJoin(t *testing.T) {
	for _, kept := range []bool{false, true} {
		name := "beside a connected client"
		if kept {
			name = "beside a kept session"
		}
		t.Run(name, func(t *testing.T) { testAbandonedJoin(t, kept) })
	}
}

func testAbandonedJoin(t *testing.T, kept bool) {
	rr := newRemoteReg()
	reg := rr.reg
	game := newRemoteGame()
	var rig *remoteRig
	rig, _, hooks := newRecRig(t, reg, 1, game.options(func() donburi.World { return rig.h.w }, &plugin.Options{ResumeWindow: 200 * time.Millisecond}),
		&plugin.Options{DefaultRadius: 300, MaxRadius: 600, HandshakeTimeout: 300 * time.Millisecond, ResumeWindow: time.Minute})
	defer rig.close()
	gw := rig.gws[0]
	honest := watchConn(dialWS(t, rig.urls[0], reg, nil, true))
	defer honest.cut()
	want := 1 // remote clients on the simulation at the end
	if kept {
		// The gateway keeps the honest client's session for a minute; its
		// connection is gone.
		testutil.Eventually(t, 5*time.Second, "the gateway to take the honest client in", func() bool { return gw.Stats().Clients == 1 })
		honest.cut()
		testutil.Eventually(t, 5*time.Second, "the gateway to keep the honest client's session", func() bool { return gw.Stats().Parked == 1 })
		want = 0
	}
	late := make(chan uint64, 1)
	hooks[0].set(func(ctx context.Context, deliver func() []byte) ([]byte, error) {
		<-ctx.Done() // the answer is lost: the request reaches the simulation after the handshake gave up
		rep, err := decodeJoinRep(deliver())
		if err == nil {
			late <- rep.id
		}
		return nil, ctx.Err()
	})
	ws := dialWS(t, rig.urls[0], reg, nil, false)
	defer ws.CloseNow()
	send(t, ws, websocket.MessageBinary, wire.AppendHello(nil, hostile.Hello(reg, "raw")))
	expectClose(t, ws, plugin.StatusTryAgain)
	var id uint64
	select {
	case id = <-late:
	case <-time.After(5 * time.Second):
		t.Fatal("the join did not reach the simulation")
	}
	if id == 0 {
		t.Fatal("the simulation refused the join: the test is not testing")
	}
	hooks[0].set(nil)
	rig.h.ticks(2) // the simulation has admitted the join, if it admits it
	state := func() (int, bool, int) {
		_, connected := game.seen.find(&game.seen.connected, id)
		return rig.h.srv.Stats().RemoteClients, connected, game.departures(id)
	}
	if err := testutil.WaitUntil(10*time.Second, func() string {
		n, connected, departed := state()
		return fmt.Sprintf("the simulation to keep no client for the abandoned join (remote clients %d, want %d; OnConnect run %v, OnDisconnect run %d times)", n, want, connected, departed)
	}, func() bool {
		n, connected, departed := state()
		return n == want && (!connected || departed == 1)
	}); err != nil {
		t.Fatal(err)
	}
}

// leaves reports whether requests envelope data holds a leave of client
// id.
func leaves(data []byte, id uint64) bool {
	r := wire.NewReader(data)
	r.Byte()
	r.StringMax(64, "gateway")
	for r.Remaining() > 0 && r.Err() == nil {
		switch r.Byte() {
		case 1: // request
			r.Uvarint()
			r.BytesMax(wire.MaxMessageSize, "request")
		case 2: // leave
			if r.Uvarint() == id {
				return true
			}
			r.Bool()
		case 3: // client list
			for n := r.Uvarint(); n > 0 && r.Err() == nil; n-- {
				r.Uvarint()
			}
		default:
			return false
		}
	}
	return false
}

// TestGatewayQuickResumeSameGateway: a client whose connection drops
// resumes at once at the same gateway, and the simulation gets the
// gateway's leave of the old connection and the join of the new one in
// that order between two of its ticks. The session stays served: it is
// not left parked on the simulation, so it outlives its ResumeWindow and
// the simulation runs no OnDisconnect for it.
func TestGatewayQuickResumeSameGateway(t *testing.T) {
	rr := newRemoteReg()
	reg := rr.reg
	const window = 300 * time.Millisecond
	game := newRemoteGame()
	var rig *remoteRig
	rig, _, hooks := newRecRig(t, reg, 1, game.options(func() donburi.World { return rig.h.w }, &plugin.Options{ResumeWindow: window}),
		&plugin.Options{DefaultRadius: 300, MaxRadius: 600, ResumeWindow: window})
	defer rig.close()
	gw := rig.gws[0]
	ws := dialWS(t, rig.urls[0], reg, nil, false)
	wel := handshakeWS(t, ws, reg)
	testutil.Eventually(t, 5*time.Second, "the client at the simulation and at its gateway", func() bool {
		return rig.h.srv.Stats().RemoteClients == 1 && gw.Stats().Clients == 1
	})

	// The resume's join waits at the transport until the gateway hands
	// the simulation the envelope with the old connection's leave; then
	// it reaches the simulation, before the simulation's next tick.
	held := make(chan func() []byte, 1)
	reply := make(chan []byte, 1)
	hooks[0].set(func(ctx context.Context, deliver func() []byte) ([]byte, error) {
		held <- deliver
		select {
		case rep := <-reply:
			return rep, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	})
	var once sync.Once
	hooks[0].setRequests(func(data []byte) {
		if leaves(data, wel.ClientID) {
			once.Do(func() { reply <- (<-held)() })
		}
	})

	// Hold the game goroutine while the old connection drops and the new
	// one's join reaches the transport.
	release := make(chan struct{})
	holding := make(chan struct{})
	go rig.h.do(func(donburi.World) { close(holding); <-release })
	<-holding
	ws.CloseNow()
	err := testutil.WaitUntil(5*time.Second, func() string { return "the gateway to see the connection drop" }, func() bool {
		return gw.Stats().Connections == 0
	})
	if err != nil {
		close(release)
		t.Fatal(err)
	}
	again := dialWS(t, rig.urls[0], reg, nil, false)
	defer again.CloseNow()
	hello := hostile.Hello(reg, "raw")
	hello.Resume = &wire.Resume{ClientID: wel.ClientID, Token: wel.Token}
	welcomed := make(chan wire.Welcome, 1)
	failed := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := again.Write(ctx, websocket.MessageBinary, wire.AppendHello(nil, hello)); err != nil {
			failed <- err
			return
		}
		_, msg, err := again.Read(ctx)
		if err != nil {
			failed <- err
			return
		}
		kind, body, _, err := wire.Open(msg, nil)
		if err != nil || kind != wire.KindWelcome {
			failed <- fmt.Errorf("welcome: kind %v, err %v", kind, err)
			return
		}
		w, err := wire.DecodeWelcome(body)
		if err != nil {
			failed <- err
			return
		}
		welcomed <- w
	}()
	var deliver func() []byte
	select {
	case deliver = <-held:
		held <- deliver // the hook on the envelope takes it
	case err := <-failed:
		close(release)
		t.Fatal(err)
	case <-time.After(5 * time.Second):
		close(release)
		t.Fatal("the resume's join did not reach the transport")
	}
	close(release)
	var w wire.Welcome
	select {
	case w = <-welcomed:
	case err := <-failed:
		t.Fatal(err)
	case <-time.After(10 * time.Second):
		t.Fatal("no Welcome for the resume")
	}
	if !w.Resumed || w.ClientID != wel.ClientID {
		t.Fatalf("the client did not resume its session: Welcome %+v", w)
	}
	st := rig.h.srv.Stats()
	// Past the window, the session is still served.
	for deadline := time.Now().Add(3 * window); time.Now().Before(deadline); {
		rig.h.ticks(1)
		st = rig.h.srv.Stats()
		if st.RemoteParked != 0 || game.departures(wel.ClientID) != 0 {
			break
		}
	}
	if st.RemoteClients != 1 || st.RemoteParked != 0 || game.departures(wel.ClientID) != 0 {
		t.Fatalf("after the quick resume: remote clients %d, parked %d, OnDisconnect ran %d times; want 1, 0, 0",
			st.RemoteClients, st.RemoteParked, game.departures(wel.ClientID))
	}
	if _, ok := game.seen.find(&game.seen.resumed, wel.ClientID); !ok {
		t.Fatal("the simulation ran no OnResume")
	}
}

// TestInspectorListsRemoteClients: the simulation's Inspector lists the
// clients its gateways serve, each with its gateway's name and mode
// "gateway", and a client whose gateway let it go as parked.
func TestInspectorListsRemoteClients(t *testing.T) {
	rr := newRemoteReg()
	reg := rr.reg
	game := newRemoteGame()
	var rig *remoteRig
	rig = newRemoteRig(t, reg, 2, game.options(func() donburi.World { return rig.h.w }, &plugin.Options{Authenticate: userFromHeader}),
		&plugin.Options{DefaultRadius: 300, MaxRadius: 600, Authenticate: userFromHeader})
	defer rig.close()
	insp := rig.h.srv.Inspector(&plugin.InspectorOptions{
		Authenticate: plugin.StaticToken(inspectorToken, plugin.Identity{User: "ops"}),
		Interval:     50 * time.Millisecond,
	})
	its := httptest.NewServer(insp)
	defer its.Close()
	type conn struct {
		ID       uint64 `json:"id"`
		User     string `json:"user"`
		Gateway  string `json:"gateway"`
		Parked   bool   `json:"parked"`
		Interest struct {
			Mode string `json:"mode"`
		} `json:"interest"`
	}
	var server struct {
		Gateways      int `json:"gateways"`
		RemoteClients int `json:"remoteClients"`
	}
	state := func() []conn {
		req, _ := http.NewRequest(http.MethodGet, its.URL+"/api/state", nil)
		req.Header.Set("Authorization", "Bearer "+inspectorToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var st struct {
			Connections []conn `json:"connections"`
			Server      *struct {
				Gateways      int `json:"gateways"`
				RemoteClients int `json:"remoteClients"`
			} `json:"server"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
			t.Fatal(err)
		}
		if st.Server != nil {
			server = *st.Server
		}
		return st.Connections
	}
	alice, wa := handshakeAs(t, rig.urls[0], reg, "alice", nil)
	defer alice.CloseNow()
	bob, wb := handshakeAs(t, rig.urls[1], reg, "bob", nil)
	defer bob.CloseNow()
	want := map[uint64]conn{
		wa.ClientID: {ID: wa.ClientID, User: "alice", Gateway: rig.gws[0].GatewayName()},
		wb.ClientID: {ID: wb.ClientID, User: "bob", Gateway: rig.gws[1].GatewayName()},
	}
	var got []conn
	listed := func(parked uint64) bool {
		got = state()
		live := len(want)
		if parked != 0 {
			live--
		}
		if len(got) != len(want) || server.Gateways != 2 || server.RemoteClients != live {
			return false
		}
		for _, c := range got {
			w, ok := want[c.ID]
			if !ok || c.User != w.User || c.Gateway != w.Gateway || c.Interest.Mode != "gateway" || c.Parked != (c.ID == parked) {
				return false
			}
		}
		return true
	}
	if err := testutil.WaitUntil(5*time.Second, func() string {
		return fmt.Sprintf("the Inspector to list both remote clients on 2 gateways: %+v, %+v", got, server)
	}, func() bool { return listed(0) }); err != nil {
		t.Fatal(err)
	}
	// Once bob's gateway has taken its connection in, a drop keeps its
	// session there, and the simulation parks it. (A connection that ends
	// before its gateway's tick took it in leaves no session to keep.)
	testutil.Eventually(t, 5*time.Second, "bob's gateway to take its connection in", func() bool { return rig.gws[1].Stats().Clients == 1 })
	bob.CloseNow()
	if err := testutil.WaitUntil(5*time.Second, func() string {
		return fmt.Sprintf("the Inspector to list bob as parked: %+v, %+v", got, server)
	}, func() bool { return listed(wb.ClientID) }); err != nil {
		t.Fatal(err)
	}
}
