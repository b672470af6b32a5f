package promsync_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/yohamta/donburi"
	"go.uber.org/goleak"

	"github.com/ebisync/ebisync"
	"github.com/ebisync/ebisync/components"
	ebtestutil "github.com/ebisync/ebisync/internal/testutil"
	"github.com/ebisync/ebisync/internal/wire"
	"github.com/ebisync/ebisync/netclient"
	"github.com/ebisync/ebisync/plugin"
	"github.com/ebisync/ebisync/plugin/promsync"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type scoreData struct{ Points int32 }

var score = donburi.NewComponentType[scoreData]()

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// player is a netclient whose Update runs on its own goroutine.
type player struct {
	mu    sync.Mutex
	c     *netclient.Client
	hello uint64 // bytes of the client's Hello
	stop  chan struct{}
	done  chan struct{}
}

func dial(url, token string) (*player, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	reg := components.NewRegistry()
	components.RegisterStandard(reg)
	components.Register(reg, "test.score", score, &components.Options{ClientWritable: true})
	// No pings: the traffic is what the test makes.
	c, err := netclient.Dial(ctx, url, reg, &netclient.Options{Token: token, Logger: quiet, PingInterval: time.Hour, NoReconnect: true})
	if err != nil {
		return nil, err
	}
	p := &player{c: c, hello: uint64(len(helloOf(reg))), stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		tk := time.NewTicker(2 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-p.stop:
				return
			case <-tk.C:
				p.mu.Lock()
				_ = c.Update()
				p.mu.Unlock()
			}
		}
	}()
	return p, nil
}

// helloOf returns the Hello a netclient with reg and no name sends, which
// the server does not count as traffic (it is the handshake's).
func helloOf(reg *components.Registry) []byte {
	h := wire.Hello{Version: wire.ProtocolVersion}
	for _, sc := range reg.Schema() {
		d := wire.ComponentDesc{Name: sc.Name, Hash: sc.Hash}
		for _, f := range sc.Fields {
			d.Fields = append(d.Fields, wire.FieldDesc{Name: f.Name, Type: f.Type, Quant: f.Quant})
		}
		h.Components = append(h.Components, d)
	}
	return wire.AppendHello(nil, &h)
}

func (p *player) close() {
	close(p.stop)
	<-p.done
	_ = p.c.Close()
}

