package netclient_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/yohamta/donburi"
	"github.com/yohamta/donburi/filter"
	"go.uber.org/goleak"

	"github.com/ebisync/ebisync/components"
	"github.com/ebisync/ebisync/netclient"
	"github.com/ebisync/ebisync/netsim"
	"github.com/ebisync/ebisync/plugin"
)

// game is an ebisync server on a loopback WebSocket whose world holds n
// entities with a Health of hp, so that a mirror shows which game it came
// from. Its tick loop runs on a goroutine of its own.
type game struct {
	url  string
	addr string // host:port
	srv  *plugin.Server
	hs   *httptest.Server
	stop chan struct{}
	done chan struct{}
	once sync.Once
}

// startGame starts a game listening on addr, or on a free port when addr
// is empty, and stops it at the end of the test.
func startGame(t *testing.T, addr string, n int, hp int32) *game {
	t.Helper()
	w := donburi.NewWorld()
	for range n {
		e := w.Create(components.Replicated, components.Health)
		components.Health.SetValue(w.Entry(e), components.HealthData{Current: hp, Max: hp})
	}
	g := &game{
		srv:  plugin.New(w, newRegistry(), &plugin.Options{TickRate: 200, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}),
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
	g.hs = httptest.NewUnstartedServer(g.srv)
	if addr != "" {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("listen again on %s: %v", addr, err)
		}
		g.hs.Listener.Close()
		g.hs.Listener = l
	}
	g.hs.Start()
	g.addr = g.hs.Listener.Addr().String()
	g.url = "ws://" + g.addr + "/sync"
	go func() {
		defer close(g.done)
		tk := time.NewTicker(5 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-g.stop:
				return
			case <-tk.C:
				g.srv.Tick()
			}
		}
	}()
	t.Cleanup(g.kill)
	return g
}

// kill shuts the game down as a crashed gateway would look to its
// clients: their connections close and its address refuses connections.
func (g *game) kill() {
	g.once.Do(func() {
		g.srv.Close()
		g.hs.Close()
		close(g.stop)
		<-g.done
	})
}

// closedAddr returns a loopback address nobody listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// mirrors reports whether c's mirror holds n entities, each with a Health
// of hp. Game goroutine.
func mirrors(c *netclient.Client, q *donburi.Query, n int, hp int32) bool {
	count, ok := 0, true
	q.Each(c.World(), func(e *donburi.Entry) {
		count++
		ok = ok && components.Health.Get(e).Current == hp
	})
	return ok && count == n
}

// TestDialSecondURL: Dial passes over a URL where nothing listens and one
// that serves no game, and connects to the next, whose world the mirror
// then holds.
func TestDialSecondURL(t *testing.T) {
	g := startGame(t, "", 4, 7)
	web := httptest.NewServer(http.NotFoundHandler())
	defer web.Close()
	refused := "ws://" + closedAddr(t) + "/sync"
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	c, err := netclient.Dial(ctx, refused, newRegistry(), &netclient.Options{
		URLs:   []string{"ws" + strings.TrimPrefix(web.URL, "http") + "/sync", g.url, refused},
		Logger: testLogger(t),
	})
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	defer c.Close()
	assertEqual(t, "URL", c.URL(), g.url)
	if err := c.SubscribeAll(); err != nil {
		t.Fatal(err)
	}
	q := donburi.NewQuery(filter.Contains(components.Health))
	updateUntil(t, c, func() bool { return mirrors(c, q, 4, 7) })
	assertEqual(t, "reconnects", c.Stats().Reconnects, uint64(0))
}

