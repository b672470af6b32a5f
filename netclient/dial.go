package netclient

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/yohamta/donburi"

	"github.com/ebisync/ebisync/components"
	"github.com/ebisync/ebisync/internal/codec"
	"github.com/ebisync/ebisync/internal/eofconn"
	"github.com/ebisync/ebisync/internal/wire"
)

// Close codes (see docs/PROTOCOL.md §9).
const (
	statusNormal         = websocket.StatusNormalClosure
	statusGoingAway      = websocket.StatusGoingAway // the client reconnects: its session stays
	statusProtocolError  = websocket.StatusCode(wire.CloseProtocolError)
	statusSchemaMismatch = websocket.StatusCode(wire.CloseSchemaMismatch)
)

// sendQueue bounds the messages waiting for a connection's writer.
const sendQueue = 256

// maxTickRate bounds the tick rate a Welcome may announce.
const maxTickRate = 10000

// RefusedError reports that the server refused the connection: it sent an
// Error message, or closed with a 40xx code, during the handshake.
type RefusedError struct {
	Code    int    // the close code, e.g. 4001 for a schema mismatch
	Message string // the server's reason, naming the component and field that differ
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("server refused the connection (code %d): %s", e.Code, e.Message)
}

// newWorldMu serialises Dial's calls to donburi.NewWorld.
var newWorldMu sync.Mutex

// Dial connects to the ebisync server at url (ws:// or wss://), performs
// the handshake and starts the client's goroutines. The handshake is bounded
// by ctx and Options.HandshakeTimeout; ctx does not bound the client's
// lifetime (Close does). Dial freezes reg.
//
// Dial does not retry a URL: a failure is returned. A refusal by the
// server is a *RefusedError whose Message names what differs; a Welcome
// that does not match reg gives a *components.MismatchError. Once Dial has
// succeeded the client reconnects by itself (unless Options.NoReconnect).
//
// With Options.URLs, Dial tries url and then each of them in order, and
// connects to the first that answers; it checks every URL before dialling
// any. It stops early when ctx ends or a server refuses for good (see
// Options.URLs). When no URL connects, the error lists each URL with why
// it failed, or that it was not tried, and errors.Is and errors.As see
// each URL's error; with url alone, the error is url's.
//
// The client starts with no subscriptions: call Subscribe or SubscribeAll.
func Dial(ctx context.Context, url string, reg *components.Registry, opts *Options) (*Client, error) {
	if reg == nil {
		return nil, errors.New("netclient: Dial: nil registry")
	}
	urls, err := dialURLs(url, opts)
	if err != nil {
		return nil, err
	}
	reg.Freeze()
	o := opts.withDefaults()
	c := &Client{
		reg:       reg,
		world:     o.World,
		opts:      o,
		log:       o.Logger,
		urls:      urls,
		epoch:     time.Now(),
		events:    make(chan event, o.MaxPendingBatches),
		free:      make(chan *inbound, o.MaxPendingBatches+2),
		compSubs:  make(map[*codec.Codec]bool),
		entSubs:   make(map[entKey]bool),
		mutations: make(map[uint64]*pendingMutation),
		controls:  make(map[uint64]*pendingControl),
		byNet:     make(map[uint32]*mirrored),
		byEnt:     make(map[donburi.Entity]*mirrored),
	}
	for _, comp := range reg.All() {
		c.codecs = append(c.codecs, codec.Of(comp))
	}
	c.hello = wire.Hello{Version: wire.ProtocolVersion, ClientName: o.Name}
	for _, sc := range reg.Schema() {
		d := wire.ComponentDesc{Name: sc.Name, Hash: sc.Hash, Fields: make([]wire.FieldDesc, len(sc.Fields))}
		for i, f := range sc.Fields {
			d.Fields[i] = wire.FieldDesc{Name: f.Name, Type: f.Type, Quant: f.Quant}
		}
		c.hello.Components = append(c.hello.Components, d)
	}
	c.initMessages()
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.prepareDial()

	s, at, errs := c.connectRound(ctx, 0)
	if s == nil {
		c.cancel()
		if len(c.urls) == 1 {
			return nil, errs[0]
		}
		return nil, &dialErrors{urls: c.urls, errs: errs}
	}
	c.setURL(at)
	if c.world == nil {
		// donburi.NewWorld bumps an unguarded global counter; serialise
		// the calls Dial makes so concurrent Dials are safe.
		newWorldMu.Lock()
		c.world = donburi.NewWorld()
		newWorldMu.Unlock()
	}
	c.attach(s)
	c.beginSession(s)
	c.wg.Add(1)
	go c.run(s)
	return c, nil
}

