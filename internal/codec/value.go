package codec

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"reflect"
	"unsafe"

	"github.com/ebisync/ebisync/internal/wire"
)

// The methods in this file work on raw pointers to values of the
// component's Go type, as returned by donburi's Entry.Component or by New.
// They are the low-level codec the server and client use; game code rarely
// needs them. All are safe for concurrent use on distinct values.

// New allocates a zero value of the component's type and returns a pointer
// to it.
func (c *Codec) New() unsafe.Pointer { return c.newZero() }

// AppendFull appends the full encoding of the value at p.
func (c *Codec) AppendFull(dst []byte, p unsafe.Pointer) []byte {
	if c.custom != nil {
		return appendCustom(dst, c.custom(p))
	}
	return appendFields(dst, c.fields, p)
}

func appendCustom(dst []byte, m Marshaler) []byte {
	start := len(dst)
	dst = m.MarshalSync(dst)
	n := len(dst) - start
	var pre [binary.MaxVarintLen64]byte
	k := binary.PutUvarint(pre[:], uint64(n))
	dst = append(dst, pre[:k]...)
	copy(dst[start+k:], dst[start:start+n])
	copy(dst[start:], pre[:k])
	return dst
}

// FullLen validates the full encoding at the start of src and returns its
// length. It never reads past src and never panics.
func (c *Codec) FullLen(src []byte) (int, error) {
	var r wire.Reader
	r.Reset(src)
	if c.custom != nil {
		r.BytesMax(wire.MaxValueLen, c.name)
	} else {
		readFields(&r, c.fields, nil)
	}
	if err := r.Err(); err != nil {
		return 0, fmt.Errorf("failed to decode %s: %w", c.name, err)
	}
	return r.Offset(), nil
}

// DecodeFull decodes the full encoding at the start of src into the value at
// p and returns the bytes consumed. The input is validated before p is
// written, so on error p is unchanged (a Marshaler's UnmarshalSync excepted).
//
// The decoded value never shares memory with src. A []byte field that
// changes gets a newly allocated slice (the old backing array is never
// written, as another value may share it); one of length zero decodes to
// nil, since the encoding does not tell nil from empty.
func (c *Codec) DecodeFull(src []byte, p unsafe.Pointer) (int, error) {
	n, err := c.FullLen(src)
	if err != nil {
		return 0, err
	}
	var r wire.Reader
	r.Reset(src[:n])
	if c.custom != nil {
		b := r.BytesMax(wire.MaxValueLen, c.name)
		if err := c.custom(p).UnmarshalSync(b); err != nil {
			return 0, fmt.Errorf("failed to decode %s: %w: %w", c.name, wire.ErrMalformed, err)
		}
		return n, nil
	}
	readFields(&r, c.fields, p)
	return n, nil
}

// Diff returns the change mask between the values at old and new: bit i is
// set when field i differs (quantised floats compare in steps). A Marshaler
// component compares its encodings and reports bit 0.
func (c *Codec) Diff(old, new unsafe.Pointer) uint64 {
	if c.custom != nil {
		a := c.custom(old).MarshalSync(nil)
		b := c.custom(new).MarshalSync(nil)
		if bytes.Equal(a, b) {
			return 0
		}
		return 1
	}
	if c.plain && SameBits(old, new, c.size) {
		// The common case, an unchanged value, costs a compare per word.
		return 0
	}
	return diffMask(c.fields, old, new)
}

