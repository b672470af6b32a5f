package benchmarks_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/ebisync/ebisync/components"
	"github.com/ebisync/ebisync/demo/sim"
	"github.com/ebisync/ebisync/internal/testutil"
	"github.com/ebisync/ebisync/internal/wire"
)

// BenchmarkClientsPerCore measures how many clients one core holds: the
// whole server process (the demo scene, package demo/sim, stepped and
// replicated at 30 Hz by sim.Host) with N clients in another process,
// against a bare coder/websocket server that writes messages of the same
// size to the same number of connections. See the package doc for every
// figure; the client counts, the measuring window and a profile of the
// server come from the -cpc.* flags.
func BenchmarkClientsPerCore(b *testing.B) {
	counts, err := cpcCounts()
	if err != nil {
		b.Fatal(err)
	}
	for _, n := range counts {
		b.Run(fmt.Sprintf("clients=%d", n), func(b *testing.B) {
			if testing.Short() && n > 500 {
				b.Skip("more than 500 clients skipped in -short mode")
			}
			if err := raiseFileLimit(uint64(n) + 256); err != nil {
				b.Fatal(err)
			}
			var sum cpcFigures
			for range b.N {
				f, err := measureClientsPerCore(b, n)
				if err != nil {
					b.Fatal(err)
				}
				sum.add(f)
			}
			sum.report(b, n)
		})
	}
}

// Flags of BenchmarkClientsPerCore (pass them after -args).
var (
	cpcClientsFlag = flag.String("cpc.clients", "", "BenchmarkClientsPerCore's client counts, comma-separated (default 100,500,2000, or $EBISYNC_CPC_CLIENTS)")
	cpcWindowFlag  = flag.Duration("cpc.window", 10*time.Second, "BenchmarkClientsPerCore's measuring window per server (5s with -short)")
	cpcProfileFlag = flag.String("cpc.profile", "", "directory for a CPU profile of BenchmarkClientsPerCore's server process over each window (server-N.pprof)")
	cpcBareFlag    = flag.String("cpc.bare", "loop,conn", "BenchmarkClientsPerCore's bare writers, comma-separated: loop (one goroutine per core writing to its share of the connections in turn), conn (a writer goroutine per connection, woken per tick); none skips the bare server (and x-vs-bare-write)")
)

// cpcCounts returns the client counts to measure.
func cpcCounts() ([]int, error) {
	s := *cpcClientsFlag
	if s == "" {
		s = os.Getenv("EBISYNC_CPC_CLIENTS")
	}
	if s == "" {
		return []int{100, 500, 2000}, nil
	}
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("client count %q: want a positive integer", f)
		}
		out = append(out, n)
	}
	return out, nil
}

func cpcWindow() time.Duration {
	if testing.Short() && *cpcWindowFlag > 5*time.Second {
		return 5 * time.Second
	}
	return *cpcWindowFlag
}

// cpcTickRate is the demo's tick rate, which the bare server writes at too.
const cpcTickRate = 30

// cpcFigures is one measurement of one client count.
type cpcFigures struct {
	serverCPU  time.Duration // server process CPU over the window
	window     time.Duration // the window's wall time
	ticks      float64
	batches    float64
	bytes      float64 // batch bytes on the wire
	rawBytes   float64 // batch bytes before compression
	skipped    float64 // client-ticks skipped for a busy writer
	tickWall   time.Duration
	phases     [3]time.Duration // the plugin's detect, scopes and send phases over the window (wall)
	idlePerTk  time.Duration    // server CPU per tick with no client (sim + tick)
	readerCPU  time.Duration    // the readers' process CPU over the window
	readerMsgs float64

	bareSize int
	bare     map[string]*bareFigures // by bare writer mode
}

// bareFigures is one measurement of the bare server.
type bareFigures struct {
	cpu, window     time.Duration
	writes, skipped float64
}

func (f *bareFigures) usPerWrite() float64 { return float64(f.cpu) / 1e3 / f.writes }

