package benchmarks_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/yohamta/donburi"

	"github.com/ebisync/ebisync/components"
	"github.com/ebisync/ebisync/internal/testutil"
	"github.com/ebisync/ebisync/internal/wire"
	"github.com/ebisync/ebisync/plugin"
)

// readLimit bounds one message a benchmark client accepts. The naive
// baseline's snapshots of 10 000 entities are about 0.7 MB.
const readLimit = 8 << 20

// discardLogger keeps the server quiet: hundreds of clients leaving at the
// end of a benchmark are not news.
var discardLogger = slog.New(slog.DiscardHandler)

// frameHeaderLen is the size of the header of an unmasked (server to client)
// WebSocket frame carrying n payload bytes, RFC 6455 section 5.2.
// loopbackClients is the connection limit per address and in handshake of
// the benchmarks' servers: every client dials from 127.0.0.1, many at once.
const loopbackClients = 1 << 16

func frameHeaderLen(n int) int {
	switch {
	case n < 126:
		return 2
	case n < 1<<16:
		return 4
	default:
		return 10
	}
}

// msgRecord is what a decoding client learnt from one batch message.
type msgRecord struct {
	size    int // WebSocket payload bytes
	kind    wire.Kind
	advance uint64 // server ticks the batch advances
	updates int    // component updates (full or delta)
	spawns  int
	exits   int
}

// rawClient is a minimal ebisync client speaking the wire protocol
// directly: handshake, subscriptions, interest, then a reader goroutine that
// counts what arrives. It applies nothing: it measures the server, not a
// client.
type rawClient struct {
	ws *websocket.Conn

	// Counters of messages received after the Welcome.
	msgs   atomic.Uint64
	bytes  atomic.Uint64 // payload bytes
	framed atomic.Uint64 // payload plus frame header bytes

	records chan msgRecord // decoding clients only; never blocks the reader
	// batchesOnly: an ebisync client, which counts batches only, not the
	// server's Pings.
	batchesOnly bool
	done        chan struct{} // closed when the reader returned
	mu          sync.Mutex
	err         error // why the reader returned
}

// helloFor is the Hello of a client with the same registry as the server.
func helloFor(reg *components.Registry, name string) []byte {
	h := wire.Hello{Version: wire.ProtocolVersion, ClientName: name}
	for _, s := range reg.Schema() {
		d := wire.ComponentDesc{Name: s.Name, Hash: s.Hash}
		for _, f := range s.Fields {
			d.Fields = append(d.Fields, wire.FieldDesc{Name: f.Name, Type: f.Type, Quant: f.Quant})
		}
		h.Components = append(h.Components, d)
	}
	return wire.AppendHello(nil, &h)
}

// subscribeMsg subscribes to the components with the given wire ids.
func subscribeMsg(ids ...int) []byte {
	m := wire.Subscribe{}
	for _, id := range ids {
		m.Subs = append(m.Subs, wire.Sub{Kind: wire.SubComponent, ID: uint64(id)})
	}
	return wire.AppendSubscribe(nil, wire.KindSubscribe, &m)
}

// pointInterest is a fixed interest centre with an enter radius.
func pointInterest(x, y, radius float64) []byte {
	return wire.AppendInterest(nil, &wire.Interest{Mode: wire.InterestPoint, X: x, Y: y, Radius: radius})
}

