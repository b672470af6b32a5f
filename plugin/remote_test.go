package plugin_test

import (
	"context"
	"net"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/yohamta/donburi"

	"github.com/ebisync/ebisync"
	"github.com/ebisync/ebisync/components"
	"github.com/ebisync/ebisync/internal/testutil"
	"github.com/ebisync/ebisync/netclient"
	"github.com/ebisync/ebisync/plugin"
)

// relayBus is a memBus that also carries its gateway's clients to the
// simulation and back, in process: the gateway's Upstream.
type relayBus struct{ *memBus }

func (b relayBus) server() *plugin.Server {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.sim
}

func (b relayBus) Join(ctx context.Context, req []byte) ([]byte, error) {
	return b.server().RemoteJoin(req), nil
}

func (b relayBus) Requests(data []byte) { b.server().RemoteRequests(slices.Clone(data)) }

// relayHub is a simulation's Publisher and Relay over the buses of its
// gateways.
type relayHub struct {
	mu    sync.Mutex
	buses []relayBus
	down  map[string]bool // gateways whose relays are lost
}

func (h *relayHub) Chunk(c plugin.Chunk) {
	for _, b := range h.buses {
		b.Chunk(c)
	}
}

func (h *relayHub) TickEnd(tick uint64, n int) {
	for _, b := range h.buses {
		b.TickEnd(tick, n)
	}
}

func (h *relayHub) Relay(gateway string, data []byte) {
	h.mu.Lock()
	lost := h.down[gateway]
	h.mu.Unlock()
	for _, b := range h.buses {
		if !lost && b.gw.GatewayName() == gateway {
			b.gw.FeedReplies(slices.Clone(data))
		}
	}
}

// remoteRig is a simulation and n gateways that forward their clients to
// it, in process; the gateways tick after each tick of the simulation.
type remoteRig struct {
	h    *harness
	hub  *relayHub
	gws  []*plugin.Server
	ts   []*httptest.Server
	lns  []*connTracker
	urls []string

	mu    sync.Mutex
	alive []bool
}

