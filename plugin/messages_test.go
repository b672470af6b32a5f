package plugin_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/yohamta/donburi"

	"github.com/ebisync/ebisync"
	"github.com/ebisync/ebisync/components"
	"github.com/ebisync/ebisync/internal/testutil"
	"github.com/ebisync/ebisync/netclient"
	"github.com/ebisync/ebisync/plugin"
)

type chatMsg struct {
	Text  string
	About donburi.Entity
}

type hitMsg struct {
	Victim donburi.Entity
	Damage int32
}

// msgRegistry is the standard registry plus a chat clients may send and a
// hit only the server sends; each peer calls it for its own registry.
func msgRegistry() (*components.Registry, *components.Message[chatMsg], *components.Message[hitMsg]) {
	reg := standardRegistry()
	chat := components.RegisterMessage[chatMsg](reg, "test.chat", &components.MessageOptions{FromClient: true})
	hit := components.RegisterMessage[hitMsg](reg, "test.hit", nil)
	return reg, chat, hit
}

// hits collects the hits one client receives, on its game goroutine.
type hits struct {
	mu   sync.Mutex
	got  []hitMsg
	live []bool // whether the victim was a live mirror entity in the handler
}

func (h *hits) listen(p *clientLoop, m *components.Message[hitMsg]) {
	p.do(func(w donburi.World) {
		netclient.OnMessage(p.c, m, func(v hitMsg) {
			h.mu.Lock()
			defer h.mu.Unlock()
			h.got = append(h.got, v)
			h.live = append(h.live, v.Victim != donburi.Null && w.Valid(v.Victim))
		})
	})
}

func (h *hits) damages() []int32 {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []int32
	for _, v := range h.got {
		out = append(out, v.Damage)
	}
	return out
}

func (h *hits) last() (hitMsg, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.got[len(h.got)-1], h.live[len(h.live)-1]
}

// sendChat sends a chat from p and waits for the server's answer.
func sendChat(t *testing.T, p *clientLoop, m *components.Message[chatMsg], v chatMsg) netclient.MutationResult {
	t.Helper()
	var ch <-chan netclient.MutationResult
	p.do(func(donburi.World) { ch = netclient.Send(p.c, m, v) })
	var r netclient.MutationResult
	testutil.Eventually(t, 5*time.Second, "the answer to "+v.Text, func() bool {
		select {
		case r = <-ch:
			return true
		default:
			p.do(func(donburi.World) {})
			return false
		}
	})
	return r
}

