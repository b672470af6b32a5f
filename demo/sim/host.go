package sim

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/yohamta/donburi"

	"github.com/ebisync/ebisync/components"
	"github.com/ebisync/ebisync/plugin"
)

// HostConfig configures a Host. A nil *HostConfig means the defaults.
type HostConfig struct {
	Sim Config
	// TickRate is the simulation and replication rate in Hz. Default 30.
	TickRate int
	// Radius is the interest radius a client has until it asks for its
	// own. Default 600.
	Radius float64
	// Logger receives the plugin's logs. Default slog.Default().
	Logger *slog.Logger
	// MaxConnectionsPerAddress is the plugin's limit of connections from
	// one IP address (plugin.Options.MaxConnectionsPerAddress). Default
	// the plugin's (32).
	MaxConnectionsPerAddress int
	// Page, if set, is served at every path but "/sync": the browser
	// client's page and files (package demo/web). Its WebSocket is then on
	// the page's own origin, which the plugin's Origin check accepts.
	Page http.Handler
	// Validate, if set, runs after ValidateSteer for each mutation that it
	// let through, on the game goroutine: a game's further rules (or a
	// test's look at what clients ask). Default none.
	Validate func(req *plugin.Request) error
	// OnFly, if set, runs after each FlyData input the server applied, on
	// the game goroutine, with the ship it moved: a test's look at what
	// clients fly. Default none.
	OnFly func(ship *donburi.Entry, in FlyData)
	// Publish, if set, receives the World's changes of every tick by
	// grid cell, for gateways (plugin.Options.Publish: a
	// natsync.Publisher; serve its snapshots with the Host's Plugin).
	// Default none.
	Publish plugin.Publisher
	// PublishCellSize is the side of a published cell, which every
	// gateway must be given (plugin.Options.PublishCellSize). Default the
	// plugin's, 4 × its CellSize (Radius/4): Radius.
	PublishCellSize float64
}

// Host is an authoritative demo server: a Sim and the ebisync plugin
// replicating it, driven by one goroutine at a fixed tick rate.
//
// Clients connect at the path "/sync" of Handler; HostConfig.Page, if
// set, is served beside it. Each connecting client
// gets a player ship it owns; it loses it when it leaves.
type Host struct {
	sim    *Sim
	plugin *plugin.Server
	rate   int
	mux    *http.ServeMux
	hit    *components.Message[HitData]
	hits   []Hit // TakeHits' buffer

	mu       sync.Mutex
	window   tickWindow
	lastTick time.Duration
	http     *http.Server
}

// tickWindow accumulates tick durations between two TickStats calls.
type tickWindow struct {
	n        int
	sum, max time.Duration
}

// TickStats summarises the ticks since the previous call.
type TickStats struct {
	Ticks    int
	Avg, Max time.Duration // sim step + replication, per tick
	Last     time.Duration
}

// NewHost builds the world and its server. Nothing runs until Run.
func NewHost(cfg *HostConfig) *Host {
	var c HostConfig
	if cfg != nil {
		c = *cfg
	}
	if c.TickRate <= 0 {
		c.TickRate = 30
	}
	if c.Radius <= 0 {
		c.Radius = 600
	}
	h := &Host{sim: New(&c.Sim), rate: c.TickRate}
	reg := NewRegistry()
	h.hit, _ = components.LookupMessage[HitData](reg, "demo.hit")
	h.plugin = plugin.New(h.sim.World(), reg, &plugin.Options{
		TickRate:      c.TickRate,
		DefaultRadius: c.Radius,
		// A quarter of the radius keeps each client's scan to about 50
		// cells.
		CellSize: c.Radius / 4,
		// Players may look a little further than the default, not across
		// the whole map.
		MaxRadius: 4 * c.Radius,
		Logger:    c.Logger,
		Validate: func(req *plugin.Request) error {
			if err := ValidateSteer(req); err != nil || c.Validate == nil {
				return err
			}
			return c.Validate(req)
		},
		// Zero: the plugin's default.
		MaxConnectionsPerAddress: c.MaxConnectionsPerAddress,
		Publish:                  c.Publish,
		PublishCellSize:          c.PublishCellSize,
		OnConnect: func(ci plugin.ClientInfo) {
			ship := h.sim.SpawnPlayer(ci.ID, ci.Name)
			// The client's view starts on its ship and moves with it.
			h.plugin.FollowEntity(ci.ID, ship, c.Radius)
		},
		OnDisconnect: func(ci plugin.ClientInfo) {
			h.sim.RemovePlayer(ci.ID)
		},
	})
	fly, _ := components.LookupMessage[FlyData](reg, "demo.fly")
	plugin.HandleInput(h.plugin, fly, func(w donburi.World, e donburi.Entity, in FlyData) {
		h.sim.flyOnServer(w, e, in)
		if c.OnFly != nil && w.Valid(e) {
			c.OnFly(w.Entry(e), in)
		}
	})
	h.mux = http.NewServeMux()
	h.mux.Handle("/sync", h.plugin)
	if c.Page != nil {
		h.mux.Handle("/", c.Page)
	}
	return h
}

