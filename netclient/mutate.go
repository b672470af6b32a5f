package netclient

import (
	"fmt"
	"time"
	"unsafe"

	"github.com/yohamta/donburi"

	"github.com/ebisync/ebisync"
	"github.com/ebisync/ebisync/components"
	"github.com/ebisync/ebisync/internal/codec"
	"github.com/ebisync/ebisync/internal/wire"
)

// MutationResult is the answer to a mutation. Err is nil exactly when
// Status is ebisync.Ok: a *MutationError for the server's refusals, the
// cause (ErrNotConnected, ErrDisconnected, …) for ebisync.NoReply.
type MutationResult struct {
	Status  ebisync.Status
	Message string // the server's explanation of a refusal
	Err     error
}

// MutationError is a mutation refused by the server.
type MutationError struct {
	Status  ebisync.Status
	Message string
}

func (e *MutationError) Error() string {
	if e.Message == "" {
		return "mutation refused: " + e.Status.String()
	}
	return "mutation refused: " + e.Status.String() + ": " + e.Message
}

// MutateOptions configures one mutation. A nil *MutateOptions means the
// zero value.
type MutateOptions struct {
	// Optimistic writes the value into the mirror at once. Until the
	// server answers, updates of that component from the server are held
	// back from the world (they still update the confirmed value). When
	// the last optimistic mutation of that entity's component is answered,
	// or any is refused, the world gets the latest server value again: a
	// refusal reverts it, an Ok brings in the server's value (normally
	// the one just accepted; if the server deferred sending it, the
	// previous value shows until it arrives).
	Optimistic bool
}

type pendingMutation struct {
	ch         chan MutationResult
	sess       *session
	ne         *mirrored
	comp       *codec.Codec
	optimistic bool
}

// Mutate asks the server to set component h of mirror entity e to value
// (encoded before Mutate returns). The returned channel (buffered) receives exactly one
// MutationResult: the server's answer, delivered during a later Update, or
// ebisync.NoReply when the request cannot be sent (not connected, entity not
// mirrored, component not registered, send queue full: then at once) or
// the connection drops first. Mutate never blocks. Game goroutine only.
//
// The server must allow it: the component must be registered with
// ClientWritable and pass the server's Authorize and Validate. A message
// larger than the server's read limit (plugin.Options.ReadLimit, 32 KiB by
// default) makes the server drop the connection with close code 1009.
func Mutate[T any](c *Client, e donburi.Entity, h *components.Synced[T], value T, opts *MutateOptions) <-chan MutationResult {
	idx, ok := c.localIndex(h.Registry(), h.Index(), h.ComponentType())
	if !ok {
		idx = -1
	}
	return c.mutate(e, idx, h.ComponentType(), unsafe.Pointer(&value), opts)
}

