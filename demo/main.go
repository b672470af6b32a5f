// Command demo is ebisync's desktop demo: a space of a few thousand
// drifting asteroids and wandering drones, simulated on an authoritative
// server and replicated over a real WebSocket to this window, which
// renders its mirror world with Ebitengine.
//
//	go run ./demo
//
// With no flags, one process runs a server on a loopback port (its own
// goroutine, its own world, its own ticker), a few bot clients and the
// window client. Steer your ship with WASD or the arrow keys: each change
// is a mutation of the client-writable sim.Steer component, which the
// server accepts because the client owns the ship (components.Owner). The
// camera follows the ship; the circle is the interest radius: only
// entities inside it are in the mirror, entering and leaving as you fly.
// Positions and headings are interpolated, so motion is smooth at the
// display rate while the server ticks at -tick Hz. F3 shows the network
// overlay.
//
//	go run ./demo -listen :8080            # host: others can -connect
//	go run ./demo -connect ws://host:8080/sync
//	go run ./demo -screenshot shot.png -frames 120
//
// -screenshot renders -frames frames (more if the mirror is still empty),
// writes the screen as a PNG, prints "mirror entities: N" and exits 0.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime/pprof"
	"time"

	"github.com/hajimehoshi/ebiten/v2"

	"github.com/ebisync/ebisync/demo/sim"
	"github.com/ebisync/ebisync/demo/swarm"
	"github.com/ebisync/ebisync/netclient"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(2)
		}
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	listen := fs.String("listen", "", "host: run the server on `ADDR` (e.g. :8080) and play; default a private loopback port")
	connect := fs.String("connect", "", "join the server at `URL` (ws://host:port/sync) instead of running one")
	bots := fs.Int("bots", 4, "bot clients to run alongside (with -connect: none unless given)")
	entities := fs.Int("entities", 3000, "asteroids and drones in the world (server)")
	radius := fs.Float64("radius", 600, "interest radius in world units")
	tick := fs.Int("tick", 30, "server tick rate in `Hz`")
	name := fs.String("name", "player", "your name, shown above your ship")
	screenshot := fs.String("screenshot", "", "render -frames frames, write the screen to `FILE` (PNG) and exit")
	frames := fs.Int("frames", 120, "frames to render before -screenshot")
	autopilot := fs.Bool("autopilot", false, "fly by yourself when no key is pressed (on with -screenshot)")
	verbose := fs.Bool("v", false, "debug logs")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile to `FILE`")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	botsSet := false
	fs.Visit(func(f *flag.Flag) { botsSet = botsSet || f.Name == "bots" })
	if *connect != "" && !botsSet {
		*bots = 0 // do not bring bots to somebody else's server unasked
	}
	if *connect != "" && *listen != "" {
		return errors.New("-listen and -connect exclude each other")
	}
	if *entities < 0 || *radius <= 0 || *tick <= 0 || *bots < 0 || *frames <= 0 {
		return errors.New("-entities and -bots must be >= 0, -radius, -tick and -frames > 0")
	}
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelDebug
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	url := *connect
	info := *connect
	if url == "" {
		ents := *entities
		if ents == 0 {
			ents = -1 // sim.Config: negative means none
		}
		host := sim.NewHost(&sim.HostConfig{Sim: sim.Config{Entities: ents}, TickRate: *tick, Radius: *radius, Logger: logger})
		addr := *listen
		if addr == "" {
			addr = "127.0.0.1:0"
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("failed to listen: %w", err)
		}
		host.Serve(ln)
		done := make(chan struct{})
		go func() {
			defer close(done)
			_ = host.Run(ctx) // the server's world lives on this goroutine
		}()
		defer func() {
			cancel()
			<-done
			_ = host.Close()
		}()
		url = "ws://" + ln.Addr().String() + "/sync"
		info = fmt.Sprintf("%s (hosting %d entities at %d Hz)", url, *entities, *tick)
		if *listen != "" {
			fmt.Printf("hosting on %s\n", url)
		}
	}

	if *bots > 0 {
		dialCtx, stop := context.WithTimeout(ctx, 15*time.Second)
		s, err := swarm.Dial(dialCtx, swarm.Config{URL: url, N: *bots, Radius: *radius, Rate: 30, Workers: 1, Calm: true, Logger: logger})
		stop()
		if err != nil {
			return err
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			_ = s.Run(ctx) // the bots' mirror worlds live on this goroutine
		}()
		defer func() {
			cancel()
			<-done
			s.Close()
		}()
	}

	dialCtx, stop := context.WithTimeout(ctx, 15*time.Second)
	client, err := netclient.Dial(dialCtx, url, sim.NewRegistry(), &netclient.Options{Name: *name, Logger: logger})
	stop()
	if err != nil {
		return fmt.Errorf("failed to connect to %s: %w", url, err)
	}
	defer client.Close()
	if err := client.SubscribeAll(); err != nil {
		return err
	}

	g := newGame(client, gameConfig{
		radius:     *radius,
		world:      (*sim.Config)(nil).Defaults(),
		serverInfo: info,
		screenshot: *screenshot,
		frames:     *frames,
		autopilot:  *autopilot || *screenshot != "",
	})
	ebiten.SetWindowTitle("ebisync demo")
	ebiten.SetWindowSize(1280, 720)
	ebiten.SetWindowResizingMode(ebiten.WindowResizingModeEnabled)
	if *screenshot != "" {
		// Render every frame even when the window is hidden or unfocused
		// (as under Xvfb).
		ebiten.SetRunnableOnUnfocused(true)
	}
	if err := ebiten.RunGame(g); err != nil {
		return err
	}
	return nil
}
