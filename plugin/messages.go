package plugin

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"unsafe"

	"github.com/yohamta/donburi"

	"github.com/ebisync/ebisync/components"
	"github.com/ebisync/ebisync/internal/codec"
	"github.com/ebisync/ebisync/internal/wire"
)

// Game messages. The server's messages to a client wait in that client's
// queue (bounded by Options.MessageQueueBytes) and go out in its next
// batch, after the batch's state: a message sent before Tick may name an
// entity created before it, which that batch spawns. A message never goes
// before the spawn of an entity it names that is in the client's scope:
// when the client's budget holds spawns back, takeMsgs puts the ones the
// message needs in its batch. Each message is encoded once however many
// clients it goes to, when the batch is built, so its entity references
// name what the tick assigned. A message for a client that disconnects is
// dropped with the client.
//
// A client's message of a type registered FromClient is decoded and checked
// by its connection's reader (ReadLimit bounds it; it shares the
// connection's request rate with mutations), then handed to the handler
// Handle installed, on the game goroutine during Tick, and answered with a
// status as a mutation is.

// ErrInvalid makes a message handler's refusal answer ValidationError
// instead of Forbidden: return it, or an error that wraps it.
var ErrInvalid = errors.New("invalid message")

// queuedMsg is a message in a client's queue, with the bytes it counts
// against Options.MessageQueueBytes.
type queuedMsg struct {
	m *outMsg
	n int
}

// outMsg is one message the game sent, shared by the clients it goes to.
type outMsg struct {
	c    *codec.Codec
	val  unsafe.Pointer // a copy of the value; entity fields are the server's entities
	enc  []byte         // the encoding, references resolved when the batch is built
	tick uint32         // the tick enc was made for (0: not yet)
	// refs lists the entities val names (sorted, no Null, no repeats): a
	// batch that carries the message carries the spawn of those of them
	// still waiting to be spawned for its client (takeMsgs). They are
	// donburi.Entity values on a Server of a World, Refs on a gateway.
	refs []uint64
	// fixed: enc is final (a message a gateway relays, encoded by its
	// simulation); val is nil.
	fixed bool
}

// encoded returns m's encoding as of the current tick.
func (s *Server) encoded(m *outMsg) []byte {
	if m.fixed || m.tick == s.tick && m.enc != nil {
		return m.enc
	}
	if !m.c.HasRefs() && m.enc != nil {
		return m.enc
	}
	v := m.val
	if m.c.HasRefs() {
		v = m.c.New()
		m.c.Copy(v, m.val)
		m.c.MapRefs(v, s.refOfEntity)
	}
	m.enc = m.c.AppendFull(m.enc[:0], v)
	m.tick = s.tick
	return m.enc
}

// newOutMsg copies v, a message of type m, for sending.
func newOutMsg[T any](s *Server, m *components.Message[T], v T) *outMsg {
	c := s.msgCodec(m.Registry(), m.Index(), m.Name())
	p := new(T)
	*p = v
	om := &outMsg{c: c, val: unsafe.Pointer(p)}
	if c.HasRefs() {
		c.MapRefs(om.val, func(x uint64) uint64 {
			if e := donburi.Entity(x); e != donburi.Null {
				om.refs = append(om.refs, uint64(e))
			}
			return x
		})
		slices.Sort(om.refs)
		om.refs = slices.Compact(om.refs)
	}
	s.encoded(om) // sizes it now; a message with references is encoded again in the batch
	return om
}

// msgCodec returns the server's codec of the message type registered at
// idx of reg under name: by index for the server's own registry, else by
// name. It panics if the server's registry lacks it.
func (s *Server) msgCodec(reg *components.Registry, idx int, name string) *codec.Codec {
	if reg == s.reg {
		return s.msgCodecs[idx]
	}
	for _, c := range s.msgCodecs {
		if c.Name() == name {
			return c
		}
	}
	panic(fmt.Sprintf("plugin: message type %q is not registered in the server's registry", name))
}

