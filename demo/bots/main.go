// Command bots is a headless swarm of demo clients for load tests:
//
//	go run ./demo/bots -n 200 -connect ws://127.0.0.1:8080/sync -duration 10s
//
// Each bot dials the server with netclient, subscribes to every component,
// follows its own ship with an interest radius and steers it at random
// through mutations, calling Update at -rate Hz. At the end it prints the
// per-bot bytes/s and updates/s (average, minimum and maximum over the
// bots) and the longest silence of any bot, and exits 0, or 1 with a
// one-line reason on stderr if the run failed: a bot could not connect,
// its client stopped, it was not connected at the end (the server died,
// or the bot lost its connection and did not get it back), it heard
// nothing or got no batch from the server for more than -max-silence, or
// it never found its ship. Interrupted (SIGINT, SIGTERM), it prints the
// partial figures and exits 0 unless a client had stopped for good. It
// does not import Ebitengine.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/ebisync/ebisync/demo/swarm"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0) // -h asked for the usage, and got it
		}
		fmt.Fprintln(os.Stderr, "bots:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("bots", flag.ContinueOnError)
	n := fs.Int("n", 200, "number of bots")
	url := fs.String("connect", "ws://127.0.0.1:8080/sync", "server `URL`")
	duration := fs.Duration("duration", 10*time.Second, "how long to run once every bot is connected")
	radius := fs.Float64("radius", 600, "interest radius around each ship")
	rate := fs.Int("rate", 60, "Update calls per second per bot")
	workers := fs.Int("workers", 0, "goroutines sharing the bots (0: GOMAXPROCS)")
	maxSilence := fs.Duration("max-silence", 2*time.Second, "fail if a bot goes longer without a message or a batch from the server (0: no limit)")
	verbose := fs.Bool("v", false, "log the clients' connection events")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *n <= 0 || *duration <= 0 || *radius <= 0 || *rate <= 0 || *maxSilence < 0 {
		return errors.New("-n, -duration, -radius and -rate must be positive, -max-silence not negative")
	}
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelDebug
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	start := time.Now()
	dialCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	s, err := swarm.Dial(dialCtx, swarm.Config{URL: *url, N: *n, Radius: *radius, Rate: *rate, Workers: *workers, Logger: logger})
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			fmt.Fprintln(stdout, "interrupted while connecting")
			return nil
		}
		return err
	}
	defer s.Close()
	fmt.Fprintf(stdout, "%d bots connected to %s in %v; running for %v\n", s.Len(), *url, time.Since(start).Round(time.Millisecond), *duration)

	runCtx, cancel := context.WithTimeout(ctx, *duration)
	defer cancel()
	runErr := s.Run(runCtx)
	rep := s.Report()
	fmt.Fprint(stdout, rep)
	if runErr != nil {
		return runErr
	}
	if ctx.Err() != nil {
		// Interrupted: the figures are partial, not a failure (and an
		// interrupt may have stopped the server too).
		fmt.Fprintln(stdout, "interrupted: the figures are partial")
		return nil
	}
	if err := rep.Check(*maxSilence); err != nil {
		return err
	}
	if rep.WithShip < rep.Bots {
		return fmt.Errorf("%d of %d bots never found their ship", rep.Bots-rep.WithShip, rep.Bots)
	}
	if rep.BytesIn.Min <= 0 {
		return errors.New("a bot received nothing")
	}
	return nil
}
