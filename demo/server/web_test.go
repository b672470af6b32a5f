package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"net/http"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ebisync/ebisync/demo/web"
	"github.com/ebisync/ebisync/internal/display"
	"github.com/ebisync/ebisync/internal/testutil"
)

// TestRunWeb: with -web the server says where to play in a browser and
// serves, beside /sync on the same origin, the page at once, the client
// (503 "building" until the go command has built it, then gzip-compressed
// to a browser that accepts it), and wasm_exec.js; the build's line gives
// the client's size and its gzip size as served.
func TestRunWeb(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the browser client; skipped with -short")
	}
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("the go command is not in PATH")
	}
	display.TrackWasmSources(t, web.Package)
	var out testutil.SyncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-listen", "127.0.0.1:0", "-entities", "50", "-stats", "0", "-web"}, &out)
	}()
	page := out.Await(t, time.Minute, regexp.MustCompile(`play in a browser at (http://\S+/)`))[1]

	get := func(path, enc string) (*http.Response, []byte) {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, strings.TrimSuffix(page, "/")+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Accept-Encoding", enc) // set by hand: net/http leaves the body as sent
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
	if resp, b := get("/", "identity"); resp.StatusCode != http.StatusOK || !strings.Contains(string(b), "Loading the game") {
		t.Errorf("GET /: %s\n%s", resp.Status, b)
	}
	if resp, b := get("/demo.wasm", "gzip"); resp.StatusCode == http.StatusServiceUnavailable {
		if resp.Header.Get("Retry-After") == "" || !strings.Contains(string(b), "building") {
			t.Errorf("GET /demo.wasm during the build: %s %v %q", resp.Status, resp.Header, b)
		}
	} else {
		t.Logf("GET /demo.wasm before the build's line: %s", resp.Status)
	}

	m := out.Await(t, 5*time.Minute, regexp.MustCompile(`browser client: (ready in \S+: demo.wasm is [\d.]+ MB, [\d.]+ MB as served with gzip|the build failed.*)`))
	if !strings.HasPrefix(m[1], "ready") {
		t.Fatalf("browser client: %s", m[1])
	}
	t.Logf("browser client: %s", m[1])
	resp, b := get("/demo.wasm", "gzip, deflate, br")
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Encoding") != "gzip" || resp.Header.Get("Content-Type") != "application/wasm" {
		t.Fatalf("GET /demo.wasm accepting gzip: %s %v", resp.Status, resp.Header)
	}
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	wasm, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(wasm, []byte("\x00asm")) || resp.Header.Get("X-Uncompressed-Length") == "" {
		t.Errorf("GET /demo.wasm: %d bytes gzip-compressed, %d plain, starting %q: not WebAssembly", len(b), len(wasm), wasm[:min(8, len(wasm))])
	}
	if resp, plain := get("/demo.wasm", "identity"); resp.Header.Get("Content-Encoding") != "" || !bytes.Equal(plain, wasm) {
		t.Errorf("GET /demo.wasm without gzip: %s %v, %d bytes", resp.Status, resp.Header, len(plain))
	}
	if resp, b := get("/wasm_exec.js", "identity"); resp.StatusCode != http.StatusOK || !strings.Contains(string(b), "globalThis.Go") {
		t.Errorf("GET /wasm_exec.js: %s", resp.Status)
	}
	// The WebSocket endpoint is still the server's.
	if resp, _ := get("/sync", "identity"); resp.StatusCode != http.StatusUpgradeRequired {
		t.Errorf("GET /sync without an upgrade: %s, want 426", resp.Status)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
}