// ValidateSteer is the plugin's Validate hook: it refuses Steer values
// out of -100..100. Other components pass.
func ValidateSteer(req *plugin.Request) error {
	st, ok := req.Value.(*SteerData)
	if !ok {
		return nil
	}
	if st.Thrust < -maxSteer || st.Thrust > maxSteer || st.Turn < -maxSteer || st.Turn > maxSteer {
		return fmt.Errorf("steer (%d, %d) out of range ±%d", st.Thrust, st.Turn, maxSteer)
	}
	return nil
}

// Sim returns the simulation. Use it only before Run starts or after it
// returned: while Run runs, the World belongs to Run's goroutine.
func (h *Host) Sim() *Sim { return h.sim }

// Plugin returns the ebisync server. Its Stats method is safe for
// concurrent use.
func (h *Host) Plugin() *plugin.Server { return h.plugin }

// TickRate returns the tick rate in Hz.
func (h *Host) TickRate() int { return h.rate }

// Handler returns the HTTP handler serving "/sync", and HostConfig.Page
// at every other path.
func (h *Host) Handler() http.Handler { return h.mux }

// Serve serves Handler on ln until Close. It returns at once; the HTTP
// server runs on its own goroutines.
func (h *Host) Serve(ln net.Listener) {
	srv := &http.Server{Handler: h.mux, ReadHeaderTimeout: 10 * time.Second}
	h.mu.Lock()
	h.http = srv
	h.mu.Unlock()
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			slog.Error("demo host: serve failed", "err", err)
		}
	}()
}

// Run steps the simulation and ticks the plugin at the tick rate until ctx
// is done. The World belongs to Run's goroutine while it runs. Ticks that
// fall behind are dropped rather than bunched, so a stall slows the game
// down instead of making it race.
func (h *Host) Run(ctx context.Context) error {
	dt := time.Second / time.Duration(h.rate)
	t := time.NewTicker(dt)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		start := time.Now()
		h.sim.Step(dt.Seconds())
		h.hits = h.sim.TakeHits(h.hits[:0])
		for _, hit := range h.hits {
			plugin.SendToViewers(h.plugin, hit.Ship, h.hit, HitData(hit))
		}
		h.plugin.Tick()
		d := time.Since(start)
		h.mu.Lock()
		h.lastTick = d
		h.window.n++
		h.window.sum += d
		h.window.max = max(h.window.max, d)
		h.mu.Unlock()
	}
}

// TickStats returns the tick durations since its previous call. It is safe
// for concurrent use.
func (h *Host) TickStats() TickStats {
	h.mu.Lock()
	defer h.mu.Unlock()
	w := h.window
	h.window = tickWindow{}
	st := TickStats{Ticks: w.n, Max: w.max, Last: h.lastTick}
	if w.n > 0 {
		st.Avg = w.sum / time.Duration(w.n)
	}
	return st
}

// Close disconnects every client and stops serving. Call it after Run has
// returned. It is safe for concurrent use.
func (h *Host) Close() error {
	err := h.plugin.Close()
	h.mu.Lock()
	srv := h.http
	h.mu.Unlock()
	if srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if e := srv.Shutdown(ctx); e != nil {
			err = errors.Join(err, fmt.Errorf("failed to shut down http server: %w", e))
		}
	}
	return err
}
