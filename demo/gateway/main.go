// Command gateway serves the demo world to WebSocket clients at
// ws://ADDR/sync without holding it: a simulation (demo/server with -nats
// or -gateways) publishes the world's changes by cell over NATS, and the
// gateway follows the cells its clients' interest covers (docs/SCALING.md).
// Run as many as the clients need, on any machines that reach the NATS
// server or cluster.
//
//	go run ./demo/server -nats nats://10.0.0.5:4222 -listen :8080
//	go run ./demo/gateway -nats nats://10.0.0.5:4222,nats://10.0.0.6:4222 -listen :8090
//	go run ./demo -connect ws://HOST:8090/sync
//
// -world and -cell must be the simulation's (demo/server prints them; both
// default to the same). Players play here as on the simulation's server:
// the gateway forwards each client to the simulation, which gives it its
// ship, and forwards its inputs, mutations, control requests and messages,
// and brings back the answers. A new client's interest is the centre of
// the world, where players spawn, until it asks for its own (a player
// follows its ship).
//
// Every -stats interval it prints its clients, the cells it follows and its
// traffic. It exits on SIGINT or SIGTERM, or after -duration, closing every
// connection with "going away" first. It reconnects to NATS without end,
// to another node of the cluster when one goes away.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/ebisync/ebisync/demo/internal/scaleout"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0) // -h asked for the usage, and got it
		}
		fmt.Fprintln(os.Stderr, "gateway:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("gateway", flag.ContinueOnError)
	natsURL := fs.String("nats", "nats://127.0.0.1:4222", "the NATS server or cluster the simulation publishes on (`URL`s, comma-separated)")
	listen := fs.String("listen", "127.0.0.1:8090", "`address` to serve ws://ADDR/sync on (port 0 picks one)")
	world := fs.String("world", scaleout.DefaultWorld, "the world's `name` in the NATS subjects: the simulation's -world")
	cell := fs.Float64("cell", scaleout.DefaultCellSize, "the side of a published cell in world units: the simulation's -cell")
	radius := fs.Float64("radius", 600, "default interest radius in world units (clients may ask for up to twice it)")
	tick := fs.Int("tick", 30, "replication rate in `Hz` (the simulation's -tick)")
	duration := fs.Duration("duration", 0, "exit after this long (0: run until SIGINT/SIGTERM)")
	every := fs.Duration("stats", 5*time.Second, "print statistics this often (0: only at exit)")
	maxPerAddr := fs.Int("max-per-addr", 0, "most connections from one IP address (0: the library's default, 32)")
	verbose := fs.Bool("v", false, "log connections at debug level")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if *natsURL == "" || *tick <= 0 || !(*radius > 0) || !(*cell > 0) || *maxPerAddr < 0 {
		return errors.New("-nats is needed, -tick, -radius and -cell must be > 0, -max-per-addr >= 0")
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("failed to listen: %w", err)
	}
	gw, err := scaleout.StartGateway(ln, &scaleout.GatewayConfig{
		NATS:                     *natsURL,
		Name:                     "ebisync-demo-gateway " + ln.Addr().String(),
		World:                    *world,
		CellSize:                 *cell,
		Radius:                   *radius,
		TickRate:                 *tick,
		MaxConnectionsPerAddress: *maxPerAddr,
		Logger:                   logger,
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "ebisync demo gateway listening on %s (world %q, cell %g, radius %g, %d Hz), fed by NATS %s\n",
		gw.URL(), *world, *cell, *radius, *tick, *natsURL)
	fmt.Fprintln(stdout, "players play here: the gateway forwards their steering to the simulation")

	if *duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *duration)
		defer cancel()
	}
	var tickC <-chan time.Time
	if *every > 0 {
		t := time.NewTicker(*every)
		defer t.Stop()
		tickC = t.C
	}
	rep := reporter{gw: gw, out: stdout, last: time.Now()}
	for {
		select {
		case <-tickC:
			rep.report("stats")
			continue
		case <-ctx.Done():
		}
		break
	}
	rep.report("final")
	err = gw.Close()
	fmt.Fprintln(stdout, "gateway stopped")
	return err
}

// reporter prints the gateway's figures and its traffic since its
// previous report.
type reporter struct {
	gw      *scaleout.Gateway
	out     io.Writer
	last    time.Time
	prevOut uint64
}

func (r *reporter) report(label string) {
	now := time.Now()
	secs := max(now.Sub(r.last).Seconds(), 1e-9)
	r.last = now
	st := r.gw.Plugin().Stats()
	fs := r.gw.FeedStats()
	fmt.Fprintf(r.out, "%s: clients %d | cells followed %d, entities %d | out %.1f KB/s | fed %d ticks, %d chunks, %d snapshots",
		label, st.Clients, fs.Cells, st.Entities, float64(st.BytesOut-r.prevOut)/secs/1024, fs.Ticks, fs.Chunks, fs.Snapshots)
	r.prevOut = st.BytesOut
	if fs.Dropped > 0 || fs.TickGaps > 0 || fs.SnapshotRetries > 0 {
		fmt.Fprintf(r.out, " | lost %d messages, %d tick gaps, %d snapshot retries", fs.Dropped, fs.TickGaps, fs.SnapshotRetries)
	}
	if fs.Ticks == 0 {
		fmt.Fprint(r.out, " | no tick from the simulation yet: is it running, with the same -world?")
	}
	fmt.Fprintln(r.out)
}
