package wire_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/ebisync/ebisync/internal/wire"
)

// compressible returns a batch message that lz4 shrinks.
func compressible() []byte {
	msg := []byte{byte(wire.KindBatch), 1}
	for i := range 200 {
		msg = append(msg, byte(wire.OpUpdateDelta), 0, 1, byte(i%7), 5, 0x03, 0xc8, 0x01, 0x95)
	}
	return msg
}

func TestCompressOpen(t *testing.T) {
	var c wire.Compressor
	rng := rand.New(rand.NewPCG(7, 8))
	random := make([]byte, 1000)
	for i := range random {
		random[i] = byte(rng.Uint32())
	}
	random[0] = byte(wire.KindBatch)
	tests := []struct {
		name     string
		msg      []byte
		compress bool
	}{
		{"compressible", compressible(), true},
		{"incompressible", random, false},
		{"short", bytes.Repeat([]byte{byte(wire.KindBatch)}, wire.MinCompressSize), false},
		{"smallest compressible", bytes.Repeat([]byte{byte(wire.KindBatch)}, 1+wire.MinCompressSize), true},
		{"header only", []byte{byte(wire.KindPing)}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prefix := []byte("dst")
			z := c.Compress(bytes.Clone(prefix), tt.msg)
			assert(t, bytes.HasPrefix(z, prefix), "Compress clobbered dst")
			z = z[len(prefix):]
			compressed := z[0]&wire.FlagCompressed != 0
			assert(t, compressed == tt.compress, "compressed = %v, want %v", compressed, tt.compress)
			if compressed {
				assert(t, len(z) < len(tt.msg), "compressed %d bytes to %d", len(tt.msg), len(z))
			} else {
				assert(t, bytes.Equal(z, tt.msg), "uncompressed message changed")
			}
			kind, body, _, err := wire.Open(z, nil)
			assert(t, err == nil, "Open: %v", err)
			assert(t, kind == wire.Kind(tt.msg[0]), "kind %v, want %v", kind, wire.Kind(tt.msg[0]))
			assert(t, bytes.Equal(body, tt.msg[1:]), "body differs after Open")
		})
	}
}

func TestCompressLeavesCompressedAlone(t *testing.T) {
	var c wire.Compressor
	z := c.Compress(nil, compressible())
	z2 := c.Compress(nil, z)
	assert(t, bytes.Equal(z, z2), "Compress recompressed a compressed message")
}

func TestOpenAtRatioBound(t *testing.T) {
	// The most compressible body of the largest size must open: Open's
	// early size-versus-block check must not refuse it.
	msg := make([]byte, 1+wire.MaxMessageSize)
	msg[0] = byte(wire.KindBatch)
	var c wire.Compressor
	z := c.Compress(nil, msg)
	assert(t, z[0]&wire.FlagCompressed != 0, "zeros did not compress")
	kind, body, _, err := wire.Open(z, nil)
	assert(t, err == nil && kind == wire.KindBatch && len(body) == wire.MaxMessageSize, "Open: %v, %v, %d bytes", err, kind, len(body))
	assert(t, !bytes.ContainsFunc(body, func(r rune) bool { return r != 0 }), "body is not zeros")
}

func frame(kind wire.Kind, size uint64, block []byte) []byte {
	msg := []byte{byte(kind) | wire.FlagCompressed}
	msg = binary.AppendUvarint(msg, size)
	return append(msg, block...)
}

