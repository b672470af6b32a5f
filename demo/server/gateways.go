package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/ebisync/ebisync/demo/internal/scaleout"
	"github.com/ebisync/ebisync/demo/sim"
)

// Scaling out (docs/SCALING.md): with -nats or -gateways the simulation
// publishes its changes by cell over NATS, on the embedded NATS server
// unless -nats names one, and with -gateways N it runs N gateways in this
// process, each on its own port, fed over NATS as a gateway process
// (demo/gateway) is: the same code, package demo/internal/scaleout.

// scaling is a run's NATS server, publication and gateways.
type scaling struct {
	nats     *server.Server // the embedded NATS server; nil with -nats
	natsURL  string
	world    string
	cell     float64
	pub      *scaleout.Publication
	gateways []*scaleout.Gateway
}

// startPublishing starts the embedded NATS server unless natsURL is set,
// connects to NATS and sets cfg to publish the World's chunks of cell
// units on world's subjects.
func startPublishing(natsURL, world string, cell float64, cfg *sim.HostConfig) (*scaling, error) {
	s := &scaling{natsURL: natsURL, world: world, cell: cell}
	if natsURL == "" {
		ns, err := scaleout.StartNATS("127.0.0.1", -1)
		if err != nil {
			return nil, err
		}
		s.nats, s.natsURL = ns, ns.ClientURL()
	}
	pub, err := scaleout.Publish(s.natsURL, world)
	if err != nil {
		scaleout.StopNATS(s.nats)
		return nil, err
	}
	s.pub = pub
	cfg.Publish = pub.Publisher()
	cfg.PublishCellSize = cell
	return s, nil
}

// gatewayAddrs returns the addresses of n gateways beside a server told to
// listen on listen: the ports after its port, or port 0 each (any free
// one) when its port is 0.
func gatewayAddrs(listen string, n int) ([]string, error) {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return nil, fmt.Errorf("-listen %q: %w", listen, err)
	}
	p, err := net.LookupPort("tcp", port)
	if err != nil {
		return nil, fmt.Errorf("-listen %q: %w", listen, err)
	}
	addrs := make([]string, n)
	for i := range addrs {
		gp := 0
		if p != 0 {
			gp = p + 1 + i
			if gp > 65535 {
				return nil, fmt.Errorf("-listen %q leaves no port for gateway %d", listen, i+1)
			}
		}
		addrs[i] = net.JoinHostPort(host, strconv.Itoa(gp))
	}
	return addrs, nil
}

// startGateways starts n gateways beside the server asked to listen on
// listen, each ticking at tick Hz with the interest radius radius.
func (s *scaling) startGateways(listen string, n, tick int, radius float64, maxPerAddr int, logger *slog.Logger) error {
	addrs, err := gatewayAddrs(listen, n)
	if err != nil {
		return err
	}
	for i, addr := range addrs {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("gateway %d: failed to listen: %w", i+1, err)
		}
		gw, err := scaleout.StartGateway(ln, &scaleout.GatewayConfig{
			NATS:                     s.natsURL,
			Name:                     fmt.Sprintf("ebisync-demo-gateway-%d", i+1),
			World:                    s.world,
			CellSize:                 s.cell,
			Radius:                   radius,
			TickRate:                 tick,
			MaxConnectionsPerAddress: maxPerAddr,
			Logger:                   logger.With("gateway", i+1),
		})
		if err != nil {
			return fmt.Errorf("gateway %d: %w", i+1, err)
		}
		s.gateways = append(s.gateways, gw)
	}
	return nil
}

// announce prints where NATS and the gateways are, for the simulation
// whose clients play at syncURL.
func (s *scaling) announce(w io.Writer, syncURL string, tick int, radius float64) {
	where := "external"
	if s.nats != nil {
		where = "embedded"
	}
	fmt.Fprintf(w, "publishing on NATS %s (%s), world %q, cell %g\n", s.natsURL, where, s.world, s.cell)
	for i, gw := range s.gateways {
		fmt.Fprintf(w, "gateway %d listening on %s\n", i+1, gw.URL())
	}
	if len(s.gateways) > 0 {
		fmt.Fprintf(w, "play on any gateway or on %s: gateways forward their clients' steering to the simulation\n", syncURL)
	}
	more := "gateways"
	if len(s.gateways) > 0 {
		more = "more gateways"
	}
	fmt.Fprintf(w, "%s: go run ./demo/gateway -nats %s -world %s -cell %g -radius %g -tick %d\n",
		more, s.natsURL, s.world, s.cell, radius, tick)
}

// Close closes the gateways, then the publication, then the embedded NATS
// server. Call it after the simulation's last tick. It is idempotent.
func (s *scaling) Close() error {
	var err error
	for i, gw := range s.gateways {
		if e := gw.Close(); e != nil {
			err = errors.Join(err, fmt.Errorf("gateway %d: %w", i+1, e))
		}
	}
	s.gateways = nil
	if s.pub != nil {
		if e := s.pub.Close(); e != nil {
			err = errors.Join(err, fmt.Errorf("publication: %w", e))
		}
		s.pub = nil
	}
	scaleout.StopNATS(s.nats)
	s.nats = nil
	return err
}
