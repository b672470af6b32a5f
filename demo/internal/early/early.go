// Package early answers the demo's -h, and stops it with one line when
// there is no display, before Ebitengine's init, which panics on Linux
// without one. The demo's main package imports it for that side effect.
//
// It runs first because packages are initialised in the order of their
// import paths, each once its own imports are (Go 1.21 and later), and
// github.com/ebisync sorts before github.com/hajimehoshi; this package
// imports nothing that imports Ebitengine.
package early

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/ebisync/ebisync/demo/internal/cli"
)

func init() {
	if len(os.Args) == 0 {
		return
	}
	if _, err := cli.Parse(os.Args[1:], io.Discard); errors.Is(err, flag.ErrHelp) {
		_, _ = cli.Parse(os.Args[1:], os.Stdout) // prints the usage
		os.Exit(0)
	}
	// Bad flags are reported by main, once there is a display; without
	// one, the missing display is the first thing to fix.
	if !cli.HasDisplay() {
		fmt.Fprintln(os.Stderr, cli.NoDisplay)
		os.Exit(1)
	}
}