// queueMsg queues om for c, dropping c with 4003 when its queue overflows.
// The dropped client stays in the tick's list until its connection has
// closed (which waits for its close handshake); its queue is then left
// marked over the limit, so it is refused and counted once and queued
// nothing more.
func (s *Server) queueMsg(c *client, om *outMsg) {
	if c.cn.ctx.Err() != nil || c.parked || c.msgBytes > s.opts.MessageQueueBytes {
		return
	}
	n := len(om.enc) + 8
	if c.msgBytes+n > s.opts.MessageQueueBytes {
		s.refused.add(refMessages, "dropped a client whose message queue overflowed", "client", c.cn.id, "remote", c.cn.addr, "queued", c.msgBytes)
		c.cn.shutdown(StatusTooSlow, fmt.Sprintf("message queue overflow: %d bytes waiting", c.msgBytes))
		if c.cn.remote != nil {
			s.remote.touch(c) // the relay tells its gateway to close it (remote.go)
		}
		clear(c.msgs)
		c.msgs, c.msgBytes = c.msgs[:0], s.opts.MessageQueueBytes+1
		return
	}
	c.msgs = append(c.msgs, queuedMsg{om, n})
	c.msgBytes += n
	if c.cn.remote != nil {
		s.remote.touch(c) // relayed at the end of the tick (remote.go)
	}
	s.stats.gameMsgsOut.Add(1)
}

// Send queues v, a message of type m, for the client with id client, to go
// in its next batch. It reports false, dropping the message, when no such
// client is connected. Game goroutine only. It panics if m is not
// registered in the server's registry.
func Send[T any](s *Server, client uint64, m *components.Message[T], v T) bool {
	c := s.byID[client]
	if c == nil {
		return false
	}
	s.queueMsg(c, newOutMsg(s, m, v))
	return true
}

// Broadcast queues v, a message of type m, for every connected client and
// returns how many that is. It is encoded once. On a simulation that
// serves gateways, it goes once to each gateway, which delivers it to its
// clients; those are counted too. Game goroutine only.
func Broadcast[T any](s *Server, m *components.Message[T], v T) int {
	om := newOutMsg(s, m, v)
	for _, c := range s.clients {
		s.queueMsg(c, om)
	}
	n := len(s.clients)
	for _, g := range s.remote.gws {
		g.bcast = append(g.bcast, om)
		n += len(g.clients)
	}
	s.stats.gameMsgsOut.Add(uint64(len(s.remote.gws)))
	return n
}

// SendToViewers queues v, a message of type m, for the clients that have
// entity e in their scope as of the last tick, and returns how many that
// is. On a simulation that serves gateways, it also goes once to each
// gateway, which delivers it to those of its clients that have e in their
// scope; they are not counted. Game goroutine only.
func SendToViewers[T any](s *Server, e donburi.Entity, m *components.Message[T], v T) int {
	r := s.recordOf(e)
	if r == nil || len(r.views) == 0 && len(s.remote.gws) == 0 {
		return 0
	}
	om := newOutMsg(s, m, v)
	for i := range r.views {
		s.queueMsg(r.views[i].c, om)
	}
	for _, g := range s.remote.gws {
		g.viewers = append(g.viewers, viewerMsg{ref: uint64(codec.MakeRef(r.id, r.gen)), m: om})
	}
	return len(r.views)
}

// Handle installs f as the handler of the clients' messages of type m,
// which must be registered with MessageOptions.FromClient. f runs on the
// game goroutine during Tick, with the sending client's identity; its
// error refuses the message (Forbidden, or ValidationError for one that
// wraps ErrInvalid) and its text goes back to the client. A panic in f
// answers InternalError. Entity fields arrive as the server's entities, or
// donburi.Null when the client named one that is not alive. A message of a
// type with no handler is answered NotFound. Call Handle before the server
// serves clients, or on the game goroutine. It panics if m is not
// registered in the server's registry.
func Handle[T any](s *Server, m *components.Message[T], f func(ClientInfo, T) error) {
	c := s.msgCodec(m.Registry(), m.Index(), m.Name())
	if f == nil {
		s.msgHandlers[c.Index()] = nil
		return
	}
	s.msgHandlers[c.Index()] = func(ci ClientInfo, p unsafe.Pointer) error { return f(ci, *(*T)(p)) }
}

