package main

import (
	"context"
	"math"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/yohamta/donburi"
	"github.com/yohamta/donburi/filter"
	"go.uber.org/goleak"

	"github.com/ebisync/ebisync/components"
	"github.com/ebisync/ebisync/demo/internal/scaleout"
	"github.com/ebisync/ebisync/demo/sim"
	"github.com/ebisync/ebisync/internal/testutil"
	"github.com/ebisync/ebisync/netclient"
)

// gamer is a demo player in a test: a client and its Pilot, whose game
// loop is the test goroutine.
type gamer struct {
	name string
	c    *netclient.Client
	p    *sim.Pilot
}

// dialGamer connects a player named name to url.
func dialGamer(ctx context.Context, t *testing.T, url, name string) *gamer {
	t.Helper()
	c, err := netclient.Dial(ctx, url, sim.NewRegistry(), &netclient.Options{Name: name})
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.SubscribeAll(); err != nil {
		t.Fatal(err)
	}
	return &gamer{name: name, c: c, p: sim.NewPilot(c, 600, nil)}
}

// play runs the gamers' frames at 60 Hz, as the window client does: each
// client's Update, its Pilot's, then act (nil: nothing), until cond holds.
func play(t *testing.T, what string, act func(), cond func() bool, gamers ...*gamer) {
	t.Helper()
	tk := time.NewTicker(time.Second / 60)
	defer tk.Stop()
	deadline := time.After(30 * time.Second)
	for {
		for _, g := range gamers {
			if err := g.c.Update(); err != nil {
				t.Fatalf("Update: %v", err)
			}
			g.p.Update()
		}
		if act != nil {
			act()
		}
		if cond() {
			return
		}
		select {
		case <-tk.C:
		case <-deadline:
			t.Fatalf("timed out after 30s waiting for %s", what)
		}
	}
}

// shipOf returns the ship of client id in w, or false.
func shipOf(w donburi.World, id uint64) (*donburi.Entry, bool) {
	for e := range donburi.NewQuery(filter.Contains(components.Owner, sim.Ship)).Iter(w) {
		if components.Owner.Get(e).Client == id && sim.Ship.Get(e).Kind == sim.KindPlayer {
			return e, true
		}
	}
	return nil, false
}

// TestRunGateways: with -gateways 3 the server starts an embedded NATS
// server and three gateways on ports of their own, and the game is
// playable through them. A client of a gateway gets its own ship from the
// simulation (the demo's OnConnect: named after the client, with its shield
// orb) and mirrors the asteroids and drones around it. A player on gateway
// 1 flies its ship with predicted inputs, as the window client does; a
// player on gateway 2 steers its ship with mutations of its Steer, as the
// bots do: a client of gateway 3 sees both ships move forward, and the
// inputs are acknowledged and the mutation answered Ok. At exit everything
// stops: no goroutine is left.
func TestRunGateways(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	var out testutil.SyncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-listen", "127.0.0.1:0", "-entities", "400", "-tick", "60", "-stats", "50ms", "-gateways", "3"}, &out)
	}()
	simURL := out.Await(t, time.Minute, regexp.MustCompile(`listening on (ws://\S+/sync)`))[1]
	m := out.Await(t, time.Minute, regexp.MustCompile(`gateway 1 listening on (ws://\S+/sync)\ngateway 2 listening on (ws://\S+/sync)\ngateway 3 listening on (ws://\S+/sync)\n`))
	urls := m[1:]
	// The lines after the gateways' are printed once they all listen.
	out.Await(t, time.Minute, regexp.MustCompile(`more gateways: go run \./demo/gateway -nats nats://127\.0\.0\.1:\d+`))
	seen := map[string]bool{simURL: true}
	for _, u := range urls {
		if seen[u] {
			t.Fatalf("gateways at %v beside the simulation at %s: not each on its own port", urls, simURL)
		}
		seen[u] = true
	}
	for _, want := range []string{`publishing on NATS nats://127.0.0.1:`, `(embedded), world "demo", cell 600`,
		"play on any gateway or on " + simURL, "more gateways: go run ./demo/gateway -nats nats://127.0.0.1:"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}

	dctx, dcancel := context.WithTimeout(ctx, 10*time.Second)
	defer dcancel()
	flyer := dialGamer(dctx, t, urls[0], "flyer")
	steerer := dialGamer(dctx, t, urls[1], "steerer")
	watcher := dialGamer(dctx, t, urls[2], "watcher")
	world := (&sim.Config{}).Defaults()
	// The watcher looks at the centre, where the players spawn, as far as
	// a gateway lets it; it does not follow its own ship.
	if err := watcher.c.SetInterest(world.Width/2, world.Height/2, 1200); err != nil {
		t.Fatal(err)
	}
	players := []*gamer{flyer, steerer, watcher}
	found := func(g *gamer) bool { _, ok := g.p.Ship(); return ok }
	play(t, "the players' own ships", nil, func() bool { return found(flyer) && found(steerer) }, players...)
	for _, g := range []*gamer{flyer, steerer} {
		e, _ := g.p.Ship()
		entry := g.c.World().Entry(e)
		if id := components.Owner.Get(entry).Client; id != g.c.ClientID() || id == 0 {
			t.Fatalf("the pilot took a ship owned by %d, its client is %d", id, g.c.ClientID())
		}
		if got := components.Name.Get(entry).Value; got != g.name {
			t.Fatalf("the own ship is named %q, want %q", got, g.name)
		}
	}
	ships := donburi.NewQuery(filter.Contains(components.Position, sim.Ship))
	kinds := map[uint8]int{}
	play(t, "the flyer to mirror asteroids, drones and its ship's orb", nil, func() bool {
		clear(kinds)
		for e := range ships.Iter(flyer.c.World()) {
			kinds[sim.Ship.Get(e).Kind]++
		}
		return kinds[sim.KindAsteroid] > 0 && kinds[sim.KindDrone] > 0 && kinds[sim.KindPlayer] >= 1 && kinds[sim.KindOrb] >= 1
	}, players...)

	// forward returns how far the watcher saw client id's ship go along
	// its heading since the position start.
	forward := func(id uint64, start components.PositionData, heading float64) float64 {
		e, ok := shipOf(watcher.c.World(), id)
		if !ok {
			return 0
		}
		p := components.Position.Get(e)
		return (p.X-start.X)*math.Cos(heading) + (p.Y-start.Y)*math.Sin(heading)
	}
	// where waits until the watcher mirrors client id's ship, and returns
	// its position and heading there.
	where := func(id uint64) (components.PositionData, float64) {
		var e *donburi.Entry
		play(t, "the watcher to see the ship of client "+strconv.FormatUint(id, 10), nil, func() bool {
			var ok bool
			e, ok = shipOf(watcher.c.World(), id)
			return ok
		}, players...)
		return *components.Position.Get(e), float64(sim.Heading.Get(e).Angle)
	}

	// The window client's way: a predicted input a frame, full thrust.
	start, heading := where(flyer.c.ClientID())
	play(t, "the flyer's inputs to move its ship, as the watcher sees it", func() { flyer.p.Fly(sim.SteerData{Thrust: 100}) },
		func() bool { return forward(flyer.c.ClientID(), start, heading) > 100 }, players...)
	play(t, "the flyer's inputs acknowledged", nil, func() bool { return flyer.c.Stats().PendingInputs == 0 }, players...)
	t.Logf("the flyer sent %d inputs through gateway 1; the watcher saw its ship go %.0f units forward",
		flyer.p.Inputs, forward(flyer.c.ClientID(), start, heading))

	// The bots' way: a mutation of the ship's Steer, which the
	// simulation's Step follows.
	start, heading = where(steerer.c.ClientID())
	steerer.p.Steer(sim.SteerData{Thrust: 100})
	play(t, "the steerer's mutation to move its ship, as the watcher sees it", nil,
		func() bool { return forward(steerer.c.ClientID(), start, heading) > 100 }, players...)
	e, _ := steerer.p.Ship()
	if st := sim.Steer.Get(steerer.c.World().Entry(e)); steerer.p.Sent != 1 || steerer.p.Refused != 0 || st.Thrust != 100 {
		t.Fatalf("the steerer sent %d mutations, %d refused; its ship's Steer is %+v", steerer.p.Sent, steerer.p.Refused, *st)
	}
	t.Logf("the steerer's mutation through gateway 2 moved its ship %.0f units forward", forward(steerer.c.ClientID(), start, heading))
	for i := 1; i <= 3; i++ {
		out.Await(t, time.Minute, regexp.MustCompile(`gateway `+strconv.Itoa(i)+`: clients 1, cells followed [1-9]`))
	}

	for _, g := range players {
		g.c.Close()
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	if s := out.String(); !strings.HasSuffix(s, "server stopped\n") {
		t.Errorf("output does not end with the stop:\n%s", s)
	}
}

