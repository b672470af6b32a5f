package web_test

import (
	"bytes"
	"context"
	"encoding/json"
	"image"
	"image/png"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/chromedp"
	"github.com/yohamta/donburi"

	"github.com/ebisync/ebisync/components"
	"github.com/ebisync/ebisync/demo/sim"
	"github.com/ebisync/ebisync/demo/swarm"
	"github.com/ebisync/ebisync/demo/web"
	"github.com/ebisync/ebisync/internal/browsertest"
	"github.com/ebisync/ebisync/internal/display"
	"github.com/ebisync/ebisync/internal/testutil"
)

// browserName is the name the page's client announces (?name=), by which
// the server's Validate hook tells its mutations from the bots'.
const browserName = "chromium"

// pageStatus is the page's globalThis.ebisync (see the package doc).
type pageStatus struct {
	State        string `json:"state"`
	URL          string `json:"url"`
	Error        string `json:"error"`
	Connected    bool   `json:"connected"`
	Entities     int    `json:"entities"`
	Drawn        int    `json:"drawn"`
	ClientID     uint64 `json:"clientID"`
	InputsSent   int    `json:"inputsSent"`
	SteerRefused int    `json:"steerRefused"`
	Frames       int    `json:"frames"`
	Overlay      bool   `json:"overlay"`
	Ship         *struct {
		X, Y, Angle float64
	} `json:"ship"`
}

