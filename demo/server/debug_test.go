package main

import (
	"context"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ebisync/ebisync/internal/testutil"
)

// TestRunInspectAndMetrics: with -inspect and -metrics the server prints
// the Inspector's address with its token, serves the Inspector's data to
// that token only, and serves the server's metrics to a scraper.
func TestRunInspectAndMetrics(t *testing.T) {
	var out testutil.SyncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-listen", "127.0.0.1:0", "-entities", "20", "-stats", "0", "-inspect", "-metrics"}, &out)
	}()
	m := out.Await(t, time.Minute, regexp.MustCompile(`inspector at (http://\S+/debug/ebisync/)\?access_token=([0-9a-f]{32})\n`))
	page, token := m[1], m[2]
	metrics := out.Await(t, time.Minute, regexp.MustCompile(`metrics at (http://\S+/metrics)\n`))[1]

	get := func(url, token string) (int, string) {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get(page+"api/state", ""); code != http.StatusUnauthorized {
		t.Errorf("the Inspector's data without the token: %d, want 401", code)
	}
	if code, body := get(page+"api/state", token); code != http.StatusOK || !strings.Contains(body, `"entities":{"total":20`) {
		t.Errorf("the Inspector's data with the token: %d %.200s", code, body)
	}
	if code, body := get(page, ""); code != http.StatusOK || !strings.Contains(body, "ebisync") {
		t.Errorf("the Inspector's page: %d", code)
	}
	code, body := get(metrics, "")
	if code != http.StatusOK || !strings.Contains(body, "ebisync_ticks_total") || !strings.Contains(body, `ebisync_tick_seconds_bucket{le="0.001"}`) ||
		!strings.Contains(body, "ebisync_entities 20") || !strings.Contains(body, "go_goroutines") {
		t.Errorf("GET /metrics: %d\n%.2000s", code, body)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
}

// TestRunInspectTokenNeedsInspect: -inspect-token alone is a mistake.
func TestRunInspectTokenNeedsInspect(t *testing.T) {
	var out testutil.SyncBuffer
	if err := run(context.Background(), []string{"-listen", "127.0.0.1:0", "-inspect-token", "x"}, &out); err == nil {
		t.Fatal("-inspect-token without -inspect accepted")
	}
}
