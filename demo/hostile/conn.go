package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/coder/websocket"

	"github.com/ebisync/ebisync/components"
	"github.com/ebisync/ebisync/demo/sim"
	"github.com/ebisync/ebisync/internal/codec"
	"github.com/ebisync/ebisync/internal/hostile"
	"github.com/ebisync/ebisync/internal/wire"
)

// answerTimeout bounds the wait for one answer of the server: a close, a
// Welcome, a result.
const answerTimeout = 5 * time.Second

var (
	// errServerGone: a dial failed below HTTP (refused, reset, timed out)
	// after the server had answered. It ends the run.
	errServerGone = errors.New("the server stopped answering")
	// errUnreachable: the first dial failed below HTTP. It ends the run.
	errUnreachable = errors.New("cannot reach the server")
)

// skipped is an attack that could not be played (not a wrong answer).
type skipped struct{ why string }

func (s *skipped) Error() string { return "skipped: " + s.why }

// env is what the attacks share: where the server is, the demo's
// registry, and what was learned of the world.
type env struct {
	url      string // ws://host:port/path
	hostport string
	path     string
	// hsTimeout is the server's handshake timeout; maxEntitySubs its
	// Options.MaxEntitySubscriptions.
	hsTimeout     time.Duration
	maxEntitySubs int
	verbose       io.Writer // nil: quiet

	reg   *components.Registry // the demo's (sim.NewRegistry), read only
	hello []byte               // a valid Hello of reg

	answered atomic.Bool // a dial has reached the server's HTTP handler

	mu sync.Mutex
	// known are live entities (net id → generation) learned from batches:
	// asteroids and drones, which the demo never removes.
	known map[uint64]uint64
	vict  *victim
}

func newEnv(url string, hsTimeout time.Duration, maxEntitySubs int, verbose io.Writer) (*env, error) {
	u := url
	var scheme string
	switch {
	case strings.HasPrefix(u, "ws://"):
		scheme, u = "ws", strings.TrimPrefix(u, "ws://")
	case strings.HasPrefix(u, "wss://"):
		return nil, errors.New("wss:// is not supported: the raw attacks speak plain TCP")
	default:
		return nil, fmt.Errorf("-connect %q: want ws://HOST:PORT/PATH", url)
	}
	hostport, path, _ := strings.Cut(u, "/")
	if hostport == "" {
		return nil, fmt.Errorf("-connect %q: no host", url)
	}
	if _, _, err := net.SplitHostPort(hostport); err != nil {
		return nil, fmt.Errorf("-connect %q: %v", url, err)
	}
	reg := sim.NewRegistry()
	e := &env{
		url: scheme + "://" + hostport + "/" + path, hostport: hostport, path: "/" + path,
		hsTimeout: hsTimeout, maxEntitySubs: maxEntitySubs, verbose: verbose,
		reg: reg, hello: wire.AppendHello(nil, hostile.Hello(reg, "hostile")),
		known: map[uint64]uint64{},
	}
	return e, nil
}

func (e *env) logf(format string, args ...any) {
	if e.verbose != nil {
		fmt.Fprintf(e.verbose, "  "+format+"\n", args...)
	}
}

// dialErr classifies a failed dial: an HTTP refusal is an answer (to be
// judged by the attack), anything below HTTP means the server is gone.
func (e *env) dialErr(resp *http.Response, err error) error {
	if resp != nil {
		e.answered.Store(true) // an HTTP refusal is the server answering
		hint := ""
		if resp.StatusCode == http.StatusTooManyRequests {
			hint = " (the server's per-address limit: give it a larger -max-per-addr)"
		}
		return &httpRefusal{status: resp.StatusCode, err: err, hint: hint}
	}
	if e.answered.Load() {
		return fmt.Errorf("%w: %v", errServerGone, err)
	}
	return fmt.Errorf("%w: %v", errUnreachable, err)
}

type httpRefusal struct {
	status int
	err    error
	hint   string
}

func (r *httpRefusal) Error() string {
	return fmt.Sprintf("upgrade refused with HTTP %d%s: %v", r.status, r.hint, r.err)
}

