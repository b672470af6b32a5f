package plugin_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/coder/websocket"
	"github.com/yohamta/donburi"

	"github.com/ebisync/ebisync"
	"github.com/ebisync/ebisync/components"
	"github.com/ebisync/ebisync/internal/codec"
	"github.com/ebisync/ebisync/internal/testutil"
	"github.com/ebisync/ebisync/internal/wire"
	"github.com/ebisync/ebisync/netclient"
	"github.com/ebisync/ebisync/plugin"
)

// limitChat is a message clients send.
type limitChat struct {
	Text string
}

// limitBlob is a message the server sends: a sequence number and bytes
// that do not compress.
type limitBlob struct {
	Seq  uint32
	Data []byte
}

// limitRegistry is the mutation registry plus the two message types.
func limitRegistry() (*components.Registry, *components.Message[limitChat], *components.Message[limitBlob]) {
	reg, _, _ := mutationRegistry()
	chat := components.RegisterMessage[limitChat](reg, "limit.chat", &components.MessageOptions{FromClient: true})
	blob := components.RegisterMessage[limitBlob](reg, "limit.blob", nil)
	return reg, chat, blob
}

// wireMsgID returns the wire id of message type name in a Welcome.
func wireMsgID(t testing.TB, wel wire.Welcome, name string) uint64 {
	t.Helper()
	i := slices.Index(wel.Messages, name)
	if i < 0 {
		t.Fatalf("message %q not in the Welcome's %v", name, wel.Messages)
	}
	return uint64(i)
}

// chatBytes is v in the wire encoding of limitChat.
func chatBytes(m *components.Message[limitChat], v limitChat) []byte {
	return codec.Of(m.Type()).AppendFull(nil, unsafe.Pointer(&v))
}

// TestMessageLimits: a client's message over Options.ReadLimit closes its
// connection with 1009; messages past the request rate, which they share
// with mutations, are answered RateLimited; and a client that stops
// reading while the game sends it messages is closed with 4003 when its
// queue overflows, while a client that reads gets every message in order.
// In each case the server and the other clients go on.
func TestMessageLimits(t *testing.T) {
	t.Run("size", testMessageSizeLimit)
	t.Run("rate", testMessageRateLimit)
	t.Run("slow client", testMessageOverflow)
}

func testMessageSizeLimit(t *testing.T) {
	sreg, schat, _ := limitRegistry()
	const readLimit = 8 << 10
	h := newHarness(t, sreg, &plugin.Options{ReadLimit: readLimit}, 2*time.Millisecond)
	defer h.close()
	var mu sync.Mutex
	var heard []string
	plugin.Handle(h.srv, schat, func(ci plugin.ClientInfo, m limitChat) error {
		mu.Lock()
		defer mu.Unlock()
		heard = append(heard, m.Text)
		return nil
	})
	creg, cchat, _ := limitRegistry()
	good := startClientLoop(t, h.url, creg, nil)
	defer good.close()

	ws := dialWS(t, h.url, sreg, nil, false)
	wel := handshakeWS(t, ws, sreg)
	id := wireMsgID(t, wel, "limit.chat")
	// Just under the limit: handled.
	small := limitChat{Text: strings.Repeat("s", readLimit-64)}
	send(t, ws, websocket.MessageBinary, wire.AppendMessage(nil, &wire.Message{Request: 1, ID: id, Value: chatBytes(schat, small)}))
	testutil.Eventually(t, 5*time.Second, "the message under the limit handled", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(heard) == 1
	})
	// Over it: the connection ends with 1009, the handler never sees it.
	big := limitChat{Text: strings.Repeat("b", readLimit+1)}
	send(t, ws, websocket.MessageBinary, wire.AppendMessage(nil, &wire.Message{Request: 2, ID: id, Value: chatBytes(schat, big)}))
	expectClose(t, ws, websocket.StatusMessageTooBig)
	testutil.Eventually(t, 5*time.Second, "the refusal counted", func() bool {
		return h.srv.Stats().Refusals[plugin.RefusedReadLimit] == 1
	})

	// The server and the other client go on.
	r := sendLimitChat(t, good, cchat, limitChat{Text: "still here"})
	if r.Status != ebisync.Ok {
		t.Fatalf("the other client's message after the refusal: %+v", r)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(heard) != 2 || heard[1] != "still here" {
		t.Fatalf("the handler heard %d messages, the last %.20q; want the small one and the other client's", len(heard), heard[len(heard)-1])
	}
	if !good.c.Connected() {
		t.Fatal("the other client lost its connection")
	}
}

