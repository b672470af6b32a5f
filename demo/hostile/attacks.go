package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strings"
	"time"
	"unsafe"

	"github.com/coder/websocket"

	"github.com/ebisync/ebisync/demo/sim"
	"github.com/ebisync/ebisync/internal/hostile"
	"github.com/ebisync/ebisync/internal/wire"
)

// Close codes of docs/PROTOCOL.md §9.
const (
	closeProtocol = websocket.StatusCode(wire.CloseProtocolError)  // 4000
	closeSchema   = websocket.StatusCode(wire.CloseSchemaMismatch) // 4001
	closeAbuse    = websocket.StatusCode(wire.CloseRateLimited)    // 4002
	closeTooBig   = websocket.StatusMessageTooBig                  // 1009
)

// attack is one hostile act and the check of its documented answer: run
// returns nil when the server answered as docs/PROTOCOL.md and
// docs/SECURITY.md say, a *skipped when it could not be played, and any
// other error otherwise.
type attack struct {
	name   string
	answer string // the documented answer, for the summary
	run    func(ctx context.Context, e *env) error
	// slow attacks wait for a server timeout: they run on their own
	// goroutine, one at a time, beside the others.
	slow bool
}

// closesWith joins, sends msg and expects the close code.
func closesWith(code websocket.StatusCode, typ websocket.MessageType, msg func(e *env) []byte) func(context.Context, *env) error {
	return func(ctx context.Context, e *env) error {
		s, err := e.join(ctx)
		if err != nil {
			return err
		}
		defer s.close()
		// A write may fail when the server closes first; the close code
		// tells.
		werr := sendOn(ctx, s.ws, typ, msg(e))
		if _, err := expectClose(ctx, s.ws, code); err != nil {
			if werr != nil {
				return fmt.Errorf("%w (after the write failed: %v)", err, werr)
			}
			return err
		}
		return nil
	}
}

// refusedAtHandshake dials, sends msg in place of the Hello and expects an
// Error message, then the close code.
func refusedAtHandshake(code websocket.StatusCode, msg func(e *env) []byte) func(context.Context, *env) error {
	return func(ctx context.Context, e *env) error {
		ws, err := e.dial(ctx, nil)
		if err != nil {
			return err
		}
		defer ws.CloseNow()
		werr := sendOn(ctx, ws, websocket.MessageBinary, msg(e))
		reason, err := expectClose(ctx, ws, code)
		if err != nil {
			if werr != nil {
				return fmt.Errorf("%w (after the write failed: %v)", err, werr)
			}
			return err
		}
		if reason == "" {
			return errors.New("no Error message with the reason before the close")
		}
		return nil
	}
}

// keepsServing runs act, then checks that the server still serves a new
// client.
func keepsServing(act func(ctx context.Context, e *env) error) func(context.Context, *env) error {
	return func(ctx context.Context, e *env) error {
		if err := act(ctx, e); err != nil {
			return err
		}
		return e.stillServing(ctx)
	}
}

