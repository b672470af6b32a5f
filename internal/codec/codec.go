package codec

import (
	"bytes"
	"encoding/binary"
	"math"
	"unsafe"

	"github.com/ebisync/ebisync/internal/wire"
)

// quantLimit clamps quantised integers. Up to 2^51 steps, a float64
// receiver's value q*step maps back to exactly q (and a float32 one to a
// step that then stays put), so deltas, which the receiver applies to the
// step of its own value, never drift. Above 2^51, q*step/step can round to
// a neighbouring integer, and would again after each re-encoding. The limit
// also keeps differences of two step counts far from overflow.
const quantLimit = 1 << 51

// quantise maps v to its integer number of steps. NaN maps to 0 and
// infinities clamp, so hostile or broken values cannot overflow.
func quantise(v, step float64) int64 {
	q := math.Round(v / step)
	switch {
	case q != q:
		return 0
	case q > quantLimit:
		return quantLimit
	case q < -quantLimit:
		return -quantLimit
	}
	return int64(q)
}

// appendFields appends the full encoding of the leaves fs of the value at p.
func appendFields(dst []byte, fs []field, p unsafe.Pointer) []byte {
	for i := range fs {
		dst = appendField(dst, &fs[i], p)
	}
	return dst
}

func appendField(dst []byte, f *field, p unsafe.Pointer) []byte {
	fp := f.ptr(p)
	switch f.kind {
	case kBool:
		if *(*bool)(fp) {
			return append(dst, 1)
		}
		return append(dst, 0)
	case kInt8:
		return binary.AppendVarint(dst, int64(*(*int8)(fp)))
	case kInt16:
		return binary.AppendVarint(dst, int64(*(*int16)(fp)))
	case kInt32:
		return binary.AppendVarint(dst, int64(*(*int32)(fp)))
	case kInt64:
		return binary.AppendVarint(dst, *(*int64)(fp))
	case kInt:
		return binary.AppendVarint(dst, int64(*(*int)(fp)))
	case kUint8:
		return binary.AppendUvarint(dst, uint64(*(*uint8)(fp)))
	case kUint16:
		return binary.AppendUvarint(dst, uint64(*(*uint16)(fp)))
	case kUint32:
		return binary.AppendUvarint(dst, uint64(*(*uint32)(fp)))
	case kUint64:
		return binary.AppendUvarint(dst, *(*uint64)(fp))
	case kUint:
		return binary.AppendUvarint(dst, uint64(*(*uint)(fp)))
	case kFloat32:
		v := *(*float32)(fp)
		if f.step != 0 {
			return binary.AppendVarint(dst, quantise(float64(v), f.step))
		}
		return binary.LittleEndian.AppendUint32(dst, math.Float32bits(v))
	case kFloat64:
		v := *(*float64)(fp)
		if f.step != 0 {
			return binary.AppendVarint(dst, quantise(v, f.step))
		}
		return binary.LittleEndian.AppendUint64(dst, math.Float64bits(v))
	case kString:
		s := *(*string)(fp)
		dst = binary.AppendUvarint(dst, uint64(len(s)))
		return append(dst, s...)
	case kBytes:
		b := *(*[]byte)(fp)
		dst = binary.AppendUvarint(dst, uint64(len(b)))
		return append(dst, b...)
	case kEntity:
		r := Ref(*(*uint64)(fp))
		dst = binary.AppendUvarint(dst, uint64(r.ID()))
		if r.ID() == 0 {
			return dst
		}
		return binary.AppendUvarint(dst, uint64(r.Gen()))
	case kArray:
		a := f.arr
		for i := 0; i < a.n; i++ {
			dst = appendFields(dst, a.elem, unsafe.Add(fp, uintptr(i)*a.stride))
		}
		return dst
	}
	return dst
}

// readFields decodes the full encoding of fs from r into p. With p nil it
// only validates and skips.
func readFields(r *wire.Reader, fs []field, p unsafe.Pointer) {
	for i := range fs {
		readField(r, &fs[i], p)
		if r.Err() != nil {
			return
		}
	}
}

