// Package netsim is a TCP proxy on loopback that adds latency and jitter,
// for tests and demos that need a slow network on one machine.
//
// The proxy works on bytes, not messages: it carries any TCP protocol,
// WebSocket included, unchanged. Each direction of each connection delays
// its bytes by half the configured round trip, varied by the jitter; bytes
// are never reordered or dropped.
//
//	p, err := netsim.Listen("127.0.0.1:8080", &netsim.Options{Latency: 150 * time.Millisecond})
//	...
//	defer p.Close()
//	// Dial p.URL("ws://127.0.0.1:8080/sync") instead of the server's URL.
//
// A Proxy's methods are safe for concurrent use by multiple goroutines.
package netsim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultMaxBuffered is the number of bytes a Proxy holds per direction
// per connection when Options.MaxBuffered is 0.
const DefaultMaxBuffered = 4 << 20

// Options configure a Proxy. The zero value adds no delay.
type Options struct {
	// Latency is the added round-trip time: each direction delays its
	// bytes by Latency/2.
	Latency time.Duration
	// Jitter varies each direction's delay uniformly within ±Jitter/2 of
	// Latency/2 (never below zero), so the added round trip stays within
	// Latency±Jitter. A chunk of bytes is never released before the chunk
	// read before it, so jitter never reorders bytes.
	Jitter time.Duration
	// Seed seeds the jitter's random source (PCG); 0 picks a random seed.
	// With the same seed, the n-th accepted connection draws the same
	// sequence of jitters, one per chunk of bytes read.
	Seed uint64
	// MaxBuffered bounds the bytes held per direction per connection
	// (read and not yet delivered); 0 means DefaultMaxBuffered. When a
	// direction is full, the proxy stops reading from its sender until
	// bytes are delivered, as a real link pushes back; it never drops
	// bytes.
	MaxBuffered int
}

// Stats are a Proxy's counters.
type Stats struct {
	Accepted int64 // connections accepted since Listen
	Open     int   // connections open now
	// BytesUp and BytesDown count the bytes delivered to the target and
	// to the clients.
	BytesUp, BytesDown int64
	// HeldUp and HeldDown count the bytes read and not yet delivered,
	// towards the target and towards the clients, over all connections.
	HeldUp, HeldDown int64
}

// A Proxy accepts connections on a loopback port and forwards each to its
// target with added latency and jitter.
type Proxy struct {
	ln     net.Listener
	target string
	opts   Options
	seed   uint64
	ctx    context.Context // ends when the Proxy closes; bounds dials
	cancel context.CancelFunc
	onFull func() // called when a direction stops reading because it is full

	mu     sync.Mutex
	closed bool
	links  map[*link]struct{}
	serial uint64 // connections accepted, numbering their random streams

	resume atomic.Pointer[chan struct{}] // non-nil while paused; closed on resume
	wg     sync.WaitGroup                // the accept loop and every link

	accepted           atomic.Int64
	bytesUp, bytesDown atomic.Int64
	heldUp, heldDown   atomic.Int64
}

// Listen starts a Proxy on 127.0.0.1 at a free port, forwarding each
// accepted connection to target (host:port). A nil opts adds no delay.
func Listen(target string, opts *Options) (*Proxy, error) {
	return listen(target, opts, nil)
}

