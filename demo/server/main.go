// Command server is the demo's headless dedicated server: the demo world
// (package sim) replicated by ebisync to every client that connects at
// ws://ADDR/sync.
//
//	go run ./demo/server -listen 127.0.0.1:8080 -entities 3000 -tick 30
//
// With -web it also serves the game in the browser at http://ADDR/: a
// page, the demo window built for GOOS=js GOARCH=wasm (by the go command,
// in the background, unless -wasm names a prebuilt one) and wasm_exec.js,
// beside the WebSocket endpoint on the same origin (package demo/web).
//
//	go run ./demo/server -web         # then open http://127.0.0.1:8080/
//
// Every -stats interval it prints the tick time, the clients' traffic and
// the refusals so far (connections refused and clients dropped, by reason).
// With -inspect it serves the plugin's Inspector at
// http://ADDR/debug/ebisync/ behind an access token it prints (or
// -inspect-token), and with -metrics Prometheus metrics at /metrics.
// It exits on SIGINT or SIGTERM, or after -duration, closing every
// connection with "going away" first. It does not import Ebitengine, so it
// runs on machines without a display.
//
// Scaling out (docs/SCALING.md): with -gateways N it also starts, in the
// same process, an embedded NATS server on loopback, publishes the
// World's changes on it by cells of -cell units, and serves N gateways,
// each on its own port (the ports after -listen's), beside the
// simulation's own /sync. Players play on any of them: a gateway forwards
// its clients to the simulation, which gives each its ship and takes its
// steering (inputs and mutations) as from its own clients. With -nats URL
// the simulation publishes on that NATS server or cluster instead, and
// gateways are processes of their own (demo/gateway), given the same
// -nats, -world and -cell; -gateways 0 -nats URL runs the simulation only.
//
//	go run ./demo/server -gateways 3
//	go run ./demo/server -nats nats://10.0.0.5:4222 -listen :8080
//	go run ./demo/gateway -nats nats://10.0.0.5:4222 -listen :8090
package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"os"
	"os/signal"
	"slices"
	"syscall"
	"time"

	"github.com/ebisync/ebisync/demo/internal/scaleout"
	"github.com/ebisync/ebisync/demo/sim"
	"github.com/ebisync/ebisync/demo/web"
	"github.com/ebisync/ebisync/plugin"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0) // -h asked for the usage, and got it
		}
		fmt.Fprintln(os.Stderr, "server:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("server", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:8080", "`address` to serve ws://ADDR/sync on (port 0 picks one)")
	entities := fs.Int("entities", 3000, "asteroids and drones in the world")
	tick := fs.Int("tick", 30, "simulation and replication rate in `Hz`")
	radius := fs.Float64("radius", 600, "default interest radius in world units")
	duration := fs.Duration("duration", 0, "exit after this long (0: run until SIGINT/SIGTERM)")
	every := fs.Duration("stats", 5*time.Second, "print statistics this often (0: only at exit)")
	perClient := fs.Int("per-client", 8, "list clients individually when at most this many are connected")
	verbose := fs.Bool("v", false, "log connections at debug level")
	maxPerAddr := fs.Int("max-per-addr", 0, "most connections from one IP `address` (0: the library's default, 32); "+
		"a load test whose bots all dial from one address, such as loopback, needs more than its bot count")
	serveWeb := fs.Bool("web", false, "also serve the game in the browser at http://ADDR/ (the client is built with the go command unless -wasm)")
	wasm := fs.String("wasm", "", "with -web, serve this prebuilt browser client (`FILE`, see go doc ./demo/web) instead of building one")
	inspect := fs.Bool("inspect", false, "serve the Inspector, a live page of the server, at http://ADDR"+inspectPath+" (its address, with its access token, is printed)")
	inspectToken := fs.String("inspect-token", "", "with -inspect, the Inspector's access `token` (default: a random one)")
	metrics := fs.Bool("metrics", false, "serve Prometheus metrics at http://ADDR/metrics")
	gateways := fs.Int("gateways", 0, "also serve this many gateways, each on its own port after -listen's, fed over NATS and forwarding their players to the simulation (docs/SCALING.md)")
	natsURL := fs.String("nats", "", "publish the world on this NATS server or cluster (`URL`s, comma-separated) instead of an embedded one; "+
		"with -gateways 0, gateways run elsewhere (demo/gateway)")
	world := fs.String("world", scaleout.DefaultWorld, "with -gateways or -nats, the world's `name` in the NATS subjects")
	cell := fs.Float64("cell", scaleout.DefaultCellSize, "with -gateways or -nats, the side of a published cell in world units; every gateway needs the same")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *entities < 0 || *tick <= 0 || *radius <= 0 || *maxPerAddr < 0 || *gateways < 0 || !(*cell > 0) {
		return errors.New("-entities, -max-per-addr and -gateways must be >= 0, -tick, -radius and -cell > 0")
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	ents := *entities
	if ents == 0 {
		ents = -1 // sim.Config: negative means none, zero means the default
	}
	hostCfg := &sim.HostConfig{
		Sim:      sim.Config{Entities: ents},
		TickRate: *tick,
		Radius:   *radius,
		Logger:   logger,
		// Zero keeps the plugin's default.
		MaxConnectionsPerAddress: *maxPerAddr,
	}
	if *serveWeb {
		site, err := web.New(&web.Options{WASM: *wasm, Radius: *radius, Out: stdout})
		if err != nil {
			return err
		}
		defer site.Close()
		hostCfg.Page = site
	}
	debug, err := newDebugRoutes(*inspect, *inspectToken, *metrics, hostCfg) // debug.go
	if err != nil {
		return err
	}
	var scale *scaling // gateways.go
	if *gateways > 0 || *natsURL != "" {
		if scale, err = startPublishing(*natsURL, *world, *cell, hostCfg); err != nil {
			return err
		}
		// Closes what a failure left; at exit, after the last tick, the
		// close below does it and this does nothing.
		defer scale.Close()
	}
	host := sim.NewHost(hostCfg)
	debug.mount(host.Plugin())
	if scale != nil {
		if err := scale.pub.Serve(host.Plugin()); err != nil {
			return err
		}
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("failed to listen: %w", err)
	}
	host.Serve(ln)
	if scale != nil {
		if err := scale.startGateways(*listen, *gateways, *tick, *radius, *maxPerAddr, logger); err != nil {
			_ = host.Close()
			return err
		}
	}
	local, shared := sim.URLs(ln.Addr())
	fmt.Fprintf(stdout, "ebisync demo server listening on %s (%d entities, %d Hz, radius %g)\n",
		local, *entities, *tick, *radius)
	if shared != local {
		fmt.Fprintf(stdout, "others join with: go run ./demo -connect %s\n", shared)
	}
	if *serveWeb {
		fmt.Fprintf(stdout, "play in a browser at %s\n", web.PageURL(local))
		if shared != local {
			fmt.Fprintf(stdout, "others play at %s\n", web.PageURL(shared))
		}
	}

	debug.announce(stdout, local)
	if scale != nil {
		scale.announce(stdout, local, *tick, *radius)
	}

	if *duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *duration)
		defer cancel()
	}
	done := make(chan error, 1)
	go func() { done <- host.Run(ctx) }()

	rep := reporter{host: host, scale: scale, out: stdout, perClient: *perClient, last: time.Now(), prev: make(map[uint64]uint64)}
	var tickC <-chan time.Time
	if *every > 0 {
		t := time.NewTicker(*every)
		defer t.Stop()
		tickC = t.C
	}
	for {
		select {
		case <-tickC:
			rep.report("stats")
			continue
		case err = <-done:
		}
		break
	}
	rep.report("final")
	if cerr := host.Close(); cerr != nil {
		err = errors.Join(err, cerr)
	}
	if scale != nil {
		if cerr := scale.Close(); cerr != nil {
			err = errors.Join(err, cerr)
		}
	}
	fmt.Fprintln(stdout, "server stopped")
	return err
}

