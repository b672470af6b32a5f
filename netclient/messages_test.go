package netclient_test

import (
	"errors"
	"testing"
	"unsafe"

	"github.com/yohamta/donburi"
	"github.com/yohamta/donburi/features/events"

	"github.com/ebisync/ebisync"
	"github.com/ebisync/ebisync/components"
	"github.com/ebisync/ebisync/internal/codec"
	"github.com/ebisync/ebisync/internal/wire"
	"github.com/ebisync/ebisync/netclient"
)

type hitMsg struct {
	Victim donburi.Entity
	Damage int32
}

type chatMsg struct{ Text string }

// serverMsg encodes v as the fake server's message of type m.
func serverMsg[T any](m *components.Message[T], v T) wire.Msg {
	return wire.Msg{ID: uint64(m.Index()), Value: codec.Of(m.Type()).AppendFull(nil, unsafe.Pointer(&v))}
}

// TestClientMessages: the server's messages reach their handler in order
// after the batch's state, with references to an entity spawned by the same
// batch resolved; features/events delivery works; a client's message
// travels with a request id and resolves with the server's answer.
func TestClientMessages(t *testing.T) {
	reg := newRegistry()
	hit := components.RegisterMessage[hitMsg](reg, "test.hit", nil)
	chat := components.RegisterMessage[chatMsg](reg, "test.chat", &components.MessageOptions{FromClient: true})
	fs := newFakeServer(t, reg)
	c, fc := dial(t, fs, nil)

	var hits []hitMsg
	var alive []bool
	netclient.OnMessage(c, hit, func(h hitMsg) {
		hits = append(hits, h)
		alive = append(alive, h.Victim != donburi.Null && c.World().Valid(h.Victim))
	})
	chats := events.NewEventType[chatMsg]()
	var said []string
	chats.Subscribe(c.World(), func(_ donburi.World, m chatMsg) { said = append(said, m.Text) })
	netclient.PublishMessages(c, chat, chats)

	// One batch spawns entity 5 and carries a hit naming it.
	var b wire.Batch
	b.TickAdvance = 1
	b.AddSpawn(5, 2, []wire.CompValue{full(t, reg, components.Position, components.PositionData{X: 1})})
	b.Messages = []wire.Msg{
		serverMsg(hit, hitMsg{Victim: ref(5, 2), Damage: 7}),
		serverMsg(chat, chatMsg{Text: "gg"}),
		serverMsg(hit, hitMsg{Victim: ref(9, 1), Damage: 1}), // not in scope
	}
	fc.send(t, &b)
	updateUntil(t, c, func() bool { return len(hits) == 2 })
	e5, _ := c.Entity(5)
	assertEqual(t, "first hit's victim", hits[0].Victim, e5)
	assertEqual(t, "victim alive in the handler", alive[0], true)
	assertEqual(t, "second hit's victim", hits[1].Victim, donburi.Null)
	assertEqual(t, "damage order", hits[0].Damage*10+hits[1].Damage, int32(71))
	chats.ProcessEvents(c.World())
	assertEqual(t, "chat via events", len(said) == 1 && said[0] == "gg", true)
	assertEqual(t, "GameMessagesIn", c.Stats().GameMessagesIn, uint64(3))

	// A client's message names the mirror entity; the server sees its Ref.
	res := netclient.Send(c, chat, chatMsg{Text: "hello"})
	m, err := wire.DecodeMessage(fc.expect(t, wire.KindMessage))
	if err != nil {
		t.Fatal(err)
	}
	var got chatMsg
	if _, err := codec.Of(chat.Type()).DecodeFull(m.Value, unsafe.Pointer(&got)); err != nil || got.Text != "hello" {
		t.Fatalf("sent %+v, %v", got, err)
	}
	b = wire.Batch{TickAdvance: 1, Results: []wire.MutationResult{{Request: m.Request, Status: wire.StatusForbidden, Message: "muted"}}}
	fc.send(t, &b)
	var r netclient.MutationResult
	updateUntil(t, c, func() bool {
		select {
		case r = <-res:
			return true
		default:
			return false
		}
	})
	assertEqual(t, "answer", r.Status, ebisync.Forbidden)

	// A message type only the server sends cannot be sent.
	r = <-netclient.Send(c, hit, hitMsg{})
	if r.Status != ebisync.NoReply || r.Err == nil {
		t.Fatalf("Send of a server-only message: %+v", r)
	}

	// A malformed message is a protocol error: the connection is replaced.
	b = wire.Batch{TickAdvance: 1, Messages: []wire.Msg{{ID: uint64(hit.Index()), Value: []byte{0xff}}}}
	fc.send(t, &b)
	updateUntil(t, c, func() bool { return c.Stats().DecodeErrors == 1 })
	if code := fc.waitClosed(t); code != 4000 {
		t.Fatalf("closed with %d, want 4000", code)
	}
}

// TestMessageSchemaMismatch: a server without the client's message type,
// or with a different layout, refuses or is refused at the handshake.
func TestClientMessageSchemaMismatch(t *testing.T) {
	reg := newRegistry()
	components.RegisterMessage[chatMsg](reg, "test.chat", nil)
	fs := newFakeServer(t, newRegistry()) // the server has no message types
	_, err := netclient.Dial(t.Context(), fs.url, reg, &netclient.Options{Logger: testLogger(t)})
	var me *components.MismatchError
	if !errors.As(err, &me) || !me.Message || me.Component != "test.chat" {
		t.Fatalf("Dial: %v, want a message mismatch naming test.chat", err)
	}
}
