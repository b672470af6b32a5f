package demotest

import (
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestCacheSeesDemoSources: the demo's tests, and ebitensync's display
// test, build and run their code in a child process, which the go
// command's test cache cannot see. They read the sources of the packages
// they run (display.TrackSources), so that editing one reruns them. This
// test proves it on a copy of the module: a second run of TestHeadless and
// TestEbitensync is "(cached)"; after an edit of demo/game.go TestHeadless
// runs again (and TestEbitensync, which does not run the demo, stays
// cached); after an edit of netclient/ebitensync both run again.
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
	pkgs := map[string]string{"demo": "demo/demotest", "ebitensync": "netclient/ebitensync/displaytest"}
	run := func() string {
		t.Helper()
		cmd := exec.Command(goTool, "test", "-run", "^(TestHeadless|TestEbitensync)$", "./"+pkgs["demo"], "./"+pkgs["ebitensync"])
		cmd.Dir = dst
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("go test in the copy: %v\n%s", err, out)
		}
		return string(out)
	}
	// cached reports whether out gives package pkg's result as "(cached)".
	cached := func(out, pkg string) bool {
		for _, line := range strings.Split(out, "\n") {
			if strings.Contains(line, "/"+pkgs[pkg]+"\t") || strings.HasSuffix(line, "/"+pkgs[pkg]) {
				return strings.Contains(line, "(cached)")
			}
		}
		t.Fatalf("no result for %s in:\n%s", pkgs[pkg], out)
		return false
	}
	edit := func(file string) {
		t.Helper()
		path := filepath.Join(dst, filepath.FromSlash(file))
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, append(b, "\n// an edit\n"...), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	run()
	if out := run(); !cached(out, "demo") || !cached(out, "ebitensync") {
		t.Fatalf("the second run was not cached, so this test proves nothing:\n%s", out)
	}
	edit("demo/game.go")
	if out := run(); cached(out, "demo") || !cached(out, "ebitensync") {
		t.Fatalf("after an edit of demo/game.go, want the demo's test rerun and ebitensync's cached:\n%s", out)
	}
	edit("netclient/ebitensync/overlay.go")
	if out := run(); cached(out, "demo") || cached(out, "ebitensync") {
		t.Fatalf("after an edit of netclient/ebitensync/overlay.go, want both tests rerun:\n%s", out)
	}
}