// dialURLs returns url and then opts.URLs, without repeats, or an error
// naming the first URL Dial cannot use.
func dialURLs(url string, opts *Options) ([]string, error) {
	if err := checkURL(url); err != nil {
		return nil, err
	}
	urls := []string{url}
	if opts == nil {
		return urls, nil
	}
	for i, u := range opts.URLs {
		if u == "" {
			return nil, fmt.Errorf("netclient: Options.URLs[%d] is empty; write it as ws://HOST:PORT/PATH", i)
		}
		if err := checkURL(u); err != nil {
			return nil, &sentence{fmt.Sprintf("netclient: Options.URLs[%d]: %s", i, strings.TrimPrefix(err.Error(), "netclient: ")), err}
		}
		if !slices.Contains(urls, u) {
			urls = append(urls, u)
		}
	}
	return urls, nil
}

// dialErrors is the failure of a Dial that had several URLs: errs holds
// the error of each URL tried, in the order of urls; the URLs after them
// were not tried.
type dialErrors struct {
	urls []string
	errs []error
}

func (e *dialErrors) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "netclient: cannot connect to any of the %d server URLs:", len(e.urls))
	for i, u := range e.urls {
		b.WriteString("\n\t")
		if i >= len(e.errs) {
			b.WriteString(u + ": not tried")
			continue
		}
		msg := strings.TrimPrefix(e.errs[i].Error(), "netclient: ")
		if !strings.Contains(msg, u) {
			msg = u + ": " + msg
		}
		b.WriteString(msg)
	}
	return b.String()
}

// Unwrap returns the error of each URL tried.
func (e *dialErrors) Unwrap() []error { return e.errs }

// connectRound tries the URLs once each, in order from index first and
// wrapping around, and returns the session of the first that connects and
// its index. It stops early when ctx ends or a URL refuses for good
// (permanent). errs holds the error of each URL that failed, in the order
// tried.
func (c *Client) connectRound(ctx context.Context, first int) (*session, int, []error) {
	var errs []error
	for k := range c.urls {
		at := (first + k) % len(c.urls)
		s, err := c.connect(ctx, c.urls[at])
		if err == nil {
			return s, at, errs
		}
		errs = append(errs, err)
		if ctx.Err() != nil || permanent(err, true) {
			break
		}
	}
	return nil, -1, errs
}

// setURL records that the client's session is at c.urls[i]. Supervisor
// goroutine, or Dial before it starts it.
func (c *Client) setURL(i int) {
	c.url = c.urls[i]
	c.at.Store(int32(i))
}

// session is one connection, from handshake to close.
type session struct {
	c          *Client
	url        string // the server URL dialled
	ws         *websocket.Conn
	raw        net.Conn      // the connection under ws, when the transport told
	net        *eofconn.Conn // raw, when Dial could wrap the transport (see package eofconn)
	welcome    wire.Welcome
	fromServer []*codec.Codec // by server component id
	toServer   []uint64       // by local component index
	// msgFromServer maps server message type ids to local indices, and
	// msgToServer the reverse.
	msgFromServer []int
	msgToServer   []uint64
	start         time.Time

	out    chan []byte
	ctx    context.Context // cancelled when the session ends
	cancel context.CancelFunc
	wg     sync.WaitGroup // writer and closer goroutines
	once   sync.Once
	err    error // why the session ended; written once in fail

	lastRecv  atomic.Int64 // nanoseconds since c.epoch
	blocked   atomic.Bool  // the reader waits for the game goroutine
	warned    atomic.Bool
	remoteErr atomic.Pointer[wire.Error]

	broken bool // game goroutine: stop applying its batches

	// readTick is the server tick of the last batch the reader passed on
	// (the Welcome's tick plus their advances, sessTick), the tick the
	// mirror is at once the game goroutine applied them; before the first
	// batch of a resumed session, the tick it resumed from. Supervisor
	// goroutine.
	readTick, sessTick uint64
	// resumedFrom is the tick the Hello said the mirror is at, when the
	// Welcome resumed the session.
	resumedFrom uint64
	// helloSubs are the subscriptions the Hello carried, when the Welcome
	// resumed the session.
	helloSubs []wire.Sub
}

