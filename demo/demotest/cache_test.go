package demotest

import (
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestCacheSeesDemoSources: the demo's tests build and run it in a child
// process, which the go command's test cache cannot see. They read the
// demo's sources (display.TrackSources), so that editing one reruns them.
// This test proves it on a copy of the module: a second run of TestHeadless
// is "(cached)", and a run after an edit of the demo's Draw is not.
func TestCacheSeesDemoSources(t *testing.T) {
	if testing.Short() {
		t.Skip("copies the module and runs go test three times; skipped with -short")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("the go command is not in PATH")
	}
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	dst := t.TempDir()
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if d.IsDir() {
			if strings.HasPrefix(d.Name(), ".") && rel != "." || d.Name() == "testdata" || d.Name() == "docs" {
				return filepath.SkipDir
			}
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	run := func() string {
		t.Helper()
		cmd := exec.Command(goTool, "test", "-run", "^TestHeadless$", "./demo/demotest")
		cmd.Dir = dst
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("go test in the copy: %v\n%s", err, out)
		}
		return string(out)
	}
	run()
	if out := run(); !strings.Contains(out, "(cached)") {
		t.Fatalf("the second run was not cached, so this test proves nothing:\n%s", out)
	}
	game := filepath.Join(dst, "demo", "game.go")
	b, err := os.ReadFile(game)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(game, append(b, "\n// an edit\n"...), 0o644); err != nil {
		t.Fatal(err)
	}
	if out := run(); strings.Contains(out, "(cached)") {
		t.Fatalf("after an edit of demo/game.go the test result was still cached:\n%s", out)
	}
}