func (s *cpcFigures) add(f *cpcFigures) {
	s.serverCPU += f.serverCPU
	s.window += f.window
	s.ticks += f.ticks
	s.batches += f.batches
	s.bytes += f.bytes
	s.rawBytes += f.rawBytes
	s.skipped += f.skipped
	s.tickWall += f.tickWall
	for i := range s.phases {
		s.phases[i] += f.phases[i]
	}
	s.idlePerTk += f.idlePerTk
	s.readerCPU += f.readerCPU
	s.readerMsgs += f.readerMsgs
	s.bareSize += f.bareSize
	if s.bare == nil {
		s.bare = make(map[string]*bareFigures)
	}
	for m, bf := range f.bare {
		sb := s.bare[m]
		if sb == nil {
			sb = &bareFigures{}
			s.bare[m] = sb
		}
		sb.cpu += bf.cpu
		sb.window += bf.window
		sb.writes += bf.writes
		sb.skipped += bf.skipped
	}
}

func (s *cpcFigures) report(b *testing.B, n int) {
	runs := float64(b.N)
	us := func(d time.Duration) float64 { return float64(d) / 1e3 }
	perClientSec := us(s.serverCPU) / (float64(n) * s.window.Seconds())
	perClientTick := us(s.serverCPU) / (float64(n) * s.ticks)
	// The floor is the cheapest bare writer measured.
	floor := math.Inf(1)
	for _, m := range cpcBareModes() {
		floor = min(floor, s.bare[m].usPerWrite())
	}
	b.ReportMetric(perClientSec, "server-us/client-s")
	// At the nominal rate: a server that fell behind ran fewer ticks.
	b.ReportMetric(1e6/(perClientTick*cpcTickRate), "clients/core")
	if len(s.bare) > 0 {
		b.ReportMetric(perClientTick/floor, "x-vs-bare-write")
		b.ReportMetric(floor, "bare-us/write")
	}
	b.ReportMetric(perClientTick, "server-us/client-tick")
	b.ReportMetric(us(s.serverCPU)/s.batches, "server-us/batch")
	b.ReportMetric(s.bytes/s.batches, "B/batch")
	b.ReportMetric(s.bytes/(float64(n)*s.window.Seconds()), "B/client-s")
	b.ReportMetric(s.bytes/(float64(n)*s.ticks), "B/client-tick")
	b.ReportMetric(s.batches/(float64(n)*s.ticks), "batches/client-tick")
	b.ReportMetric(s.serverCPU.Seconds()/s.window.Seconds(), "server-cores")
	b.ReportMetric(s.ticks/s.window.Seconds(), "ticks/s")
	for m, bf := range s.bare {
		b.ReportMetric(bf.usPerWrite(), "bare-"+m+"-us/write")
	}
	b.ReportMetric(s.readerCPU.Seconds()/s.window.Seconds(), "reader-cores")
	b.ReportMetric(us(s.idlePerTk)/runs, "idle-us/tick")
	b.ReportMetric(us(s.tickWall)/runs, "tick-us")
	for i, k := range []string{"detect", "scopes", "send"} {
		b.ReportMetric(us(s.phases[i])/(float64(n)*s.ticks), k+"-us/client-tick")
	}
	b.ReportMetric(s.skipped/(float64(n)*s.ticks), "skipped/client-tick")
	b.Logf("%d clients: server %.2f cores over %v (%.0f ticks, %.0f batches of %.0f B, %.0f B raw), readers %.2f cores (%.0f messages)",
		n, s.serverCPU.Seconds()/s.window.Seconds(), s.window.Round(time.Millisecond), s.ticks, s.batches, s.bytes/s.batches, s.rawBytes/s.batches,
		s.readerCPU.Seconds()/s.window.Seconds(), s.readerMsgs)
	for _, m := range cpcBareModes() {
		bf := s.bare[m]
		b.Logf("bare %s: %.2f cores, %.0f writes of %d B, %.0f skipped for a busy writer", m, bf.cpu.Seconds()/bf.window.Seconds(), bf.writes, s.bareSize/b.N, bf.skipped)
	}
}

