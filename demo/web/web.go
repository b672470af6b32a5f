// Package web serves the demo's browser client: a page, the demo window
// built for GOOS=js GOARCH=wasm, and the wasm_exec.js of the Go release
// that built it. A demo server mounts it beside its WebSocket endpoint
// (sim.HostConfig.Page), so the page's client connects on the page's own
// origin, which the server's Origin check accepts as it is.
//
//	go run ./demo/server -web         # then open http://127.0.0.1:8080/
//
// The page shows a loading state while the .wasm downloads (or while the
// server still builds it), fills the window with the game, and says in
// words on the page why a connection failed or was lost. Files are sent
// gzip-compressed to a browser that accepts it.
//
// # The status object
//
// The client in the page keeps globalThis.ebisync up to date, for the page
// and for tests that drive a browser:
//
//	state      "loading", "connecting", "playing", "failed" or "ended"
//	url        the server URL the client dials
//	error      why the client failed ("" otherwise)
//	connected  whether the client is connected now (it reconnects by itself)
//	entities   entities in the client's mirror world
//	drawn      entities drawn in the last frame
//	clientID   the client id the server gave this connection
//	ship       null until the player's ship is mirrored, then its
//	           replicated {x, y, angle}: the newest values from the server
//	inputsSent    predicted inputs sent (sim.FlyData, one a frame while
//	              the ship is mirrored): how the player steers
//	steerRefused  Steer mutations the server did not accept (the page's
//	              player steers by inputs, so 0 unless the game changes)
//	frames     frames drawn
//	overlay    whether the network overlay (F3) is shown
package web

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

//go:embed index.html
var indexHTML string

var pageTemplate = template.Must(template.New("index.html").Parse(indexHTML))

// Options configures a Site. A nil *Options means the defaults.
type Options struct {
	// WASM is the browser client, built beforehand with BuildCommand.
	// Default: New builds it with Build, in the background, and keeps it
	// in memory; until it is ready the page says that the server is
	// building the game.
	WASM string
	// WASMExec is the wasm_exec.js of the Go release that built WASM.
	// Default: the wasm_exec.js beside WASM, else the go command's
	// ($(go env GOROOT)/lib/wasm).
	WASMExec string
	// Radius is the interest radius the page's client asks for: the
	// server's default. Default 600.
	Radius float64
	// Out receives a line when the background build starts, and one when
	// it is done, with the sizes, or failed. Default none.
	Out io.Writer
}

// pageConfig is what the page hands the client (globalThis.ebisyncConfig).
type pageConfig struct {
	Sync   string  `json:"sync"`   // the WebSocket endpoint's path on the page's origin
	Radius float64 `json:"radius"` // interest radius
}

// Site is the browser client's files, an http.Handler:
//
//	/              the page
//	/demo.wasm     the client (503 while it is being built)
//	/wasm_exec.js  the Go runtime's loader
//
// Every other path is 404. Mount it beside the WebSocket endpoint, /sync.
type Site struct {
	page, exec *asset

	mu       sync.Mutex
	wasm     *asset
	buildErr error

	ready  chan struct{} // closed once wasm or buildErr is set
	cancel context.CancelFunc
	done   chan struct{} // closed when the build goroutine is gone
}

