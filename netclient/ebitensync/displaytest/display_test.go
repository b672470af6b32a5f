package displaytest

import (
	"context"
	"os/exec"
	"testing"
	"time"

	"github.com/ebisync/ebisync/internal/display"
)

// TestEbitensync runs ebitensync's tests (and compiles its examples) in a
// child `go test` with a display.
func TestEbitensync(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("the go command is not in PATH")
	}
	display.TrackSources(t, "github.com/ebisync/ebisync/netclient/ebitensync")
	argv := display.Wrapper(t)
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