// FullLen implements wire.ValueSizer with the session's component ids.
func (s *session) FullLen(comp uint64, b []byte) (int, error) {
	if comp >= uint64(len(s.fromServer)) {
		return 0, fmt.Errorf("unknown component id %d", comp)
	}
	return s.fromServer[comp].FullLen(b)
}

// DeltaLen implements wire.ValueSizer.
func (s *session) DeltaLen(comp uint64, b []byte) (int, error) {
	if comp >= uint64(len(s.fromServer)) {
		return 0, fmt.Errorf("unknown component id %d", comp)
	}
	return s.fromServer[comp].DeltaLen(b)
}

// fail ends the session once: it records err and closes the connection
// with code and reason (without a close handshake when code < 0), on a
// goroutine so that fail never blocks.
func (s *session) fail(err error, code websocket.StatusCode, reason string) {
	s.once.Do(func() {
		s.err = err
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if code < 0 {
				_ = s.ws.CloseNow()
			} else {
				_ = s.ws.Close(code, truncate(reason, 120))
			}
			s.cancel()
		}()
	})
}

// kill drops the connection without ceremony. A close handshake in
// progress holds the connection's read lock with a timeout of its own (5s
// in coder/websocket); closing the network connection ends it at once.
func (s *session) kill() {
	if s.raw != nil {
		_ = s.raw.Close()
	}
	s.cancel()
}

// send queues msg for the writer without blocking.
func (s *session) send(msg []byte) bool {
	select {
	case s.out <- msg:
		return true
	default:
		return false
	}
}

// protocolError counts and logs bad input from the server (once per
// connection) and closes the connection with 4000; the client reconnects
// and resyncs.
func (s *session) protocolError(err error) error {
	s.c.stats.decodeErrors.Add(1)
	if !s.warned.Swap(true) {
		s.c.log.Warn("ebisync: bad input from the server; reconnecting to resync", "url", s.url, "err", err)
	}
	s.fail(err, statusProtocolError, "protocol error: "+err.Error())
	return err
}

// connect dials rawURL and performs the handshake.
func (c *Client) connect(ctx context.Context, rawURL string) (*session, error) {
	ctx, cancel := context.WithTimeout(ctx, c.opts.HandshakeTimeout)
	defer cancel()
	ws, raw, err := c.dial(ctx, rawURL)
	if err != nil {
		return nil, err
	}
	ws.SetReadLimit(c.opts.ReadLimit)
	s, err := c.handshake(ctx, ws)
	if err != nil {
		_ = ws.CloseNow()
		return nil, fmt.Errorf("failed to handshake with %s: %w", rawURL, err)
	}
	s.url = rawURL
	s.raw = raw
	s.net, _ = raw.(*eofconn.Conn)
	return s, nil
}

