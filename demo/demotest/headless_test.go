package demotest

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ebisync/ebisync/internal/display"
)

// TestHeadless runs the demo where there is no display, as on a server or
// in a container: -h prints the usage and exits 0, and without -h the demo
// says in one line what to do and exits 1, with no panic or stack trace.
// It needs no display itself.
func TestHeadless(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the demo; skipped with -short")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("the go command is not in PATH")
	}
	display.TrackSources(t, "github.com/ebisync/ebisync/demo")
	bin := filepath.Join(t.TempDir(), "demo")
	if out, err := exec.Command(goTool, "build", "-o", bin, "github.com/ebisync/ebisync/demo").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DISPLAY=") && !strings.HasPrefix(kv, "WAYLAND_DISPLAY=") {
			env = append(env, kv)
		}
	}
	run := func(args ...string) (stdout, stderr string, code int) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Env = env
		var o, e bytes.Buffer
		cmd.Stdout, cmd.Stderr = &o, &e
		err := cmd.Run()
		var ee *exec.ExitError
		switch {
		case err == nil:
		case errors.As(err, &ee):
			code = ee.ExitCode()
		default:
			t.Fatalf("%v: %v", args, err)
		}
		return o.String(), e.String(), code
	}

	for _, h := range []string{"-h", "-help", "--help"} {
		stdout, stderr, code := run(h)
		if code != 0 || !strings.Contains(stdout, "Usage: go run ./demo") || !strings.Contains(stdout, "-connect") {
			t.Errorf("demo %s: exit %d, stdout %q, stderr %q; want the usage and exit 0", h, code, stdout, stderr)
		}
	}
	stdout, stderr, code := run("-bots", "2")
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	if code != 1 || len(lines) != 1 || !strings.Contains(stderr, "xvfb-run") || !strings.Contains(stderr, "go run ./demo/server") {
		t.Errorf("demo without a display: exit %d, stderr %q; want one line that says what to do, and exit 1", code, stderr)
	}
	if strings.Contains(stderr+stdout, "panic") || strings.Contains(stderr+stdout, "goroutine") {
		t.Errorf("demo without a display printed a panic:\n%s", stderr)
	}
}
