package components

import (
	"fmt"
	"math"
	"reflect"
	"sync/atomic"

	"github.com/yohamta/donburi"

	"github.com/ebisync/ebisync/internal/codec"
	"github.com/ebisync/ebisync/internal/wire"
)

// Marshaler is implemented (on the pointer) by a component type that encodes
// itself instead of using the generated field codec. Its full and delta
// encodings are both MarshalSync's output behind a length prefix, and change
// detection compares those bytes.
//
// MarshalSync appends the encoding of the value to dst and returns it. It
// must be deterministic: equal values give equal bytes.
//
// UnmarshalSync sets the value from exactly the bytes MarshalSync produced.
// It receives hostile input on the client and must return an error, never
// panic, on bytes it does not accept. It must not retain src.
type Marshaler interface {
	MarshalSync(dst []byte) []byte
	UnmarshalSync(src []byte) error
}

// Options configures a registered component. A nil *Options means every
// field's zero value.
type Options struct {
	// ClientWritable lets clients send mutations of this component. The
	// server's Authorizer still decides each one.
	ClientWritable bool

	// Explicit turns off automatic change detection for this component: the
	// server sends a change only after Registry.Touch marks it (the server
	// touches it itself when it applies a client's mutation). Use it for
	// large components the game knows it changed.
	Explicit bool

	// MaxRate caps how many updates per second a client receives for this
	// component on one entity; 0 means every tick. Changes in between are
	// coalesced, never lost.
	MaxRate float64

	// Interpolate asks the client to keep the last two server values so the
	// renderer can interpolate between them. Float fields are interpolated
	// linearly unless Synced.SetLerp installs a function; others snap.
	Interpolate bool
}

// Component is one registered component type: its wire identity and
// options. It is immutable after registration and safe for concurrent use.
// Register returns it wrapped in a typed *Synced[T]; the server and client
// hand the untyped form to hooks that see every component (OnChange,
// Request.Component).
type Component struct {
	c *codec.Codec
}

func init() {
	codec.Bind(func(v any) *codec.Codec {
		switch v := v.(type) {
		case *Component:
			if v != nil {
				return v.c
			}
		case *MessageType:
			if v != nil {
				return v.c
			}
		}
		return nil
	})
}

// Name returns the component's wire name.
// It is safe for concurrent use.
func (c *Component) Name() string { return c.c.Name() }

// Index returns the component's position in its registry, which is its id
// on the wire.
// It is safe for concurrent use.
func (c *Component) Index() int { return c.c.Index() }

// ComponentType returns the donburi component type.
// It is safe for concurrent use.
func (c *Component) ComponentType() donburi.IComponentType { return c.c.ComponentType() }

// Type returns the Go type of the component's values.
// It is safe for concurrent use.
func (c *Component) Type() reflect.Type { return c.c.Type() }

// Options returns the component's options.
// It is safe for concurrent use.
func (c *Component) Options() Options { return Options(c.c.Options()) }

// SchemaHash returns the hash over the wire name, field names, kinds, order
// and quantisation steps. Two registries agree on a component only if its
// hashes are equal.
// It is safe for concurrent use.
func (c *Component) SchemaHash() uint64 { return c.c.SchemaHash() }

// NumFields returns the number of synced leaf fields (1 for a Marshaler).
// It is safe for concurrent use.
func (c *Component) NumFields() int { return c.c.NumFields() }

// Fields returns the synced fields in wire order.
// It is safe for concurrent use.
func (c *Component) Fields() []FieldLayout {
	fs := c.c.Fields()
	out := make([]FieldLayout, len(fs))
	for i, f := range fs {
		out[i] = FieldLayout(f)
	}
	return out
}

// String returns the component's wire name. It is safe for concurrent use.
func (c *Component) String() string { return c.c.Name() }

// FieldLayout describes one synced field, as exchanged in the handshake.
type FieldLayout struct {
	Name  string  // dotted path, e.g. "Pos.X"
	Type  string  // Go-like type string, e.g. "float64", "[4]uint8"
	Quant float64 // quantisation step, 0 when not quantised
}

// Registry is the set of synced component types, in registration order.
// Register every component before the registry is handed to a server or
// client; after that it is frozen, and reading it is safe for concurrent use.
type Registry struct {
	list   []*Component
	typed  []any      // *Synced[T] by wire id
	msgs   []msgEntry // message types by wire id
	byName map[string]*Component
	byCT   map[donburi.IComponentType]*Component
	byType map[reflect.Type]*Component
	frozen atomic.Bool
}

// NewRegistry returns a registry holding the built-in components every
// ebisync peer shares: Owner and Control.
// It is safe for concurrent use.
func NewRegistry() *Registry {
	r := &Registry{
		byName: make(map[string]*Component),
		byCT:   make(map[donburi.IComponentType]*Component),
		byType: make(map[reflect.Type]*Component),
	}
	Register(r, "ebisync.owner", Owner, nil)
	Register(r, "ebisync.control", Control, nil)
	return r
}

