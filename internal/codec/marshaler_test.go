package codec_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/yohamta/donburi"

	"github.com/ebisync/ebisync/components"
	"github.com/ebisync/ebisync/internal/wire"
)

// inventory encodes itself: a count, then each item as a length-prefixed
// string.
type inventory struct {
	Items []string
}

var errBadInventory = errors.New("bad inventory")

func (v *inventory) MarshalSync(dst []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(v.Items)))
	for _, it := range v.Items {
		dst = binary.AppendUvarint(dst, uint64(len(it)))
		dst = append(dst, it...)
	}
	return dst
}

func (v *inventory) UnmarshalSync(src []byte) error {
	n, k := binary.Uvarint(src)
	if k <= 0 || n > uint64(len(src)) {
		return fmt.Errorf("%w: item count", errBadInventory)
	}
	src = src[k:]
	items := make([]string, 0, n)
	for range n {
		l, k := binary.Uvarint(src)
		if k <= 0 || l > uint64(len(src)-k) {
			return fmt.Errorf("%w: item length", errBadInventory)
		}
		items = append(items, string(src[k:k+int(l)]))
		src = src[k+int(l):]
	}
	if len(src) != 0 {
		return fmt.Errorf("%w: %d trailing bytes", errBadInventory, len(src))
	}
	v.Items = items
	return nil
}

func TestMarshaler(t *testing.T) {
	r := components.NewRegistry()
	c := register(r, "game.inventory", donburi.NewComponentType[inventory](), nil)
	assert(t, c.NumFields() == 1, "NumFields %d", c.NumFields())
	assert(t, c.Fields()[0].Type == "custom:codec_test.inventory", "field %+v", c.Fields()[0])

	v := inventory{Items: []string{"sword", "", "shield"}}
	enc := c.AppendFull([]byte{0xAA}, ptr(&v))[1:] // appends after existing bytes
	inner := v.MarshalSync(nil)
	assert(t, int(enc[0]) == len(inner) && string(enc[1:]) == string(inner), "full %x, want length %d + %x", enc, len(inner), inner)
	n, err := c.FullLen(append(enc, 0xFF))
	assert(t, err == nil && n == len(enc), "FullLen = %d, %v", n, err)

	var got inventory
	n, err = c.DecodeFull(enc, ptr(&got))
	assert(t, err == nil && n == len(enc), "DecodeFull = %d, %v", n, err)
	assert(t, strings.Join(got.Items, "|") == "sword||shield", "decoded %q", got.Items)
	assert(t, c.Equal(ptr(&v), ptr(&got)) && c.Diff(ptr(&v), ptr(&got)) == 0, "decoded value differs")

	// A change is bit 0; the delta is the full encoding.
	changed := inventory{Items: []string{"sword", "bow", "shield"}}
	mask := c.Diff(ptr(&v), ptr(&changed))
	assert(t, mask == 1, "Diff = %#x, want 1", mask)
	delta := c.AppendDelta(nil, ptr(&v), ptr(&changed), mask)
	assert(t, string(delta) == string(c.AppendFull(nil, ptr(&changed))), "delta %x is not the full encoding", delta)
	n, err = c.DeltaLen(delta)
	assert(t, err == nil && n == len(delta), "DeltaLen = %d, %v", n, err)
	n, err = c.DecodeDelta(delta, ptr(&got))
	assert(t, err == nil && n == len(delta) && strings.Join(got.Items, "|") == "sword|bow|shield", "DecodeDelta = %d, %v: %q", n, err, got.Items)

	// Encodings longer than 127 bytes take a 2-byte length.
	big := inventory{Items: []string{strings.Repeat("x", 300)}}
	bigGot := fullRoundTrip(t, c, &big)
	assert(t, bigGot.Items[0] == big.Items[0], "300-byte item lost")

	// Lerp of a Marshaler snaps to b.
	var out inventory
	c.Lerp(ptr(&out), ptr(&v), ptr(&changed), 0.5)
	assert(t, strings.Join(out.Items, "|") == "sword|bow|shield", "Lerp gave %q", out.Items)
}

func TestMarshalerErrors(t *testing.T) {
	c := register(components.NewRegistry(), "game.inventory", donburi.NewComponentType[inventory](), nil)
	// Framed correctly, but UnmarshalSync refuses the contents.
	bad := []byte{3, 5, 1, 'a'}
	n, err := c.FullLen(bad)
	assert(t, err == nil && n == 4, "FullLen of well-framed bytes = %d, %v", n, err)
	for name, decode := range map[string]func([]byte) (int, error){
		"DecodeFull":  func(b []byte) (int, error) { return c.DecodeFull(b, ptr(&inventory{})) },
		"DecodeDelta": func(b []byte) (int, error) { return c.DecodeDelta(b, ptr(&inventory{})) },
	} {
		n, err := decode(bad)
		assert(t, n == 0 && errors.Is(err, errBadInventory), "%s = %d, %v; want the UnmarshalSync error wrapped", name, n, err)
		assert(t, errors.Is(err, wire.ErrMalformed), "%s: %v does not wrap wire.ErrMalformed", name, err)
		assert(t, strings.Contains(err.Error(), "failed to decode game.inventory"), "%s: %q does not name the component", name, err)
	}

	// Framing errors are found before UnmarshalSync runs.
	_, err = c.DecodeFull([]byte{9, 1}, ptr(&inventory{}))
	assert(t, errors.Is(err, wire.ErrTruncated) && !errors.Is(err, errBadInventory), "short frame: %v", err)
	_, err = c.DeltaLen(nil)
	assert(t, errors.Is(err, wire.ErrTruncated), "empty delta: %v", err)
}
