//go:build ebisync_display

package ebitensync_test

import (
	"context"
	"image/color"
	"log"
	"time"

	"github.com/hajimehoshi/ebiten/v2"
	"github.com/hajimehoshi/ebiten/v2/vector"
	"github.com/yohamta/donburi"
	"github.com/yohamta/donburi/ecs"
	"github.com/yohamta/donburi/filter"

	"github.com/ebisync/ebisync/components"
	"github.com/ebisync/ebisync/netclient"
	"github.com/ebisync/ebisync/netclient/ebitensync"
)

// Game is an existing Ebitengine game that renders an ebisync mirror.
type Game struct {
	client  *netclient.Client
	ecs     *ecs.ECS
	overlay *ebitensync.Overlay
	drawn   *donburi.Query
}

func (g *Game) Update() error {
	g.overlay.Update() // F3 toggles the network overlay
	g.ecs.Update()     // runs ebitensync.System: applies what arrived
	return g.client.Err()
}

func (g *Game) Draw(screen *ebiten.Image) {
	now := time.Now()
	for e := range g.drawn.Iter(g.client.World()) {
		// Interpolated between server ticks: smooth at any frame rate.
		if x, y, ok := ebitensync.Position(g.client, e.Entity(), now); ok {
			vector.DrawFilledCircle(screen, float32(x), float32(y), 4, color.White, true)
		}
	}
	g.overlay.Draw(screen)
}

func (g *Game) Layout(w, h int) (int, int) { return w, h }

// This example adds ebisync to an Ebitengine game: register the same
// components as the server, dial, subscribe, pump the client in Update and
// draw interpolated positions in Draw.
func Example() {
	reg := components.NewRegistry()
	components.RegisterStandard(reg) // the same registrations as the server

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	client, err := netclient.Dial(ctx, "ws://127.0.0.1:8080/sync", reg, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	if err := client.SubscribeAll(); err != nil {
		log.Fatal(err)
	}
	client.SetInterest(0, 0, 600) // only what is within 600 units of (0, 0)

	g := &Game{
		client:  client,
		ecs:     ecs.NewECS(client.World()),
		overlay: ebitensync.NewOverlay(client, nil),
		drawn:   donburi.NewQuery(filter.Contains(components.Position)),
	}
	g.ecs.AddSystem(ebitensync.System(client))
	if err := ebiten.RunGame(g); err != nil {
		log.Fatal(err)
	}
}
