package netclient

import (
	"fmt"

	"github.com/ebisync/ebisync"
	"unsafe"

	"github.com/yohamta/donburi/features/events"

	"github.com/ebisync/ebisync/components"
	"github.com/ebisync/ebisync/internal/codec"
	"github.com/ebisync/ebisync/internal/wire"
)

// Messages. The server's messages arrive in batches, after the batch's
// state: during Update, on the game goroutine, each is decoded, its entity
// references resolved against the mirror as it is after that batch (so a
// message may name an entity the same batch spawned), and handed to the
// handler OnMessage installed for its type. The server sends a message no
// sooner than the spawn of each entity it names that is in the client's
// scope, so such a reference always resolves; one to an entity out of
// scope is Null, and is not resolved again later. A message with no
// handler is dropped. A client's message (Send) travels with the client's
// identity and is answered like a mutation.

// OnMessage makes f receive every message of type m that the server sends,
// in the order sent, during Update on the game goroutine. It replaces the
// type's previous handler; a nil f removes it. Call it on the game
// goroutine, or before the first Update. It panics if m is not registered
// in the client's registry.
func OnMessage[T any](c *Client, m *components.Message[T], f func(T)) {
	idx := c.messageIndex(m.Registry(), m.Index(), m.Name())
	if f == nil {
		c.msgHandlers[idx] = nil
		return
	}
	c.msgHandlers[idx] = func(p unsafe.Pointer) { f(*(*T)(p)) }
}

// PublishMessages delivers the server's messages of type m as donburi
// features/events events of type et in the mirror world: the game handles
// them with et.Subscribe and et.ProcessEvents, as any other event. It is
// OnMessage with a handler that publishes, and replaces any handler of m.
// Call it on the game goroutine, or before the first Update.
func PublishMessages[T any](c *Client, m *components.Message[T], et *events.EventType[T]) {
	OnMessage(c, m, func(v T) { et.Publish(c.world, v) })
}

// Send sends v, a message of type m, to the server, whose handler for m
// decides it. The returned channel (buffered) receives exactly one
// MutationResult: the handler's answer (ebisync.Ok, or the status of its
// refusal), delivered during a later Update, or ebisync.NoReply when the
// message cannot be sent (not connected, m not registered with FromClient,
// send queue full: then at once) or the connection drops first. A
// donburi.Entity field names a mirror entity and reaches the server as the
// entity it mirrors (Null for any other). Send never blocks. Game goroutine
// only. As with Mutate, a message larger than the server's read limit
// (plugin.Options.ReadLimit, 32 KiB by default) makes the server drop the
// connection with close code 1009.
func Send[T any](c *Client, m *components.Message[T], v T) <-chan MutationResult {
	ch := make(chan MutationResult, 1)
	fail := func(err error) <-chan MutationResult {
		ch <- MutationResult{Status: ebisync.NoReply, Err: err}
		return ch
	}
	if c.closed.Load() {
		return fail(ErrClosed)
	}
	idx, ok := c.localMessage(m.Registry(), m.Index(), m.Name())
	if !ok {
		return fail(fmt.Errorf("%w: message %s", ErrUnknownComponent, m.Name()))
	}
	if !c.reg.Messages()[idx].Options().FromClient {
		return fail(fmt.Errorf("netclient: Send: message %s is not registered FromClient", m.Name()))
	}
	s := c.gs
	if s == nil {
		return fail(ErrNotConnected)
	}
	mc := c.msgCodecs[idx]
	if mc.HasRefs() {
		mc.MapRefs(unsafe.Pointer(&v), c.refOf)
	}
	enc := mc.AppendFull(nil, unsafe.Pointer(&v))
	if len(enc) > wire.MaxValueLen {
		return fail(fmt.Errorf("netclient: Send: message of %d bytes exceeds %d", len(enc), wire.MaxValueLen))
	}

	c.pmu.Lock()
	if c.closed.Load() {
		c.pmu.Unlock()
		return fail(ErrClosed)
	}
	c.nextReq++
	req := c.nextReq
	if !s.send(wire.AppendMessage(nil, &wire.Message{Request: req, ID: s.msgToServer[idx], Value: enc})) {
		c.pmu.Unlock()
		return fail(ErrSendQueueFull)
	}
	c.mutations[req] = &pendingMutation{ch: ch, sess: s}
	c.pmu.Unlock()
	return ch
}