func (c *Client) mutate(e donburi.Entity, idx int, ct donburi.IComponentType, value unsafe.Pointer, opts *MutateOptions) <-chan MutationResult {
	ch := make(chan MutationResult, 1)
	fail := func(err error) <-chan MutationResult {
		ch <- MutationResult{Status: ebisync.NoReply, Err: err}
		return ch
	}
	if c.closed.Load() {
		return fail(ErrClosed)
	}
	if idx < 0 {
		return fail(fmt.Errorf("%w: %v", ErrUnknownComponent, ct))
	}
	comp := c.codecs[idx]
	ne := c.byEnt[e]
	if ne == nil || !c.world.Valid(e) {
		return fail(ErrNotMirrored)
	}
	s := c.gs
	if s == nil {
		return fail(ErrNotConnected)
	}
	var enc []byte
	if comp.HasRefs() {
		// Mirror entities travel as the Refs of the server entities they
		// mirror; value itself keeps them for an optimistic write.
		wv := c.scratchOf(comp)
		comp.Copy(wv, value)
		comp.MapRefs(wv, c.refOf)
		enc = comp.AppendFull(nil, wv)
	} else {
		enc = comp.AppendFull(nil, value)
	}
	if len(enc) > wire.MaxValueLen {
		return fail(fmt.Errorf("netclient: Mutate: value of %d bytes exceeds %d", len(enc), wire.MaxValueLen))
	}
	optimistic := opts != nil && opts.Optimistic

	c.pmu.Lock()
	if c.closed.Load() { // Close resolves what is pending before it returns
		c.pmu.Unlock()
		return fail(ErrClosed)
	}
	c.nextReq++
	req := c.nextReq
	msg := wire.AppendMutate(nil, &wire.Mutate{Request: req, ID: uint64(ne.id), Gen: uint64(ne.gen), Comp: s.toServer[idx], Value: enc})
	if !s.send(msg) {
		c.pmu.Unlock()
		return fail(ErrSendQueueFull)
	}
	c.mutations[req] = &pendingMutation{ch: ch, sess: s, ne: ne, comp: comp, optimistic: optimistic}
	c.pmu.Unlock()

	if optimistic {
		if ne.hold == nil {
			ne.hold = make([]int32, len(ne.comps))
		}
		ne.hold[idx]++
		entry := c.world.Entry(e)
		if !entry.HasComponent(ct) {
			entry.AddComponent(ct)
		}
		comp.Copy(entry.Component(ct), value)
	}
	return ch
}

// finishMutation resolves a mutation with the server's answer.
func (c *Client) finishMutation(r *wire.MutationResult) {
	c.pmu.Lock()
	p := c.mutations[r.Request]
	delete(c.mutations, r.Request)
	c.pmu.Unlock()
	if p == nil {
		return // not ours, or already resolved
	}
	res := MutationResult{Status: ebisync.Status(r.Status), Message: r.Message}
	if r.Status != wire.StatusOk {
		res.Err = &MutationError{Status: res.Status, Message: r.Message}
	}
	c.releaseHold(p, r.Status == wire.StatusOk)
	p.ch <- res
}

// releaseHold ends p's hold on the world value: when it was the last one,
// or it failed, the world gets the confirmed value back.
func (c *Client) releaseHold(p *pendingMutation, ok bool) {
	if !p.optimistic || p.ne.gone {
		return
	}
	idx := p.comp.Index()
	if p.ne.hold[idx] > 0 {
		p.ne.hold[idx]--
	}
	if !ok || p.ne.hold[idx] == 0 {
		c.syncWorld(p.ne, p.comp, false)
	}
}

// ControlStatus is the outcome of a control request.
type ControlStatus uint8

// Control statuses. All but ControlNoReply are the server's answers.
const (
	// ControlNoReply means the client resolved the request itself; Err
	// says why (see ebisync.NoReply).
	ControlNoReply           ControlStatus = 0
	ControlTaken             ControlStatus = 1
	ControlReleased          ControlStatus = 2
	ControlAlreadyControlled ControlStatus = 3 // another client holds it
	ControlNotControlled     ControlStatus = 4 // release of an entity nobody holds
	ControlNotFound          ControlStatus = 5
	ControlForbidden         ControlStatus = 6 // the server's Authorize refused it (a take, or the end of another's hold)
	ControlRateLimited       ControlStatus = 7 // over the server's mutation rate limit; retry later
)

// String returns the status's name, e.g. "Taken".
func (s ControlStatus) String() string {
	switch s {
	case ControlNoReply:
		return "NoReply"
	case ControlTaken:
		return "Taken"
	case ControlReleased:
		return "Released"
	case ControlAlreadyControlled:
		return "AlreadyControlled"
	case ControlNotControlled:
		return "NotControlled"
	case ControlNotFound:
		return "NotFound"
	case ControlForbidden:
		return "Forbidden"
	case ControlRateLimited:
		return "RateLimited"
	}
	return "control(" + itoa(uint64(s)) + ")"
}

// ControlResult is the answer to a control request. Err is nil exactly
// when Status is ControlTaken or ControlReleased: a *ControlError for the
// server's refusals, the cause for ControlNoReply.
type ControlResult struct {
	Status ControlStatus
	Holder uint64 // client id holding control after the request, 0: none
	Err    error
}

