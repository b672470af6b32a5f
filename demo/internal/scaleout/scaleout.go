// Package scaleout is what the demo's commands share to scale out
// (docs/SCALING.md): an embedded NATS server, NATS connections, and a
// gateway of the demo world served over WebSocket. demo/server runs the
// simulation and, with -gateways, gateways in the same process;
// demo/gateway runs one gateway as a process of its own. Both run the
// same code, from here.
package scaleout

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/ebisync/ebisync/demo/sim"
	"github.com/ebisync/ebisync/plugin"
	"github.com/ebisync/ebisync/plugin/natsync"
)

// DefaultCellSize is the side of a published cell that the demo's
// simulation (demo/server -cell) and gateways (demo/gateway -cell) agree
// on unless told otherwise: 4 × the demo server's CellSize (its radius / 4)
// at its default radius of 600.
const DefaultCellSize = 600

// DefaultWorld is the world's name in the NATS subjects.
const DefaultWorld = "demo"

// StartNATS starts an embedded NATS server on host (loopback for the demo)
// and port (-1: a free one), and waits until it takes connections. Stop
// it with StopNATS.
func StartNATS(host string, port int) (*server.Server, error) {
	s, err := server.NewServer(&server.Options{
		ServerName: "ebisync-demo",
		Host:       host,
		Port:       port,
		NoLog:      true,
		NoSigs:     true,
	})
	if err != nil {
		return nil, fmt.Errorf("failed to make the NATS server: %w", err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		StopNATS(s)
		return nil, errors.New("the embedded NATS server did not start within 10s")
	}
	return s, nil
}

// StopNATS shuts s down and waits until it has. s may be nil.
func StopNATS(s *server.Server) {
	if s == nil {
		return
	}
	s.Shutdown()
	s.WaitForShutdown()
}

// Connect connects to NATS at urls (one or more comma-separated URLs of
// the nodes of a cluster) under name, reconnecting without end: a node
// that goes away is replaced by another.
func Connect(urls, name string) (*nats.Conn, error) {
	nc, err := nats.Connect(urls, nats.Name(name), nats.MaxReconnects(-1),
		nats.ReconnectWait(250*time.Millisecond))
	if err != nil {
		return nil, fmt.Errorf("failed to connect to NATS at %s: %w", urls, err)
	}
	return nc, nil
}

// GatewayConfig configures a gateway.
type GatewayConfig struct {
	// NATS is the URL (or comma-separated URLs) of the NATS server or
	// cluster the simulation publishes on.
	NATS string
	// Name names the gateway's NATS connection.
	Name string
	// World is the world's name in the subjects. Default DefaultWorld.
	World string
	// CellSize is the simulation's PublishCellSize. Default
	// DefaultCellSize.
	CellSize float64
	// Radius is the interest radius a client has until it asks for its
	// own; clients may ask for up to twice it. Default 600.
	Radius float64
	// TickRate is the gateway's tick rate in Hz, the simulation's
	// normally. Default 30.
	TickRate int
	// MaxConnectionsPerAddress: plugin.Options.MaxConnectionsPerAddress
	// (0: the plugin's default).
	MaxConnectionsPerAddress int
	// Logger receives the gateway's logs. Default slog.Default().
	Logger *slog.Logger
}

// A Gateway serves the demo world, fed over NATS by a simulation, to
// WebSocket clients at the path "/sync": it holds no World, and forwards
// its clients to the simulation over NATS (its Feed is its Upstream), so
// that they play as the simulation's own clients do. It ticks on its own
// goroutine.
type Gateway struct {
	nc   *nats.Conn
	feed *natsync.Feed
	srv  *plugin.Server
	http *http.Server
	url  string
	rate int

	stop chan struct{}
	done chan struct{}
	once sync.Once
	err  error
}

// StartGateway connects to NATS, makes the gateway, serves it on ln and
// starts its ticks. On error ln is closed.
func StartGateway(ln net.Listener, cfg *GatewayConfig) (*Gateway, error) {
	c := *cfg
	if c.World == "" {
		c.World = DefaultWorld
	}
	if c.CellSize <= 0 {
		c.CellSize = DefaultCellSize
	}
	if c.Radius <= 0 {
		c.Radius = 600
	}
	if c.TickRate <= 0 {
		c.TickRate = 30
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	nc, err := Connect(c.NATS, c.Name)
	if err != nil {
		_ = ln.Close()
		return nil, err
	}
	feed, err := natsync.NewFeed(nc, c.World)
	if err != nil {
		nc.Close()
		_ = ln.Close()
		return nil, err
	}
	world := (&sim.Config{}).Defaults()
	g := &Gateway{nc: nc, feed: feed, rate: c.TickRate, stop: make(chan struct{}), done: make(chan struct{})}
	g.srv = plugin.NewGateway(sim.NewRegistry(), c.CellSize, feed, &plugin.Options{
		TickRate:      c.TickRate,
		DefaultRadius: c.Radius,
		// The cells a gateway follows grow with the square of the
		// radius its clients may ask for: twice the default.
		MaxRadius:                2 * c.Radius,
		CellSize:                 c.Radius / 4, // as the simulation's (sim.NewHost)
		MaxConnectionsPerAddress: c.MaxConnectionsPerAddress,
		Logger:                   c.Logger,
		OnConnect: func(ci plugin.ClientInfo) {
			// A client starts where the players spawn, the centre, until
			// it asks for its own interest (a player's Pilot follows its
			// ship).
			g.srv.SetInterest(ci.ID, world.Width/2, world.Height/2, c.Radius)
		},
	})
	feed.Attach(g.srv)
	mux := http.NewServeMux()
	mux.Handle("/sync", g.srv)
	g.http = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	g.url, _ = sim.URLs(ln.Addr())
	go func() {
		if err := g.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			c.Logger.Error("demo gateway: serve failed", "err", err)
		}
	}()
	go g.run()
	return g, nil
}

// run ticks the gateway at its rate until Close. Ticks that fall behind
// are dropped.
func (g *Gateway) run() {
	defer close(g.done)
	t := time.NewTicker(time.Second / time.Duration(g.rate))
	defer t.Stop()
	for {
		select {
		case <-g.stop:
			return
		case <-t.C:
			g.srv.Tick()
		}
	}
}

// URL returns the gateway's WebSocket URL, to dial from this machine.
func (g *Gateway) URL() string { return g.url }

// Plugin returns the gateway's ebisync server. Its Stats method is safe
// for concurrent use.
func (g *Gateway) Plugin() *plugin.Server { return g.srv }

// FeedStats returns the counters of the gateway's NATS feed. It is safe
// for concurrent use.
func (g *Gateway) FeedStats() natsync.FeedStats { return g.feed.Stats() }

// Close stops the ticks, disconnects every client ("going away"), stops
// serving, and closes the feed and the NATS connection. It is idempotent.
func (g *Gateway) Close() error {
	g.once.Do(func() {
		close(g.stop)
		<-g.done
		err := g.srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if e := g.http.Shutdown(ctx); e != nil {
			err = errors.Join(err, fmt.Errorf("failed to shut down the gateway's http server: %w", e))
		}
		if e := g.feed.Close(); e != nil {
			err = errors.Join(err, fmt.Errorf("failed to close the gateway's feed: %w", e))
		}
		g.nc.Close()
		g.err = err
	})
	return g.err
}

// A Publication publishes the simulation's chunks over NATS and answers
// the gateways: their snapshot requests, their clients' joins and
// requests.
type Publication struct {
	nc  *nats.Conn
	pub *natsync.Publisher
	svc *natsync.Service
}

// Publish connects to NATS at urls and returns the Publication of world's
// chunks: give Publisher to sim.HostConfig.Publish, then call
// Serve with the Host's Plugin.
func Publish(urls, world string) (*Publication, error) {
	nc, err := Connect(urls, "ebisync-demo-simulation")
	if err != nil {
		return nil, err
	}
	pub, err := natsync.NewPublisher(nc, world)
	if err != nil {
		nc.Close()
		return nil, err
	}
	return &Publication{nc: nc, pub: pub}, nil
}

// Publisher returns the plugin.Publisher of the chunks.
func (p *Publication) Publisher() *natsync.Publisher { return p.pub }

// Serve answers the gateways for srv: snapshot requests, their clients'
// joins and requests.
func (p *Publication) Serve(srv *plugin.Server) error {
	svc, err := p.pub.Serve(srv)
	if err != nil {
		return fmt.Errorf("failed to serve the gateways: %w", err)
	}
	p.svc = svc
	return nil
}

// Close stops answering the gateways, sends what is buffered and
// closes the connection. Call it after the simulation's last tick.
func (p *Publication) Close() error {
	var err error
	if p.svc != nil {
		err = p.svc.Stop()
	}
	if e := p.nc.FlushTimeout(time.Second); e != nil && !errors.Is(e, nats.ErrConnectionClosed) {
		err = errors.Join(err, e)
	}
	p.nc.Close()
	return err
}
