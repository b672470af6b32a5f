package plugin

import (
	"fmt"
	"reflect"
	"time"
	"unsafe"

	"github.com/yohamta/donburi"

	"github.com/ebisync/ebisync/components"
	"github.com/ebisync/ebisync/internal/wire"
)

// Inputs. A client steers the entities it owns or controls with a stream
// of inputs: values of a message type registered FromClient, each for one
// entity and numbered 1, 2, 3, … across the client's entities and types
// (and across a resumed session). The server applies each input once, in
// order, with the step the game installed with HandleInput, and tells the
// client in each batch the last sequence number it processed (the batch's
// InputAck, as of that batch's state), so that a predicting client
// (netclient.Predict) can replay only what the server has not applied yet.

// inputStep runs a HandleInput step on a decoded value.
type inputStep func(w donburi.World, e donburi.Entity, v unsafe.Pointer)

// inputState is the tick-side state of one client's input stream. It lives
// on the client, so it survives a resumed session.
type inputState struct {
	seq       uint64       // the highest sequence received: processed or waiting
	done      uint64       // the highest sequence processed: applied, refused or dropped
	acked     uint64       // the InputAck last sent
	ackedOn   *conn        // the connection it was sent on
	waiting   []wire.Input // sequences done+1 … seq, in order, for the next ticks
	waitBytes int
	n         int // inputs processed this tick
	// resync: the client was told it resumed a session that had ended, so
	// its stream goes on from where it was: the first input's sequence
	// is taken as the start.
	resync bool
}

// inputOverhead is what a waiting input counts besides its value, against
// Options.InboundQueueBytes.
const inputOverhead = int(unsafe.Sizeof(wire.Input{}))

// HandleInput installs step as the server's half of the input stream of
// message type m: for each input of that type a client sends, step runs on
// the game goroutine during Tick with the World, the entity the input is
// for and the input's value. A predicting client runs the same step on its
// mirror (netclient.Predict), so step must be deterministic: a function of
// the entity's replicated components and the input alone.
//
// The server applies a client's inputs in sequence order, each once:
//
//   - An input is applied only when the client owns the entity
//     (components.Owner) or holds control of it; otherwise, or when the
//     entity is gone, the value does not decode, holds a NaN or an
//     infinity, or its type has no step, it is refused: counted in
//     Stats.InputsRefused, no step runs. A step that panics is logged and
//     counted as refused; the client stays.
//   - An input whose sequence number is not above the last one received is
//     a duplicate (a resend after a resumed session), ignored and counted
//     in Stats.InputsDuplicate. One that skips a number is a protocol
//     error: the connection closes with 4000 (WebSocket is ordered, so a
//     gap is a broken client).
//   - At most Options.MaxInputsPerTick inputs of one client are processed
//     per tick; the rest wait for the next ticks (Stats.InputsLate), at
//     most Options.MaxInputsQueued of them and within
//     Options.InboundQueueBytes. Past that the oldest waiting input is
//     dropped (Stats.InputsDropped).
//
// Every refused or dropped input counts as processed: the next batch acks
// its sequence, and the client's prediction drops its effect. Inputs do not
// spend the request rate of mutations and messages: the cap per tick is
// their rate limit, and the inbound byte budget (Options.InboundQueueBytes,
// past which the client is closed with 4002) bounds what one read may
// queue.
//
// Entity fields of the value arrive as the server's entities, or
// donburi.Null. Call HandleInput before the server serves clients, or on
// the game goroutine; a nil step removes the type's step. It panics if m is
// not registered in the server's registry or not registered FromClient.
func HandleInput[T any](s *Server, m *components.Message[T], step func(w donburi.World, e donburi.Entity, in T)) {
	c := s.msgCodec(m.Registry(), m.Index(), m.Name())
	if !s.msgTypes[c.Index()].Options().FromClient {
		panic(fmt.Sprintf("plugin: HandleInput: message type %q is not registered FromClient", m.Name()))
	}
	if s.inputSteps == nil {
		s.inputSteps = make([]inputStep, len(s.msgTypes))
		s.inputVals = make([]unsafe.Pointer, len(s.msgTypes))
	}
	if step == nil {
		s.inputSteps[c.Index()] = nil
		return
	}
	s.inputSteps[c.Index()] = func(w donburi.World, e donburi.Entity, p unsafe.Pointer) { step(w, e, *(*T)(p)) }
	if _, plain := c.PlainSize(); plain {
		// The step gets a copy, and a value without pointers shares
		// nothing with it: one value per type is decoded into again.
		s.inputVals[c.Index()] = c.New()
	}
}

