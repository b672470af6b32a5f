package inspecttest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/png"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/yohamta/donburi"

	"github.com/ebisync/ebisync/components"
	"github.com/ebisync/ebisync/demo/sim"
	"github.com/ebisync/ebisync/demo/swarm"
	"github.com/ebisync/ebisync/internal/browsertest"
	"github.com/ebisync/ebisync/internal/testutil"
	"github.com/ebisync/ebisync/netclient"
	"github.com/ebisync/ebisync/plugin"
)

const (
	token   = "inspector-test-token"
	tickHz  = 30
	watcher = "watcher"
)

// game is the demo's world replicated by a plugin server with an
// Inspector, ticked on its own goroutine (the game goroutine); do runs
// code there.
type game struct {
	sim  *sim.Sim
	srv  *plugin.Server
	http *http.Server
	base string // http://host:port
	jobs chan func()
	stop context.CancelFunc
	done chan struct{}
}

func startGame(t *testing.T) *game {
	t.Helper()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	g := &game{sim: sim.New(&sim.Config{Entities: 400}), jobs: make(chan func()), done: make(chan struct{})}
	g.srv = plugin.New(g.sim.World(), sim.NewRegistry(), &plugin.Options{
		TickRate:      tickHz,
		DefaultRadius: 600,
		CellSize:      150,
		Logger:        quiet,
		Validate:      sim.ValidateSteer,
		// The operator may steer any ship from the inspector; players
		// follow the default rules.
		Authorize: func(req *plugin.Request) error {
			if req.Client.Inspector && req.Client.Identity.User == "ops" {
				return nil
			}
			return plugin.DefaultAuthorize(req)
		},
		OnConnect: func(ci plugin.ClientInfo) {
			g.srv.FollowEntity(ci.ID, g.sim.SpawnPlayer(ci.ID, ci.Name), 600)
		},
		OnDisconnect: func(ci plugin.ClientInfo) { g.sim.RemovePlayer(ci.ID) },
	})
	insp := g.srv.Inspector(&plugin.InspectorOptions{
		Authenticate: plugin.StaticToken(token, plugin.Identity{User: "ops"}),
		Interval:     250 * time.Millisecond,
	})
	mux := http.NewServeMux()
	mux.Handle("/sync", g.srv)
	mux.Handle("/debug/ebisync/", insp)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g.base = "http://" + ln.Addr().String()
	g.http = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = g.http.Serve(ln) }()
	ctx, cancel := context.WithCancel(context.Background())
	g.stop = cancel
	go func() {
		defer close(g.done)
		dt := time.Second / tickHz
		tk := time.NewTicker(dt)
		defer tk.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case f := <-g.jobs:
				f()
			case <-tk.C:
				g.sim.Step(dt.Seconds())
				g.srv.Tick()
			}
		}
	}()
	return g
}

// do runs f on the game goroutine and waits for it.
func (g *game) do(f func(w donburi.World)) {
	ch := make(chan struct{})
	g.jobs <- func() { f(g.sim.World()); close(ch) }
	<-ch
}

func (g *game) close() {
	g.stop()
	<-g.done
	_ = g.srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = g.http.Shutdown(ctx)
}

// mirror is a netclient whose mirror the test reads.
type mirror struct {
	mu   sync.Mutex
	c    *netclient.Client
	stop chan struct{}
	done chan struct{}
}

