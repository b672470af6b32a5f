package netsim

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// failsafe bounds every wait in these tests, so that a bug fails a test
// instead of hanging it.
const failsafe = 20 * time.Second

// server is a TCP server on loopback running handle for each connection.
type server struct {
	ln    net.Listener
	wg    sync.WaitGroup
	ended chan error // what each handle returned

	mu    sync.Mutex
	conns []net.Conn
}

func startServer(t *testing.T, handle func(net.Conn) error) *server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &server{ln: ln, ended: make(chan error, 100)}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns = append(s.conns, c)
			s.mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				err := handle(c)
				_ = c.Close()
				s.ended <- err
			}()
		}
	}()
	t.Cleanup(s.close)
	return s
}

func (s *server) addr() string { return s.ln.Addr().String() }

func (s *server) close() {
	_ = s.ln.Close()
	s.mu.Lock()
	for _, c := range s.conns {
		_ = c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// echo writes back what it reads, and returns the read's error, io.EOF
// included.
func echo(c net.Conn) error {
	buf := make([]byte, 32<<10)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return werr
			}
		}
		if err != nil {
			return err
		}
	}
}

func startProxy(t *testing.T, target string, opts *Options) *Proxy {
	t.Helper()
	p, err := Listen(target, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

func dial(t *testing.T, p *Proxy) *net.TCPConn {
	t.Helper()
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c.(*net.TCPConn)
}

// roundTrip writes msg and reads it back, returning how long that took.
func roundTrip(t *testing.T, c net.Conn, msg string) time.Duration {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(failsafe))
	start := time.Now()
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	rtt := time.Since(start)
	if string(got) != msg {
		t.Fatalf("echo: got %q, want %q", got, msg)
	}
	return rtt
}

func median(ds []time.Duration) time.Duration {
	ds = slices.Clone(ds)
	slices.Sort(ds)
	return ds[len(ds)/2]
}

func TestRoundTripTime(t *testing.T) {
	srv := startServer(t, echo)
	for _, tc := range []struct {
		name            string
		latency, jitter time.Duration
	}{
		{"latency", 100 * time.Millisecond, 0},
		{"jitter", 100 * time.Millisecond, 40 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := startProxy(t, srv.addr(), &Options{Latency: tc.latency, Jitter: tc.jitter, Seed: 1})
			c := dial(t, p)
			var rtts []time.Duration
			for range 7 {
				rtt := roundTrip(t, c, "ping")
				// The delay is measured from when the proxy reads, after
				// the write: the round trip can only be longer.
				if lo := tc.latency - tc.jitter; rtt < lo {
					t.Errorf("round trip %v, want at least %v", rtt, lo)
				}
				rtts = append(rtts, rtt)
			}
			// One slow round trip on a busy machine is no failure; the
			// median is.
			if m, hi := median(rtts), tc.latency+tc.jitter+50*time.Millisecond; m >= hi {
				t.Errorf("median round trip %v (of %v), want less than %v", m, rtts, hi)
			}
		})
	}
}

func TestDelayRange(t *testing.T) {
	p := &Proxy{opts: Options{Latency: 100 * time.Millisecond, Jitter: 30 * time.Millisecond}}
	pp := newPipe(p, nil, nil, rand.New(rand.NewPCG(1, 2)))
	lo, hi := 35*time.Millisecond, 65*time.Millisecond
	least, most := time.Hour, time.Duration(0)
	for range 10000 {
		d := pp.delay()
		if d < lo || d > hi {
			t.Fatalf("delay %v outside [%v, %v]", d, lo, hi)
		}
		least, most = min(least, d), max(most, d)
	}
	if least > lo+time.Millisecond || most < hi-time.Millisecond {
		t.Errorf("10000 delays span [%v, %v], want about [%v, %v]", least, most, lo, hi)
	}

	// Jitter larger than the latency: never a negative delay.
	p.opts = Options{Latency: 10 * time.Millisecond, Jitter: 50 * time.Millisecond}
	for range 1000 {
		if d := pp.delay(); d < 0 || d > 30*time.Millisecond {
			t.Fatalf("delay %v outside [0, 30ms]", d)
		}
	}
}

