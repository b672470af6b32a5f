package wire

import (
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/pierrec/lz4/v4"
)

// MinCompressSize is the smallest body Compress tries to compress. Smaller
// bodies rarely shrink by more than the bytes the framing adds.
const MinCompressSize = 64

// maxLZ4Ratio bounds how many bytes one byte of an lz4 block can decompress
// to: a match length extension byte adds at most 255 bytes and every other
// byte fewer. Open refuses declared sizes the block cannot reach before it
// allocates them.
const maxLZ4Ratio = 255

// Compressor compresses messages with lz4 block compression. The zero value
// is ready to use. It holds lz4's hash table (about 136 KiB), so keep one per
// goroutine and reuse it. It is not safe for concurrent use.
type Compressor struct {
	lz lz4.Compressor
}

// Compress appends msg, a complete uncompressed message (header byte and
// body), to dst, compressed when that makes it strictly smaller.
//
// A body of at least MinCompressSize bytes is compressed as one lz4 block and
// appended as the header byte with FlagCompressed set, the uncompressed body
// length as a uvarint, and the block. Otherwise, or when the block would not
// make the message smaller, or when msg is already compressed, msg is
// appended unchanged. msg and the spare capacity of dst must not overlap.
//
// Compress does not allocate when dst has room for len(msg) more bytes.
func (c *Compressor) Compress(dst, msg []byte) []byte {
	if len(msg) < 1+MinCompressSize || msg[0]&FlagCompressed != 0 {
		return append(dst, msg...)
	}
	body := msg[1:]
	// The framed message is useful only if it is strictly shorter than msg,
	// so compress straight into dst's spare room, with the block capped at
	// the size that would still save a byte: lz4 gives up when it runs out.
	dst = slices.Grow(dst, len(msg))
	start := len(dst)
	framed := append(dst, msg[0]|FlagCompressed)
	framed = binary.AppendUvarint(framed, uint64(len(body)))
	room := len(msg) - 1 - (len(framed) - start)
	if room <= 0 {
		return append(dst, msg...)
	}
	n, err := c.lz.CompressBlock(body, framed[len(framed):len(framed)+room])
	if err != nil || n == 0 || n > room {
		return append(dst, msg...)
	}
	return framed[:len(framed)+n]
}

// PeekKind returns the kind of msg and whether its body is compressed,
// without decoding the body. It fails with ErrTruncated when msg is empty and
// with ErrMalformed when the kind is unknown.
func PeekKind(msg []byte) (Kind, bool, error) {
	kind, compressed, err := peekKind(msg)
	if err != nil {
		return 0, false, fmt.Errorf("failed to peek message kind: %w", err)
	}
	return kind, compressed, nil
}

func peekKind(msg []byte) (Kind, bool, error) {
	if len(msg) == 0 {
		return 0, false, fmt.Errorf("%w: empty message", ErrTruncated)
	}
	kind := Kind(msg[0] &^ FlagCompressed)
	if !kind.Valid() {
		return 0, false, fmt.Errorf("%w: unknown message kind %d", ErrMalformed, byte(kind))
	}
	return kind, msg[0]&FlagCompressed != 0, nil
}

// Open returns the kind and the uncompressed body of msg, one message as
// received.
//
// An uncompressed body aliases msg. A compressed body is decompressed into
// scratch, grown to exactly the declared size when its capacity is too
// small; Open returns the scratch to reuse next time and the body aliases it,
// so the body is valid only until the next Open with the same scratch.
//
// Open fails with ErrTooLarge when msg or the declared size exceeds
// MaxMessageSize (checked before allocating), and with ErrMalformed for an
// unknown kind, an invalid lz4 block, or a block that does not decompress to
// exactly the declared size. It never panics and is safe for concurrent use
// with distinct scratch buffers.
func Open(msg []byte, scratch []byte) (kind Kind, body []byte, newScratch []byte, err error) {
	return OpenLimit(msg, scratch, MaxMessageSize)
}

// OpenLimit is Open with limit, at most MaxMessageSize, in place of
// MaxMessageSize: a message or declared body larger than limit fails with
// ErrTooLarge before anything is allocated. A server opens client messages
// with its own, smaller, read limit.
func OpenLimit(msg []byte, scratch []byte, limit int) (kind Kind, body []byte, newScratch []byte, err error) {
	kind, body, scratch, err = open(msg, scratch, min(limit, MaxMessageSize))
	if err != nil {
		return 0, nil, scratch, fmt.Errorf("failed to open message: %w", err)
	}
	return kind, body, scratch, nil
}

func open(msg []byte, scratch []byte, limit int) (Kind, []byte, []byte, error) {
	kind, compressed, err := peekKind(msg)
	if err != nil {
		return 0, nil, scratch, err
	}
	if len(msg) > limit {
		return 0, nil, scratch, fmt.Errorf("%w: message of %d bytes exceeds %d", ErrTooLarge, len(msg), limit)
	}
	if !compressed {
		return kind, msg[1:], scratch, nil
	}
	r := Reader{b: msg[1:]}
	size := int(r.UvarintMax(uint64(limit), "uncompressed size"))
	if r.err != nil {
		return 0, nil, scratch, r.err
	}
	block := msg[1+r.off:]
	if len(block) == 0 || size == 0 {
		return 0, nil, scratch, fmt.Errorf("%w: empty lz4 block", ErrMalformed)
	}
	if size > maxLZ4Ratio*len(block) {
		return 0, nil, scratch, fmt.Errorf("%w: %d bytes of lz4 cannot decompress to %d", ErrMalformed, len(block), size)
	}
	if cap(scratch) < size {
		scratch = make([]byte, size)
	}
	scratch = scratch[:size]
	n, err := lz4.UncompressBlock(block, scratch)
	if err != nil {
		return 0, nil, scratch, fmt.Errorf("%w: invalid lz4 block: %v", ErrMalformed, err)
	}
	if n != size {
		return 0, nil, scratch, fmt.Errorf("%w: lz4 block decompressed to %d bytes, header says %d", ErrMalformed, n, size)
	}
	return kind, scratch, scratch, nil
}