func dialMirror(t *testing.T, url, name string) *mirror {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := netclient.Dial(ctx, url, sim.NewRegistry(), &netclient.Options{Name: name, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.SubscribeAll(); err != nil {
		t.Fatal(err)
	}
	m := &mirror{c: c, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(m.done)
		tk := time.NewTicker(10 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-m.stop:
				return
			case <-tk.C:
				m.mu.Lock()
				_ = c.Update()
				m.mu.Unlock()
			}
		}
	}()
	return m
}

// steer returns the Steer of entity netID in the mirror.
func (m *mirror) steer(netID uint32) (sim.SteerData, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.c.Entity(netID)
	w := m.c.World()
	if !ok || !w.Valid(e) || !w.Entry(e).HasComponent(sim.Steer) {
		return sim.SteerData{}, false
	}
	return *sim.Steer.Get(w.Entry(e)), true
}

func (m *mirror) close() {
	close(m.stop)
	<-m.done
	_ = m.c.Close()
}

// pageStatus is the page's globalThis.ebisyncInspector.
type pageStatus struct {
	Connected   bool   `json:"connected"`
	Events      int    `json:"events"`
	Connections int    `json:"connections"`
	Entities    int    `json:"entities"`
	Listed      int    `json:"listed"`
	Query       string `json:"query"`
	Selected    uint32 `json:"selected"`
	EntityLive  bool   `json:"entityLive"`
	Values      int    `json:"values"`
	ChartsDrawn int    `json:"chartsDrawn"`
	LastEdit    *struct {
		Component string `json:"component"`
		Status    string `json:"status"`
		Message   string `json:"message"`
	} `json:"lastEdit"`
	Error string `json:"error"`
}

// TestInspectorInBrowser opens the inspector in a real headless Chromium,
// against the demo's world with three bots and a watching client:
//
//   - the page shows the connection and entity counts the server has, and
//     its four charts draw lines;
//   - a search finds the watcher's ship, with its shield orb as its child
//     in the tree; clicking it shows its values;
//   - editing its client-writable Steer changes the value on the server
//     and in the watcher's mirror, and the page shows Ok;
//   - an edit the game's Validate refuses shows its status, and the value
//     stays; components that are not client-writable offer no form;
//   - a screenshot of the page is kept as docs/inspector.png when
//     EBISYNC_UPDATE_SCREENSHOT=1.
//
// It skips where Chromium is missing, unless EBISYNC_REQUIRE_BROWSER=1
// (CI sets it), which makes that a failure.
func TestInspectorInBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("runs Chromium; skipped with -short")
	}
	chrome := browsertest.Chromium(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	g := startGame(t)
	defer g.close()
	syncURL := "ws" + strings.TrimPrefix(g.base, "http") + "/sync"
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	bots, err := swarm.Dial(ctx, swarm.Config{URL: syncURL, N: 3, Rate: 30, Workers: 1, Calm: true, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer bots.Close()
	botCtx, stopBots := context.WithCancel(ctx)
	botsDone := make(chan struct{})
	go func() {
		defer close(botsDone)
		_ = bots.Run(botCtx)
	}()
	defer func() { stopBots(); <-botsDone }()
	watch := dialMirror(t, syncURL, watcher)
	defer watch.close()

	// The watcher's ship, as the server knows it.
	var ship, orb uint32
	waitServer(t, 10*time.Second, "the watcher's ship and orb", func() bool {
		g.do(func(w donburi.World) {
			e, ok := g.sim.Player(watch.c.ClientID())
			if !ok || !w.Valid(e) {
				return
			}
			ship = components.Replicated.Get(w.Entry(e)).NetID
			for _, a := range w.Archetypes() {
				if !a.Layout().HasComponent(components.Parent) {
					continue
				}
				for _, o := range a.Entities() {
					if components.Parent.Get(w.Entry(o)).Entity == e {
						orb = components.Replicated.Get(w.Entry(o)).NetID
					}
				}
			}
		})
		return ship != 0 && orb != 0
	})

	bctx := browsertest.New(t, chrome, 1280, 800)
	if err := chromedp.Do(bctx, chromedp.EmulateViewport(1280, 800), chromedp.Navigate(g.base+"/debug/ebisync/?access_token="+token)); err != nil {
		t.Fatalf("navigate: %v", err)
	}
	st := waitStatus(t, bctx, time.Minute, "the page live with 4 connections and the charts drawn", func(s pageStatus) bool {
		return s.Connected && s.Connections == 4 && s.Entities > 400 && s.ChartsDrawn > 0
	})
	// The counts on the page are the server's.
	want := g.srv.Stats()
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(bctx, chromedp.TextContent(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("%s: %v", sel, err)
		}
		return s
	}
	waitStatus(t, bctx, 10*time.Second, "the server's entity count", func(s pageStatus) bool {
		want = g.srv.Stats()
		return s.Entities == want.Entities
	})
	if got := text("#s-connections"); got != "4" {
		t.Errorf("the page shows %q connections, want 4", got)
	}
	if got := text("#s-entities"); strings.ReplaceAll(got, ",", "") != strconv.Itoa(want.Entities) {
		t.Errorf("the page shows %q entities, the server has %d", got, want.Entities)
	}
	if rows, err := chromedp.Run(bctx, chromedp.Evaluate[int](`document.querySelectorAll("#conn-rows tr[data-client]").length`)); err != nil || rows != 4 {
		t.Errorf("the connections table has %d rows (%v), want 4", rows, err)
	}
	// The charts draw: lines over two samples or more, pixels on each canvas.
	waitStatus(t, bctx, time.Minute, "history for the charts", func(pageStatus) bool {
		n, err := chromedp.Run(bctx, chromedp.Evaluate[int](`Math.min(...["c-tick","c-net","c-mem","c-cpu"].map(id => +document.getElementById(id).dataset.points || 0))`))
		return err == nil && n >= 6
	})
	inked, err := chromedp.Run(bctx, chromedp.Evaluate[[]int](`["c-tick","c-net","c-mem","c-cpu"].map(id => {
		const c = document.getElementById(id), d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
		let n = 0;
		for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
		return n;
	})`))
	if err != nil {
		t.Fatal(err)
	}
	for i, n := range inked {
		if n < 500 {
			t.Errorf("chart %d has %d drawn pixels: not drawn", i, n)
		}
	}
	t.Logf("status %+v; chart pixels %v", st, inked)

	// Search, pick the watcher's ship: its values, and its orb as its child.
	if err := chromedp.Do(bctx, chromedp.SendKeys(chromedp.CSS("#search"), watcher)); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, bctx, 10*time.Second, "the search applied", func(s pageStatus) bool { return s.Query == watcher })
	// The tree re-renders as snapshots arrive, so the node a click found
	// may be replaced before the click lands: a click that fails, or does
	// not select, is tried again.
	node := fmt.Sprintf(`.node[data-id="%d"]`, ship)
	testutil.Eventually(t, 10*time.Second, "a click to select the ship", func() bool {
		ctx, cancel := context.WithTimeout(bctx, 2*time.Second)
		defer cancel()
		if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS(node)), chromedp.Click(chromedp.CSS(node))); err != nil {
			return false
		}
		st, err := readStatus(bctx)
		return err == nil && st.Selected == ship
	})
	waitStatus(t, bctx, 10*time.Second, "the ship's values", func(s pageStatus) bool {
		return s.Selected == ship && s.EntityLive && s.Values > 3
	})
	steerBox := `.comp[data-comp="demo.steer"]`
	if err := chromedp.Do(bctx, chromedp.WaitVisible(chromedp.CSS(steerBox+` input[data-field="Thrust"]`))); err != nil {
		t.Fatal(err)
	}
	if rel := text("#d-rel"); !strings.Contains(rel, fmt.Sprintf("#%d", orb)) {
		t.Errorf("the ship's relations %q do not name its orb #%d", rel, orb)
	}

	// An edit the game allows: the server and the watcher's mirror change.
	edit := func(comp, field, value string) pageStatus {
		t.Helper()
		box := fmt.Sprintf(`.comp[data-comp=%q]`, comp)
		in := box + fmt.Sprintf(` input[data-field=%q]`, field)
		clearInput(t, bctx, in)
		if err := chromedp.Do(bctx, chromedp.SendKeys(chromedp.CSS(in), value)); err != nil {
			t.Fatal(err)
		}
		if _, err := chromedp.Run(bctx, chromedp.Evaluate[bool](`globalThis.ebisyncInspector.lastEdit = null, true`)); err != nil {
			t.Fatal(err)
		}
		if err := chromedp.Do(bctx, chromedp.Click(chromedp.CSS(box+" button[data-apply]"))); err != nil {
			t.Fatal(err)
		}
		return waitStatus(t, bctx, 10*time.Second, "the answer to the "+comp+" edit", func(s pageStatus) bool {
			return s.LastEdit != nil && s.LastEdit.Component == comp && s.LastEdit.Status != "" && s.LastEdit.Status != "sending…"
		})
	}
	if s := edit("demo.steer", "Thrust", "40"); s.LastEdit.Status != "Ok" {
		t.Fatalf("the steer edit: %+v", s.LastEdit)
	}
	waitServer(t, 5*time.Second, "Thrust 40 on the server", func() bool {
		var th int8
		g.do(func(w donburi.World) {
			if e, ok := g.sim.Player(watch.c.ClientID()); ok && w.Valid(e) {
				th = sim.Steer.Get(w.Entry(e)).Thrust
			}
		})
		return th == 40
	})
	waitServer(t, 5*time.Second, "Thrust 40 in the watcher's mirror", func() bool {
		s, ok := watch.steer(ship)
		return ok && s.Thrust == 40
	})
	waitStatus(t, bctx, 5*time.Second, "Ok on the page", func(pageStatus) bool {
		return strings.HasPrefix(text(steerBox+" .status"), "Ok")
	})

	// Refused edits show their status.
	if s := edit("demo.steer", "Thrust", "120"); s.LastEdit.Status != "ValidationError" || !strings.Contains(s.LastEdit.Message, "out of range") {
		t.Errorf("a steer out of range: %+v, want ValidationError", s.LastEdit)
	}
	if got := text(steerBox + " .status"); !strings.HasPrefix(got, "ValidationError") {
		t.Errorf("the page shows %q after a refused edit", got)
	}
	if n, err := chromedp.Run(bctx, chromedp.Evaluate[int](`document.querySelectorAll('.comp[data-comp="ebisync.health"] input').length`)); err != nil || n != 0 {
		t.Errorf("ebisync.health, not client-writable, has %d inputs (%v)", n, err)
	}
	if s, _ := watch.steer(ship); s.Thrust != 40 {
		t.Errorf("after the refused edits the mirror's Thrust is %d, want 40", s.Thrust)
	}
	// Put the ship back on its course for the picture (and the log).
	if s := edit("demo.steer", "Thrust", "0"); s.LastEdit.Status != "Ok" {
		t.Errorf("the steer edit back to 0: %+v", s.LastEdit)
	}

	// The picture: the whole tree, scrolled to the picked ship.
	clearInput(t, bctx, "#search")
	waitStatus(t, bctx, 10*time.Second, "the whole tree", func(s pageStatus) bool { return s.Query == "" && s.Listed > 100 })
	events := waitStatus(t, bctx, 5*time.Second, "a frame", func(pageStatus) bool { return true }).Events
	waitStatus(t, bctx, 10*time.Second, "two more snapshots", func(s pageStatus) bool { return s.Events >= events+2 })
	// Charts of a quarter of a minute or more, for the picture.
	waitStatus(t, bctx, time.Minute, "15 s of history", func(pageStatus) bool {
		n, err := chromedp.Run(bctx, chromedp.Evaluate[int](`+document.getElementById("c-tick").dataset.points || 0`))
		return err == nil && n >= int(15*time.Second/(250*time.Millisecond))
	})
	shot, err := chromedp.Run(bctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	img, err := png.Decode(bytes.NewReader(shot))
	if err != nil {
		t.Fatalf("the screenshot is not a PNG: %v", err)
	}
	if got := img.Bounds().Size(); got != (image.Point{1280, 800}) {
		t.Errorf("the screenshot is %v, want 1280x800", got)
	}
	if err := os.WriteFile(filepath.Join(t.TempDir(), "inspector.png"), shot, 0o644); err != nil {
		t.Fatal(err)
	}
	if os.Getenv("EBISYNC_UPDATE_SCREENSHOT") == "1" && !t.Failed() {
		if err := os.WriteFile(filepath.Join("..", "..", "docs", "inspector.png"), shot, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote docs/inspector.png")
	}
}

// clearInput empties the input sel, as deleting its text would.
func clearInput(t *testing.T, ctx context.Context, sel string) {
	t.Helper()
	js := fmt.Sprintf(`(() => { const e = document.querySelector(%q); e.value = ""; e.dispatchEvent(new Event("input", {bubbles: true})); return true; })()`, sel)
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](js)); err != nil {
		t.Fatalf("clear %s: %v", sel, err)
	}
}

// readStatus returns the page's status object.
func readStatus(ctx context.Context) (pageStatus, error) {
	raw, err := chromedp.Run(ctx, chromedp.Evaluate[json.RawMessage](`globalThis.ebisyncInspector ?? null`))
	if err != nil {
		return pageStatus{}, err
	}
	if string(raw) == "null" {
		return pageStatus{}, errors.New("no status yet")
	}
	var s pageStatus
	err = json.Unmarshal(raw, &s)
	return s, err
}

// waitStatus polls the page's status until ok holds and returns it; after
// timeout it fails t with the last status.
func waitStatus(t *testing.T, ctx context.Context, timeout time.Duration, what string, ok func(pageStatus) bool) pageStatus {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		s, err := readStatus(ctx)
		if err == nil && ok(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v, no %s: status %+v (%v)", timeout, what, s, err)
		}
		if err := chromedp.Do(ctx, chromedp.Sleep(20*time.Millisecond)); err != nil {
			t.Fatal(err)
		}
	}
}

// waitServer polls cond, a look at the server or a client, until it
// holds, or fails t after timeout.
func waitServer(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	testutil.Eventually(t, timeout, what, cond)
}
