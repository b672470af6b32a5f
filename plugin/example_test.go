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

// A server and a client in one process, over a real loopback WebSocket:
// the client's mirror world follows the server's world.
func Example() {
	reg := components.NewRegistry()
	std := components.RegisterStandard(reg) // typed handles: std.Position, std.Name, …

	world := donburi.NewWorld()
	srv := plugin.New(world, reg, &plugin.Options{Logger: slog.New(slog.DiscardHandler)})
	mux := http.NewServeMux()
	mux.Handle("/sync", srv)
	ts := httptest.NewServer(mux)
	defer ts.Close()
	defer srv.Close()

	ship := world.Create(components.Replicated)
	std.Name.Set(world, ship, components.NameData{Value: "Nostromo"})
	std.Position.Set(world, ship, components.PositionData{})

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	url := "ws" + strings.TrimPrefix(ts.URL, "http") + "/sync"
	client, err := netclient.Dial(ctx, url, reg, &netclient.Options{Logger: slog.New(slog.DiscardHandler)})
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
		std.Position.Set(world, ship, components.PositionData{X: x, Y: 2 * x})
		srv.Tick()
		client.Update()
	}
	// Frames go on until the last change has arrived. The ship is the
	// server's first replicated entity: net id 1.
	var mirror donburi.Entity
	for ctx.Err() == nil {
		if e, ok := client.Entity(1); ok {
			if p, _ := std.Position.Get(client.World(), e); p.X == 30 {
				mirror = e
				break
			}
		}
		<-frame.C
		srv.Tick()
		client.Update()
	}

	id, _, _ := client.NetID(mirror)
	name, _ := std.Name.Get(client.World(), mirror)
	p, _ := std.Position.Get(client.World(), mirror)
	fmt.Println("net id:", id)
	fmt.Println("name:", name.Value)
	fmt.Printf("position: %.2f, %.2f\n", p.X, p.Y)
	// Output:
	// net id: 1
	// name: Nostromo
	// position: 30.00, 60.00
}
