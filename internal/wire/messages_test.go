package wire_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/ebisync/ebisync/internal/wire"
)

// roundTrip encodes m with appendFn, checks the header, and decodes the body
// with decodeFn.
func roundTrip[M any](t *testing.T, kind wire.Kind, m M, appendFn func([]byte, *M) []byte, decodeFn func([]byte) (M, error)) {
	t.Helper()
	prefix := []byte("prefix")
	msg := appendFn(bytes.Clone(prefix), &m)
	assert(t, bytes.HasPrefix(msg, prefix), "append clobbered dst")
	msg = msg[len(prefix):]
	k, compressed, err := wire.PeekKind(msg)
	assert(t, err == nil && k == kind && !compressed, "PeekKind = %v, %v, %v; want %v", k, compressed, err, kind)
	got, err := decodeFn(msg[1:])
	assert(t, err == nil, "decode %v: %v", kind, err)
	assert(t, reflect.DeepEqual(got, m), "round trip %v:\n got %+v\nwant %+v", kind, got, m)
}

func TestMessageRoundTrip(t *testing.T) {
	roundTrip(t, wire.KindHello, sampleHello, wire.AppendHello, wire.DecodeHello)
	roundTrip(t, wire.KindHello, wire.Hello{}, wire.AppendHello, wire.DecodeHello)
	for _, h := range resumedHellos() {
		roundTrip(t, wire.KindHello, h, wire.AppendHello, wire.DecodeHello)
	}
	roundTrip(t, wire.KindWelcome, wire.Welcome{Version: 1, ClientID: 1 << 63, TickRate: 60, Tick: 99, Components: []string{"a", "", "ü"}}, wire.AppendWelcome, wire.DecodeWelcome)
	roundTrip(t, wire.KindError, wire.Error{Code: wire.CloseProtocolError, Message: strings.Repeat("x", wire.MaxErrorLen)}, wire.AppendError, wire.DecodeError)
	for _, kind := range []wire.Kind{wire.KindSubscribe, wire.KindUnsubscribe} {
		appendSub := func(dst []byte, m *wire.Subscribe) []byte { return wire.AppendSubscribe(dst, kind, m) }
		roundTrip(t, kind, wire.Subscribe{Subs: []wire.Sub{
			{Kind: wire.SubComponent, ID: wire.MaxComponents - 1},
			{Kind: wire.SubEntity, ID: wire.MaxNetID, Gen: math.MaxUint64},
			{Kind: wire.SubEntity},
		}}, appendSub, wire.DecodeSubscribe)
	}
	for _, m := range []wire.Interest{
		{Mode: wire.InterestGlobal},
		{Mode: wire.InterestPoint, X: math.MaxFloat64, Y: -math.SmallestNonzeroFloat64, Radius: 0},
		{Mode: wire.InterestFollow, ID: wire.MaxNetID, Gen: 12, Radius: 1e6},
	} {
		roundTrip(t, wire.KindInterest, m, wire.AppendInterest, wire.DecodeInterest)
	}
	roundTrip(t, wire.KindMutate, wire.Mutate{Request: 9, ID: 1, Gen: 2, Comp: 3, Value: []byte{}}, wire.AppendMutate, wire.DecodeMutate)
	roundTrip(t, wire.KindMutate, wire.Mutate{Value: bytes.Repeat([]byte{7}, wire.MaxValueLen)}, wire.AppendMutate, wire.DecodeMutate)
	for _, op := range []wire.ControlOp{wire.ControlTake, wire.ControlRelease} {
		roundTrip(t, wire.KindControl, wire.Control{Request: 1, Op: op, ID: 5, Gen: 6, TimeoutMs: 7, Children: op == wire.ControlTake}, wire.AppendControl, wire.DecodeControl)
	}
	for _, kind := range []wire.Kind{wire.KindPing, wire.KindPong} {
		appendPing := func(dst []byte, m *wire.Ping) []byte { return wire.AppendPing(dst, kind, m) }
		roundTrip(t, kind, wire.Ping{Nonce: math.MaxUint64}, appendPing, wire.DecodePing)
	}
}