// dial opens a WebSocket with hdr.
func (e *env) dial(ctx context.Context, hdr http.Header) (*websocket.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, answerTimeout)
	defer cancel()
	ws, resp, err := websocket.Dial(ctx, e.url, &websocket.DialOptions{CompressionMode: websocket.CompressionDisabled, HTTPHeader: hdr})
	if err != nil {
		return nil, e.dialErr(resp, err)
	}
	e.answered.Store(true)
	ws.SetReadLimit(wire.MaxMessageSize + 64)
	return ws, nil
}

// session is a connection past its handshake.
type session struct {
	ws      *websocket.Conn
	welcome wire.Welcome
	comps   sizer // by the Welcome's component ids
	scratch []byte
	batch   wire.Batch
}

// join dials and completes the handshake.
func (e *env) join(ctx context.Context) (*session, error) {
	ws, err := e.dial(ctx, nil)
	if err != nil {
		return nil, err
	}
	s := &session{ws: ws}
	ctx, cancel := context.WithTimeout(ctx, answerTimeout)
	defer cancel()
	if err := ws.Write(ctx, websocket.MessageBinary, e.hello); err != nil {
		ws.CloseNow()
		return nil, fmt.Errorf("hello: %w", err)
	}
	_, msg, err := ws.Read(ctx)
	if err != nil {
		ws.CloseNow()
		return nil, fmt.Errorf("no Welcome: %w", err)
	}
	kind, body, _, err := wire.Open(msg, nil)
	if err == nil && kind != wire.KindWelcome {
		err = fmt.Errorf("got %v", kind)
	}
	if err == nil {
		s.welcome, err = wire.DecodeWelcome(body)
	}
	if err != nil {
		ws.CloseNow()
		return nil, fmt.Errorf("bad Welcome: %w", err)
	}
	for _, name := range s.welcome.Components {
		c, _ := e.reg.ByName(name) // nil: a component the demo lacks
		s.comps = append(s.comps, codec.Of(c))
	}
	return s, nil
}

// close closes the session without a close handshake.
func (s *session) close() { s.ws.CloseNow() }

// comp returns the Welcome's id of the component named name.
func (s *session) comp(name string) (uint64, bool) {
	for i, c := range s.comps {
		if c != nil && c.Name() == name {
			return uint64(i), true
		}
	}
	return 0, false
}

// send writes one binary message.
func (s *session) send(ctx context.Context, msg []byte) error {
	return sendOn(ctx, s.ws, websocket.MessageBinary, msg)
}

func sendOn(ctx context.Context, ws *websocket.Conn, typ websocket.MessageType, msg []byte) error {
	ctx, cancel := context.WithTimeout(ctx, answerTimeout)
	defer cancel()
	return ws.Write(ctx, typ, msg)
}

// subscribeAll subscribes to every component of the Welcome.
func (s *session) subscribeAll(ctx context.Context) error {
	var m wire.Subscribe
	for i := range s.comps {
		m.Subs = append(m.Subs, wire.Sub{Kind: wire.SubComponent, ID: uint64(i)})
	}
	return s.send(ctx, wire.AppendSubscribe(nil, wire.KindSubscribe, &m))
}

// next reads messages until a batch arrives and decodes it into s.batch.
// Pongs and other messages are passed to other (which may be nil).
func (s *session) next(ctx context.Context, other func(kind wire.Kind, body []byte)) error {
	for {
		_, msg, err := s.ws.Read(ctx)
		if err != nil {
			return err
		}
		kind, body, scratch, err := wire.Open(msg, s.scratch)
		s.scratch = scratch
		if err != nil {
			return fmt.Errorf("the server sent a bad message: %w", err)
		}
		if kind != wire.KindBatch {
			if other != nil {
				other(kind, body)
			}
			continue
		}
		s.batch.Reset()
		if err := wire.DecodeBatch(body, s.comps, &s.batch); err != nil {
			return fmt.Errorf("the server sent a bad batch: %w", err)
		}
		return nil
	}
}

// sizer tells batch values' lengths by the Welcome's component ids.
type sizer []*codec.Codec

func (s sizer) at(comp uint64) (*codec.Codec, error) {
	if comp >= uint64(len(s)) || s[comp] == nil {
		return nil, fmt.Errorf("unknown component %d", comp)
	}
	return s[comp], nil
}