// dialEbisync connects to an ebisync server at url (http://…) as a client
// sharing the server's registry reg (hello is helloFor(reg)), completes the
// handshake, sends setup (Interest, Subscribe, … in order) and starts the
// reader. With decode set the reader decodes every batch and reports it on
// records; otherwise it only counts bytes, without allocating per message.
func dialEbisync(ctx context.Context, url string, reg *components.Registry, hello []byte, decode bool, setup ...[]byte) (*rawClient, error) {
	ws, err := dialWS(ctx, url)
	if err != nil {
		return nil, err
	}
	if err := ws.Write(ctx, websocket.MessageBinary, hello); err != nil {
		ws.CloseNow()
		return nil, fmt.Errorf("failed to send hello: %w", err)
	}
	_, msg, err := ws.Read(ctx)
	if err != nil {
		ws.CloseNow()
		return nil, fmt.Errorf("failed to read welcome: %w", err)
	}
	kind, body, _, err := wire.Open(msg, nil)
	if err == nil && kind != wire.KindWelcome {
		err = fmt.Errorf("got %v instead of welcome", kind)
	}
	if err == nil {
		_, err = wire.DecodeWelcome(body)
	}
	if err != nil {
		ws.CloseNow()
		return nil, fmt.Errorf("failed to read welcome: %w", err)
	}
	for _, m := range setup {
		if err := ws.Write(ctx, websocket.MessageBinary, m); err != nil {
			ws.CloseNow()
			return nil, fmt.Errorf("failed to send setup: %w", err)
		}
	}
	c := newRawClient(ws)
	c.batchesOnly = true
	if decode {
		c.records = make(chan msgRecord, 1<<12)
		go c.decodeLoop(regSizer{Reg: reg})
	} else {
		go c.countLoop()
	}
	return c, nil
}

// dialPlain connects a counting client that sends nothing (the naive
// baseline's clients).
func dialPlain(ctx context.Context, url string) (*rawClient, error) {
	ws, err := dialWS(ctx, url)
	if err != nil {
		return nil, err
	}
	c := newRawClient(ws)
	go c.countLoop()
	return c, nil
}

func dialWS(ctx context.Context, url string) (*websocket.Conn, error) {
	ws, _, err := websocket.Dial(ctx, strings.Replace(url, "http", "ws", 1), &websocket.DialOptions{
		CompressionMode: websocket.CompressionDisabled,
	})
	if err != nil {
		return nil, fmt.Errorf("failed to dial: %w", err)
	}
	ws.SetReadLimit(readLimit)
	return ws, nil
}

func newRawClient(ws *websocket.Conn) *rawClient {
	return &rawClient{ws: ws, done: make(chan struct{})}
}

func (c *rawClient) fail(err error) {
	c.mu.Lock()
	c.err = err
	c.mu.Unlock()
}

// Err returns why the reader stopped, nil while it runs.
func (c *rawClient) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

func (c *rawClient) count(n int) {
	c.bytes.Add(uint64(n))
	c.framed.Add(uint64(n + frameHeaderLen(n)))
	c.msgs.Add(1)
}

// countLoop reads messages through one reused buffer and counts them (an
// ebisync client its batches only). After warm-up it allocates nothing per
// message of its own (coder/websocket's Reader may).
func (c *rawClient) countLoop() {
	defer close(c.done)
	buf := make([]byte, 32<<10)
	ctx := context.Background()
	for {
		_, r, err := c.ws.Reader(ctx)
		if err != nil {
			c.fail(err)
			return
		}
		n := 0
		batch := true
		for {
			k, err := r.Read(buf)
			if n == 0 && k > 0 && c.batchesOnly {
				batch = wire.Kind(buf[0]&^wire.FlagCompressed) == wire.KindBatch
			}
			n += k
			if err == io.EOF {
				break
			}
			if err != nil {
				c.fail(err)
				return
			}
		}
		if batch {
			c.count(n)
		}
	}
}