func TestAppendSanitisesText(t *testing.T) {
	long := "x" + strings.Repeat("é", wire.MaxErrorLen/2) // the limit falls inside an é
	msg := wire.AppendError(nil, &wire.Error{Code: 1, Message: long})
	m, err := wire.DecodeError(msg[1:])
	assert(t, err == nil, "decode: %v", err)
	assert(t, len(m.Message) == wire.MaxErrorLen-1 && strings.HasPrefix(long, m.Message), "message not cut at a rune boundary: %d bytes", len(m.Message))

	msg = wire.AppendWelcome(nil, &wire.Welcome{Components: []string{"a\xffb", strings.Repeat("ab", wire.MaxNameLen) + "ü"}})
	w, err := wire.DecodeWelcome(msg[1:])
	assert(t, err == nil, "decode: %v", err)
	assert(t, w.Components[0] == "a\uFFFDb", "invalid UTF-8 not replaced: %q", w.Components[0])
	assert(t, len(w.Components[1]) == wire.MaxNameLen, "name not cut: %d bytes", len(w.Components[1]))
}

// body builds a message body from parts: []byte as is, uint64 and int as
// uvarints, string as a length-prefixed string, float64 as 8 bytes.
func body(parts ...any) []byte {
	var w wire.Writer
	for _, p := range parts {
		switch p := p.(type) {
		case []byte:
			w.Raw(p)
		case byte:
			w.Byte(p)
		case int:
			w.Uvarint(uint64(p))
		case uint64:
			w.Uvarint(p)
		case string:
			w.String(p)
		case float64:
			w.F64(p)
		default:
			panic("body: unsupported part")
		}
	}
	return w.B
}