// TestBrowserDemo plays the demo in a real headless Chromium: it builds
// the browser client (GOOS=js GOARCH=wasm, as the commands do), serves it
// from a demo server with three bots, the way `demo/server -web` does,
// and opens the page. Then:
//
//   - the page loads and shows its loading state, then the client
//     connects: its status object reports a mirror holding entities and
//     the player's ship;
//   - the game fills the window, and a screenshot of the page shows a drawn
//     scene (many colours, entities in several hues); it is kept as
//     docs/browser.png when EBISYNC_UPDATE_SCREENSHOT=1;
//   - key presses sent to the page steer the ship: the server applies
//     the page client's inputs (sim.FlyData: thrust with ArrowUp, a turn
//     with A, and zero again on release), and the ship's replicated
//     position and heading change;
//   - Esc leaves the game: the page says so and the server sees the
//     client go;
//   - a page whose server has no WebSocket endpoint says so in words.
//
// It skips where Chromium is missing, unless EBISYNC_REQUIRE_BROWSER=1
// (CI sets it), which makes that a failure.
func TestBrowserDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the browser client and runs Chromium; skipped with -short")
	}
	chrome := browsertest.Chromium(t)
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("the go command is not in PATH")
	}
	display.TrackWasmSources(t, web.Package)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()

	wasm := filepath.Join(t.TempDir(), "demo.wasm")
	start := time.Now()
	if err := web.Build(ctx, wasm); err != nil {
		t.Fatal(err)
	}
	site, err := web.New(&web.Options{WASM: wasm})
	if err != nil {
		t.Fatal(err)
	}
	defer site.Close()
	size, gz := site.Sizes()
	t.Logf("built in %v: demo.wasm is %d bytes, %d gzip-compressed", time.Since(start).Round(time.Second), size, gz)

	// The server, as demo/server -web runs it, with a hook that notes the
	// page client's inputs (sim.FlyData) as the server applies them.
	var mu sync.Mutex
	var steers []sim.SteerData
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	host := sim.NewHost(&sim.HostConfig{
		Sim:    sim.Config{Entities: 2000},
		Logger: quiet,
		Page:   site,
		OnFly: func(ship *donburi.Entry, in sim.FlyData) {
			if ship.HasComponent(components.Name) && components.Name.Get(ship).Value == browserName {
				mu.Lock()
				steers = append(steers, sim.SteerData(in))
				mu.Unlock()
			}
		},
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	host.Serve(ln)
	runCtx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() {
		stop()
		wg.Wait()
		_ = host.Close()
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = host.Run(runCtx)
	}()
	syncURL, _ := sim.URLs(ln.Addr())
	bots, err := swarm.Dial(ctx, swarm.Config{URL: syncURL, N: 3, Rate: 30, Workers: 1, Calm: true, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer bots.Close()
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = bots.Run(runCtx)
	}()
	pageURL := web.PageURL(syncURL)
	checkServedPage(t, pageURL)

	bctx := browsertest.New(t, chrome, 1280, 720,
		chromedp.Flag("enable-unsafe-swiftshader", true)) // WebGL without a GPU: Ebitengine draws with WebGL 2
	if err := chromedp.Do(bctx, chromedp.EmulateViewport(1280, 720), chromedp.Navigate(pageURL+"?name="+browserName)); err != nil {
		t.Fatalf("navigate: %v", err)
	}
	// Once loaded, the page shows its loading state while the client
	// (megabytes, compiled by the browser) is not running yet.
	type screen struct {
		State, Display, Text string
	}
	first, err := chromedp.Run(bctx, chromedp.Evaluate[screen](`({State: ebisync.state,
		Display: getComputedStyle(document.getElementById("status")).display,
		Text: document.getElementById("message").textContent})`))
	if err != nil {
		t.Fatal(err)
	}
	if first.State != "loading" && first.State != "connecting" || first.Display == "none" ||
		!strings.HasPrefix(first.Text, "Loading the game") && first.Text != "Starting…" && !strings.HasPrefix(first.Text, "Connecting to ") {
		t.Errorf("the page just loaded shows %+v; want its loading state", first)
	}
	st := waitStatus(t, bctx, 3*time.Minute, "the client playing, its mirror holding entities and its ship, some drawn",
		func(s pageStatus) bool {
			return s.State == "playing" && s.Connected && s.Entities > 0 && s.Ship != nil && s.Drawn > 0
		})
	t.Logf("status: %+v", st)

	// The game fills the window, and the status screen is gone.
	type layout struct {
		W, H, CW, CH float64
		Status       string
	}
	lay, err := chromedp.Run(bctx, chromedp.Evaluate[layout](`(() => {
		const r = document.querySelector("canvas").getBoundingClientRect();
		return {W: innerWidth, H: innerHeight, CW: r.width, CH: r.height,
			Status: getComputedStyle(document.getElementById("status")).display};
	})()`))
	if err != nil {
		t.Fatal(err)
	}
	if lay.W != 1280 || lay.H != 720 || lay.CW != lay.W || lay.CH != lay.H || lay.Status != "none" {
		t.Errorf("window %gx%g, canvas %gx%g, status screen display %q: want the canvas filling a 1280x720 window, no status screen",
			lay.W, lay.H, lay.CW, lay.CH, lay.Status)
	}

	// A screenshot of the page shows the scene, with the network overlay
	// (F3), once the camera has settled on the ship. F3 is held until the
	// game has seen it: a press and release between two of its frames
	// (a few a second in software WebGL) would go unseen.
	key(t, bctx, input.DispatchKeyEventTypeKeyDown, "F3")
	waitStatus(t, bctx, time.Minute, "the network overlay shown after F3", func(s pageStatus) bool { return s.Overlay })
	key(t, bctx, input.DispatchKeyEventTypeKeyUp, "F3")
	frames := st.Frames
	waitStatus(t, bctx, time.Minute, "60 more frames, the overlay still shown", func(s pageStatus) bool {
		return s.Frames >= frames+60 && s.Drawn > 0 && s.Overlay
	})
	shot, err := chromedp.Run(bctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	shotPath := filepath.Join(t.TempDir(), "browser.png")
	if err := os.WriteFile(shotPath, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(shot))
	if err != nil {
		t.Fatalf("screenshot is not a PNG: %v", err)
	}
	if got := img.Bounds().Size(); got != (image.Point{1280, 720}) {
		t.Errorf("screenshot is %v, want the 1280x720 window", got)
	}
	checkPicture(t, img)
	if os.Getenv("EBISYNC_UPDATE_SCREENSHOT") == "1" && !t.Failed() {
		if err := os.WriteFile(filepath.Join("..", "..", "docs", "browser.png"), shot, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote docs/browser.png")
	}

	// Keys steer the ship. The page's canvas takes the keyboard once
	// clicked, as a player's would.
	if err := chromedp.Do(bctx, chromedp.MouseClickXY(640, 360)); err != nil {
		t.Fatal(err)
	}
	sawSteer := func(since int, ok func(sim.SteerData) bool) func() bool {
		return func() bool {
			mu.Lock()
			defer mu.Unlock()
			for _, s := range steers[since:] {
				if ok(s) {
					return true
				}
			}
			return false
		}
	}
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(steers)
	}
	before := waitStatus(t, bctx, time.Minute, "the ship", func(s pageStatus) bool { return s.Ship != nil })
	n := count()
	key(t, bctx, input.DispatchKeyEventTypeKeyDown, "ArrowUp")
	waitServer(t, time.Minute, "an input with thrust from the page's client", sawSteer(n, func(s sim.SteerData) bool { return s.Thrust > 0 }))
	moved := waitStatus(t, bctx, time.Minute, "the ship's replicated position 150 units away", func(s pageStatus) bool {
		return s.Ship != nil && math.Hypot(s.Ship.X-before.Ship.X, s.Ship.Y-before.Ship.Y) > 150
	})
	n = count()
	key(t, bctx, input.DispatchKeyEventTypeKeyUp, "ArrowUp")
	waitServer(t, time.Minute, "an input back to zero", sawSteer(n, func(s sim.SteerData) bool { return s == sim.SteerData{} }))
	t.Logf("ArrowUp: ship (%.0f, %.0f) → (%.0f, %.0f)", before.Ship.X, before.Ship.Y, moved.Ship.X, moved.Ship.Y)

	n = count()
	key(t, bctx, input.DispatchKeyEventTypeKeyDown, "KeyA")
	waitServer(t, time.Minute, "an input turning left", sawSteer(n, func(s sim.SteerData) bool { return s.Turn < 0 }))
	turned := waitStatus(t, bctx, time.Minute, "the ship's replicated heading turned by 1 rad", func(s pageStatus) bool {
		return s.Ship != nil && math.Abs(math.Remainder(s.Ship.Angle-moved.Ship.Angle, 2*math.Pi)) > 1
	})
	key(t, bctx, input.DispatchKeyEventTypeKeyUp, "KeyA")
	t.Logf("A: heading %.2f → %.2f rad", moved.Ship.Angle, turned.Ship.Angle)
	if turned.SteerRefused != 0 || turned.InputsSent < 3 {
		t.Errorf("the client sent %d inputs and had %d Steer mutations refused; want 3 or more, none refused", turned.InputsSent, turned.SteerRefused)
	}

	// Esc leaves the game, as on the desktop: the page says so, and the
	// server sees the client go.
	key(t, bctx, input.DispatchKeyEventTypeKeyDown, "Escape")
	waitStatus(t, bctx, time.Minute, "the client ended", func(s pageStatus) bool { return s.State == "ended" && !s.Connected })
	text, err := chromedp.Run(bctx, chromedp.Evaluate[string](`document.getElementById("status").innerText`))
	if err != nil || !strings.Contains(text, "You left the game") {
		t.Errorf("after Esc the page says %q (%v)", text, err)
	}
	waitServer(t, time.Minute, "the page's client leave", func() bool {
		for _, c := range host.Plugin().Stats().PerClient {
			if c.Name == browserName {
				return false
			}
		}
		return true
	})

	t.Run("failed connection", func(t *testing.T) {
		// The same page and files, on a server with no WebSocket endpoint.
		srv := &http.Server{Handler: site, ReadHeaderTimeout: 10 * time.Second}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go func() { _ = srv.Serve(ln) }()
		defer srv.Close()
		tab, closeTab := chromedp.NewContext(bctx)
		defer closeTab()
		if err := chromedp.Do(tab, chromedp.Navigate("http://"+ln.Addr().String()+"/")); err != nil {
			t.Fatalf("navigate: %v", err)
		}
		s := waitStatus(t, tab, time.Minute, "the client failed", func(s pageStatus) bool { return s.State == "failed" })
		text, err := chromedp.Run(tab, chromedp.Evaluate[string](`document.getElementById("status").innerText`))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(text, "Cannot connect to ws://"+ln.Addr().String()+"/sync") {
			t.Errorf("the page says %q (status %+v); want it to say it could not connect, and where to", text, s)
		}
		t.Logf("the page says: %q", text)
	})
}

// readStatus returns the page's status object.
func readStatus(ctx context.Context) (pageStatus, error) {
	raw, err := chromedp.Run(ctx, chromedp.Evaluate[json.RawMessage](`globalThis.ebisync ?? null`))
	if err != nil {
		return pageStatus{}, err
	}
	var s pageStatus
	err = json.Unmarshal(raw, &s)
	return s, err
}

// waitStatus polls the page's status object until ok holds, and returns
// it; after timeout it fails t with the last status.
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

// waitServer polls cond, a look at what the server saw, until it holds,
// or fails t after timeout.
func waitServer(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	testutil.Eventually(t, timeout, what, cond)
}

// keyCodes are the Windows virtual key codes of the keys the test presses.
var keyCodes = map[string]int64{"ArrowUp": 38, "KeyA": 65, "F3": 114, "Escape": 27}

// key sends a key event for the key with the DOM code code to the page.
func key(t *testing.T, ctx context.Context, typ input.DispatchKeyEventType, code string) {
	t.Helper()
	k := code
	if name, ok := strings.CutPrefix(code, "Key"); ok {
		k = strings.ToLower(name)
	}
	p := input.DispatchKeyEventParams{Type: typ, Code: code, Key: k, WindowsVirtualKeyCode: keyCodes[code], NativeVirtualKeyCode: keyCodes[code]}
	if typ == input.DispatchKeyEventTypeKeyDown && len(k) == 1 {
		p.Text = k
	}
	err := chromedp.Do(ctx, chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, input.DispatchKeyEvent, p)
		return err
	}))
	if err != nil {
		t.Fatalf("%s %s: %v", typ, code, err)
	}
}

