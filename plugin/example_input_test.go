package plugin_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/yohamta/donburi"

	"github.com/ebisync/ebisync/components"
	"github.com/ebisync/ebisync/netclient"
	"github.com/ebisync/ebisync/plugin"
)

// Nudge is an input: one step of a player's ship.
type Nudge struct{ DX, DY float64 }

// An input stream with prediction: both sides run the same step, the
// client at once on its mirror, the server when the input arrives; the
// client then reconciles with the server's state as batches acknowledge
// its inputs.
func ExampleHandleInput() {
	reg := components.NewRegistry()
	std := components.RegisterStandard(reg)
	nudge := components.RegisterMessage[Nudge](reg, "game.nudge", &components.MessageOptions{FromClient: true})
	step := func(w donburi.World, e donburi.Entity, in Nudge) {
		p, _ := std.Position.Get(w, e)
		std.Position.Set(w, e, components.PositionData{X: p.X + in.DX, Y: p.Y + in.DY})
	}

	world := donburi.NewWorld()
	ships := map[uint64]donburi.Entity{} // by client id; game goroutine
	server := plugin.New(world, reg, &plugin.Options{
		TickRate: 30,
		Logger:   slog.New(slog.DiscardHandler),
		OnConnect: func(c plugin.ClientInfo) { // a ship the player owns: its inputs steer it
			ship := world.Create(components.Replicated, components.Owner)
			std.Position.Set(world, ship, components.PositionData{X: 10, Y: 20})
			components.Owner.SetValue(world.Entry(ship), components.OwnerData{Client: c.ID})
			ships[c.ID] = ship
		},
	})
	plugin.HandleInput(server, nudge, step)
	ts := httptest.NewServer(server)
	defer ts.Close()
	defer server.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	client, err := netclient.Dial(ctx, "ws"+strings.TrimPrefix(ts.URL, "http"), reg, &netclient.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer client.Close()
	client.SubscribeAll()
	pilot := netclient.Predict(client, nudge, step)

	frame := time.NewTicker(time.Second / 60)
	defer frame.Stop()
	sent := false
	for ctx.Err() == nil {
		<-frame.C
		server.Tick()
		client.Update()
		owned := client.Owned(nil) // the mirror entities this player owns
		if len(owned) == 0 {
			continue // not mirrored yet
		}
		ship := owned[0]
		if !sent {
			if err := pilot.Input(ship, Nudge{DX: 5}); err != nil {
				fmt.Println(err)
				return
			}
			sent = true
			p, _ := std.Position.Get(client.World(), ship)
			fmt.Printf("predicted at once: (%.0f, %.0f)\n", p.X, p.Y)
			continue
		}
		if client.Stats().PendingInputs == 0 {
			break // acknowledged: the mirror holds the server's state
		}
	}
	p, _ := std.Position.Get(world, ships[client.ClientID()])
	fmt.Printf("server: (%.0f, %.0f), applied %d\n", p.X, p.Y, server.Stats().InputsApplied)
	// Output:
	// predicted at once: (15, 20)
	// server: (15, 20), applied 1
}
