// Package wire is ebisync's wire format: message kinds, varints, bounded
// decoding with typed errors, and lz4 block framing.
//
// Every decoder in this package treats its input as hostile: each length read
// from the input is checked against what remains and against a documented
// maximum before anything is allocated, and no input makes it panic.
// docs/PROTOCOL.md describes every byte.
package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"unicode/utf8"
)

// Typed decoding errors. Every error returned by a decoder in this package
// wraps one of these, so callers can classify a bad peer with errors.Is.
var (
	// ErrTruncated means the input ended before a value was complete.
	ErrTruncated = errors.New("wire: truncated input")
	// ErrOverflow means a varint does not fit in 64 bits, or a value does not
	// fit in its declared size.
	ErrOverflow = errors.New("wire: varint overflow")
	// ErrTooLarge means a length or count exceeds its bound.
	ErrTooLarge = errors.New("wire: length exceeds limit")
	// ErrMalformed means the input is structurally invalid: an unknown kind,
	// op or status, trailing bytes, or an impossible value.
	ErrMalformed = errors.New("wire: malformed input")
)

// Writer appends encoded values to a byte slice. The zero value is ready to
// use. It never fails; its buffer grows as needed and is reused after Reset.
type Writer struct {
	B []byte
}

// Reset empties the buffer, keeping its capacity.
func (w *Writer) Reset() { w.B = w.B[:0] }

// Len returns the number of bytes written.
func (w *Writer) Len() int { return len(w.B) }

// Byte appends one byte.
func (w *Writer) Byte(b byte) { w.B = append(w.B, b) }

// Bool appends 1 for true, 0 for false.
func (w *Writer) Bool(v bool) {
	if v {
		w.B = append(w.B, 1)
	} else {
		w.B = append(w.B, 0)
	}
}

// Uvarint appends v as an unsigned LEB128 varint.
func (w *Writer) Uvarint(v uint64) { w.B = binary.AppendUvarint(w.B, v) }

// Varint appends v zigzag-encoded as a varint.
func (w *Writer) Varint(v int64) { w.B = binary.AppendVarint(w.B, v) }

// U16 appends v little-endian.
func (w *Writer) U16(v uint16) { w.B = binary.LittleEndian.AppendUint16(w.B, v) }

// U32 appends v little-endian.
func (w *Writer) U32(v uint32) { w.B = binary.LittleEndian.AppendUint32(w.B, v) }

// U64 appends v little-endian.
func (w *Writer) U64(v uint64) { w.B = binary.LittleEndian.AppendUint64(w.B, v) }

// F32 appends the IEEE-754 bits of v little-endian.
func (w *Writer) F32(v float32) { w.U32(math.Float32bits(v)) }

// F64 appends the IEEE-754 bits of v little-endian.
func (w *Writer) F64(v float64) { w.U64(math.Float64bits(v)) }

// String appends a uvarint length and the bytes of s.
func (w *Writer) String(s string) {
	w.Uvarint(uint64(len(s)))
	w.B = append(w.B, s...)
}

// Bytes appends a uvarint length and b.
func (w *Writer) Bytes(b []byte) {
	w.Uvarint(uint64(len(b)))
	w.B = append(w.B, b...)
}

// Raw appends b as is, without a length.
func (w *Writer) Raw(b []byte) { w.B = append(w.B, b...) }

// Reader decodes values from a byte slice. The first error is sticky: once a
// read fails, every later read returns a zero value and Err reports the first
// failure, so a decoder can read a whole structure and check once.
type Reader struct {
	b   []byte
	off int
	err error
}

// NewReader returns a Reader over b. It does not copy b.
func NewReader(b []byte) *Reader { return &Reader{b: b} }

// Reset points the Reader at b and clears its error.
func (r *Reader) Reset(b []byte) { r.b, r.off, r.err = b, 0, nil }

// Err returns the first error encountered, or nil.
func (r *Reader) Err() error { return r.err }

// Remaining returns the number of unread bytes.
func (r *Reader) Remaining() int { return len(r.b) - r.off }

// Offset returns the number of bytes consumed so far.
func (r *Reader) Offset() int { return r.off }

// Fail records err (wrapped with the offset) unless an error is already
// recorded. It is how higher-level decoders report semantic errors.
func (r *Reader) Fail(err error) {
	if r.err == nil {
		r.err = fmt.Errorf("at byte %d: %w", r.off, err)
		r.off = len(r.b)
	}
}

// Failf records a formatted error wrapping kind (one of the Err values).
func (r *Reader) Failf(kind error, format string, args ...any) {
	r.Fail(fmt.Errorf("%w: %s", kind, fmt.Sprintf(format, args...)))
}