// handleMessage decodes, checks and hands one client message to its
// handler, and answers it.
func (s *Server) handleMessage(c *client, m *wire.Message) {
	s.stats.gameMsgsIn.Add(1)
	if s.gw != nil {
		s.result(c, m.Request, wire.StatusForbidden, errGatewayRequest.Error())
		return
	}
	if m.ID >= uint64(len(s.msgCodecs)) {
		s.result(c, m.Request, wire.StatusNotFound, fmt.Sprintf("unknown message type id %d", m.ID))
		return
	}
	mc := s.msgCodecs[m.ID]
	if !s.msgTypes[m.ID].Options().FromClient {
		s.result(c, m.Request, wire.StatusForbidden, fmt.Sprintf("message %s is not sent by clients", mc.Name()))
		return
	}
	h := s.msgHandlers[m.ID]
	if h == nil {
		s.result(c, m.Request, wire.StatusNotFound, fmt.Sprintf("no handler for message %s", mc.Name()))
		return
	}
	val := mc.New()
	n, err := mc.DecodeFull(m.Value, val)
	if err == nil && n != len(m.Value) {
		err = fmt.Errorf("%d trailing bytes after the value", len(m.Value)-n)
	}
	if err != nil {
		s.result(c, m.Request, wire.StatusValidationError, "malformed value: "+err.Error())
		return
	}
	if field := nonFinite(reflect.NewAt(mc.Type(), val).Elem(), mc.Type().Name()); field != "" {
		s.result(c, m.Request, wire.StatusValidationError, "not a finite number: "+field)
		return
	}
	if mc.HasRefs() {
		mc.MapRefs(val, s.entityOf)
	}
	ci := c.info()
	if err := s.callHook(func() error { return h(ci, val) }); err != nil {
		def := wire.StatusForbidden
		if errors.Is(err, ErrInvalid) {
			def = wire.StatusValidationError
		}
		s.result(c, m.Request, statusOf(err, def), err.Error())
		return
	}
	s.result(c, m.Request, wire.StatusOk, "")
}

// takeMsgs moves c's queued messages into its batch, in order, within
// budget bytes (at least one message), and returns the bytes used; the
// rest wait. A message goes after the batch's state, and it must never
// reach the client before the spawn of an entity it names that is in the
// client's scope: the spawns the message needs that the client has not
// been sent go into this batch with it, ahead of the state budget's own
// choice, and count with it against budget. room is what the batch may
// still carry at all: a message whose spawns do not fit there waits, with
// the messages after it, and what fits of its spawns goes now, so it goes
// in a later batch. An entity out of the client's scope takes no spawn; the
// client reads its reference as Null.
func (s *Server) takeMsgs(out *batches, c *client, b *wire.Batch, budget, room int) int {
	used, n := 0, 0
	// A view waiting for its spawn is dirty, so a client with nothing
	// dirty has no spawn to wait for.
	check := len(c.dirty) > 0
	for _, q := range c.msgs {
		enc := s.encoded(q.m)
		size := len(enc) + 8
		spawns := 0
		if check && len(q.m.refs) > 0 {
			spawns = s.msgSpawns(nil, c, q.m, 0)
		}
		if n > 0 && used+size+spawns > budget {
			break
		}
		if spawns > 0 {
			if used+size+spawns > room {
				used += s.msgSpawns(out, c, q.m, room-used)
				break
			}
			used += s.msgSpawns(out, c, q.m, room-used)
		}
		b.Messages = append(b.Messages, wire.Msg{ID: uint64(q.m.c.Index()), Value: enc})
		used += size
		c.msgBytes -= q.n
		n++
	}
	clear(c.msgs[:n])
	c.msgs = c.msgs[:copy(c.msgs, c.msgs[n:])]
	return used
}

// msgSpawns sizes, with out nil, the spawns of the entities m names whose
// view for c still waits for its spawn; with out, it emits those spawns
// into c's batch while they fit in room bytes. It returns their bytes.
func (s *Server) msgSpawns(out *batches, c *client, m *outMsg, room int) int {
	used := 0
	for _, x := range m.refs {
		r := s.msgRecord(x)
		if r == nil || !c.has(r.id) {
			continue // not replicated, or out of c's scope: no spawn to wait for
		}
		i := r.viewIndex(c)
		if i < 0 || !r.views[i].pending {
			continue
		}
		v := &r.views[i]
		sz := s.entitySize(c, r, v)
		if out == nil {
			used += sz
			continue
		}
		if used+sz > room {
			continue
		}
		used += s.emitEntity(out, c, r, v)
	}
	return used
}

// msgRecord returns the record of an entity an outMsg names, or nil.
func (s *Server) msgRecord(x uint64) *entityRec {
	if s.gw == nil {
		return s.recordOf(donburi.Entity(x))
	}
	ref := codec.Ref(x)
	if id := ref.ID(); int(id) < len(s.recs) {
		if r := s.recs[id]; r != nil && r.gen == ref.Gen() {
			return r
		}
	}
	return nil
}