// New returns the site. Without Options.WASM it starts building the
// client; Ready tells when it is done. Close releases the site.
func New(opts *Options) (*Site, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.Radius <= 0 {
		o.Radius = 600
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	var page bytes.Buffer
	if err := pageTemplate.Execute(&page, pageConfig{Sync: "/sync", Radius: o.Radius}); err != nil {
		return nil, fmt.Errorf("web: page: %w", err)
	}
	execPath := o.WASMExec
	if execPath == "" && o.WASM != "" {
		if p := filepath.Join(filepath.Dir(o.WASM), "wasm_exec.js"); fileExists(p) {
			execPath = p
		}
	}
	if execPath == "" {
		p, err := goWasmExec()
		if err != nil {
			return nil, fmt.Errorf("web: %w", err)
		}
		execPath = p
	}
	execJS, err := os.ReadFile(execPath)
	if err != nil {
		return nil, fmt.Errorf("web: %w", err)
	}
	s := &Site{
		page:  newAsset(page.Bytes(), "text/html; charset=utf-8"),
		exec:  newAsset(execJS, "text/javascript; charset=utf-8"),
		ready: make(chan struct{}),
		done:  make(chan struct{}),
	}
	if o.WASM != "" {
		b, err := os.ReadFile(o.WASM)
		if err != nil {
			return nil, fmt.Errorf("web: %w", err)
		}
		s.wasm = newAsset(b, "application/wasm")
		close(s.ready)
		close(s.done)
		s.cancel = func() {}
		return s, nil
	}
	var ctx context.Context
	ctx, s.cancel = context.WithCancel(context.Background())
	go s.build(ctx, o.Out)
	return s, nil
}

// build builds the client and publishes it, or why its build failed.
func (s *Site) build(ctx context.Context, out io.Writer) {
	defer close(s.done)
	fmt.Fprintf(out, "browser client: building (%s)\n", BuildCommand)
	start := time.Now()
	a, err := buildAsset(ctx)
	s.mu.Lock()
	s.wasm, s.buildErr = a, err
	s.mu.Unlock()
	close(s.ready)
	switch {
	case err == nil:
		fmt.Fprintf(out, "browser client: ready in %.0fs: demo.wasm is %s, %s as served with gzip\n",
			time.Since(start).Seconds(), megabytes(len(a.plain)), megabytes(len(a.gz)))
	case ctx.Err() == nil:
		fmt.Fprintf(out, "browser client: the build failed; the page says so. %v\n", err)
	}
}

// buildAsset builds the client into a temporary directory and returns it.
func buildAsset(ctx context.Context) (*asset, error) {
	dir, err := os.MkdirTemp("", "ebisync-web-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "demo.wasm")
	if err := Build(ctx, path); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return newAsset(b, "application/wasm"), nil
}

// Ready is closed once the client is built, or its build failed (Err).
func (s *Site) Ready() <-chan struct{} { return s.ready }

// Err returns why the client could not be built, once Ready is closed.
func (s *Site) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buildErr
}

// Sizes returns the size of the client and of its gzip encoding, as
// served, in bytes; zeros until it is ready.
func (s *Site) Sizes() (wasm, gzipped int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.wasm == nil {
		return 0, 0
	}
	return len(s.wasm.plain), len(s.wasm.gz)
}

// Close stops a build in progress. The site serves what it has.
func (s *Site) Close() error {
	s.cancel()
	<-s.done
	return nil
}

// ServeHTTP serves the page, the client and wasm_exec.js.
func (s *Site) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "only GET and HEAD", http.StatusMethodNotAllowed)
		return
	}
	switch r.URL.Path {
	case "/", "/index.html":
		s.page.serve(w, r)
	case "/wasm_exec.js":
		s.exec.serve(w, r)
	case "/demo.wasm":
		s.mu.Lock()
		a, err := s.wasm, s.buildErr
		s.mu.Unlock()
		switch {
		case a != nil:
			a.serve(w, r)
		case err != nil:
			http.Error(w, "the server could not build the game: "+truncate(err.Error(), 4000), http.StatusInternalServerError)
		default:
			w.Header().Set("Retry-After", "2")
			http.Error(w, "the server is still building the game", http.StatusServiceUnavailable)
		}
	default:
		http.NotFound(w, r)
	}
}

// PageURL returns the page's URL on the server whose WebSocket endpoint
// is syncURL (ws://host:port/sync gives http://host:port/).
func PageURL(syncURL string) string {
	u := strings.TrimSuffix(syncURL, "/sync") + "/"
	if rest, ok := strings.CutPrefix(u, "wss://"); ok {
		return "https://" + rest
	}
	return "http://" + strings.TrimPrefix(u, "ws://")
}

// asset is one file, kept whole and gzip-compressed.
type asset struct {
	plain, gz []byte
	ctype     string
	etag      string
	mod       time.Time
}

func newAsset(b []byte, ctype string) *asset {
	var gz bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&gz, gzip.BestCompression) // a valid level: no error
	_, _ = zw.Write(b)                                      // a bytes.Buffer does not fail
	_ = zw.Close()
	sum := sha256.Sum256(b)
	return &asset{plain: b, gz: gz.Bytes(), ctype: ctype, etag: hex.EncodeToString(sum[:8]), mod: time.Now()}
}

// serve writes the asset, gzip-compressed when the request accepts it,
// with validators so that a browser revalidates (a rebuilt client
// replaces it) without downloading it again. The
// X-Uncompressed-Length header lets the page show progress.
func (a *asset) serve(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", a.ctype)
	h.Set("Cache-Control", "no-cache")
	h.Add("Vary", "Accept-Encoding")
	h.Set("X-Uncompressed-Length", strconv.Itoa(len(a.plain)))
	body, etag := a.plain, a.etag
	if acceptsGzip(r.Header.Get("Accept-Encoding")) {
		body, etag = a.gz, a.etag+"-gzip"
		h.Set("Content-Encoding", "gzip")
	}
	h.Set("ETag", `"`+etag+`"`)
	http.ServeContent(w, r, "", a.mod, bytes.NewReader(body))
}

// acceptsGzip reports whether an Accept-Encoding header value accepts gzip
// (by name or "*", with a q-value other than 0).
func acceptsGzip(header string) bool {
	for part := range strings.SplitSeq(header, ",") {
		coding, params, _ := strings.Cut(part, ";")
		coding = strings.ToLower(strings.TrimSpace(coding))
		if coding != "gzip" && coding != "x-gzip" && coding != "*" {
			continue
		}
		q := 1.0
		for p := range strings.SplitSeq(params, ";") {
			k, v, _ := strings.Cut(strings.TrimSpace(p), "=")
			if strings.EqualFold(k, "q") {
				if f, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil {
					q = f
				}
			}
		}
		if q > 0 {
			return true
		}
	}
	return false
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "…"
}

func megabytes(n int) string { return fmt.Sprintf("%.1f MB", float64(n)/1e6) }
