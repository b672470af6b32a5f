// Package browsertest starts a headless Chromium, driven by chromedp, for
// the tests that check what a person sees in a browser. It is for tests
// only; its functions fail or skip the test they are given.
package browsertest

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// Chromium returns the path of a Chrome or Chromium: EBISYNC_CHROMIUM, or
// the first of the usual names on PATH. Without one it skips t, or fails
// it when EBISYNC_REQUIRE_BROWSER is 1 (as in CI).
func Chromium(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("EBISYNC_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "headless-shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	msg := "no Chromium: install Debian's chromium package (apt-get install chromium), or set EBISYNC_CHROMIUM to a Chrome or Chromium binary"
	if os.Getenv("EBISYNC_REQUIRE_BROWSER") == "1" {
		t.Fatal(msg + "; EBISYNC_REQUIRE_BROWSER=1 requires one")
	}
	t.Skip(msg)
	return ""
}

// New starts the headless Chromium at path chrome with a width×height
// window and the extra allocator options, for the rest of the test, and
// returns its context. As root it runs without Chromium's sandbox, which
// refuses root. The page's console and uncaught exceptions are logged if
// the test fails.
func New(t *testing.T, chrome string, width, height int, extra ...chromedp.ExecAllocatorOption) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chrome), chromedp.WindowSize(width, height))
	opts = append(opts, extra...)
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox)
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	bctx, cancel := chromedp.NewContext(actx)
	var mu sync.Mutex
	var console []string
	if err := chromedp.Listen(bctx, func(ev any) {
		var line string
		switch ev := ev.(type) {
		case *runtime.EventConsoleAPICalled:
			var parts []string
			for _, a := range ev.Args {
				parts = append(parts, strings.Trim(string(a.Value), `"`))
			}
			line = string(ev.Type) + ": " + strings.Join(parts, " ")
		case *runtime.EventExceptionThrown:
			line = "exception: " + ev.ExceptionDetails.Text
			if ex := ev.ExceptionDetails.Exception; ex != nil {
				line += " " + ex.Description
			}
		default:
			return
		}
		mu.Lock()
		console = append(console, line)
		mu.Unlock()
	}); err != nil {
		cancel()
		cancelAlloc()
		t.Fatalf("start Chromium (%s): %v", chrome, err)
	}
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
		mu.Lock()
		defer mu.Unlock()
		if len(console) > 0 && t.Failed() {
			t.Logf("the page's console:\n%s", strings.Join(console, "\n"))
		}
	})
	return bctx
}