// TestMessagesBothWays: each way of addressing a server message reaches
// exactly its clients, in order, with entity references as the client's
// own entities; a client's message reaches the handler with the client's
// identity and the server's entity, and every kind of refusal comes back
// with its status.
func TestMessagesBothWays(t *testing.T) {
	sreg, schat, shit := msgRegistry()
	h := newHarness(t, sreg, nil, 2*time.Millisecond)
	defer h.close()

	type heard struct {
		from uint64
		msg  chatMsg
	}
	var mu sync.Mutex
	var handled []heard
	h.do(func(donburi.World) {
		plugin.Handle(h.srv, schat, func(ci plugin.ClientInfo, m chatMsg) error {
			mu.Lock()
			handled = append(handled, heard{ci.ID, m})
			mu.Unlock()
			switch m.Text {
			case "bad":
				return errors.New("no shouting")
			case "invalid":
				return fmt.Errorf("%w: empty", plugin.ErrInvalid)
			case "panic":
				panic("handler bug")
			}
			return nil
		})
	})

	var near, far donburi.Entity
	h.do(func(w donburi.World) {
		near = w.Create(components.Replicated, components.Position)
		components.Position.SetValue(w.Entry(near), components.PositionData{X: 10})
		far = w.Create(components.Replicated, components.Position)
		components.Position.SetValue(w.Entry(far), components.PositionData{X: 5000})
	})

	var loops [2]*clientLoop
	var heardBy [2]*hits
	var chats [2]*components.Message[chatMsg]
	for i := range loops {
		creg, cchat, chit := msgRegistry()
		chats[i] = cchat
		loops[i] = startClientLoop(t, h.url, creg, nil)
		defer loops[i].close()
		heardBy[i] = new(hits)
		heardBy[i].listen(loops[i], chit)
		loops[i].c.SubscribeAll()
		loops[i].c.SetInterest(float64(i)*5000, 0, 500) // a sees near, b sees far
	}
	a, b := loops[0], loops[1]
	mirrored := func(p *clientLoop) int {
		n := 0
		p.do(func(w donburi.World) { n = w.Len() })
		return n
	}
	testutil.Eventually(t, 5*time.Second, "each client mirrors its entity", func() bool { return mirrored(a) == 1 && mirrored(b) == 1 })

	// Server to one client, to all, to the viewers of an entity.
	h.do(func(donburi.World) {
		if !plugin.Send(h.srv, a.c.ClientID(), shit, hitMsg{Damage: 1}) {
			t.Error("Send to a connected client reported false")
		}
		if n := plugin.Broadcast(h.srv, shit, hitMsg{Damage: 2}); n != 2 {
			t.Errorf("Broadcast reached %d clients, want 2", n)
		}
		if n := plugin.SendToViewers(h.srv, near, shit, hitMsg{Victim: near, Damage: 3}); n != 1 {
			t.Errorf("SendToViewers reached %d clients, want 1", n)
		}
		if plugin.Send(h.srv, 999, shit, hitMsg{}) {
			t.Error("Send to no client reported true")
		}
	})
	testutil.Eventually(t, 5*time.Second, "the hits", func() bool {
		a.do(func(donburi.World) {})
		b.do(func(donburi.World) {})
		return len(heardBy[0].damages()) == 3 && len(heardBy[1].damages()) == 1
	})
	if got := heardBy[0].damages(); !slices.Equal(got, []int32{1, 2, 3}) {
		t.Fatalf("a heard %v, want [1 2 3] in order", got)
	}
	if got := heardBy[1].damages(); !slices.Equal(got, []int32{2}) {
		t.Fatalf("b heard %v, want [2]", got)
	}
	v, live := heardBy[0].last()
	var nearMirror donburi.Entity
	a.do(func(w donburi.World) {
		id, gen := serverRef(h, near)
		if e, ok := a.c.Entity(id); ok {
			if _, g, _ := a.c.NetID(e); g == gen {
				nearMirror = e
			}
		}
	})
	if !live || v.Victim != nearMirror {
		t.Fatalf("victim %v (live %v), want a's mirror %v", v.Victim, live, nearMirror)
	}

	// Client to server: identity, the server's entity, statuses.
	r := sendChat(t, a, chats[0], chatMsg{Text: "hi", About: nearMirror})
	if r.Status != ebisync.Ok {
		t.Fatalf("hi: %+v", r)
	}
	mu.Lock()
	got := handled[len(handled)-1]
	mu.Unlock()
	if got.from != a.c.ClientID() || got.msg.Text != "hi" || got.msg.About != near {
		t.Fatalf("handler saw %+v from %d, want hi about %v from %d", got.msg, got.from, near, a.c.ClientID())
	}
	bchat := chats[1]
	for text, want := range map[string]ebisync.Status{"bad": ebisync.Forbidden, "invalid": ebisync.ValidationError, "panic": ebisync.InternalError} {
		if r := sendChat(t, b, bchat, chatMsg{Text: text}); r.Status != want || r.Err == nil {
			t.Errorf("%s: %+v, want %v", text, r, want)
		}
	}
	// A reference to an entity the client does not mirror arrives as Null.
	if r := sendChat(t, b, bchat, chatMsg{Text: "about nothing", About: donburi.Entity(12345)}); r.Status != ebisync.Ok {
		t.Fatalf("about nothing: %+v", r)
	}
	mu.Lock()
	got = handled[len(handled)-1]
	mu.Unlock()
	if got.msg.About != donburi.Null {
		t.Fatalf("an unmirrored reference reached the handler as %v", got.msg.About)
	}
	// Without a handler, NotFound.
	h.do(func(donburi.World) { plugin.Handle[chatMsg](h.srv, schat, nil) })
	if r := sendChat(t, a, chats[0], chatMsg{Text: "anyone?"}); r.Status != ebisync.NotFound {
		t.Fatalf("no handler: %+v", r)
	}
	st := h.srv.Stats()
	if st.GameMessagesIn != 6 || st.GameMessagesOut != 4 {
		t.Fatalf("Stats.GameMessagesIn %d, Out %d; want 6 and 4", st.GameMessagesIn, st.GameMessagesOut)
	}
}

