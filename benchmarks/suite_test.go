package benchmarks_test

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/ebisync/ebisync/components"
	"github.com/ebisync/ebisync/internal/cputime"
	"github.com/ebisync/ebisync/internal/testutil"
	"github.com/ebisync/ebisync/internal/wire"
	"github.com/ebisync/ebisync/netclient"
	"github.com/ebisync/ebisync/plugin"
)

// newStaticServer is a plugin.Server over the scenario's world, sized for
// n loopback clients.
func newStaticServer(s *tickScenario, w *tickWorld, n int) (*plugin.Server, *components.Registry) {
	reg := components.NewRegistry()
	components.RegisterStandard(reg)
	srv := plugin.New(w.world, reg, &plugin.Options{
		CellSize:                 s.radius / 4,
		Logger:                   discardLogger,
		MaxConnections:           2*n + 16,
		MaxConnectionsPerAddress: loopbackClients,
		MaxHandshakes:            loopbackClients,
	})
	return srv, reg
}

// wsURL is the ws:// URL of an http:// one.
func wsURL(url string) string { return strings.Replace(url, "http", "ws", 1) }

// inRangeCount returns how many of the scenario's starting points lie in
// client i's enter radius.
func inRangeCount(s *tickScenario, i int) int {
	c, r2, n := s.centres[i], s.radius*s.radius, 0
	for _, p := range s.start {
		if dx, dy := p.x-c.x, p.y-c.y; dx*dx+dy*dy <= r2 {
			n++
		}
	}
	return n
}

// BenchmarkClientApply measures netclient's cost of applying a component
// update to its mirror: a server with 1 000 entities, 10% of which move
// every tick (BenchmarkServerTick's scenario), and one netclient client
// subscribed to everything with global interest, over loopback. One
// iteration is one tick: the moves, Server.Tick and the wait until the
// client has the batch queued are not timed; the Client.Update that
// applies it is, in the CPU time of its thread.
//
//   - ns/update: CPU ns of Update per component update applied (each moved
//     entity is one Position delta). The target is at most 100.
//   - wall-ns/update: the same in wall time.
func BenchmarkClientApply(b *testing.B) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	const entities = 1000
	s := newTickScenario(entities, 1)
	w := newTickWorld(s)
	srv, reg := newStaticServer(s, w, 1)
	es := startEbisync(srv)
	defer es.close(nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := netclient.Dial(ctx, wsURL(es.ts.URL), reg, &netclient.Options{Logger: discardLogger})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	if err := c.SubscribeAll(); err != nil {
		b.Fatal(err)
	}
	// apply ticks once and applies its batch, returning the Update's CPU
	// and wall time and the updates it carried.
	apply := func() (cpu, wall time.Duration, updates int, err error) {
		updates = len(s.plan[w.next].changed)
		w.step(s)
		// A tick that finds the writer still finishing the last batch
		// skips the client; the next one sends the moves.
		for {
			before := srv.Stats().Batches
			srv.Tick()
			if srv.Stats().Batches > before {
				break
			}
			runtime.Gosched()
		}
		want := srv.CurrentTick()
		if err := testutil.WaitUntil(10*time.Second, func() string { return "the batch to arrive" }, func() bool {
			return c.Stats().PendingBatches > 0
		}); err != nil {
			return 0, 0, 0, err
		}
		for c.ServerTick() < want {
			if c.Stats().PendingBatches == 0 {
				runtime.Gosched()
				continue
			}
			t0, _ := cputime.Thread()
			w0 := time.Now()
			if err := c.Update(); err != nil {
				return 0, 0, 0, err
			}
			wall += time.Since(w0)
			t1, _ := cputime.Thread()
			cpu += t1 - t0
		}
		return cpu, wall, updates, nil
	}
	// Warm-up: the spawn of every entity, then steady ticks.
	if err := testutil.WaitUntil(20*time.Second, func() string { return "the mirror to fill" }, func() bool {
		srv.Tick()
		_ = c.Update()
		return c.Stats().Entities == entities
	}); err != nil {
		b.Fatal(err)
	}
	for range 60 {
		if _, _, _, err := apply(); err != nil {
			b.Fatal(err)
		}
	}
	var cpu, wall time.Duration
	var updates int
	b.ResetTimer()
	for range b.N {
		c1, w1, u, err := apply()
		if err != nil {
			b.Fatal(err)
		}
		cpu += c1
		wall += w1
		updates += u
	}
	b.StopTimer()
	if _, ok := cputime.Thread(); ok {
		b.ReportMetric(float64(cpu)/float64(updates), "ns/update")
	}
	b.ReportMetric(float64(wall)/float64(updates), "wall-ns/update")
}

