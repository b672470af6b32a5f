package plugin

import (
	"slices"

	"errors"
	"fmt"
	"math"
	"reflect"
	"time"

	"github.com/yohamta/donburi"
	"github.com/yohamta/donburi/features/transform"

	"github.com/ebisync/ebisync/components"
	"github.com/ebisync/ebisync/internal/wire"
)

// maxMutationValue bounds one mutated value; larger ones are answered with
// StatusValidationError.
const maxMutationValue = 16 << 10

// Request is a client's mutation or control request, as the Authorize and
// Validate hooks see it. It is valid only during the call.
type Request struct {
	Client ClientInfo
	// Entity is the target entity. Read it; do not keep it.
	Entity *donburi.Entry
	// NetID is the target's network id.
	NetID uint32
	// Component is the mutated component; nil for a control request.
	Component *components.Component
	// Value points to the decoded new value (a *T for the component's Go
	// type T); nil for a control request.
	Value any
	// Control is true for a request to take control, and for a request to
	// end another client's hold (Release). Ending one's own hold needs no
	// authorisation.
	Control bool
	// Release is true for a request to end the hold of another client,
	// Controller, on the entity.
	Release bool
	// Controller is the client id holding control of the entity, 0 if none.
	Controller uint64
}

// Owns reports whether the request's client owns the entity
// (components.Owner). Like the hooks that get the Request, it runs on the
// game goroutine.
func (req *Request) Owns() bool {
	return req.Entity.HasComponent(components.Owner) && components.Owner.Get(req.Entity).Client == req.Client.ID
}

// ErrForbidden is what the default authoriser answers; any error works.
var ErrForbidden = errors.New("not the owner or controller of the entity")

// DefaultAuthorize allows a mutation when the client owns the entity
// (components.Owner) or holds control of it. It allows a request to take
// control only from the owner (control follows the rules of mutation), and
// lets the owner end another client's hold on its entity. The server calls
// it on the game goroutine.
func DefaultAuthorize(req *Request) error {
	if req.Control {
		if req.Owns() {
			return nil
		}
		return ErrForbidden
	}
	if req.Controller == req.Client.ID || req.Owns() {
		return nil
	}
	return ErrForbidden
}

// RequireControl allows a mutation only from the client holding control of
// the entity. Any client may take control of an entity nobody owns (a ball,
// a door), first come first served; an owned entity only its owner may take,
// and the owner may end another client's hold on it. The server calls it
// on the game goroutine.
func RequireControl(req *Request) error {
	if req.Control {
		if req.Owns() || !req.Release && !req.Entity.HasComponent(components.Owner) {
			return nil
		}
		return ErrForbidden
	}
	if req.Controller == req.Client.ID {
		return nil
	}
	return errors.New("take control of the entity first")
}

// AllowAll allows every mutation of a ClientWritable component and every
// control request, including taking another player's entity. Use it only
// for trusted clients. It is safe for concurrent use.
func AllowAll(*Request) error { return nil }

func (s *Server) result(c *client, req uint64, st wire.Status, msg string) {
	c.results = append(c.results, wire.MutationResult{Request: req, Status: st, Message: msg})
	s.stats.mutations[st].Add(1)
}

// record returns the live record of net id and generation, or nil.
func (s *Server) record(id, gen uint64) *entityRec {
	if id == 0 || id >= uint64(len(s.recs)) {
		return nil
	}
	r := s.recs[id]
	if r == nil || uint64(r.gen) != gen || s.world != nil && !s.world.Valid(r.entity) {
		return nil
	}
	return r
}