// TestMetrics scrapes the collector after known traffic: one connection
// refused for its credentials and one for its Origin, two players that
// subscribe to everything and receive ten entities, one mutation the
// server accepts and one it refuses. The scrape shows those counts, the
// ticks run (as a histogram whose count is the ticks), and, once the
// players are up to date, the messages and bytes the players counted
// on their side.
func TestMetrics(t *testing.T) {
	reg := components.NewRegistry()
	components.RegisterStandard(reg)
	components.Register(reg, "test.score", score, &components.Options{ClientWritable: true})
	w := donburi.NewWorld()
	srv := plugin.New(w, reg, &plugin.Options{
		Logger:       quiet,
		PingInterval: -1, // no pings: the traffic is what the test makes
		Authenticate: func(r *http.Request) (plugin.Identity, error) {
			if tok := plugin.BearerToken(r); tok == "alice" || tok == "bob" {
				return plugin.Identity{User: tok}, nil
			}
			return plugin.Identity{}, plugin.ErrUnauthenticated
		},
	})
	ts := httptest.NewServer(srv)
	defer ts.Close()
	defer srv.Close()
	url := "ws" + strings.TrimPrefix(ts.URL, "http")
	col := promsync.New(srv, nil)
	preg := prometheus.NewPedanticRegistry()
	preg.MustRegister(col)

	// This goroutine is the game's: it creates the entities and ticks.
	ticks := 0
	tickUntil := func(what string, cond func() bool) {
		t.Helper()
		tk := time.NewTicker(2 * time.Millisecond)
		defer tk.Stop()
		deadline := time.After(10 * time.Second)
		for !cond() {
			select {
			case <-tk.C:
				srv.Tick()
				ticks++
			case <-deadline:
				t.Fatalf("no %s within 10s", what)
			}
		}
	}

	// Two refusals.
	if _, err := dial(url, "mallory"); !errors.Is(err, netclient.ErrUnauthorized) {
		t.Fatalf("dial with a bad token: %v, want ErrUnauthorized", err)
	}
	req, _ := http.NewRequest(http.MethodGet, ts.URL, nil)
	for k, v := range map[string]string{"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
		"Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Origin": "https://elsewhere.example"} {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("a cross-site upgrade: %s, want 403", resp.Status)
	}

	// Two players, ten entities, one of them alice's.
	var players []*player
	for _, tok := range []string{"alice", "bob"} {
		p, err := dial(url, tok)
		if err != nil {
			t.Fatal(err)
		}
		defer p.close()
		if err := p.c.SubscribeAll(); err != nil {
			t.Fatal(err)
		}
		players = append(players, p)
	}
	alice, bob := players[0], players[1]
	var owned donburi.Entity
	for i := range 10 {
		e := w.Create(components.Replicated, components.Position)
		components.Position.SetValue(w.Entry(e), components.PositionData{X: float64(i), Y: 1})
		if i == 0 {
			w.Entry(e).AddComponent(components.Owner)
			w.Entry(e).AddComponent(score)
			components.Owner.SetValue(w.Entry(e), components.OwnerData{Client: alice.c.ClientID()})
			owned = e
		}
	}
	mirrored := func(p *player) bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.c.Stats().Entities == 10
	}
	tickUntil("ten entities in both mirrors", func() bool { return mirrored(alice) && mirrored(bob) })
	netID := components.Replicated.Get(w.Entry(owned)).NetID

	// One mutation accepted, one refused.
	mutate := func(p *player, v int32) <-chan netclient.MutationResult {
		p.mu.Lock()
		defer p.mu.Unlock()
		e, ok := p.c.Entity(netID)
		if !ok {
			t.Fatal("the owned entity is not in the mirror")
		}
		h, _ := components.Lookup(p.c.Registry(), score)
		return netclient.Mutate(p.c, e, h, scoreData{Points: v}, nil)
	}
	results := []<-chan netclient.MutationResult{mutate(alice, 5), mutate(bob, 6)}
	var got []ebisync.Status
	tickUntil("both mutation results", func() bool {
		for len(got) < len(results) {
			select {
			case r := <-results[len(got)]:
				got = append(got, r.Status)
				continue
			default:
			}
			break
		}
		return len(got) == len(results)
	})
	if got[0] != ebisync.Ok || got[1] != ebisync.Forbidden {
		t.Fatalf("mutation results %v, want Ok then Forbidden", got)
	}

	// Quiet: the players have received all the server sent. Empty ticks
	// send nothing, and neither the players nor the server ping.
	var st plugin.Stats
	sums := func() (bytesIn, bytesOut, msgsIn, msgsOut, hello uint64) {
		for _, p := range players {
			s := p.c.Stats()
			bytesIn += s.BytesIn
			bytesOut += s.BytesOut
			msgsIn += s.MessagesIn
			msgsOut += s.MessagesOut
			hello += p.hello
		}
		return
	}
	tickUntil("the players up to date with the server", func() bool {
		srv.ReadStats(&st)
		in, _, msgsIn, _, _ := sums()
		return st.Traffic.MessagesOut == msgsIn && st.Traffic.BytesOut == in
	})

	// What the scrape says.
	expected := fmt.Sprintf(`
# HELP ebisync_connections Open connections, handshakes included.
# TYPE ebisync_connections gauge
ebisync_connections 2
# HELP ebisync_clients Connected clients the tick serves.
# TYPE ebisync_clients gauge
ebisync_clients 2
# HELP ebisync_sessions_parked Sessions of departed clients kept for a resume.
# TYPE ebisync_sessions_parked gauge
ebisync_sessions_parked 0
# HELP ebisync_resumes_total Hellos that asked to resume a session, by result (resumed, or refused: a fresh session).
# TYPE ebisync_resumes_total counter
ebisync_resumes_total{result="refused"} 0
ebisync_resumes_total{result="resumed"} 0
# HELP ebisync_connects_total Handshakes completed.
# TYPE ebisync_connects_total counter
ebisync_connects_total 2
# HELP ebisync_entities Replicated entities.
# TYPE ebisync_entities gauge
ebisync_entities 10
# HELP ebisync_subscriptions Component and entity subscriptions over all clients.
# TYPE ebisync_subscriptions gauge
ebisync_subscriptions %d
# HELP ebisync_mutations_total Answers to mutations and game messages, by status.
# TYPE ebisync_mutations_total counter
ebisync_mutations_total{status="Forbidden"} 1
ebisync_mutations_total{status="InternalError"} 0
ebisync_mutations_total{status="NotFound"} 0
ebisync_mutations_total{status="Ok"} 1
ebisync_mutations_total{status="RateLimited"} 0
ebisync_mutations_total{status="ValidationError"} 0
`, 2*reg.Len())
	if err := testutil.GatherAndCompare(preg, strings.NewReader(expected),
		"ebisync_connections", "ebisync_clients", "ebisync_connects_total", "ebisync_entities",
		"ebisync_subscriptions", "ebisync_mutations_total", "ebisync_sessions_parked", "ebisync_resumes_total"); err != nil {
		t.Error(err)
	}
	families, err := preg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	value := func(name string, labels ...string) float64 {
		t.Helper()
		for _, f := range families {
			if f.GetName() != name {
				continue
			}
			for _, m := range f.GetMetric() {
				if matches(m, labels) {
					switch {
					case m.Counter != nil:
						return m.Counter.GetValue()
					case m.Gauge != nil:
						return m.Gauge.GetValue()
					case m.Histogram != nil:
						return float64(m.Histogram.GetSampleCount())
					}
				}
			}
		}
		t.Fatalf("no metric %s%v", name, labels)
		return 0
	}
	if n := value("ebisync_refusals_total", "reason", plugin.RefusedUnauthenticated); n != 1 {
		t.Errorf("refusals for credentials: %v, want 1", n)
	}
	if n := value("ebisync_refusals_total", "reason", plugin.RefusedOrigin); n != 1 {
		t.Errorf("refusals for the Origin: %v, want 1", n)
	}
	if n := value("ebisync_refusals_total", "reason", plugin.RefusedFlood); n != 0 {
		t.Errorf("refusals for floods: %v, want 0", n)
	}
	if n := value("ebisync_ticks_total"); n != float64(ticks) {
		t.Errorf("ticks_total %v, the test ran %d", n, ticks)
	}
	if n := value("ebisync_tick_seconds"); n != float64(ticks) {
		t.Errorf("the tick histogram counts %v ticks, the test ran %d", n, ticks)
	}
	in, out, msgsIn, msgsOut, hello := sums()
	if n := value("ebisync_sent_messages_total"); n != float64(msgsIn) {
		t.Errorf("sent_messages_total %v, the players received %d", n, msgsIn)
	}
	if n := value("ebisync_sent_bytes_total"); n != float64(in) {
		t.Errorf("sent_bytes_total %v, the players received %d", n, in)
	}
	// The server counts what follows the handshake's Hello.
	if n := value("ebisync_received_messages_total"); n != float64(msgsOut-2) {
		t.Errorf("received_messages_total %v, the players sent %d besides their Hellos", n, msgsOut-2)
	}
	if n := value("ebisync_received_bytes_total"); n != float64(out-hello) {
		t.Errorf("received_bytes_total %v, the players sent %d bytes besides their Hellos", n, out-hello)
	}
	if b, w := value("ebisync_batch_bytes_total", "stage", "wire"), value("ebisync_sent_bytes_total"); b <= 0 || b > w {
		t.Errorf("batch bytes on the wire %v, sent bytes %v", b, w)
	}
	if n := value("ebisync_batches_total"); n < 2 {
		t.Errorf("batches_total %v", n)
	}
	var phases float64
	for _, p := range []string{"inbound", "detect", "scopes", "send"} {
		phases += value("ebisync_tick_phase_seconds_total", "phase", p)
	}
	for _, f := range families {
		if f.GetName() == "ebisync_tick_seconds" {
			if sum := f.GetMetric()[0].GetHistogram().GetSampleSum(); phases <= 0 || phases > sum {
				t.Errorf("the phases took %vs of ticks that took %vs", phases, sum)
			}
		}
	}
	if n := value("ebisync_client_rtt_seconds", "stat", "max"); !math.IsNaN(n) {
		t.Errorf("client_rtt_seconds max %v with no Pings, want NaN", n)
	}
	if problems, err := testutil.CollectAndLint(col); err != nil || len(problems) > 0 {
		t.Errorf("promlint: %v %v", problems, err)
	}
}

