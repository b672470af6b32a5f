package swarm

import (
	"context"
	"strings"
	"testing"
	"time"
)

func TestSpread(t *testing.T) {
	s := spread([]float64{3, 1, 2})
	if s != (Spread{Avg: 2, Min: 1, Max: 3}) {
		t.Fatalf("spread = %+v", s)
	}
	if spread(nil) != (Spread{}) {
		t.Fatal("spread of nothing is not zero")
	}
}

func TestReportString(t *testing.T) {
	r := Report{Bots: 2, Duration: 1500 * time.Millisecond, Connected: 2, WithShip: 1,
		BytesIn: Spread{Avg: 20 << 10, Min: 10 << 10, Max: 30 << 10}, Failed: []string{"bot-2: boom"}}
	s := r.String()
	for _, want := range []string{"bots: 2 over 1.5s (2 connected, 1 following their ship)", "20.0 / 10.0 / 30.0 KB/s", "FAILED bot-2: boom"} {
		if !strings.Contains(s, want) {
			t.Errorf("report lacks %q:\n%s", want, s)
		}
	}
}

func TestDialNeedsURL(t *testing.T) {
	if _, err := Dial(context.Background(), Config{}); err == nil {
		t.Fatal("Dial without a URL succeeded")
	}
}
