package netclient_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/ebisync/ebisync/internal/testutil"
	"github.com/ebisync/ebisync/netclient"
)

// TestNoSubscriptionsWarning: a client connected for the grace period with
// no subscription warns once that its mirror stays empty; one that
// subscribed does not.
func TestNoSubscriptionsWarning(t *testing.T) {
	defer netclient.SetNoSubsGrace(50 * time.Millisecond)()
	reg := newRegistry()
	fs := newFakeServer(t, reg)
	run := func(subscribe bool) string {
		var logs testutil.SyncBuffer
		c, err := netclient.Dial(context.Background(), fs.url, reg, &netclient.Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fs.accept(t)
		if subscribe {
			if err := c.SubscribeAll(); err != nil {
				t.Fatal(err)
			}
		}
		// A game's frames for four grace periods: whether a warning is
		// logged, and how often, depends on time passing, so this is
		// pacing, not a wait for a result.
		frames := time.NewTicker(5 * time.Millisecond)
		defer frames.Stop()
		for start := time.Now(); time.Since(start) < 200*time.Millisecond; {
			if err := c.Update(); err != nil {
				t.Fatal(err)
			}
			<-frames.C
		}
		return logs.String()
	}
	if got := strings.Count(run(false), "no subscriptions"); got != 1 {
		t.Fatalf("%d warnings without subscriptions, want 1", got)
	}
	if got := strings.Count(run(true), "no subscriptions"); got != 0 {
		t.Fatalf("%d warnings with subscriptions, want 0", got)
	}
}
