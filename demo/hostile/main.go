// Command hostile attacks a live ebisync demo server with raw WebSocket
// (and TCP) clients built from the protocol, and checks that every attack
// gets its documented answer (docs/PROTOCOL.md §8–9, docs/SECURITY.md):
//
//	go run ./demo/hostile -connect ws://127.0.0.1:8080/sync -duration 10s
//
// Until -duration ends (or after -rounds rounds) it plays its attacks one
// after another, -pace apart, round after round: malformed bytes, a text
// frame, unknown and server-only kinds, a second Hello, a message over the
// read limit, lz4 messages declaring huge sizes, a NaN interest radius, a
// 7-byte Subscribe past the server's records, a half-sent frame,
// entity-subscription and subscription-change floods, a mutation and a
// control take of another player's ship, a cross-site Origin, a plain HTTP
// request. One more, a connection that never sends its Hello, waits for
// the server's handshake timeout (-handshake-timeout): it runs beside the
// others, one at a time, and the run waits for the one in flight at the
// end. Mutation and control are tried on the ship of a second connection
// this client holds open (a "victim"), whose entity id it learns from the
// batches it receives, as it learns the asteroids and drones that the
// entity-subscription flood names. At most about four connections are open
// at once: this client alone does not trip a demo server's per-address
// limit (32 by default); bots dialling from the same address need the
// server's -max-per-addr.
//
// It prints a summary and exits 0, or 1 with a one-line reason on stderr
// if an answer was not the documented one or the server stopped answering
// (a dial failed below HTTP after one had worked). Interrupted (SIGINT,
// SIGTERM) it prints the partial summary. It does not import Ebitengine.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0) // -h asked for the usage, and got it
		}
		fmt.Fprintln(os.Stderr, "hostile:", err)
		os.Exit(1)
	}
}