// TestURLsFailover: when its server dies the client moves to the next URL
// and mirrors that server's world; a dropped connection is retried first
// at the URL that last worked, where the session resumes; and the round
// wraps around to the first URL once it serves again. Nothing is left
// running afterwards.
func TestURLsFailover(t *testing.T) {
	a := startGame(t, "", 3, 1)
	b := startGame(t, "", 5, 2)
	// B sits behind a proxy that can drop its connections while B lives.
	pb, err := netsim.Listen(b.addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer pb.Close()
	bURL := pb.URL(b.url)

	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	c, err := netclient.Dial(ctx, a.url, newRegistry(), &netclient.Options{
		URLs:       []string{bURL},
		MinBackoff: time.Millisecond,
		MaxBackoff: 5 * time.Millisecond,
		Logger:     testLogger(t),
	})
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	defer c.Close()
	assertEqual(t, "URL after Dial", c.URL(), a.url)
	if err := c.SubscribeAll(); err != nil {
		t.Fatal(err)
	}
	q := donburi.NewQuery(filter.Contains(components.Health))
	updateUntil(t, c, func() bool { return mirrors(c, q, 3, 1) })

	// A dies: the client goes on at B, in a fresh session (B never knew
	// it), with B's world in its mirror.
	a.kill()
	updateUntil(t, c, func() bool { return c.Connected() && mirrors(c, q, 5, 2) })
	assertEqual(t, "URL after A died", c.URL(), bURL)
	st := c.Stats()
	assertEqual(t, "reconnects after A died", st.Reconnects, uint64(1))
	assertEqual(t, "resumes after A died", st.Resumes, uint64(0))

	// A serves again, and the connection to B drops while B lives: the
	// client retries B first and resumes its session there.
	a2 := startGame(t, a.addr, 4, 3)
	pb.Cut()
	updateUntil(t, c, func() bool { st := c.Stats(); return st.Reconnects == 2 && st.Resumes == 1 })
	assertEqual(t, "URL after the cut", c.URL(), bURL)
	updateUntil(t, c, func() bool { return mirrors(c, q, 5, 2) })

	// B dies: the round wraps around to A, which serves again.
	b.kill()
	pb.Close()
	updateUntil(t, c, func() bool { return c.Connected() && mirrors(c, q, 4, 3) })
	assertEqual(t, "URL after B died", c.URL(), a2.url)
	assertEqual(t, "reconnects after B died", c.Stats().Reconnects, uint64(3))
	if err := c.Update(); err != nil {
		t.Fatalf("Update: %v", err)
	}

	c.Close()
	a2.kill()
	goleak.VerifyNone(t)
}

// TestDialNoURLAnswers: when no URL connects, Dial's error names each URL
// with why it failed, and errors.Is sees each URL's error. A refusal for
// good ends Dial before the URLs after it. A URL Dial cannot use is
// refused before any dial.
func TestDialNoURLAnswers(t *testing.T) {
	reg := newRegistry()
	r1, r2 := "ws://"+closedAddr(t)+"/sync", "ws://"+closedAddr(t)+"/sync"
	dialErr := func(t *testing.T, url string, more ...string) error {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		c, err := netclient.Dial(ctx, url, reg, &netclient.Options{URLs: more, Logger: testLogger(t)})
		if err == nil {
			c.Close()
			t.Fatal("Dial succeeded")
		}
		t.Log(err)
		return err
	}
	says := func(t *testing.T, err error, want ...string) {
		t.Helper()
		for _, w := range want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%q does not say %q", err, w)
			}
		}
	}

	t.Run("unreachable", func(t *testing.T) {
		err := dialErr(t, r1, r2)
		says(t, err, "any of the 2 server URLs", r1, r2, "connection refused")
		if !errors.Is(err, netclient.ErrUnreachable) {
			t.Errorf("errors.Is(%v, ErrUnreachable) is false", err)
		}
	})

	t.Run("refused for good", func(t *testing.T) {
		auth := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, "who are you?", http.StatusUnauthorized)
		}))
		defer auth.Close()
		authURL := "ws" + strings.TrimPrefix(auth.URL, "http") + "/sync"
		err := dialErr(t, r1, authURL, r2)
		says(t, err, "any of the 3 server URLs", r1, authURL, "HTTP 401", r2+": not tried")
		var he *netclient.HTTPError
		if !errors.As(err, &he) || he.URL != authURL {
			t.Errorf("errors.As(%v, *HTTPError) does not give %s's", err, authURL)
		}
		if !errors.Is(err, netclient.ErrUnauthorized) || !errors.Is(err, netclient.ErrUnreachable) {
			t.Errorf("errors.Is(%v) misses ErrUnauthorized or ErrUnreachable", err)
		}
	})

	t.Run("bad URL", func(t *testing.T) {
		err := dialErr(t, r1, r2, "http://game.example/sync")
		says(t, err, "Options.URLs[1]", "ws://game.example/sync")
		if strings.Contains(err.Error(), "refused") {
			t.Errorf("%q: Dial dialled before it checked every URL", err)
		}
		err = dialErr(t, r1, "")
		says(t, err, "Options.URLs[0] is empty")
	})

	t.Run("one URL", func(t *testing.T) {
		// The same URL twice is one URL: its own error, as without URLs.
		err := dialErr(t, r1, r1)
		if strings.Contains(err.Error(), "server URLs") {
			t.Errorf("%q lists URLs for a single one", err)
		}
		says(t, err, r1, "connection refused")
	})
}
