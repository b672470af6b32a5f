package plugin

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/yohamta/donburi"

	"github.com/ebisync/ebisync/internal/codec"
)

// A component value as the Inspector shows it: its synced fields (the
// exported fields not tagged `ebisync:"-"`, structs flattened into dotted
// paths, as the codec lays them out), each as JSON-friendly data. Only the
// leaves a form can hold are editable: booleans, integers, floats and
// strings. Arrays, []byte fields and entity references are shown, not
// edited; a component with its own encoding (components.Marshaler) is
// shown as its bytes.

// valueField is one synced field of a value.
type valueField struct {
	Path     string `json:"path"`
	Type     string `json:"type"`
	Value    any    `json:"value"`
	Editable bool   `json:"editable,omitempty"`
}

var entityType = reflect.TypeFor[donburi.Entity]()

// maxShownString bounds a string value as the Inspector shows it.
const maxShownString = 4096

// fieldsOf returns the synced fields of v. Entity fields hold Refs (the
// caller mapped them).
func fieldsOf(v reflect.Value) []valueField {
	if v.Kind() != reflect.Struct {
		return []valueField{leafField("value", v)}
	}
	return appendFields(nil, v, "")
}

func appendFields(out []valueField, v reflect.Value, prefix string) []valueField {
	t := v.Type()
	for i := range t.NumField() {
		sf := t.Field(i)
		if !sf.IsExported() || sf.Tag.Get("ebisync") == "-" {
			continue
		}
		if sf.Type.Kind() == reflect.Struct {
			out = appendFields(out, v.Field(i), prefix+sf.Name+".")
			continue
		}
		out = append(out, leafField(prefix+sf.Name, v.Field(i)))
	}
	return out
}

func leafField(path string, v reflect.Value) valueField {
	f := valueField{Path: path, Type: typeName(v.Type()), Value: jsonValue(v)}
	f.Editable = editableKind(v.Type())
	return f
}

// typeName names a leaf's type as the codec's schema does: by kind for the
// basic kinds ("float64" for a named float type too).
func typeName(t reflect.Type) string {
	switch {
	case t == entityType:
		return "entity"
	case t.Kind() == reflect.Slice:
		return "[]byte"
	case t.Kind() == reflect.Array:
		return fmt.Sprintf("[%d]%s", t.Len(), typeName(t.Elem()))
	case t.Kind() == reflect.Struct:
		return "struct"
	}
	return t.Kind().String()
}

// editableKind reports whether a leaf of type t can be edited: booleans,
// numbers and strings.
func editableKind(t reflect.Type) bool {
	if t == entityType {
		return false
	}
	switch t.Kind() {
	case reflect.Bool, reflect.String,
		reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64:
		return true
	}
	return false
}

// jsonValue converts a synced value to JSON-friendly data: numbers as
// json.Number (exact; NaN and infinities as strings), an entity reference
// as its net id, []byte as hex, arrays as lists and structs as objects.
func jsonValue(v reflect.Value) any {
	t := v.Type()
	if t == entityType {
		return codec.Ref(v.Uint()).ID()
	}
	switch t.Kind() {
	case reflect.Bool:
		return v.Bool()
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return json.Number(strconv.FormatInt(v.Int(), 10))
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return json.Number(strconv.FormatUint(v.Uint(), 10))
	case reflect.Float32, reflect.Float64:
		f := v.Float()
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return strconv.FormatFloat(f, 'g', -1, 64)
		}
		return json.Number(strconv.FormatFloat(f, 'g', -1, t.Bits()))
	case reflect.String:
		return clip(v.String(), maxShownString)
	case reflect.Slice:
		b := v.Bytes()
		if len(b) > maxShownString/2 {
			return hex.EncodeToString(b[:maxShownString/2]) + "…"
		}
		return hex.EncodeToString(b)
	case reflect.Array:
		out := make([]any, v.Len())
		for i := range out {
			out[i] = jsonValue(v.Index(i))
		}
		return out
	case reflect.Struct:
		out := make(map[string]any)
		for i := range t.NumField() {
			sf := t.Field(i)
			if sf.IsExported() && sf.Tag.Get("ebisync") != "-" {
				out[sf.Name] = jsonValue(v.Field(i))
			}
		}
		return out
	}
	return fmt.Sprint(v.Interface())
}

// clip cuts s to at most n bytes, on a rune boundary, marking the cut.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// maxFieldPath bounds the path of an edited field, in bytes.
const maxFieldPath = 256

// editPath resolves the dotted path of an editable synced field of type t
// ("value" for a type that is not a struct) to its field indices and type.
func editPath(t reflect.Type, path string) ([]int, reflect.Type, error) {
	if len(path) > maxFieldPath {
		return nil, nil, fmt.Errorf("field path of %d bytes (at most %d)", len(path), maxFieldPath)
	}
	if t.Kind() != reflect.Struct {
		if path != "value" || !editableKind(t) {
			return nil, nil, fmt.Errorf("no editable field %q", path)
		}
		return nil, t, nil
	}
	var index []int
	for part := range strings.SplitSeq(path, ".") {
		if t.Kind() != reflect.Struct {
			return nil, nil, fmt.Errorf("no editable field %q", path)
		}
		sf, ok := t.FieldByName(part)
		if !ok || len(sf.Index) != 1 || !sf.IsExported() || sf.Tag.Get("ebisync") == "-" {
			return nil, nil, fmt.Errorf("no synced field %q", path)
		}
		index = append(index, sf.Index[0])
		t = sf.Type
	}
	if !editableKind(t) {
		return nil, nil, fmt.Errorf("field %q (%s) is not editable here", path, typeName(t))
	}
	return index, t, nil
}
