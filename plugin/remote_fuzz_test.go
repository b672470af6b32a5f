package plugin_test

import (
	"bytes"
	"fmt"
	mrand "math/rand/v2"
	"runtime/debug"
	"slices"
	"testing"
	"time"

	"github.com/yohamta/donburi"

	"github.com/ebisync/ebisync"
	"github.com/ebisync/ebisync/internal/testutil"
	"github.com/ebisync/ebisync/internal/wire"
	"github.com/ebisync/ebisync/netclient"
	"github.com/ebisync/ebisync/plugin"
)

// Targets of a remote payload (payloadRig.run).
const (
	toRemoteJoin     = 0 // the simulation's RemoteJoin
	toRemoteRequests = 1 // the simulation's RemoteRequests
	toFeedReplies0   = 2 // gateway 0's FeedReplies
	toFeedReplies1   = 3 // gateway 1's FeedReplies
	payloadTargets   = 4
)

// payloadRig is a simulation with two forwarding gateways and raw clients
// on both, and the payloads a real run carried between them: a join of
// each kind, requests envelopes of every record, and relay envelopes of
// every answer. Payloads are kept with placeholders for what each rig
// draws at random (the gateways' names, the session tokens), so that an
// input found in one process means the same in another; run puts this
// rig's values in.
type payloadRig struct {
	rr      *remoteReg
	game    *remoteGame
	rig     *remoteRig
	log     *payloadLog
	tokens  map[uint64][wire.TokenLen]byte // by client id
	clients []*rawClient                   // kept connected by replenish
	at      []int                          // the gateway of each client
	seeds   []payloadSeed
}

type payloadSeed struct {
	target uint8
	data   []byte
}

// gatewayPlaceholder stands for gateway i's name: as long as the name, so
// that the payloads' lengths stay right.
func (p *payloadRig) gatewayPlaceholder(i int) []byte {
	return []byte(fmt.Sprintf("%-*s", len(p.rig.gws[i].GatewayName()), fmt.Sprintf("{gateway %d}", i)))
}

// tokenPlaceholder stands for the session token of client id.
func tokenPlaceholder(id uint64) []byte {
	return []byte(fmt.Sprintf("%-*s", wire.TokenLen, fmt.Sprintf("{token %d}", id)))
}

