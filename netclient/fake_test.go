package netclient_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/coder/websocket"
	"github.com/yohamta/donburi"
	"go.uber.org/goleak"

	"github.com/ebisync/ebisync/components"
	"github.com/ebisync/ebisync/internal/testutil"
	"github.com/ebisync/ebisync/internal/wire"
	"github.com/ebisync/ebisync/netclient"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const waitFor = 5 * time.Second

// fakeServer speaks just enough of the protocol to drive a client: it
// answers Hello with Welcome (or refuses), answers pings, and hands each
// connection to the test, which sends batches by hand.
type fakeServer struct {
	t        *testing.T
	reg      *components.Registry
	srv      *httptest.Server
	url      string
	conns    chan *fakeConn
	ctx      context.Context
	cancel   context.CancelFunc
	handlers sync.WaitGroup

	mu       sync.Mutex
	refuse   *wire.Error // refuse the next handshakes with this
	names    []string    // Welcome components; nil: the registry's
	tick     uint64
	tickRate uint64
	nextID   uint64
	noPong   bool // do not answer pings
	stall    bool // stop reading after the handshake, like a hung server
	resume   bool // resume the session a Hello names, whatever its token
}

// fakeConn is one accepted connection.
type fakeConn struct {
	t         *testing.T
	ws        *websocket.Conn
	hello     wire.Hello
	welcome   wire.Welcome
	in        chan clientMsg
	done      chan struct{} // closed when the connection ended
	closeCode websocket.StatusCode
}

type clientMsg struct {
	kind wire.Kind
	body []byte
}

func newFakeServer(t *testing.T, reg *components.Registry) *fakeServer {
	t.Helper()
	fs := &fakeServer{t: t, reg: reg, conns: make(chan *fakeConn, 16), tick: 1000, tickRate: 60}
	fs.ctx, fs.cancel = context.WithCancel(context.Background())
	fs.srv = httptest.NewServer(http.HandlerFunc(fs.serve))
	fs.url = "ws" + strings.TrimPrefix(fs.srv.URL, "http")
	t.Cleanup(func() {
		fs.cancel()
		fs.srv.Close()
		fs.handlers.Wait()
	})
	return fs
}

func (fs *fakeServer) serve(w http.ResponseWriter, r *http.Request) {
	fs.handlers.Add(1)
	defer fs.handlers.Done()
	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{CompressionMode: websocket.CompressionDisabled})
	if err != nil {
		return
	}
	defer ws.CloseNow()
	ws.SetReadLimit(wire.MaxMessageSize)
	ctx := fs.ctx
	_, msg, err := ws.Read(ctx)
	if err != nil {
		return
	}
	kind, body, _, err := wire.Open(msg, nil)
	if err != nil || kind != wire.KindHello {
		ws.Close(websocket.StatusCode(wire.CloseProtocolError), "expected hello")
		return
	}
	hello, err := wire.DecodeHello(body)
	if err != nil {
		ws.Close(websocket.StatusCode(wire.CloseProtocolError), "bad hello")
		return
	}
	fs.mu.Lock()
	refuse := fs.refuse
	names := fs.names
	fs.nextID++
	wel := wire.Welcome{Version: wire.ProtocolVersion, ClientID: fs.nextID, TickRate: fs.tickRate, Tick: fs.tick}
	if fs.resume && hello.Resume != nil {
		wel.ClientID, wel.Token, wel.Resumed = hello.Resume.ClientID, hello.Resume.Token, true
	}
	fs.mu.Unlock()
	if refuse != nil {
		ws.Write(ctx, websocket.MessageBinary, wire.AppendError(nil, refuse))
		ws.Close(websocket.StatusCode(refuse.Code), "refused")
		return
	}
	if names == nil {
		for _, c := range fs.reg.All() {
			names = append(names, c.Name())
		}
	}
	wel.Components = names
	for _, m := range fs.reg.Messages() {
		wel.Messages = append(wel.Messages, m.Name())
	}
	if err := ws.Write(ctx, websocket.MessageBinary, wire.AppendWelcome(nil, &wel)); err != nil {
		return
	}
	fc := &fakeConn{t: fs.t, ws: ws, hello: hello, welcome: wel, in: make(chan clientMsg, 1024), done: make(chan struct{})}
	defer close(fc.done)
	fs.conns <- fc
	fs.mu.Lock()
	stall := fs.stall
	fs.mu.Unlock()
	if stall {
		<-ctx.Done()
		return
	}
	for {
		_, msg, err := ws.Read(ctx)
		if err != nil {
			fc.closeCode = websocket.CloseStatus(err)
			return
		}
		kind, body, _, err := wire.Open(msg, nil)
		if err != nil {
			fc.closeCode = -2
			return
		}
		fs.mu.Lock()
		noPong := fs.noPong
		fs.mu.Unlock()
		if kind == wire.KindPing && noPong {
			continue
		}
		if kind == wire.KindPing {
			m, _ := wire.DecodePing(body)
			ws.Write(ctx, websocket.MessageBinary, wire.AppendPing(nil, wire.KindPong, &m))
			continue
		}
		select {
		case fc.in <- clientMsg{kind, append([]byte(nil), body...)}:
		default:
		}
	}
}

