package netclient

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/coder/websocket"

	"github.com/ebisync/ebisync/internal/wire"
)

// maxPooledBuffer is the largest buffer kept for reuse; a rare huge batch
// does not pin its memory.
const maxPooledBuffer = 256 << 10

// maxRTT bounds a plausible round-trip time; a Pong claiming more is ignored.
const maxRTT = time.Minute

// inbound is one decoded batch on its way to the game goroutine. It owns
// the buffers the batch's values alias.
type inbound struct {
	msg     []byte
	scratch []byte
	batch   wire.Batch
	recv    time.Duration // since c.epoch
}

type evKind uint8

const (
	evBatch evKind = iota + 1
	evUp           // a new session is live: resync the mirror
	evDown         // the session ended: fail its pending requests
)

// event is one item of the game goroutine's queue.
type event struct {
	kind evKind
	sess *session
	in   *inbound
	err  error
}

func (c *Client) getInbound() *inbound {
	select {
	case in := <-c.free:
		return in
	default:
		return new(inbound)
	}
}

func (c *Client) recycle(in *inbound) {
	if cap(in.msg) > maxPooledBuffer || cap(in.scratch) > maxPooledBuffer {
		return
	}
	in.batch.Reset()
	select {
	case c.free <- in:
	default:
	}
}

// readLoop reads and decodes messages until the connection ends, and
// returns why it ended.
func (s *session) readLoop() error {
	c := s.c
	var in *inbound
	defer func() {
		if in != nil {
			c.recycle(in)
		}
	}()
	for {
		if in == nil {
			in = c.getInbound()
		}
		typ, r, err := s.ws.Reader(s.ctx)
		if err != nil {
			return err
		}
		in.msg, err = readAll(r, in.msg[:0])
		if err != nil {
			if errors.Is(err, websocket.ErrMessageTooBig) {
				return s.protocolError(fmt.Errorf("message exceeds the read limit of %d bytes: %w", c.opts.ReadLimit, err))
			}
			return err
		}
		if s.net != nil && s.net.Ended() {
			return errVanished // possibly cut short: the connection is gone
		}
		now := time.Since(c.epoch)
		s.lastRecv.Store(int64(now))
		c.stats.countIn(len(in.msg), now)
		if typ != websocket.MessageBinary {
			return s.protocolError(errors.New("unexpected text message"))
		}
		var kind wire.Kind
		var body []byte
		kind, body, in.scratch, err = wire.Open(in.msg, in.scratch)
		if err != nil {
			return s.protocolError(err)
		}
		if in.msg[0]&wire.FlagCompressed != 0 {
			c.stats.compressedIn.Add(uint64(len(in.msg)))
			c.stats.uncompressedIn.Add(uint64(1 + len(body)))
			c.stats.compressedMsgsIn.Add(1)
		}
		switch kind {
		case wire.KindBatch:
			if err := wire.DecodeBatch(body, s, &in.batch); err != nil {
				return s.protocolError(err)
			}
			s.sessTick += in.batch.TickAdvance
			s.readTick = s.sessTick
			in.recv = now
			if !s.deliver(in) {
				return errSessionEnded
			}
			in = nil
		case wire.KindPing:
			m, err := wire.DecodePing(body)
			if err != nil {
				return s.protocolError(err)
			}
			s.send(wire.AppendPing(nil, wire.KindPong, &m)) // dropped if the writer is backed up
		case wire.KindPong:
			m, err := wire.DecodePing(body)
			if err != nil {
				return s.protocolError(err)
			}
			if rtt := now - time.Duration(m.Nonce); m.Nonce <= uint64(now) && rtt <= maxRTT {
				c.stats.observeRTT(rtt)
			}
		case wire.KindError:
			m, err := wire.DecodeError(body)
			if err != nil {
				return s.protocolError(err)
			}
			// The server closes the connection next; keep the full reason.
			s.remoteErr.Store(&m)
			c.log.Info("ebisync: server reported an error", "url", c.url, "code", m.Code, "message", m.Message)
		default:
			return s.protocolError(fmt.Errorf("%w: unexpected %s message", wire.ErrMalformed, kind))
		}
	}
}

var errSessionEnded = errors.New("netclient: session ended")

// deliver hands a batch to the game goroutine, blocking while its queue is
// full. It reports false when the session or the client ended meanwhile.
func (s *session) deliver(in *inbound) bool {
	s.blocked.Store(true)
	defer s.blocked.Store(false)
	select {
	case s.c.events <- event{kind: evBatch, sess: s, in: in}:
		// Waiting on the game is not the server's silence.
		s.lastRecv.Store(int64(time.Since(s.c.epoch)))
		return true
	case <-s.ctx.Done():
		return false
	case <-s.c.ctx.Done():
		return false
	}
}

// readAll reads r to EOF into b, growing it as needed. The WebSocket read
// limit bounds the size.
func readAll(r io.Reader, b []byte) ([]byte, error) {
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
	}
}