// Register adds ct to r under the wire name name and returns its typed
// handle.
//
// It panics, naming the offending field, if name is empty or taken, if ct or
// its Go type is already registered, if the type has an unsupported field or
// more than 64 synced fields, or if r is frozen. These are programmer errors
// found at start-up. Register is not safe for concurrent use.
func Register[T any](r *Registry, name string, ct *donburi.ComponentType[T], opts *Options) *Synced[T] {
	if r.frozen.Load() {
		panic(fmt.Sprintf("ebisync: register %q: registry is frozen (a server or client is using it)", name))
	}
	if name == "" || len(name) > wire.MaxNameLen {
		panic(fmt.Sprintf("ebisync: register %q: the wire name must be 1 to %d bytes", name, wire.MaxNameLen))
	}
	if ct == nil {
		panic(fmt.Sprintf("ebisync: register %q: nil component type", name))
	}
	if _, dup := r.byName[name]; dup {
		panic(fmt.Sprintf("ebisync: register %q: the name is already registered", name))
	}
	if prev, dup := r.byCT[ct]; dup {
		panic(fmt.Sprintf("ebisync: register %q: component type already registered as %q", name, prev.Name()))
	}
	typ := reflect.TypeFor[T]()
	if prev, dup := r.byType[typ]; dup {
		panic(fmt.Sprintf("ebisync: register %q: Go type %s already registered as %q", name, typ, prev.Name()))
	}
	if len(r.list) >= wire.MaxComponents {
		panic(fmt.Sprintf("ebisync: register %q: more than %d components", name, wire.MaxComponents))
	}
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.MaxRate < 0 || math.IsNaN(o.MaxRate) || math.IsInf(o.MaxRate, 0) {
		panic(fmt.Sprintf("ebisync: register %q: MaxRate must be a finite number >= 0", name))
	}
	cc, err := codec.Build[T](name, len(r.list), ct, codec.Options(o))
	if err != nil {
		panic(fmt.Sprintf("ebisync: register %q (%s): %v", name, typ, err))
	}
	c := &Component{c: cc}
	h := &Synced[T]{comp: c, ct: ct, reg: r}
	r.list = append(r.list, c)
	r.typed = append(r.typed, h)
	r.byName[name] = c
	r.byCT[ct] = c
	r.byType[typ] = c
	return h
}

// Lookup returns the typed handle of the component registered for ct.
// It is safe for concurrent use once r is frozen.
func Lookup[T any](r *Registry, ct *donburi.ComponentType[T]) (*Synced[T], bool) {
	c, ok := r.byCT[ct]
	if !ok {
		return nil, false
	}
	h, ok := r.typed[c.Index()].(*Synced[T])
	return h, ok
}

func codecSetLerp[T any](c *Component, f func(a, b *T, t float64) T) { codec.SetLerp(c.c, f) }

// Freeze forbids further registration. Servers and clients call it; it is
// idempotent and safe for concurrent use.
func (r *Registry) Freeze() { r.frozen.Store(true) }

// Len returns the number of registered components.
// It is safe for concurrent use once r is frozen.
func (r *Registry) Len() int { return len(r.list) }

// At returns the component with wire id i, or nil if i is out of range.
// It is safe for concurrent use once r is frozen.
func (r *Registry) At(i int) *Component {
	if i < 0 || i >= len(r.list) {
		return nil
	}
	return r.list[i]
}

// All returns the components in wire-id order. The slice must not be
// modified.
// It is safe for concurrent use once r is frozen.
func (r *Registry) All() []*Component { return r.list }

// ByName returns the component registered under name.
// It is safe for concurrent use once r is frozen.
func (r *Registry) ByName(name string) (*Component, bool) {
	c, ok := r.byName[name]
	return c, ok
}

// Of returns the component registered for the donburi component type ct.
// It is safe for concurrent use once r is frozen.
func (r *Registry) Of(ct donburi.IComponentType) (*Component, bool) {
	c, ok := r.byCT[ct]
	return c, ok
}

// Touch marks the component ct of entry as changed, for components
// registered with Options.Explicit (it works for every component). The
// server sends it on its next tick. Touch must be called on the game
// goroutine; it does nothing if entry is not replicated or ct is not
// registered.
func (r *Registry) Touch(entry *donburi.Entry, ct donburi.IComponentType) {
	c, ok := r.byCT[ct]
	if !ok || !entry.Valid() || !entry.HasComponent(Replicated) {
		return
	}
	tag := Replicated.Get(entry)
	if len(tag.Versions) < len(r.list) {
		v := make([]uint32, len(r.list))
		copy(v, tag.Versions)
		tag.Versions = v
	}
	tag.Versions[c.Index()] = VersionTouched
}