// cpcBareModes returns the bare writers to measure.
func cpcBareModes() []string {
	var out []string
	for m := range strings.SplitSeq(*cpcBareFlag, ",") {
		if m = strings.TrimSpace(m); m != "none" && m != "" {
			out = append(out, m)
		}
	}
	return out
}

// measureClientsPerCore runs the demo server and then the bare server,
// each in its own process with n clients in a third.
func measureClientsPerCore(b *testing.B, n int) (*cpcFigures, error) {
	f := &cpcFigures{}
	window := cpcWindow()

	// The demo server, first alone: its fixed cost per tick.
	srv, err := startCPCChild("TestClientsPerCoreServerHelper", "server")
	if err != nil {
		return nil, err
	}
	defer srv.stop()
	addr, err := srv.expect("addr", 30*time.Second)
	if err != nil {
		return nil, err
	}
	url := "http://" + addr["addr"] + "/sync"
	i0, err := srv.mark()
	if err != nil {
		return nil, err
	}
	testutil.LetTimePass(2 * time.Second)
	i1, err := srv.mark()
	if err != nil {
		return nil, err
	}
	f.idlePerTk = time.Duration((i1["cpu"] - i0["cpu"]) / (i1["ticks"] - i0["ticks"]))

	rd, err := startCPCChild("TestClientsPerCoreReadersHelper", "readers",
		"EBISYNC_CPC_URL="+url, "EBISYNC_CPC_N="+strconv.Itoa(n), "EBISYNC_CPC_HANDSHAKE=1")
	if err != nil {
		return nil, err
	}
	defer rd.stop()
	if _, err := rd.expect("ready", 5*time.Minute); err != nil {
		return nil, err
	}
	var last map[string]float64
	if err := testutil.WaitUntil(time.Minute, func() string {
		return fmt.Sprintf("%v of %d clients admitted", last["clients"], n)
	}, func() bool {
		last, err = srv.mark()
		return err == nil && last["clients"] == float64(n)
	}); err != nil {
		return nil, errors.Join(err, srv.err())
	}
	// Warm-up: the spawns of every client's first view go out.
	testutil.LetTimePass(3 * time.Second)
	if *cpcProfileFlag != "" {
		if err := srv.send(fmt.Sprintf("profile %s/server-%d.pprof", *cpcProfileFlag, n)); err != nil {
			return nil, err
		}
	}
	s0, err := srv.mark()
	if err != nil {
		return nil, err
	}
	r0, err := rd.mark()
	if err != nil {
		return nil, err
	}
	testutil.LetTimePass(window)
	s1, err := srv.mark()
	if err != nil {
		return nil, err
	}
	r1, err := rd.mark()
	if err != nil {
		return nil, err
	}
	if *cpcProfileFlag != "" {
		if err := srv.send("stopprofile"); err != nil {
			return nil, err
		}
		if _, err := srv.expect("profiled", 30*time.Second); err != nil {
			return nil, err
		}
	}
	if s1["clients"] != float64(n) || r1["errors"] != 0 {
		return nil, fmt.Errorf("%v of %d clients left the server during the window; the readers saw %v errors (%s)",
			float64(n)-s1["clients"], n, r1["errors"], rd.output())
	}
	f.serverCPU = time.Duration(s1["cpu"] - s0["cpu"])
	f.window = time.Duration(s1["wall"] - s0["wall"])
	f.ticks = s1["ticks"] - s0["ticks"]
	f.batches = s1["batches"] - s0["batches"]
	f.bytes = s1["bytes"] - s0["bytes"]
	f.rawBytes = s1["raw"] - s0["raw"]
	f.skipped = s1["skipped"] - s0["skipped"]
	f.tickWall = time.Duration(s1["tickavg"])
	for i, k := range []string{"detect", "scopes", "send"} {
		f.phases[i] = time.Duration(s1[k] - s0[k])
	}
	f.readerCPU = time.Duration(r1["cpu"] - r0["cpu"])
	f.readerMsgs = r1["msgs"] - r0["msgs"]
	if f.batches == 0 || f.ticks == 0 {
		return nil, fmt.Errorf("no batch or no tick in the window: %v", s1)
	}
	rd.stop()
	srv.stop()

	// The bare server: messages of the average batch's size, one per
	// connection per tick, with each writer.
	f.bareSize = int(f.bytes/f.batches + 0.5)
	f.bare = make(map[string]*bareFigures)
	for _, m := range cpcBareModes() {
		if m != "loop" && m != "conn" {
			return nil, fmt.Errorf("-cpc.bare: unknown writer %q", m)
		}
		if f.bare[m], err = measureBare(n, f.bareSize, m, window); err != nil {
			return nil, err
		}
	}
	return f, nil
}

