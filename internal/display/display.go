// Package display finds a display for tests that run Ebitengine in a child
// process: importing ebiten on Linux panics without one.
package display

import (
	"os"
	"os/exec"
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