func readField(r *wire.Reader, f *field, p unsafe.Pointer) {
	var fp unsafe.Pointer
	if p != nil {
		fp = f.ptr(p)
	}
	switch f.kind {
	case kBool:
		v := r.Bool()
		if fp != nil {
			*(*bool)(fp) = v
		}
	case kInt8, kInt16, kInt32, kInt64, kInt:
		v := r.Varint()
		if r.Err() != nil {
			return
		}
		if !fitsSigned(f.kind, v) {
			r.Failf(wire.ErrOverflow, "field %s: %d does not fit %s", f.path, v, memType(f))
			return
		}
		if fp != nil {
			storeSigned(f.kind, fp, v)
		}
	case kUint8, kUint16, kUint32, kUint64, kUint:
		v := r.Uvarint()
		if r.Err() != nil {
			return
		}
		if !fitsUnsigned(f.kind, v) {
			r.Failf(wire.ErrOverflow, "field %s: %d does not fit %s", f.path, v, memType(f))
			return
		}
		if fp != nil {
			storeUnsigned(f.kind, fp, v)
		}
	case kFloat32:
		if f.step != 0 {
			if q, ok := readSteps(r, f); ok && fp != nil {
				*(*float32)(fp) = float32(float64(q) * f.step)
			}
			return
		}
		v := r.F32()
		if fp != nil {
			*(*float32)(fp) = v
		}
	case kFloat64:
		if f.step != 0 {
			if q, ok := readSteps(r, f); ok && fp != nil {
				*(*float64)(fp) = float64(q) * f.step
			}
			return
		}
		v := r.F64()
		if fp != nil {
			*(*float64)(fp) = v
		}
	case kString:
		b := readBlob(r, f)
		if fp != nil && r.Err() == nil {
			sp := (*string)(fp)
			if *sp != string(b) {
				*sp = string(b)
			}
		}
	case kBytes:
		b := readBlob(r, f)
		if fp != nil && r.Err() == nil {
			// Never write into the destination's backing array: a plain Go
			// assignment may have shared it with another value.
			bp := (*[]byte)(fp)
			switch {
			case len(b) == 0:
				*bp = nil
			case !bytes.Equal(*bp, b):
				*bp = bytes.Clone(b)
			}
		}
	case kEntity:
		id := r.Uvarint()
		var gen uint64
		if id != 0 {
			gen = r.Uvarint()
		}
		if r.Err() != nil {
			return
		}
		if id > math.MaxUint32 || gen > math.MaxUint32 {
			r.Failf(wire.ErrOverflow, "field %s: entity %d generation %d out of range", f.path, id, gen)
			return
		}
		if fp != nil {
			*(*uint64)(fp) = uint64(MakeRef(uint32(id), uint32(gen)))
		}
	case kArray:
		a := f.arr
		for i := 0; i < a.n && r.Err() == nil; i++ {
			var ep unsafe.Pointer
			if fp != nil {
				ep = unsafe.Add(fp, uintptr(i)*a.stride)
			}
			readFields(r, a.elem, ep)
		}
	}
}

// readBlob reads the uvarint length and bytes of a string or []byte field,
// bounded by wire.MaxValueLen and by the input, without copying and without
// allocating on success.
func readBlob(r *wire.Reader, f *field) []byte {
	n := r.Uvarint()
	if r.Err() != nil {
		return nil
	}
	if n > wire.MaxValueLen {
		r.Failf(wire.ErrTooLarge, "field %s: length %d exceeds %d", f.path, n, wire.MaxValueLen)
		return nil
	}
	if n > uint64(r.Remaining()) {
		r.Failf(wire.ErrTruncated, "field %s: %d bytes, %d remain", f.path, n, r.Remaining())
		return nil
	}
	return r.Raw(int(n))
}

// memType names the in-memory type of an integer field for messages.
func memType(f *field) string {
	switch f.kind {
	case kInt:
		return "int"
	case kUint:
		return "uint"
	}
	return f.typeStr
}

// readSteps reads a quantised value's step count, refusing one past the
// clamp the encoder applies.
func readSteps(r *wire.Reader, f *field) (int64, bool) {
	q := r.Varint()
	if r.Err() != nil {
		return 0, false
	}
	if q > quantLimit || q < -quantLimit {
		r.Failf(wire.ErrOverflow, "field %s: %d steps out of range", f.path, q)
		return 0, false
	}
	return q, true
}

func fitsSigned(k kind, v int64) bool {
	switch k {
	case kInt8:
		return v >= math.MinInt8 && v <= math.MaxInt8
	case kInt16:
		return v >= math.MinInt16 && v <= math.MaxInt16
	case kInt32:
		return v >= math.MinInt32 && v <= math.MaxInt32
	case kInt:
		return v >= math.MinInt && v <= math.MaxInt
	}
	return true
}