// ControlError is a control request refused by the server.
type ControlError struct {
	Status ControlStatus
	Holder uint64
}

func (e *ControlError) Error() string {
	if e.Holder != 0 {
		return fmt.Sprintf("control refused: %s (held by client %d)", e.Status, e.Holder)
	}
	return "control refused: " + e.Status.String()
}

type pendingControl struct {
	ch   chan ControlResult
	sess *session
}

// TakeControl asks the server for exclusive control of mirror entity e,
// lapsing after timeout (0: no timeout; rounded up to milliseconds), and
// of its children too when children is set. The returned channel receives
// exactly one ControlResult, as for Mutate. Game goroutine only.
func (c *Client) TakeControl(e donburi.Entity, timeout time.Duration, children bool) <-chan ControlResult {
	var ms uint64
	if timeout > 0 {
		ms = uint64((timeout + time.Millisecond - 1) / time.Millisecond)
	}
	return c.control(e, wire.ControlTake, ms, children)
}

// ReleaseControl gives up control of mirror entity e. The returned channel
// receives exactly one ControlResult. Game goroutine only.
func (c *Client) ReleaseControl(e donburi.Entity) <-chan ControlResult {
	return c.control(e, wire.ControlRelease, 0, false)
}

func (c *Client) control(e donburi.Entity, op wire.ControlOp, ms uint64, children bool) <-chan ControlResult {
	ch := make(chan ControlResult, 1)
	fail := func(err error) <-chan ControlResult {
		ch <- ControlResult{Status: ControlNoReply, Err: err}
		return ch
	}
	if c.closed.Load() {
		return fail(ErrClosed)
	}
	ne := c.byEnt[e]
	if ne == nil || !c.world.Valid(e) {
		return fail(ErrNotMirrored)
	}
	s := c.gs
	if s == nil {
		return fail(ErrNotConnected)
	}
	c.pmu.Lock()
	defer c.pmu.Unlock()
	if c.closed.Load() {
		return fail(ErrClosed)
	}
	c.nextReq++
	req := c.nextReq
	msg := wire.AppendControl(nil, &wire.Control{Request: req, Op: op, ID: uint64(ne.id), Gen: uint64(ne.gen), TimeoutMs: ms, Children: children})
	if !s.send(msg) {
		return fail(ErrSendQueueFull)
	}
	c.controls[req] = &pendingControl{ch: ch, sess: s}
	return ch
}

func (c *Client) finishControl(r *wire.ControlReply) {
	c.pmu.Lock()
	p := c.controls[r.Request]
	delete(c.controls, r.Request)
	c.pmu.Unlock()
	if p == nil {
		return
	}
	res := ControlResult{Status: ControlStatus(r.Result), Holder: r.Holder}
	if r.Result != wire.ControlTaken && r.Result != wire.ControlReleased {
		res.Err = &ControlError{Status: res.Status, Holder: r.Holder}
	}
	p.ch <- res
}

// abandonPending resolves with err every pending request of session s
// (all of them when s is nil) as unanswered. On the game goroutine (s not
// nil) it also reverts optimistic values; Close (s nil) leaves the world
// alone.
func (c *Client) abandonPending(s *session, err error) {
	c.pmu.Lock()
	var muts []*pendingMutation
	for req, p := range c.mutations {
		if s == nil || p.sess == s {
			muts = append(muts, p)
			delete(c.mutations, req)
		}
	}
	var ctls []*pendingControl
	for req, p := range c.controls {
		if s == nil || p.sess == s {
			ctls = append(ctls, p)
			delete(c.controls, req)
		}
	}
	c.pmu.Unlock()
	for _, p := range muts {
		if s != nil {
			c.releaseHold(p, false)
		}
		p.ch <- MutationResult{Status: ebisync.NoReply, Err: err}
	}
	for _, p := range ctls {
		p.ch <- ControlResult{Status: ControlNoReply, Err: err}
	}
}
