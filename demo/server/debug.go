package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ebisync/ebisync/demo/sim"
	"github.com/ebisync/ebisync/plugin"
	"github.com/ebisync/ebisync/plugin/promsync"
)

// The operator's routes: with -inspect the plugin's Inspector at
// /debug/ebisync/ (open to requests that carry -inspect-token, or a token
// made up at start and printed), with -metrics Prometheus metrics at
// /metrics (the server's, the Go runtime's and the process's; they hold
// counts, not players' data, so they are not behind the token). They are
// served beside /sync and the browser client's page.

// inspectPath is where the Inspector is mounted.
const inspectPath = "/debug/ebisync/"

// debugRoutes are the operator's routes a run serves.
type debugRoutes struct {
	mux     *http.ServeMux // nil when neither is asked for
	inspect bool
	metrics bool
	token   string
}

// newDebugRoutes prepares the routes asked for, and puts them in front of
// cfg.Page (which they serve at every other path).
func newDebugRoutes(inspect bool, token string, metrics bool, cfg *sim.HostConfig) (*debugRoutes, error) {
	d := &debugRoutes{inspect: inspect, metrics: metrics, token: token}
	if token != "" && !inspect {
		return nil, errors.New("-inspect-token needs -inspect")
	}
	if !inspect && !metrics {
		return d, nil
	}
	if inspect && token == "" {
		b := make([]byte, 16)
		if _, err := rand.Read(b); err != nil {
			return nil, err
		}
		d.token = hex.EncodeToString(b)
	}
	d.mux = http.NewServeMux()
	if cfg.Page != nil {
		d.mux.Handle("/", cfg.Page)
	}
	cfg.Page = d.mux
	return d, nil
}

// mount adds the routes of srv.
func (d *debugRoutes) mount(srv *plugin.Server) {
	if d.inspect {
		d.mux.Handle(inspectPath, srv.Inspector(&plugin.InspectorOptions{
			Authenticate: plugin.StaticToken(d.token, plugin.Identity{User: "operator"}),
		}))
	}
	if d.metrics {
		reg := prometheus.NewRegistry()
		reg.MustRegister(promsync.New(srv, nil), collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		d.mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	}
}

// announce prints where the routes are, for the server at the WebSocket
// URL syncURL.
func (d *debugRoutes) announce(w io.Writer, syncURL string) {
	base := "http" + strings.TrimSuffix(strings.TrimPrefix(syncURL, "ws"), "/sync")
	if d.inspect {
		fmt.Fprintf(w, "inspector at %s%s?access_token=%s\n", base, inspectPath, d.token)
	}
	if d.metrics {
		fmt.Fprintf(w, "metrics at %s/metrics\n", base)
	}
}
