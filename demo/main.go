//go:build !js

// Command demo is ebisync's desktop demo: a space of a few thousand
// drifting asteroids and wandering drones, simulated on an authoritative
// server and replicated over a real WebSocket to this window, which
// renders its mirror world with Ebitengine.
//
//	go run ./demo
//
// With no flags, one process runs a server on a loopback port (its own
// goroutine, its own world, its own ticker), a few bot clients and the
// window client. Steer your ship with WASD or the arrow keys: each frame
// sends a predicted input (sim.FlyData, netclient.Predict), which the
// server applies because the client owns the ship (components.Owner) and
// the window applies at once. The
// camera follows the ship; the circle is the interest radius: only
// entities inside it are in the mirror, entering and leaving as you fly.
// Positions and headings are interpolated, so motion is smooth at the
// display rate while the server ticks at -tick Hz. F3 shows the network
// overlay.
//
//	go run ./demo -listen :8080            # host: others can -connect, or play in a browser
//	go run ./demo -connect ws://host:8080/sync
//	go run ./demo -screenshot shot.png -frames 120
//	go run ./demo -latency 150ms -jitter 20ms  # play through 150 ms of round trip
//
// With -listen the server also serves the game in the browser at
// http://ADDR/ (package demo/web): the same window, built for GOOS=js
// GOARCH=wasm (main_js.go), on the same server (-web=false turns it off).
//
// -latency and -jitter put a local proxy (package netsim) between the
// window's client and the server, adding that round trip, varied by up to
// ±jitter; the bots connect directly.
//
// -screenshot renders -frames frames (more if the mirror is still empty),
// writes the screen as a PNG, prints the layout, the HUD's lines ("hud: …")
// and "mirror entities: N", and exits 0.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/hajimehoshi/ebiten/v2"

	"github.com/ebisync/ebisync/demo/internal/cli"
	_ "github.com/ebisync/ebisync/demo/internal/early" // -h and no display, before Ebitengine's init
	"github.com/ebisync/ebisync/demo/sim"
	"github.com/ebisync/ebisync/demo/swarm"
	"github.com/ebisync/ebisync/demo/web"
	"github.com/ebisync/ebisync/netclient"
	"github.com/ebisync/ebisync/netsim"
	"github.com/ebisync/ebisync/plugin"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	cfg, err := cli.Parse(args, os.Stderr)
	if err != nil {
		return err
	}
	if cfg.CPUProfile != "" {
		f, err := os.Create(cfg.CPUProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	if cfg.Connect != "" && !cfg.BotsSet {
		cfg.Bots = 0 // do not bring bots to somebody else's server unasked
	}
	level := slog.LevelWarn
	if cfg.Verbose {
		level = slog.LevelDebug
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	url := cfg.Connect
	info := cfg.Connect
	var inspectURL string // the Inspector of the server the demo hosts
	if url == "" {
		ents := cfg.Entities
		if ents == 0 {
			ents = -1 // sim.Config: negative means none
		}
		hostCfg := &sim.HostConfig{Sim: sim.Config{Entities: ents}, TickRate: cfg.Tick, Radius: cfg.Radius, Logger: logger}
		if cfg.Listen != "" && cfg.Web {
			site, err := web.New(&web.Options{WASM: cfg.WASM, Radius: cfg.Radius, Out: os.Stdout})
			if err != nil {
				return err
			}
			defer site.Close()
			hostCfg.Page = site
		}
		// The Inspector of the hosted server, behind a token made up now:
		// F3 shows its address.
		token, err := randomToken()
		if err != nil {
			return err
		}
		routes := http.NewServeMux()
		if hostCfg.Page != nil {
			routes.Handle("/", hostCfg.Page)
		}
		hostCfg.Page = routes
		host := sim.NewHost(hostCfg)
		routes.Handle(inspectPath, host.Plugin().Inspector(&plugin.InspectorOptions{
			Authenticate: plugin.StaticToken(token, plugin.Identity{User: "player"}),
		}))
		addr := cfg.Listen
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
		// Dial loopback, and tell others an address they can dial: a
		// wildcard listener (":8080") prints as [::]:8080, which nobody
		// can.
		var shared string
		url, shared = sim.URLs(ln.Addr())
		info = fmt.Sprintf("%s (hosting %d entities at %d Hz)", url, cfg.Entities, cfg.Tick)
		inspectURL = "http" + strings.TrimSuffix(strings.TrimPrefix(url, "ws"), "/sync") + inspectPath + "?access_token=" + token
		fmt.Printf("inspector at %s\n", inspectURL)
		if cfg.Listen != "" {
			fmt.Printf("hosting on %s; others join with: go run ./demo -connect %s\n", url, shared)
			if cfg.Web {
				page := web.PageURL(url)
				if shared != url {
					page += " (from other machines: " + web.PageURL(shared) + ")"
				}
				fmt.Printf("play in a browser at %s\n", page)
			}
		}
	}

	if cfg.Bots > 0 {
		dialCtx, stop := context.WithTimeout(ctx, 15*time.Second)
		s, err := swarm.Dial(dialCtx, swarm.Config{URL: url, N: cfg.Bots, Radius: cfg.Radius, Rate: 30, Workers: 1, Calm: true, Logger: logger})
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

	clientURL := url
	if cfg.Latency > 0 || cfg.Jitter > 0 {
		proxy, err := startProxy(url, cfg.Latency, cfg.Jitter)
		if err != nil {
			return err
		}
		if proxy != nil {
			defer proxy.Close()
			clientURL = proxy.URL(url)
			fmt.Printf("your window joins through %s, adding %v ±%v of round trip\n", proxy.Addr(), cfg.Latency, cfg.Jitter)
		}
	}

	dialCtx, stop := context.WithTimeout(ctx, 15*time.Second)
	client, err := netclient.Dial(dialCtx, clientURL, sim.NewRegistry(), &netclient.Options{Name: cfg.Name, Logger: logger})
	stop()
	if err != nil {
		return err // netclient's errors name the URL and what to check
	}
	defer client.Close()
	if err := client.SubscribeAll(); err != nil {
		return err
	}

	g := newGame(client, gameConfig{
		radius:     cfg.Radius,
		world:      (*sim.Config)(nil).Defaults(),
		serverInfo: info,
		inspectURL: inspectURL,
		screenshot: cfg.Screenshot,
		frames:     cfg.Frames,
		autopilot:  cfg.Autopilot || cfg.Screenshot != "",
	})
	ebiten.SetWindowTitle("ebisync demo")
	ebiten.SetWindowSize(cfg.Width, cfg.Height)
	ebiten.SetWindowResizingMode(ebiten.WindowResizingModeEnabled)
	if cfg.Screenshot != "" {
		// Render every frame even when the window is hidden or unfocused
		// (as under Xvfb).
		ebiten.SetRunnableOnUnfocused(true)
	}
	if err := ebiten.RunGame(g); err != nil {
		return err
	}
	return nil
}

// startProxy starts a netsim proxy in front of the server at serverURL,
// adding latency and jitter. It returns nil, and no error, for a URL
// netclient cannot dial, so that netclient's error explains it.
func startProxy(serverURL string, latency, jitter time.Duration) (*netsim.Proxy, error) {
	u, err := url.Parse(serverURL)
	if err != nil || u.Host == "" {
		return nil, nil
	}
	switch u.Scheme {
	case "ws":
	case "wss":
		// The proxy's address is not the one the server's certificate
		// names.
		return nil, errors.New("-latency and -jitter need a ws:// server URL, not wss://")
	default:
		return nil, nil
	}
	target := u.Host
	if u.Port() == "" {
		target = net.JoinHostPort(u.Hostname(), "80")
	}
	proxy, err := netsim.Listen(target, &netsim.Options{Latency: latency, Jitter: jitter})
	if err != nil {
		return nil, fmt.Errorf("failed to start the latency proxy: %w", err)
	}
	return proxy, nil
}

// inspectPath is where the hosted server's Inspector is mounted.
const inspectPath = "/debug/ebisync/"

// randomToken returns a token nobody can guess, for the Inspector.
func randomToken() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}