func (s sizer) FullLen(comp uint64, b []byte) (int, error) {
	c, err := s.at(comp)
	if err != nil {
		return 0, err
	}
	return c.FullLen(b)
}

func (s sizer) DeltaLen(comp uint64, b []byte) (int, error) {
	c, err := s.at(comp)
	if err != nil {
		return 0, err
	}
	return c.DeltaLen(b)
}

// expectClose reads until the connection ends and checks its close code.
// It returns the reason of the Error message the server sent first, if
// any.
func expectClose(ctx context.Context, ws *websocket.Conn, code websocket.StatusCode) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, answerTimeout)
	defer cancel()
	return expectCloseBy(ctx, ws, code)
}

func expectCloseBy(ctx context.Context, ws *websocket.Conn, code websocket.StatusCode) (string, error) {
	var reason string
	var scratch []byte
	for {
		_, msg, err := ws.Read(ctx)
		if err != nil {
			got := websocket.CloseStatus(err)
			switch {
			case got == code:
				return reason, nil
			case got == -1 && ctx.Err() != nil:
				return reason, fmt.Errorf("still open, want close %d", code)
			case got == -1:
				return reason, fmt.Errorf("connection ended without a close frame (%v), want close %d", err, code)
			default:
				return reason, fmt.Errorf("closed with %d (%v), want %d", got, err, code)
			}
		}
		kind, body, s, err := wire.Open(msg, scratch)
		scratch = s
		if err == nil && kind == wire.KindError {
			if m, err := wire.DecodeError(body); err == nil {
				reason = m.Message
			}
		}
	}
}

// expectHTTP checks that an upgrade with hdr is refused with status.
func (e *env) expectHTTP(ctx context.Context, hdr http.Header, status int) error {
	ws, err := e.dial(ctx, hdr)
	if err == nil {
		ws.CloseNow()
		return fmt.Errorf("upgrade accepted, want HTTP %d", status)
	}
	var r *httpRefusal
	if errors.As(err, &r) {
		if r.status == status {
			return nil
		}
		return fmt.Errorf("upgrade refused with HTTP %d%s, want %d", r.status, r.hint, status)
	}
	return err
}

// rawUpgrade upgrades a plain TCP connection by hand, for attacks below
// the WebSocket library.
func (e *env) rawUpgrade(ctx context.Context) (net.Conn, error) {
	c, resp, err := hostile.Upgrade(ctx, e.hostport, e.path, nil, answerTimeout)
	if err != nil {
		return nil, e.dialErr(resp, err)
	}
	e.answered.Store(true)
	return c, nil
}

// lz4Message is hostile.Compressed, for bodies that compress.
func lz4Message(kind wire.Kind, body []byte, size int) []byte {
	m, err := hostile.Compressed(kind, body, size)
	if err != nil {
		panic(err)
	}
	return m
}

func randomBytes(n int, first byte) []byte {
	b := make([]byte, n)
	rand.Read(b)
	b[0] = first
	return b
}

// stillServing checks that the server serves a new client: it completes
// the handshake, answers a Ping and sends a batch (its tick runs).
func (e *env) stillServing(ctx context.Context) error {
	s, err := e.join(ctx)
	if err != nil {
		return fmt.Errorf("a new client is not served: %w", err)
	}
	defer s.close()
	ctx, cancel := context.WithTimeout(ctx, answerTimeout)
	defer cancel()
	if err := s.subscribeAll(ctx); err != nil {
		return err
	}
	const nonce = 0x5eed
	if err := s.send(ctx, wire.AppendPing(nil, wire.KindPing, &wire.Ping{Nonce: nonce})); err != nil {
		return err
	}
	pong := false
	if err := s.next(ctx, func(kind wire.Kind, body []byte) {
		if p, err := wire.DecodePing(body); kind == wire.KindPong && err == nil && p.Nonce == nonce {
			pong = true
		}
	}); err != nil {
		return fmt.Errorf("a new client got no batch: %w", err)
	}
	for !pong {
		if err := s.next(ctx, func(kind wire.Kind, body []byte) {
			if p, err := wire.DecodePing(body); kind == wire.KindPong && err == nil && p.Nonce == nonce {
				pong = true
			}
		}); err != nil {
			return fmt.Errorf("a new client got no Pong: %w", err)
		}
	}
	return nil
}