// tally counts one attack's runs and answers.
type tally struct {
	a                       attack
	runs, ok, skip, unexpct int
	first                   string // the first unexpected answer
	lastSkip                string
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("hostile", flag.ContinueOnError)
	url := fs.String("connect", "ws://127.0.0.1:8080/sync", "server `URL`")
	duration := fs.Duration("duration", 10*time.Second, "how long to keep attacking")
	maxRounds := fs.Int("rounds", 0, "stop after this many rounds of every attack, if before -duration ends (0: no limit)")
	pace := fs.Duration("pace", 20*time.Millisecond, "pause between two attacks")
	hsTimeout := fs.Duration("handshake-timeout", 10*time.Second, "the server's handshake timeout (plugin.Options.HandshakeTimeout), which the no-Hello attack waits for")
	maxSubs := fs.Int("max-entity-subs", 1024, "the server's entity subscription cap (plugin.Options.MaxEntitySubscriptions), which the flood passes")
	verbose := fs.Bool("v", false, "print every attack and its answer")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *duration <= 0 || *pace < 0 || *hsTimeout <= 0 || *maxSubs <= 0 || *maxRounds < 0 {
		return errors.New("-duration, -handshake-timeout and -max-entity-subs must be positive, -pace and -rounds not negative")
	}
	// The slow attack logs from its own goroutine.
	stdout = &lockedWriter{w: stdout}
	var vw io.Writer
	if *verbose {
		vw = stdout
	}
	e, err := newEnv(*url, *hsTimeout, *maxSubs, vw)
	if err != nil {
		return err
	}
	defer e.closeVictim()

	list := attacks()
	tallies := make([]*tally, len(list))
	for i, a := range list {
		tallies[i] = &tally{a: a}
	}
	var fatal error
	record := func(t *tally, err error) {
		if ctx.Err() != nil {
			return // interrupted: no answer to judge
		}
		t.runs++
		var sk *skipped
		switch {
		case err == nil:
			t.ok++
			e.logf("%-46s ok: %s", t.a.name, t.a.answer)
		case errors.As(err, &sk):
			t.skip++
			t.lastSkip = sk.why
			e.logf("%-46s skipped: %s", t.a.name, sk.why)
		default:
			t.unexpct++
			if t.first == "" {
				t.first = err.Error()
			}
			fmt.Fprintf(stdout, "UNEXPECTED %s: %v (documented: %s)\n", t.a.name, err, t.a.answer)
			if fatal == nil && (errors.Is(err, errServerGone) || errors.Is(err, errUnreachable)) {
				fatal = err
			}
		}
	}

	start := time.Now()
	deadline := start.Add(*duration)
	// Slow attacks: one in flight at a time, started again while one can
	// end before the deadline (the first always runs).
	type slowResult struct {
		t   *tally
		err error
	}
	slowDone := make(chan slowResult, 1)
	slowBusy := false
	slowNext := 0
	var slowList []*tally
	for _, t := range tallies {
		if t.a.slow {
			slowList = append(slowList, t)
		}
	}
	startSlow := func(first bool) {
		if slowBusy || len(slowList) == 0 {
			return
		}
		if !first && time.Now().Add(*hsTimeout+time.Second).After(deadline) {
			return
		}
		t := slowList[slowNext%len(slowList)]
		slowNext++
		slowBusy = true
		go func() { slowDone <- slowResult{t, t.a.run(ctx, e)} }()
	}
	collectSlow := func(wait bool) {
		if !slowBusy {
			return
		}
		var r slowResult
		if wait {
			r = <-slowDone
		} else {
			select {
			case r = <-slowDone:
			default:
				return
			}
		}
		slowBusy = false
		record(r.t, r.err)
	}

	rounds := 0
	startSlow(true)
loop:
	for *maxRounds == 0 || rounds < *maxRounds {
		rounds++
		for _, t := range tallies {
			if t.a.slow {
				continue
			}
			if ctx.Err() != nil || fatal != nil || !time.Now().Before(deadline) {
				break loop
			}
			record(t, t.a.run(ctx, e))
			collectSlow(false)
			startSlow(false)
			select {
			case <-ctx.Done():
			case <-time.After(*pace):
			}
		}
	}
	if fatal == nil && ctx.Err() == nil {
		collectSlow(true) // bounded by the handshake timeout
	}
	elapsed := time.Since(start)

	// The summary.
	var runs, ok, skip, unexpected int
	for _, t := range tallies {
		runs += t.runs
		ok += t.ok
		skip += t.skip
		unexpected += t.unexpct
	}
	fmt.Fprintf(stdout, "hostile: %d attacks in %d rounds over %v against %s: %d answered as documented, %d unexpected, %d skipped\n",
		runs, rounds, elapsed.Round(time.Millisecond), e.url, ok, unexpected, skip)
	for _, t := range tallies {
		line := fmt.Sprintf("  %-46s %3d run %3d ok", t.a.name, t.runs, t.ok)
		if t.unexpct > 0 {
			line += fmt.Sprintf(" %3d UNEXPECTED", t.unexpct)
		}
		if t.skip > 0 {
			line += fmt.Sprintf(" %3d skipped (%s)", t.skip, t.lastSkip)
		}
		fmt.Fprintf(stdout, "%s   want: %s\n", line, t.a.answer)
	}
	switch {
	case fatal != nil:
		return oneLine(fatal.Error())
	case unexpected > 0:
		for _, t := range tallies {
			if t.unexpct > 0 {
				return oneLine(fmt.Sprintf("%d unexpected answers (first: %s: %s)", unexpected, t.a.name, t.first))
			}
		}
	case ctx.Err() != nil:
		fmt.Fprintln(stdout, "interrupted: the figures are partial")
	case ok == 0:
		return errors.New("no attack was answered")
	}
	return nil
}

// lockedWriter serialises writes to w.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// oneLine is an error of s on one line.
func oneLine(s string) error {
	return errors.New(strings.Join(strings.Fields(s), " "))
}
