// Package hostile builds bytes that no well-behaved ebisync client sends,
// below the WebSocket library and beside the wire encoders: hand-made
// upgrades, frame headers without their payload, lz4 messages whose
// declared size lies. The hostile-input tests and the demo's hostile client
// use it to attack a server as a stranger would.
package hostile

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/pierrec/lz4/v4"

	"github.com/ebisync/ebisync/components"
	"github.com/ebisync/ebisync/internal/wire"
)

// FrameHeader is the header of a client's binary WebSocket frame of n
// payload bytes, masked with a zero key (which leaves the payload as it
// is). Send fewer than n bytes after it to cut a frame short.
func FrameHeader(n int) []byte {
	h := []byte{0x82}
	switch {
	case n < 126:
		h = append(h, 0x80|byte(n))
	case n < 1<<16:
		h = append(h, 0x80|126, byte(n>>8), byte(n))
	default:
		h = append(h, 0x80|127)
		h = binary.BigEndian.AppendUint64(h, uint64(n))
	}
	return append(h, 0, 0, 0, 0)
}

// Compressed frames body as an lz4-compressed message of kind that
// declares size uncompressed bytes, whatever body's real size
// (PROTOCOL.md §4). It fails if lz4 cannot compress body.
func Compressed(kind wire.Kind, body []byte, size int) ([]byte, error) {
	block := make([]byte, lz4.CompressBlockBound(len(body)))
	n, err := lz4.CompressBlock(body, block, nil)
	if err != nil || n == 0 {
		return nil, fmt.Errorf("lz4 cannot compress the body: %d bytes, %v", n, err)
	}
	msg := []byte{byte(kind) | wire.FlagCompressed}
	msg = binary.AppendUvarint(msg, uint64(size))
	return append(msg, block[:n]...), nil
}

// Upgrade opens a TCP connection to hostport and performs a WebSocket
// upgrade of path by hand, with the headers hdr, so that the caller can
// then write any bytes at all. A refused upgrade returns the response and
// an error; its body is closed. The connection's deadline is set to
// timeout from now. The connection is for writing: what the server sends
// after the upgrade may already sit in a buffer the caller never sees.
func Upgrade(ctx context.Context, hostport, path string, hdr http.Header, timeout time.Duration) (net.Conn, *http.Response, error) {
	d := net.Dialer{Timeout: timeout}
	c, err := d.DialContext(ctx, "tcp", hostport)
	if err != nil {
		return nil, nil, err
	}
	key := make([]byte, 16)
	rand.Read(key)
	var b strings.Builder
	fmt.Fprintf(&b, "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: %s\r\n",
		path, hostport, base64.StdEncoding.EncodeToString(key))
	for k, vs := range hdr {
		for _, v := range vs {
			fmt.Fprintf(&b, "%s: %s\r\n", k, v)
		}
	}
	b.WriteString("\r\n")
	c.SetDeadline(time.Now().Add(timeout))
	if _, err := io.WriteString(c, b.String()); err != nil {
		c.Close()
		return nil, nil, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		c.Close()
		return nil, nil, err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSwitchingProtocols {
		c.Close()
		return nil, resp, fmt.Errorf("upgrade refused: %s", resp.Status)
	}
	return c, resp, nil
}

// Hello is the Hello of a client named name with registry reg, as a
// well-behaved client sends it; attacks send it at the wrong time, or
// change it.
func Hello(reg *components.Registry, name string) *wire.Hello {
	return &wire.Hello{
		Version:    wire.ProtocolVersion,
		ClientName: name,
		Components: descs(reg.Schema()),
		Messages:   descs(reg.MessageSchema()),
	}
}

func descs(schema []components.Schema) []wire.ComponentDesc {
	var out []wire.ComponentDesc
	for _, s := range schema {
		d := wire.ComponentDesc{Name: s.Name, Hash: s.Hash}
		for _, f := range s.Fields {
			d.Fields = append(d.Fields, wire.FieldDesc{Name: f.Name, Type: f.Type, Quant: f.Quant})
		}
		out = append(out, d)
	}
	return out
}