func (c *Client) handshake(ctx context.Context, ws *websocket.Conn) (*session, error) {
	h := c.hello
	if c.noResume.Swap(false) {
		c.resumable, c.resumeIDs = nil, nil
	}
	if c.resumable != nil {
		r := *c.resumable
		c.mu.Lock()
		r.Interest, r.Subs = c.scopeLocked(c.resumeIDs, helloEntitySubs)
		c.mu.Unlock()
		h.Resume = &r
	}
	hello := wire.AppendHello(nil, &h)
	if err := ws.Write(ctx, websocket.MessageBinary, hello); err != nil {
		return nil, refusal(err)
	}
	c.stats.countOut(len(hello), time.Since(c.epoch))
	typ, msg, err := ws.Read(ctx)
	if err != nil {
		return nil, refusal(err)
	}
	c.stats.countIn(len(msg), time.Since(c.epoch))
	if typ != websocket.MessageBinary {
		return nil, errors.New("expected a binary Welcome, got a text message")
	}
	kind, body, _, err := wire.Open(msg, nil)
	if err != nil {
		return nil, err
	}
	switch kind {
	case wire.KindWelcome:
	case wire.KindError:
		m, err := wire.DecodeError(body)
		if err != nil {
			return nil, err
		}
		return nil, &RefusedError{Code: int(m.Code), Message: m.Message}
	default:
		return nil, fmt.Errorf("%w: expected Welcome, got %s", wire.ErrMalformed, kind)
	}
	w, err := wire.DecodeWelcome(body)
	if err != nil {
		return nil, err
	}
	if w.Version != wire.ProtocolVersion {
		return nil, fmt.Errorf("%w: server speaks %d, client %d", ErrProtocolVersion, w.Version, wire.ProtocolVersion)
	}
	if w.TickRate == 0 || w.TickRate > maxTickRate {
		return nil, fmt.Errorf("%w: tick rate %d", wire.ErrMalformed, w.TickRate)
	}
	s := &session{
		c:          c,
		ws:         ws,
		welcome:    w,
		fromServer: make([]*codec.Codec, len(w.Components)),
		toServer:   make([]uint64, c.reg.Len()),
		start:      time.Now(),
		out:        make(chan []byte, sendQueue),
		readTick:   w.Tick,
		sessTick:   w.Tick,
	}
	if w.Resumed {
		if h.Resume == nil || w.ClientID != h.Resume.ClientID {
			return nil, fmt.Errorf("%w: Welcome resumed a session the Hello did not name", wire.ErrMalformed)
		}
		s.resumedFrom = h.Resume.Tick
		s.readTick = h.Resume.Tick
	}
	seen := make([]bool, c.reg.Len())
	for i, name := range w.Components {
		comp, ok := c.reg.ByName(name)
		if !ok {
			return nil, &components.MismatchError{Component: name, Reason: "registered on the server but not locally"}
		}
		if seen[comp.Index()] {
			return nil, fmt.Errorf("%w: component %q listed twice in Welcome", wire.ErrMalformed, name)
		}
		seen[comp.Index()] = true
		s.fromServer[i] = c.codecs[comp.Index()]
		s.toServer[comp.Index()] = uint64(i)
	}
	for i, ok := range seen {
		if !ok {
			return nil, &components.MismatchError{Component: c.reg.At(i).Name(), Reason: "registered locally but not on the server"}
		}
	}
	if err := s.mapMessages(w.Messages); err != nil {
		return nil, err
	}
	if w.Resumed {
		s.helloSubs = h.Resume.Subs
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.lastRecv.Store(int64(time.Since(c.epoch)))
	return s, nil
}

// checkURL refuses a URL Dial cannot use, saying how to write it.
func checkURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		if !strings.Contains(raw, "://") {
			return fmt.Errorf("netclient: the server URL needs a scheme: write ws://%s", raw)
		}
		return fmt.Errorf("netclient: %q is not a URL: %w", raw, err)
	}
	switch u.Scheme {
	case "ws", "wss":
		if u.Host == "" {
			return fmt.Errorf("netclient: %q has no host; write it as ws://HOST:PORT/PATH", raw)
		}
		return nil
	case "http", "https":
		orig, ws := u.Scheme, "ws"
		if orig == "https" {
			ws = "wss"
		}
		u.Scheme = ws
		return fmt.Errorf("netclient: %q is an %s URL; a WebSocket server's URL starts with %s://, as in %s", raw, strings.ToUpper(orig), ws, u)
	case "":
		return fmt.Errorf("netclient: the server URL needs a scheme: write ws://%s", strings.TrimPrefix(raw, "//"))
	}
	if u.Opaque != "" && u.Host == "" {
		// "localhost:8080/sync" parses as scheme "localhost".
		return fmt.Errorf("netclient: the server URL needs a scheme: write ws://%s", raw)
	}
	return fmt.Errorf("netclient: %q has the scheme %s; write it as ws://HOST:PORT/PATH (or wss:// for TLS)", raw, u.Scheme)
}

// timeoutError says why a dial that its context ended failed, or
// returns nil when err is not the context's.
func timeoutError(raw string, err error) error {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return &sentence{fmt.Sprintf("netclient: cannot connect to %s: no answer in time; check the address and any firewall in between", raw), context.DeadlineExceeded}
	case errors.Is(err, context.Canceled):
		return fmt.Errorf("netclient: connecting to %s: %w", raw, context.Canceled)
	}
	return nil
}

// tokenURL returns raw with token in its TokenParam query parameter, for
// a dial that cannot send headers (a browser's). An empty token leaves raw
// as it is.
func tokenURL(raw, token string) string {
	if token == "" {
		return raw
	}
	u, err := url.Parse(raw)
	if err != nil {
		return raw // checkURL refused it before any dial
	}
	q := u.Query()
	q.Set(TokenParam, token)
	u.RawQuery = q.Encode()
	return u.String()
}