// startInputs begins c's inputs of this tick: the inputs left waiting by
// earlier ticks are processed first, within the cap.
func (s *Server) startInputs(c *client) {
	in := &c.inputs
	in.n = 0
	k := 0
	for k < len(in.waiting) && in.n < s.opts.MaxInputsPerTick {
		s.processInput(c, &in.waiting[k])
		k++
	}
	if k > 0 {
		for _, m := range in.waiting[:k] {
			in.waitBytes -= inputOverhead + len(m.Value)
		}
		clear(in.waiting[:k])
		in.waiting = in.waiting[:copy(in.waiting, in.waiting[k:])]
	}
}

// input takes one input of c off its inbound queue: processes it, queues
// it for a later tick, or ignores it as a duplicate.
func (s *Server) input(c *client, m *wire.Input) {
	in := &c.inputs
	if in.resync && m.Seq > 0 {
		in.resync = false
		in.seq, in.done = m.Seq-1, m.Seq-1
	}
	switch {
	case m.Seq <= in.seq:
		s.stats.inputsDuplicate.Add(1)
		return
	case m.Seq != in.seq+1:
		_ = c.cn.violation(refProtocol, StatusProtocolError, fmt.Sprintf("input %d after input %d", m.Seq, in.seq))
		return
	}
	in.seq = m.Seq
	if len(in.waiting) == 0 && in.n < s.opts.MaxInputsPerTick {
		s.processInput(c, m)
		return
	}
	s.stats.inputsLate.Add(1)
	cost := inputOverhead + len(m.Value)
	for len(in.waiting) > 0 && (len(in.waiting) >= s.opts.MaxInputsQueued || in.waitBytes+cost > s.opts.InboundQueueBytes) {
		old := &in.waiting[0]
		in.done = old.Seq
		in.waitBytes -= inputOverhead + len(old.Value)
		s.stats.inputsDropped.Add(1)
		in.waiting[0] = wire.Input{}
		in.waiting = in.waiting[:copy(in.waiting, in.waiting[1:])]
	}
	in.waiting = append(in.waiting, *m)
	in.waitBytes += cost
}

// processInput applies or refuses one input and counts it processed.
func (s *Server) processInput(c *client, m *wire.Input) {
	c.inputs.done = m.Seq
	c.inputs.n++
	if why := s.applyInput(c, m); why != "" {
		s.stats.inputsRefused.Add(1)
		s.log.Debug("ebisync: refused an input", "client", c.cn.id, "seq", m.Seq, "why", why)
		return
	}
	s.stats.inputsApplied.Add(1)
}

// applyInput runs the step of one input, or returns why it is refused.
func (s *Server) applyInput(c *client, m *wire.Input) string {
	if s.gw != nil {
		return errGatewayRequest.Error()
	}
	if m.ID >= uint64(len(s.inputSteps)) || s.inputSteps[m.ID] == nil {
		return fmt.Sprintf("no HandleInput step for message type id %d", m.ID)
	}
	step := s.inputSteps[m.ID]
	r := s.record(m.Entity, m.Gen)
	if r == nil {
		return fmt.Sprintf("no entity %d (generation %d)", m.Entity, m.Gen)
	}
	entry := s.world.Entry(r.entity)
	owns := entry.HasComponent(components.Owner) && components.Owner.Get(entry).Client == c.cn.id
	h, held := s.controls[r.id]
	controls := held && h.holder == c
	if !owns && !controls {
		return "not the owner or controller of the entity"
	}
	mc := s.msgCodecs[m.ID]
	val := s.inputVals[m.ID]
	if val != nil {
		reflect.NewAt(mc.Type(), val).Elem().SetZero()
	} else {
		val = mc.New()
	}
	n, err := mc.DecodeFull(m.Value, val)
	if err == nil && n != len(m.Value) {
		err = fmt.Errorf("%d trailing bytes after the value", len(m.Value)-n)
	}
	if err != nil {
		return "malformed value: " + err.Error()
	}
	if field := nonFinite(reflect.NewAt(mc.Type(), val).Elem(), mc.Type().Name()); field != "" {
		return "not a finite number: " + field
	}
	if mc.HasRefs() {
		mc.MapRefs(val, s.entityOf)
	}
	if err := s.callHook(func() error { step(s.world, r.entity, val); return nil }); err != nil {
		return err.Error()
	}
	if controls {
		h.active = time.Now() // a hold in use does not idle out
	}
	return ""
}

// inputAck returns the InputAck c's next batch carries: the last sequence
// processed, when it is news on c's connection; 0 otherwise.
func (c *client) inputAck() uint64 {
	in := &c.inputs
	if in.done == 0 || in.done == in.acked && in.ackedOn == c.cn {
		return 0
	}
	return in.done
}

// ackSent records that a batch carrying ack went to c's connection.
func (c *client) ackSent(ack uint64) {
	if ack != 0 {
		c.inputs.acked, c.inputs.ackedOn = ack, c.cn
	}
}