func attacks() []attack {
	return []attack{
		// Before the upgrade.
		{name: "cross-site Origin", answer: "HTTP 403", run: func(ctx context.Context, e *env) error {
			hdr := http.Header{}
			hdr.Set("Origin", "http://evil.example")
			return e.expectHTTP(ctx, hdr, http.StatusForbidden)
		}},
		{name: "plain HTTP GET", answer: "HTTP 426", run: func(ctx context.Context, e *env) error {
			ctx, cancel := context.WithTimeout(ctx, answerTimeout)
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http"+strings.TrimPrefix(e.url, "ws"), nil)
			if err != nil {
				return err
			}
			req.Close = true // no idle connection left behind
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return e.dialErr(nil, err)
			}
			resp.Body.Close()
			e.answered.Store(true)
			if resp.StatusCode != http.StatusUpgradeRequired {
				return fmt.Errorf("HTTP %d, want 426", resp.StatusCode)
			}
			return nil
		}},
		// The handshake.
		{name: "no Hello", answer: "Error, then close 4000 after the handshake timeout", slow: true, run: func(ctx context.Context, e *env) error {
			ws, err := e.dial(ctx, nil)
			if err != nil {
				return err
			}
			defer ws.CloseNow()
			ctx, cancel := context.WithTimeout(ctx, e.hsTimeout+answerTimeout)
			defer cancel()
			start := time.Now()
			reason, err := expectCloseBy(ctx, ws, closeProtocol)
			if err != nil {
				return err
			}
			if !strings.Contains(reason, "Hello") {
				return fmt.Errorf("Error message %q does not say the Hello is missing", reason)
			}
			e.logf("no Hello: closed after %v: %s", time.Since(start).Round(time.Millisecond), reason)
			return nil
		}},
		{name: "random bytes instead of Hello", answer: "Error, then close 4000", run: refusedAtHandshake(closeProtocol, func(*env) []byte { return randomBytes(200, 0x3f) })},
		{name: "schema mismatch", answer: "Error, then close 4001", run: refusedAtHandshake(closeSchema, func(e *env) []byte {
			h := hostile.Hello(e.reg, "hostile")
			h.Components[0].Fields[0].Type = "complex128"
			h.Components[0].Hash ^= 1
			return wire.AppendHello(nil, h)
		})},
		{name: "lz4 Hello declaring 4 MiB", answer: "Error, then close 4000", run: refusedAtHandshake(closeProtocol, func(*env) []byte {
			return lz4Message(wire.KindHello, make([]byte, 30000), wire.MaxMessageSize)
		})},
		// Malformed messages after the handshake.
		{name: "random bytes", answer: "close 4000", run: closesWith(closeProtocol, websocket.MessageBinary, func(*env) []byte { return randomBytes(300, byte(wire.KindInterest)) })},
		{name: "text frame", answer: "close 4000", run: closesWith(closeProtocol, websocket.MessageText, func(*env) []byte { return []byte(`{"kind":"subscribe"}`) })},
		{name: "unknown kind", answer: "close 4000", run: closesWith(closeProtocol, websocket.MessageBinary, func(*env) []byte { return []byte{0x3f, 1, 2, 3} })},
		{name: "a server's kind (Batch)", answer: "close 4000", run: closesWith(closeProtocol, websocket.MessageBinary, func(*env) []byte { return []byte{byte(wire.KindBatch), 0, 0, 0} })},
		{name: "second Hello", answer: "close 4000", run: closesWith(closeProtocol, websocket.MessageBinary, func(e *env) []byte { return e.hello })},
		{name: "message over the 32 KiB read limit", answer: "close 1009", run: closesWith(closeTooBig, websocket.MessageBinary, func(*env) []byte {
			return append([]byte{byte(wire.KindSubscribe)}, make([]byte, 40<<10)...)
		})},
		{name: "lz4 message declaring 1 MiB", answer: "close 4000", run: closesWith(closeProtocol, websocket.MessageBinary, func(*env) []byte {
			return lz4Message(wire.KindSubscribe, make([]byte, 4000), 1<<20)
		})},
		{name: "NaN interest radius", answer: "close 4000", run: closesWith(closeProtocol, websocket.MessageBinary, func(*env) []byte {
			// AppendInterest refuses nothing: these are an attacker's bytes.
			return wire.AppendInterest(nil, &wire.Interest{Mode: wire.InterestPoint, Radius: math.NaN()})
		})},
		// Bytes that once hurt, then gone.
		{name: "7-byte Subscribe past the records, then close", answer: "the server serves on", run: keepsServing(func(ctx context.Context, e *env) error {
			s, err := e.join(ctx)
			if err != nil {
				return err
			}
			// Subscribe, 1 entry: entity 100000, generation 0.
			err = s.send(ctx, []byte{0x04, 0x01, 0x02, 0xa0, 0x8d, 0x06, 0x00})
			s.close()
			return err
		})},
		{name: "half-sent frame, then TCP close", answer: "the server serves on", run: keepsServing(func(ctx context.Context, e *env) error {
			c, err := e.rawUpgrade(ctx)
			if err != nil {
				return err
			}
			frame := append(hostile.FrameHeader(len(e.hello)), e.hello...)
			_, err = c.Write(frame[:len(frame)/2])
			c.Close()
			return err
		})},
		// Floods.
		{name: "entity-subscription flood", answer: "close 4002", run: func(ctx context.Context, e *env) error {
			// More live entities than the cap, in one message the
			// subscription rate's burst (the cap + 64) allows.
			want := e.maxEntitySubs + 1
			known, err := e.learnEntities(ctx, want)
			if err != nil {
				return err
			}
			if len(known) < want {
				return &skipped{fmt.Sprintf("knows %d live entities, needs %d to pass the cap", len(known), want)}
			}
			var m wire.Subscribe
			for id, gen := range known {
				if len(m.Subs) == e.maxEntitySubs+32 {
					break
				}
				m.Subs = append(m.Subs, wire.Sub{Kind: wire.SubEntity, ID: id, Gen: gen})
			}
			return closesWith(closeAbuse, websocket.MessageBinary, func(*env) []byte {
				return wire.AppendSubscribe(nil, wire.KindSubscribe, &m)
			})(ctx, e)
		}},
		{name: "subscription-change flood", answer: "close 4002", run: func(ctx context.Context, e *env) error {
			s, err := e.join(ctx)
			if err != nil {
				return err
			}
			defer s.close()
			var m wire.Subscribe
			for range 100 {
				m.Subs = append(m.Subs, wire.Sub{Kind: wire.SubComponent, ID: 0})
			}
			sub := wire.AppendSubscribe(nil, wire.KindSubscribe, &m)
			unsub := wire.AppendSubscribe(nil, wire.KindUnsubscribe, &m)
			// 6000 entries at once, far past the burst.
			for range 30 {
				if s.send(ctx, sub) != nil || s.send(ctx, unsub) != nil {
					break
				}
			}
			_, err = expectClose(ctx, s.ws, closeAbuse)
			return err
		}},
		// Taking what is not yours.
		{name: "mutation of another player's ship", answer: "mutation result forbidden", run: func(ctx context.Context, e *env) error {
			s, id, gen, err := e.joinBesideVictim(ctx)
			if err != nil {
				return err
			}
			defer s.close()
			steer, ok := s.comp("demo.steer")
			if !ok {
				return errors.New("the server does not replicate demo.steer")
			}
			v := sim.SteerData{Thrust: 100, Turn: 100}
			val := s.comps[steer].AppendFull(nil, unsafe.Pointer(&v))
			if err := s.send(ctx, wire.AppendMutate(nil, &wire.Mutate{Request: 1, ID: id, Gen: gen, Comp: steer, Value: val})); err != nil {
				return err
			}
			res, _, err := s.readResults(ctx, 1)
			if err != nil {
				return err
			}
			if r := res[1]; r.Status != wire.StatusForbidden {
				return fmt.Errorf("result %v %q, want forbidden", r.Status, r.Message)
			}
			return nil
		}},
		{name: "control take of another player's ship", answer: "control result forbidden", run: func(ctx context.Context, e *env) error {
			s, id, gen, err := e.joinBesideVictim(ctx)
			if err != nil {
				return err
			}
			defer s.close()
			if err := s.send(ctx, wire.AppendControl(nil, &wire.Control{Request: 1, Op: wire.ControlTake, ID: id, Gen: gen})); err != nil {
				return err
			}
			_, ctl, err := s.readResults(ctx, 1)
			if err != nil {
				return err
			}
			r := ctl[1]
			if r.Result != wire.ControlForbidden {
				return fmt.Errorf("reply %+v, want forbidden", r)
			}
			if r.Holder == s.welcome.ClientID {
				return fmt.Errorf("reply %+v names the attacker as the holder", r)
			}
			return nil
		}},
	}
}
