// Package ebitensync is the thin Ebitengine glue of an ebisync client: a
// donburi ecs system that pumps a netclient.Client, interpolated draw
// helpers, and a debug overlay with the connection's traffic.
//
// Everything else lives in package netclient, which does not import
// Ebitengine. This package does, and Ebitengine on Linux needs a display
// when the package initialises (tests run under xvfb-run), so keep the
// import in the package that opens the window.
//
// Wiring it into a game takes three calls, all on the game goroutine (the
// one running ebiten.Game.Update and Draw):
//
//	ecs.AddSystem(ebitensync.System(client)) // or client.Update() in Update
//	x, y, ok := ebitensync.Position(client, e, time.Now()) // in Draw
//	overlay.Update(); overlay.Draw(screen) // F3 toggles it
package ebitensync

import (
	"time"

	"github.com/yohamta/donburi"
	"github.com/yohamta/donburi/ecs"

	"github.com/ebisync/ebisync/components"
	"github.com/ebisync/ebisync/netclient"
)

// System returns a donburi ecs system that applies what c received since
// the last tick (c.Update) into c's mirror world:
//
//	game.ecs.AddSystem(ebitensync.System(client))
//
// Add it before the systems that read the mirror. It drops Update's
// error; a game that must notice a client that stopped for good checks
// c.Err. Like Update, the system must run on the game goroutine, the one
// that owns c.World().
func System(c *netclient.Client) ecs.System {
	return func(*ecs.ECS) { _ = c.Update() }
}

// Position returns where mirror entity e is to be drawn at time now (pass
// time.Now()): its components.Position interpolated between the server's
// updates, so that motion is smooth at display rate whatever the server's
// tick rate. It reports false if e is not mirrored or has no position.
//
// Call it in Draw, on the game goroutine. It allocates nothing.
func Position(c *netclient.Client, e donburi.Entity, now time.Time) (x, y float64, ok bool) {
	pos, ok := components.Lookup(c.Registry(), components.Position)
	if !ok {
		return 0, 0, false
	}
	p, ok := netclient.Interpolated(c, e, pos, now)
	return p.X, p.Y, ok
}