func listen(target string, opts *Options, onFull func()) (*Proxy, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.Latency < 0 || o.Jitter < 0 || o.MaxBuffered < 0 {
		return nil, fmt.Errorf("netsim: Latency, Jitter and MaxBuffered must not be negative (got %v, %v, %d)", o.Latency, o.Jitter, o.MaxBuffered)
	}
	if _, _, err := net.SplitHostPort(target); err != nil {
		return nil, fmt.Errorf("netsim: target %q is not host:port: %w", target, err)
	}
	if o.MaxBuffered == 0 {
		o.MaxBuffered = DefaultMaxBuffered
	}
	seed := o.Seed
	for seed == 0 {
		seed = rand.Uint64()
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("netsim: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Proxy{
		ln:     ln,
		target: target,
		opts:   o,
		seed:   seed,
		ctx:    ctx,
		cancel: cancel,
		onFull: onFull,
		links:  make(map[*link]struct{}),
	}
	p.wg.Add(1)
	go p.acceptLoop()
	return p, nil
}

// Addr returns the address the Proxy listens on, as host:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// URL returns u with its host replaced by the Proxy's address, keeping its
// scheme, path and query: URL("ws://127.0.0.1:8080/sync") is
// "ws://127.0.0.1:PORT/sync". A u that does not parse as a URL with a host
// is returned unchanged.
func (p *Proxy) URL(u string) string {
	parsed, err := url.Parse(u)
	if err != nil || parsed.Host == "" {
		return u
	}
	parsed.Host = p.Addr()
	return parsed.String()
}

// Cut closes every current connection abruptly, on both sides, as a
// network drop would: both ends see an error (a reset), and bytes held by
// the Proxy are lost. The Proxy keeps accepting new connections.
func (p *Proxy) Cut() {
	p.mu.Lock()
	links := make([]*link, 0, len(p.links))
	for l := range p.links {
		links = append(links, l)
	}
	p.mu.Unlock()
	for _, l := range links {
		l.abort(true)
	}
}

// SetPaused stops (true) or restarts (false) delivery on every
// connection, current and new. While paused, the Proxy keeps reading
// until each direction holds MaxBuffered bytes; on restart, held bytes
// whose delay has passed are delivered at once.
func (p *Proxy) SetPaused(paused bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	cur := p.resume.Load()
	switch {
	case paused && cur == nil:
		ch := make(chan struct{})
		p.resume.Store(&ch)
	case !paused && cur != nil:
		p.resume.Store(nil)
		close(*cur)
	}
}

// Stats returns the Proxy's counters.
func (p *Proxy) Stats() Stats {
	p.mu.Lock()
	open := len(p.links)
	p.mu.Unlock()
	return Stats{
		Accepted:  p.accepted.Load(),
		Open:      open,
		BytesUp:   p.bytesUp.Load(),
		BytesDown: p.bytesDown.Load(),
		HeldUp:    p.heldUp.Load(),
		HeldDown:  p.heldDown.Load(),
	}
}

// Close stops accepting, closes every connection abruptly, and returns
// once all of the Proxy's goroutines have ended. Later calls return nil.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		p.wg.Wait()
		return nil
	}
	p.closed = true
	links := make([]*link, 0, len(p.links))
	for l := range p.links {
		links = append(links, l)
	}
	p.mu.Unlock()
	p.cancel()
	err := p.ln.Close()
	for _, l := range links {
		l.abort(true)
	}
	p.wg.Wait()
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

func (p *Proxy) acceptLoop() {
	defer p.wg.Done()
	var backoff time.Duration
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || p.ctx.Err() != nil {
				return
			}
			// Out of file descriptors and the like: wait, then retry.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
			case <-p.ctx.Done():
				t.Stop()
				return
			}
			continue
		}
		backoff = 0
		p.accepted.Add(1)
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			resetClose(c)
			continue
		}
		ctx, cancel := context.WithCancel(p.ctx)
		l := &link{p: p, client: c, ctx: ctx, cancel: cancel, done: make(chan struct{})}
		p.serial++
		l.up = newPipe(p, &p.bytesUp, &p.heldUp, rand.New(rand.NewPCG(p.seed, 2*p.serial)))
		l.down = newPipe(p, &p.bytesDown, &p.heldDown, rand.New(rand.NewPCG(p.seed, 2*p.serial+1)))
		p.links[l] = struct{}{}
		p.wg.Add(1)
		p.mu.Unlock()
		go l.serve()
	}
}

// A link is one proxied connection: the accepted client and the dialled
// target, with a pipe each way.
type link struct {
	p        *Proxy
	client   net.Conn
	up, down *pipe           // client to target, target to client
	ctx      context.Context // bounds the dial; ends with abort
	cancel   context.CancelFunc

	mu      sync.Mutex
	target  net.Conn      // nil until dialled
	aborted bool          // abort has run
	done    chan struct{} // closed by abort
}

// serve dials the target and runs both pipes until they end.
func (l *link) serve() {
	p := l.p
	defer p.wg.Done()
	defer func() {
		l.cancel()
		p.mu.Lock()
		delete(p.links, l)
		p.mu.Unlock()
	}()
	var d net.Dialer
	target, err := d.DialContext(l.ctx, "tcp", p.target)
	if err != nil {
		l.abort(true)
		return
	}
	l.mu.Lock()
	if l.aborted {
		l.mu.Unlock()
		resetClose(target)
		return
	}
	l.target = target
	l.mu.Unlock()

	var wg sync.WaitGroup
	wg.Add(4)
	go func() { defer wg.Done(); l.up.read(l.client, l.done) }()
	go func() { defer wg.Done(); l.up.write(target, l) }()
	go func() { defer wg.Done(); l.down.read(target, l.done) }()
	go func() { defer wg.Done(); l.down.write(l.client, l) }()
	wg.Wait()
	// Both directions ended, cleanly (each side closed its half and got
	// every byte) or by abort.
	_ = l.client.Close()
	_ = target.Close()
	l.up.release()
	l.down.release()
}

// abort closes both connections now, with a reset if reset is true, and
// ends the link's goroutines.
func (l *link) abort(reset bool) {
	l.mu.Lock()
	if l.aborted {
		l.mu.Unlock()
		return
	}
	l.aborted = true
	close(l.done)
	l.cancel()
	target := l.target
	l.mu.Unlock()
	for _, c := range []net.Conn{l.client, target} {
		if c == nil {
			continue
		}
		if reset {
			resetClose(c)
		} else {
			_ = c.Close()
		}
	}
}

