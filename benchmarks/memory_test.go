package benchmarks_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ebisync/ebisync/components"
	"github.com/ebisync/ebisync/internal/testutil"
	"github.com/ebisync/ebisync/plugin"
)

// BenchmarkMemoryPerClient measures the server's memory per connected,
// idle client: a plugin.Server with 1000 static entities ticks at 60 Hz on
// a goroutine while 1000 clients connect over loopback WebSockets, each
// with an interest radius covering 5% of the map (about 50 entities) and
// subscribed to Position and Health. Once every client is admitted and has
// been sent its first batch, the heap is compared with the heap before any
// client connected.
//
// The clients run in a child process (this test binary re-executed with
// -test.run=^TestMemoryClientsHelper$), so this process's heap is the
// server's alone:
//
//   - B/client: the growth of HeapInuse (bytes in in-use heap spans, so
//     including their free slots) after runtime.GC, divided by the clients.
//     It counts everything the process holds for a connection: the
//     net/http connection and its hijacked bufio buffers, the
//     coder/websocket Conn, the server's conn and client state (queues,
//     scope records for the entities in range, subscriptions, batch
//     buffers), the first batch, the listener's bookkeeping, and the
//     server's per-client slices and maps grown to hold 1000 clients.
//   - B/client-alloc: the same from HeapAlloc (live objects only).
//   - stack-B/client: the growth of StackInuse (goroutine stacks, which are
//     not heap) per client; goroutines/client is the growth of
//     runtime.NumGoroutine per client.
//
// Kernel socket buffers and the clients' own memory are not counted. One
// iteration connects and measures the 1000 clients, so run it with
// -benchtime 1x:
//
//	go test ./benchmarks -run '^$' -bench MemoryPerClient -benchtime 1x
func BenchmarkMemoryPerClient(b *testing.B) {
	const (
		entities = 1000
		clients  = 1000
	)
	if err := raiseFileLimit(uint64(clients) + 256); err != nil {
		b.Fatal(err)
	}
	defer func(ignore goleak.Option) {
		if err := goleak.Find(ignore); err != nil {
			b.Error(err)
		}
	}(goleak.IgnoreCurrent())
	var sum memorySums
	for range b.N {
		f, err := measureMemoryPerClient(entities, clients)
		if err != nil {
			b.Fatal(err)
		}
		b.Logf("%d clients: HeapInuse %d → %d, HeapAlloc %d → %d, StackInuse %d → %d, goroutines %d → %d; %d clients in range of an entity got their first batch",
			clients, f.before.HeapInuse, f.after.HeapInuse, f.before.HeapAlloc, f.after.HeapAlloc,
			f.before.StackInuse, f.after.StackInuse, f.goroutinesBefore, f.goroutinesAfter, f.served)
		sum.add(f)
	}
	n := float64(b.N) * clients
	b.ReportMetric(sum.heapInuse/n, "B/client")
	b.ReportMetric(sum.heapAlloc/n, "B/client-alloc")
	b.ReportMetric(sum.stackInuse/n, "stack-B/client")
	b.ReportMetric(sum.goroutines/n, "goroutines/client")
}

// memoryFigures is one measurement.
type memoryFigures struct {
	before, after                     runtime.MemStats
	goroutinesBefore, goroutinesAfter int
	served                            int
}

// memorySums adds measurements up.
type memorySums struct{ heapInuse, heapAlloc, stackInuse, goroutines float64 }

func (s *memorySums) add(f *memoryFigures) {
	s.heapInuse += float64(f.after.HeapInuse) - float64(f.before.HeapInuse)
	s.heapAlloc += float64(f.after.HeapAlloc) - float64(f.before.HeapAlloc)
	s.stackInuse += float64(f.after.StackInuse) - float64(f.before.StackInuse)
	s.goroutines += float64(f.goroutinesAfter - f.goroutinesBefore)
}

// Environment of the client process.
const (
	memClientsURL     = "EBISYNC_MEMCLIENTS_URL"
	memClientsCount   = "EBISYNC_MEMCLIENTS_N"
	memClientsEntites = "EBISYNC_MEMCLIENTS_ENTITIES"
	memClientsReady   = "MEMCLIENTS READY"
)