func TestGatewayAddrs(t *testing.T) {
	for _, tc := range []struct {
		listen string
		n      int
		want   string
	}{
		{"127.0.0.1:8080", 3, "127.0.0.1:8081 127.0.0.1:8082 127.0.0.1:8083"},
		{":8080", 1, ":8081"},
		{"127.0.0.1:0", 2, "127.0.0.1:0 127.0.0.1:0"},
		{"[::1]:9000", 1, "[::1]:9001"},
	} {
		got, err := gatewayAddrs(tc.listen, tc.n)
		if err != nil || strings.Join(got, " ") != tc.want {
			t.Errorf("gatewayAddrs(%q, %d) = %v, %v; want %s", tc.listen, tc.n, got, err, tc.want)
		}
	}
	if _, err := gatewayAddrs("127.0.0.1:65535", 1); err == nil {
		t.Error("a gateway port past 65535 accepted")
	}
	if _, err := gatewayAddrs("nohostport", 1); err == nil {
		t.Error("an address without a port accepted")
	}
}

// TestRunPublishesOnNATS: with -nats and no -gateways the server only
// publishes, for gateways elsewhere, and says how to start them.
func TestRunPublishesOnNATS(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	ns, err := scaleout.StartNATS("127.0.0.1", -1)
	if err != nil {
		t.Fatal(err)
	}
	defer scaleout.StopNATS(ns)
	var out strings.Builder
	err = run(context.Background(), []string{"-listen", "127.0.0.1:0", "-entities", "50", "-duration", "100ms", "-stats", "0",
		"-nats", ns.ClientURL(), "-world", "w2", "-cell", "300"}, &out)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	s := out.String()
	for _, want := range []string{"publishing on NATS " + ns.ClientURL() + ` (external), world "w2", cell 300`,
		"gateways: go run ./demo/gateway -nats " + ns.ClientURL() + " -world w2 -cell 300 -radius 600 -tick 30", "server stopped"} {
		if !strings.Contains(s, want) {
			t.Errorf("output lacks %q:\n%s", want, s)
		}
	}
	if strings.Contains(s, "gateway 1") || strings.Contains(s, "more gateways") {
		t.Errorf("gateways started without -gateways:\n%s", s)
	}
}

func TestRunRejectsBadGatewayFlags(t *testing.T) {
	for _, args := range [][]string{{"-gateways", "-1"}, {"-cell", "0"}, {"-gateways", "1", "-world", "a.b", "-listen", "127.0.0.1:0"}} {
		var out strings.Builder
		if err := run(context.Background(), args, &out); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
}