// Byte reads one byte.
func (r *Reader) Byte() byte {
	if r.err != nil {
		return 0
	}
	if r.off >= len(r.b) {
		r.Fail(ErrTruncated)
		return 0
	}
	v := r.b[r.off]
	r.off++
	return v
}

// Bool reads a byte that must be 0 or 1.
func (r *Reader) Bool() bool {
	v := r.Byte()
	if v > 1 {
		r.Failf(ErrMalformed, "bool byte %d", v)
		return false
	}
	return v == 1
}

// Uvarint reads an unsigned varint.
func (r *Reader) Uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b[r.off:])
	if n == 0 {
		r.Fail(ErrTruncated)
		return 0
	}
	if n < 0 {
		r.Fail(ErrOverflow)
		return 0
	}
	r.off += n
	return v
}

// UvarintMax reads an unsigned varint and fails with ErrTooLarge if it
// exceeds max. what names the value in the error.
func (r *Reader) UvarintMax(max uint64, what string) uint64 {
	return r.uvarintMax(max, what, "")
}

// uvarintMax is UvarintMax naming the value what+suffix, joined only on
// failure so that the success path does not allocate.
func (r *Reader) uvarintMax(max uint64, what, suffix string) uint64 {
	v := r.Uvarint()
	if v > max {
		r.Failf(ErrTooLarge, "%s%s %d exceeds %d", what, suffix, v, max)
		return 0
	}
	return v
}

// Varint reads a zigzag-encoded signed varint.
func (r *Reader) Varint() int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b[r.off:])
	if n == 0 {
		r.Fail(ErrTruncated)
		return 0
	}
	if n < 0 {
		r.Fail(ErrOverflow)
		return 0
	}
	r.off += n
	return v
}

// Raw returns the next n bytes without copying. The result aliases the input.
func (r *Reader) Raw(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || n > len(r.b)-r.off {
		r.Fail(ErrTruncated)
		return nil
	}
	v := r.b[r.off : r.off+n : r.off+n]
	r.off += n
	return v
}

// U16 reads a little-endian uint16.
func (r *Reader) U16() uint16 {
	b := r.Raw(2)
	if b == nil {
		return 0
	}
	return binary.LittleEndian.Uint16(b)
}

// U32 reads a little-endian uint32.
func (r *Reader) U32() uint32 {
	b := r.Raw(4)
	if b == nil {
		return 0
	}
	return binary.LittleEndian.Uint32(b)
}

// U64 reads a little-endian uint64.
func (r *Reader) U64() uint64 {
	b := r.Raw(8)
	if b == nil {
		return 0
	}
	return binary.LittleEndian.Uint64(b)
}

// F32 reads IEEE-754 bits little-endian.
func (r *Reader) F32() float32 { return math.Float32frombits(r.U32()) }

// F64 reads IEEE-754 bits little-endian.
func (r *Reader) F64() float64 { return math.Float64frombits(r.U64()) }

// BytesMax reads a uvarint length, bounded by max and by the remaining input,
// and returns that many bytes without copying.
func (r *Reader) BytesMax(max int, what string) []byte {
	n := r.uvarintMax(uint64(max), what, " length")
	if r.err != nil {
		return nil
	}
	if n > uint64(r.Remaining()) {
		r.Failf(ErrTruncated, "%s of %d bytes, %d remain", what, n, r.Remaining())
		return nil
	}
	return r.Raw(int(n))
}

// StringMax reads a length-prefixed string bounded by max bytes. It copies.
func (r *Reader) StringMax(max int, what string) string {
	return string(r.BytesMax(max, what))
}

// TextMax reads a length-prefixed string bounded by max bytes that must be
// valid UTF-8 (else ErrMalformed). It copies.
func (r *Reader) TextMax(max int, what string) string {
	b := r.BytesMax(max, what)
	if r.err != nil {
		return ""
	}
	if !utf8.Valid(b) {
		r.Failf(ErrMalformed, "%s is not valid UTF-8", what)
		return ""
	}
	return string(b)
}

// Count reads a uvarint element count, bounded by max and by the remaining
// input divided by minSize (the smallest encoding of one element), so a
// count can never make the caller allocate more than the input justifies.
func (r *Reader) Count(max int, minSize int, what string) int {
	n := r.uvarintMax(uint64(max), what, " count")
	if r.err != nil {
		return 0
	}
	if minSize < 1 {
		minSize = 1
	}
	if n > uint64(r.Remaining()/minSize) {
		r.Failf(ErrTruncated, "%d %s cannot fit in %d bytes", n, what, r.Remaining())
		return 0
	}
	return int(n)
}

// End fails with ErrMalformed if unread bytes remain, and returns Err.
func (r *Reader) End() error {
	if r.err == nil && r.off != len(r.b) {
		r.Failf(ErrMalformed, "%d trailing bytes", len(r.b)-r.off)
	}
	return r.err
}