// decodeLoop reads, opens and decodes every message and reports a record.
func (c *rawClient) decodeLoop(vs wire.ValueSizer) {
	defer close(c.done)
	var msg, scratch []byte
	var batch wire.Batch
	ctx := context.Background()
	for {
		_, r, err := c.ws.Reader(ctx)
		if err != nil {
			c.fail(err)
			return
		}
		msg = msg[:0]
		for {
			if len(msg) == cap(msg) {
				msg = append(msg, 0)[:len(msg)]
			}
			k, err := r.Read(msg[len(msg):cap(msg)])
			msg = msg[:len(msg)+k]
			if err == io.EOF {
				break
			}
			if err != nil {
				c.fail(err)
				return
			}
		}
		rec := msgRecord{size: len(msg)}
		var body []byte
		rec.kind, body, scratch, err = wire.Open(msg, scratch)
		if err != nil {
			c.fail(err)
			return
		}
		if rec.kind != wire.KindBatch {
			continue // the server's Pings: not what the benchmarks count
		}
		if err := wire.DecodeBatch(body, vs, &batch); err != nil {
			c.fail(err)
			return
		}
		rec.advance = batch.TickAdvance
		rec.updates, rec.spawns, rec.exits = len(batch.Updates), len(batch.Spawns), len(batch.Exits)
		// Count after decoding, so that a waiter that sees the count also
		// finds the record.
		select {
		case c.records <- rec:
		default:
			c.fail(errors.New("record queue full: nobody reads the records"))
			return
		}
		c.count(len(msg))
	}
}

// close closes the connection and waits for the reader.
func (c *rawClient) close() {
	c.ws.CloseNow()
	<-c.done
}

type regSizer = testutil.RegistrySizer

// ebisyncServer is a plugin.Server behind a loopback HTTP server.
type ebisyncServer struct {
	srv *plugin.Server
	ts  *httptest.Server
}

func startEbisync(srv *plugin.Server) *ebisyncServer {
	return &ebisyncServer{srv: srv, ts: httptest.NewServer(srv)}
}

// close closes the server (which closes every connection with a close
// frame), then the clients and the listener.
func (e *ebisyncServer) close(clients []*rawClient) {
	e.srv.Close()
	for _, c := range clients {
		c.close()
	}
	e.ts.Close()
}

// sums adds the counters of the clients.
func sums(clients []*rawClient) (msgs, bytes uint64) {
	for _, c := range clients {
		msgs += c.msgs.Load()
		bytes += c.bytes.Load()
	}
	return msgs, bytes
}

// firstErr returns the first reader error among clients.
func firstErr(clients []*rawClient) error {
	for _, c := range clients {
		if err := c.Err(); err != nil {
			return err
		}
	}
	return nil
}

// waitDelivered waits until the clients received every batch the server
// handed to its writers, byte for byte. The writer counts its bytes after
// it finished a write, so when the counts match every writer is idle and
// the next tick will find no client busy.
func waitDelivered(srv *plugin.Server, clients []*rawClient) error {
	var st plugin.Stats
	return waitDeliveredInto(srv, clients, &st)
}

// waitDeliveredInto is waitDelivered reading the server's counters into
// st with ReadStats, which allocates nothing once st has grown; st holds
// the last reading when it returns.
func waitDeliveredInto(srv *plugin.Server, clients []*rawClient, st *plugin.Stats) error {
	return testutil.WaitUntil(20*time.Second, func() string {
		msgs, bytes := sums(clients)
		return fmt.Sprintf("delivery: server handed %d batches / wrote %d bytes, clients got %d / %d (reader error: %v)",
			st.Batches, st.BytesOut, msgs, bytes, firstErr(clients))
	}, func() bool {
		srv.ReadStats(st)
		msgs, bytes := sums(clients)
		return msgs == st.Batches && bytes == st.BytesOut
	})
}

// connectAll dials n clients in parallel with dial(i).
func connectAll(n int, dial func(ctx context.Context, i int) (*rawClient, error)) ([]*rawClient, error) {
	clients := make([]*rawClient, n)
	errs := make([]error, n)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			clients[i], errs[i] = dial(ctx, i)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		for _, c := range clients {
			if c != nil {
				c.close()
			}
		}
		return nil, err
	}
	return clients, nil
}

// compIndex returns the wire id of a component of reg.
func compIndex(tb testing.TB, reg *components.Registry, ct donburi.IComponentType) int {
	tb.Helper()
	c, ok := reg.Of(ct)
	if !ok {
		tb.Fatalf("component %v is not registered", ct)
	}
	return c.Index()
}