// victim is a second player held open for the whole run, whose ship the
// attacks try to take: it exists whether or not other players do.
type victim struct {
	s    *session
	dead chan struct{} // closed when its connection ended
}

// victimID returns the client id of a live victim, connecting one first
// if needed.
func (e *env) victimID(ctx context.Context) (uint64, error) {
	e.mu.Lock()
	v := e.vict
	e.mu.Unlock()
	if v != nil {
		select {
		case <-v.dead:
		default:
			return v.s.welcome.ClientID, nil
		}
	}
	s, err := e.join(ctx)
	if err != nil {
		return 0, fmt.Errorf("victim: %w", err)
	}
	v = &victim{s: s, dead: make(chan struct{})}
	go func() {
		// Drain what the server sends (no subscriptions: little), so it
		// never finds the victim too slow.
		defer close(v.dead)
		for {
			if _, _, err := s.ws.Read(context.Background()); err != nil {
				return
			}
		}
	}()
	e.mu.Lock()
	if e.vict != nil {
		e.vict.s.close()
	}
	e.vict = v
	e.mu.Unlock()
	return s.welcome.ClientID, nil
}

func (e *env) closeVictim() {
	e.mu.Lock()
	v := e.vict
	e.vict = nil
	e.mu.Unlock()
	if v != nil {
		v.s.ws.Close(websocket.StatusNormalClosure, "")
		<-v.dead
	}
}

// joinBesideVictim joins as a new client and finds the ship of the victim
// (another client, see victimID) in its view. The caller closes the session.
func (e *env) joinBesideVictim(ctx context.Context) (s *session, id, gen uint64, err error) {
	victim, err := e.victimID(ctx)
	if err != nil {
		return nil, 0, 0, err
	}
	if s, err = e.join(ctx); err != nil {
		return nil, 0, 0, err
	}
	if id, gen, err = e.findShipOf(ctx, s, victim); err != nil {
		s.close()
		return nil, 0, 0, err
	}
	return s, id, gen, nil
}

// findShipOf subscribes s to everything, looks at the spawn point of
// client owner and returns the net id and generation of its ship, learned
// from the batches.
func (e *env) findShipOf(ctx context.Context, s *session, owner uint64) (id, gen uint64, err error) {
	ownerComp, ok := s.comp("ebisync.owner")
	if !ok {
		return 0, 0, errors.New("the server does not replicate ebisync.owner")
	}
	oc := s.comps[ownerComp]
	ctx, cancel := context.WithTimeout(ctx, answerTimeout)
	defer cancel()
	if err := s.subscribeAll(ctx); err != nil {
		return 0, 0, err
	}
	if err := s.next(ctx, nil); err != nil { // the first batch: s has joined
		return 0, 0, fmt.Errorf("no first batch: %w", err)
	}
	x, y := (*sim.Config)(nil).SpawnPoint(owner)
	in := wire.AppendInterest(nil, &wire.Interest{Mode: wire.InterestPoint, X: x, Y: y, Radius: 150})
	// The server points a new client's interest at its own ship when it
	// joins, at a tick: ask again after each batch until the ship shows.
	for {
		if err := s.send(ctx, in); err != nil {
			return 0, 0, err
		}
		if err := s.next(ctx, nil); err != nil {
			return 0, 0, fmt.Errorf("looking for the ship of client %d: %w", owner, err)
		}
		for _, sp := range s.batch.Spawns {
			for _, cv := range sp.Comps {
				if cv.Comp != ownerComp {
					continue
				}
				var od components.OwnerData
				if _, err := oc.DecodeFull(cv.Value, unsafe.Pointer(&od)); err == nil && od.Client == owner {
					return sp.ID, sp.Gen, nil
				}
			}
		}
	}
}