// measureBare runs the bare server with writer mode and n clients.
func measureBare(n, size int, mode string, window time.Duration) (*bareFigures, error) {
	bare, err := startCPCChild("TestClientsPerCoreBareHelper", "bare",
		"EBISYNC_CPC_N="+strconv.Itoa(n), "EBISYNC_CPC_SIZE="+strconv.Itoa(size), "EBISYNC_CPC_MODE="+mode)
	if err != nil {
		return nil, err
	}
	defer bare.stop()
	addr, err := bare.expect("addr", 30*time.Second)
	if err != nil {
		return nil, err
	}
	brd, err := startCPCChild("TestClientsPerCoreReadersHelper", "readers",
		"EBISYNC_CPC_URL=http://"+addr["addr"]+"/", "EBISYNC_CPC_N="+strconv.Itoa(n), "EBISYNC_CPC_HANDSHAKE=0")
	if err != nil {
		return nil, err
	}
	defer brd.stop()
	if _, err := brd.expect("ready", 5*time.Minute); err != nil {
		return nil, err
	}
	var last map[string]float64
	if err := testutil.WaitUntil(time.Minute, func() string {
		return fmt.Sprintf("%v of %d connections at the bare server", last["conns"], n)
	}, func() bool {
		last, err = bare.mark()
		return err == nil && last["conns"] == float64(n)
	}); err != nil {
		return nil, errors.Join(err, bare.err())
	}
	testutil.LetTimePass(time.Second)
	b0, err := bare.mark()
	if err != nil {
		return nil, err
	}
	testutil.LetTimePass(window)
	b1, err := bare.mark()
	if err != nil {
		return nil, err
	}
	f := &bareFigures{
		cpu:     time.Duration(b1["cpu"] - b0["cpu"]),
		window:  time.Duration(b1["wall"] - b0["wall"]),
		writes:  b1["writes"] - b0["writes"],
		skipped: b1["skipped"] - b0["skipped"],
	}
	if f.writes == 0 {
		return nil, errors.New("the bare server wrote nothing")
	}
	return f, nil
}

// The processes of BenchmarkClientsPerCore are this test binary run again
// with -test.run naming one of the helpers below and EBISYNC_CPC_ROLE set.
// A helper prints lines "CPC <what> key=value…" on stdout, reads commands
// (one per line) on stdin and ends when its stdin closes. Every helper
// answers "mark" with its process CPU time so far (cpu, in ns: user plus
// system, from getrusage), the wall clock (wall, ns) and its counters.
const cpcRole = "EBISYNC_CPC_ROLE"

// cpcChild is a running helper process.
type cpcChild struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string
	mu    sync.Mutex
	other strings.Builder // output that is not a CPC line
	done  chan struct{}   // closed when stdout ended
	once  sync.Once
	werr  error
}