// SameBits reports whether the n bytes at a and b are equal, bit for bit.
// It is the one bitwise compare of values: Diff and Equal try it first on
// a plain value, and the server's quick check of an unchanged entity
// compares the entity's values with their shadows by it. Its loads, of 8,
// 4 and 1 bytes, need no alignment (Go places a value that is not a whole
// number of words, such as a colour or three float32s, at any 4- or 1-byte
// boundary), and it makes no call into the runtime, so a caller's loop
// stays free of calls. It is safe for concurrent use on values nobody
// writes meanwhile.
func SameBits(a, b unsafe.Pointer, n uintptr) bool {
	x, y := unsafe.Slice((*byte)(a), n), unsafe.Slice((*byte)(b), n)
	for len(x) >= 8 {
		if binary.LittleEndian.Uint64(x) != binary.LittleEndian.Uint64(y) {
			return false
		}
		x, y = x[8:], y[8:]
	}
	if len(x) >= 4 {
		if binary.LittleEndian.Uint32(x) != binary.LittleEndian.Uint32(y) {
			return false
		}
		x, y = x[4:], y[4:]
	}
	for i := range x {
		if x[i] != y[i] {
			return false
		}
	}
	return true
}

// AppendDelta appends the delta encoding of the value at new against the
// baseline at old, for the fields in mask (as returned by Diff; bits past
// the last field are ignored). The receiver must hold exactly the baseline,
// or for quantised floats any value in the baseline's step: the usual
// baseline is what DecodeFull of the baseline gave the receiver.
func (c *Codec) AppendDelta(dst []byte, old, new unsafe.Pointer, mask uint64) []byte {
	if c.custom != nil {
		return c.AppendFull(dst, new)
	}
	return appendDelta(dst, c.fields, old, new, mask)
}

// DeltaLen validates the delta encoding at the start of src and returns its
// length.
func (c *Codec) DeltaLen(src []byte) (int, error) {
	if c.custom != nil {
		return c.FullLen(src)
	}
	var r wire.Reader
	r.Reset(src)
	readDelta(&r, c.fields, nil)
	if err := r.Err(); err != nil {
		return 0, fmt.Errorf("failed to decode %s delta: %w", c.name, err)
	}
	return r.Offset(), nil
}

// DecodeDelta applies the delta encoding at the start of src onto the value
// at p (the baseline) and returns the bytes consumed. The input is
// validated before p is written, so on error p is unchanged. []byte fields
// follow DecodeFull's rules.
func (c *Codec) DecodeDelta(src []byte, p unsafe.Pointer) (int, error) {
	if c.custom != nil {
		return c.DecodeFull(src, p)
	}
	n, err := c.DeltaLen(src)
	if err != nil {
		return 0, err
	}
	var r wire.Reader
	r.Reset(src[:n])
	readDelta(&r, c.fields, p)
	return n, nil
}

// Copy copies the synced fields of the value at src into dst; fields the
// codec does not sync (unexported, or tagged `ebisync:"-"`) keep dst's
// values. []byte fields are copied deeply, so dst never aliases src; an
// empty one becomes nil, as after a decode. A Marshaler type is copied
// whole by plain Go assignment: whatever slices, maps or pointers it holds
// are shared by dst and src.
func (c *Codec) Copy(dst, src unsafe.Pointer) {
	if c.partial && c.custom == nil {
		copyFields(c.fields, dst, src)
		return
	}
	if c.plain && c.custom == nil {
		copy(unsafe.Slice((*byte)(dst), c.size), unsafe.Slice((*byte)(src), c.size))
		return
	}
	reflect.NewAt(c.typ, dst).Elem().Set(reflect.NewAt(c.typ, src).Elem())
	if c.deep {
		copyBytesFields(c.fields, dst)
	}
}

// Equal reports whether the values at a and b encode identically.
func (c *Codec) Equal(a, b unsafe.Pointer) bool {
	if c.custom != nil {
		return c.Diff(a, b) == 0
	}
	if c.plain && SameBits(a, b, c.size) {
		return true
	}
	return fieldsEqual(c.fields, a, b)
}

// Lerp writes into out the value between a (t=0) and b (t=1): the function
// installed by SetLerp, else float fields linearly (exactly a at t=0 and b
// at t=1 for finite values) and every other field copied from b. out may be
// b but not a.
func (c *Codec) Lerp(out, a, b unsafe.Pointer, t float64) {
	if c.lerp != nil {
		c.lerp(out, a, b, t)
		return
	}
	c.Copy(out, b)
	if c.custom == nil {
		lerpFields(c.fields, out, a, b, t)
	}
}