// newPayloadRig starts the rig and records the payloads of a run that
// exercises every record: joins fresh and resumed, mutations answered Ok,
// Forbidden and NotFound, a control take, a chat, inputs acknowledged,
// messages to one client, to all and to an entity's viewers, a session
// moved to the other gateway (whose first gateway is told to close its
// connection), and a client that vanished (left resumably, then for good).
func newPayloadRig(t testing.TB) *payloadRig {
	t.Helper()
	const window = 100 * time.Millisecond
	p := &payloadRig{rr: newRemoteReg(), game: newRemoteGame(), tokens: map[uint64][wire.TokenLen]byte{}}
	reg := p.rr.reg
	p.rig, p.log, _ = newRecRig(t, reg, 2, p.game.options(func() donburi.World { return p.rig.h.w }, &plugin.Options{ResumeWindow: window, GatewayTimeout: time.Second}),
		&plugin.Options{DefaultRadius: 300, MaxRadius: 600, ResumeWindow: window})
	h := p.rig.h
	h.do(func(donburi.World) {
		plugin.HandleInput(h.srv, p.rr.move, moveStep)
		plugin.Handle(h.srv, p.rr.chat, func(plugin.ClientInfo, chatMsg) error { return nil })
	})
	dial := func(gw int) *rawClient {
		rc := dialRaw(t, p.rig.urls[gw], reg, true)
		p.tokens[rc.wel.ClientID] = rc.wel.Token
		rc.subscribeAll()
		return rc
	}
	a, b, c := dial(0), dial(0), dial(1)
	shipA := p.game.ship(t, h, a.wel.ClientID)
	shipB := p.game.ship(t, h, b.wel.ClientID)
	p.game.ship(t, h, c.wel.ClientID)

	gone := shipA
	gone.NetID += 5000
	a.send(p.rr.mutateScore(1, shipA, 3))
	a.send(wire.AppendControl(nil, &wire.Control{Request: 2, Op: wire.ControlTake, ID: uint64(shipA.NetID), Gen: uint64(shipA.Gen), TimeoutMs: 60000}))
	a.send(p.rr.mutateScore(3, shipB, 3))
	a.send(p.rr.mutateScore(4, gone, 3))
	a.send(p.rr.chatMessage(5, "hello"))
	for seq := uint64(1); seq <= 3; seq++ {
		a.send(p.rr.moveInput(seq, shipA))
	}
	testutil.Eventually(t, 5*time.Second, "the answers to every request", func() bool {
		res, ctl := a.results(), a.controlReplies()
		_, ok2 := ctl[2]
		return len(res) == 4 && ok2 && slices.Contains(acks(a), 3)
	})
	if res := a.results(); res[1].Status != wire.StatusOk || res[3].Status != wire.StatusForbidden || res[4].Status != wire.StatusNotFound || res[5].Status != wire.StatusOk {
		t.Fatalf("the run's answers are not the expected ones: %+v", res)
	}

	h.do(func(w donburi.World) {
		p.game.mu.Lock()
		e := p.game.ships[a.wel.ClientID]
		p.game.mu.Unlock()
		plugin.Send(h.srv, a.wel.ClientID, p.rr.hit, hitMsg{Victim: e, Damage: 1})
		plugin.Broadcast(h.srv, p.rr.hit, hitMsg{Victim: e, Damage: 2})
		plugin.SendToViewers(h.srv, e, p.rr.hit, hitMsg{Victim: e, Damage: 3})
	})
	testutil.Eventually(t, 5*time.Second, "the simulation's messages", func() bool {
		_, bodies, _ := a.snapshot()
		n := 0
		for _, b := range bodies {
			n += len(b.Messages)
		}
		return n >= 3
	})

	// B's session moves to gateway 1: gateway 0 is told to close B.
	ws, wel := handshakeAs(t, p.rig.urls[1], reg, "", &wire.Resume{ClientID: b.wel.ClientID, Token: b.wel.Token})
	d := &rawClient{t: t, ws: ws, reg: reg, wel: wel, done: make(chan struct{})}
	go d.readLoop()
	if !wel.Resumed {
		t.Fatalf("the resume at the other gateway was refused: %+v", wel)
	}
	testutil.Eventually(t, 5*time.Second, "gateway 0 to close the session that moved", func() bool {
		_, _, err := b.snapshot()
		return err != nil
	})
	b.close()

	// E vanishes once its gateway serves it (its mutation answered): the
	// gateway leaves resumably, then for good.
	e := dial(0)
	e.send(p.rr.mutateScore(1, p.game.ship(t, h, e.wel.ClientID), 4))
	testutil.Eventually(t, 5*time.Second, "the answer to the mutation of the client that vanishes", func() bool {
		_, ok := e.results()[1]
		return ok
	})
	e.ws.CloseNow()
	<-e.done
	testutil.Eventually(t, 5*time.Second, "the vanished client's session to end", func() bool {
		return p.game.departures(e.wel.ClientID) > 0
	})

	p.clients = []*rawClient{a, dial(0), c, d}
	p.at = []int{0, 0, 1, 1}
	p.seeds = p.recorded()
	return p
}

// recorded returns the distinct payloads the log holds, with placeholders,
// at most 32 per target.
func (p *payloadRig) recorded() []payloadSeed {
	p.log.mu.Lock()
	defer p.log.mu.Unlock()
	var out []payloadSeed
	seen := map[string]bool{}
	per := map[uint8]int{}
	add := func(target uint8, data []byte) {
		data = p.abstract(data)
		key := string(append([]byte{target}, data...))
		if seen[key] || per[target] >= 32 {
			return
		}
		seen[key] = true
		per[target]++
		out = append(out, payloadSeed{target: target, data: data})
	}
	for _, j := range p.log.joins {
		add(toRemoteJoin, j.req)
	}
	for _, r := range p.log.requests {
		add(toRemoteRequests, r)
	}
	for _, r := range p.log.relays {
		if r.gateway == p.rig.gws[0].GatewayName() {
			add(toFeedReplies0, r.data)
		} else {
			add(toFeedReplies1, r.data)
		}
	}
	return out
}

