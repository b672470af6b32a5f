package netclient_test

import (
	"slices"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/yohamta/donburi"

	"github.com/ebisync/ebisync/components"
	"github.com/ebisync/ebisync/internal/wire"
	"github.com/ebisync/ebisync/netclient"
)

// fastReconnect returns options that reconnect within milliseconds.
func fastReconnect() *netclient.Options {
	return &netclient.Options{MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// next returns the next message the client sent on fc (pings excepted).
func (fc *fakeConn) next(t *testing.T) clientMsg {
	t.Helper()
	select {
	case m := <-fc.in:
		return m
	case <-time.After(waitFor):
		t.Fatal("no message from the client")
		return clientMsg{}
	}
}

// expectSubs reads the client's next message, which must be a Subscribe
// or Unsubscribe (kind) of want.
func (fc *fakeConn) expectSubs(t *testing.T, kind wire.Kind, want []wire.Sub) {
	t.Helper()
	m := fc.next(t)
	if m.kind != kind {
		t.Fatalf("got a %s message, want %s of %v", m.kind, kind, want)
	}
	s, err := wire.DecodeSubscribe(m.body)
	must(t, err)
	if !slices.Equal(s.Subs, want) {
		t.Fatalf("%s of %v, want %v", kind, s.Subs, want)
	}
}

// TestResumeHelloCarriesScope: the Hello of a reconnect that asks to
// resume carries the remembered interest and subscriptions, component ids
// numbered as the session's server numbered them; the client sends them
// again after the Welcome. A client that never set an interest or
// subscribed sends none.
func TestResumeHelloCarriesScope(t *testing.T) {
	reg := newRegistry()
	fs := newFakeServer(t, reg)
	c, fc := dial(t, fs, fastReconnect())
	if fc.hello.Resume != nil {
		t.Fatalf("Dial's Hello asks to resume: %+v", fc.hello.Resume)
	}
	must(t, c.Subscribe(components.Health, components.Position))
	must(t, c.SubscribeEntity(7, 2))
	must(t, c.SubscribeEntity(3, 1))
	must(t, c.SetInterest(10, 20, 300))
	fc.expect(t, wire.KindInterest)

	fc.ws.Close(websocket.StatusGoingAway, "restart")
	fc2 := fs.accept(t)
	r := fc2.hello.Resume
	if r == nil {
		t.Fatal("the reconnect's Hello does not ask to resume")
	}
	assertEqual(t, "client id", r.ClientID, fc.welcome.ClientID)
	assertEqual(t, "tick", r.Tick, fs.tick)
	in := wire.Interest{Mode: wire.InterestPoint, X: 10, Y: 20, Radius: 300}
	if r.Interest == nil || *r.Interest != in {
		t.Fatalf("Hello interest %+v, want %+v", r.Interest, in)
	}
	subs := []wire.Sub{ // components in registry order, then entities by id
		{Kind: wire.SubComponent, ID: compID(t, reg, components.Position)},
		{Kind: wire.SubComponent, ID: compID(t, reg, components.Health)},
		{Kind: wire.SubEntity, ID: 3, Gen: 1},
		{Kind: wire.SubEntity, ID: 7, Gen: 2},
	}
	if !slices.Equal(r.Subs, subs) {
		t.Fatalf("Hello subscriptions %v, want %v", r.Subs, subs)
	}

	// After the Welcome (of a fresh session here), the same again.
	m := fc2.next(t)
	assertEqual(t, "first message", m.kind, wire.KindInterest)
	got, err := wire.DecodeInterest(m.body)
	must(t, err)
	assertEqual(t, "interest", got, in)
	fc2.expectSubs(t, wire.KindSubscribe, subs)

	// Nothing remembered: nothing carried.
	_, fc = dial(t, fs, fastReconnect())
	fc.ws.Close(websocket.StatusGoingAway, "restart")
	fc2 = fs.accept(t)
	r = fc2.hello.Resume
	if r == nil || r.ClientID != fc.welcome.ClientID || r.Interest != nil || r.Subs != nil {
		t.Fatalf("Hello resume %+v, want client %d with no interest or subscriptions", r, fc.welcome.ClientID)
	}
}

// TestResumeHelloOtherNumbering: a resumed session's server that numbers
// the components otherwise than the last one read the Hello's component
// subscriptions as other components; after the Welcome the client
// unsubscribes those and subscribes to its own under the new numbering.
func TestResumeHelloOtherNumbering(t *testing.T) {
	reg := newRegistry()
	fs := newFakeServer(t, reg)
	c, fc := dial(t, fs, fastReconnect())
	must(t, c.Subscribe(components.Position, components.Health))
	must(t, c.SubscribeEntity(9, 4))
	fc.expect(t, wire.KindSubscribe)

	var names []string
	for _, comp := range reg.All() {
		names = append(names, comp.Name())
	}
	slices.Reverse(names)
	newID := func(ct donburi.IComponentType) uint64 {
		comp, _ := reg.Of(ct)
		return uint64(slices.Index(names, comp.Name()))
	}
	fs.setNames(names)
	fs.setResume(true)
	fc.ws.Close(websocket.StatusGoingAway, "restart")
	fc2 := fs.accept(t)
	assertEqual(t, "resumed", fc2.welcome.Resumed, true)

	pos, health := compID(t, reg, components.Position), compID(t, reg, components.Health)
	entity := wire.Sub{Kind: wire.SubEntity, ID: 9, Gen: 4}
	hello := []wire.Sub{{Kind: wire.SubComponent, ID: pos}, {Kind: wire.SubComponent, ID: health}, entity}
	if !slices.Equal(fc2.hello.Resume.Subs, hello) {
		t.Fatalf("Hello subscriptions %v, want %v", fc2.hello.Resume.Subs, hello)
	}
	if pos == newID(components.Position) || pos == newID(components.Health) || health == newID(components.Position) || health == newID(components.Health) {
		t.Fatal("the test's numbering does not move position and health")
	}
	fc2.expectSubs(t, wire.KindUnsubscribe, []wire.Sub{{Kind: wire.SubComponent, ID: pos}, {Kind: wire.SubComponent, ID: health}})
	fc2.expectSubs(t, wire.KindSubscribe, []wire.Sub{
		{Kind: wire.SubComponent, ID: newID(components.Position)},
		{Kind: wire.SubComponent, ID: newID(components.Health)},
		entity,
	})
	updateUntil(t, c, func() bool { return c.Stats().Resumes == 1 })

	// The same numbering again: nothing to take back.
	fc2.ws.Close(websocket.StatusGoingAway, "restart")
	fc3 := fs.accept(t)
	assertEqual(t, "resumed", fc3.welcome.Resumed, true)
	fc3.expectSubs(t, wire.KindSubscribe, []wire.Sub{
		{Kind: wire.SubComponent, ID: newID(components.Position)},
		{Kind: wire.SubComponent, ID: newID(components.Health)},
		entity,
	})
}