func TestDecodeRejects(t *testing.T) {
	decoders := map[wire.Kind]func([]byte) error{
		wire.KindHello:     func(b []byte) error { _, err := wire.DecodeHello(b); return err },
		wire.KindWelcome:   func(b []byte) error { _, err := wire.DecodeWelcome(b); return err },
		wire.KindError:     func(b []byte) error { _, err := wire.DecodeError(b); return err },
		wire.KindSubscribe: func(b []byte) error { _, err := wire.DecodeSubscribe(b); return err },
		wire.KindInterest:  func(b []byte) error { _, err := wire.DecodeInterest(b); return err },
		wire.KindMutate:    func(b []byte) error { _, err := wire.DecodeMutate(b); return err },
		wire.KindMessage:   func(b []byte) error { _, err := wire.DecodeMessage(b); return err },
		wire.KindInput:     func(b []byte) error { _, err := wire.DecodeInput(b); return err },
		wire.KindControl:   func(b []byte) error { _, err := wire.DecodeControl(b); return err },
		wire.KindPing:      func(b []byte) error { _, err := wire.DecodePing(b); return err },
	}
	hash := make([]byte, 8)
	token := make([]byte, wire.TokenLen)
	overflow := append(bytes.Repeat([]byte{0xff}, 9), 0x7f) // 70 bits
	tests := []struct {
		name string
		kind wire.Kind
		body []byte
		want error
	}{
		{"hello varint overflow", wire.KindHello, overflow, wire.ErrOverflow},
		{"hello long client name", wire.KindHello, body(1, strings.Repeat("n", wire.MaxNameLen+1), 0), wire.ErrTooLarge},
		{"hello invalid UTF-8", wire.KindHello, body(1, "\xc3", 0), wire.ErrMalformed},
		{"hello too many components", wire.KindHello, body(1, "c", wire.MaxComponents+1), wire.ErrTooLarge},
		{"hello component count beyond input", wire.KindHello, body(1, "c", wire.MaxComponents), wire.ErrTruncated},
		{"hello too many fields", wire.KindHello, body(1, "c", 1, "p", hash, wire.MaxFields+1), wire.ErrTooLarge},
		{"hello field count beyond input", wire.KindHello, body(1, "c", 1, "p", hash, wire.MaxFields), wire.ErrTruncated},
		{"hello long field type", wire.KindHello, body(1, "c", 1, "p", hash, 1, "X", strings.Repeat("t", wire.MaxNameLen+1), 0.0), wire.ErrTooLarge},
		{"hello NaN quant", wire.KindHello, body(1, "c", 1, "p", hash, 1, "X", "float64", math.NaN()), wire.ErrMalformed},
		{"hello negative quant", wire.KindHello, body(1, "c", 1, "p", hash, 1, "X", "float64", -0.5), wire.ErrMalformed},
		{"hello infinite quant", wire.KindHello, body(1, "c", 1, "p", hash, 1, "X", "float64", math.Inf(1)), wire.ErrMalformed},
		{"hello trailing byte", wire.KindHello, body(1, "c", 0, 0, byte(0), byte(0)), wire.ErrMalformed},
		{"hello resume flag 2", wire.KindHello, body(1, "c", 0, 0, byte(2)), wire.ErrMalformed},
		{"hello short token", wire.KindHello, body(1, "c", 0, 0, byte(1), 7, make([]byte, wire.TokenLen-1)), wire.ErrTruncated},
		{"hello resume without interest flag", wire.KindHello, body(1, "c", 0, 0, byte(1), 7, token, 9), wire.ErrTruncated},
		{"hello resume interest flag 2", wire.KindHello, body(1, "c", 0, 0, byte(1), 7, token, 9, byte(2), 0), wire.ErrMalformed},
		{"hello resume without subscriptions", wire.KindHello, body(1, "c", 0, 0, byte(1), 7, token, 9, byte(0)), wire.ErrTruncated},
		{"hello resume interest unknown mode", wire.KindHello, body(1, "c", 0, 0, byte(1), 7, token, 9, byte(1), byte(3), 10.0, 0), wire.ErrMalformed},
		{"hello resume interest NaN x", wire.KindHello, body(1, "c", 0, 0, byte(1), 7, token, 9, byte(1), byte(wire.InterestPoint), math.NaN(), 0.0, 1.0, 0), wire.ErrMalformed},
		{"hello resume interest negative radius", wire.KindHello, body(1, "c", 0, 0, byte(1), 7, token, 9, byte(1), byte(wire.InterestGlobal), -1.0, 0), wire.ErrMalformed},
		{"hello resume interest follow id", wire.KindHello, body(1, "c", 0, 0, byte(1), 7, token, 9, byte(1), byte(wire.InterestFollow), uint64(wire.MaxNetID)+1, 0, 1.0, 0), wire.ErrTooLarge},
		{"hello resume interest truncated", wire.KindHello, body(1, "c", 0, 0, byte(1), 7, token, 9, byte(1), byte(wire.InterestPoint), 1.0, 2.0), wire.ErrTruncated},
		{"hello resume too many subscriptions", wire.KindHello, body(1, "c", 0, 0, byte(1), 7, token, 9, byte(0), wire.MaxItems+1), wire.ErrTooLarge},
		{"hello resume subscription count beyond input", wire.KindHello, body(1, "c", 0, 0, byte(1), 7, token, 9, byte(0), 1000, byte(1), 0), wire.ErrTruncated},
		{"hello resume subscription unknown kind", wire.KindHello, body(1, "c", 0, 0, byte(1), 7, token, 9, byte(0), 1, byte(3), 0), wire.ErrMalformed},
		{"hello resume subscription component id", wire.KindHello, body(1, "c", 0, 0, byte(1), 7, token, 9, byte(0), 1, byte(wire.SubComponent), wire.MaxComponents), wire.ErrTooLarge},
		{"hello resume entity subscription without gen", wire.KindHello, body(1, "c", 0, 0, byte(1), 7, token, 9, byte(0), 1, byte(wire.SubEntity), 5), wire.ErrTruncated},
		{"hello resume trailing byte", wire.KindHello, body(1, "c", 0, 0, byte(1), 7, token, 9, byte(0), 0, byte(0)), wire.ErrMalformed},
		{"welcome no token", wire.KindWelcome, body(1, 2, 3, 4, 0, 0, byte(0)), wire.ErrTruncated},
		{"input id too large", wire.KindInput, body(1, wire.MaxComponents, 0, 0, 0), wire.ErrTooLarge},
		{"input entity too large", wire.KindInput, body(1, 0, uint64(wire.MaxNetID)+1, 0, 0), wire.ErrTooLarge},
		{"hello too many messages", wire.KindHello, body(1, "c", 0, wire.MaxComponents+1), wire.ErrTooLarge},
		{"welcome too many messages", wire.KindWelcome, body(1, 2, 3, 4, 0, wire.MaxComponents+1), wire.ErrTooLarge},
		{"message id too large", wire.KindMessage, body(1, wire.MaxComponents, 0), wire.ErrTooLarge},
		{"message value too long", wire.KindMessage, body(1, 0, wire.MaxValueLen+1), wire.ErrTooLarge},
		{"welcome too many components", wire.KindWelcome, body(1, 2, 3, 4, wire.MaxComponents+1), wire.ErrTooLarge},
		{"welcome long name", wire.KindWelcome, body(1, 2, 3, 4, 1, strings.Repeat("n", wire.MaxNameLen+1)), wire.ErrTooLarge},
		{"error long message", wire.KindError, body(4000, strings.Repeat("m", wire.MaxErrorLen+1)), wire.ErrTooLarge},
		{"error string beyond input", wire.KindError, body(4000, 10, []byte("short")), wire.ErrTruncated},
		{"subscribe too many", wire.KindSubscribe, body(wire.MaxItems + 1), wire.ErrTooLarge},
		{"subscribe count beyond input", wire.KindSubscribe, body(1000, byte(1), 0), wire.ErrTruncated},
		{"subscribe unknown kind", wire.KindSubscribe, body(1, byte(3), 0), wire.ErrMalformed},
		{"subscribe component id", wire.KindSubscribe, body(1, byte(wire.SubComponent), wire.MaxComponents), wire.ErrTooLarge},
		{"subscribe entity id", wire.KindSubscribe, body(1, byte(wire.SubEntity), uint64(wire.MaxNetID)+1, 0), wire.ErrTooLarge},
		{"interest unknown mode", wire.KindInterest, body(byte(3), 10.0), wire.ErrMalformed},
		{"interest NaN x", wire.KindInterest, body(byte(wire.InterestPoint), math.NaN(), 0.0, 10.0), wire.ErrMalformed},
		{"interest infinite y", wire.KindInterest, body(byte(wire.InterestPoint), 0.0, math.Inf(-1), 10.0), wire.ErrMalformed},
		{"interest negative radius", wire.KindInterest, body(byte(wire.InterestGlobal), -1.0), wire.ErrMalformed},
		{"interest infinite radius", wire.KindInterest, body(byte(wire.InterestGlobal), math.Inf(1)), wire.ErrMalformed},
		{"interest follow id", wire.KindInterest, body(byte(wire.InterestFollow), uint64(wire.MaxNetID)+1, 0, 1.0), wire.ErrTooLarge},
		{"mutate long value", wire.KindMutate, body(1, 2, 3, 4, wire.MaxValueLen+1), wire.ErrTooLarge},
		{"mutate value beyond input", wire.KindMutate, body(1, 2, 3, 4, 100, []byte{1, 2}), wire.ErrTruncated},
		{"mutate component id", wire.KindMutate, body(1, 2, 3, wire.MaxComponents, 0), wire.ErrTooLarge},
		{"control unknown op", wire.KindControl, body(1, byte(3), 1, 1, 0, byte(0)), wire.ErrMalformed},
		{"control bad bool", wire.KindControl, body(1, byte(wire.ControlTake), 1, 1, 0, byte(2)), wire.ErrMalformed},
		{"ping empty", wire.KindPing, nil, wire.ErrTruncated},
		{"ping trailing", wire.KindPing, body(1, 2), wire.ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := decoders[tt.kind](tt.body)
			assert(t, errors.Is(err, tt.want), "got %v, want %v", err, tt.want)
		})
	}
}