// abstract puts placeholders for this rig's gateway names and tokens.
func (p *payloadRig) abstract(data []byte) []byte {
	data = bytes.Clone(data)
	for i, gw := range p.rig.gws {
		data = bytes.ReplaceAll(data, []byte(gw.GatewayName()), p.gatewayPlaceholder(i))
	}
	for id, tok := range p.tokens {
		data = bytes.ReplaceAll(data, tok[:], tokenPlaceholder(id))
	}
	return data
}

// concrete puts this rig's gateway names and tokens for the placeholders.
func (p *payloadRig) concrete(data []byte) []byte {
	for i, gw := range p.rig.gws {
		data = bytes.ReplaceAll(data, p.gatewayPlaceholder(i), []byte(gw.GatewayName()))
	}
	for id, tok := range p.tokens {
		data = bytes.ReplaceAll(data, tokenPlaceholder(id), tok[:])
	}
	return data
}

// replenish replaces the raw clients that a payload had closed.
func (p *payloadRig) replenish(t testing.TB) {
	for i, rc := range p.clients {
		select {
		case <-rc.done:
		default:
			continue
		}
		rc.ws.CloseNow()
		p.clients[i] = dialRaw(t, p.rig.urls[p.at[i]], p.rr.reg, true)
	}
}

// run hands data to target on the game goroutine, then ticks the
// simulation and both gateways twice. Nothing may panic, on the game
// goroutine or in a client's request path (which counts a panic and
// closes the client with 1011); a join is answered in its layout.
func (p *payloadRig) run(t testing.TB, target uint8, data []byte) {
	t.Helper()
	p.replenish(t)
	data = p.concrete(data)
	sim := p.rig.h.srv
	var rep []byte
	var panicked any
	var stack []byte
	before := sim.CurrentTick()
	p.rig.h.do(func(donburi.World) {
		defer func() {
			if v := recover(); v != nil {
				panicked, stack = v, debug.Stack()
			}
		}()
		switch target % payloadTargets {
		case toRemoteJoin:
			rep = sim.RemoteJoin(data)
		case toRemoteRequests:
			sim.RemoteRequests(data)
		case toFeedReplies0:
			p.rig.gws[0].FeedReplies(data)
		case toFeedReplies1:
			p.rig.gws[1].FeedReplies(data)
		}
		for range 2 {
			sim.Tick()
			for _, gw := range p.rig.gws {
				gw.Tick()
			}
		}
	})
	if panicked != nil {
		t.Fatalf("panic on the game goroutine: %v\n%s", panicked, stack)
	}
	if target%payloadTargets == toRemoteJoin {
		r, err := decodeJoinRep(rep)
		if err != nil || r.version != 1 || r.status > joinStatusRefused || (r.status == joinStatusRefused) != (r.id == 0) {
			t.Fatalf("the answer to a join is %x (%+v, %v)", rep, r, err)
		}
		if req, err := decodeJoinReq(data); r.status == joinStatusResumed && (err != nil || !req.resume || req.id != r.id) {
			t.Fatalf("a join resumed client %d, which it did not name (%+v, %v)", r.id, req, err)
		}
	}
	if sim.CurrentTick() < before+2 {
		t.Fatalf("the simulation is at tick %d after two ticks from %d", sim.CurrentTick(), before)
	}
	for i, srv := range append([]*plugin.Server{sim}, p.rig.gws...) {
		if n := srv.Stats().Refusals[plugin.RefusedPanic]; n != 0 {
			t.Fatalf("server %d counted %d panics while handling requests", i, n)
		}
	}
}

func (p *payloadRig) close() {
	for _, rc := range p.clients {
		rc.ws.CloseNow()
		<-rc.done
	}
	p.rig.close()
}

// payloadTruncations returns prefixes of data: its first bytes, its
// halves and all but its last byte.
func payloadTruncations(data []byte) [][]byte {
	var out [][]byte
	seen := map[int]bool{}
	for _, n := range []int{0, 1, 2, len(data) / 3, len(data) / 2, len(data) - 1} {
		if n >= 0 && n < len(data) && !seen[n] {
			seen[n] = true
			out = append(out, data[:n])
		}
	}
	return out
}