// checkServedPage checks what a browser fetches before the client runs:
// the page, with its loading state, and the client, gzip-compressed for a
// browser that accepts it.
func checkServedPage(t *testing.T, pageURL string) {
	t.Helper()
	get := func(path, enc string) (*http.Response, []byte) {
		req, err := http.NewRequest(http.MethodGet, strings.TrimSuffix(pageURL, "/")+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Accept-Encoding", enc) // set by hand: net/http then leaves the body as sent
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp, b
	}
	resp, page := get("/", "identity")
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(page), "Loading the game") || !strings.Contains(string(page), `"sync":"/sync"`) {
		t.Errorf("GET /: %s\n%s", resp.Status, page)
	}
	resp, body := get("/demo.wasm", "gzip, deflate, br")
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Encoding") != "gzip" || resp.Header.Get("Content-Type") != "application/wasm" {
		t.Errorf("GET /demo.wasm with gzip: %s, %v", resp.Status, resp.Header)
	}
	t.Logf("demo.wasm as served with gzip: %d bytes (uncompressed %s)", len(body), resp.Header.Get("X-Uncompressed-Length"))
	resp, js := get("/wasm_exec.js", "identity")
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(js), "class Go") && !strings.Contains(string(js), "Go = class") {
		t.Errorf("GET /wasm_exec.js: %s", resp.Status)
	}
}

