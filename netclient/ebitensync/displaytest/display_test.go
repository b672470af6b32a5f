package displaytest

import (
	"context"
	"os"
	"os/exec"
	"testing"
	"time"
)

// TestEbitensync runs ebitensync's tests (and compiles its examples) in a
// child `go test` with a display.
func TestEbitensync(t *testing.T) {
	var argv []string
	if os.Getenv("DISPLAY") == "" {
		xvfb, err := exec.LookPath("xvfb-run")
		if err != nil {
			msg := "no display: DISPLAY is unset and xvfb-run is not installed (apt-get install xvfb xauth)"
			if os.Getenv("EBISYNC_REQUIRE_DISPLAY") == "1" {
				t.Fatal(msg + "; EBISYNC_REQUIRE_DISPLAY=1 requires one")
			}
			t.Skip(msg)
		}
		argv = []string{xvfb, "-a", "-s", "-screen 0 1280x800x24"}
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("the go command is not in PATH")
	}
	argv = append(argv, goTool, "test", "-tags", "ebisync_display", "-count=1", "-v")
	if raceEnabled {
		argv = append(argv, "-race")
	}
	argv = append(argv, "github.com/ebisync/ebisync/netclient/ebitensync")

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput()
	t.Logf("%v:\n%s", argv, out)
	if err != nil {
		t.Fatalf("ebitensync tests failed: %v", err)
	}
}