func fitsUnsigned(k kind, v uint64) bool {
	switch k {
	case kUint8:
		return v <= math.MaxUint8
	case kUint16:
		return v <= math.MaxUint16
	case kUint32:
		return v <= math.MaxUint32
	case kUint:
		return v <= math.MaxUint
	}
	return true
}

func storeSigned(k kind, fp unsafe.Pointer, v int64) {
	switch k {
	case kInt8:
		*(*int8)(fp) = int8(v)
	case kInt16:
		*(*int16)(fp) = int16(v)
	case kInt32:
		*(*int32)(fp) = int32(v)
	case kInt64:
		*(*int64)(fp) = v
	case kInt:
		*(*int)(fp) = int(v)
	}
}

func storeUnsigned(k kind, fp unsafe.Pointer, v uint64) {
	switch k {
	case kUint8:
		*(*uint8)(fp) = uint8(v)
	case kUint16:
		*(*uint16)(fp) = uint16(v)
	case kUint32:
		*(*uint32)(fp) = uint32(v)
	case kUint64:
		*(*uint64)(fp) = v
	case kUint:
		*(*uint)(fp) = uint(v)
	}
}

// loadInt reads an integer field widened to 64 bits (unsigned as bits).
func loadInt(k kind, fp unsafe.Pointer) uint64 {
	switch k {
	case kInt8:
		return uint64(*(*int8)(fp))
	case kInt16:
		return uint64(*(*int16)(fp))
	case kInt32:
		return uint64(*(*int32)(fp))
	case kInt64:
		return *(*uint64)(fp)
	case kUint8:
		return uint64(*(*uint8)(fp))
	case kUint16:
		return uint64(*(*uint16)(fp))
	case kUint32:
		return uint64(*(*uint32)(fp))
	case kUint64:
		return *(*uint64)(fp)
	case kInt:
		return uint64(*(*int)(fp))
	case kUint:
		return uint64(*(*uint)(fp))
	}
	return 0
}

// intDiff returns new-old wrapped to the field's wire width, as a signed
// value. int and uint fields use 64 bits whatever their size in memory, so
// 32- and 64-bit peers agree on the wire.
func intDiff(k kind, old, new uint64) int64 {
	d := new - old
	switch k {
	case kInt8, kUint8:
		return int64(int8(d))
	case kInt16, kUint16:
		return int64(int16(d))
	case kInt32, kUint32:
		return int64(int32(d))
	}
	return int64(d)
}

// diffFits reports whether a decoded difference is one the encoder can
// produce for the field's width.
func diffFits(k kind, d int64) bool {
	switch k {
	case kInt8, kUint8:
		return d >= math.MinInt8 && d <= math.MaxInt8
	case kInt16, kUint16:
		return d >= math.MinInt16 && d <= math.MaxInt16
	case kInt32, kUint32:
		return d >= math.MinInt32 && d <= math.MaxInt32
	}
	return true
}

// storeIntBits writes the low bits of v into an integer field.
func storeIntBits(k kind, fp unsafe.Pointer, v uint64) {
	switch k {
	case kInt8, kUint8:
		*(*uint8)(fp) = uint8(v)
	case kInt16, kUint16:
		*(*uint16)(fp) = uint16(v)
	case kInt32, kUint32:
		*(*uint32)(fp) = uint32(v)
	case kInt64, kUint64:
		*(*uint64)(fp) = v
	case kInt, kUint:
		*(*uint)(fp) = uint(v)
	}
}

func isInt(k kind) bool { return k >= kInt8 && k <= kUint64 || k == kInt || k == kUint }

// fieldsEqual compares leaves fs of the values at a and b; quantised floats
// compare by step.
func fieldsEqual(fs []field, a, b unsafe.Pointer) bool {
	for i := range fs {
		if !fieldEqual(&fs[i], a, b) {
			return false
		}
	}
	return true
}