// checkPicture checks that img is a drawn scene: many colours, a fair part
// of it not the background, and vivid pixels in several hues (the ships
// and drones are in several hues, the interest ring in one; the grid,
// asteroids and text are grey).
func checkPicture(t *testing.T, img image.Image) {
	t.Helper()
	b := img.Bounds()
	counts := make(map[uint32]int)
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			counts[(r>>8)<<16|(g>>8)<<8|bl>>8]++
		}
	}
	var bg uint32
	for c, n := range counts {
		if n > counts[bg] {
			bg = c
		}
	}
	total := b.Dx() * b.Dy()
	other := total - counts[bg]
	var hues [12]int
	for c, n := range counts {
		r, g, bl := float64(c>>16), float64(c>>8&0xff), float64(c&0xff)
		hi, lo := max(r, g, bl), min(r, g, bl)
		if hi-lo < 80 || hi < 120 {
			continue
		}
		var h float64
		switch hi {
		case r:
			h = 60 * (g - bl) / (hi - lo)
		case g:
			h = 60*(bl-r)/(hi-lo) + 120
		default:
			h = 60*(r-g)/(hi-lo) + 240
		}
		if h < 0 {
			h += 360
		}
		hues[int(h/30)%12] += n
	}
	seen := 0
	for _, n := range hues {
		if n >= 20 {
			seen++
		}
	}
	t.Logf("screenshot: %d colours, background #%06x, %.1f%% other pixels, vivid pixels by 30° hue %v",
		len(counts), bg, 100*float64(other)/float64(total), hues)
	if len(counts) < 16 || other < total/50 || seen < 3 {
		t.Errorf("the screenshot is not a drawn scene: %d colours, %d of %d pixels not background, vivid pixels in %d hues",
			len(counts), other, total, seen)
	}
}
