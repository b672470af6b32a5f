package plugin_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/yohamta/donburi"

	"github.com/ebisync/ebisync/components"
	"github.com/ebisync/ebisync/netclient"
	"github.com/ebisync/ebisync/plugin"
)

// A server and a client in one process, over a real loopback WebSocket:
// the client's mirror world follows the server's world.
func Example() {
	reg := components.NewRegistry()
	components.RegisterStandard(reg)

	world := donburi.NewWorld()
	srv := plugin.New(world, reg, &plugin.Options{Logger: quietLogger()})
	ts := httptest.NewServer(srv)
	defer ts.Close()
	defer srv.Close()

	ship := world.Create(components.Replicated, components.Position, components.Name)
	components.Name.SetValue(world.Entry(ship), components.NameData{Value: "Nostromo"})

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	client, err := netclient.Dial(ctx, "ws"+strings.TrimPrefix(ts.URL, "http")+"/sync", reg, &netclient.Options{Logger: quietLogger()})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer client.Close()
	client.SubscribeAll()

	// The game loop: the server ticks, the client applies what arrived.
	// (Here both run on one goroutine; in a game they are two programs.)
	frame := time.NewTicker(5 * time.Millisecond)
	defer frame.Stop()
	for x := 1.0; x <= 30; x++ {
		<-frame.C
		components.Position.SetValue(world.Entry(ship), components.PositionData{X: x, Y: 2 * x})
		srv.Tick()
		client.Update()
	}
	// Frames go on until the last change has arrived.
	for ctx.Err() == nil {
		if e, ok := client.Entity(1); ok && components.Position.Get(client.World().Entry(e)).X == 30 {
			break
		}
		<-frame.C
		srv.Tick()
		client.Update()
	}

	id, _, _ := client.NetID(mustEntity(client))
	mirror := client.World().Entry(mustEntity(client))
	fmt.Println("net id:", id)
	fmt.Println("name:", components.Name.Get(mirror).Value)
	fmt.Printf("position: %.2f, %.2f\n", components.Position.Get(mirror).X, components.Position.Get(mirror).Y)
	// Output:
	// net id: 1
	// name: Nostromo
	// position: 30.00, 60.00
}

func mustEntity(c *netclient.Client) donburi.Entity {
	e, _ := c.Entity(1)
	return e
}
