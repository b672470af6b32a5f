package main

import (
	"context"
	"regexp"
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

// TestRunGateways: with -gateways 2 the server starts an embedded NATS
// server and two gateways on ports of their own; a client of a gateway
// gets the demo's asteroids and drones, and at exit everything stops:
// no goroutine is left.
func TestRunGateways(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	var out testutil.SyncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-listen", "127.0.0.1:0", "-entities", "400", "-tick", "60", "-stats", "50ms", "-gateways", "2"}, &out)
	}()
	simURL := out.Await(t, time.Minute, regexp.MustCompile(`listening on (ws://\S+/sync)`))[1]
	m := out.Await(t, time.Minute, regexp.MustCompile(`gateway 1 listening on (ws://\S+/sync)\ngateway 2 listening on (ws://\S+/sync)\n`))
	urls := m[1:]
	if urls[0] == urls[1] || urls[0] == simURL || urls[1] == simURL {
		t.Fatalf("gateways at %v beside the simulation at %s: not each on its own port", urls, simURL)
	}
	for _, want := range []string{`publishing on NATS nats://127.0.0.1:`, `(embedded), world "demo", cell 600`,
		"clients on a gateway watch (spectate)", "more gateways: go run ./demo/gateway -nats nats://127.0.0.1:"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}

	dctx, dcancel := context.WithTimeout(ctx, 10*time.Second)
	defer dcancel()
	// A player on the simulation: its ship, and the orb that circles it
	// (its child), spawn near the centre.
	player, err := netclient.Dial(dctx, simURL, sim.NewRegistry(), &netclient.Options{Name: "player"})
	if err != nil {
		t.Fatalf("dial the simulation: %v", err)
	}
	defer player.Close()
	c, err := netclient.Dial(dctx, urls[1], sim.NewRegistry(), &netclient.Options{Name: "watcher"})
	if err != nil {
		t.Fatalf("dial gateway 2: %v", err)
	}
	defer c.Close()
	if err := c.SubscribeAll(); err != nil {
		t.Fatal(err)
	}
	world := (&sim.Config{}).Defaults()
	if err := c.SetInterest(world.Width/2, world.Height/2, 600); err != nil {
		t.Fatal(err)
	}
	ships := donburi.NewQuery(filter.Contains(components.Position, sim.Ship))
	kinds := map[uint8]int{}
	testutil.Eventually(t, 30*time.Second, "the gateway's client to mirror asteroids, drones, the player's ship and its orb", func() bool {
		if err := c.Update(); err != nil {
			t.Fatalf("Update: %v", err)
		}
		clear(kinds)
		for e := range ships.Iter(c.World()) {
			kinds[sim.Ship.Get(e).Kind]++
		}
		return kinds[sim.KindAsteroid] > 0 && kinds[sim.KindDrone] > 0 && kinds[sim.KindPlayer] == 1 && kinds[sim.KindOrb] == 1
	})
	out.Await(t, time.Minute, regexp.MustCompile(`gateway 2: clients 1, cells followed [1-9]`))

	player.Close()
	c.Close()
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