func startCPCChild(test, role string, env ...string) (*cpcChild, error) {
	cmd := exec.Command(os.Args[0], "-test.run=^"+test+"$", "-test.count=1", "-test.timeout=30m")
	cmd.Env = append(append(os.Environ(), cpcRole+"="+role), env...)
	c := &cpcChild{cmd: cmd, lines: make(chan string, 16), done: make(chan struct{})}
	cmd.Stderr = &lockedWriter{c: c}
	var err error
	if c.stdin, err = cmd.StdinPipe(); err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		defer close(c.done)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if line, ok := strings.CutPrefix(sc.Text(), "CPC "); ok {
				c.lines <- line
				continue
			}
			c.mu.Lock()
			c.other.WriteString(sc.Text() + "\n")
			c.mu.Unlock()
		}
	}()
	return c, nil
}

type lockedWriter struct{ c *cpcChild }

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.c.mu.Lock()
	defer w.c.mu.Unlock()
	return w.c.other.Write(p)
}

func (c *cpcChild) output() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.other.String()
}

func (c *cpcChild) err() error {
	return fmt.Errorf("%s process output:\n%s", c.cmd.Args[1], c.output())
}

func (c *cpcChild) send(cmd string) error {
	_, err := io.WriteString(c.stdin, cmd+"\n")
	return err
}

// expect waits for the next CPC line and checks that it reports what.
func (c *cpcChild) expect(what string, timeout time.Duration) (map[string]string, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case line := <-c.lines:
		fields := strings.Fields(line)
		if len(fields) == 0 || fields[0] != what {
			return nil, fmt.Errorf("expected %q from the helper, got %q", what, line)
		}
		kv := make(map[string]string)
		for _, f := range fields[1:] {
			k, v, _ := strings.Cut(f, "=")
			kv[k] = v
		}
		return kv, nil
	case <-c.done:
		return nil, errors.Join(errors.New("the helper process ended"), c.err())
	case <-t.C:
		return nil, errors.Join(fmt.Errorf("no %q from the helper within %v", what, timeout), c.err())
	}
}

// mark asks for the helper's counters.
func (c *cpcChild) mark() (map[string]float64, error) {
	if err := c.send("mark"); err != nil {
		return nil, err
	}
	kv, err := c.expect("mark", 30*time.Second)
	if err != nil {
		return nil, err
	}
	out := make(map[string]float64, len(kv))
	for k, v := range kv {
		if out[k], err = strconv.ParseFloat(v, 64); err != nil {
			return nil, fmt.Errorf("mark: %s=%q: %v", k, v, err)
		}
	}
	return out, nil
}

// stop closes the helper's stdin and waits for it to exit (killing it
// after a minute).
func (c *cpcChild) stop() error {
	c.once.Do(func() {
		c.stdin.Close()
		t := time.AfterFunc(time.Minute, func() { _ = c.cmd.Process.Kill() })
		<-c.done
		c.werr = c.cmd.Wait()
		t.Stop()
	})
	return c.werr
}

// processCPU returns the CPU time this process has used (user plus
// system).
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		panic(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// serveCPCCommands answers the commands on stdin until it closes: "mark"
// with the process's CPU time, the wall clock and what counters adds
// (space-separated key=value pairs), anything else with other.
func serveCPCCommands(counters func() string, other func(cmd string)) {
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		cmd := sc.Text()
		if cmd == "mark" {
			fmt.Printf("CPC mark cpu=%d wall=%d %s\n", processCPU(), time.Now().UnixNano(), counters())
			continue
		}
		other(cmd)
	}
}