func fieldEqual(f *field, a, b unsafe.Pointer) bool {
	ap, bp := f.ptr(a), f.ptr(b)
	switch f.kind {
	case kBool, kInt8, kUint8:
		return *(*uint8)(ap) == *(*uint8)(bp)
	case kInt16, kUint16:
		return *(*uint16)(ap) == *(*uint16)(bp)
	case kInt32, kUint32:
		return *(*uint32)(ap) == *(*uint32)(bp)
	case kInt64, kUint64, kEntity:
		return *(*uint64)(ap) == *(*uint64)(bp)
	case kInt, kUint:
		return *(*uint)(ap) == *(*uint)(bp)
	case kFloat32:
		x, y := *(*float32)(ap), *(*float32)(bp)
		if f.step != 0 {
			return quantise(float64(x), f.step) == quantise(float64(y), f.step)
		}
		return math.Float32bits(x) == math.Float32bits(y)
	case kFloat64:
		x, y := *(*float64)(ap), *(*float64)(bp)
		if f.step != 0 {
			return quantise(x, f.step) == quantise(y, f.step)
		}
		return math.Float64bits(x) == math.Float64bits(y)
	case kString:
		return *(*string)(ap) == *(*string)(bp)
	case kBytes:
		x, y := *(*[]byte)(ap), *(*[]byte)(bp)
		return string(x) == string(y)
	case kArray:
		arr := f.arr
		for i := 0; i < arr.n; i++ {
			o := uintptr(i) * arr.stride
			if !fieldsEqual(arr.elem, unsafe.Add(ap, o), unsafe.Add(bp, o)) {
				return false
			}
		}
		return true
	}
	return true
}

// diffMask returns the change mask between the values at old and new.
func diffMask(fs []field, old, new unsafe.Pointer) uint64 {
	var m uint64
	for i := range fs {
		if !fieldEqual(&fs[i], old, new) {
			m |= 1 << uint(i)
		}
	}
	return m
}

// maskBytes is the number of bytes of a change mask for n fields.
func maskBytes(n int) int { return (n + 7) / 8 }

// appendDelta appends the delta encoding of new against old for mask. Mask
// bits past the last field are ignored, so the output is always valid.
func appendDelta(dst []byte, fs []field, old, new unsafe.Pointer, mask uint64) []byte {
	if len(fs) < 64 {
		mask &= 1<<uint(len(fs)) - 1
	}
	for i := 0; i < maskBytes(len(fs)); i++ {
		dst = append(dst, byte(mask>>(8*uint(i))))
	}
	for i := range fs {
		if mask&(1<<uint(i)) == 0 {
			continue
		}
		f := &fs[i]
		switch {
		case f.kind == kBool:
			// The mask bit alone flips it.
		case isInt(f.kind):
			dst = binary.AppendVarint(dst, intDiff(f.kind, loadInt(f.kind, f.ptr(old)), loadInt(f.kind, f.ptr(new))))
		case f.kind == kFloat32 && f.step != 0:
			dst = binary.AppendVarint(dst, quantise(float64(*(*float32)(f.ptr(new))), f.step)-quantise(float64(*(*float32)(f.ptr(old))), f.step))
		case f.kind == kFloat64 && f.step != 0:
			dst = binary.AppendVarint(dst, quantise(*(*float64)(f.ptr(new)), f.step)-quantise(*(*float64)(f.ptr(old)), f.step))
		default:
			dst = appendField(dst, f, new)
		}
	}
	return dst
}

// readDelta decodes a delta from r and applies it onto p. With p nil it only
// validates and skips. Validation never depends on p, so a caller can
// validate with p nil and then apply knowing the apply cannot fail.
func readDelta(r *wire.Reader, fs []field, p unsafe.Pointer) {
	var mask uint64
	nb := maskBytes(len(fs))
	mb := r.Raw(nb)
	if r.Err() != nil {
		return
	}
	for i, b := range mb {
		mask |= uint64(b) << (8 * uint(i))
	}
	if len(fs) < 64 && mask>>uint(len(fs)) != 0 {
		r.Failf(wire.ErrMalformed, "change mask %#x has bits past %d fields", mask, len(fs))
		return
	}
	for i := range fs {
		if mask&(1<<uint(i)) == 0 {
			continue
		}
		f := &fs[i]
		var fp unsafe.Pointer
		if p != nil {
			fp = f.ptr(p)
		}
		switch {
		case f.kind == kBool:
			if fp != nil {
				*(*bool)(fp) = !*(*bool)(fp)
			}
		case isInt(f.kind):
			d := r.Varint()
			if r.Err() != nil {
				return
			}
			if !diffFits(f.kind, d) {
				r.Failf(wire.ErrOverflow, "field %s: difference %d does not fit %s", f.path, d, f.typeStr)
				return
			}
			if fp != nil {
				storeIntBits(f.kind, fp, loadInt(f.kind, fp)+uint64(d))
			}
		case (f.kind == kFloat32 || f.kind == kFloat64) && f.step != 0:
			d := r.Varint()
			if r.Err() != nil {
				return
			}
			if d > 2*quantLimit || d < -2*quantLimit {
				r.Failf(wire.ErrOverflow, "field %s: difference of %d steps out of range", f.path, d)
				return
			}
			if fp != nil {
				if f.kind == kFloat32 {
					q := clampQ(quantise(float64(*(*float32)(fp)), f.step) + d)
					*(*float32)(fp) = float32(float64(q) * f.step)
				} else {
					q := clampQ(quantise(*(*float64)(fp), f.step) + d)
					*(*float64)(fp) = float64(q) * f.step
				}
			}
		default:
			readField(r, f, p)
		}
		if r.Err() != nil {
			return
		}
	}
}

