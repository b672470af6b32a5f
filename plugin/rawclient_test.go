package plugin_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/ebisync/ebisync/components"
	"github.com/ebisync/ebisync/internal/testutil"
	"github.com/ebisync/ebisync/internal/wire"
)

// rawClient speaks the wire protocol directly, for tests that need to
// misbehave or to look at exact bytes.
type rawClient struct {
	t   testing.TB
	ws  *websocket.Conn
	reg *components.Registry
	wel wire.Welcome

	mu      sync.Mutex
	batches [][]byte // raw messages as received
	bodies  []wire.Batch
	err     error
	done    chan struct{}
}

func dialRaw(t testing.TB, url string, reg *components.Registry, read bool) *rawClient {
	t.Helper()
	return dialRawHeader(t, url, reg, nil, read)
}

// dialRawHeader is dialRaw with request headers (credentials, the test
// address of hostileOptions).
func dialRawHeader(t testing.TB, url string, reg *components.Registry, hdr http.Header, read bool) *rawClient {
	t.Helper()
	ws := dialWS(t, url, reg, hdr, false)
	rc := &rawClient{t: t, ws: ws, reg: reg, done: make(chan struct{})}
	rc.wel = handshakeWS(t, ws, reg)
	if read {
		go rc.readLoop()
	} else {
		close(rc.done)
	}
	return rc
}

type regSizer = testutil.RegistrySizer

func (rc *rawClient) readLoop() {
	defer close(rc.done)
	for {
		_, msg, err := rc.ws.Read(context.Background())
		if err != nil {
			rc.mu.Lock()
			rc.err = err
			rc.mu.Unlock()
			return
		}
		kind, body, _, err := wire.Open(msg, nil)
		if err != nil {
			rc.mu.Lock()
			rc.err = err
			rc.mu.Unlock()
			return
		}
		if kind != wire.KindBatch {
			continue
		}
		var b wire.Batch
		if err := wire.DecodeBatch(append([]byte(nil), body...), regSizer{Reg: rc.reg}, &b); err != nil {
			rc.mu.Lock()
			rc.err = err
			rc.mu.Unlock()
			return
		}
		rc.mu.Lock()
		rc.batches = append(rc.batches, msg)
		rc.bodies = append(rc.bodies, b)
		rc.mu.Unlock()
	}
}

func (rc *rawClient) send(msg []byte) {
	rc.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := rc.ws.Write(ctx, websocket.MessageBinary, msg); err != nil {
		rc.t.Fatalf("send: %v", err)
	}
}

func (rc *rawClient) subscribeAll() {
	var subs []wire.Sub
	for i := range rc.reg.Len() {
		subs = append(subs, wire.Sub{Kind: wire.SubComponent, ID: uint64(i)})
	}
	rc.send(wire.AppendSubscribe(nil, wire.KindSubscribe, &wire.Subscribe{Subs: subs}))
}

func (rc *rawClient) snapshot() ([][]byte, []wire.Batch, error) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([][]byte(nil), rc.batches...), append([]wire.Batch(nil), rc.bodies...), rc.err
}

func (rc *rawClient) close() {
	rc.ws.Close(websocket.StatusNormalClosure, "")
	<-rc.done
}

func wsURL(ts *httptest.Server) string { return "ws" + strings.TrimPrefix(ts.URL, "http") }
