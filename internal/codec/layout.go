package codec

import (
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"unsafe"
)

// kind is the wire kind of one leaf field.
type kind uint8

const (
	kBool kind = iota + 1
	kInt8
	kInt16
	kInt32
	kInt64
	kUint8
	kUint16
	kUint32
	kUint64
	kFloat32
	kFloat64
	kString
	kBytes
	kArray
	kInt    // Go int: int64 on the wire, native width in memory
	kUint   // Go uint: uint64 on the wire, native width in memory
	kEntity // donburi.Entity: a reference, as a Ref in memory while encoded or decoded
)

// maxFields bounds the leaf fields of one component, so a change mask fits
// in a uint64.
const maxFields = 64

// field is one leaf of a flattened struct layout.
type field struct {
	name    string // dotted path, relative to the array element inside arrays
	path    string // full path for error messages, e.g. "Slots[].ID"
	typeStr string // Go-like type string, part of the schema
	kind    kind
	off     uintptr
	step    float64 // quantisation step, 0 when not quantised
	arr     *arrayLayout
}

// arrayLayout describes a fixed array field: n elements of stride bytes,
// each encoded with elem (offsets relative to the element).
type arrayLayout struct {
	n      int
	stride uintptr
	elem   []field
}

// buildLayout flattens the exported fields of struct type t into leaves.
// It returns an error naming the first unsupported field.
func buildLayout(t reflect.Type) ([]field, error) {
	var out []field
	if t.Kind() != reflect.Struct {
		f, err := leaf(t, "value", 0, 0, "value")
		if err != nil {
			return nil, err
		}
		return []field{f}, nil
	}
	if err := flatten(t, "", "", 0, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// flatten appends the leaves of struct type t. prefix starts the schema
// names; pathPrefix starts the full paths used in messages (they differ
// inside array elements, whose names are relative to the element).
func flatten(t reflect.Type, prefix, pathPrefix string, base uintptr, out *[]field) error {
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		if !sf.IsExported() {
			continue
		}
		tag := sf.Tag.Get("ebisync")
		if tag == "-" {
			continue
		}
		name := prefix + sf.Name
		path := pathPrefix + sf.Name
		step, err := parseTag(tag, path)
		if err != nil {
			return err
		}
		if sf.Type.Kind() == reflect.Struct {
			if step != 0 {
				return fmt.Errorf("field %s: q= applies to float fields, not a struct", path)
			}
			if err := flatten(sf.Type, name+".", path+".", base+sf.Offset, out); err != nil {
				return err
			}
			continue
		}
		f, err := leaf(sf.Type, name, base+sf.Offset, step, path)
		if err != nil {
			return err
		}
		*out = append(*out, f)
	}
	return nil
}

func parseTag(tag, name string) (float64, error) {
	if tag == "" {
		return 0, nil
	}
	var step float64
	for _, part := range strings.Split(tag, ",") {
		part = strings.TrimSpace(part)
		v, ok := strings.CutPrefix(part, "q=")
		if !ok {
			return 0, fmt.Errorf("field %s: unknown ebisync tag option %q", name, part)
		}
		q, err := strconv.ParseFloat(v, 64)
		if err != nil || !(q > 0) || math.IsInf(q, 0) {
			return 0, fmt.Errorf("field %s: bad quantisation step %q: want a positive number", name, v)
		}
		step = q
	}
	return step, nil
}

// leaf builds the field for a non-struct type (arrays recurse).
func leaf(t reflect.Type, name string, off uintptr, step float64, path string) (field, error) {
	f := field{name: name, path: path, off: off, step: step}
	if t == entityType {
		f.kind, f.typeStr = kEntity, "entity"
		if step != 0 {
			return f, fmt.Errorf("field %s: q= applies to float fields, not an entity reference", path)
		}
		return f, nil
	}
	switch t.Kind() {
	case reflect.Bool:
		f.kind, f.typeStr = kBool, "bool"
	case reflect.Int8:
		f.kind, f.typeStr = kInt8, "int8"
	case reflect.Int16:
		f.kind, f.typeStr = kInt16, "int16"
	case reflect.Int32:
		f.kind, f.typeStr = kInt32, "int32"
	case reflect.Int64:
		f.kind, f.typeStr = kInt64, "int64"
	case reflect.Int:
		// The wire and the schema do not distinguish int from int64, so
		// 32- and 64-bit peers agree; memory is accessed at native width.
		f.kind, f.typeStr = kInt, "int64"
	case reflect.Uint8:
		f.kind, f.typeStr = kUint8, "uint8"
	case reflect.Uint16:
		f.kind, f.typeStr = kUint16, "uint16"
	case reflect.Uint32:
		f.kind, f.typeStr = kUint32, "uint32"
	case reflect.Uint64:
		f.kind, f.typeStr = kUint64, "uint64"
	case reflect.Uint:
		f.kind, f.typeStr = kUint, "uint64"
	case reflect.Float32:
		f.kind, f.typeStr = kFloat32, "float32"
	case reflect.Float64:
		f.kind, f.typeStr = kFloat64, "float64"
	case reflect.String:
		f.kind, f.typeStr = kString, "string"
	case reflect.Slice:
		if t.Elem().Kind() != reflect.Uint8 {
			return f, fmt.Errorf("field %s: unsupported type %s (slices other than []byte are not synced; use a fixed array or a custom codec)", path, t)
		}
		f.kind, f.typeStr = kBytes, "[]byte"
	case reflect.Array:
		elemT := t.Elem()
		var elem []field
		if elemT.Kind() == reflect.Struct {
			if step != 0 {
				return f, fmt.Errorf("field %s: q= applies to float fields, not an array of structs", path)
			}
			if err := flatten(elemT, "", path+"[].", 0, &elem); err != nil {
				return f, err
			}
		} else {
			e, err := leaf(elemT, "", 0, step, path+"[]")
			if err != nil {
				return f, err
			}
			elem = []field{e}
		}
		f.kind = kArray
		f.arr = &arrayLayout{n: t.Len(), stride: elemT.Size(), elem: elem}
		f.typeStr = fmt.Sprintf("[%d]%s", t.Len(), layoutTypeString(elemT, elem))
		f.step = 0 // the step lives on the element
	default:
		return f, fmt.Errorf("field %s: unsupported type %s (pointers, maps, interfaces, funcs and chans cannot be synced)", path, t)
	}
	if step != 0 && f.kind != kFloat32 && f.kind != kFloat64 && f.kind != kArray {
		return f, fmt.Errorf("field %s: q= applies to float fields, not %s", path, f.typeStr)
	}
	return f, nil
}

// layoutTypeString names an array element type for the schema: a leaf type
// string, or struct{Name type;…} listing flattened fields and steps.
func layoutTypeString(t reflect.Type, elem []field) string {
	if t.Kind() != reflect.Struct {
		s := elem[0].typeStr
		if elem[0].step != 0 {
			s += "@" + strconv.FormatFloat(elem[0].step, 'g', -1, 64)
		}
		return s
	}
	var b strings.Builder
	b.WriteString("struct{")
	for i, f := range elem {
		if i > 0 {
			b.WriteByte(';')
		}
		b.WriteString(f.name)
		b.WriteByte(' ')
		b.WriteString(f.typeStr)
		if f.step != 0 {
			b.WriteString("@" + strconv.FormatFloat(f.step, 'g', -1, 64))
		}
	}
	b.WriteByte('}')
	return b.String()
}

// hasBytes reports whether any leaf (including array elements) is a []byte,
// which needs a deep copy.
func hasBytes(fs []field) bool {
	for i := range fs {
		switch fs[i].kind {
		case kBytes:
			return true
		case kArray:
			if hasBytes(fs[i].arr.elem) {
				return true
			}
		}
	}
	return false
}

// ptr returns the address of field f in the value at p.
func (f *field) ptr(p unsafe.Pointer) unsafe.Pointer { return unsafe.Add(p, f.off) }

// hasPointers reports whether values of t hold pointers (strings, slices),
// whose bytes say nothing about the values they point to.
func hasPointers(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.String, reflect.Slice, reflect.Pointer, reflect.Map, reflect.Interface, reflect.Func, reflect.Chan, reflect.UnsafePointer:
		return true
	case reflect.Array:
		return t.Len() > 0 && hasPointers(t.Elem())
	case reflect.Struct:
		for i := 0; i < t.NumField(); i++ {
			if hasPointers(t.Field(i).Type) {
				return true
			}
		}
	}
	return false
}

// hasUnsynced reports whether values of t hold fields the codec does not
// sync: unexported ones or ones tagged `ebisync:"-"`, at any depth.
func hasUnsynced(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.Struct:
		for i := 0; i < t.NumField(); i++ {
			sf := t.Field(i)
			if !sf.IsExported() || sf.Tag.Get("ebisync") == "-" || hasUnsynced(sf.Type) {
				return true
			}
		}
	case reflect.Array:
		return hasUnsynced(t.Elem())
	}
	return false
}
