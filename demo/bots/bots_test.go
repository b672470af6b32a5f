package main

import (
	"bytes"
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ebisync/ebisync/demo/sim"
	"github.com/ebisync/ebisync/internal/testutil"
)

// server is a demo server run in-process for a test.
type server struct {
	url    string
	cancel context.CancelFunc
	done   chan struct{}
	host   *sim.Host
	once   sync.Once
}

func startServer(t *testing.T) *server {
	t.Helper()
	h := sim.NewHost(&sim.HostConfig{Sim: sim.Config{Entities: 500}, TickRate: 30})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.Serve(ln)
	ctx, cancel := context.WithCancel(context.Background())
	s := &server{url: "ws://" + ln.Addr().String() + "/sync", cancel: cancel, done: make(chan struct{}), host: h}
	go func() {
		defer close(s.done)
		_ = h.Run(ctx)
	}()
	t.Cleanup(s.stop)
	return s
}

// stop stops the server: its clients are disconnected and it listens no
// more. It may be called more than once.
func (s *server) stop() {
	s.once.Do(func() {
		s.cancel()
		<-s.done
		_ = s.host.Close()
	})
}

// runAsync runs the command with args, writing to out, and returns its
// result on a channel.
func runAsync(ctx context.Context, args []string, out *testutil.WatchBuffer) <-chan error {
	res := make(chan error, 1)
	go func() { res <- run(ctx, args, out) }()
	return res
}

// awaitRunning waits until the bots are connected and running, or run
// ended first.
func awaitRunning(t *testing.T, out *testutil.WatchBuffer, res <-chan error) {
	t.Helper()
	select {
	case <-out.Seen():
	case err := <-res:
		t.Fatalf("run ended before the bots ran: %v\n%s", err, out.String())
	case <-time.After(time.Minute):
		t.Fatalf("the bots did not connect within a minute:\n%s", out.String())
	}
}

func TestBotsAgainstAServer(t *testing.T) {
	srv := startServer(t)
	var out bytes.Buffer
	if err := run(context.Background(), []string{"-n", "8", "-connect", srv.url, "-duration", "1500ms"}, &out); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	s := out.String()
	t.Log(s)
	for _, want := range []string{"8 bots connected", "bots: 8 over", "(8 connected, 8 following their ship)", "bytes in/s", "updates/s", "longest silence: ", "; 0 reconnects"} {
		if !strings.Contains(s, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if strings.Contains(s, "FAILED") {
		t.Error("a bot failed")
	}
}

func TestBotsFailWithoutServer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "ws://" + ln.Addr().String() + "/sync"
	ln.Close() // nothing listens there now
	var out bytes.Buffer
	if err := run(context.Background(), []string{"-n", "2", "-connect", url, "-duration", "100ms"}, &out); err == nil {
		t.Fatalf("run succeeded without a server:\n%s", out.String())
	}
}

// TestBotsFailWhenServerDies stops the server as soon as the bots run: the
// run must fail, with a one-line reason naming the bots that are not
// connected at the end and the silence, rather than print averages and
// succeed.
func TestBotsFailWhenServerDies(t *testing.T) {
	srv := startServer(t)
	out := testutil.NewWatchBuffer("running for")
	res := runAsync(context.Background(), []string{"-n", "4", "-connect", srv.url, "-duration", "4s", "-max-silence", "2s"}, out)
	awaitRunning(t, out, res)
	srv.stop()
	err := <-res
	t.Logf("run: %v\n%s", err, out.String())
	if err == nil {
		t.Fatal("run succeeded although the server died during it")
	}
	msg := err.Error()
	if strings.Contains(msg, "\n") {
		t.Errorf("the reason is not one line: %q", msg)
	}
	for _, want := range []string{"4 of 4 bots not connected at the end", "heard nothing from the server for", "(over 2s)"} {
		if !strings.Contains(msg, want) {
			t.Errorf("the reason lacks %q: %q", want, msg)
		}
	}
	if s := out.String(); !strings.Contains(s, "bots: 4 over") || !strings.Contains(s, "(0 connected,") {
		t.Errorf("no report of the run, or one with bots connected:\n%s", s)
	}
}

// TestBotsInterrupted interrupts a run: the report is partial, and the run
// does not fail.
func TestBotsInterrupted(t *testing.T) {
	srv := startServer(t)
	out := testutil.NewWatchBuffer("running for")
	ctx, interrupt := context.WithCancel(context.Background())
	defer interrupt()
	res := runAsync(ctx, []string{"-n", "2", "-connect", srv.url, "-duration", "1h"}, out)
	awaitRunning(t, out, res)
	interrupt()
	if err := <-res; err != nil {
		t.Fatalf("an interrupted run failed: %v\n%s", err, out.String())
	}
	s := out.String()
	for _, want := range []string{"bots: 2 over", "interrupted: the figures are partial"} {
		if !strings.Contains(s, want) {
			t.Errorf("output lacks %q:\n%s", want, s)
		}
	}
}

func TestBadFlags(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"-max-silence", "-1s"}, &out); err == nil {
		t.Fatal("-max-silence -1s accepted")
	}
}
