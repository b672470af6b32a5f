// Package promsync exports an ebisync server's figures to Prometheus: a
// prometheus.Collector over plugin.Server.ReadStats. It lives in a package
// of its own so that games that do not scrape do not import
// client_golang.
//
//	reg := prometheus.NewRegistry()
//	reg.MustRegister(promsync.New(srv, nil))
//	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
//
// The metrics, under the namespace "ebisync" (Options.Namespace):
//
//	connections                       gauge    open connections, handshakes included
//	clients                           gauge    connected clients the tick serves
//	sessions_parked                   gauge    sessions of departed clients kept for a resume
//	gateways                          gauge    gateways a simulation hears from (plugin.Upstream)
//	remote_clients                    gauge    clients the gateways serve
//	remote_sessions_parked            gauge    sessions of gateways' departed clients kept for a resume at any gateway
//	resumes_total{result}             counter  Hellos that asked to resume: "resumed", or "refused" (a fresh session)
//	connects_total                    counter  handshakes completed
//	refusals_total{reason}            counter  refused connections and dropped clients, by plugin.Refused* reason
//	ticks_total                       counter  ticks run
//	tick_seconds                      histogram  each tick's duration (buckets: plugin.TickBuckets)
//	tick_phase_seconds_total{phase}   counter  time spent in each phase: inbound, detect, scopes, send
//	last_tick_seconds                 gauge    the last tick's duration
//	last_tick_phase_seconds{phase}    gauge    the last tick's phases
//	received_bytes_total              counter  bytes of every message from clients
//	received_messages_total           counter  messages from clients
//	sent_bytes_total                  counter  bytes of every message to clients (batches, handshakes, pongs)
//	sent_messages_total               counter  messages to clients
//	batches_total                     counter  batches handed to writers
//	batch_bytes_total{stage}          counter  batch bytes as built ("raw") and as sent ("wire", after lz4)
//	skipped_busy_total                counter  client-ticks skipped because the writer was busy
//	rescans_total                     counter  whole-scope evaluations of a client
//	subscriptions                     gauge    component and entity subscriptions over all clients
//	scope_entries                     gauge    in-scope entity records over all clients
//	entities                          gauge    replicated entities
//	mutations_total{status}           counter  answers to mutations (and game messages), by ebisync.Status
//	inputs_total{outcome}             counter  clients' inputs: applied, refused, duplicate, late, dropped
//	client_rtt_seconds{stat}          gauge    connected clients' round-trip times (plugin.ClientStats.RTT) over those
//	                                           measured: "median", "p90", "p99", "max"; NaN while none is
//
// Traffic counters cover every connection since the server started, open
// and closed; the per-tick figures are as of the last completed tick.
// Scraping takes the server's connection lock once, as Stats does; it
// never touches the game goroutine.
package promsync

import (
	"math"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ebisync/ebisync"
	"github.com/ebisync/ebisync/plugin"
)

// Options configures a Collector. A nil *Options means the defaults. New
// copies it.
type Options struct {
	// Namespace prefixes every metric name. Default "ebisync".
	Namespace string
	// ConstLabels are added to every metric (a server's name, when a
	// process runs several).
	ConstLabels prometheus.Labels
}

// Collector is a prometheus.Collector of one server's figures. It is safe
// for concurrent use.
type Collector struct {
	srv    *plugin.Server
	bounds []float64 // tick histogram bucket bounds, in seconds

	mu   sync.Mutex
	st   plugin.Stats    // reused by every scrape
	rtts []time.Duration // likewise

	connections, clients, connects, refusals, ticks, tick, phaseTotal,
	lastTick, lastPhase, recvBytes, recvMsgs, sentBytes, sentMsgs,
	batches, batchBytes, skipped, rescans, subscriptions, scopeEntries,
	entities, mutations, parked, resumes, inputs, rtt *prometheus.Desc
	gateways, remoteClients, remoteParked *prometheus.Desc
}

// refusalReasons are listed at zero before the first refusal of each, so
// that rates over them start at the server's start.
var refusalReasons = []string{
	plugin.RefusedOrigin, plugin.RefusedUnauthenticated, plugin.RefusedAccessDenied,
	plugin.RefusedConnections, plugin.RefusedHandshakes, plugin.RefusedPerAddress,
	plugin.RefusedHandshake, plugin.RefusedSchema, plugin.RefusedProtocol,
	plugin.RefusedReadLimit, plugin.RefusedFlood, plugin.RefusedSubscriptions,
	plugin.RefusedPanic, plugin.RefusedTooSlow, plugin.RefusedMessages, plugin.RefusedUpstream,
}

