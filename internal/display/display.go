// Package display finds a display for tests that run Ebitengine in a child
// process: importing ebiten on Linux panics without one.
package display

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Wrapper returns the command prefix that gives a child process a display:
// nothing when DISPLAY is set, else xvfb-run. Without either it skips t,
// unless EBISYNC_REQUIRE_DISPLAY=1, which makes a missing display a
// failure (CI sets it).
func Wrapper(t testing.TB) []string {
	t.Helper()
	if os.Getenv("DISPLAY") != "" {
		return nil
	}
	xvfb, err := exec.LookPath("xvfb-run")
	if err != nil {
		msg := "no display: DISPLAY is unset and xvfb-run is not installed (apt-get install xvfb xauth)"
		if os.Getenv("EBISYNC_REQUIRE_DISPLAY") == "1" {
			t.Fatal(msg + "; EBISYNC_REQUIRE_DISPLAY=1 requires one")
		}
		t.Skip(msg)
	}
	return []string{xvfb, "-a", "-s", "-screen 0 1920x1200x24"}
}

// TrackSources reads every Go source file of the packages in this module
// that pkgs import (pkgs included), test files too. A test that builds or
// runs those packages in a child process calls it, so that the go command
// sees the files: its test cache then reruns the test when one of them
// changes, instead of reporting a stale "(cached)" pass.
func TrackSources(t testing.TB, pkgs ...string) {
	t.Helper()
	trackSources(t, nil, pkgs)
}

// TrackWasmSources is TrackSources for a test that builds pkgs for the
// browser (GOOS=js GOARCH=wasm), whose packages are not all the host's.
func TrackWasmSources(t testing.TB, pkgs ...string) {
	t.Helper()
	trackSources(t, []string{"GOOS=js", "GOARCH=wasm"}, pkgs)
}

// trackSources reads the sources of pkgs and their dependencies in this
// module, as go list lists them with env added to the environment.
func trackSources(t testing.TB, env, pkgs []string) {
	t.Helper()
	args := append([]string{"list", "-deps", "-test", "-f", "{{if .Module}}{{if .Module.Main}}{{.Dir}}{{end}}{{end}}"}, pkgs...)
	cmd := exec.Command("go", args...)
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	seen := map[string]bool{}
	for _, dir := range strings.Fields(string(out)) {
		if seen[dir] {
			continue
		}
		seen[dir] = true
		files, err := filepath.Glob(filepath.Join(dir, "*.go"))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			if _, err := os.ReadFile(f); err != nil {
				t.Fatal(err)
			}
		}
	}
	if len(seen) == 0 {
		t.Fatalf("go list found no package of this module in %v", pkgs)
	}
}
