package wire_test

import (
	"bytes"
	"math/rand/v2"
	"testing"
	"unsafe"

	"github.com/yohamta/donburi"

	"github.com/ebisync/ebisync/components"
	"github.com/ebisync/ebisync/internal/codec"
	"github.com/ebisync/ebisync/internal/wire"
)

// fuzzChat is a game message type with the field kinds messages carry: a
// string, an entity reference, integers and a float.
type fuzzChat struct {
	Text   string
	About  donburi.Entity
	Damage int32
	Seq    uint64
	X      float64
	Blob   []byte
}

// gameMessageCodec returns the codec of fuzzChat as registered by
// components.RegisterMessage, which the server and client decode
// message values with.
func gameMessageCodec() *codec.Codec {
	reg := components.NewRegistry()
	m := components.RegisterMessage[fuzzChat](reg, "fuzz.chat", &components.MessageOptions{FromClient: true})
	return codec.Of(m.Type())
}

// gameMessageSeeds returns Message bodies (client to server) of random
// fuzzChat values and odd ids and requests.
func gameMessageSeeds(c *codec.Codec) [][]byte {
	rng := rand.New(rand.NewPCG(16, 12))
	var out [][]byte
	for i := range 12 {
		v := fuzzChat{
			Text:   string(make([]byte, rng.IntN(40))),
			About:  donburi.Entity(rng.Uint64()),
			Damage: rng.Int32() - 1<<30,
			Seq:    rng.Uint64() >> rng.UintN(64),
			X:      rng.NormFloat64() * 1e6,
			Blob:   make([]byte, rng.IntN(3)*7),
		}
		m := wire.Message{Request: rng.Uint64() >> rng.UintN(64), ID: uint64(i * 5 % wire.MaxComponents), Value: c.AppendFull(nil, unsafe.Pointer(&v))}
		out = append(out, wire.AppendMessage(nil, &m)[1:])
	}
	out = append(out,
		wire.AppendMessage(nil, &wire.Message{})[1:],
		wire.AppendMessage(nil, &wire.Message{ID: wire.MaxComponents - 1, Value: make([]byte, 300)})[1:],
	)
	return out
}

// FuzzDecodeGameMessage fuzzes the decoders of game messages: a client's
// Message (wire.DecodeMessage), the same bytes as the message section of a
// batch (wire.DecodeBatch, after the OpMessage byte), and a decoded value
// with the codec of a registered message type, as the server's handler
// path and the client's delivery decode it. None may panic, and whatever
// decodes re-encodes to bytes that decode to the same value, canonically.
//
// (FuzzDecodeMessage in fuzz_test.go fuzzes whole protocol messages by
// kind.)
func FuzzDecodeGameMessage(f *testing.F) {
	mc := gameMessageCodec()
	for _, s := range gameMessageSeeds(mc) {
		f.Add(s)
	}
	// Message sections: a count, then (id, value) pairs.
	rng := rand.New(rand.NewPCG(7, 8))
	for range 4 {
		b := randBatch(rng)
		b.Exits, b.Spawns, b.Updates, b.Removals, b.Results, b.Controls = nil, nil, nil, nil, nil, nil
		enc := wire.AppendBatch(nil, b)
		if i := bytes.IndexByte(enc[2:], wire.OpMessage); i >= 0 {
			f.Add(enc[2+i+1:])
		}
	}
	f.Add([]byte{})
	f.Add([]byte{0})
	f.Add([]byte{1, 0x3f, 0})
	f.Add([]byte{2, 0, 1, 9, 1, 0})

	var b, b2 wire.Batch
	f.Fuzz(func(t *testing.T, body []byte) {
		// A client's Message.
		if m, err := wire.DecodeMessage(body); err != nil {
			assert(t, typed(err), "DecodeMessage: untyped error: %v", err)
		} else {
			assert(t, m.ID < wire.MaxComponents && len(m.Value) <= wire.MaxValueLen, "DecodeMessage accepted id %d, %d-byte value", m.ID, len(m.Value))
			enc := wire.AppendMessage(nil, &m)
			assert(t, enc[0] == byte(wire.KindMessage), "AppendMessage wrote kind %d", enc[0])
			m2, err := wire.DecodeMessage(enc[1:])
			assert(t, err == nil, "re-encoded message does not decode: %v\n% x", err, enc)
			assert(t, m2.Request == m.Request && m2.ID == m.ID && bytes.Equal(m2.Value, m.Value), "message changed after re-encoding:\n%+v\n%+v", m, m2)
			assert(t, bytes.Equal(wire.AppendMessage(nil, &m2), enc), "message re-encoding not canonical")
			checkValue(t, mc, m.Value)
		}

		// The same bytes as a batch's message section.
		batch := append([]byte{0, wire.OpMessage}, body...)
		if err := wire.DecodeBatch(batch, fakeSizer{}, &b); err != nil {
			assert(t, typed(err), "DecodeBatch: untyped error: %v", err)
			assert(t, batchDiff(&b, &wire.Batch{}) == "", "batch not empty after error")
			return
		}
		for _, m := range b.Messages {
			assert(t, m.ID < wire.MaxComponents && len(m.Value) <= wire.MaxValueLen, "DecodeBatch accepted message id %d, %d-byte value", m.ID, len(m.Value))
			checkValue(t, mc, m.Value)
		}
		enc := wire.AppendBatch(nil, &b)
		err := wire.DecodeBatch(enc[1:], fakeSizer{}, &b2)
		assert(t, err == nil, "re-encoded batch does not decode: %v\n% x", err, enc)
		d := batchDiff(&b, &b2)
		assert(t, d == "", "batch changed after re-encoding: %s", d)
		assert(t, bytes.Equal(wire.AppendBatch(nil, &b2), enc), "batch re-encoding not canonical")
	})
}

// checkValue decodes v as a fuzzChat message value, as a peer does, and
// checks that a value that decodes re-encodes to bytes that decode to the
// same value, and that from there on the encoding is stable.
func checkValue(t *testing.T, c *codec.Codec, v []byte) {
	t.Helper()
	var x fuzzChat
	n, err := c.DecodeFull(v, unsafe.Pointer(&x))
	if err != nil {
		assert(t, typed(err), "DecodeFull: untyped error: %v", err)
		return
	}
	assert(t, n <= len(v), "DecodeFull consumed %d of %d bytes", n, len(v))
	enc := c.AppendFull(nil, unsafe.Pointer(&x))
	var y fuzzChat
	m, err := c.DecodeFull(enc, unsafe.Pointer(&y))
	assert(t, err == nil && m == len(enc), "re-encoded value does not decode: %v (%d of %d bytes)", err, m, len(enc))
	assert(t, c.Equal(unsafe.Pointer(&x), unsafe.Pointer(&y)), "value changed after re-encoding:\n%+v\n%+v", x, y)
	assert(t, bytes.Equal(c.AppendFull(nil, unsafe.Pointer(&y)), enc), "value encoding not stable after one round trip")
}
