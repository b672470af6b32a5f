package wire_test

import (
	"errors"
	"math"
	"testing"

	"github.com/ebisync/ebisync/internal/wire"
)

func TestWriterReaderRoundTrip(t *testing.T) {
	var w wire.Writer
	w.Byte(0xab)
	w.Bool(true)
	w.Bool(false)
	w.Uvarint(math.MaxUint64)
	w.Varint(math.MinInt64)
	w.U16(0xbeef)
	w.U32(0xdeadbeef)
	w.U64(1 << 63)
	w.F32(-1.5)
	w.F64(math.Pi)
	w.String("héllo")
	w.Bytes([]byte{1, 2, 3})
	w.Raw([]byte{9})
	n := w.Len()

	r := wire.NewReader(w.B)
	assert(t, r.Byte() == 0xab, "Byte")
	assert(t, r.Bool() && !r.Bool(), "Bool")
	assert(t, r.Uvarint() == math.MaxUint64, "Uvarint")
	assert(t, r.Varint() == math.MinInt64, "Varint")
	assert(t, r.U16() == 0xbeef, "U16")
	assert(t, r.U32() == 0xdeadbeef, "U32")
	assert(t, r.U64() == 1<<63, "U64")
	assert(t, r.F32() == -1.5, "F32")
	assert(t, r.F64() == math.Pi, "F64")
	assert(t, r.StringMax(10, "s") == "héllo", "StringMax")
	assert(t, string(r.BytesMax(3, "b")) == "\x01\x02\x03", "BytesMax")
	assert(t, r.Raw(1)[0] == 9, "Raw")
	assert(t, r.Offset() == n && r.Remaining() == 0, "offset %d of %d", r.Offset(), n)
	assert(t, r.End() == nil, "End: %v", r.End())

	w.Reset()
	assert(t, w.Len() == 0, "Reset kept %d bytes", w.Len())
}

func TestReaderStickyError(t *testing.T) {
	r := wire.NewReader([]byte{0x80}) // a varint cut short
	assert(t, r.Varint() == 0, "Varint on truncated input")
	assert(t, errors.Is(r.Err(), wire.ErrTruncated), "Err = %v", r.Err())
	first := r.Err()
	assert(t, r.U32() == 0 && r.F32() == 0 && r.U16() == 0, "reads after an error return zero")
	r.Failf(wire.ErrMalformed, "later")
	assert(t, r.Err() == first && r.End() == first, "the first error is not sticky")

	r.Reset([]byte{2, 'o', 'k', 0xff})
	assert(t, r.Err() == nil && r.StringMax(2, "s") == "ok", "Reset did not clear the error")
	assert(t, errors.Is(r.End(), wire.ErrMalformed), "trailing byte: %v", r.Err())

	r.Reset([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02}) // a 10th byte > 1
	r.Varint()
	assert(t, errors.Is(r.Err(), wire.ErrOverflow), "70-bit varint: %v", r.Err())

	r.Reset([]byte{3, 1})
	assert(t, r.Count(10, 0, "things") == 0 && errors.Is(r.Err(), wire.ErrTruncated), "Count beyond input: %v", r.Err())
	r.Reset([]byte{2, 1})
	assert(t, r.Bool() == false && errors.Is(r.Err(), wire.ErrMalformed), "Bool(2): %v", r.Err())
	r.Reset([]byte{1, 0xff})
	assert(t, r.TextMax(1, "t") == "" && errors.Is(r.Err(), wire.ErrMalformed), "TextMax invalid UTF-8: %v", r.Err())
	r.Reset([]byte{5, 1})
	assert(t, r.BytesMax(10, "b") == nil && errors.Is(r.Err(), wire.ErrTruncated), "BytesMax beyond input: %v", r.Err())
}