// mutate authorises, validates and applies one mutation.
func (s *Server) mutate(c *client, m *wire.Mutate) {
	if s.gw != nil {
		s.result(c, m.Request, wire.StatusForbidden, errGatewayRequest.Error())
		return
	}
	if m.Comp >= uint64(len(s.comps)) {
		s.result(c, m.Request, wire.StatusNotFound, fmt.Sprintf("unknown component id %d", m.Comp))
		return
	}
	comp := s.comps[m.Comp]
	r := s.record(m.ID, m.Gen)
	if r == nil {
		s.result(c, m.Request, wire.StatusNotFound, fmt.Sprintf("no entity %d (generation %d)", m.ID, m.Gen))
		return
	}
	if !comp.Options().ClientWritable {
		s.result(c, m.Request, wire.StatusForbidden, fmt.Sprintf("component %s is not client-writable", comp.Name()))
		return
	}
	entry := s.world.Entry(r.entity)
	if !entry.HasComponent(comp.ComponentType()) {
		s.result(c, m.Request, wire.StatusNotFound, fmt.Sprintf("entity %d has no %s", m.ID, comp.Name()))
		return
	}
	if len(m.Value) > maxMutationValue {
		s.result(c, m.Request, wire.StatusValidationError, fmt.Sprintf("value of %d bytes exceeds %d", len(m.Value), maxMutationValue))
		return
	}
	val := comp.New()
	comp.Copy(val, entry.Component(comp.ComponentType())) // fields a Marshaler leaves alone keep their value
	n, err := comp.DecodeFull(m.Value, val)
	if err == nil && n != len(m.Value) {
		err = fmt.Errorf("%d trailing bytes after the value", len(m.Value)-n)
	}
	if err != nil {
		s.result(c, m.Request, wire.StatusValidationError, "malformed value: "+err.Error())
		return
	}
	rv := reflect.NewAt(comp.Type(), val)
	if field := nonFinite(rv.Elem(), comp.Type().Name()); field != "" {
		s.result(c, m.Request, wire.StatusValidationError, "not a finite number: "+field)
		return
	}
	if comp.HasRefs() {
		comp.MapRefs(val, s.entityOf)
	}
	req := &Request{
		Client:     c.info(),
		Entity:     entry,
		NetID:      r.id,
		Component:  s.reg.At(comp.Index()),
		Value:      rv.Interface(),
		Controller: s.controllerOf(r.id),
	}
	if err := s.callHook(func() error { return s.opts.Authorize(req) }); err != nil {
		s.result(c, m.Request, statusOf(err, wire.StatusForbidden), err.Error())
		return
	}
	if s.opts.Validate != nil {
		if err := s.callHook(func() error { return s.opts.Validate(req) }); err != nil {
			s.result(c, m.Request, statusOf(err, wire.StatusValidationError), err.Error())
			return
		}
	}
	comp.Copy(entry.Component(comp.ComponentType()), val)
	if h, ok := s.controls[r.id]; ok && h.holder == c {
		h.active = time.Now() // a hold in use does not idle out
	}
	if comp.Options().Explicit {
		// Detection does not compare Explicit components: the server
		// wrote this one, so it touches it as the game would.
		s.reg.Touch(entry, comp.ComponentType())
	}
	s.result(c, m.Request, wire.StatusOk, "")
}

// nonFinite returns the path of the first NaN or infinite float in v, or
// "". No game wants one in its World from a client (a NaN position breaks
// every distance test), so mutations carrying one are refused before any
// hook sees them.
func nonFinite(v reflect.Value, path string) string {
	if below, bad := badFloat(v); bad {
		return path + below
	}
	return ""
}

// badFloat reports whether v holds a NaN or infinite float, and the path
// from v to the first one (".Field", "[i]"). It builds the path only on
// the way back from a bad float, so a finite value costs no allocation.
func badFloat(v reflect.Value) (string, bool) {
	switch v.Kind() {
	case reflect.Float32, reflect.Float64:
		f := v.Float()
		return "", math.IsNaN(f) || math.IsInf(f, 0)
	case reflect.Struct:
		for i := range v.NumField() {
			if p, bad := badFloat(v.Field(i)); bad {
				return "." + v.Type().Field(i).Name + p, true
			}
		}
	case reflect.Array, reflect.Slice:
		for i := range v.Len() {
			if p, bad := badFloat(v.Index(i)); bad {
				return fmt.Sprintf("[%d]", i) + p, true
			}
		}
	case reflect.Pointer:
		if !v.IsNil() {
			return badFloat(v.Elem())
		}
	}
	return "", false
}

// hookPanic marks an error recovered from a panicking game hook.
type hookPanic struct{ v any }

func (h *hookPanic) Error() string { return fmt.Sprintf("internal error: game hook panicked: %v", h.v) }

// callHook runs a game hook, turning a panic into an error so one bad
// request cannot take the server down.
func (s *Server) callHook(f func() error) (err error) {
	defer func() {
		if v := recover(); v != nil {
			s.log.Error("ebisync: game hook panicked", "panic", v)
			err = &hookPanic{v}
		}
	}()
	return f()
}

