package eofconn_test

import (
	"io"
	"net"
	"testing"

	"github.com/ebisync/ebisync/internal/eofconn"
)

func TestEnded(t *testing.T) {
	a, b := net.Pipe()
	c := eofconn.Wrap(a)
	go func() {
		b.Write([]byte("hi"))
		b.Close()
	}()
	buf := make([]byte, 2)
	if _, err := io.ReadFull(c, buf); err != nil || c.Ended() {
		t.Fatalf("after a good read: err %v, ended %v", err, c.Ended())
	}
	if _, err := c.Read(buf); err == nil || !c.Ended() {
		t.Fatalf("after the peer closed: err %v, ended %v", err, c.Ended())
	}
}
