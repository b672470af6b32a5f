package main

import (
	"bytes"
	"context"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/ebisync/ebisync/internal/testutil"
)

func TestRunForDuration(t *testing.T) {
	var out bytes.Buffer
	err := run(context.Background(), []string{"-listen", "127.0.0.1:0", "-entities", "200", "-tick", "60", "-duration", "400ms", "-stats", "100ms"}, &out)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	s := out.String()
	for _, want := range []string{"listening on ws://127.0.0.1:", "stats: tick avg", "final: tick avg", "entities 200", "server stopped"} {
		if !strings.Contains(s, want) {
			t.Errorf("output lacks %q:\n%s", want, s)
		}
	}
}

func TestRunRejectsBadFlags(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"-tick", "0"}, &out); err == nil {
		t.Fatal("-tick 0 accepted")
	}
}

func TestRunRejectsNegativeMaxPerAddr(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"-max-per-addr", "-1"}, &out); err == nil {
		t.Fatal("-max-per-addr -1 accepted")
	}
}

// TestMaxPerAddrAndRefusals: -max-per-addr 1 refuses a second connection
// from the same address with 429, and the stats line counts the refusal.
func TestMaxPerAddrAndRefusals(t *testing.T) {
	var out testutil.SyncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-listen", "127.0.0.1:0", "-entities", "10", "-max-per-addr", "1", "-stats", "20ms"}, &out)
	}()
	url := out.Await(t, time.Minute, regexp.MustCompile(`listening on (ws://\S+/sync)`))[1]

	dctx, dcancel := context.WithTimeout(ctx, 10*time.Second)
	defer dcancel()
	first, _, err := websocket.Dial(dctx, url, nil) // holds the address's one slot (no Hello)
	if err != nil {
		t.Fatal(err)
	}
	defer first.CloseNow()
	second, resp, err := websocket.Dial(dctx, url, nil)
	if err == nil {
		second.CloseNow()
		t.Fatal("a second connection from the address was accepted")
	}
	if resp == nil || resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("second connection: %v (response %v), want HTTP 429", err, resp)
	}
	out.Await(t, time.Minute, regexp.MustCompile(`stats: .*\| refusals address-limit:1`))
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
}