func statusOf(err error, def wire.Status) wire.Status {
	var hp *hookPanic
	if errors.As(err, &hp) {
		return wire.StatusInternalError
	}
	return def
}

func (s *Server) callFilter(f func(ClientInfo, *donburi.Entry) bool, c *client, r *entityRec) (ok bool) {
	defer func() {
		if v := recover(); v != nil {
			s.log.Error("ebisync: Filter panicked", "panic", v)
			ok = false
		}
	}()
	return f(c.info(), s.world.Entry(r.entity))
}

// controlHold is one entity's exclusive controller.
type controlHold struct {
	holder   *client
	until    time.Time // zero: no timeout
	active   time.Time // last take or Ok mutation by the holder: Options.ControlIdleTimeout runs from it
	children []uint32  // net ids taken with it
	root     uint32    // the entity the take named (self for roots)
	withKids bool      // the take asked for the root's transform descendants, now and later
}

func (s *Server) controllerOf(id uint32) uint64 {
	if h, ok := s.controls[id]; ok {
		return h.holder.cn.id
	}
	return 0
}

func (s *Server) controlReply(c *client, m *wire.Control, res wire.ControlResult, holder uint64) {
	c.controls = append(c.controls, wire.ControlReply{Request: m.Request, Result: res, ID: m.ID, Gen: m.Gen, Holder: holder})
}

// control takes or releases exclusive control of an entity (and, when
// asked, of its donburi transform children).
func (s *Server) control(c *client, m *wire.Control) {
	if s.gw != nil {
		s.controlReply(c, m, wire.ControlForbidden, 0)
		return
	}
	r := s.record(m.ID, m.Gen)
	if r == nil {
		s.controlReply(c, m, wire.ControlNotFound, 0)
		return
	}
	switch m.Op {
	case wire.ControlRelease:
		h, ok := s.controls[r.id]
		if !ok || h.root != r.id {
			s.controlReply(c, m, wire.ControlNotControlled, s.controllerOf(r.id))
			return
		}
		if h.holder != c {
			// Another client's hold: the owner may end it (Authorize
			// decides; DefaultAuthorize allows the owner).
			req := &Request{Client: c.info(), Entity: s.world.Entry(r.entity), NetID: r.id, Control: true, Release: true, Controller: h.holder.cn.id}
			if err := s.callHook(func() error { return s.opts.Authorize(req) }); err != nil {
				s.controlReply(c, m, wire.ControlForbidden, h.holder.cn.id)
				return
			}
		}
		s.release(r.id)
		s.controlReply(c, m, wire.ControlReleased, 0)
	case wire.ControlTake:
		entry := s.world.Entry(r.entity)
		req := &Request{Client: c.info(), Entity: entry, NetID: r.id, Control: true, Controller: s.controllerOf(r.id)}
		if err := s.callHook(func() error { return s.opts.Authorize(req) }); err != nil {
			s.controlReply(c, m, wire.ControlForbidden, 0)
			return
		}
		ids := []uint32{r.id}
		if m.Children {
			ids = s.descendants(r, ids)
		}
		for _, id := range ids {
			if h, ok := s.controls[id]; ok && h.holder != c {
				s.controlReply(c, m, wire.ControlAlreadyControlled, h.holder.cn.id)
				return
			}
		}
		now := time.Now()
		var until time.Time
		if m.TimeoutMs > 0 {
			until = now.Add(time.Duration(min(m.TimeoutMs, maxControlTimeoutMs)) * time.Millisecond)
		}
		if h, ok := s.controls[r.id]; ok && h.holder == c && h.root == r.id {
			s.release(r.id) // re-take: refresh timeout and children
		}
		hold := &controlHold{holder: c, until: until, active: now, root: r.id, children: ids[1:], withKids: m.Children}
		for _, id := range ids {
			if old, ok := s.controls[id]; ok && old.root != r.id {
				s.release(old.root)
			}
			s.controls[id] = hold
			s.setControlComponent(s.recs[id], c.cn.id)
		}
		s.controlReply(c, m, wire.ControlTaken, c.cn.id)
	default:
		s.controlReply(c, m, wire.ControlForbidden, 0)
	}
}