// statuses are the answers a server gives, listed at zero likewise.
var statuses = []ebisync.Status{
	ebisync.Ok, ebisync.Forbidden, ebisync.NotFound,
	ebisync.ValidationError, ebisync.RateLimited, ebisync.InternalError,
}

var phases = []string{"inbound", "detect", "scopes", "send"}

// rttStats are the quantiles of client_rtt_seconds.
var rttStats = []struct {
	name string
	q    float64
}{{"median", 0.5}, {"p90", 0.9}, {"p99", 0.99}, {"max", 1}}

// New returns a Collector of srv's figures; register it with a
// prometheus.Registerer. It is safe for concurrent use.
func New(srv *plugin.Server, opts *Options) *Collector {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.Namespace == "" {
		o.Namespace = "ebisync"
	}
	desc := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(o.Namespace, "", name), help, labels, o.ConstLabels)
	}
	c := &Collector{
		srv:           srv,
		connections:   desc("connections", "Open connections, handshakes included."),
		clients:       desc("clients", "Connected clients the tick serves."),
		parked:        desc("sessions_parked", "Sessions of departed clients kept for a resume."),
		gateways:      desc("gateways", "Gateways the simulation hears from."),
		remoteClients: desc("remote_clients", "Clients the gateways serve."),
		remoteParked:  desc("remote_sessions_parked", "Sessions of gateways' departed clients kept for a resume at any gateway."),
		resumes:       desc("resumes_total", "Hellos that asked to resume a session, by result (resumed, or refused: a fresh session).", "result"),
		inputs:        desc("inputs_total", "Clients' inputs by outcome: applied, refused, duplicate (ignored), late (waited a tick), dropped.", "outcome"),
		connects:      desc("connects_total", "Handshakes completed."),
		refusals:      desc("refusals_total", "Refused connections and dropped clients, by reason.", "reason"),
		ticks:         desc("ticks_total", "Ticks run."),
		tick:          desc("tick_seconds", "Duration of each tick."),
		phaseTotal:    desc("tick_phase_seconds_total", "Time the ticks spent in each phase.", "phase"),
		lastTick:      desc("last_tick_seconds", "Duration of the last tick."),
		lastPhase:     desc("last_tick_phase_seconds", "Time the last tick spent in each phase.", "phase"),
		recvBytes:     desc("received_bytes_total", "Bytes of the messages received from clients."),
		recvMsgs:      desc("received_messages_total", "Messages received from clients."),
		sentBytes:     desc("sent_bytes_total", "Bytes of the messages sent to clients (batches, handshakes, pongs)."),
		sentMsgs:      desc("sent_messages_total", "Messages sent to clients."),
		batches:       desc("batches_total", "Batches handed to writers."),
		batchBytes:    desc("batch_bytes_total", "Batch bytes as built (raw) and as sent after compression (wire).", "stage"),
		skipped:       desc("skipped_busy_total", "Client-ticks skipped because the client's writer was busy."),
		rescans:       desc("rescans_total", "Whole-scope evaluations of a client."),
		subscriptions: desc("subscriptions", "Component and entity subscriptions over all clients."),
		scopeEntries:  desc("scope_entries", "In-scope entity records over all clients."),
		entities:      desc("entities", "Replicated entities."),
		mutations:     desc("mutations_total", "Answers to mutations and game messages, by status.", "status"),
		rtt:           desc("client_rtt_seconds", "Connected clients' smoothed round-trip times, over those measured: median, p90, p99 and max (NaN while none is).", "stat"),
	}
	for _, b := range plugin.TickBuckets() {
		c.bounds = append(c.bounds, b.Seconds())
	}
	return c
}

// Describe implements prometheus.Collector. It is safe for concurrent use.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		c.connections, c.clients, c.connects, c.refusals, c.ticks, c.tick, c.phaseTotal,
		c.lastTick, c.lastPhase, c.recvBytes, c.recvMsgs, c.sentBytes, c.sentMsgs,
		c.batches, c.batchBytes, c.skipped, c.rescans, c.subscriptions, c.scopeEntries,
		c.entities, c.mutations, c.parked, c.resumes, c.inputs, c.rtt,
		c.gateways, c.remoteClients, c.remoteParked,
	} {
		ch <- d
	}
}

