package plugin_test

import (
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/coder/websocket"
	"github.com/yohamta/donburi"

	"github.com/ebisync/ebisync"
	"github.com/ebisync/ebisync/internal/codec"
	"github.com/ebisync/ebisync/internal/testutil"
	"github.com/ebisync/ebisync/internal/wire"
	"github.com/ebisync/ebisync/plugin"
)

// TestHostileMessages sends game messages no honest client sends, from raw
// connections: a server-only type, values that do not decode, a
// reference to no entity, a type id past the Welcome's list. Each
// gets its documented answer, nothing invalid reaches the handler, and an
// honest client's messages go on both ways.
func TestHostileMessages(t *testing.T) {
	sreg, schat, shit := msgRegistry()
	h := newHarness(t, sreg, nil, 2*time.Millisecond)
	defer h.close()
	var mu sync.Mutex
	var heard []chatMsg
	h.do(func(donburi.World) {
		plugin.Handle(h.srv, schat, func(_ plugin.ClientInfo, m chatMsg) error {
			mu.Lock()
			defer mu.Unlock()
			heard = append(heard, m)
			return nil
		})
	})
	creg, cchat, chit := msgRegistry()
	good := startClientLoop(t, h.url, creg, nil)
	defer good.close()
	got := new(hits)
	got.listen(good, chit)

	chatID, hitID := uint64(schat.Index()), uint64(shit.Index())
	enc := func(v chatMsg) []byte { return codec.Of(schat.Type()).AppendFull(nil, unsafe.Pointer(&v)) }
	rc := dialRaw(t, h.url, sreg, true)
	defer rc.close()
	attacks := []struct {
		name string
		msg  wire.Message
		want wire.Status
	}{
		{"a server-only message type", wire.Message{Request: 1, ID: hitID, Value: []byte{0, 2}}, wire.StatusForbidden},
		{"a value that does not decode", wire.Message{Request: 2, ID: chatID, Value: []byte{0xff, 0xff, 0xff}}, wire.StatusValidationError},
		{"bytes after the value", wire.Message{Request: 3, ID: chatID, Value: append(enc(chatMsg{Text: "x"}), 7)}, wire.StatusValidationError},
		{"a reference to no entity", wire.Message{Request: 4, ID: chatID, Value: enc(chatMsg{Text: "ghost", About: donburi.Entity(codec.MakeRef(999, 3))})}, wire.StatusOk},
	}
	for _, a := range attacks {
		rc.send(wire.AppendMessage(nil, &a.msg))
	}
	testutil.Eventually(t, 5*time.Second, "the answers", func() bool { return len(rc.results()) == len(attacks) })
	res := rc.results()
	for _, a := range attacks {
		if r := res[a.msg.Request]; r.Status != a.want {
			t.Errorf("%s: %v %q, want %v", a.name, r.Status, r.Message, a.want)
		}
	}
	mu.Lock()
	if len(heard) != 1 || heard[0].Text != "ghost" || heard[0].About != donburi.Null {
		t.Fatalf("the handler heard %+v, want only the ghost, about Null", heard)
	}
	mu.Unlock()

	// A type id past the Welcome's list is a protocol error: 4000.
	ws := dialWS(t, h.url, sreg, nil, false)
	handshakeWS(t, ws, sreg)
	send(t, ws, websocket.MessageBinary, wire.AppendMessage(nil, &wire.Message{Request: 1, ID: 7, Value: nil}))
	expectClose(t, ws, websocket.StatusCode(4000))

	// The honest client still talks both ways.
	if r := sendChat(t, good, cchat, chatMsg{Text: "still here"}); r.Status != ebisync.Ok {
		t.Fatalf("the honest client's message: %+v", r)
	}
	h.do(func(donburi.World) { plugin.Broadcast(h.srv, shit, hitMsg{Damage: 5}) })
	testutil.Eventually(t, 5*time.Second, "the honest client hears the broadcast", func() bool {
		good.do(func(donburi.World) {})
		d := got.damages()
		return len(d) == 1 && d[0] == 5
	})
	if !good.c.Connected() {
		t.Fatal("the honest client lost its connection")
	}
}
