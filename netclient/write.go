package netclient

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/coder/websocket"

	"github.com/ebisync/ebisync/internal/wire"
)

// closeReasonWait bounds how long a failed write leaves the reader to
// report the server's close reason before the write error ends the session.
const closeReasonWait = 250 * time.Millisecond

var errIdle = errors.New("netclient: nothing received from the server within the idle timeout")

// writeLoop writes queued messages and periodic pings until the session
// ends. It is the only goroutine writing data messages to the connection.
func (s *session) writeLoop() {
	defer s.wg.Done()
	c := s.c
	t := time.NewTicker(c.opts.PingInterval)
	defer t.Stop()
	var framed []byte
	write := func(msg []byte) bool {
		if len(msg) > 1+wire.MinCompressSize {
			if c.comp == nil {
				c.comp = new(wire.Compressor)
			}
			framed = c.comp.Compress(framed[:0], msg)
			msg = framed
		}
		ctx, cancel := context.WithTimeout(s.ctx, c.opts.WriteTimeout)
		err := s.ws.Write(ctx, websocket.MessageBinary, msg)
		timedOut := ctx.Err() != nil && s.ctx.Err() == nil
		cancel()
		if err != nil {
			if timedOut {
				err = fmt.Errorf("write timed out after %s: %w", c.opts.WriteTimeout, err)
			} else {
				// A write fails as the connection closes. When the server
				// closed it, the reader reports why (its close frame)
				// unless it cannot within closeReasonWait.
				wait := time.NewTimer(closeReasonWait)
				select {
				case <-s.ctx.Done():
				case <-wait.C:
				}
				wait.Stop()
			}
			s.fail(err, -1, "")
			return false
		}
		c.stats.countOut(len(msg), time.Since(c.epoch))
		return true
	}
	ping := func() bool {
		now := time.Since(c.epoch)
		return write(wire.AppendPing(nil, wire.KindPing, &wire.Ping{Nonce: uint64(now)}))
	}
	if !ping() {
		return
	}
	for {
		select {
		case <-s.ctx.Done():
			return
		case msg := <-s.out:
			if !write(msg) {
				return
			}
		case <-t.C:
			idle := time.Since(c.epoch) - time.Duration(s.lastRecv.Load())
			if c.opts.IdleTimeout > 0 && idle > c.opts.IdleTimeout && !s.blocked.Load() {
				s.fail(errIdle, -1, "")
				return
			}
			if !ping() {
				return
			}
		}
	}
}