func TestOpenRejects(t *testing.T) {
	good := (&wire.Compressor{}).Compress(nil, compressible())
	sizeLen := len(binary.AppendUvarint(nil, uint64(len(compressible())-1)))
	block := good[1+sizeLen:]
	bodyLen := uint64(len(compressible()) - 1)
	tests := []struct {
		name string
		msg  []byte
		want error
	}{
		{"empty", nil, wire.ErrTruncated},
		{"kind 0", []byte{0}, wire.ErrMalformed},
		{"kind 0 compressed", []byte{wire.FlagCompressed, 1, 0x10, 'x'}, wire.ErrMalformed},
		{"unknown kind", []byte{byte(wire.KindInput) + 1}, wire.ErrMalformed},
		{"missing size", []byte{byte(wire.KindBatch) | wire.FlagCompressed}, wire.ErrTruncated},
		{"size overflow", append([]byte{byte(wire.KindBatch) | wire.FlagCompressed}, bytes.Repeat([]byte{0xff}, 11)...), wire.ErrOverflow},
		{"size over limit", frame(wire.KindBatch, wire.MaxMessageSize+1, block), wire.ErrTooLarge},
		{"size beyond ratio", frame(wire.KindBatch, wire.MaxMessageSize, []byte{0x1f, 0, 0}), wire.ErrMalformed},
		{"empty block", frame(wire.KindBatch, 10, nil), wire.ErrMalformed},
		{"zero size", frame(wire.KindBatch, 0, block), wire.ErrMalformed},
		{"size too small", frame(wire.KindBatch, bodyLen-1, block), wire.ErrMalformed},
		{"size too large", frame(wire.KindBatch, bodyLen+1, block), wire.ErrMalformed},
		{"garbage block", frame(wire.KindBatch, 100, []byte{0xff, 0xff, 0xff, 0xff}), wire.ErrMalformed},
		{"truncated block", frame(wire.KindBatch, bodyLen, block[:len(block)/2]), wire.ErrMalformed},
		{"bad offset", frame(wire.KindBatch, 100, []byte{0x04, 0xff, 0xff, 0x00}), wire.ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, _, err := wire.Open(tt.msg, nil)
			assert(t, errors.Is(err, tt.want), "got %v, want %v", err, tt.want)
		})
	}
}

func TestOpenTooLargeUncompressed(t *testing.T) {
	msg := make([]byte, wire.MaxMessageSize+1)
	msg[0] = byte(wire.KindBatch)
	_, _, _, err := wire.Open(msg, nil)
	assert(t, errors.Is(err, wire.ErrTooLarge), "got %v, want ErrTooLarge", err)
}

func TestPeekKind(t *testing.T) {
	kind, compressed, err := wire.PeekKind([]byte{byte(wire.KindBatch) | wire.FlagCompressed, 1, 2})
	assert(t, err == nil && kind == wire.KindBatch && compressed, "PeekKind = %v, %v, %v", kind, compressed, err)
	_, _, err = wire.PeekKind(nil)
	assert(t, errors.Is(err, wire.ErrTruncated), "PeekKind(nil) = %v", err)
	_, _, err = wire.PeekKind([]byte{0x7f})
	assert(t, errors.Is(err, wire.ErrMalformed), "PeekKind(0x7f) = %v", err)
}

func TestFrameAllocs(t *testing.T) {
	var c wire.Compressor
	msg := compressible()
	dst := make([]byte, 0, 2*len(msg))
	var scratch []byte
	_, _, scratch, _ = wire.Open(c.Compress(dst[:0], msg), scratch)
	allocs := testing.AllocsPerRun(100, func() {
		z := c.Compress(dst[:0], msg)
		var err error
		_, _, scratch, err = wire.Open(z, scratch)
		if err != nil {
			t.Fatal(err)
		}
	})
	assert(t, allocs == 0, "Compress+Open allocated %v times per run", allocs)
}

// BenchmarkCompressAttempt is what the server's writer spends on an lz4
// attempt that does not pay: a 270-byte batch of quantised deltas (random
// bytes here), the size of a client's batch in BenchmarkServerTick, next
// to a plain copy of it.
func BenchmarkCompressAttempt(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	msg := make([]byte, 270)
	msg[0] = byte(wire.KindBatch)
	for i := 1; i < len(msg); i++ {
		msg[i] = byte(rng.IntN(256))
	}
	var c wire.Compressor
	var dst []byte
	b.Run("lz4", func(b *testing.B) {
		for b.Loop() {
			dst = c.Compress(dst[:0], msg)
		}
		if len(dst) != len(msg) {
			b.Fatalf("random bytes compressed to %d of %d", len(dst), len(msg))
		}
	})
	b.Run("copy", func(b *testing.B) {
		for b.Loop() {
			dst = append(dst[:0], msg...)
		}
	})
}
