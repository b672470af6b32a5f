package main

import (
	"github.com/ebisync/ebisync"

	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ebisync/ebisync/demo/sim"
	"github.com/ebisync/ebisync/internal/testutil"
	"github.com/ebisync/ebisync/plugin"
)

// testServer is the demo's world behind an ebisync server configured as
// sim.Host configures it, but for a short handshake timeout and a small
// entity subscription cap, so that the slow attack and the flood are quick.
type testServer struct {
	url    string
	srv    *plugin.Server
	http   *http.Server
	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
}

func startServer(t *testing.T, change func(o *plugin.Options)) *testServer {
	t.Helper()
	sm := sim.New(&sim.Config{Entities: 400})
	const radius = 600
	ts := &testServer{done: make(chan struct{})}
	opts := &plugin.Options{
		TickRate:               30,
		DefaultRadius:          radius,
		CellSize:               radius / 4,
		MaxRadius:              4 * radius,
		Validate:               sim.ValidateSteer,
		HandshakeTimeout:       time.Second,
		MaxEntitySubscriptions: 64,
		Logger:                 slog.New(slog.NewTextHandler(io.Discard, nil)), // refusals are expected
		OnConnect: func(ci plugin.ClientInfo) {
			ts.srv.FollowEntity(ci.ID, sm.SpawnPlayer(ci.ID, ci.Name), radius)
		},
		OnDisconnect: func(ci plugin.ClientInfo) { sm.RemovePlayer(ci.ID) },
	}
	if change != nil {
		change(opts)
	}
	ts.srv = plugin.New(sm.World(), sim.NewRegistry(), opts)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/sync", ts.srv)
	ts.http = &http.Server{Handler: mux}
	go ts.http.Serve(ln)
	ts.url = "ws://" + ln.Addr().String() + "/sync"
	ctx, cancel := context.WithCancel(context.Background())
	ts.cancel = cancel
	go func() {
		defer close(ts.done)
		tk := time.NewTicker(time.Second / 30)
		defer tk.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tk.C:
			}
			sm.Step(1.0 / 30)
			ts.srv.Tick()
		}
	}()
	t.Cleanup(ts.stop)
	return ts
}

// stop ends the server: its clients are disconnected, it listens no more.
func (ts *testServer) stop() {
	ts.once.Do(func() {
		ts.cancel()
		<-ts.done
		_ = ts.srv.Close()
		_ = ts.http.Close()
	})
}

func TestEveryAttackAnswered(t *testing.T) {
	ts := startServer(t, nil)
	var out bytes.Buffer
	err := run(context.Background(), []string{"-connect", ts.url, "-duration", "1m", "-rounds", "2", "-handshake-timeout", "1s", "-max-entity-subs", "64"}, &out)
	t.Log(out.String())
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	s := out.String()
	if !strings.Contains(s, " 0 unexpected, 0 skipped") {
		t.Error("an answer was unexpected, or an attack skipped")
	}
	// Summary lines: two spaces, the name padded to 46, the counts.
	runs := map[string]string{}
	for _, line := range strings.Split(s, "\n") {
		if len(line) > 2+46 && strings.HasPrefix(line, "  ") {
			runs[strings.TrimSpace(line[2:2+46])] = line[2+46:]
		}
	}
	counted := regexp.MustCompile(`^ *(\d+) run +(\d+) ok +want:`)
	for _, a := range attacks() {
		m := counted.FindStringSubmatch(runs[a.name])
		// Two rounds; the slow attack runs beside them, as often as fits.
		if m == nil || m[1] != m[2] || !a.slow && m[1] != "2" || m[1] == "0" {
			t.Errorf("attack %q: %q, want every run answered, 2 runs (at least 1 if slow)", a.name, runs[a.name])
		}
	}
	st := ts.srv.Stats()
	t.Logf("refusals: %v", st.Refusals)
	if st.Refusals[plugin.RefusedPanic] != 0 {
		t.Errorf("%d panics while handling client input", st.Refusals[plugin.RefusedPanic])
	}
	for _, r := range []string{plugin.RefusedOrigin, plugin.RefusedHandshake, plugin.RefusedSchema, plugin.RefusedProtocol, plugin.RefusedReadLimit, plugin.RefusedSubscriptions} {
		if st.Refusals[r] == 0 {
			t.Errorf("no refusal %q counted", r)
		}
	}
	if st.Mutations[ebisync.Forbidden] == 0 {
		t.Errorf("no forbidden mutation counted: %v", st.Mutations)
	}
}

// TestWrongAnswerFails plays against a server that lets any site's pages
// connect: the cross-site Origin attack is answered 101, not 403, and the
// run fails saying so.
func TestWrongAnswerFails(t *testing.T) {
	ts := startServer(t, func(o *plugin.Options) { o.OriginPatterns = []string{"*"} })
	var out bytes.Buffer
	err := run(context.Background(), []string{"-connect", ts.url, "-duration", "1m", "-rounds", "1", "-handshake-timeout", "1s", "-max-entity-subs", "64"}, &out)
	t.Log(out.String())
	if err == nil {
		t.Fatal("run succeeded although the server accepted a cross-site Origin")
	}
	if msg := err.Error(); !strings.Contains(msg, "cross-site Origin: upgrade accepted, want HTTP 403") || strings.Contains(msg, "\n") {
		t.Errorf("reason %q", msg)
	}
	if !strings.Contains(out.String(), "UNEXPECTED cross-site Origin") {
		t.Error("the summary does not show the unexpected answer")
	}
}

// TestServerGoneFails stops the server once the attacks are under way:
// the run fails because the server stopped answering.
func TestServerGoneFails(t *testing.T) {
	ts := startServer(t, nil)
	out := testutil.NewWatchBuffer("ok: HTTP 403")
	res := make(chan error, 1)
	go func() {
		res <- run(context.Background(), []string{"-connect", ts.url, "-duration", "1m", "-handshake-timeout", "1s", "-max-entity-subs", "64", "-v"}, out)
	}()
	select {
	case <-out.Seen():
	case err := <-res:
		t.Fatalf("run ended before the first answer: %v\n%s", err, out.String())
	case <-time.After(time.Minute):
		t.Fatalf("no first answer within a minute:\n%s", out.String())
	}
	ts.stop()
	err := <-res
	t.Log(out.String())
	if err == nil || !strings.Contains(err.Error(), "the server stopped answering") {
		t.Fatalf("run: %v, want the server to have stopped answering", err)
	}
}

func TestBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"-connect", "http://127.0.0.1:1/sync"},
		{"-connect", "ws:///sync"},
		{"-duration", "0s"},
		{"-rounds", "-1"},
	} {
		var out bytes.Buffer
		if err := run(context.Background(), args, &out); err == nil {
			t.Errorf("%q accepted", args)
		}
	}
}

// TestUnreachable: nothing listens, and the run says so at once.
func TestUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "ws://" + ln.Addr().String() + "/sync"
	ln.Close()
	var out bytes.Buffer
	err = run(context.Background(), []string{"-connect", url, "-duration", "1m"}, &out)
	if err == nil || !strings.Contains(err.Error(), "cannot reach the server") {
		t.Fatalf("run: %v, want cannot reach", err)
	}
}