// Collect implements prometheus.Collector: it reads the server's Stats
// (ReadStats, under the Collector's lock, reusing its maps). It is safe for
// concurrent use.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := &c.st
	c.srv.ReadStats(st)
	c.rtts = c.rtts[:0]
	for i := range st.PerClient {
		if r := st.PerClient[i].RTT; r > 0 {
			c.rtts = append(c.rtts, r)
		}
	}
	st.PerClient = st.PerClient[:0]
	slices.Sort(c.rtts)

	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	gauge(c.connections, float64(st.Connections))
	gauge(c.clients, float64(st.Clients))
	counter(c.connects, float64(st.Connects))
	for _, r := range refusalReasons {
		counter(c.refusals, float64(st.Refusals[r]), r)
	}
	for r, n := range st.Refusals {
		if !known(r) {
			counter(c.refusals, float64(n), r)
		}
	}
	counter(c.ticks, float64(st.Ticks))

	h := &st.TickHistogram
	buckets := make(map[float64]uint64, len(c.bounds))
	var cum uint64
	for i, b := range c.bounds {
		cum += h.Counts[i]
		buckets[b] = cum
	}
	ch <- prometheus.MustNewConstHistogram(c.tick, h.Count(), h.Sum.Seconds(), buckets)

	total := []float64{st.PhaseTotals.Inbound.Seconds(), st.PhaseTotals.Detect.Seconds(), st.PhaseTotals.Scopes.Seconds(), st.PhaseTotals.Send.Seconds()}
	last := []float64{st.Phases.Inbound.Seconds(), st.Phases.Detect.Seconds(), st.Phases.Scopes.Seconds(), st.Phases.Send.Seconds()}
	for i, p := range phases {
		counter(c.phaseTotal, total[i], p)
		gauge(c.lastPhase, last[i], p)
	}
	gauge(c.lastTick, st.TickTime.Seconds())

	counter(c.recvBytes, float64(st.Traffic.BytesIn))
	counter(c.recvMsgs, float64(st.Traffic.MessagesIn))
	counter(c.sentBytes, float64(st.Traffic.BytesOut))
	counter(c.sentMsgs, float64(st.Traffic.MessagesOut))
	counter(c.batches, float64(st.Batches))
	counter(c.batchBytes, float64(st.RawBytesOut), "raw")
	counter(c.batchBytes, float64(st.BytesOut), "wire")
	counter(c.skipped, float64(st.SkippedBusy))
	counter(c.rescans, float64(st.Rescans))
	gauge(c.subscriptions, float64(st.Subscriptions))
	gauge(c.scopeEntries, float64(st.ScopeEntries))
	gauge(c.entities, float64(st.Entities))
	gauge(c.parked, float64(st.Parked))
	gauge(c.gateways, float64(st.Gateways))
	gauge(c.remoteClients, float64(st.RemoteClients))
	gauge(c.remoteParked, float64(st.RemoteParked))
	counter(c.resumes, float64(st.Resumes), "resumed")
	counter(c.resumes, float64(st.ResumesRefused), "refused")
	counter(c.inputs, float64(st.InputsApplied), "applied")
	counter(c.inputs, float64(st.InputsRefused), "refused")
	counter(c.inputs, float64(st.InputsDuplicate), "duplicate")
	counter(c.inputs, float64(st.InputsLate), "late")
	counter(c.inputs, float64(st.InputsDropped), "dropped")
	for _, s := range statuses {
		counter(c.mutations, float64(st.Mutations[s]), s.String())
	}
	for _, q := range rttStats {
		v := math.NaN()
		if n := len(c.rtts); n > 0 {
			// The nearest rank: the smallest time at or above the
			// fraction q of the clients'.
			v = c.rtts[max(int(math.Ceil(q.q*float64(n)))-1, 0)].Seconds()
		}
		gauge(c.rtt, v, q.name)
	}
	for s, n := range st.Mutations {
		if !knownStatus(s) {
			counter(c.mutations, float64(n), s.String())
		}
	}
}

func known(reason string) bool {
	for _, r := range refusalReasons {
		if r == reason {
			return true
		}
	}
	return false
}

func knownStatus(s ebisync.Status) bool {
	for _, k := range statuses {
		if k == s {
			return true
		}
	}
	return false
}