// TestDecodeTruncated checks that every strict prefix of every valid body
// fails with a typed error, and that no byte flip panics.
func TestDecodeTruncated(t *testing.T) {
	for _, msg := range sampleMessages() {
		kind := wire.Kind(msg[0])
		for n := 0; n < len(msg)-1; n++ {
			_, _, err := decodeMessage(append([]byte{msg[0]}, msg[1:1+n]...))
			if kind == wire.KindBatch {
				// A batch prefix that ends at a section boundary is a batch.
				assert(t, err == nil || typed(err), "%v prefix %d: untyped error %v", kind, n, err)
				continue
			}
			assert(t, typed(err), "%v prefix %d: got %v, want a typed error", kind, n, err)
		}
		for i := range msg {
			for _, x := range []byte{0x01, 0x80, 0xff} {
				mut := bytes.Clone(msg)
				mut[i] ^= x
				_, _, err := decodeMessage(mut)
				assert(t, err == nil || typed(err), "%v flip %d: untyped error %v", kind, i, err)
			}
		}
	}
}

func TestDecodeNoAllocForHugeClaims(t *testing.T) {
	// A count that passes its limit but not the remaining-input check must
	// fail before allocating a slice for it: 1024 ComponentDescs would take
	// over 50 KiB.
	bogus := [][]byte{
		body(1, "c", wire.MaxComponents),
		body(1, "c", 1, "p", make([]byte, 8), wire.MaxFields),
	}
	for _, b := range bogus {
		_, err := wire.DecodeHello(b)
		assert(t, errors.Is(err, wire.ErrTruncated), "got %v, want ErrTruncated", err)
		// TotalAlloc counts the whole process: over many calls, what another
		// goroutine allocates meanwhile is a few bytes a call.
		const calls = 200
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for range calls {
			_, _ = wire.DecodeHello(b)
		}
		runtime.ReadMemStats(&after)
		perCall := (after.TotalAlloc - before.TotalAlloc) / calls
		assert(t, perCall < 4096, "DecodeHello allocated %d bytes a call for a bogus count", perCall)
	}
}

