package web

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
)

// Package is the import path of the browser client: the demo window,
// whose GOOS=js build runs in the page.
const Package = "github.com/ebisync/ebisync/demo"

// BuildCommand is the shell command, run in the module's directory, that
// builds the browser client by hand, to serve it with -wasm. Its flags
// are Build's: -trimpath and -ldflags="-s -w" leave out file paths, the
// symbol table and DWARF, which the page does not use.
const BuildCommand = `GOOS=js GOARCH=wasm go build -trimpath -ldflags="-s -w" -o demo.wasm ./demo`

// buildFlags are the go build flags of BuildCommand.
var buildFlags = []string{"-trimpath", "-ldflags=-s -w"}

// Build builds the browser client (Package, GOOS=js GOARCH=wasm) into
// the file out with the go command on PATH. It runs in the module's
// directory when the sources are on this machine (as under go run), else
// in the working directory. The go command's build cache makes a second
// build of the same sources quick.
func Build(ctx context.Context, out string) error {
	goTool, err := exec.LookPath("go")
	if err != nil {
		return fmt.Errorf("no go command on PATH to build the browser client; build it with %s and pass -wasm demo.wasm", BuildCommand)
	}
	args := append(append([]string{"build"}, buildFlags...), "-o", out, Package)
	cmd := exec.CommandContext(ctx, goTool, args...)
	cmd.Env = append(os.Environ(), "GOOS=js", "GOARCH=wasm")
	cmd.Dir = moduleDir()
	if b, err := cmd.CombinedOutput(); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("GOOS=js GOARCH=wasm go %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(b)))
	}
	return nil
}

// moduleDir returns the module's directory when this source file is on
// this machine, or "" (the working directory).
func moduleDir() string {
	_, file, _, ok := runtime.Caller(0)
	if !ok || !filepath.IsAbs(file) {
		return "" // built with -trimpath
	}
	dir := filepath.Join(filepath.Dir(file), "..", "..")
	if _, err := os.Stat(filepath.Join(dir, "go.mod")); err != nil {
		return ""
	}
	return dir
}

// goWasmExec returns the path of the wasm_exec.js of the go command on
// PATH, the Go release that Build uses.
func goWasmExec() (string, error) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		return "", errors.New("no go command on PATH to find wasm_exec.js in; put the wasm_exec.js of the Go release that built the .wasm beside it")
	}
	out, err := exec.Command(goTool, "env", "GOROOT").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOROOT: %w", err)
	}
	root := strings.TrimSpace(string(out))
	for _, rel := range []string{"lib/wasm/wasm_exec.js", "misc/wasm/wasm_exec.js"} { // Go 1.24 moved it to lib
		p := filepath.Join(root, filepath.FromSlash(rel))
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("no wasm_exec.js in %s/lib/wasm", root)
}