// BenchmarkIdle measures what idle clients cost in traffic: a server
// with 1 000 entities that never move ticks at 30 Hz, and 100 netclient
// clients (default options: a ping a second) each look at its own 5% of
// the map, subscribed to everything, their Update called at 30 Hz. Once
// every client has its entities, a window of 5 s (3 s with -short) is
// measured; one iteration is one window.
//
//   - kbit/s/client: WebSocket traffic per client both ways (payload plus
//     frame headers: 2 bytes per server frame, 6 per masked client frame);
//   - kbit/s/client-ip: the same plus 52 bytes of IPv4 and TCP header
//     (with the timestamp option) for each message and for an ACK of each,
//     an upper bound of what a link carries. The target is at most 5;
//   - batches/tick: batches the server sent per tick in the window. A tick
//     with no change sends nothing, so it must be 0, and the benchmark
//     fails otherwise.
func BenchmarkIdle(b *testing.B) {
	const (
		entities = 1000
		clients  = 100
	)
	window := 5 * time.Second
	if testing.Short() {
		window = 3 * time.Second
	}
	if err := raiseFileLimit(2*clients + 256); err != nil {
		b.Fatal(err)
	}
	s := newTickScenario(entities, clients)
	w := newTickWorld(s)
	srv, reg := newStaticServer(s, w, clients)
	es := startEbisync(srv)
	defer es.close(nil)

	var mu sync.Mutex // the server's World and the clients' mirrors
	stop, stopped := make(chan struct{}), make(chan struct{})
	cls := make([]*netclient.Client, 0, clients)
	go func() {
		defer close(stopped)
		tk := time.NewTicker(time.Second / 30)
		defer tk.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tk.C:
			}
			mu.Lock()
			srv.Tick()
			for _, c := range cls {
				_ = c.Update()
			}
			mu.Unlock()
		}
	}()
	defer func() {
		close(stop)
		<-stopped
		for _, c := range cls {
			c.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	want := make([]int, clients)
	for i := range clients {
		c, err := netclient.Dial(ctx, wsURL(es.ts.URL), reg, &netclient.Options{Logger: discardLogger})
		if err != nil {
			b.Fatal(err)
		}
		ce := s.centres[i]
		if err := c.SetInterest(ce.x, ce.y, s.radius); err != nil {
			b.Fatal(err)
		}
		if err := c.SubscribeAll(); err != nil {
			b.Fatal(err)
		}
		want[i] = inRangeCount(s, i)
		mu.Lock()
		cls = append(cls, c)
		mu.Unlock()
	}
	if err := testutil.WaitUntil(time.Minute, func() string { return "every client's entities" }, func() bool {
		for i, c := range cls {
			if c.Stats().Entities != want[i] {
				return false
			}
		}
		return true
	}); err != nil {
		b.Fatal(err)
	}
	type reading struct {
		ticks, batches           uint64
		in, out, msgsIn, msgsOut uint64
	}
	read := func() reading {
		st := srv.Stats()
		r := reading{ticks: st.Ticks, batches: st.Batches}
		for _, c := range cls {
			cs := c.Stats()
			r.in += cs.BytesIn
			r.out += cs.BytesOut
			r.msgsIn += cs.MessagesIn
			r.msgsOut += cs.MessagesOut
		}
		return r
	}
	var bits, ipBits, secs, ticks, batches float64
	for range b.N {
		r0 := read()
		t0 := time.Now()
		testutil.LetTimePass(window)
		r1 := read()
		secs += time.Since(t0).Seconds()
		msgsIn, msgsOut := float64(r1.msgsIn-r0.msgsIn), float64(r1.msgsOut-r0.msgsOut)
		ws := float64(r1.in-r0.in+r1.out-r0.out) + 2*msgsIn + 6*msgsOut
		bits += 8 * ws
		ipBits += 8 * (ws + 2*52*(msgsIn+msgsOut))
		ticks += float64(r1.ticks - r0.ticks)
		batches += float64(r1.batches - r0.batches)
	}
	if batches != 0 {
		b.Errorf("the server sent %v batches in %v ticks with nothing changing", batches, ticks)
	}
	b.ReportMetric(bits/1000/secs/clients, "kbit/s/client")
	b.ReportMetric(ipBits/1000/secs/clients, "kbit/s/client-ip")
	b.ReportMetric(batches/ticks, "batches/tick")
}

// BenchmarkIdleServer measures the server's tick with clients connected
// and nothing changing: 1 000 entities that never move and N clients
// (100 and 1 000; 100 with -short) over loopback, each looking at its own
// 5% of the map, subscribed to Position and Health. Once every client in
// range of an entity has had its first batch, one iteration is one
// Server.Tick on a goroutine locked to its thread.
//
//   - cpu-us/tick: the tick thread's CPU time per tick;
//   - cpu-ns/client-tick: the same per client;
//   - B/tick: batch bytes sent per tick (0: nothing changes).
func BenchmarkIdleServer(b *testing.B) {
	for _, n := range []int{100, 1000} {
		b.Run(fmt.Sprintf("clients=%d", n), func(b *testing.B) {
			if testing.Short() && n > 100 {
				b.Skip("more than 100 clients skipped in -short mode")
			}
			benchIdleServer(b, n)
		})
	}
}

func benchIdleServer(b *testing.B, clients int) {
	const entities = 1000
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := raiseFileLimit(uint64(2*clients) + 256); err != nil {
		b.Fatal(err)
	}
	s := newTickScenario(entities, clients)
	w := newTickWorld(s)
	srv, reg := newStaticServer(s, w, clients)
	es := startEbisync(srv)
	hello := helloFor(reg, "idle")
	subscribe := subscribeMsg(compIndex(b, reg, components.Position), compIndex(b, reg, components.Health))
	cls, err := connectAll(clients, func(ctx context.Context, i int) (*rawClient, error) {
		c := s.centres[i]
		return dialEbisync(ctx, es.ts.URL, reg, hello, false, pointInterest(c.x, c.y, s.radius), subscribe)
	})
	if err != nil {
		b.Fatal(err)
	}
	defer es.close(cls)
	inRange := 0
	for i := range clients {
		if inRangeCount(s, i) > 0 {
			inRange++
		}
	}
	served := 0
	if err := testutil.WaitUntil(time.Minute, func() string {
		return fmt.Sprintf("%d of the %d clients in range of an entity served", served, inRange)
	}, func() bool {
		srv.Tick()
		served = 0
		for _, c := range cls {
			if c.msgs.Load() > 0 {
				served++
			}
		}
		return served >= inRange
	}); err != nil {
		b.Fatal(err)
	}
	if err := waitDelivered(srv, cls); err != nil {
		b.Fatal(err)
	}
	for range 30 {
		srv.Tick()
	}
	before := srv.Stats().BytesOut
	t0, ok := cputime.Thread()
	b.ResetTimer()
	for range b.N {
		srv.Tick()
	}
	b.StopTimer()
	t1, _ := cputime.Thread()
	if ok {
		b.ReportMetric(float64(t1-t0)/1e3/float64(b.N), "cpu-us/tick")
		b.ReportMetric(float64(t1-t0)/float64(b.N)/float64(clients), "cpu-ns/client-tick")
	}
	b.ReportMetric(float64(srv.Stats().BytesOut-before)/float64(b.N), "B/tick")
}

// BenchmarkCompression measures lz4 on real batches: one client over
// loopback looks at 5% of a map of 10 000 entities (about 500 in range),
// 10% of which move every tick (BenchmarkServerTick's scenario). Its
// first batch is the spawn burst of everything in range; the next 60
// batches are deltas of the moves. Each batch as the server built it
// (before compression) is compressed with the server's lz4 framing
// (wire.Compressor) and opened again (wire.Open) in every iteration.
//
//   - spawn-x-ratio, delta-x-ratio: raw bytes ÷ compressed bytes (what
//     lz4 would send; the server sends raw what does not shrink);
//   - spawn-B, delta-B: raw bytes of the spawn batch and of a delta batch
//     (average);
//   - spawn-compress-us, delta-compress-us, spawn-open-us, delta-open-us:
//     wall time to compress and to open (decompress) one batch;
//   - delta-shrunk-share: the share of delta batches lz4 shrinks by at
//     least a sixteenth, the server's bar for keeping on trying.
func BenchmarkCompression(b *testing.B) {
	const entities = 10000
	s := newTickScenario(entities, 1)
	w := newTickWorld(s)
	srv, reg := newStaticServer(s, w, 1)
	es := startEbisync(srv)
	defer es.close(nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ws, err := dialWS(ctx, es.ts.URL)
	if err != nil {
		b.Fatal(err)
	}
	defer ws.CloseNow()
	c := s.centres[0]
	for _, m := range [][]byte{helloFor(reg, "compression"), pointInterest(c.x, c.y, s.radius),
		subscribeMsg(compIndex(b, reg, components.Position), compIndex(b, reg, components.Health))} {
		if err := ws.Write(ctx, websocket.MessageBinary, m); err != nil {
			b.Fatal(err)
		}
	}
	// The messages, read on a goroutine as the server built them: kind
	// byte and body, uncompressed.
	msgs := make(chan []byte, 16)
	go func() {
		defer close(msgs)
		for {
			_, msg, err := ws.Read(ctx)
			if err != nil {
				return
			}
			kind, body, _, err := wire.Open(msg, nil)
			if err != nil {
				return
			}
			if kind == wire.KindBatch {
				msgs <- append([]byte{byte(kind)}, body...)
			}
		}
	}()
	// next ticks until a batch arrives, moving the entities first when
	// move is set, and returns the batch.
	next := func(move bool) []byte {
		if move {
			w.step(s)
		}
		for range 200 {
			srv.Tick()
			select {
			case m, ok := <-msgs:
				if !ok {
					b.Fatal("the connection ended")
				}
				return m
			case <-time.After(50 * time.Millisecond):
			}
		}
		b.Fatal("no batch within 200 ticks")
		return nil
	}
	spawn := next(false) // after the Welcome, the first batch: every entity in range
	var deltas [][]byte
	for range 60 {
		deltas = append(deltas, next(true))
	}
	var comp wire.Compressor
	var framed, scratch []byte
	// measure compresses and opens each batch, returning the compressed
	// bytes and the time spent on each.
	measure := func(batches [][]byte) (wireBytes, raw int, tc, to time.Duration, shrunk int) {
		for _, m := range batches {
			t0 := time.Now()
			framed = comp.Compress(framed[:0], m)
			t1 := time.Now()
			var err error
			_, _, scratch, err = wire.Open(framed, scratch)
			to += time.Since(t1)
			tc += t1.Sub(t0)
			if err != nil {
				b.Fatal(err)
			}
			wireBytes += len(framed)
			raw += len(m)
			if len(framed) <= len(m)-len(m)/16 {
				shrunk++
			}
		}
		return
	}
	var sw, sr, dw, dr, shrunk int
	var stc, sto, dtc, dto time.Duration
	b.ResetTimer()
	for range b.N {
		w1, r1, tc1, to1, _ := measure([][]byte{spawn})
		w2, r2, tc2, to2, sh := measure(deltas)
		sw, sr, stc, sto = sw+w1, sr+r1, stc+tc1, sto+to1
		dw, dr, dtc, dto, shrunk = dw+w2, dr+r2, dtc+tc2, dto+to2, shrunk+sh
	}
	b.StopTimer()
	n, nd := float64(b.N), float64(b.N*len(deltas))
	b.ReportMetric(float64(sr)/float64(sw), "spawn-x-ratio")
	b.ReportMetric(float64(dr)/float64(dw), "delta-x-ratio")
	b.ReportMetric(float64(sr)/n, "spawn-B")
	b.ReportMetric(float64(dr)/nd, "delta-B")
	b.ReportMetric(float64(stc)/1e3/n, "spawn-compress-us")
	b.ReportMetric(float64(sto)/1e3/n, "spawn-open-us")
	b.ReportMetric(float64(dtc)/1e3/nd, "delta-compress-us")
	b.ReportMetric(float64(dto)/1e3/nd, "delta-open-us")
	b.ReportMetric(float64(shrunk)/nd, "delta-shrunk-share")
}