// TestClientsPerCoreServerHelper is BenchmarkClientsPerCore's server
// process: the demo's Host at 30 Hz on a loopback port. It prints "CPC
// addr addr=HOST:PORT"; its mark adds the plugin's counters and the average
// tick since the previous mark. "profile FILE" starts a CPU profile,
// "stopprofile" writes it and answers "CPC profiled".
func TestClientsPerCoreServerHelper(t *testing.T) {
	if os.Getenv(cpcRole) != "server" {
		t.Skip("the server process of BenchmarkClientsPerCore")
	}
	if err := raiseFileLimit(1 << 14); err != nil {
		t.Fatal(err)
	}
	host := sim.NewHost(&sim.HostConfig{
		TickRate:                 cpcTickRate,
		Logger:                   discardLogger,
		MaxConnectionsPerAddress: loopbackClients,
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	host.Serve(ln)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- host.Run(ctx) }()
	fmt.Printf("CPC addr addr=%s\n", ln.Addr())
	var prof *os.File
	serveCPCCommands(func() string {
		st := host.Plugin().Stats()
		ts := host.TickStats()
		return fmt.Sprintf("ticks=%d batches=%d bytes=%d raw=%d skipped=%d clients=%d tickavg=%d detect=%d scopes=%d send=%d",
			st.Ticks, st.Batches, st.BytesOut, st.RawBytesOut, st.SkippedBusy, st.Clients, ts.Avg,
			st.PhaseTotals.Detect, st.PhaseTotals.Scopes, st.PhaseTotals.Send)
	}, func(cmd string) {
		switch {
		case strings.HasPrefix(cmd, "profile "):
			var err error
			if prof, err = os.Create(strings.TrimPrefix(cmd, "profile ")); err == nil {
				err = pprof.StartCPUProfile(prof)
			}
			if err != nil {
				t.Error(err)
			}
		case cmd == "stopprofile":
			pprof.StopCPUProfile()
			if prof != nil {
				prof.Close()
			}
			fmt.Println("CPC profiled")
		}
	})
	cancel()
	if err := <-done; err != nil {
		t.Error(err)
	}
	if err := host.Close(); err != nil {
		t.Error(err)
	}
}

// TestClientsPerCoreBareHelper is BenchmarkClientsPerCore's bare server: it
// accepts WebSocket connections at any path on a loopback port and, 30
// times a second, writes one binary message of EBISYNC_CPC_SIZE bytes (a
// batch kind byte, a tick advance of 1, zeros) to every connection, with
// coder/websocket as the plugin does, compression off. Its mark adds the
// connections, the writes done and the writes skipped because the
// connection's writer was still busy.
func TestClientsPerCoreBareHelper(t *testing.T) {
	if os.Getenv(cpcRole) != "bare" {
		t.Skip("the bare server process of BenchmarkClientsPerCore")
	}
	if err := raiseFileLimit(1 << 14); err != nil {
		t.Fatal(err)
	}
	size, err := strconv.Atoi(os.Getenv("EBISYNC_CPC_SIZE"))
	if err != nil || size < 2 {
		t.Fatalf("EBISYNC_CPC_SIZE=%q", os.Getenv("EBISYNC_CPC_SIZE"))
	}
	msg := make([]byte, size)
	msg[0] = byte(wire.KindBatch)
	msg[1] = 1
	b := newBareServer(msg, os.Getenv("EBISYNC_CPC_MODE"))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: b}
	go func() { _ = hs.Serve(ln) }()
	go b.run()
	fmt.Printf("CPC addr addr=%s\n", ln.Addr())
	serveCPCCommands(func() string {
		conns, writes, skipped := b.counts()
		return fmt.Sprintf("conns=%d writes=%d skipped=%d", conns, writes, skipped)
	}, func(string) {})
	b.close()
	_ = hs.Close()
}

// bareServer writes msg to every connection once per tick.
type bareServer struct {
	msg   []byte
	loop  bool // one writer per core; otherwise one per connection
	mu    sync.Mutex
	conns []*bareConn
	stop  chan struct{}
	wg    sync.WaitGroup
}

type bareConn struct {
	ws      *websocket.Conn
	wake    chan struct{} // capacity 1
	busy    atomic.Bool
	writes  atomic.Uint64
	skipped atomic.Uint64
	dead    atomic.Bool
}

func newBareServer(msg []byte, mode string) *bareServer {
	return &bareServer{msg: msg, loop: mode == "loop", stop: make(chan struct{})}
}

