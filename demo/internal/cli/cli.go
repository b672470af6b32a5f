// Package cli is the demo window's command line, without Ebitengine: the
// demo's -h and its no-display message must work where Ebitengine cannot
// start (see package demo/internal/early).
package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"time"
)

// Config is the demo's command line.
type Config struct {
	Listen     string
	Connect    string
	Bots       int
	BotsSet    bool // -bots was given
	Entities   int
	Radius     float64
	Tick       int
	Name       string
	Screenshot string
	Frames     int
	Width      int
	Height     int
	Autopilot  bool
	Verbose    bool
	CPUProfile string
	Web        bool          // with Listen: serve the browser client too
	WASM       string        // a prebuilt browser client to serve
	Latency    time.Duration // round trip added to the window's connection
	Jitter     time.Duration // variation of Latency, ±Jitter/2 each way
}

// flags returns the demo's flag set writing into c.
func flags(c *Config, out io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() {
		fmt.Fprintf(out, "Usage: go run ./demo [flags]\n\n"+
			"The ebisync desktop demo: a server, bots and your window in one process.\n"+
			"Steer with WASD or the arrow keys, zoom with Q/E or the wheel, F3 shows the network overlay.\n"+
			"It needs a display; on a machine without one, use xvfb-run, or run the headless\n"+
			"server with go run ./demo/server.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	fs.StringVar(&c.Listen, "listen", "", "host: run the server on `ADDR` (e.g. :8080) and play; default a private loopback port")
	fs.StringVar(&c.Connect, "connect", "", "join the server at `URL` (ws://host:port/sync) instead of running one")
	fs.IntVar(&c.Bots, "bots", 4, "bot clients to run alongside (with -connect: none unless given)")
	fs.IntVar(&c.Entities, "entities", 3000, "asteroids and drones in the world (server)")
	fs.Float64Var(&c.Radius, "radius", 600, "interest radius in world units")
	fs.IntVar(&c.Tick, "tick", 30, "server tick rate in `Hz`")
	fs.StringVar(&c.Name, "name", "player", "your name, shown above your ship")
	fs.StringVar(&c.Screenshot, "screenshot", "", "render -frames frames, write the screen to `FILE` (PNG) and exit")
	fs.IntVar(&c.Frames, "frames", 120, "frames to render before -screenshot")
	fs.IntVar(&c.Width, "width", 1280, "window width in `pixels`")
	fs.IntVar(&c.Height, "height", 720, "window height in `pixels`")
	fs.BoolVar(&c.Autopilot, "autopilot", false, "fly by yourself when no key is pressed (on with -screenshot)")
	fs.BoolVar(&c.Verbose, "v", false, "debug logs")
	fs.StringVar(&c.CPUProfile, "cpuprofile", "", "write a CPU profile to `FILE`")
	fs.BoolVar(&c.Web, "web", true, "with -listen, also serve the game in the browser at http://ADDR/ (built with the go command unless -wasm)")
	fs.StringVar(&c.WASM, "wasm", "", "with -listen, serve this prebuilt browser client (`FILE`, see go doc ./demo/web) instead of building one")
	fs.DurationVar(&c.Latency, "latency", 0, "add `DURATION` of round trip to your window's connection (through a local proxy; bots connect directly)")
	fs.DurationVar(&c.Jitter, "jitter", 0, "vary the added round trip by up to ±`DURATION`")
	return fs
}

// Parse parses args (without the program name). It returns flag.ErrHelp
// after printing the usage for -h.
func Parse(args []string, out io.Writer) (Config, error) {
	var c Config
	fs := flags(&c, out)
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q (flags start with -; see -h)", fs.Arg(0))
	}
	fs.Visit(func(f *flag.Flag) { c.BotsSet = c.BotsSet || f.Name == "bots" })
	if c.Connect != "" && c.Listen != "" {
		return c, errors.New("-listen and -connect exclude each other")
	}
	if c.Entities < 0 || c.Bots < 0 {
		return c, errors.New("-entities and -bots must be 0 or more")
	}
	if c.Latency < 0 || c.Jitter < 0 {
		return c, errors.New("-latency and -jitter must be 0 or more")
	}
	if c.Radius <= 0 || c.Tick <= 0 || c.Frames <= 0 || c.Width <= 0 || c.Height <= 0 {
		return c, errors.New("-radius, -tick, -frames, -width and -height must be more than 0")
	}
	return c, nil
}

// NoDisplay is the one line the demo prints when it has no display.
const NoDisplay = "demo: no display (DISPLAY is not set): run it under xvfb-run (xvfb-run -a go run ./demo), or run the headless server: go run ./demo/server"

// needsDisplay reports whether this system's windows need DISPLAY or
// WAYLAND_DISPLAY (X11 and Wayland systems do; Windows and macOS do not).
func needsDisplay() bool {
	switch runtime.GOOS {
	case "linux", "freebsd", "openbsd", "netbsd", "dragonfly":
		return true
	}
	return false
}

// HasDisplay reports whether a window can open.
func HasDisplay() bool {
	return !needsDisplay() || os.Getenv("DISPLAY") != "" || os.Getenv("WAYLAND_DISPLAY") != ""
}