// sentence is an error whose text explains it whole and whose kind is err
// (for errors.Is).
type sentence struct {
	msg string
	err error
}

func (e *sentence) Error() string { return e.msg }
func (e *sentence) Unwrap() error { return e.err }

// refusal turns a close during the handshake into a *RefusedError.
func refusal(err error) error {
	var ce websocket.CloseError
	if errors.As(err, &ce) && ce.Code >= 4000 {
		return &RefusedError{Code: int(ce.Code), Message: ce.Reason}
	}
	return err
}

// permanent reports whether err means reconnecting cannot help: a schema
// or protocol-version mismatch, or, during a handshake, a protocol error
// (the same Hello would be refused again). A protocol error later in a
// connection is not permanent: a fresh connection resyncs.
func permanent(err error, handshake bool) bool {
	var re *RefusedError
	if errors.As(err, &re) {
		return re.Code == int(statusSchemaMismatch) || handshake && re.Code == int(statusProtocolError)
	}
	var me *components.MismatchError
	return errors.As(err, &me) || errors.Is(err, ErrProtocolVersion) ||
		errors.Is(err, ErrUnauthorized) || errors.Is(err, ErrForbidden) ||
		websocket.CloseStatus(err) == statusSchemaMismatch
}

// helloEntitySubs bounds the entity subscriptions a resuming Hello
// carries, so that the Hello stays well within a server's read limit
// (32 KiB by default, which the registry's schema shares). The client
// sends all of them after the Welcome in any case.
const helloEntitySubs = subsPerMessage

// scopeLocked returns the remembered interest (nil when none was set) and
// subscriptions as the wire carries them: the component subscriptions in
// registry order, mapped to server ids by toServer (none when toServer is
// nil), then at most maxEnts entity subscriptions, ascending by id and
// generation. c.mu must be held.
func (c *Client) scopeLocked(toServer []uint64, maxEnts int) (*wire.Interest, []wire.Sub) {
	var in *wire.Interest
	if c.interestSet {
		v := c.interest
		in = &v
	}
	var subs []wire.Sub
	if toServer != nil {
		for _, comp := range c.codecs {
			if c.compSubs[comp] {
				subs = append(subs, wire.Sub{Kind: wire.SubComponent, ID: toServer[comp.Index()]})
			}
		}
	}
	ents := make([]entKey, 0, len(c.entSubs))
	for k := range c.entSubs {
		ents = append(ents, k)
	}
	slices.SortFunc(ents, func(a, b entKey) int { return cmp.Or(cmp.Compare(a.id, b.id), cmp.Compare(a.gen, b.gen)) })
	for _, k := range ents[:min(len(ents), maxEnts)] {
		subs = append(subs, wire.Sub{Kind: wire.SubEntity, ID: uint64(k.id), Gen: uint64(k.gen)})
	}
	return in, subs
}

// attach makes s the live session and sends it the remembered interest
// and subscriptions, after unsubscribing, in a resumed session, what its
// Hello carried that the client does not want (see staleLocked). It
// reports false (and ends s) if the client is closing.
func (c *Client) attach(s *session) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ctx.Err() != nil {
		s.fail(ErrClosed, statusNormal, "client closed")
		return false
	}
	c.live = s
	c.clientID.Store(s.welcome.ClientID)
	c.connected.Store(true)
	in, subs := c.scopeLocked(s.toServer, len(c.entSubs))
	// Interest first, so the server never floods a global scope that the
	// interest narrows a moment later.
	if in != nil {
		c.sendLocked(wire.AppendInterest(nil, in))
	}
	c.sendSubsLocked(wire.KindUnsubscribe, c.staleLocked(s))
	c.sendSubsLocked(wire.KindSubscribe, subs)
	s.wg.Add(1)
	go s.writeLoop()
	return true
}

// staleLocked returns the subscriptions that the Hello of resumed session
// s carried and the client no longer wants: those it dropped during the
// handshake, and component ids that name another component on s's server
// than on the previous one (ids travel in the server's numbering, and the
// Hello used the previous server's). c.mu must be held.
func (c *Client) staleLocked(s *session) []wire.Sub {
	var stale []wire.Sub
	for _, sub := range s.helloSubs {
		switch sub.Kind {
		case wire.SubComponent:
			if sub.ID < uint64(len(s.fromServer)) && !c.compSubs[s.fromServer[sub.ID]] {
				stale = append(stale, sub)
			}
		case wire.SubEntity:
			if !c.entSubs[entKey{uint32(sub.ID), uint32(sub.Gen)}] {
				stale = append(stale, sub)
			}
		}
	}
	return stale
}