func (b *bareServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{CompressionMode: websocket.CompressionDisabled})
	if err != nil {
		return
	}
	c := &bareConn{ws: ws, wake: make(chan struct{}, 1)}
	// A reader, as the plugin has: it answers pings and closes.
	ctx := ws.CloseRead(context.Background())
	b.mu.Lock()
	b.conns = append(b.conns, c)
	b.mu.Unlock()
	if !b.loop {
		b.wg.Add(1)
		go func() {
			defer b.wg.Done()
			for {
				select {
				case <-ctx.Done():
					c.dead.Store(true)
					return
				case <-b.stop:
					return
				case <-c.wake:
				}
				if err := ws.Write(context.Background(), websocket.MessageBinary, b.msg); err != nil {
					c.dead.Store(true)
					return
				}
				c.writes.Add(1)
				c.busy.Store(false)
			}
		}()
	}
	select {
	case <-ctx.Done():
	case <-b.stop:
	}
}

// run ticks until close.
func (b *bareServer) run() {
	tk := time.NewTicker(time.Second / cpcTickRate)
	defer tk.Stop()
	workers := runtime.GOMAXPROCS(0)
	var wg sync.WaitGroup
	for {
		select {
		case <-b.stop:
			return
		case <-tk.C:
		}
		b.mu.Lock()
		conns := b.conns
		b.mu.Unlock()
		if b.loop {
			// Each worker writes to its share in turn; the tick waits for
			// them (a late tick is dropped by the ticker).
			for w := range workers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := w; i < len(conns); i += workers {
						c := conns[i]
						if c.dead.Load() {
							continue
						}
						if err := c.ws.Write(context.Background(), websocket.MessageBinary, b.msg); err != nil {
							c.dead.Store(true)
							continue
						}
						c.writes.Add(1)
					}
				}()
			}
			wg.Wait()
			continue
		}
		for _, c := range conns {
			if c.busy.Load() {
				c.skipped.Add(1)
				continue
			}
			c.busy.Store(true)
			c.wake <- struct{}{}
		}
	}
}

func (b *bareServer) counts() (conns int, writes, skipped uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, c := range b.conns {
		if !c.dead.Load() {
			conns++
		}
		writes += c.writes.Load()
		skipped += c.skipped.Load()
	}
	return conns, writes, skipped
}

func (b *bareServer) close() {
	close(b.stop)
	b.wg.Wait()
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, c := range b.conns {
		c.ws.CloseNow()
	}
}

// TestClientsPerCoreReadersHelper is BenchmarkClientsPerCore's client
// process: it opens EBISYNC_CPC_N WebSocket connections to EBISYNC_CPC_URL
// (with EBISYNC_CPC_HANDSHAKE=1 each sends the demo's Hello, reads the
// Welcome and subscribes to every component; the server follows the
// client's ship), then reads every message into one buffer per
// connection, opens it (decompressing a compressed batch) and reads its
// tick advance; with the handshake, every 64th batch of a connection is
// decoded in full.
// It prints "CPC ready" once every connection is open; its mark adds the
// messages and bytes received and the connections that failed.
func TestClientsPerCoreReadersHelper(t *testing.T) {
	if os.Getenv(cpcRole) != "readers" {
		t.Skip("the client process of BenchmarkClientsPerCore")
	}
	url := os.Getenv("EBISYNC_CPC_URL")
	n, err := strconv.Atoi(os.Getenv("EBISYNC_CPC_N"))
	if err != nil {
		t.Fatal(err)
	}
	if err := raiseFileLimit(uint64(n) + 256); err != nil {
		t.Fatal(err)
	}
	handshake := os.Getenv("EBISYNC_CPC_HANDSHAKE") == "1"
	reg := sim.NewRegistry()
	hello := cpcHello(reg)
	var subs wire.Subscribe
	for i := range reg.Schema() {
		subs.Subs = append(subs.Subs, wire.Sub{Kind: wire.SubComponent, ID: uint64(i)})
	}
	subscribe := wire.AppendSubscribe(nil, wire.KindSubscribe, &subs)

	readers := make([]*cpcReader, n)
	var failed atomic.Int64
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	sem := make(chan struct{}, 32)
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			readers[i], errs[i] = dialCPCReader(ctx, url, handshake, hello, subscribe)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	var rwg sync.WaitGroup
	for _, r := range readers {
		rwg.Add(1)
		go func() {
			defer rwg.Done()
			if err := r.read(regSizer{Reg: reg}, handshake); err != nil && !r.closed.Load() {
				failed.Add(1)
				fmt.Fprintln(os.Stderr, "reader:", err)
			}
		}()
	}
	fmt.Println("CPC ready")
	serveCPCCommands(func() string {
		var msgs, bytes uint64
		for _, r := range readers {
			msgs += r.msgs.Load()
			bytes += r.bytes.Load()
		}
		return fmt.Sprintf("msgs=%d bytes=%d errors=%d", msgs, bytes, failed.Load())
	}, func(string) {})
	for _, r := range readers {
		r.closed.Store(true)
		r.ws.CloseNow()
	}
	rwg.Wait()
}