// FuzzRemotePayloads hands arbitrary bytes to a simulation's RemoteJoin
// and RemoteRequests and to a gateway's FeedReplies, then ticks the
// simulation and its gateways: nothing panics, a join is answered in its
// layout, and the Servers tick on. It starts from the payloads of a real
// run and their truncations. TestRemoteHostilePayloads checks that
// clients are served well after such payloads.
func FuzzRemotePayloads(f *testing.F) {
	p := newPayloadRig(f)
	defer p.close()
	for _, s := range p.seeds {
		f.Add(s.target, s.data)
		for _, tr := range payloadTruncations(s.data) {
			f.Add(s.target, tr)
		}
	}
	f.Fuzz(func(t *testing.T, target uint8, data []byte) {
		p.run(t, target, data)
	})
}

// TestRemoteHostilePayloads hands a simulation and its gateways the
// payloads of a real run cut at many lengths, with bytes flipped, and
// random bytes; then, within GatewayTimeout and ResumeWindow, the
// simulation hears only from its two gateways and keeps no parked
// session, nothing panicked, and a new client at each gateway has its own
// ship's mutation answered Ok and applied.
func TestRemoteHostilePayloads(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := mrand.New(mrand.NewPCG(seed, 31))
	p := newPayloadRig(t)
	defer p.close()
	if len(p.seeds) < 10 {
		t.Fatalf("the run recorded %d payloads: the test is not testing", len(p.seeds))
	}
	targets := map[uint8]int{}
	for _, s := range p.seeds {
		targets[s.target]++
	}
	if len(targets) != payloadTargets {
		t.Fatalf("payloads recorded by target: %v, want each of the %d", targets, payloadTargets)
	}
	n := 0
	for _, s := range p.seeds {
		p.run(t, s.target, s.data)
		step := max(1, len(s.data)/24)
		for cut := 0; cut < len(s.data); cut += step {
			p.run(t, s.target, s.data[:cut])
		}
		for range 12 {
			b := bytes.Clone(s.data)
			for range 1 + rng.IntN(3) {
				if len(b) > 0 {
					b[rng.IntN(len(b))] = byte(rng.Uint32())
				}
			}
			p.run(t, s.target, b)
		}
		n += 13 + len(s.data)/step
	}
	for target := range uint8(payloadTargets) {
		for range 16 {
			b := make([]byte, rng.IntN(64))
			for i := range b {
				b[i] = byte(rng.Uint32())
			}
			if len(b) > 0 && rng.IntN(2) == 0 {
				b[0] = 1 // the version
			}
			p.run(t, target, b)
			n++
		}
	}
	t.Logf("%d payloads from %d recorded", n, len(p.seeds))

	sim := p.rig.h.srv
	testutil.Eventually(t, 10*time.Second, "the simulation to hear from its two gateways only, and keep no parked session", func() bool {
		st := sim.Stats()
		return st.Gateways == 2 && st.RemoteParked == 0
	})
	for i, srv := range append([]*plugin.Server{sim}, p.rig.gws...) {
		if n := srv.Stats().Refusals[plugin.RefusedPanic]; n != 0 {
			t.Fatalf("server %d counted %d panics", i, n)
		}
	}
	for i, url := range p.rig.urls {
		c := startClientLoop(t, url, p.rr.reg, nil)
		if err := c.c.SubscribeAll(); err != nil {
			t.Fatal(err)
		}
		if err := c.c.SetInterest(0, 0, 300); err != nil {
			t.Fatal(err)
		}
		id := c.c.ClientID()
		var mine donburi.Entity
		testutil.Eventually(t, 5*time.Second, "the new client's ship in its mirror", func() bool {
			c.do(func(donburi.World) {
				if owned := c.c.Owned(nil); len(owned) == 1 {
					mine = owned[0]
				}
			})
			return mine != donburi.Null
		})
		var res <-chan netclient.MutationResult
		c.do(func(donburi.World) { res = netclient.Mutate(c.c, mine, p.rr.points, scoreData{Points: 77}, nil) })
		if r := waitResult(t, c, res, "the new client's mutation"); r.Status != ebisync.Ok {
			c.close()
			t.Fatalf("a new client of gateway %d: its mutation was answered %v %q %v", i, r.Status, r.Message, r.Err)
		}
		got := p.game.points(p.rig.h, id)
		c.close()
		if got != 77 {
			t.Fatalf("a new client of gateway %d: its ship has %d points, want 77", i, got)
		}
	}
}