// reporter prints tick times and traffic rates since its previous report.
type reporter struct {
	host      *sim.Host
	scale     *scaling // nil without -gateways and -nats
	prevGw    []uint64 // each gateway's BytesOut at the last report
	out       io.Writer
	perClient int
	last      time.Time
	prev      map[uint64]uint64 // client id → BytesOut at the last report
	prevOut   uint64
	prevRaw   uint64
	// Over the whole run.
	ticks         int
	tickSum, peak time.Duration
}

func (r *reporter) report(label string) {
	now := time.Now()
	secs := now.Sub(r.last).Seconds()
	r.last = now
	if secs <= 0 {
		secs = 1e-9
	}
	ts := r.host.TickStats()
	r.ticks += ts.Ticks
	r.tickSum += ts.Avg * time.Duration(ts.Ticks)
	r.peak = max(r.peak, ts.Max)
	st := r.host.Plugin().Stats()
	budget := (time.Second / time.Duration(r.host.TickRate())).Round(100 * time.Microsecond)
	fmt.Fprintf(r.out, "%s: tick avg %v max %v (budget %v, %d ticks) | entities %d clients %d | out %.1f KB/s",
		label, ts.Avg.Round(time.Microsecond), ts.Max.Round(time.Microsecond), budget, ts.Ticks,
		st.Entities, st.Clients, float64(st.BytesOut-r.prevOut)/secs/1024)
	// lz4 pays on spawn bursts and snapshots; batches of quantised deltas
	// barely shrink, and are sent raw on purpose.
	if raw, sent := st.RawBytesOut-r.prevRaw, st.BytesOut-r.prevOut; raw > sent {
		fmt.Fprintf(r.out, " (lz4 saved %.1f%%: spawns and snapshots)", 100*float64(raw-sent)/float64(raw))
	} else if raw > 0 {
		fmt.Fprint(r.out, " (lz4: deltas only, sent raw)")
	}
	r.prevOut, r.prevRaw = st.BytesOut, st.RawBytesOut

	rates := make([]float64, 0, len(st.PerClient))
	seen := make(map[uint64]uint64, len(st.PerClient))
	slices.SortFunc(st.PerClient, func(a, b plugin.ClientStats) int { return cmp.Compare(a.ID, b.ID) })
	var lines []string
	for _, c := range st.PerClient {
		rate := float64(c.BytesOut-r.prev[c.ID]) / secs
		seen[c.ID] = c.BytesOut
		rates = append(rates, rate)
		lines = append(lines, fmt.Sprintf("  client %d %q %s: out %.1f KB/s, in %d B, last write %v",
			c.ID, c.Name, c.Addr, rate/1024, c.BytesIn, c.LastWrite.Round(time.Microsecond)))
	}
	r.prev = seen
	if len(rates) > 0 {
		lo, hi, sum := rates[0], rates[0], 0.0
		for _, v := range rates {
			lo, hi, sum = min(lo, v), max(hi, v), sum+v
		}
		fmt.Fprintf(r.out, " | per client avg %.1f min %.1f max %.1f KB/s", sum/float64(len(rates))/1024, lo/1024, hi/1024)
	}
	if len(st.Mutations) > 0 {
		names := slices.Sorted(maps.Keys(st.Mutations))
		fmt.Fprint(r.out, " | mutations")
		for _, k := range names {
			fmt.Fprintf(r.out, " %s:%d", k, st.Mutations[k])
		}
	}
	if len(st.Refusals) > 0 {
		// Totals since the start, by plugin.Refused* reason.
		fmt.Fprint(r.out, " | refusals")
		for _, k := range slices.Sorted(maps.Keys(st.Refusals)) {
			fmt.Fprintf(r.out, " %s:%d", k, st.Refusals[k])
		}
	}
	fmt.Fprintln(r.out)
	if label == "final" && r.ticks > 0 {
		fmt.Fprintf(r.out, "overall: %d ticks, tick avg %v max %v (budget %v)\n",
			r.ticks, (r.tickSum / time.Duration(r.ticks)).Round(time.Microsecond), r.peak.Round(time.Microsecond), budget)
	}
	if len(lines) <= r.perClient {
		for _, l := range lines {
			fmt.Fprintln(r.out, l)
		}
	}
	r.reportGateways(secs)
}

// reportGateways prints a line for each gateway: its clients, the cells it
// follows and its traffic since the last report.
func (r *reporter) reportGateways(secs float64) {
	if r.scale == nil {
		return
	}
	if len(r.prevGw) < len(r.scale.gateways) {
		r.prevGw = make([]uint64, len(r.scale.gateways))
	}
	for i, gw := range r.scale.gateways {
		st := gw.Plugin().Stats()
		fs := gw.FeedStats()
		fmt.Fprintf(r.out, "  gateway %d: clients %d, cells followed %d, entities %d, out %.1f KB/s",
			i+1, st.Clients, fs.Cells, st.Entities, float64(st.BytesOut-r.prevGw[i])/secs/1024)
		if fs.Dropped > 0 || fs.TickGaps > 0 {
			fmt.Fprintf(r.out, ", lost: %d messages, %d tick gaps", fs.Dropped, fs.TickGaps)
		}
		fmt.Fprintln(r.out)
		r.prevGw[i] = st.BytesOut
	}
}
