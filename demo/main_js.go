//go:build js

package main

// The browser client: the demo's window, built for GOOS=js GOARCH=wasm and
// served with its page by the demo's server (package demo/web). It joins
// the server that served the page, at the WebSocket endpoint on the page's
// own origin, and keeps the page's status object, globalThis.ebisync, up
// to date (its fields are listed in package demo/web). The player's name
// is the page's ?name= parameter (default "player").

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"syscall/js"
	"time"

	"github.com/hajimehoshi/ebiten/v2"

	"github.com/ebisync/ebisync/components"
	"github.com/ebisync/ebisync/demo/sim"
	"github.com/ebisync/ebisync/netclient"
)

func main() {
	st := newStatus()
	err := play(st)
	switch {
	case err == nil:
		st.set("state", "ended")
	default:
		// netclient's errors are sentences that name the package first.
		msg := strings.ReplaceAll(err.Error(), "netclient: ", "")
		st.set("error", strings.ToUpper(msg[:1])+msg[1:])
		st.set("state", "failed")
	}
	st.set("connected", false)
}

// play connects to the page's server and runs the game until the player
// leaves (nil) or the client stops for good.
func play(st status) error {
	cfg := js.Global().Get("ebisyncConfig")
	radius, syncPath := 600.0, "/sync"
	if cfg.Type() == js.TypeObject {
		if r := cfg.Get("radius"); r.Type() == js.TypeNumber && r.Float() > 0 {
			radius = r.Float()
		}
		if p := cfg.Get("sync"); p.Type() == js.TypeString {
			syncPath = p.String()
		}
	}
	loc := js.Global().Get("location")
	scheme := "ws://"
	if loc.Get("protocol").String() == "https:" {
		scheme = "wss://"
	}
	serverURL := scheme + loc.Get("host").String() + syncPath
	name := "player"
	if q, err := url.ParseQuery(trimQuery(loc.Get("search").String())); err == nil && q.Get("name") != "" {
		name = q.Get("name")
	}
	st.set("url", serverURL)
	st.set("state", "connecting")

	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})) // the browser's console
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	client, err := netclient.Dial(ctx, serverURL, sim.NewRegistry(), &netclient.Options{Name: name, Logger: logger})
	cancel()
	if err != nil {
		return err // a sentence that names the URL and what to check
	}
	defer client.Close()
	if err := client.SubscribeAll(); err != nil {
		return err
	}
	g := &browserGame{
		game: newGame(client, gameConfig{
			radius:     radius,
			world:      (*sim.Config)(nil).Defaults(),
			serverInfo: serverURL,
		}),
		st: st,
	}
	st.set("state", "playing")
	ebiten.SetWindowTitle("ebisync demo")
	// Keep applying what arrives while the page is visible but not
	// focused: a client that stops reading is dropped by the server.
	ebiten.SetRunnableOnUnfocused(true)
	if err := ebiten.RunGame(g); err != nil {
		if errors.Is(err, netclient.ErrClosed) {
			return nil
		}
		return fmt.Errorf("the game stopped: %w", err)
	}
	return nil
}

// trimQuery drops the "?" of location.search.
func trimQuery(s string) string {
	if len(s) > 0 && s[0] == '?' {
		return s[1:]
	}
	return s
}

// browserGame is the demo's window, which also publishes its state to
// the page after each update.
type browserGame struct {
	*game
	st status
}

func (b *browserGame) Update() error {
	err := b.game.Update()
	b.st.publish(b.game)
	return err
}

// status is the page's globalThis.ebisync object.
type status struct {
	v    js.Value
	ship js.Value // the object status.ship points to while the ship is mirrored
}

func newStatus() status {
	v := js.Global().Get("ebisync")
	if v.Type() != js.TypeObject {
		v = js.Global().Get("Object").New()
		js.Global().Set("ebisync", v)
	}
	return status{v: v, ship: js.Global().Get("Object").New()}
}

func (s status) set(key string, value any) { s.v.Set(key, value) }

// publish copies the game's state into the status object.
func (s status) publish(g *game) {
	c := g.client
	st := c.Stats()
	s.set("connected", st.Connected)
	s.set("entities", st.Entities)
	s.set("drawn", g.visible)
	s.set("frames", g.frames)
	s.set("overlay", g.overlay.Visible())
	s.set("clientID", float64(c.ClientID()))
	s.set("inputsSent", g.pilot.Inputs)
	s.set("steerRefused", g.pilot.Refused)
	ship, ok := g.pilot.Ship()
	w := c.World()
	if !ok || !w.Valid(ship) || !w.Entry(ship).HasComponent(components.Position) {
		s.set("ship", nil)
		return
	}
	p := components.Position.Get(w.Entry(ship))
	s.ship.Set("x", p.X)
	s.ship.Set("y", p.Y)
	angle := 0.0
	if h, ok := g.heading.Get(w, ship); ok {
		angle = float64(h.Angle)
	}
	s.ship.Set("angle", angle)
	s.set("ship", s.ship)
}