// sendLimitChat sends v from p and waits for the server's answer.
func sendLimitChat(t *testing.T, p *clientLoop, m *components.Message[limitChat], v limitChat) netclient.MutationResult {
	t.Helper()
	var ch <-chan netclient.MutationResult
	p.do(func(donburi.World) { ch = netclient.Send(p.c, m, v) })
	var r netclient.MutationResult
	testutil.Eventually(t, 5*time.Second, "the answer to "+v.Text, func() bool {
		ok := false
		p.do(func(donburi.World) {
			select {
			case r = <-ch:
				ok = true
			default:
			}
		})
		return ok
	})
	return r
}

func testMessageRateLimit(t *testing.T) {
	sreg, schat, _ := limitRegistry()
	// One token a second: the burst is all a test this short can spend.
	const burst = 10
	h := newHarness(t, sreg, &plugin.Options{Authorize: plugin.AllowAll, MutationRate: 1, MutationBurst: burst}, 2*time.Millisecond)
	defer h.close()
	var handled atomic.Int64
	plugin.Handle(h.srv, schat, func(plugin.ClientInfo, limitChat) error {
		handled.Add(1)
		return nil
	})
	h.do(func(w donburi.World) { w.Create(components.Replicated, score) })
	h.ticks(2)
	target := findTag(h, func(*donburi.Entry) bool { return true })
	sc, _ := testutil.Codec(sreg.Of(score))

	results := func(rc *rawClient, from, n int) (ok, limited int) {
		t.Helper()
		testutil.Eventually(t, 10*time.Second, "every request answered", func() bool {
			rs := rc.results()
			for i := from; i < from+n; i++ {
				if _, done := rs[uint64(i)]; !done {
					return false
				}
			}
			return true
		})
		rs := rc.results()
		for i := from; i < from+n; i++ {
			switch st := rs[uint64(i)].Status; st {
			case wire.StatusOk:
				ok++
			case wire.StatusRateLimited:
				limited++
			default:
				t.Fatalf("request %d: %s %q, want Ok or RateLimited", i, st.String(), rs[uint64(i)].Message)
			}
		}
		return ok, limited
	}

	// A flood of messages: the burst passes, the rest are RateLimited and
	// never reach the handler.
	a := dialRaw(t, h.url, sreg, true)
	defer a.close()
	id := wireMsgID(t, a.wel, "limit.chat")
	const flood = 4 * burst
	for i := range flood {
		a.send(wire.AppendMessage(nil, &wire.Message{Request: uint64(1 + i), ID: id, Value: chatBytes(schat, limitChat{Text: "spam"})}))
	}
	ok, limited := results(a, 1, flood)
	if ok < burst || ok > burst+2 || limited != flood-ok {
		t.Fatalf("%d messages of a flood of %d passed and %d were RateLimited; want about the burst of %d to pass", ok, flood, limited, burst)
	}
	testutil.Eventually(t, 5*time.Second, "the handler calls", func() bool { return handled.Load() == int64(ok) })

	// Messages and mutations share the bucket: a client that spent it on
	// mutations has its messages refused, and the other way round.
	b := dialRaw(t, h.url, sreg, true)
	defer b.close()
	for i := range burst {
		b.send(wire.AppendMutate(nil, &wire.Mutate{Request: uint64(1 + i), ID: uint64(target.NetID), Gen: uint64(target.Gen), Comp: uint64(sc.Index()), Value: encodeValue(sc, scoreData{Points: int32(i)})}))
	}
	for i := range burst {
		b.send(wire.AppendMessage(nil, &wire.Message{Request: uint64(100 + i), ID: id, Value: chatBytes(schat, limitChat{Text: "after mutations"})}))
	}
	if ok, _ := results(b, 1, burst); ok < burst-1 {
		t.Fatalf("only %d of the first %d mutations passed", ok, burst)
	}
	if ok, _ := results(b, 100, burst); ok > 2 {
		t.Fatalf("%d of %d messages passed after the mutations spent the bucket", ok, burst)
	}
	c := dialRaw(t, h.url, sreg, true)
	defer c.close()
	for i := range burst {
		c.send(wire.AppendMessage(nil, &wire.Message{Request: uint64(1 + i), ID: id, Value: chatBytes(schat, limitChat{Text: "first"})}))
	}
	for i := range burst {
		c.send(wire.AppendMutate(nil, &wire.Mutate{Request: uint64(100 + i), ID: uint64(target.NetID), Gen: uint64(target.Gen), Comp: uint64(sc.Index()), Value: encodeValue(sc, scoreData{Points: 7})}))
	}
	if ok, _ := results(c, 1, burst); ok < burst-1 {
		t.Fatalf("only %d of the first %d messages passed", ok, burst)
	}
	if ok, _ := results(c, 100, burst); ok > 2 {
		t.Fatalf("%d of %d mutations passed after messages spent the bucket", ok, burst)
	}

	// A netclient sees the refusal as ebisync.RateLimited.
	creg, cchat, _ := limitRegistry()
	p := startClientLoop(t, h.url, creg, nil)
	defer p.close()
	var chans []<-chan netclient.MutationResult
	p.do(func(donburi.World) {
		for range 2 * burst {
			chans = append(chans, netclient.Send(p.c, cchat, limitChat{Text: "netclient"}))
		}
	})
	var statuses []ebisync.Status
	testutil.Eventually(t, 5*time.Second, "the netclient's answers", func() bool {
		p.do(func(donburi.World) {
			for len(statuses) < len(chans) {
				select {
				case r := <-chans[len(statuses)]:
					statuses = append(statuses, r.Status)
					continue
				default:
				}
				break
			}
		})
		return len(statuses) == len(chans)
	})
	if n := len(slices.DeleteFunc(slices.Clone(statuses), func(s ebisync.Status) bool { return s != ebisync.RateLimited })); n < burst-2 {
		t.Fatalf("netclient: %d of %d messages RateLimited: %v", n, len(statuses), statuses)
	}
}