func (fs *fakeServer) setRefuse(e *wire.Error) {
	fs.mu.Lock()
	fs.refuse = e
	fs.mu.Unlock()
}

func (fs *fakeServer) setResume(on bool) {
	fs.mu.Lock()
	fs.resume = on
	fs.mu.Unlock()
}

func (fs *fakeServer) setNames(names []string) {
	fs.mu.Lock()
	fs.names = names
	fs.mu.Unlock()
}

// accept returns the next connection that completed its handshake.
func (fs *fakeServer) accept(t *testing.T) *fakeConn {
	t.Helper()
	select {
	case fc := <-fs.conns:
		return fc
	case <-time.After(waitFor):
		t.Fatal("no connection")
		return nil
	}
}

// expect returns the body of the next client message of kind, skipping
// others.
func (fc *fakeConn) expect(t *testing.T, kind wire.Kind) []byte {
	t.Helper()
	deadline := time.After(waitFor)
	for {
		select {
		case m := <-fc.in:
			if m.kind == kind {
				return m.body
			}
		case <-deadline:
			t.Fatalf("no %s message from the client", kind)
			return nil
		}
	}
}

func (fc *fakeConn) sendRaw(t *testing.T, msg []byte) {
	t.Helper()
	if err := fc.ws.Write(context.Background(), websocket.MessageBinary, msg); err != nil {
		t.Fatalf("write: %v", err)
	}
}

func (fc *fakeConn) send(t *testing.T, b *wire.Batch) {
	t.Helper()
	fc.sendRaw(t, wire.AppendBatch(nil, b))
}

// waitClosed waits for the connection to end and returns the close code
// the client sent.
func (fc *fakeConn) waitClosed(t *testing.T) websocket.StatusCode {
	t.Helper()
	select {
	case <-fc.done:
		return fc.closeCode
	case <-time.After(waitFor):
		t.Fatal("connection not closed")
		return 0
	}
}

// newRegistry returns a registry with the standard components.
func newRegistry() *components.Registry {
	reg := components.NewRegistry()
	components.RegisterStandard(reg)
	return reg
}

// dial connects a client to fs and closes it at the end of the test.
func dial(t *testing.T, fs *fakeServer, opts *netclient.Options) (*netclient.Client, *fakeConn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if opts == nil {
		opts = new(netclient.Options)
	}
	if opts.Logger == nil {
		opts.Logger = testLogger(t)
	}
	c, err := netclient.Dial(ctx, fs.url, fs.reg, opts)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c, fs.accept(t)
}

// updateUntil calls Update (the test goroutine is the game goroutine) until
// cond holds.
func updateUntil(t *testing.T, c *netclient.Client, cond func() bool) {
	t.Helper()
	testutil.Eventually(t, waitFor, "the condition after Update", func() bool {
		if err := c.Update(); err != nil && !errors.Is(err, netclient.ErrClosed) {
			t.Logf("Update: %v", err)
		}
		return cond()
	})
}

// full encodes v as component ct's full value, with the component's
// registry index as its id (the fake server's Welcome lists the registry in
// order).
func full[T any](t *testing.T, reg *components.Registry, ct *donburi.ComponentType[T], v T) wire.CompValue {
	t.Helper()
	comp, ok := testutil.Codec(reg.Of(ct))
	if !ok {
		t.Fatalf("%v not registered", ct)
	}
	return wire.CompValue{Comp: uint64(comp.Index()), Value: comp.AppendFull(nil, unsafe.Pointer(&v))}
}

func fullUpdate[T any](t *testing.T, reg *components.Registry, ct *donburi.ComponentType[T], id uint64, v T) wire.Update {
	t.Helper()
	cv := full(t, reg, ct, v)
	return wire.Update{Comp: cv.Comp, ID: id, Value: cv.Value}
}

func deltaUpdate[T any](t *testing.T, reg *components.Registry, ct *donburi.ComponentType[T], id uint64, old, new T) wire.Update {
	t.Helper()
	comp, _ := testutil.Codec(reg.Of(ct))
	o, n := unsafe.Pointer(&old), unsafe.Pointer(&new)
	return wire.Update{Comp: uint64(comp.Index()), ID: id, Delta: true, Value: comp.AppendDelta(nil, o, n, comp.Diff(o, n))}
}

func compID(t *testing.T, reg *components.Registry, ct donburi.IComponentType) uint64 {
	t.Helper()
	comp, ok := testutil.Codec(reg.Of(ct))
	if !ok {
		t.Fatalf("%v not registered", ct)
	}
	return uint64(comp.Index())
}

// get returns the world value of ct on mirror entity netID.
func get[T any](t *testing.T, c *netclient.Client, netID uint32, ct *donburi.ComponentType[T]) (T, bool) {
	t.Helper()
	var zero T
	e, ok := c.Entity(netID)
	if !ok {
		return zero, false
	}
	entry := c.World().Entry(e)
	if !entry.HasComponent(ct) {
		return zero, false
	}
	return *ct.Get(entry), true
}

func near(a, b float64) bool { return a-b < 1e-9 && b-a < 1e-9 }

func assertEqual[T comparable](t *testing.T, what string, got, want T) {
	t.Helper()
	if got != want {
		t.Fatalf("%s: got %v, want %v", what, got, want)
	}
}

// testLogger logs to t at Debug, so a failing test shows what the client
// did.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}
