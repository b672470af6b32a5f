package main

import (
	"bytes"
	"context"
	"net"
	"strings"
	"testing"

	"github.com/ebisync/ebisync/demo/sim"
)

func TestBotsAgainstAServer(t *testing.T) {
	h := sim.NewHost(&sim.HostConfig{Sim: sim.Config{Entities: 500}, TickRate: 30})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.Serve(ln)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = h.Run(ctx)
	}()
	defer func() {
		cancel()
		<-done
		_ = h.Close()
	}()

	var out bytes.Buffer
	url := "ws://" + ln.Addr().String() + "/sync"
	if err := run(context.Background(), []string{"-n", "8", "-connect", url, "-duration", "1500ms"}, &out); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	s := out.String()
	t.Log(s)
	for _, want := range []string{"8 bots connected", "bots: 8 over", "(8 connected, 8 following their ship)", "bytes in/s", "updates/s"} {
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
