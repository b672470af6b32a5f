package wire_test

import (
	"fmt"

	"github.com/ebisync/ebisync/internal/wire"
)

func Example() {
	// The client's first message.
	msg := wire.AppendHello(nil, &wire.Hello{
		Version:    wire.ProtocolVersion,
		ClientName: "example",
		Components: []wire.ComponentDesc{{
			Name: "position",
			Hash: 0xfeed,
			Fields: []wire.FieldDesc{
				{Name: "X", Type: "float64", Quant: 0.01},
				{Name: "Y", Type: "float64", Quant: 0.01},
			},
		}},
	})

	// The server reads one WebSocket message, opens it and decodes by kind.
	var scratch []byte
	kind, body, scratch, err := wire.Open(msg, scratch)
	if err != nil {
		fmt.Println(err)
		return
	}
	switch kind {
	case wire.KindHello:
		hello, err := wire.DecodeHello(body)
		if err != nil {
			fmt.Println(err)
			return
		}
		c := hello.Components[0]
		fmt.Printf("%s v%d: %s %s.%s q=%g\n", hello.ClientName, hello.Version, kind, c.Name, c.Fields[1].Name, c.Fields[1].Quant)
	}
	_ = scratch // reuse for the next message

	// A truncated message fails with a typed error.
	_, err = wire.DecodeHello(body[:len(body)-1])
	fmt.Println(err)
	// Output:
	// example v5: hello position.Y q=0.01
	// failed to decode hello: at byte 65: wire: truncated input
}

func ExampleCompressor() {
	var c wire.Compressor // one per goroutine
	b := &wire.Batch{TickAdvance: 1}
	for id := uint64(1); id <= 100; id++ {
		b.Updates = append(b.Updates, wire.Update{Comp: 0, ID: id, Delta: true, Value: []byte{5, 1, 2, 3, 4}})
	}
	msg := wire.AppendBatch(nil, b)
	z := c.Compress(nil, msg)
	kind, compressed, _ := wire.PeekKind(z)
	fmt.Println(kind, compressed, len(z) < len(msg))
	// Output: batch true true
}
