package main

import (
	"context"
	"errors"
	"flag"
	"net"
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
	"github.com/ebisync/ebisync/internal/natstest"
	"github.com/ebisync/ebisync/internal/testutil"
	"github.com/ebisync/ebisync/netclient"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// startSimulation runs the demo's simulation publishing on NATS at url
// until the test ends.
func startSimulation(t *testing.T, url string, entities int) {
	t.Helper()
	pub, err := scaleout.Publish(url, "demo")
	if err != nil {
		t.Fatal(err)
	}
	h := sim.NewHost(&sim.HostConfig{Sim: sim.Config{Entities: entities}, TickRate: 60,
		Publish: pub.Publisher(), PublishCellSize: scaleout.DefaultCellSize})
	if err := pub.Serve(h.Plugin()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("simulation: %v", err)
		}
		if err := h.Close(); err != nil {
			t.Errorf("simulation close: %v", err)
		}
		if err := pub.Close(); err != nil {
			t.Errorf("publication close: %v", err)
		}
	})
}

// TestRunServesTheSimulation: the command, given the NATS server a
// simulation publishes on, serves the demo world: a client that dials it
// mirrors the asteroids and drones around its interest, and plays: the
// simulation gives it its own ship, named after it. It exits cleanly when
// its context ends.
func TestRunServesTheSimulation(t *testing.T) {
	nodes := natstest.Cluster(t, 1)
	url := natstest.URLs(nodes...)
	startSimulation(t, url, 400)

	var out testutil.SyncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-nats", url, "-listen", "127.0.0.1:0", "-tick", "60", "-stats", "50ms"}, &out)
	}()
	gwURL := out.Await(t, time.Minute, regexp.MustCompile(`gateway listening on (ws://\S+/sync) \(world "demo", cell 600, radius 600, 60 Hz\), fed by NATS nats://`))[1]

	dctx, dcancel := context.WithTimeout(ctx, 10*time.Second)
	defer dcancel()
	c, err := netclient.Dial(dctx, gwURL, sim.NewRegistry(), &netclient.Options{Name: "player"})
	if err != nil {
		t.Fatalf("dial: %v", err)
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
	var own []donburi.Entity
	testutil.Eventually(t, 30*time.Second, "the gateway's client to mirror the demo's entities and its own ship", func() bool {
		if err := c.Update(); err != nil {
			t.Fatalf("Update: %v", err)
		}
		own = c.Owned(own[:0])
		return ships.Count(c.World()) > len(own) && len(own) > 0
	})
	for _, e := range own {
		entry := c.World().Entry(e)
		if sim.Ship.Get(entry).Kind == sim.KindPlayer && components.Name.Get(entry).Value != "player" {
			t.Fatalf("the client's ship is named %q, want %q", components.Name.Get(entry).Value, "player")
		}
	}
	out.Await(t, time.Minute, regexp.MustCompile(`stats: clients 1 \| cells followed [1-9]\d*, entities [1-9]`))

	c.Close()
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	s := out.String()
	if !strings.Contains(s, "players play here: the gateway forwards their steering to the simulation") || !strings.HasSuffix(s, "gateway stopped\n") {
		t.Errorf("output:\n%s", s)
	}
}

// TestRunForDuration: -duration ends the run, and the final line says
// that no tick came when no simulation publishes.
func TestRunForDuration(t *testing.T) {
	url := natstest.URLs(natstest.Cluster(t, 1)...)
	var out strings.Builder
	if err := run(context.Background(), []string{"-nats", url, "-listen", "127.0.0.1:0", "-duration", "100ms", "-stats", "0"}, &out); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	s := out.String()
	for _, want := range []string{"final: clients 0", "no tick from the simulation yet", "gateway stopped"} {
		if !strings.Contains(s, want) {
			t.Errorf("output lacks %q:\n%s", want, s)
		}
	}
}

func TestRunHelp(t *testing.T) {
	var out strings.Builder
	if err := run(context.Background(), []string{"-h"}, &out); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("-h: %v, want flag.ErrHelp", err)
	}
}

func TestRunRejectsBadFlags(t *testing.T) {
	for _, args := range [][]string{{"-tick", "0"}, {"-cell", "0"}, {"-radius", "-1"}, {"-nats", ""}, {"-max-per-addr", "-1"}, {"extra"}} {
		var out strings.Builder
		if err := run(context.Background(), args, &out); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
}

// TestRunWithoutNATS: a NATS server that does not answer is an error, and
// the gateway's port is let go.
func TestRunWithoutNATS(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "nats://" + ln.Addr().String()
	ln.Close() // nobody listens there now
	gw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := gw.Addr().String()
	gw.Close()
	var out strings.Builder
	err = run(context.Background(), []string{"-nats", dead, "-listen", addr}, &out)
	if err == nil || !strings.Contains(err.Error(), "failed to connect to NATS") {
		t.Fatalf("run: %v, want a NATS connection error", err)
	}
	again, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("the gateway's address is still held: %v", err)
	}
	again.Close()
}