// serverRef returns e's net id and generation on the server.
func serverRef(h *harness, e donburi.Entity) (id, gen uint32) {
	h.do(func(w donburi.World) {
		if w.Valid(e) {
			tag := components.Replicated.Get(w.Entry(e))
			id, gen = tag.NetID, tag.Gen
		}
	})
	return id, gen
}

// TestMessageOrderWithState: a message sent with the entity it names,
// before the tick that first replicates it, arrives after that entity's
// spawn, in the same batch: the handler finds it alive in the mirror,
// spawned by the batch (server tick) that carried the message.
func TestMessageOrderWithState(t *testing.T) {
	sreg, _, shit := msgRegistry()
	h := newHarness(t, sreg, nil, 2*time.Millisecond)
	defer h.close()
	creg, _, chit := msgRegistry()
	// The server tick of the batch that spawned each mirror entity: p's
	// game goroutine writes and reads it.
	var p *clientLoop
	spawnedAt := map[donburi.Entity]uint64{}
	p = startClientLoop(t, h.url, creg, &netclient.Options{OnSpawn: func(e donburi.Entity) { spawnedAt[e] = p.c.ServerTick() }})
	defer p.close()
	heard := new(hits)
	var sameBatch []bool // by hit, under heard.mu
	p.do(func(w donburi.World) {
		netclient.OnMessage(p.c, chit, func(v hitMsg) {
			at, ok := spawnedAt[v.Victim]
			heard.mu.Lock()
			defer heard.mu.Unlock()
			heard.got = append(heard.got, v)
			heard.live = append(heard.live, v.Victim != donburi.Null && w.Valid(v.Victim))
			sameBatch = append(sameBatch, ok && at == p.c.ServerTick())
		})
	})
	p.c.SubscribeAll()
	testutil.Eventually(t, 5*time.Second, "the client joins", func() bool { return h.srv.Stats().Clients == 1 })

	for i := range 20 {
		h.do(func(w donburi.World) {
			e := w.Create(components.Replicated, components.Position)
			components.Position.SetValue(w.Entry(e), components.PositionData{X: float64(i)})
			plugin.Send(h.srv, p.c.ClientID(), shit, hitMsg{Victim: e, Damage: int32(i)})
		})
		testutil.Eventually(t, 5*time.Second, "the hit", func() bool {
			p.do(func(donburi.World) {})
			return len(heard.damages()) == i+1
		})
		v, live := heard.last()
		if !live || v.Damage != int32(i) {
			t.Fatalf("hit %d: victim %v live %v: the message arrived before the entity's spawn", i, v.Victim, live)
		}
		heard.mu.Lock()
		same := sameBatch[i]
		heard.mu.Unlock()
		if !same {
			t.Fatalf("hit %d: the message arrived in a later batch than its victim's spawn", i)
		}
	}
}

// TestMessageSchemaMismatch: a client whose message type differs from the
// server's is refused at the handshake with a reason naming the field.
func TestMessageSchemaMismatch(t *testing.T) {
	sreg, _, _ := msgRegistry()
	h := newHarness(t, sreg, nil, 2*time.Millisecond)
	defer h.close()
	type chatV2 struct {
		Text  []byte
		About donburi.Entity
	}
	creg := standardRegistry()
	components.RegisterMessage[chatV2](creg, "test.chat", &components.MessageOptions{FromClient: true})
	components.RegisterMessage[hitMsg](creg, "test.hit", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := netclient.Dial(ctx, h.url, creg, &netclient.Options{Logger: quietLogger()})
	var re *netclient.RefusedError
	if !errors.As(err, &re) || re.Code != 4001 || !containsAll(re.Message, `message "test.chat"`, `"Text"`, "[]byte") {
		t.Fatalf("Dial: %v, want a 4001 refusal naming the message and field", err)
	}
}

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}
