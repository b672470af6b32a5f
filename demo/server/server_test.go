package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
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
