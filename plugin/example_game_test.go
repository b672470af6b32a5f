package plugin_test

import (
	"context"
	"fmt"
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
	// Both sides register the same components.
	reg := components.NewRegistry()
	components.RegisterStandard(reg)
	components.Register(reg, "game.thrust", ThrustType, &components.Options{ClientWritable: true})

	// Server: a ship for each player who joins, owned by that player, so
	// that the default authoriser accepts the player's mutations of it.
	world := donburi.NewWorld()
	server := plugin.New(world, reg, &plugin.Options{
		TickRate: 30,
		Logger:   quietLogger(),
		OnConnect: func(c plugin.ClientInfo) { // on the game goroutine, inside Tick
			ship := world.Entry(world.Create(components.Replicated, components.Position, components.Owner, ThrustType))
			components.Position.SetValue(ship, components.PositionData{X: 100, Y: 200})
			components.Owner.SetValue(ship, components.OwnerData{Client: c.ID})
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
	client, err := netclient.Dial(ctx, "ws"+strings.TrimPrefix(ts.URL, "http")+"/sync", reg, &netclient.Options{Logger: quietLogger()})
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

		ship, ok := ownShip(client)
		if !ok {
			continue // not mirrored yet
		}
		mirror := client.World().Entry(ship)
		if steered == nil {
			p := components.Position.Get(mirror) // a mirrored value, read like any component
			fmt.Printf("my ship is at (%.0f, %.0f)\n", p.X, p.Y)
			steered = netclient.Mutate(client, ship, ThrustType, Thrust{X: 1}, nil)
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
	// The server applied it; the next batches bring it back to the mirror.
	thrust := ThrustType.Get(world.Entry(findOwned(world, client.ClientID())))
	fmt.Printf("server thrust: %+v\n", *thrust)
	// Output:
	// my ship is at (100, 200)
	// steer: ok
	// server thrust: {X:1 Y:0}
}

// ownShip finds the entity this client owns in its mirror.
func ownShip(c *netclient.Client) (donburi.Entity, bool) {
	e := findOwned(c.World(), c.ClientID())
	return e, e != donburi.Null
}
