package plugin_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/yohamta/donburi"

	"github.com/ebisync/ebisync/components"
	"github.com/ebisync/ebisync/netclient"
	"github.com/ebisync/ebisync/plugin"
)

// Thrust is a game's own component that players steer.
type Thrust struct{ X, Y float64 }

var ThrustType = donburi.NewComponentType[Thrust]()

// A game in one process, as the README shows it: the server gives each
// player a ship it owns, and the player's client finds the ship in its
// mirror, reads it, and steers it with a mutation the server accepts
// because the player owns the ship. (In a real game the server and the
// client are two programs, each with its own loop.)
func Example_game() {
	// Both sides register the same components; registering returns typed
	// handles.
	reg := components.NewRegistry()
	std := components.RegisterStandard(reg)
	thrust := components.Register(reg, "game.thrust", ThrustType, &components.Options{ClientWritable: true})

	// Server: a ship for each player who joins, owned by that player, so
	// that the default authoriser accepts the player's mutations of it.
	world := donburi.NewWorld()
	ships := map[uint64]donburi.Entity{} // by client id; game goroutine
	server := plugin.New(world, reg, &plugin.Options{
		TickRate: 30,
		Logger:   slog.New(slog.DiscardHandler),
		OnConnect: func(c plugin.ClientInfo) { // on the game goroutine, inside Tick
			ship := world.Create(components.Replicated, components.Owner)
			std.Position.Set(world, ship, components.PositionData{X: 100, Y: 200})
			thrust.Set(world, ship, Thrust{})
			components.Owner.SetValue(world.Entry(ship), components.OwnerData{Client: c.ID})
			ships[c.ID] = ship
		},
	})
	mux := http.NewServeMux()
	mux.Handle("/sync", server)
	ts := httptest.NewServer(mux)
	defer ts.Close()
	defer server.Close()

	// Client: dial, subscribe, and run the frame loop.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	url := "ws" + strings.TrimPrefix(ts.URL, "http") + "/sync"
	client, err := netclient.Dial(ctx, url, reg, &netclient.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer client.Close()
	client.SubscribeAll()

	var steered <-chan netclient.MutationResult
	frame := time.NewTicker(time.Second / 60)
	defer frame.Stop()
	for ctx.Err() == nil {
		<-frame.C
		server.Tick()   // the server's loop
		client.Update() // the client's loop: applies what arrived into client.World()

		owned := client.Owned(nil) // the mirror entities this player owns
		if len(owned) == 0 {
			continue // not mirrored yet
		}
		ship := owned[0]
		if steered == nil {
			p, _ := std.Position.Get(client.World(), ship) // a mirrored value
			fmt.Printf("my ship is at (%.0f, %.0f)\n", p.X, p.Y)
			steered = netclient.Mutate(client, ship, thrust, Thrust{X: 1}, nil)
			continue
		}
		select {
		case r := <-steered:
			fmt.Println("steer:", r.Status)
		default:
			continue // no answer yet
		}
		break
	}
	// The server applied it.
	v, _ := thrust.Get(world, ships[client.ClientID()])
	fmt.Printf("server thrust: %+v\n", v)
	// Output:
	// my ship is at (100, 200)
	// steer: Ok
	// server thrust: {X:1 Y:0}
}
