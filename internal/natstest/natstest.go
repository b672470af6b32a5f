// Package natstest starts embedded NATS servers for tests and benchmarks.
package natstest

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// Cluster starts n embedded NATS servers on loopback, routed into one
// cluster, waits until each has a route to every other, and shuts them
// down when t ends.
func Cluster(t testing.TB, n int) []*server.Server {
	t.Helper()
	var nodes []*server.Server
	for i := 0; i < n; i++ {
		o := &server.Options{
			ServerName: fmt.Sprintf("n%d", i),
			Host:       "127.0.0.1",
			Port:       -1,
			NoLog:      true,
			NoSigs:     true,
			Cluster:    server.ClusterOpts{Name: "ebisync", Host: "127.0.0.1", Port: -1},
		}
		if i > 0 {
			o.Routes = server.RoutesFromStr("nats://" + nodes[0].ClusterAddr().String())
		}
		s, err := server.NewServer(o)
		if err != nil {
			t.Fatal(err)
		}
		go s.Start()
		if !s.ReadyForConnections(10 * time.Second) {
			t.Fatalf("NATS node %d did not start", i)
		}
		nodes = append(nodes, s)
	}
	t.Cleanup(func() {
		for _, s := range nodes {
			s.Shutdown()
			s.WaitForShutdown()
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for _, s := range nodes {
		for s.NumRoutes() < n-1 {
			if time.Now().After(deadline) {
				t.Fatalf("NATS node %s has %d routes, want %d", s.Name(), s.NumRoutes(), n-1)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return nodes
}

// URLs returns the client URLs of nodes, comma-separated, as nats.Connect
// takes them.
func URLs(nodes ...*server.Server) string {
	var u []string
	for _, s := range nodes {
		u = append(u, s.ClientURL())
	}
	return strings.Join(u, ",")
}

// Connect connects to url (one or more comma-separated URLs, tried in
// order), reconnecting without end, with opts after its own, and closes
// the connection when t ends.
func Connect(t testing.TB, url string, opts ...nats.Option) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url, append([]nats.Option{nats.MaxReconnects(-1), nats.ReconnectWait(20 * time.Millisecond), nats.ReconnectJitter(0, 0), nats.DontRandomize()}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}
