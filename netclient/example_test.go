package netclient_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/yohamta/donburi"

	"github.com/ebisync/ebisync/components"
	"github.com/ebisync/ebisync/netclient"
)

// This example connects to a server, subscribes, and runs the per-frame
// work a game does: apply what arrived, draw interpolated positions, and
// ask the server to change something. (It needs a running server, so it
// is compiled but not run.)
func Example() {
	reg := components.NewRegistry()
	std := components.RegisterStandard(reg) // the same registrations as the server

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := netclient.Dial(ctx, "ws://localhost:8080/sync", reg, &netclient.Options{
		Name: "example",
		OnSpawn: func(e donburi.Entity) {
			fmt.Println("spawned", e)
		},
	})
	if err != nil {
		log.Fatal(err) // a *netclient.RefusedError names what differs
	}
	defer c.Close()
	if err := c.SubscribeAll(); err != nil {
		log.Fatal(err)
	}
	if err := c.SetInterest(0, 0, 500); err != nil {
		log.Fatal(err)
	}

	var pending <-chan netclient.MutationResult
	frames := time.NewTicker(time.Second / 60)
	defer frames.Stop()
	for frame := 0; frame < 600; frame++ { // the game loop, 60 frames a second
		if err := c.Update(); err != nil {
			log.Fatal(err) // closed for good, e.g. the server's schema changed
		}

		// Draw: positions interpolated between server ticks.
		now := time.Now()
		if e, ok := c.Entity(1); ok {
			if p, ok := netclient.Interpolated(c, e, std.Position, now); ok {
				_ = p // draw the sprite at p.X, p.Y
			}
			if pending == nil {
				// Heal entity 1, showing the new value before the server answers.
				pending = netclient.Mutate(c, e, std.Health,
					components.HealthData{Current: 100, Max: 100},
					&netclient.MutateOptions{Optimistic: true})
			}
		}
		select {
		case r := <-pending:
			if r.Err != nil {
				fmt.Println("heal refused:", r.Err)
			}
		default:
		}
		<-frames.C
	}
	st := c.Stats()
	fmt.Printf("%d entities, rtt %v, %.0f B/s in\n", st.Entities, st.RTT, st.BytesInPerSec)
}