// dialSmallWindow dials url with a small TCP receive buffer, so that a
// client that stops reading stalls the server's writes soon, and does the
// handshake. It returns the TCP connection too, to widen the buffer again.
func dialSmallWindow(t testing.TB, url string, reg *components.Registry) (*websocket.Conn, *net.TCPConn) {
	t.Helper()
	var tcp *net.TCPConn
	tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if tc, ok := c.(*net.TCPConn); ok && err == nil {
			_ = tc.SetReadBuffer(4 << 10)
			tcp = tc
		}
		return c, err
	}}
	t.Cleanup(tr.CloseIdleConnections)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{CompressionMode: websocket.CompressionDisabled, HTTPClient: &http.Client{Transport: tr}})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	ws.SetReadLimit(wire.MaxMessageSize + 64)
	handshakeWS(t, ws, reg)
	if tcp == nil {
		t.Fatal("no TCP connection under the WebSocket")
	}
	return ws, tcp
}

func testMessageOverflow(t *testing.T) {
	sreg, _, sblob := limitRegistry()
	h := newHarness(t, sreg, &plugin.Options{WriteTimeout: time.Minute}, 2*time.Millisecond)
	defer h.close()

	creg, _, cblob := limitRegistry()
	reader := startClientLoop(t, h.url, creg, nil)
	defer reader.close()
	var mu sync.Mutex
	var seqs []uint32
	var corrupt int
	reader.do(func(donburi.World) {
		netclient.OnMessage(reader.c, cblob, func(m limitBlob) {
			mu.Lock()
			defer mu.Unlock()
			seqs = append(seqs, m.Seq)
			if len(m.Data) != 4<<10 || m.Data[0] != byte(m.Seq) {
				corrupt++
			}
		})
	})
	slow, slowTCP := dialSmallWindow(t, h.url, sreg) // handshakes, then stops reading
	testutil.Eventually(t, 5*time.Second, "both clients joined", func() bool { return h.srv.Stats().Clients == 2 })

	// The game broadcasts a 4 KiB message that does not compress every
	// tick, until the slow client is dropped and for a while after.
	rng := rand.New(rand.NewPCG(16, 3))
	var sent uint32
	var after int
	overflowed := func() bool { return h.srv.Stats().Refusals[plugin.RefusedMessages] > 0 }
	// Once dropped, the slow client reads again (with a wide window) and
	// finds the 4003 after what was sent before.
	closed := make(chan string, 1)
	drain := func() {
		_ = slowTCP.SetReadBuffer(4 << 20)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for {
			if _, _, err := slow.Read(ctx); err != nil {
				if code := websocket.CloseStatus(err); code != plugin.StatusTooSlow {
					closed <- fmt.Sprintf("the slow client's connection ended with %v (code %d), want 4003", err, code)
				}
				close(closed)
				return
			}
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for after < 100 {
		if time.Now().After(deadline) {
			t.Fatalf("the slow client was not dropped after %d messages: stats %+v", sent, h.srv.Stats().Refusals)
		}
		data := make([]byte, 4<<10)
		for i := range data {
			data[i] = byte(rng.Uint32())
		}
		data[0] = byte(sent)
		h.do(func(donburi.World) {
			plugin.Broadcast(h.srv, sblob, limitBlob{Seq: sent, Data: data})
		})
		sent++
		if overflowed() {
			if after == 0 {
				go drain()
			}
			after++
		}
		h.ticks(1)
	}
	st := h.srv.Stats()
	if st.Refusals[plugin.RefusedMessages] != 1 || st.Refusals[plugin.RefusedTooSlow] != 0 {
		t.Fatalf("refusals %v; want one message-overflow and no too-slow", st.Refusals)
	}
	if msg, bad := <-closed; bad {
		t.Fatal(msg)
	}

	// The reader got every message, in order, intact.
	check := func() string {
		mu.Lock()
		defer mu.Unlock()
		for i, s := range seqs {
			if s != uint32(i) {
				return fmt.Sprintf("message %d of the reader is number %d: lost or reordered", i, s)
			}
		}
		if corrupt != 0 {
			return fmt.Sprintf("%d corrupt messages", corrupt)
		}
		if len(seqs) != int(sent) {
			return fmt.Sprintf("the reader got %d of %d messages", len(seqs), sent)
		}
		return ""
	}
	if err := testutil.WaitUntil(10*time.Second, check, func() bool {
		reader.do(func(donburi.World) {})
		mu.Lock()
		defer mu.Unlock()
		return len(seqs) >= int(sent) || corrupt > 0 || len(seqs) > 0 && seqs[len(seqs)-1] != uint32(len(seqs)-1)
	}); err != nil {
		t.Fatal(err)
	}
	if msg := check(); msg != "" {
		t.Fatal(msg)
	}
	testutil.Eventually(t, 10*time.Second, "the server to let the slow client go", func() bool { return h.srv.Stats().Clients == 1 })
	if !reader.c.Connected() {
		t.Fatal("the reader lost its connection")
	}
	t.Logf("slow client dropped after %d of %d messages", int(sent)-after, sent)
}
