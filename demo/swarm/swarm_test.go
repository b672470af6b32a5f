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
		BytesIn: Spread{Avg: 20 << 10, Min: 10 << 10, Max: 30 << 10}, Failed: []string{"bot-2: boom"},
		Silence: 1200 * time.Millisecond, SilenceBot: "bot-1", BatchSilence: 1300 * time.Millisecond, BatchSilenceBot: "bot-2", Reconnects: 3}
	s := r.String()
	for _, want := range []string{"bots: 2 over 1.5s (2 connected, 1 following their ship)", "20.0 / 10.0 / 30.0 KB/s", "FAILED bot-2: boom",
		"longest silence: 1.2s without a message (bot-1), 1.3s without a batch (bot-2); 3 reconnects"} {
		if !strings.Contains(s, want) {
			t.Errorf("report lacks %q:\n%s", want, s)
		}
	}
}

func TestCheck(t *testing.T) {
	ok := Report{Bots: 3, Connected: 3, Silence: time.Second, SilenceBot: "bot-1", BatchSilence: 1500 * time.Millisecond, BatchSilenceBot: "bot-2"}
	for _, c := range []struct {
		name   string
		change func(r *Report)
		want   string // "" for no failure
	}{
		{"fine", func(*Report) {}, ""},
		{"a bot not connected", func(r *Report) { r.Connected = 2 }, "1 of 3 bots not connected at the end"},
		{"a client stopped", func(r *Report) { r.Failed = []string{"bot-3: gone", "bot-2: gone"} }, "2 of 3 bots' clients stopped for good (first bot-3: gone)"},
		{"silent", func(r *Report) { r.Silence, r.SilenceBot = 2500*time.Millisecond, "bot-3" }, "bot-3 heard nothing from the server for 2.5s (over 2s)"},
		{"no batches", func(r *Report) { r.BatchSilence = 3 * time.Second }, "bot-2 got no batch for 3s (over 2s)"},
		{"everything", func(r *Report) { r.Connected = 0; r.Silence = 5 * time.Second },
			"3 of 3 bots not connected at the end; bot-1 heard nothing from the server for 5s (over 2s)"},
	} {
		r := ok
		c.change(&r)
		err := r.Check(2 * time.Second)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.want != "" && (err == nil || err.Error() != c.want):
			t.Errorf("%s: got %v, want %q", c.name, err, c.want)
		}
	}
	r := ok
	r.Silence = time.Hour
	if err := r.Check(0); err != nil {
		t.Errorf("Check(0) checked silences: %v", err)
	}
}

func TestDialNeedsURL(t *testing.T) {
	if _, err := Dial(context.Background(), Config{}); err == nil {
		t.Fatal("Dial without a URL succeeded")
	}
}