// TestMetricsRTT: with the server pinging every 20 ms, the scrape shows the
// players' round-trip times, ordered median ≤ p90 ≤ p99 ≤ max.
func TestMetricsRTT(t *testing.T) {
	reg := components.NewRegistry()
	components.RegisterStandard(reg)
	components.Register(reg, "test.score", score, &components.Options{ClientWritable: true})
	srv := plugin.New(donburi.NewWorld(), reg, &plugin.Options{Logger: quiet, PingInterval: 20 * time.Millisecond})
	ts := httptest.NewServer(srv)
	defer ts.Close()
	defer srv.Close()
	url := "ws" + strings.TrimPrefix(ts.URL, "http")
	col := promsync.New(srv, nil)
	preg := prometheus.NewPedanticRegistry()
	preg.MustRegister(col)
	for range 2 {
		p, err := dial(url, "")
		if err != nil {
			t.Fatal(err)
		}
		defer p.close()
	}
	stats := map[string]float64{}
	scrape := func() {
		t.Helper()
		families, err := preg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		clear(stats)
		for _, f := range families {
			if f.GetName() == "ebisync_client_rtt_seconds" {
				for _, m := range f.GetMetric() {
					stats[m.GetLabel()[0].GetValue()] = m.GetGauge().GetValue()
				}
			}
		}
	}
	measured := func() int {
		n := 0
		for _, c := range srv.Stats().PerClient {
			if c.RTT > 0 {
				n++
			}
		}
		return n
	}
	ebtestutil.Eventually(t, 10*time.Second, "both players' RTT", func() bool { return measured() == 2 })
	scrape()
	med, p90, p99, mx := stats["median"], stats["p90"], stats["p99"], stats["max"]
	if !(med > 0 && med <= p90 && p90 <= p99 && p99 <= mx && mx < 10) {
		t.Fatalf("client_rtt_seconds %v: want 0 < median ≤ p90 ≤ p99 ≤ max < 10 s", stats)
	}
	t.Logf("client_rtt_seconds %v", stats)
	if problems, err := testutil.CollectAndLint(col); err != nil || len(problems) > 0 {
		t.Errorf("promlint: %v %v", problems, err)
	}
}

// matches reports whether m has the label pairs.
func matches(m *dto.Metric, labels []string) bool {
	for i := 0; i+1 < len(labels); i += 2 {
		ok := false
		for _, l := range m.GetLabel() {
			ok = ok || l.GetName() == labels[i] && l.GetValue() == labels[i+1]
		}
		if !ok {
			return false
		}
	}
	return true
}