func clampQ(q int64) int64 {
	if q > quantLimit {
		return quantLimit
	}
	if q < -quantLimit {
		return -quantLimit
	}
	return q
}

// copyFields copies the leaves fs of the value at src into dst, []byte
// leaves deeply (an empty one becomes nil).
func copyFields(fs []field, dst, src unsafe.Pointer) {
	for i := range fs {
		f := &fs[i]
		dp, sp := f.ptr(dst), f.ptr(src)
		switch f.kind {
		case kBool, kInt8, kUint8:
			*(*uint8)(dp) = *(*uint8)(sp)
		case kInt16, kUint16:
			*(*uint16)(dp) = *(*uint16)(sp)
		case kInt32, kUint32, kFloat32:
			*(*uint32)(dp) = *(*uint32)(sp)
		case kInt64, kUint64, kFloat64, kEntity:
			*(*uint64)(dp) = *(*uint64)(sp)
		case kInt, kUint:
			*(*uint)(dp) = *(*uint)(sp)
		case kString:
			*(*string)(dp) = *(*string)(sp)
		case kBytes:
			b := *(*[]byte)(sp)
			if len(b) == 0 {
				*(*[]byte)(dp) = nil
			} else {
				*(*[]byte)(dp) = append([]byte(nil), b...)
			}
		case kArray:
			for j := 0; j < f.arr.n; j++ {
				o := uintptr(j) * f.arr.stride
				copyFields(f.arr.elem, unsafe.Add(dp, o), unsafe.Add(sp, o))
			}
		}
	}
}

// copyBytesFields replaces every []byte leaf of the value at p with a
// private copy, after a shallow copy made it alias another value's.
func copyBytesFields(fs []field, p unsafe.Pointer) {
	for i := range fs {
		f := &fs[i]
		switch f.kind {
		case kBytes:
			bp := (*[]byte)(f.ptr(p))
			if *bp != nil {
				*bp = append([]byte(nil), *bp...)
			}
		case kArray:
			for j := 0; j < f.arr.n; j++ {
				copyBytesFields(f.arr.elem, unsafe.Add(f.ptr(p), uintptr(j)*f.arr.stride))
			}
		}
	}
}

// lerpFields writes into out the interpolation between a and b at t:
// floats are interpolated, every other field takes b's value. The form
// x*(1-t) + y*t is exact at both ends for finite values, so t=1 gives b
// exactly (x + (y-x)*t does not when x and y differ in magnitude or sign).
func lerpFields(fs []field, out, a, b unsafe.Pointer, t float64) {
	for i := range fs {
		f := &fs[i]
		switch f.kind {
		case kFloat32:
			x, y := float64(*(*float32)(f.ptr(a))), float64(*(*float32)(f.ptr(b)))
			*(*float32)(f.ptr(out)) = float32(x*(1-t) + y*t)
		case kFloat64:
			x, y := *(*float64)(f.ptr(a)), *(*float64)(f.ptr(b))
			*(*float64)(f.ptr(out)) = x*(1-t) + y*t
		case kArray:
			for j := 0; j < f.arr.n; j++ {
				o := uintptr(j) * f.arr.stride
				lerpFields(f.arr.elem, unsafe.Add(f.ptr(out), o), unsafe.Add(f.ptr(a), o), unsafe.Add(f.ptr(b), o), t)
			}
		}
	}
}