func TestOrderWithJitter(t *testing.T) {
	srv := startServer(t, echo)
	// Jitter larger than the latency: consecutive chunks' delays differ
	// by up to 30 ms, far more than the time between writes.
	p := startProxy(t, srv.addr(), &Options{Latency: 10 * time.Millisecond, Jitter: 60 * time.Millisecond, Seed: 7})
	c := dial(t, p)
	_ = c.SetDeadline(time.Now().Add(failsafe))

	rng := rand.New(rand.NewPCG(3, 4))
	var sent []byte
	var writes [][]byte
	for i := range 3000 {
		b := make([]byte, 1+rng.IntN(200))
		for j := range b {
			b[j] = byte(i + j)
		}
		writes = append(writes, b)
		sent = append(sent, b...)
	}
	werr := make(chan error, 1)
	go func() {
		for _, b := range writes {
			if _, err := c.Write(b); err != nil {
				werr <- err
				return
			}
		}
		werr <- c.CloseWrite()
	}()
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-werr; err != nil {
		t.Fatal(err)
	}
	if sha256.Sum256(got) != sha256.Sum256(sent) {
		t.Fatalf("received %d bytes with a different checksum from the %d sent (first difference at %d)", len(got), len(sent), firstDiff(got, sent))
	}
	if err := <-srv.ended; !errors.Is(err, io.EOF) {
		t.Errorf("server's end: %v, want io.EOF", err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	st := p.Stats()
	if st.BytesUp != int64(len(sent)) || st.BytesDown != int64(len(sent)) || st.Accepted != 1 || st.Open != 0 || st.HeldUp != 0 || st.HeldDown != 0 {
		t.Errorf("stats %+v, want %d bytes each way over 1 connection, none open or held", st, len(sent))
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

func TestHalfClose(t *testing.T) {
	payload := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	srv := startServer(t, func(c net.Conn) error {
		got, err := io.ReadAll(c)
		if err != nil {
			return err
		}
		if !bytes.Equal(got, payload) {
			return errors.New("server got other bytes")
		}
		_, err = c.Write([]byte("bye"))
		return err
	})
	p := startProxy(t, srv.addr(), &Options{Latency: 60 * time.Millisecond, MaxBuffered: 64 << 10})
	c := dial(t, p)
	_ = c.SetDeadline(time.Now().Add(failsafe))
	werr := make(chan error, 1)
	go func() {
		_, err := c.Write(payload)
		if err == nil {
			err = c.CloseWrite()
		}
		werr <- err
	}()
	// The server answers only after the end of the client's stream, which
	// reaches it after every byte before it; its own close then reaches
	// the client after "bye".
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != "bye" {
		t.Errorf("client got %q, want %q", got, "bye")
	}
	if err := <-werr; err != nil {
		t.Fatal(err)
	}
	if err := <-srv.ended; err != nil {
		t.Errorf("server: %v", err)
	}
}

func TestCut(t *testing.T) {
	srv := startServer(t, echo)
	p := startProxy(t, srv.addr(), &Options{Latency: 20 * time.Millisecond})
	c := dial(t, p)
	roundTrip(t, c, "before")

	p.Cut()
	_, err := c.Read(make([]byte, 1))
	if err == nil || errors.Is(err, io.EOF) {
		t.Errorf("client's read after Cut: %v, want a reset", err)
	}
	select {
	case err := <-srv.ended:
		if err == nil || errors.Is(err, io.EOF) {
			t.Errorf("server's read after Cut: %v, want a reset", err)
		}
	case <-time.After(failsafe):
		t.Fatal("the server's connection did not end after Cut")
	}

	c2 := dial(t, p)
	roundTrip(t, c2, "after")
	if st := p.Stats(); st.Accepted != 2 {
		t.Errorf("accepted %d connections, want 2", st.Accepted)
	}
}

func TestBackPressure(t *testing.T) {
	const limit = 64 << 10
	const total = 8 << 20
	start := make(chan struct{})
	srv := startServer(t, func(c net.Conn) error {
		<-start
		n, err := io.Copy(io.Discard, c)
		if err == nil && n != total {
			err = errors.New("server got a different number of bytes")
		}
		return err
	})
	full := make(chan struct{}, 1)
	p, err := listen(srv.addr(), &Options{Latency: 2 * time.Millisecond, MaxBuffered: limit}, func() { signal(full) })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	c := dial(t, p)
	_ = c.SetDeadline(time.Now().Add(failsafe))
	werr := make(chan error, 1)
	go func() {
		// Flood: far more than the proxy and both kernels can hold.
		chunk := make([]byte, 32<<10)
		var err error
		for sent := 0; sent < total && err == nil; sent += len(chunk) {
			_, err = c.Write(chunk)
		}
		if err == nil {
			err = c.CloseWrite()
		}
		werr <- err
	}()

	select {
	case <-full:
	case <-time.After(failsafe):
		t.Fatal("the proxy never stopped reading from the flooding client")
	}
	// The proxy stopped reading with a full buffer; its writer may still
	// be filling the server's kernel buffers, so it may hold less now.
	if st := p.Stats(); st.HeldUp > limit {
		t.Errorf("the proxy holds %d bytes towards the stalled server, more than MaxBuffered %d", st.HeldUp, limit)
	}

	close(start)
	if err := <-werr; err != nil {
		t.Fatal(err)
	}
	if err := <-srv.ended; err != nil {
		t.Fatal(err)
	}
	p.mu.Lock()
	for l := range p.links {
		l.up.mu.Lock()
		if l.up.peak > limit {
			t.Errorf("the proxy held up to %d bytes, more than MaxBuffered %d", l.up.peak, limit)
		}
		l.up.mu.Unlock()
	}
	p.mu.Unlock()
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if st := p.Stats(); st.BytesUp != total {
		t.Errorf("delivered %d bytes, want %d", st.BytesUp, total)
	}
}

func TestPaused(t *testing.T) {
	srv := startServer(t, echo)
	p := startProxy(t, srv.addr(), nil)
	c := dial(t, p)
	roundTrip(t, c, "running")

	p.SetPaused(true)
	p.SetPaused(true)
	if _, err := c.Write([]byte("held")); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(150 * time.Millisecond))
	if n, err := c.Read(make([]byte, 4)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read while paused: %d bytes, %v; want nothing", n, err)
	}
	p.SetPaused(false)
	p.SetPaused(false)
	_ = c.SetReadDeadline(time.Now().Add(failsafe))
	got := make([]byte, 4)
	if _, err := io.ReadFull(c, got); err != nil || string(got) != "held" {
		t.Fatalf("read after resuming: %q, %v", got, err)
	}
}

func TestCloseEndsEverything(t *testing.T) {
	srv := startServer(t, echo)
	p, err := Listen(srv.addr(), &Options{Latency: 300 * time.Millisecond, MaxBuffered: 16 << 10})
	if err != nil {
		t.Fatal(err)
	}

	// Connections in every state: idle, with bytes waiting for their
	// release time, and flooding (the echo server stalls, as the client
	// reads nothing back) until the proxy's buffers are full.
	idle := dial(t, p)
	busy := dial(t, p)
	if _, err := busy.Write([]byte("in flight")); err != nil {
		t.Fatal(err)
	}
	flood := dial(t, p)
	floodEnd := make(chan error, 1)
	go func() {
		chunk := make([]byte, 32<<10)
		for {
			if _, err := flood.Write(chunk); err != nil {
				floodEnd <- err
				return
			}
		}
	}()

	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	for _, c := range []net.Conn{idle, busy} {
		_ = c.SetReadDeadline(time.Now().Add(failsafe))
		if _, err := c.Read(make([]byte, 1)); err == nil {
			t.Error("a client's read after Close succeeded")
		}
	}
	select {
	case <-floodEnd:
	case <-time.After(failsafe):
		t.Fatal("the flooding client's writes still succeed after Close")
	}
	if _, err := net.Dial("tcp", p.Addr()); err == nil {
		t.Error("the proxy accepts after Close")
	}
	if st := p.Stats(); st.Open != 0 || st.HeldUp != 0 || st.HeldDown != 0 {
		t.Errorf("stats after Close: %+v", st)
	}
	for _, c := range []net.Conn{idle, busy, flood} {
		_ = c.Close()
	}
	srv.close()
	goleak.VerifyNone(t)
}

func TestListenChecks(t *testing.T) {
	for _, tc := range []struct {
		target string
		opts   *Options
	}{
		{"no-port", nil},
		{"127.0.0.1:1", &Options{Latency: -time.Millisecond}},
		{"127.0.0.1:1", &Options{Jitter: -time.Millisecond}},
		{"127.0.0.1:1", &Options{MaxBuffered: -1}},
	} {
		if p, err := Listen(tc.target, tc.opts); err == nil {
			_ = p.Close()
			t.Errorf("Listen(%q, %+v) succeeded", tc.target, tc.opts)
		}
	}
}

func TestURL(t *testing.T) {
	p := startProxy(t, "127.0.0.1:1", nil)
	for in, want := range map[string]string{
		"ws://127.0.0.1:8080/sync?name=a": "ws://" + p.Addr() + "/sync?name=a",
		"http://example.com/x":            "http://" + p.Addr() + "/x",
		"localhost:8080/sync":             "localhost:8080/sync",
		"::":                              "::",
	} {
		if got := p.URL(in); got != want {
			t.Errorf("URL(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestDialFailureResetsClient(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	target := ln.Addr().String()
	_ = ln.Close() // nothing listens there now
	p := startProxy(t, target, nil)
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		return // the reset can arrive before the dial returns
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(failsafe))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Error("read through a proxy whose target refuses succeeded")
	}
}