// cpcHello is the Hello of a demo client.
func cpcHello(reg *components.Registry) []byte {
	desc := func(ss []components.Schema) []wire.ComponentDesc {
		var out []wire.ComponentDesc
		for _, s := range ss {
			d := wire.ComponentDesc{Name: s.Name, Hash: s.Hash}
			for _, f := range s.Fields {
				d.Fields = append(d.Fields, wire.FieldDesc{Name: f.Name, Type: f.Type, Quant: f.Quant})
			}
			out = append(out, d)
		}
		return out
	}
	return wire.AppendHello(nil, &wire.Hello{
		Version:    wire.ProtocolVersion,
		ClientName: "cpc",
		Components: desc(reg.Schema()),
		Messages:   desc(reg.MessageSchema()),
	})
}

// cpcReader is one connection of the client process.
type cpcReader struct {
	ws     *websocket.Conn
	msgs   atomic.Uint64
	bytes  atomic.Uint64
	closed atomic.Bool
}

func dialCPCReader(ctx context.Context, url string, handshake bool, hello, subscribe []byte) (*cpcReader, error) {
	ws, err := dialWS(ctx, url)
	if err != nil {
		return nil, err
	}
	if handshake {
		if err := ws.Write(ctx, websocket.MessageBinary, hello); err != nil {
			ws.CloseNow()
			return nil, err
		}
		_, msg, err := ws.Read(ctx)
		if err == nil {
			var kind wire.Kind
			kind, _, _, err = wire.Open(msg, nil)
			if err == nil && kind != wire.KindWelcome {
				err = fmt.Errorf("got %v instead of a Welcome", kind)
			}
		}
		if err == nil {
			err = ws.Write(ctx, websocket.MessageBinary, subscribe)
		}
		if err != nil {
			ws.CloseNow()
			return nil, err
		}
	}
	return &cpcReader{ws: ws}, nil
}

// read reads messages until the connection ends. With decode, every 64th
// batch is decoded in full.
func (r *cpcReader) read(vs wire.ValueSizer, decode bool) error {
	buf := make([]byte, 0, 4096)
	var scratch []byte
	var batch wire.Batch
	ctx := context.Background()
	for i := 0; ; i++ {
		_, rd, err := r.ws.Reader(ctx)
		if err != nil {
			return err
		}
		buf = buf[:0]
		for {
			if len(buf) == cap(buf) {
				buf = append(buf, 0)[:len(buf)]
			}
			k, err := rd.Read(buf[len(buf):cap(buf)])
			buf = buf[:len(buf)+k]
			if err == io.EOF {
				break
			}
			if err != nil {
				return err
			}
		}
		kind, body, sc, err := wire.Open(buf, scratch)
		scratch = sc
		if err != nil {
			return err
		}
		if kind == wire.KindBatch {
			if _, k := binary.Uvarint(body); k <= 0 {
				return errors.New("a batch without its tick advance")
			}
			if decode && i%64 == 0 {
				if err := wire.DecodeBatch(body, vs, &batch); err != nil {
					return err
				}
			}
		}
		r.msgs.Add(1)
		r.bytes.Add(uint64(len(buf)))
	}
}
