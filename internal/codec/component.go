// Package codec is the field codec behind ebisync's registered components:
// it flattens a Go struct type once with reflection and then encodes,
// decodes, compares, copies and interpolates values of that type through raw
// pointers, without reflection or allocation per value. docs/PROTOCOL.md
// describes the encodings byte by byte.
//
// Package components builds a Codec for every registered component and is
// the only public way to make one; the server and client reach a
// component's codec through Of. A Codec is immutable once built and safe for
// concurrent use on distinct values.
package codec

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"math"
	"reflect"
	"unsafe"

	"github.com/yohamta/donburi"
)

// Marshaler has the method set of components.Marshaler.
type Marshaler interface {
	MarshalSync(dst []byte) []byte
	UnmarshalSync(src []byte) error
}

// Options has the fields of components.Options.
type Options struct {
	ClientWritable bool
	Explicit       bool
	MaxRate        float64
	Interpolate    bool
}

// Field describes one synced leaf field as exchanged in the handshake.
type Field struct {
	Name  string
	Type  string
	Quant float64
}

// Codec is one registered component type: its wire identity, options and
// field codec.
type Codec struct {
	name    string
	index   int
	ct      donburi.IComponentType
	typ     reflect.Type
	fields  []field
	refs    []uintptr // offsets of donburi.Entity leaves
	deep    bool      // has []byte leaves that need a deep copy
	partial bool      // has fields it does not sync, which Copy leaves alone
	plain   bool      // no strings or slices: equal memory means equal values
	size    uintptr
	hash    uint64
	opts    Options
	custom  func(p unsafe.Pointer) Marshaler
	lerp    func(out, a, b unsafe.Pointer, t float64)
	newZero func() unsafe.Pointer
}

// Build makes the codec of Go type T under the wire name name at wire id
// index, for the donburi component type ct (nil for a message type). Its
// error names the offending field of an unsupported type.
func Build[T any](name string, index int, ct donburi.IComponentType, opts Options) (*Codec, error) {
	typ := reflect.TypeFor[T]()
	c := &Codec{
		name:    name,
		index:   index,
		ct:      ct,
		typ:     typ,
		opts:    opts,
		newZero: func() unsafe.Pointer { return unsafe.Pointer(new(T)) },
	}
	if _, ok := any((*T)(nil)).(Marshaler); ok {
		c.custom = func(p unsafe.Pointer) Marshaler { return any((*T)(p)).(Marshaler) }
		c.fields = []field{{name: "(custom)", typeStr: "custom:" + typ.String(), kind: kBytes}}
	} else {
		fs, err := buildLayout(typ)
		if err != nil {
			return nil, err
		}
		if len(fs) == 0 {
			return nil, fmt.Errorf("no exported fields to sync")
		}
		if len(fs) > maxFields {
			return nil, fmt.Errorf("%d synced fields, at most %d (split it or implement Marshaler)", len(fs), maxFields)
		}
		c.fields = fs
		c.refs = refOffsets(fs, 0, nil)
		c.deep = hasBytes(fs)
		c.partial = hasUnsynced(typ)
		c.plain = !hasPointers(typ)
		c.size = typ.Size()
	}
	c.hash = schemaHash(name, c.fields)
	return c, nil
}

// SetLerp installs the interpolation of values of type T. f must not retain
// its pointers. It panics if the codec's Go type is not T.
func SetLerp[T any](c *Codec, f func(a, b *T, t float64) T) {
	if c.typ != reflect.TypeFor[T]() {
		panic(fmt.Sprintf("ebisync: SetLerp[%s] on %q of type %s", reflect.TypeFor[T](), c.name, c.typ))
	}
	c.lerp = func(out, a, b unsafe.Pointer, t float64) { *(*T)(out) = f((*T)(a), (*T)(b), t) }
}

// Name returns the component's wire name.
func (c *Codec) Name() string { return c.name }

// Index returns the component's wire id.
func (c *Codec) Index() int { return c.index }

// PlainSize returns the size of the component's Go value and whether the
// value is plain: no pointers (strings, slices, maps), no Marshaler. A plain
// value may be kept in any memory of that size aligned to 8 bytes.
func (c *Codec) PlainSize() (uintptr, bool) { return c.size, c.plain && c.custom == nil }

// ComponentType returns the donburi component type.
func (c *Codec) ComponentType() donburi.IComponentType { return c.ct }

// Type returns the Go type of the component's values.
func (c *Codec) Type() reflect.Type { return c.typ }

// Options returns the component's options.
func (c *Codec) Options() Options { return c.opts }

// SchemaHash returns the hash over the wire name, field names, kinds, order
// and quantisation steps.
func (c *Codec) SchemaHash() uint64 { return c.hash }

// NumFields returns the number of synced leaf fields (1 for a Marshaler).
func (c *Codec) NumFields() int { return len(c.fields) }

// Fields returns the synced fields in wire order.
func (c *Codec) Fields() []Field {
	out := make([]Field, len(c.fields))
	for i, f := range c.fields {
		out[i] = Field{Name: f.name, Type: f.typeStr, Quant: f.step}
	}
	return out
}

func (c *Codec) String() string { return c.name }

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

var of func(component any) *Codec

// Bind installs the function behind Of. Package components calls it once,
// at initialisation.
func Bind(f func(component any) *Codec) { of = f }

// Of returns the codec of a *components.Component or
// *components.MessageType (nil for nil).
func Of(component any) *Codec { return of(component) }

var entityType = reflect.TypeFor[donburi.Entity]()

// Ref is an entity reference as it travels: a net id and its generation,
// 0 for none. A field of type donburi.Entity holds a Ref, not an entity,
// while a value is being encoded or has just been decoded; MapRefs converts
// between the two.
type Ref uint64

// MakeRef returns the reference to net id id at generation gen (none for id
// 0).
func MakeRef(id, gen uint32) Ref {
	if id == 0 {
		return 0
	}
	return Ref(id) | Ref(gen)<<32
}

// ID returns the reference's net id, 0 for none.
func (r Ref) ID() uint32 { return uint32(r) }

// Gen returns the reference's generation.
func (r Ref) Gen() uint32 { return uint32(r >> 32) }

// HasRefs reports whether values have donburi.Entity fields.
func (c *Codec) HasRefs() bool { return len(c.refs) > 0 }

// MapRefs replaces every donburi.Entity field of the value at p by
// f(field): an entity by its Ref before encoding, or a decoded Ref by the
// receiver's entity after decoding.
func (c *Codec) MapRefs(p unsafe.Pointer, f func(uint64) uint64) {
	for _, off := range c.refs {
		fp := (*uint64)(unsafe.Add(p, off))
		*fp = f(*fp)
	}
}

// refOffsets returns the offsets of every entity leaf of fs, array elements
// included.
func refOffsets(fs []field, base uintptr, out []uintptr) []uintptr {
	for i := range fs {
		f := &fs[i]
		switch f.kind {
		case kEntity:
			out = append(out, base+f.off)
		case kArray:
			for j := 0; j < f.arr.n; j++ {
				out = refOffsets(f.arr.elem, base+f.off+uintptr(j)*f.arr.stride, out)
			}
		}
	}
	return out
}