// resetClose closes c so that its peer sees a reset rather than an orderly
// end of stream.
func resetClose(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}

// A chunk is bytes read at once, with the time they may be delivered.
type chunk struct {
	data []byte
	at   time.Time
}

// A pipe carries one direction of a link: its reader queues what it reads,
// stamped with a release time, and its writer delivers each chunk at that
// time.
type pipe struct {
	p         *Proxy
	sent      *atomic.Int64 // the Proxy's byte counter for this direction
	heldTotal *atomic.Int64 // the Proxy's held-bytes counter for this direction
	rng       *rand.Rand    // used by the reader only
	last      time.Time     // the release time of the last chunk; reader only

	mu    sync.Mutex
	queue []chunk
	held  int   // bytes in queue
	peak  int   // the most bytes ever held
	err   error // why the reader stopped; set once, with the last chunk queued
	ended bool  // the reader stopped

	data  chan struct{} // a chunk was queued or the reader stopped
	space chan struct{} // bytes were delivered
}

func newPipe(p *Proxy, sent, held *atomic.Int64, rng *rand.Rand) *pipe {
	return &pipe{
		p:         p,
		sent:      sent,
		heldTotal: held,
		rng:       rng,
		data:      make(chan struct{}, 1),
		space:     make(chan struct{}, 1),
	}
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// delay returns this chunk's delay: Latency/2, varied within ±Jitter/2.
func (pp *pipe) delay() time.Duration {
	d := pp.p.opts.Latency / 2
	if half := int64(pp.p.opts.Jitter / 2); half > 0 {
		d += time.Duration(pp.rng.Int64N(2*half+1) - half)
	}
	return max(d, 0)
}

// read reads from src into the queue until src ends or done is closed,
// never holding more than MaxBuffered bytes.
func (pp *pipe) read(src net.Conn, done <-chan struct{}) {
	limit := pp.p.opts.MaxBuffered
	buf := make([]byte, min(32<<10, limit))
	for {
		pp.mu.Lock()
		for pp.held >= limit {
			pp.mu.Unlock()
			if pp.p.onFull != nil {
				pp.p.onFull()
			}
			select {
			case <-pp.space:
			case <-done:
				return
			}
			pp.mu.Lock()
		}
		room := limit - pp.held
		pp.mu.Unlock()

		n, err := src.Read(buf[:min(len(buf), room)])
		pp.mu.Lock()
		if n > 0 {
			at := time.Now().Add(pp.delay())
			if at.Before(pp.last) {
				at = pp.last
			}
			pp.last = at
			pp.queue = append(pp.queue, chunk{data: append([]byte(nil), buf[:n]...), at: at})
			pp.held += n
			pp.peak = max(pp.peak, pp.held)
			pp.heldTotal.Add(int64(n))
		}
		if err != nil {
			pp.err = err
			pp.ended = true
		}
		pp.mu.Unlock()
		signal(pp.data)
		if err != nil {
			return
		}
	}
}

// write delivers the queue to dst, each chunk at its time. When the reader
// has stopped and the queue is empty, it closes dst's write half if the
// sender closed its own, or aborts the link on any other end.
func (pp *pipe) write(dst net.Conn, l *link) {
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		pp.mu.Lock()
		for len(pp.queue) == 0 && !pp.ended {
			pp.mu.Unlock()
			select {
			case <-pp.data:
			case <-l.done:
				return
			}
			pp.mu.Lock()
		}
		if len(pp.queue) == 0 {
			err := pp.err
			pp.mu.Unlock()
			if errors.Is(err, io.EOF) {
				if cw, ok := dst.(interface{ CloseWrite() error }); ok && cw.CloseWrite() == nil {
					return
				}
			}
			// The sender reset, the link was aborted, or dst cannot close
			// only its write half: end the whole link.
			l.abort(!errors.Is(err, io.EOF))
			return
		}
		c := pp.queue[0]
		pp.mu.Unlock()

		if wait := time.Until(c.at); wait > 0 {
			timer.Reset(wait)
			select {
			case <-timer.C:
			case <-l.done:
				return
			}
		}
		if ch := pp.p.resume.Load(); ch != nil {
			select {
			case <-*ch:
			case <-l.done:
				return
			}
		}
		if _, err := dst.Write(c.data); err != nil {
			l.abort(false)
			return
		}
		pp.sent.Add(int64(len(c.data)))
		pp.mu.Lock()
		pp.queue[0] = chunk{}
		pp.queue = pp.queue[1:]
		pp.held -= len(c.data)
		pp.mu.Unlock()
		pp.heldTotal.Add(-int64(len(c.data)))
		signal(pp.space)
	}
}

// release drops the bytes an aborted pipe still holds from the Proxy's
// counters.
func (pp *pipe) release() {
	pp.mu.Lock()
	n := pp.held
	pp.queue, pp.held = nil, 0
	pp.mu.Unlock()
	pp.heldTotal.Add(-int64(n))
}
