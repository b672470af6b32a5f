//go:build ebisync_display

package ebitensync_test

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/hajimehoshi/ebiten/v2"
	"github.com/yohamta/donburi"
	"github.com/yohamta/donburi/ecs"

	"github.com/ebisync/ebisync/components"
	"github.com/ebisync/ebisync/netclient"
	"github.com/ebisync/ebisync/netclient/ebitensync"
	"github.com/ebisync/ebisync/plugin"

	"github.com/ebisync/ebisync/internal/testutil"
)

var assert = testutil.Assert

// serve runs an ebisync server whose world holds one entity moving along x
// at 600 units per second, ticking at 60 Hz on its own goroutine.
func serve(t *testing.T) string {
	t.Helper()
	world := donburi.NewWorld()
	e := world.Create(components.Replicated, components.Position)
	reg := components.NewRegistry()
	components.RegisterStandard(reg)
	srv := plugin.New(world, reg, &plugin.Options{TickRate: 60})
	hs := httptest.NewServer(srv)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		tk := time.NewTicker(time.Second / 60)
		defer tk.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tk.C:
			}
			components.Position.Get(world.Entry(e)).X += 10
			srv.Tick()
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		srv.Close()
		hs.Close()
	})
	return "ws" + strings.TrimPrefix(hs.URL, "http") + "/"
}

func TestSystemAppliesAndPositionInterpolates(t *testing.T) {
	url := serve(t)
	reg := components.NewRegistry()
	components.RegisterStandard(reg)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := netclient.Dial(ctx, url, reg, nil)
	assert(t, err == nil, "dial: %v", err)
	defer c.Close()
	assert(t, c.SubscribeAll() == nil, "subscribe")

	game := ecs.NewECS(c.World())
	game.AddSystem(ebitensync.System(c))
	var e donburi.Entity
	testutil.Eventually(t, 5*time.Second, "the entity to arrive", func() bool {
		game.Update()
		e, _ = c.Entity(1)
		return e != donburi.Null
	})

	// Interpolated positions between frames only move forward, and stay
	// behind the newest value the server sent. The frames are paced (not
	// a wait for a result): interpolation is about time passing between
	// them.
	frames := time.NewTicker(4 * time.Millisecond)
	defer frames.Stop()
	var last float64
	for i := 0; i < 40; i++ {
		<-frames.C
		game.Update()
		x, y, ok := ebitensync.Position(c, e, time.Now())
		assert(t, ok, "no position for a mirrored entity")
		assert(t, y == 0, "y = %v", y)
		assert(t, x >= last, "position went back: %v after %v", x, last)
		cur := components.Position.Get(c.World().Entry(e)).X
		assert(t, x <= cur, "interpolated %v ahead of the newest value %v", x, cur)
		last = x
	}
	assert(t, last > 0, "never moved")

	_, _, ok := ebitensync.Position(c, donburi.Entity(12345), time.Now())
	assert(t, !ok, "a position for an entity that is not mirrored")
}

func TestOverlayDraws(t *testing.T) {
	url := serve(t)
	reg := components.NewRegistry()
	components.RegisterStandard(reg)
	c, err := netclient.Dial(context.Background(), url, reg, nil)
	assert(t, err == nil, "dial: %v", err)
	defer c.Close()

	o := ebitensync.NewOverlay(c, &ebitensync.OverlayOptions{Keys: []ebiten.Key{ebiten.KeyF3, ebiten.KeyTab}, SampleEvery: time.Millisecond})
	assert(t, !o.Visible(), "visible by default")
	o.SetVisible(true)
	assert(t, o.Visible(), "SetVisible(true)")
	// Frames twice as fast as the overlay samples, so that its graphs
	// fill: pacing, not a wait for a result.
	frames := time.NewTicker(time.Millisecond / 2)
	defer frames.Stop()
	for i := 0; i < 2*ebitensync.GraphSamples; i++ {
		_ = c.Update()
		o.Update()
		<-frames.C
	}
	// Drawing off-screen before the game loop runs is allowed; it must
	// not panic, visible or not.
	img := ebiten.NewImage(640, 480)
	o.Draw(img)
	o.SetVisible(false)
	o.Draw(img)
}