func newRemoteRig(t *testing.T, reg *components.Registry, n int, simOpts, gwOpts *plugin.Options) *remoteRig {
	t.Helper()
	const cell = 250.0
	r := &remoteRig{hub: &relayHub{down: map[string]bool{}}}
	for range n {
		bus := relayBus{&memBus{cells: map[plugin.Cell]bool{}}}
		o := *gwOpts
		if o.Logger == nil {
			o.Logger = quietLogger()
		}
		gw := plugin.NewGateway(reg, cell, bus, &o)
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
	simOpts.Publish, simOpts.PublishCellSize = r.hub, cell
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
	return r
}

// kill stops gateway i as a crash would: it ticks no more, its relays are
// lost, its listener and every connection it accepted are cut without a
// close frame.
func (r *remoteRig) kill(i int) {
	r.mu.Lock()
	r.alive[i] = false
	r.mu.Unlock()
	r.hub.mu.Lock()
	r.hub.down[r.gws[i].GatewayName()] = true
	r.hub.mu.Unlock()
	r.lns[i].cut()
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

func (l *connTracker) cut() {
	_ = l.Listener.Close()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range l.conns {
		_ = c.Close()
	}
}

func (r *remoteRig) close() {
	r.h.close()
	for i, gw := range r.gws {
		_ = gw.Close()
		r.ts[i].Close()
	}
}

// infos records the ClientInfo of the simulation's hooks.
type infos struct {
	mu                  sync.Mutex
	connected, departed []plugin.ClientInfo
	resumed             []plugin.ClientInfo
}

func (in *infos) find(list *[]plugin.ClientInfo, id uint64) (plugin.ClientInfo, bool) {
	in.mu.Lock()
	defer in.mu.Unlock()
	for _, ci := range *list {
		if ci.ID == id {
			return ci, true
		}
	}
	return plugin.ClientInfo{}, false
}

// waitResult waits for a request's answer on p's game goroutine.
func waitResult[R any](t *testing.T, p *clientLoop, ch <-chan R, what string) R {
	t.Helper()
	var got R
	done := false
	testutil.Eventually(t, 5*time.Second, what, func() bool {
		p.do(func(donburi.World) {
			select {
			case got = <-ch:
				done = true
			default:
			}
		})
		return done
	})
	return got
}

// TestGatewayForwardsRequests: a client of a gateway is a client of the
// simulation. The simulation's OnConnect sees it with its gateway's name
// and spawns its ship; its mutations and control requests are authorised
// by ownership there (its own ship Ok, another's Forbidden); its messages
// reach the simulation's handler with its identity; the simulation's
// messages reach it (to it, to everyone, to the viewers of its ship),
// naming its ship; its inputs steer the ship and are acknowledged; and
// when it leaves, the simulation's OnDisconnect runs.
func TestGatewayForwardsRequests(t *testing.T) {
	reg, chat, hit := msgRegistry()
	move := components.RegisterMessage[moveIn](reg, "test.move", &components.MessageOptions{FromClient: true})
	points := components.Register(reg, "test.score", score, &components.Options{ClientWritable: true})
	var seen infos
	var rig *remoteRig
	var shipMu sync.Mutex
	ships := map[uint64]donburi.Entity{}
	rig = newRemoteRig(t, reg, 1, &plugin.Options{
		OnConnect: func(ci plugin.ClientInfo) {
			seen.mu.Lock()
			seen.connected = append(seen.connected, ci)
			seen.mu.Unlock()
			w := rig.h.w
			e := w.Create(components.Replicated, components.Position, score, components.Owner)
			components.Position.SetValue(w.Entry(e), components.PositionData{X: 10, Y: 10})
			score.SetValue(w.Entry(e), scoreData{Points: 5})
			components.Owner.SetValue(w.Entry(e), components.OwnerData{Client: ci.ID})
			shipMu.Lock()
			ships[ci.ID] = e
			shipMu.Unlock()
		},
		OnDisconnect: func(ci plugin.ClientInfo) {
			seen.mu.Lock()
			seen.departed = append(seen.departed, ci)
			seen.mu.Unlock()
		},
	}, &plugin.Options{DefaultRadius: 300, MaxRadius: 600})
	defer rig.close()
	var chats []plugin.ClientInfo
	var chatMu sync.Mutex
	rig.h.do(func(donburi.World) {
		plugin.Handle(rig.h.srv, chat, func(ci plugin.ClientInfo, v chatMsg) error {
			chatMu.Lock()
			chats = append(chats, ci)
			chatMu.Unlock()
			return nil
		})
		plugin.HandleInput(rig.h.srv, move, moveStep)
	})
	var other donburi.Entity
	rig.h.do(func(w donburi.World) {
		other = w.Create(components.Replicated, components.Position, score, components.Owner)
		components.Position.SetValue(w.Entry(other), components.PositionData{X: 20, Y: 20})
		score.SetValue(w.Entry(other), scoreData{Points: 5})
		components.Owner.SetValue(w.Entry(other), components.OwnerData{Client: 999})
	})

	p := startClientLoop(t, rig.urls[0], reg, nil)
	left := false
	defer func() {
		if !left {
			p.close()
		}
	}()
	var got hits
	got.listen(p, hit)
	var pred *netclient.Predictor[moveIn]
	p.do(func(donburi.World) { pred = netclient.Predict(p.c, move, moveStep) })
	if err := p.c.SubscribeAll(); err != nil {
		t.Fatal(err)
	}
	if err := p.c.SetInterest(0, 0, 300); err != nil {
		t.Fatal(err)
	}
	id := p.c.ClientID()
	ci, ok := seen.find(&seen.connected, id)
	testutil.Eventually(t, 5*time.Second, "the simulation's OnConnect", func() bool {
		ci, ok = seen.find(&seen.connected, id)
		return ok
	})
	if ci.Gateway != rig.gws[0].GatewayName() || ci.Gateway == "" {
		t.Fatalf("OnConnect saw gateway %q, want %q", ci.Gateway, rig.gws[0].GatewayName())
	}
	testutil.Eventually(t, 5*time.Second, "the simulation's stats counting the gateway's client", func() bool {
		st := rig.h.srv.Stats()
		return st.Gateways == 1 && st.RemoteClients == 1 && st.Clients == 0
	})

	// The client's own ship and the other, in its mirror.
	var mine, theirs donburi.Entity
	testutil.Eventually(t, 5*time.Second, "both ships in the mirror", func() bool {
		p.do(func(w donburi.World) {
			var owned []donburi.Entity
			owned = p.c.Owned(owned)
			if len(owned) == 1 {
				mine = owned[0]
			}
			for _, a := range w.Archetypes() {
				if !a.Layout().HasComponent(components.Owner) {
					continue
				}
				for _, e := range a.Entities() {
					if components.Owner.Get(w.Entry(e)).Client == 999 {
						theirs = e
					}
				}
			}
		})
		return mine != donburi.Null && theirs != donburi.Null
	})

	var res <-chan netclient.MutationResult
	p.do(func(donburi.World) { res = netclient.Mutate(p.c, mine, points, scoreData{Points: 2}, nil) })
	if r := waitResult(t, p, res, "the own ship's mutation"); r.Status != ebisync.Ok {
		t.Fatalf("mutating the own ship: %v %q %v", r.Status, r.Message, r.Err)
	}
	shipMu.Lock()
	ship := ships[id]
	shipMu.Unlock()
	rig.h.do(func(w donburi.World) {
		if v := score.Get(w.Entry(ship)).Points; v != 2 {
			t.Errorf("the simulation's ship has %d points after the client's mutation, want 2", v)
		}
	})
	p.do(func(donburi.World) { res = netclient.Mutate(p.c, theirs, points, scoreData{Points: 1}, nil) })
	if r := waitResult(t, p, res, "the other ship's mutation"); r.Status != ebisync.Forbidden {
		t.Fatalf("mutating another's ship: %v %q %v, want Forbidden", r.Status, r.Message, r.Err)
	}

	var ctl <-chan netclient.ControlResult
	p.do(func(donburi.World) { ctl = p.c.TakeControl(theirs, 0, false) })
	if r := waitResult(t, p, ctl, "the control of another's ship"); r.Status != netclient.ControlForbidden {
		t.Fatalf("taking another's ship: %v, want ControlForbidden", r.Status)
	}
	p.do(func(donburi.World) { ctl = p.c.TakeControl(mine, time.Minute, false) })
	if r := waitResult(t, p, ctl, "the control of the own ship"); r.Status != netclient.ControlTaken || r.Holder != id {
		t.Fatalf("taking the own ship: %v holder %d, want taken by %d", r.Status, r.Holder, id)
	}

	if r := sendChat(t, p, chat, chatMsg{Text: "hello", About: mine}); r.Status != ebisync.Ok {
		t.Fatalf("a chat: %v %q %v", r.Status, r.Message, r.Err)
	}
	chatMu.Lock()
	last := chats[len(chats)-1]
	chatMu.Unlock()
	if last.ID != id || last.Gateway != ci.Gateway {
		t.Fatalf("the handler saw client %d at %q, want %d at %q", last.ID, last.Gateway, id, ci.Gateway)
	}

	rig.h.do(func(donburi.World) {
		if !plugin.Send(rig.h.srv, id, hit, hitMsg{Victim: ship, Damage: 7}) {
			t.Error("Send to a gateway's client reported no such client")
		}
		if n := plugin.Broadcast(rig.h.srv, hit, hitMsg{Victim: ship, Damage: 8}); n != 1 {
			t.Errorf("Broadcast counted %d clients, want 1", n)
		}
		plugin.SendToViewers(rig.h.srv, ship, hit, hitMsg{Victim: ship, Damage: 9})
	})
	testutil.Eventually(t, 5*time.Second, "the three messages", func() bool { return len(got.damages()) >= 3 })
	if d := got.damages(); !slices.Equal(d, []int32{7, 8, 9}) {
		t.Fatalf("the client got damages %v, want [7 8 9] in order", d)
	}
	if v, live := got.last(); !live || v.Victim != mine {
		t.Fatalf("a relayed message names %v (live %v), want the client's own ship %v", v.Victim, live, mine)
	}

	// Inputs steer the ship on the simulation, and are acknowledged.
	var startX float64
	rig.h.do(func(w donburi.World) { startX = components.Position.Get(w.Entry(ship)).X })
	p.do(func(donburi.World) {
		for n := uint64(1); n <= 5; n++ {
			if err := pred.Input(mine, moveIn{DX: 1, N: n}); err != nil {
				t.Error(err)
			}
		}
	})
	testutil.Eventually(t, 5*time.Second, "the inputs applied and acknowledged", func() bool {
		var x float64
		rig.h.do(func(w donburi.World) { x = components.Position.Get(w.Entry(ship)).X })
		return x == startX+5 && p.c.Stats().PendingInputs == 0
	})

	// The client leaves for good: the simulation ends its session.
	left = true
	p.close()
	testutil.Eventually(t, 5*time.Second, "the simulation's OnDisconnect", func() bool {
		_, ok := seen.find(&seen.departed, id)
		return ok
	})
	rig.h.do(func(w donburi.World) {
		if w.Entry(ship).HasComponent(components.Control) && components.Control.Get(w.Entry(ship)).Client != 0 {
			t.Error("the departed client still controls its ship")
		}
	})
}
