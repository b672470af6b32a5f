package cli

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"strings"
	"testing"
	"time"
)

func TestParseDefaults(t *testing.T) {
	c, err := Parse(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.Latency != 0 || c.Jitter != 0 || c.Bots != 4 || c.BotsSet || !c.Web {
		t.Errorf("defaults: %+v", c)
	}
}

func TestParseLatency(t *testing.T) {
	c, err := Parse([]string{"-latency", "150ms", "-jitter", "20ms"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.Latency != 150*time.Millisecond || c.Jitter != 20*time.Millisecond {
		t.Errorf("-latency 150ms -jitter 20ms: got %v, %v", c.Latency, c.Jitter)
	}
	for _, args := range [][]string{
		{"-latency", "-1ms"},
		{"-jitter", "-1ms"},
		{"-latency", "150"}, // a duration needs its unit
	} {
		if _, err := Parse(args, io.Discard); err == nil {
			t.Errorf("Parse(%q) succeeded", args)
		}
	}
}

func TestParseErrors(t *testing.T) {
	for _, args := range [][]string{
		{"-listen", ":8080", "-connect", "ws://h:1/sync"},
		{"-bots", "-1"},
		{"-tick", "0"},
		{"extra"},
	} {
		if _, err := Parse(args, io.Discard); err == nil {
			t.Errorf("Parse(%q) succeeded", args)
		}
	}
}

func TestUsage(t *testing.T) {
	var out bytes.Buffer
	if _, err := Parse([]string{"-h"}, &out); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("-h: %v, want flag.ErrHelp", err)
	}
	for _, want := range []string{"Usage: go run ./demo", "-connect", "-latency DURATION", "-jitter DURATION"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the usage does not mention %q:\n%s", want, out.String())
		}
	}
}