// measureMemoryPerClient runs one server, connects clients to it from a
// child process and returns the server process's memory before and after.
func measureMemoryPerClient(entities, clients int) (*memoryFigures, error) {
	s := newTickScenario(entities, clients)
	w := newTickWorld(s)
	reg := components.NewRegistry()
	components.RegisterStandard(reg)
	srv := plugin.New(w.world, reg, &plugin.Options{
		CellSize:                 s.radius / 4,
		Logger:                   discardLogger,
		MaxConnections:           2 * clients,
		MaxConnectionsPerAddress: loopbackClients,
		MaxHandshakes:            loopbackClients,
		// The waits below count every message out as the Welcome or a
		// batch.
		PingInterval: -1,
	})
	es := startEbisync(srv)
	defer es.close(nil)

	// The game loop: 60 ticks a second. The measurement holds tickMu so
	// that no tick runs while it collects and reads the heap.
	var tickMu sync.Mutex
	stop, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		tk := time.NewTicker(time.Second / 60)
		defer tk.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tk.C:
				tickMu.Lock()
				srv.Tick()
				tickMu.Unlock()
			}
		}
	}()
	defer func() {
		close(stop)
		<-stopped
	}()

	// The clients whose interest holds an entity get a first batch; the
	// others are sent nothing until something enters their range.
	inRange := 0
	r2 := s.radius * s.radius
	for _, c := range s.centres {
		for _, p := range s.start {
			if dx, dy := p.x-c.x, p.y-c.y; dx*dx+dy*dy <= r2 {
				inRange++
				break
			}
		}
	}

	f := &memoryFigures{}
	readMem := func(ms *runtime.MemStats) int {
		tickMu.Lock()
		defer tickMu.Unlock()
		runtime.GC()
		runtime.GC()
		runtime.ReadMemStats(ms)
		return runtime.NumGoroutine()
	}
	// A few ticks with no client first, so that the tick's own buffers
	// exist.
	if err := testutil.WaitUntil(5*time.Second, func() string { return "ticks" }, func() bool { return srv.Stats().Ticks >= 5 }); err != nil {
		return nil, err
	}
	f.goroutinesBefore = readMem(&f.before)

	cmd := exec.Command(os.Args[0], "-test.run=^TestMemoryClientsHelper$", "-test.count=1", "-test.timeout=10m")
	cmd.Env = append(os.Environ(),
		memClientsURL+"="+es.ts.URL,
		memClientsCount+"="+strconv.Itoa(clients),
		memClientsEntites+"="+strconv.Itoa(entities))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	// The child keeps its clients until its stdin closes.
	var output strings.Builder
	ready := make(chan bool, 1)
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		sc := bufio.NewScanner(stdout)
		sent := false
		for sc.Scan() {
			line := sc.Text()
			if !sent && line == memClientsReady {
				sent = true
				ready <- true
				continue
			}
			output.WriteString(line + "\n")
		}
		if !sent {
			ready <- false
		}
	}()
	finish := func() error {
		stdin.Close()
		<-drained
		return cmd.Wait()
	}
	select {
	case ok := <-ready:
		if !ok {
			err := finish()
			return nil, fmt.Errorf("the client process ended before its clients were connected (%v):\n%s", err, output.String())
		}
	case <-time.After(2 * time.Minute):
		cmd.Process.Kill()
		finish()
		return nil, errors.New("the client process did not connect its clients within 2 minutes")
	}

	var st plugin.Stats
	err = testutil.WaitUntil(60*time.Second, func() string {
		return fmt.Sprintf("%d clients admitted with %d subscriptions (want %d and %d), %d of the %d in range of an entity served",
			st.Clients, st.Subscriptions, clients, 2*clients, f.served, inRange)
	}, func() bool {
		srv.ReadStats(&st)
		f.served = 0
		for _, pc := range st.PerClient {
			if pc.MessagesOut >= 2 { // the Welcome and a batch
				f.served++
			}
		}
		return st.Clients == clients && st.Subscriptions == 2*clients && f.served >= inRange
	})
	if err == nil {
		// Every batch handed to a writer is written: no message of the
		// first round is still held.
		err = testutil.WaitUntil(30*time.Second, func() string { return "the first batches to be written" }, func() bool {
			srv.ReadStats(&st)
			var out uint64
			for _, pc := range st.PerClient {
				out += pc.MessagesOut
			}
			return out == st.Batches+uint64(clients)
		})
	}
	if err == nil {
		st = plugin.Stats{} // not counted: the measurement's own
		f.goroutinesAfter = readMem(&f.after)
	}
	if werr := finish(); werr != nil && err == nil {
		err = fmt.Errorf("client process: %v\n%s", werr, output.String())
	}
	if err != nil {
		return nil, err
	}
	if err := testutil.WaitUntil(30*time.Second, func() string { return "the clients to leave" }, func() bool {
		return srv.Stats().Connections == 0
	}); err != nil {
		return nil, err
	}
	return f, nil
}

// TestMemoryClientsHelper is BenchmarkMemoryPerClient's client process:
// with EBISYNC_MEMCLIENTS_URL set, it connects the clients, prints
// "MEMCLIENTS READY" and keeps them reading until its stdin closes.
// Otherwise it does nothing.
func TestMemoryClientsHelper(t *testing.T) {
	url := os.Getenv(memClientsURL)
	if url == "" {
		t.Skip("the client process of BenchmarkMemoryPerClient")
	}
	n, err := strconv.Atoi(os.Getenv(memClientsCount))
	if err != nil {
		t.Fatal(err)
	}
	entities, err := strconv.Atoi(os.Getenv(memClientsEntites))
	if err != nil {
		t.Fatal(err)
	}
	if err := raiseFileLimit(uint64(n) + 256); err != nil {
		t.Fatal(err)
	}
	s := newTickScenario(entities, n)
	reg := components.NewRegistry()
	components.RegisterStandard(reg)
	hello := helloFor(reg, "memory")
	subscribe := subscribeMsg(compIndex(t, reg, components.Position), compIndex(t, reg, components.Health))
	cls, err := connectAll(n, func(ctx context.Context, i int) (*rawClient, error) {
		c := s.centres[i]
		return dialEbisync(ctx, url, reg, hello, false, pointInterest(c.x, c.y, s.radius), subscribe)
	})
	if err != nil {
		t.Fatal(err)
	}
	fmt.Println(memClientsReady)
	_, _ = io.Copy(io.Discard, os.Stdin)
	for _, c := range cls {
		c.close()
	}
}

// raiseFileLimit raises the soft limit on open files to at least n (up to
// the hard limit). Go raises it to the hard limit at startup on Linux; this
// also covers systems where it does not.
func raiseFileLimit(n uint64) error {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return fmt.Errorf("getrlimit: %w", err)
	}
	if rl.Cur >= n {
		return nil
	}
	if rl.Max < n {
		return fmt.Errorf("open files limited to %d (hard limit), need %d: raise ulimit -Hn", rl.Max, n)
	}
	rl.Cur = n
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return fmt.Errorf("setrlimit: %w", err)
	}
	return nil
}