// maxControlTimeoutMs caps a requested control timeout (a day), so the
// deadline never overflows; Options.ControlIdleTimeout ends idle holds
// sooner.
const maxControlTimeoutMs = 24 * 60 * 60 * 1000

// descendants appends the replicated transform descendants of r.
func (s *Server) descendants(r *entityRec, ids []uint32) []uint32 {
	entry := s.world.Entry(r.entity)
	children, ok := transform.GetChildren(entry)
	if !ok {
		return ids
	}
	for _, ch := range children {
		if !ch.Valid() {
			continue
		}
		if !ch.HasComponent(components.Replicated) {
			continue
		}
		id := components.Replicated.Get(ch).NetID
		if id == 0 || int(id) >= len(s.recs) || s.recs[id] == nil || s.recs[id].entity != ch.Entity() {
			continue
		}
		ids = append(ids, id)
		ids = s.descendants(s.recs[id], ids)
	}
	return ids
}

func (s *Server) setControlComponent(r *entityRec, holder uint64) {
	if r == nil || !s.world.Valid(r.entity) {
		return
	}
	entry := s.world.Entry(r.entity)
	if !entry.HasComponent(components.Control) {
		if holder == 0 {
			return
		}
		s.addComponent(entry, components.Control)
	}
	components.Control.Get(entry).Client = holder
}

// addComponent adds ct to entry. donburi v1.15.8 miscounts an archetype
// whose first entity arrives by AddComponent (a later World.Create of that
// layout then panics with an index out of range), so before the server
// moves an entity into an archetype that does not exist yet, it creates
// the archetype the way donburi expects: with a Create, removed at once.
func (s *Server) addComponent(entry *donburi.Entry, ct donburi.IComponentType) {
	have := entry.Archetype().Layout().Components()
	layout := make([]donburi.IComponentType, 0, len(have)+1)
	layout = append(append(layout, have...), ct)
	exists := false
	for _, a := range s.world.Archetypes() {
		if a.LayoutMatches(layout) {
			exists = true
			break
		}
	}
	if !exists {
		s.world.Remove(s.world.Create(layout...))
	}
	entry.AddComponent(ct)
}

// release ends the hold rooted at root.
func (s *Server) release(root uint32) {
	h, ok := s.controls[root]
	if !ok {
		return
	}
	for _, id := range append([]uint32{h.root}, h.children...) {
		if s.controls[id] == h {
			delete(s.controls, id)
			s.setControlComponent(s.recs[id], 0)
		}
	}
}

func (s *Server) expireControls() {
	if len(s.controls) == 0 {
		return
	}
	now := time.Now()
	idle := s.opts.ControlIdleTimeout
	for id, h := range s.controls {
		if id == h.root && (!h.until.IsZero() && now.After(h.until) || now.Sub(h.active) > idle) {
			s.release(id)
		}
	}
	for id, h := range s.controls {
		if id == h.root && h.withKids {
			s.refreshChildren(h)
		}
	}
}

// refreshChildren makes a hold taken with children cover the root's
// transform descendants as they are now: a child attached since the take
// joins the hold (unless another client holds it), and one detached leaves
// it.
func (s *Server) refreshChildren(h *controlHold) {
	r := s.recs[h.root]
	if r == nil {
		return
	}
	now := s.descendants(r, s.kidScratch[:0])
	s.kidScratch = now
	for _, id := range h.children {
		if !slices.Contains(now, id) && s.controls[id] == h {
			delete(s.controls, id)
			s.setControlComponent(s.recs[id], 0)
		}
	}
	h.children = h.children[:0]
	for _, id := range now {
		if cur, ok := s.controls[id]; ok && cur != h {
			continue // another client's hold stays
		}
		if s.controls[id] != h {
			s.controls[id] = h
			s.setControlComponent(s.recs[id], h.holder.cn.id)
		}
		h.children = append(h.children, id)
	}
}

// releaseClient releases every hold of a client that left.
func (s *Server) releaseClient(c *client) {
	for id, h := range s.controls {
		if h.holder == c && id == h.root {
			s.release(id)
		}
	}
}

// releaseAll drops holds on a despawned entity.
func (s *Server) releaseAll(r *entityRec) {
	h, ok := s.controls[r.id]
	if !ok {
		return
	}
	if h.root == r.id {
		s.release(r.id)
	} else {
		delete(s.controls, r.id)
	}
}
