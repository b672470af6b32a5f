package web_test

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ebisync/ebisync/demo/web"
)

// newTestSite serves a stand-in client and wasm_exec.js from files beside
// each other, as a prebuilt client is (-wasm).
func newTestSite(t *testing.T, wasm []byte) *httptest.Server {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "demo.wasm"), wasm, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "wasm_exec.js"), []byte("globalThis.Go = class {};\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	site, err := web.New(&web.Options{WASM: filepath.Join(dir, "demo.wasm"), Radius: 750})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = site.Close() })
	select {
	case <-site.Ready():
	default:
		t.Fatal("a site with a prebuilt client is not ready at once")
	}
	srv := httptest.NewServer(site)
	t.Cleanup(srv.Close)
	return srv
}

// TestSite: the page with its loading state and the client's settings,
// the client gzip-compressed exactly when the request accepts gzip, with
// validators, wasm_exec.js from beside the client, and nothing else.
func TestSite(t *testing.T) {
	wasm := append([]byte("\x00asm\x01\x00\x00\x00"), bytes.Repeat([]byte("ebisync "), 4096)...)
	srv := newTestSite(t, wasm)
	do := func(method, path string, hdr map[string]string) (*http.Response, []byte) {
		t.Helper()
		req, err := http.NewRequest(method, srv.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Accept-Encoding", "identity")
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := srv.Client().Do(req)
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

	resp, page := do("GET", "/", nil)
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET /: %s %v", resp.Status, resp.Header)
	}
	for _, want := range []string{`id="status"`, "Loading the game", `"sync":"/sync"`, `"radius":750`, `src="wasm_exec.js"`} {
		if !strings.Contains(string(page), want) {
			t.Errorf("the page lacks %q", want)
		}
	}

	for _, tc := range []struct {
		accept string
		gzip   bool
	}{
		{"", false},
		{"identity", false},
		{"gzip", true},
		{"deflate, gzip;q=0.5, br", true},
		{"GZIP", true},
		{"x-gzip", true},
		{"*", true},
		{"gzip;q=0", false},
		{"gzip; q=0.0, deflate", false},
		{"br", false},
	} {
		resp, b := do("GET", "/demo.wasm", map[string]string{"Accept-Encoding": tc.accept})
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/wasm" {
			t.Fatalf("GET /demo.wasm (Accept-Encoding %q): %s %v", tc.accept, resp.Status, resp.Header)
		}
		if got := resp.Header.Get("Content-Encoding") == "gzip"; got != tc.gzip {
			t.Errorf("Accept-Encoding %q: Content-Encoding %q, want gzip %v", tc.accept, resp.Header.Get("Content-Encoding"), tc.gzip)
			continue
		}
		if !strings.Contains(resp.Header.Get("Vary"), "Accept-Encoding") {
			t.Errorf("Accept-Encoding %q: Vary %q", tc.accept, resp.Header.Get("Vary"))
		}
		plain := b
		if tc.gzip {
			zr, err := gzip.NewReader(bytes.NewReader(b))
			if err != nil {
				t.Fatal(err)
			}
			if plain, err = io.ReadAll(zr); err != nil {
				t.Fatal(err)
			}
			if len(b) >= len(wasm)/10 {
				t.Errorf("gzip: %d bytes of %d", len(b), len(wasm))
			}
		}
		if !bytes.Equal(plain, wasm) {
			t.Errorf("Accept-Encoding %q: %d bytes, not the client's %d", tc.accept, len(plain), len(wasm))
		}
	}

	// A browser revalidates and gets 304 for what it holds.
	resp, _ = do("GET", "/demo.wasm", map[string]string{"Accept-Encoding": "gzip"})
	etag := resp.Header.Get("ETag")
	if etag == "" || resp.Header.Get("Cache-Control") != "no-cache" {
		t.Fatalf("no validator: %v", resp.Header)
	}
	if resp, _ := do("GET", "/demo.wasm", map[string]string{"Accept-Encoding": "gzip", "If-None-Match": etag}); resp.StatusCode != http.StatusNotModified {
		t.Errorf("revalidation: %s, want 304", resp.Status)
	}
	if resp, _ := do("GET", "/demo.wasm", map[string]string{"If-None-Match": etag}); resp.StatusCode != http.StatusOK {
		t.Errorf("the gzip validator matched the plain file: %s", resp.Status)
	}

	if resp, b := do("GET", "/wasm_exec.js", nil); resp.StatusCode != http.StatusOK || string(b) != "globalThis.Go = class {};\n" {
		t.Errorf("GET /wasm_exec.js: %s %q", resp.Status, b)
	}
	if resp, b := do("HEAD", "/demo.wasm", nil); resp.StatusCode != http.StatusOK || len(b) != 0 || resp.ContentLength != int64(len(wasm)) {
		t.Errorf("HEAD /demo.wasm: %s, %d bytes, length %d", resp.Status, len(b), resp.ContentLength)
	}
	if resp, _ := do("GET", "/../go.mod", nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /../go.mod: %s, want 404", resp.Status)
	}
	if resp, _ := do("GET", "/web.go", nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /web.go: %s, want 404", resp.Status)
	}
	if resp, _ := do("POST", "/", nil); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /: %s, want 405", resp.Status)
	}
}

func TestPageURL(t *testing.T) {
	for in, want := range map[string]string{
		"ws://127.0.0.1:8080/sync": "http://127.0.0.1:8080/",
		"wss://game.example/sync":  "https://game.example/",
		"ws://[::1]:9/sync":        "http://[::1]:9/",
	} {
		if got := web.PageURL(in); got != want {
			t.Errorf("PageURL(%q) = %q, want %q", in, got, want)
		}
	}
}
