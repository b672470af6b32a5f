package components

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"math"
	"reflect"
	"sync/atomic"
	"unsafe"

	"github.com/yohamta/donburi"

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
	// linearly unless SetLerp installs a function; others snap.
	Interpolate bool
}

// Component is one registered component type: its wire identity, codec and
// options. It is immutable after registration and safe for concurrent use.
type Component struct {
	name    string
	index   int
	ct      donburi.IComponentType
	typ     reflect.Type
	fields  []field
	deep    bool // has []byte leaves that need a deep copy
	plain   bool // no strings or slices: equal memory means equal values
	size    uintptr
	words   uintptr // plain and a whole number of up to 4 words: size/8; else 0
	hash    uint64
	opts    Options
	custom  func(p unsafe.Pointer) Marshaler
	lerp    func(out, a, b unsafe.Pointer, t float64)
	newZero func() unsafe.Pointer
}

// Name returns the component's wire name.
func (c *Component) Name() string { return c.name }

// Index returns the component's position in its registry, which is its id on
// the wire.
func (c *Component) Index() int { return c.index }

// PlainSize returns the size of the component's Go value and whether the
// value is plain: no pointers (strings, slices, maps), no Marshaler. A
// plain value may be kept in any memory of that size aligned to 8 bytes,
// which is how a server keeps its copies of small values next to its own
// records.
func (c *Component) PlainSize() (uintptr, bool) { return c.size, c.plain && c.custom == nil }

// ComponentType returns the donburi component type.
func (c *Component) ComponentType() donburi.IComponentType { return c.ct }

// Type returns the Go type of the component's values.
func (c *Component) Type() reflect.Type { return c.typ }

// Options returns the component's options.
func (c *Component) Options() Options { return c.opts }

// SchemaHash returns the hash over the wire name, field names, kinds, order
// and quantisation steps. Two registries agree on a component only if its
// hashes are equal.
func (c *Component) SchemaHash() uint64 { return c.hash }

// NumFields returns the number of synced leaf fields (1 for a Marshaler).
func (c *Component) NumFields() int { return len(c.fields) }

// Fields returns the synced fields in wire order.
func (c *Component) Fields() []FieldLayout {
	out := make([]FieldLayout, len(c.fields))
	for i, f := range c.fields {
		out[i] = FieldLayout{Name: f.name, Type: f.typeStr, Quant: f.step}
	}
	return out
}

func (c *Component) String() string { return c.name }

// Registry is the set of synced component types, in registration order.
// Register every component before the registry is handed to a server or
// client; after that it is frozen, and reading it is safe for concurrent use.
type Registry struct {
	list   []*Component
	byName map[string]*Component
	byCT   map[donburi.IComponentType]*Component
	byType map[reflect.Type]*Component
	frozen atomic.Bool
}

// NewRegistry returns a registry holding the built-in components every
// ebisync peer shares: Owner and Control.
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

// Register adds ct to r under the wire name name and returns its entry.
//
// It panics, naming the offending field, if name is empty or taken, if ct or
// its Go type is already registered, if the type has an unsupported field or
// more than 64 synced fields, or if r is frozen. These are programmer errors
// found at start-up. Register is not safe for concurrent use.
func Register[T any](r *Registry, name string, ct *donburi.ComponentType[T], opts *Options) *Component {
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
		panic(fmt.Sprintf("ebisync: register %q: component type already registered as %q", name, prev.name))
	}
	typ := reflect.TypeFor[T]()
	if prev, dup := r.byType[typ]; dup {
		panic(fmt.Sprintf("ebisync: register %q: Go type %s already registered as %q", name, typ, prev.name))
	}
	if len(r.list) >= wire.MaxComponents {
		panic(fmt.Sprintf("ebisync: register %q: more than %d components", name, wire.MaxComponents))
	}
	c := &Component{
		name:    name,
		index:   len(r.list),
		ct:      ct,
		typ:     typ,
		newZero: func() unsafe.Pointer { return unsafe.Pointer(new(T)) },
	}
	if opts != nil {
		c.opts = *opts
	}
	if c.opts.MaxRate < 0 || math.IsNaN(c.opts.MaxRate) || math.IsInf(c.opts.MaxRate, 0) {
		panic(fmt.Sprintf("ebisync: register %q: MaxRate must be a finite number >= 0", name))
	}
	if _, ok := any((*T)(nil)).(Marshaler); ok {
		c.custom = func(p unsafe.Pointer) Marshaler { return any((*T)(p)).(Marshaler) }
		c.fields = []field{{name: "(custom)", typeStr: "custom:" + typ.String(), kind: kBytes}}
	} else {
		fs, err := buildLayout(typ)
		if err != nil {
			panic(fmt.Sprintf("ebisync: register %q (%s): %v", name, typ, err))
		}
		if len(fs) == 0 {
			panic(fmt.Sprintf("ebisync: register %q (%s): no exported fields to sync", name, typ))
		}
		if len(fs) > maxFields {
			panic(fmt.Sprintf("ebisync: register %q (%s): %d synced fields, at most %d (split it or implement Marshaler)", name, typ, len(fs), maxFields))
		}
		c.fields = fs
		c.deep = hasBytes(fs)
		c.plain = !hasPointers(typ)
		c.size = typ.Size()
		if c.plain && c.size%8 == 0 && c.size <= 32 {
			c.words = c.size / 8
		}
	}
	c.hash = schemaHash(name, c.fields)
	r.list = append(r.list, c)
	r.byName[name] = c
	r.byCT[ct] = c
	r.byType[typ] = c
	return c
}

// SetLerp installs the interpolation function used for c on the client
// (Options.Interpolate). f must not retain its pointers. It panics if c's Go
// type is not T.
func SetLerp[T any](c *Component, f func(a, b *T, t float64) T) {
	if c.typ != reflect.TypeFor[T]() {
		panic(fmt.Sprintf("ebisync: SetLerp[%s] on %q of type %s", reflect.TypeFor[T](), c.name, c.typ))
	}
	c.lerp = func(out, a, b unsafe.Pointer, t float64) { *(*T)(out) = f((*T)(a), (*T)(b), t) }
}

func schemaHash(name string, fs []field) uint64 {
	h := fnv.New64a()
	var buf [8]byte
	write := func(s string) {
		binary.LittleEndian.PutUint64(buf[:], uint64(len(s)))
		h.Write(buf[:])
		h.Write([]byte(s))
	}
	write(name)
	for _, f := range fs {
		write(f.name)
		write(f.typeStr)
		binary.LittleEndian.PutUint64(buf[:], math.Float64bits(f.step))
		h.Write(buf[:])
	}
	return h.Sum64()
}

// Freeze forbids further registration. Servers and clients call it; it is
// idempotent and safe for concurrent use.
func (r *Registry) Freeze() { r.frozen.Store(true) }

// Len returns the number of registered components.
func (r *Registry) Len() int { return len(r.list) }

// At returns the component with wire id i, or nil if i is out of range.
func (r *Registry) At(i int) *Component {
	if i < 0 || i >= len(r.list) {
		return nil
	}
	return r.list[i]
}

// All returns the components in wire-id order. The slice must not be
// modified.
func (r *Registry) All() []*Component { return r.list }

// ByName returns the component registered under name.
func (r *Registry) ByName(name string) (*Component, bool) {
	c, ok := r.byName[name]
	return c, ok
}

// Of returns the component registered for the donburi component type ct.
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
	tag.Versions[c.index] = VersionTouched
}