// learnEntities collects the ids of at least want live entities from
// batches, looking at the world through big interest circles, and returns
// them. It keeps what it learned for later calls.
func (e *env) learnEntities(ctx context.Context, want int) (map[uint64]uint64, error) {
	e.mu.Lock()
	n := len(e.known)
	e.mu.Unlock()
	if n < want {
		if err := e.survey(ctx); err != nil {
			return nil, err
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make(map[uint64]uint64, len(e.known))
	for id, gen := range e.known {
		out[id] = gen
	}
	return out, nil
}

// survey moves one client's interest over a 3×3 grid of the demo's world
// with a radius of 2400 (the demo server's cap, 4 × its default radius)
// and records the asteroids and drones it sees.
func (e *env) survey(ctx context.Context) error {
	s, err := e.join(ctx)
	if err != nil {
		return err
	}
	defer s.close()
	shipComp, ok := s.comp("demo.ship")
	if !ok {
		return errors.New("the server does not replicate demo.ship")
	}
	sc := s.comps[shipComp]
	learned := map[uint64]uint64{}
	err = e.surveyFrom(ctx, s, sc, shipComp, learned)
	e.mu.Lock()
	for id, gen := range learned {
		e.known[id] = gen
	}
	e.logf("survey: %d entities known", len(e.known))
	e.mu.Unlock()
	return err
}

func (e *env) surveyFrom(ctx context.Context, s *session, sc *codec.Codec, shipComp uint64, learned map[uint64]uint64) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := s.subscribeAll(ctx); err != nil {
		return err
	}
	if err := s.next(ctx, nil); err != nil { // the first batch: s has joined
		return fmt.Errorf("survey: no first batch: %w", err)
	}
	cfg := (*sim.Config)(nil).Defaults()
	for i := range 9 {
		x, y := cfg.Width*(float64(i%3)+0.5)/3, cfg.Height*(float64(i/3)+0.5)/3
		if err := e.surveyAt(ctx, s, sc, shipComp, x, y, learned); err != nil {
			if errors.Is(err, errQuiet) {
				return nil // an empty corner: keep what was learned
			}
			return err
		}
	}
	return nil
}

// errQuiet: no batch came for a while (a world with little in it).
var errQuiet = errors.New("no batch for a while")

func (e *env) surveyAt(ctx context.Context, s *session, sc *codec.Codec, shipComp uint64, x, y float64, learned map[uint64]uint64) error {
	// A read whose context ends drops the connection (coder/websocket), so
	// a quiet view ends the survey.
	ctx, cancel := context.WithTimeout(ctx, 1500*time.Millisecond)
	defer cancel()
	in := wire.AppendInterest(nil, &wire.Interest{Mode: wire.InterestPoint, X: x, Y: y, Radius: 2400})
	if err := s.send(ctx, in); err != nil {
		return err
	}
	// The spawns come with the rescan the interest asks for; a batch
	// without spawns after them means this view is done.
	seen := false
	for batches := 0; batches < 60; batches++ {
		if err := s.next(ctx, nil); err != nil {
			if ctx.Err() != nil {
				return errQuiet
			}
			return fmt.Errorf("survey: %w", err)
		}
		if len(s.batch.Spawns) == 0 {
			if seen {
				return nil
			}
			continue
		}
		seen = true
		for _, sp := range s.batch.Spawns {
			for _, cv := range sp.Comps {
				if cv.Comp != shipComp {
					continue
				}
				var sd sim.ShipData
				if _, err := sc.DecodeFull(cv.Value, unsafe.Pointer(&sd)); err == nil && sd.Kind != sim.KindPlayer {
					learned[sp.ID] = sp.Gen
				}
			}
		}
	}
	return nil
}

// readResults reads batches until the answers to want requests arrived.
func (s *session) readResults(ctx context.Context, want int) (map[uint64]wire.MutationResult, map[uint64]wire.ControlReply, error) {
	ctx, cancel := context.WithTimeout(ctx, answerTimeout)
	defer cancel()
	res := map[uint64]wire.MutationResult{}
	ctl := map[uint64]wire.ControlReply{}
	for len(res)+len(ctl) < want {
		if err := s.next(ctx, nil); err != nil {
			return nil, nil, fmt.Errorf("waiting for %d answers (have %d): %w", want, len(res)+len(ctl), err)
		}
		for _, r := range s.batch.Results {
			res[r.Request] = r
		}
		for _, r := range s.batch.Controls {
			ctl[r.Request] = r
		}
	}
	return res, ctl, nil
}
