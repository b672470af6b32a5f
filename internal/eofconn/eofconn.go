// Package eofconn wraps a network connection to note when a read from it
// fails.
//
// coder/websocket ends a message at a bare EOF as if it were complete: a
// peer that vanishes right after a frame header, or at a read-buffer
// boundary, delivers an empty or truncated message, which would look like
// bad input. The server and the client read through a Conn and drop any
// message read once it has Ended: the peer is gone either way.
package eofconn

import (
	"net"
	"sync/atomic"
)

// Conn is a net.Conn that notes a failed read. It is safe for concurrent
// use as the net.Conn it wraps is.
type Conn struct {
	net.Conn
	ended atomic.Bool
}

// Wrap returns c wrapped.
func Wrap(c net.Conn) *Conn { return &Conn{Conn: c} }

// Read reads from the connection and notes an error.
func (c *Conn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if err != nil {
		c.ended.Store(true)
	}
	return n, err
}

// Ended reports whether a read from the connection has failed (EOF, a
// reset, a closed connection).
func (c *Conn) Ended() bool { return c.ended.Load() }
