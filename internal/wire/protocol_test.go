package wire_test

import (
	"encoding/binary"
	"encoding/hex"
	"testing"

	"github.com/ebisync/ebisync/internal/wire"
)

// TestProtocolExample pins the worked example in docs/PROTOCOL.md: a batch
// that advances one tick and carries position deltas (fields X and Y,
// quantised with step 0.01) for entities 1, 2 and 3.
func TestProtocolExample(t *testing.T) {
	steps := [][2]int64{{100, -75}, {-250, 64}, {70, -128}} // (dx, dy) in steps of 0.01
	b := &wire.Batch{TickAdvance: 1}
	for i, d := range steps {
		v := []byte{0x03} // mask: X and Y changed
		v = binary.AppendVarint(v, d[0])
		v = binary.AppendVarint(v, d[1])
		assert(t, len(v) == 5, "value %d has %d bytes", i, len(v))
		b.Updates = append(b.Updates, wire.Update{Comp: 0, ID: uint64(i + 1), Delta: true, Value: v})
	}
	msg := wire.AppendBatch(nil, b)
	const want = "07" + "01" + "04" + "00" + "03" +
		"01" + "03c80195" + "01" +
		"01" + "03f30380" + "01" +
		"01" + "038c01ff" + "01"
	got := hex.EncodeToString(msg)
	assert(t, got == want, "example batch\n got %s\nwant %s", got, want)

	var c wire.Compressor
	z := c.Compress(nil, msg)
	assert(t, hex.EncodeToString(z) == want, "a %d-byte batch must not be compressed", len(msg))

	var dec wire.Batch
	err := wire.DecodeBatch(msg[1:], fiveByteSizer{}, &dec)
	assert(t, err == nil, "decode: %v", err)
	d := batchDiff(b, &dec)
	assert(t, d == "", "%s", d)
}

type fiveByteSizer struct{}

func (fiveByteSizer) FullLen(uint64, []byte) (int, error)  { return 5, nil }
func (fiveByteSizer) DeltaLen(uint64, []byte) (int, error) { return 5, nil }