func TestKindString(t *testing.T) {
	assert(t, wire.KindBatch.String() == "batch", "KindBatch = %q", wire.KindBatch.String())
	assert(t, wire.Kind(0).String() == "kind(0)", "Kind(0) = %q", wire.Kind(0).String())
	assert(t, wire.StatusNotFound.String() == "not found", "StatusNotFound = %q", wire.StatusNotFound.String())
	assert(t, wire.Status(9).String() == "status(9)", "Status(9) = %q", wire.Status(9).String())
}

func TestBodyHelperLayout(t *testing.T) {
	// Pins the Hello layout byte by byte, as docs/PROTOCOL.md describes it.
	msg := wire.AppendHello(nil, &wire.Hello{Version: 1, ClientName: "c", Components: []wire.ComponentDesc{
		{Name: "p", Hash: 0x0102030405060708, Fields: []wire.FieldDesc{{Name: "X", Type: "f", Quant: 0.5}}},
	}})
	want := []byte{byte(wire.KindHello), 1, 1, 'c', 1, 1, 'p', 8, 7, 6, 5, 4, 3, 2, 1, 1, 1, 'X', 1, 'f'}
	want = binary.LittleEndian.AppendUint64(want, math.Float64bits(0.5))
	want = append(want, 0) // no message types
	want = append(want, 0) // no resume
	assert(t, bytes.Equal(msg, want), "hello bytes\n got % x\nwant % x", msg, want)
}

func TestHelloResumeLayout(t *testing.T) {
	// Pins the resume section of a Hello byte by byte, as docs/PROTOCOL.md
	// §5.1 describes it: after the message types, the resume flag, client
	// id, token and tick, then the interest flag and the Interest body
	// after its kind byte (§5.5), then the subscriptions as a Subscribe
	// body (§5.4).
	h := wire.Hello{Version: 5, ClientName: "c", Resume: &wire.Resume{
		ClientID: 300,
		Tick:     2,
		Interest: &wire.Interest{Mode: wire.InterestFollow, ID: 9, Gen: 1, Radius: 0.5},
		Subs:     []wire.Sub{{Kind: wire.SubComponent, ID: 4}, {Kind: wire.SubEntity, ID: 9, Gen: 1}},
	}}
	copy(h.Resume.Token[:], "0123456789abcdef")
	msg := wire.AppendHello(nil, &h)
	want := []byte{byte(wire.KindHello), 5, 1, 'c', 0, 0} // no components, no message types
	want = append(want, 1, 0xac, 0x02)                    // resume; client id 300
	want = append(want, "0123456789abcdef"...)            // token
	want = append(want, 2)                                // tick
	head := len(want)
	want = append(want, 1, byte(wire.InterestFollow), 9, 1)
	want = binary.LittleEndian.AppendUint64(want, math.Float64bits(0.5))
	want = append(want, 2, byte(wire.SubComponent), 4, byte(wire.SubEntity), 9, 1)
	assert(t, bytes.Equal(msg, want), "hello bytes\n got % x\nwant % x", msg, want)

	// Without an interest: a 0 flag and nothing of it; no subscriptions: a
	// 0 count.
	h.Resume.Interest, h.Resume.Subs = nil, nil
	msg = wire.AppendHello(nil, &h)
	want = append(want[:head], 0, 0)
	assert(t, bytes.Equal(msg, want), "hello bytes\n got % x\nwant % x", msg, want)
	m, err := wire.DecodeHello(msg[1:])
	assert(t, err == nil && m.Resume != nil && m.Resume.Interest == nil && m.Resume.Subs == nil, "decode: %+v, %v", m.Resume, err)
}

func TestHelloResumeTruncated(t *testing.T) {
	// Every strict prefix of a resuming Hello fails: the interest and the
	// subscriptions are not optional once the resume flag is set.
	for _, h := range resumedHellos() {
		msg := wire.AppendHello(nil, &h)
		for n := 1; n < len(msg); n++ {
			_, err := wire.DecodeHello(msg[1:n])
			assert(t, errors.Is(err, wire.ErrTruncated), "prefix of %d of %d bytes: got %v, want ErrTruncated", n, len(msg), err)
		}
	}
}
