package wire_test

import (
	"bytes"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/ebisync/ebisync/internal/wire"
)

// decodeMessage opens msg and decodes its body by kind, as a peer would. On
// success it returns the decoded value and its uncompressed re-encoding.
func decodeMessage(msg []byte) (any, []byte, error) {
	kind, body, _, err := wire.Open(msg, nil)
	if err != nil {
		return nil, nil, err
	}
	switch kind {
	case wire.KindHello:
		m, err := wire.DecodeHello(body)
		return m, wire.AppendHello(nil, &m), err
	case wire.KindWelcome:
		m, err := wire.DecodeWelcome(body)
		return m, wire.AppendWelcome(nil, &m), err
	case wire.KindError:
		m, err := wire.DecodeError(body)
		return m, wire.AppendError(nil, &m), err
	case wire.KindSubscribe, wire.KindUnsubscribe:
		m, err := wire.DecodeSubscribe(body)
		return m, wire.AppendSubscribe(nil, kind, &m), err
	case wire.KindInterest:
		m, err := wire.DecodeInterest(body)
		return m, wire.AppendInterest(nil, &m), err
	case wire.KindBatch:
		b := new(wire.Batch)
		err := wire.DecodeBatch(body, fakeSizer{}, b)
		return b, wire.AppendBatch(nil, b), err
	case wire.KindMutate:
		m, err := wire.DecodeMutate(body)
		return m, wire.AppendMutate(nil, &m), err
	case wire.KindControl:
		m, err := wire.DecodeControl(body)
		return m, wire.AppendControl(nil, &m), err
	case wire.KindPing, wire.KindPong:
		m, err := wire.DecodePing(body)
		return m, wire.AppendPing(nil, kind, &m), err
	case wire.KindMessage:
		m, err := wire.DecodeMessage(body)
		return m, wire.AppendMessage(nil, &m), err
	case wire.KindInput:
		m, err := wire.DecodeInput(body)
		return m, wire.AppendInput(nil, &m), err
	}
	panic("Open returned unknown kind " + kind.String())
}

func addSeeds(f *testing.F) {
	var c wire.Compressor
	for _, msg := range sampleMessages() {
		f.Add(msg)
		if z := c.Compress(nil, msg); z[0]&wire.FlagCompressed != 0 {
			f.Add(z)
		}
	}
	big := wire.AppendBatch(nil, randBatch(rand.New(rand.NewPCG(3, 4))))
	f.Add(c.Compress(nil, append(big, bytes.Repeat(big[1:], 3)...)))
}

func FuzzDecodeMessage(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, msg []byte) {
		v1, enc1, err := decodeMessage(msg)
		if err != nil {
			assert(t, typed(err), "untyped error: %v", err)
			return
		}
		v2, enc2, err := decodeMessage(enc1)
		assert(t, err == nil, "re-encoding does not decode: %v\n% x", err, enc1)
		if b1, ok := v1.(*wire.Batch); ok {
			d := batchDiff(b1, v2.(*wire.Batch))
			assert(t, d == "", "batch changed after re-encoding: %s", d)
		} else {
			assert(t, reflect.DeepEqual(v1, v2), "value changed after re-encoding:\n%+v\n%+v", v1, v2)
		}
		assert(t, bytes.Equal(enc1, enc2), "re-encoding not canonical:\n% x\n% x", enc1, enc2)
	})
}

func FuzzDecodeHello(f *testing.F) {
	f.Add(wire.AppendHello(nil, &sampleHello)[1:])
	f.Add(wire.AppendHello(nil, &wire.Hello{})[1:])
	for _, h := range resumedHellos() {
		f.Add(wire.AppendHello(nil, &h)[1:])
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		m, err := wire.DecodeHello(body)
		if err != nil {
			assert(t, typed(err), "untyped error: %v", err)
			return
		}
		enc := wire.AppendHello(nil, &m)
		m2, err := wire.DecodeHello(enc[1:])
		assert(t, err == nil, "re-encoding does not decode: %v", err)
		assert(t, reflect.DeepEqual(m, m2), "hello changed after re-encoding:\n%+v\n%+v", m, m2)
		enc2 := wire.AppendHello(nil, &m2)
		assert(t, bytes.Equal(enc, enc2), "re-encoding not canonical:\n% x\n% x", enc, enc2)
	})
}

func FuzzDecodeBatch(f *testing.F) {
	rng := rand.New(rand.NewPCG(5, 6))
	for range 8 {
		f.Add(wire.AppendBatch(nil, randBatch(rng))[1:])
	}
	f.Add([]byte{0})
	var b, b2 wire.Batch
	f.Fuzz(func(t *testing.T, body []byte) {
		if err := wire.DecodeBatch(body, fakeSizer{}, &b); err != nil {
			assert(t, typed(err), "untyped error: %v", err)
			assert(t, batchDiff(&b, &wire.Batch{}) == "", "batch not empty after error")
			return
		}
		enc := wire.AppendBatch(nil, &b)
		err := wire.DecodeBatch(enc[1:], fakeSizer{}, &b2)
		assert(t, err == nil, "re-encoding does not decode: %v", err)
		d := batchDiff(&b, &b2)
		assert(t, d == "", "batch changed after re-encoding: %s", d)
		enc2 := wire.AppendBatch(nil, &b2)
		assert(t, bytes.Equal(enc, enc2), "re-encoding not canonical:\n% x\n% x", enc, enc2)
	})
}

func FuzzOpen(f *testing.F) {
	addSeeds(f)
	f.Add([]byte{byte(wire.KindBatch) | wire.FlagCompressed, 0x80, 0x80, 0x80, 0x02, 0x1f, 0})
	var c wire.Compressor
	var scratch []byte
	f.Fuzz(func(t *testing.T, msg []byte) {
		kind, body, s, err := wire.Open(msg, scratch)
		scratch = s
		if err != nil {
			assert(t, typed(err), "untyped error: %v", err)
			return
		}
		if msg[0]&wire.FlagCompressed == 0 {
			assert(t, bytes.Equal(body, msg[1:]), "uncompressed body differs from the message")
		}
		plain := append([]byte{byte(kind)}, body...)
		z := c.Compress(nil, plain)
		assert(t, len(z) <= len(plain), "Compress grew the message: %d > %d", len(z), len(plain))
		kind2, body2, _, err := wire.Open(z, nil)
		assert(t, err == nil, "Open(Compress(m)): %v", err)
		assert(t, kind2 == kind && bytes.Equal(body2, body), "Open(Compress(m)) != m")
	})
}