// messageIndex is localMessage, and panics if the client's registry lacks
// the message type.
func (c *Client) messageIndex(reg *components.Registry, i int, name string) int {
	idx, ok := c.localMessage(reg, i, name)
	if !ok {
		panic(fmt.Sprintf("netclient: message type %q is not registered in the client's registry", name))
	}
	return idx
}

// localMessage returns the client's index of the message type registered
// at index i of reg under name: i itself for the client's own registry,
// else found by name.
func (c *Client) localMessage(reg *components.Registry, i int, name string) (int, bool) {
	if reg == c.reg {
		return i, true
	}
	return c.findMessage(name)
}

func (c *Client) findMessage(name string) (int, bool) {
	for i, mc := range c.msgCodecs {
		if mc.Name() == name {
			return i, true
		}
	}
	return 0, false
}

// initMessages prepares the client's per-message-type state at Dial.
func (c *Client) initMessages() {
	c.initHierarchy()
	for _, mt := range c.reg.Messages() {
		c.msgCodecs = append(c.msgCodecs, codec.Of(mt))
	}
	c.msgHandlers = make([]func(unsafe.Pointer), len(c.msgCodecs))
	c.msgScratch = make([]unsafe.Pointer, len(c.msgCodecs))
	for _, sc := range c.reg.MessageSchema() {
		d := wire.ComponentDesc{Name: sc.Name, Hash: sc.Hash, Fields: make([]wire.FieldDesc, len(sc.Fields))}
		for i, f := range sc.Fields {
			d.Fields[i] = wire.FieldDesc{Name: f.Name, Type: f.Type, Quant: f.Quant}
		}
		c.hello.Messages = append(c.hello.Messages, d)
	}
}

// mapMessages matches the Welcome's message types with the client's.
func (s *session) mapMessages(names []string) error {
	c := s.c
	s.msgFromServer = make([]int, len(names))
	s.msgToServer = make([]uint64, len(c.msgCodecs))
	seen := make([]bool, len(c.msgCodecs))
	for i, name := range names {
		idx, ok := c.findMessage(name)
		if !ok {
			return &components.MismatchError{Component: name, Message: true, Reason: "registered on the server but not locally"}
		}
		if seen[idx] {
			return fmt.Errorf("%w: message %q listed twice in Welcome", wire.ErrMalformed, name)
		}
		seen[idx] = true
		s.msgFromServer[i] = idx
		s.msgToServer[idx] = uint64(i)
	}
	for i, ok := range seen {
		if !ok {
			return &components.MismatchError{Component: c.msgCodecs[i].Name(), Message: true, Reason: "registered locally but not on the server"}
		}
	}
	return nil
}

// deliver decodes one of the server's messages and hands it to its
// handler.
func (c *Client) deliver(s *session, m *wire.Msg) error {
	if m.ID >= uint64(len(s.msgFromServer)) {
		return fmt.Errorf("%w: message of unknown type id %d", wire.ErrMalformed, m.ID)
	}
	idx := s.msgFromServer[m.ID]
	mc := c.msgCodecs[idx]
	n, err := mc.FullLen(m.Value)
	if err != nil {
		return fmt.Errorf("%w: message %s: %w", wire.ErrMalformed, mc.Name(), err)
	}
	if n != len(m.Value) {
		return fmt.Errorf("%w: message %s: %d bytes after its value", wire.ErrMalformed, mc.Name(), len(m.Value)-n)
	}
	c.stats.gameMsgsIn.Add(1)
	h := c.msgHandlers[idx]
	if h == nil {
		return nil
	}
	p := c.msgScratch[idx]
	if p == nil {
		p = mc.New()
		c.msgScratch[idx] = p
	}
	if _, err := mc.DecodeFull(m.Value, p); err != nil {
		return fmt.Errorf("%w: message %s: %w", wire.ErrMalformed, mc.Name(), err)
	}
	if mc.HasRefs() {
		mc.MapRefs(p, c.resolveRef)
	}
	h(p)
	return nil
}