// detach forgets s as the live session.
func (c *Client) detach(s *session) {
	c.mu.Lock()
	if c.live == s {
		c.live = nil
		c.connected.Store(false)
	}
	c.mu.Unlock()
}

// run supervises the connection: it runs the reader of each session, and
// when a session ends it reports it to the game goroutine and reconnects.
func (c *Client) run(s *session) {
	defer c.wg.Done()
	attempt := 0
	for {
		err := s.readLoop()
		s.fail(err, -1, "")
		t := time.AfterFunc(closeGrace, s.kill) // bound a close handshake in progress
		s.wg.Wait()
		t.Stop()
		err = s.err
		if err == nil {
			err = errSessionEnded
		}
		if re := s.remoteErr.Load(); re != nil {
			// The server explained itself before closing: that is the
			// reason worth reporting (and classifying).
			err = fmt.Errorf("%w (%w)", &RefusedError{Code: int(re.Code), Message: re.Message}, err)
		}
		c.detach(s)
		c.resumable = &wire.Resume{ClientID: s.welcome.ClientID, Token: s.welcome.Token, Tick: s.readTick}
		c.resumeIDs = s.toServer
		if !c.post(event{kind: evDown, sess: s, err: err}) || c.ctx.Err() != nil {
			return
		}
		if permanent(err, false) {
			c.log.Warn("ebisync: connection refused for good; not reconnecting", "url", c.url, "err", err)
			c.setTerm(fmt.Errorf("netclient: connection lost: %w", err))
			return
		}
		if c.opts.NoReconnect {
			c.log.Info("ebisync: connection lost", "url", c.url, "err", err)
			c.setTerm(fmt.Errorf("netclient: connection lost: %w", err))
			return
		}
		c.log.Info("ebisync: connection lost; reconnecting", "url", c.url, "err", err)
		if time.Since(s.start) > 2*c.opts.MaxBackoff {
			attempt = 0
		}
		// Each attempt is a round over the URLs, from the one that last
		// worked; the backoff comes between rounds.
		prev := c.url
		for {
			if !c.sleep(c.backoff(attempt)) {
				return
			}
			attempt++
			first := int(c.at.Load())
			ns, at, errs := c.connectRound(c.ctx, first)
			if ns != nil {
				s = ns
				c.setURL(at)
				break
			}
			if c.ctx.Err() != nil {
				return
			}
			for k, err := range errs {
				c.log.Debug("ebisync: reconnect attempt failed", "url", c.urls[(first+k)%len(c.urls)], "attempt", attempt, "err", err)
			}
			if err := errs[len(errs)-1]; permanent(err, true) {
				c.log.Warn("ebisync: reconnect refused; giving up", "url", c.urls[(first+len(errs)-1)%len(c.urls)], "err", err)
				c.setTerm(err)
				return
			}
		}
		if !c.attach(s) {
			s.wg.Wait()
			return
		}
		c.stats.reconnects.Add(1)
		if c.url != prev {
			c.log.Info("ebisync: reconnected at another URL", "url", c.url, "previous", prev, "client", s.welcome.ClientID)
		} else {
			c.log.Info("ebisync: reconnected", "url", c.url, "client", s.welcome.ClientID)
		}
		if !c.post(event{kind: evUp, sess: s}) {
			s.fail(ErrClosed, statusNormal, "client closed")
			s.wg.Wait()
			return
		}
	}
}

// backoff returns the full-jitter wait before reconnect attempt n.
func (c *Client) backoff(n int) time.Duration {
	d := c.opts.MaxBackoff
	if n < 30 {
		d = min(d, c.opts.MinBackoff<<n)
	}
	if d <= 0 {
		return 0
	}
	return rand.N(d)
}

// sleep waits d or until Close; it reports false on Close.
func (c *Client) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-c.ctx.Done():
		return false
	}
}

// post hands ev to the game goroutine, blocking while the queue is full
// (backpressure); it reports false on Close.
func (c *Client) post(ev event) bool {
	select {
	case c.events <- ev:
		return true
	case <-c.ctx.Done():
		return false
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n]
}

// errVanished ends a session whose server went away while a message was
// arriving.
var errVanished = errors.New("netclient: connection ended mid-message")
