package plugin

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/coder/websocket"

	"github.com/ebisync/ebisync/components"
	"github.com/ebisync/ebisync/internal/eofconn"
	"github.com/ebisync/ebisync/internal/wire"
)

// Close codes the server uses (see docs/PROTOCOL.md).
const (
	statusGoingAway = websocket.StatusGoingAway
	// StatusProtocolError: the client sent bytes the protocol does not allow.
	StatusProtocolError websocket.StatusCode = 4000
	// StatusSchema: protocol version or registry mismatch at the handshake.
	StatusSchema websocket.StatusCode = 4001
	// StatusAbuse: the client sent too much (its inbound queue, its
	// subscriptions, requests far past the rate limit).
	StatusAbuse websocket.StatusCode = 4002
	// StatusTooSlow: a write to the client timed out.
	StatusTooSlow websocket.StatusCode = 4003
	// StatusInternal: handling the client's input panicked; the stack is
	// logged at Error and the game goes on.
	StatusInternal = websocket.StatusInternalError
)

// inbound is one decoded client message waiting for the tick.
type inbound struct {
	kind     wire.Kind
	subs     []wire.Sub
	interest wire.Interest
	mutate   wire.Mutate
	control  wire.Control
	message  wire.Message
	input    wire.Input
}

// cost is what the message holds of server memory while it is queued, as
// counted against Options.InboundQueueBytes.
func (m *inbound) cost() int {
	return int(unsafe.Sizeof(*m)) + len(m.subs)*int(unsafe.Sizeof(wire.Sub{})) + len(m.mutate.Value) + len(m.message.Value) + len(m.input.Value)
}

// conn is the network side of one client: its goroutines and the queues
// between them and the tick. The tick-side state is in client.
type conn struct {
	s        *Server
	ws       *websocket.Conn
	net      *eofconn.Conn // the connection under ws
	id       uint64
	name     string
	addr     string
	identity Identity
	// inspector marks the stand-in connection of an Inspector's edit
	// (inspect_tick.go): ClientInfo.Inspector.
	inspector bool
	token     [wire.TokenLen]byte // the session's resume token, as the Welcome sent it
	resume    *resumeReq          // set when the handshake resumed a session
	// endCode is the close code of the server's first shutdown of the
	// connection; 0 when it did not close it first.
	endCode atomic.Int32
	// remote is the gateway that serves a remote client (remote.go),
	// whose conn is a stand-in with no WebSocket; nil for a connection.
	remote    *remoteGW
	endReason string    // a remote client's close reason, for its gateway
	joinedAt  time.Time // when a remote client joined or resumed at its gateway
	// resumable: the connection ended in a way that keeps its session
	// (see mayResume); set before it is handed to the tick as a leave.
	resumable bool

	// reader → tick: decoded messages, bounded in bytes.
	inMu    sync.Mutex
	inq     []inbound
	inBytes int

	out         chan []byte // tick → writer (batches); capacity 1
	ctrl        chan []byte // reader → writer (pongs); dropped when full
	pinger      pinger      // the writer's Pings and the reader's Pongs: the round-trip time
	busy        atomic.Bool // a batch is being written
	joined      atomic.Bool
	welcomeTick uint32
	welcomeVis  uint64 // the Welcome's tick: what clients see of welcomeTick (Server.visTick)
	tickRate    uint64 // the Welcome's tick rate when not Options.TickRate: a gateway's simulation's
	left        atomic.Bool

	ctx     context.Context
	cancel  context.CancelFunc
	once    sync.Once
	closing sync.WaitGroup

	writeNanos atomic.Int64 // duration of the last batch write
	slowWrites atomic.Int64 // writes slower than a tick since last read by the tick

	bytesIn, bytesOut, msgsIn, msgsOut atomic.Uint64
	batchRaw, batchWire                atomic.Uint64 // batch bytes before and after compression

	tokens   float64 // the mutation and control bucket
	lastFill time.Time
	// The subscription bucket, in entries: reader goroutine only.
	subTokens float64
	subFill   time.Time

	// Requests refused by the token bucket wait here for their answer, not
	// in the inbound queue: a flood must get its RateLimited statuses
	// without crowding out the requests that passed. Bounded by
	// maxLimited; beyond it the peer is dropped.
	limitedMu sync.Mutex
	limited   []limitedReq
}

// limitedReq is a request the token bucket refused.
type limitedReq struct {
	request uint64
	control bool
	ctl     wire.Control
}

// maxLimited bounds the refused requests waiting for the next tick.
const maxLimited = 4096

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	if !isUpgrade(r) {
		// Accept answers 426 Upgrade Required; nothing is counted.
		_, _ = websocket.Accept(w, r, nil)
		return
	}
	ad, ok := s.admitHTTP(w, r)
	if !ok {
		return
	}
	defer s.leave(ad)
	hw := &hijackWriter{ResponseWriter: w}
	ws, err := websocket.Accept(hw, r, &websocket.AcceptOptions{
		CompressionMode: websocket.CompressionDisabled,
		OriginPatterns:  s.opts.OriginPatterns,
	})
	if err != nil {
		s.log.Debug("ebisync: websocket accept failed", "remote", ad.remoteAddr, "err", err)
		return
	}
	ws.SetReadLimit(s.opts.ReadLimit)
	ctx, cancel := context.WithCancel(context.Background())
	now := time.Now()
	cn := &conn{
		s:         s,
		ws:        ws,
		net:       hw.conn,
		addr:      ad.remoteAddr,
		identity:  ad.identity,
		out:       make(chan []byte, 1),
		ctrl:      make(chan []byte, 4),
		ctx:       ctx,
		cancel:    cancel,
		tokens:    float64(s.opts.MutationBurst),
		lastFill:  now,
		subTokens: float64(s.subBurst()),
		subFill:   now,
	}
	defer cancel()

	if err := s.handshake(cn); err != nil {
		s.unclaim(cn)
		if s.forwards() && cn.id != 0 {
			// The simulation joined the client: the gateway's tick tells
			// it that the client left (upstream.go).
			cn.left.Store(true)
			s.mu.Lock()
			s.joins = append(s.joins, cn)
			s.mu.Unlock()
		}
		return
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		s.unclaim(cn)
		ws.Close(statusGoingAway, "server shutting down")
		return
	}
	s.handshaken(ad)
	s.conns[cn] = struct{}{}
	s.joins = append(s.joins, cn)
	s.mu.Unlock()
	s.stats.connects.Add(1)

	var wwg sync.WaitGroup
	wwg.Add(1)
	go func() {
		defer wwg.Done()
		cn.writeLoop()
	}()
	err = cn.readLoop()
	cn.logEnd(err)
	cn.resumable = cn.mayResume(err)
	cn.shutdown(websocket.StatusNormalClosure, "")
	wwg.Wait()
	cn.closing.Wait()

	cn.left.Store(true)
	s.mu.Lock()
	delete(s.conns, cn)
	s.stats.rawBytes += cn.batchRaw.Load()
	s.stats.wireBytes += cn.batchWire.Load()
	s.stats.retire(cn)
	s.leaves = append(s.leaves, cn)
	s.mu.Unlock()
}

// isUpgrade reports whether r asks for a WebSocket upgrade.
func isUpgrade(r *http.Request) bool {
	return r.Method == http.MethodGet && strings.EqualFold(r.Header.Get("Upgrade"), "websocket")
}

// subBurst is the subscription bucket's size: a full set of entity
// subscriptions plus every component at once.
func (s *Server) subBurst() int { return s.opts.MaxEntitySubscriptions + maxSynced }

// handshake reads the Hello, checks it and answers Welcome, or Error and a
// close.
func (s *Server) handshake(cn *conn) error {
	ctx, cancel := context.WithTimeout(s.hsCtx, s.opts.HandshakeTimeout)
	defer cancel()
	// The wait for the Hello is bounded by a timer, not by the read's
	// context: coder/websocket drops the connection when a read's context
	// ends, which would leave no way to tell the client why.
	// Server.Close ends the wait the same way, with 1001. Whichever of the
	// two stops the timer first ends the handshake.
	late := make(chan error, 1)
	timer := time.AfterFunc(s.opts.HandshakeTimeout, func() {
		late <- cn.refuse(refHandshake, StatusProtocolError, fmt.Sprintf("no Hello within %s", s.opts.HandshakeTimeout))
	})
	stopClose := context.AfterFunc(s.hsCtx, func() {
		if timer.Stop() {
			closeWithin(cn.ws, cn.net, statusGoingAway, "server shutting down", shutdownGrace)
			late <- net.ErrClosed
		}
	})
	typ, msg, err := cn.ws.Read(context.Background())
	ended := !timer.Stop()
	stopClose()
	if ended {
		return <-late // the refusal or the shutdown closed the connection
	}
	if err == nil && cn.net.Ended() {
		err = errVanished
	}
	if err != nil {
		switch {
		case isReadLimit(err):
			s.refused.add(refReadLimit, "refused a Hello over the read limit", "remote", cn.addr, "limit", s.opts.ReadLimit)
		default:
			s.log.Debug("ebisync: client left during handshake", "remote", cn.addr, "err", err)
		}
		cn.ws.CloseNow()
		return err
	}
	if typ != websocket.MessageBinary {
		return cn.refuse(refHandshake, StatusProtocolError, "expected a binary Hello message")
	}
	var bp *[]byte
	if len(msg) > 0 && msg[0]&wire.FlagCompressed != 0 {
		bp = getBuf()
		defer putBuf(bp)
	}
	kind, body, err := openPooled(msg, bp, int(s.opts.ReadLimit))
	if err != nil || kind != wire.KindHello {
		return cn.refuse(refHandshake, StatusProtocolError, fmt.Sprintf("expected Hello: %v", errOr(err, "got "+kind.String())))
	}
	hello, err := wire.DecodeHello(body)
	if err != nil {
		return cn.refuse(refHandshake, StatusProtocolError, err.Error())
	}
	if hello.Version != wire.ProtocolVersion {
		return cn.refuse(refSchema, StatusSchema, fmt.Sprintf("protocol version %d not supported (server speaks %d)", hello.Version, wire.ProtocolVersion))
	}
	remote := schemaOf(hello.Components)
	if err := s.reg.CheckSides(remote, "on the server", "on the client"); err != nil {
		return cn.refuse(refSchema, StatusSchema, err.Error())
	}
	if err := s.reg.CheckMessages(schemaOf(hello.Messages), "on the server", "on the client"); err != nil {
		return cn.refuse(refSchema, StatusSchema, err.Error())
	}
	var resumed bool
	if s.forwards() {
		// A gateway's clients are the simulation's (upstream.go).
		if resumed, err = s.joinUpstream(ctx, cn, &hello); err != nil {
			return cn.refuse(refUpstream, StatusTryAgain, "the game's simulation did not answer: "+err.Error())
		}
	} else {
		resumed = hello.Resume != nil && s.claimSession(cn, hello.Resume)
		if !resumed {
			cn.id = s.nextID.Add(1)
			cn.token = newToken()
		}
	}
	cn.welcomeTick, cn.welcomeVis = s.curTick.Load(), s.visTick.Load()
	cn.name = hello.ClientName
	names := make([]string, len(s.comps))
	for i, c := range s.comps {
		names[i] = c.Name()
	}
	msgNames := make([]string, len(s.msgTypes))
	for i, mt := range s.msgTypes {
		msgNames[i] = mt.Name()
	}
	wel := wire.AppendWelcome(nil, &wire.Welcome{
		Version:    wire.ProtocolVersion,
		ClientID:   cn.id,
		TickRate:   cmp.Or(cn.tickRate, uint64(s.opts.TickRate)),
		Tick:       cn.welcomeVis,
		Components: names,
		Messages:   msgNames,
		Resumed:    resumed,
		Token:      cn.token,
	})
	if err := cn.ws.Write(ctx, websocket.MessageBinary, wel); err != nil {
		s.log.Debug("ebisync: client left during handshake", "remote", cn.addr, "err", err)
		cn.ws.CloseNow()
		return err
	}
	cn.bytesOut.Add(uint64(len(wel)))
	cn.msgsOut.Add(1)
	return nil
}

func errOr(err error, s string) string {
	if err != nil {
		return err.Error()
	}
	return s
}

// refuse counts a handshake refusal, sends an Error message and closes
// with code and a reason cut to what a close frame holds.
func (cn *conn) refuse(why refusal, code websocket.StatusCode, msg string) error {
	cn.s.refused.add(why, "refused a client at the handshake", "remote", cn.addr, "code", int(code), "err", msg)
	e := wire.AppendError(nil, &wire.Error{Code: uint64(code), Message: truncate(msg, wire.MaxErrorLen)})
	ctx, cancel := context.WithTimeout(context.Background(), refuseTimeout)
	defer cancel()
	_ = cn.ws.Write(ctx, websocket.MessageBinary, e)
	// A peer that does not read would hold its handshake place for
	// coder/websocket's 5 s wait on the close: cut it after a grace.
	closeWithin(cn.ws, cn.net, code, truncate(msg, 120), shutdownGrace)
	return errors.New(msg)
}

// shutdownGrace bounds the close handshake with a client refused at its
// handshake, or that Server.Close finds in it.
const shutdownGrace = 250 * time.Millisecond

// closeWithin closes ws with code and reason, and drops its network
// connection nc if the peer has not answered the close within grace
// (coder/websocket waits up to 5 s for the answer, and CloseNow does not
// cut that wait short).
func closeWithin(ws *websocket.Conn, nc net.Conn, code websocket.StatusCode, reason string, grace time.Duration) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = ws.Close(code, reason)
	}()
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		_ = nc.Close()
		<-done
	}
}

// refuseTimeout bounds the write of a handshake refusal's Error.
const refuseTimeout = 2 * time.Second

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// readLoop decodes client messages into the inbound queue until the
// connection ends. A panic while handling the peer's bytes closes this
// connection with 1011; the server goes on.
func (cn *conn) readLoop() (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = cn.panicked("reading its messages", v)
		}
	}()
	bp := getBuf()
	defer putBuf(bp)
	for {
		typ, msg, err := cn.read(*bp)
		if err != nil {
			return err
		}
		if cn.net.Ended() {
			return errVanished
		}
		*bp = msg[:0]
		if typ != websocket.MessageBinary {
			return cn.violation(refProtocol, StatusProtocolError, "text messages are not part of the protocol")
		}
		if err := cn.handle(msg); err != nil {
			return err
		}
		if cap(*bp) > bufKeep {
			*bp = make([]byte, 0, bufKeep) // one large message does not pin its buffer
		}
	}
}

// read reads one message into buf's storage, growing it up to the read
// limit (coder/websocket enforces the limit and closes with 1009).
func (cn *conn) read(buf []byte) (websocket.MessageType, []byte, error) {
	typ, r, err := cn.ws.Reader(cn.ctx)
	if err != nil {
		return 0, nil, err
	}
	buf = buf[:0]
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			return 0, nil, err
		}
	}
	cn.bytesIn.Add(uint64(len(buf)))
	cn.msgsIn.Add(1)
	return typ, buf, nil
}

// handle decodes one message and queues it for the tick, answers it (pings,
// rate-limited requests), or returns the violation that ends the
// connection.
func (cn *conn) handle(msg []byte) error {
	s := cn.s
	var bp *[]byte
	if len(msg) > 0 && msg[0]&wire.FlagCompressed != 0 {
		bp = getBuf()
		defer putBuf(bp)
	}
	kind, body, err := openPooled(msg, bp, int(s.opts.ReadLimit))
	if err != nil {
		return cn.violation(refProtocol, StatusProtocolError, err.Error())
	}
	if inputHook != nil {
		inputHook("read", kind)
	}
	var item inbound
	item.kind = kind
	switch kind {
	case wire.KindSubscribe, wire.KindUnsubscribe:
		m, err := wire.DecodeSubscribeMax(body, s.subBurst())
		if err != nil {
			return cn.violation(refProtocol, StatusProtocolError, err.Error())
		}
		if !cn.takeSubs(len(m.Subs)) {
			return cn.violation(refSubscriptions, StatusAbuse, fmt.Sprintf("subscription changes past the rate limit of %v per second", s.opts.SubscriptionRate))
		}
		item.subs = m.Subs
	case wire.KindInterest:
		m, err := wire.DecodeInterest(body)
		if err != nil {
			return cn.violation(refProtocol, StatusProtocolError, err.Error())
		}
		item.interest = m
	case wire.KindMutate:
		m, err := wire.DecodeMutate(body)
		if err != nil {
			return cn.violation(refProtocol, StatusProtocolError, err.Error())
		}
		if !cn.take() {
			return cn.refuseLimited(limitedReq{request: m.Request})
		}
		m.Value = append([]byte(nil), m.Value...) // body aliases the read buffer
		item.mutate = m
	case wire.KindMessage:
		m, err := wire.DecodeMessage(body)
		if err != nil {
			return cn.violation(refProtocol, StatusProtocolError, err.Error())
		}
		if m.ID >= uint64(len(s.msgTypes)) {
			return cn.violation(refProtocol, StatusProtocolError, fmt.Sprintf("message type id %d past the %d in the Welcome", m.ID, len(s.msgTypes)))
		}
		if !cn.take() {
			return cn.refuseLimited(limitedReq{request: m.Request})
		}
		m.Value = append([]byte(nil), m.Value...) // body aliases the read buffer
		item.message = m
	case wire.KindInput:
		m, err := wire.DecodeInput(body)
		if err != nil {
			return cn.violation(refProtocol, StatusProtocolError, err.Error())
		}
		if m.ID >= uint64(len(s.msgTypes)) {
			return cn.violation(refProtocol, StatusProtocolError, fmt.Sprintf("input of message type id %d past the %d in the Welcome", m.ID, len(s.msgTypes)))
		}
		m.Value = append([]byte(nil), m.Value...) // body aliases the read buffer
		item.input = m
	case wire.KindControl:
		m, err := wire.DecodeControl(body)
		if err != nil {
			return cn.violation(refProtocol, StatusProtocolError, err.Error())
		}
		if !cn.take() {
			return cn.refuseLimited(limitedReq{request: m.Request, control: true, ctl: m})
		}
		item.control = m
	case wire.KindPing:
		m, err := wire.DecodePing(body)
		if err != nil {
			return cn.violation(refProtocol, StatusProtocolError, err.Error())
		}
		select {
		case cn.ctrl <- wire.AppendPing(nil, wire.KindPong, &m):
		default: // the writer is backed up; the client will ping again
		}
		return nil
	case wire.KindPong:
		m, err := wire.DecodePing(body)
		if err != nil {
			return cn.violation(refProtocol, StatusProtocolError, err.Error())
		}
		cn.pinger.pong(m.Nonce, time.Now())
		return nil
	case wire.KindHello:
		return cn.violation(refProtocol, StatusProtocolError, "a second Hello")
	default:
		return cn.violation(refProtocol, StatusProtocolError, fmt.Sprintf("message kind %s is not sent by clients", kind))
	}
	cost := item.cost()
	cn.inMu.Lock()
	over := cn.inBytes+cost > s.opts.InboundQueueBytes
	if !over {
		cn.inq = append(cn.inq, item)
		cn.inBytes += cost
	}
	cn.inMu.Unlock()
	if over {
		return cn.violation(refFlood, StatusAbuse, fmt.Sprintf("inbound queue over %d bytes", s.opts.InboundQueueBytes))
	}
	return nil
}

// inputHook, when set (by tests), runs as each client message is read
// ("read") and applied ("apply"), to stand for a bug that panics there.
var inputHook func(stage string, kind wire.Kind)

// takeInbound hands the queued messages to the tick, reusing buf.
func (cn *conn) takeInbound(buf []inbound) []inbound {
	cn.inMu.Lock()
	buf, cn.inq = cn.inq, buf[:0]
	cn.inBytes = 0
	cn.inMu.Unlock()
	return buf
}

// panicked logs a panic raised by a client's input with its stack, counts
// it and closes the connection with 1011.
func (cn *conn) panicked(where string, v any) error {
	cn.s.log.Error("ebisync: panic while "+where+"; closing that client", "client", cn.id, "remote", cn.addr, "panic", v, "stack", string(debug.Stack()))
	return cn.violation(refPanic, StatusInternal, "internal error")
}

// Pooled read and decompression buffers: a connection holds one only while
// it reads or decompresses a message, so idle connections cost none.
const bufKeep = 16 << 10 // larger buffers are not pooled

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

// openPooled opens msg, decompressing into *bp (kept there for the pool)
// when bp is not nil. The body may alias msg or *bp.
func openPooled(msg []byte, bp *[]byte, limit int) (wire.Kind, []byte, error) {
	var scratch []byte
	if bp != nil {
		scratch = *bp
	}
	kind, body, scratch, err := wire.OpenLimit(msg, scratch, limit)
	if bp != nil {
		*bp = scratch[:0]
	}
	return kind, body, err
}

func getBuf() *[]byte { return bufPool.Get().(*[]byte) }

func putBuf(bp *[]byte) {
	if cap(*bp) <= bufKeep {
		*bp = (*bp)[:0]
		bufPool.Put(bp)
	}
}

// errVanished ends a connection whose peer went away while its last
// message was arriving.
var errVanished = errors.New("connection ended mid-message")

// hijackWriter hands coder/websocket an eofconn.Conn when it hijacks the
// connection.
type hijackWriter struct {
	http.ResponseWriter
	conn *eofconn.Conn
}

func (w *hijackWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	w.conn = eofconn.Wrap(c)
	return w.conn, brw, nil
}

// isReadLimit reports whether err is coder/websocket's read-limit error,
// for which it has no sentinel (it has already closed with 1009).
func isReadLimit(err error) bool {
	return err != nil && strings.Contains(err.Error(), "read limited at")
}

// refuseLimited queues a RateLimited answer for the tick to send.
func (cn *conn) refuseLimited(l limitedReq) error {
	cn.limitedMu.Lock()
	n := len(cn.limited)
	if n < maxLimited {
		cn.limited = append(cn.limited, l)
	}
	cn.limitedMu.Unlock()
	if n >= maxLimited {
		return cn.violation(refFlood, StatusAbuse, "flooding requests far past the rate limit")
	}
	return nil
}

// takeLimited hands the queued refusals to the tick.
func (cn *conn) takeLimited(buf []limitedReq) []limitedReq {
	cn.limitedMu.Lock()
	buf = append(buf[:0], cn.limited...)
	cn.limited = cn.limited[:0]
	cn.limitedMu.Unlock()
	return buf
}

// takeSubs spends n tokens of the subscription bucket.
func (cn *conn) takeSubs(n int) bool {
	now := time.Now()
	o := &cn.s.opts
	cn.subTokens += now.Sub(cn.subFill).Seconds() * o.SubscriptionRate
	if max := float64(cn.s.subBurst()); cn.subTokens > max {
		cn.subTokens = max
	}
	cn.subFill = now
	if cn.subTokens < float64(n) {
		return false
	}
	cn.subTokens -= float64(n)
	return true
}

// take spends one token of the mutation bucket.
func (cn *conn) take() bool {
	now := time.Now()
	o := &cn.s.opts
	cn.tokens += now.Sub(cn.lastFill).Seconds() * o.MutationRate
	if cn.tokens > float64(o.MutationBurst) {
		cn.tokens = float64(o.MutationBurst)
	}
	cn.lastFill = now
	if cn.tokens < 1 {
		return false
	}
	cn.tokens--
	return true
}

// protocolViolation is a read-loop error caused by the peer's bytes.
type protocolViolation struct {
	code   websocket.StatusCode
	reason string
}

func (e *protocolViolation) Error() string { return e.reason }

// violation counts a refusal and closes the connection with code and
// reason.
func (cn *conn) violation(why refusal, code websocket.StatusCode, reason string) error {
	cn.s.refused.add(why, "dropped a client", "client", cn.id, "remote", cn.addr, "code", int(code), "err", reason)
	cn.shutdown(code, reason)
	return &protocolViolation{code: code, reason: reason}
}

// logEnd logs why a connection ended. A violation was counted and logged
// (rate-limited) when it happened; a message over the read limit is counted
// here; a peer that went away is Debug.
func (cn *conn) logEnd(err error) {
	var pv *protocolViolation
	switch {
	case errors.As(err, &pv):
	case isReadLimit(err):
		cn.s.refused.add(refReadLimit, "dropped a client for a message over the read limit", "client", cn.id, "remote", cn.addr, "limit", cn.s.opts.ReadLimit)
	default:
		cn.s.log.Debug("ebisync: client disconnected", "client", cn.id, "remote", cn.addr, "err", err)
	}
}

// shutdown closes the connection once, with a close frame when the peer
// still reads. It does not block: the close handshake (bounded by
// coder/websocket's own timeouts) runs on a goroutine that serve waits for.
func (cn *conn) shutdown(code websocket.StatusCode, reason string) {
	cn.once.Do(func() {
		cn.endCode.Store(int32(code))
		if cn.ws == nil {
			// A remote client: the relay tells its gateway to close.
			cn.endReason = reason
			if cn.cancel != nil {
				cn.cancel()
			}
			return
		}
		cn.closing.Add(1)
		go func() {
			defer cn.closing.Done()
			_ = cn.ws.Close(code, truncate(reason, 120))
			cn.cancel()
		}()
	})
}

// writeLoop writes batches, pongs and, every Options.PingInterval, a Ping
// (see pinger) until the connection ends.
func (cn *conn) writeLoop() {
	wt := cn.s.opts.WriteTimeout
	var framed []byte
	var gate lzGate
	var pingDue <-chan time.Time
	var pingBuf []byte
	if iv := cn.s.opts.PingInterval; iv > 0 {
		t := time.NewTicker(iv)
		defer t.Stop()
		pingDue = t.C
	}
	// A write blocked past the timeout is ended by closing the connection.
	// One reusable timer instead of a context per write: a cancellable
	// context costs coder/websocket several allocations per message.
	var timedOut atomic.Bool
	timer := time.AfterFunc(time.Hour, func() {
		timedOut.Store(true)
		cn.ws.CloseNow()
	})
	timer.Stop()
	defer timer.Stop()
	for {
		var msg []byte
		isBatch := false
		select {
		case <-cn.ctx.Done():
			return
		case msg = <-cn.ctrl:
		case msg = <-cn.out:
			isBatch = true
		case <-pingDue:
			var ok bool
			if pingBuf, ok = cn.pinger.ping(pingBuf[:0], time.Now()); !ok {
				continue // the last Ping is still awaited
			}
			msg = pingBuf
		}
		start := time.Now()
		out := msg // sent as it is unless lz4 shrinks it
		if isBatch && gate.try(len(msg)) || !isBatch && len(msg) > wire.MinCompressSize {
			// lz4's compressor holds a 136 KiB table: taken from the pool
			// per message, so idle connections hold none.
			comp := compressors.Get().(*wire.Compressor)
			framed = comp.Compress(framed[:0], msg)
			compressors.Put(comp)
			out = framed
			if isBatch {
				gate.result(len(msg), len(framed))
			}
		}
		timer.Reset(wt)
		err := cn.ws.Write(context.Background(), websocket.MessageBinary, out)
		timer.Stop()
		if isBatch {
			d := time.Since(start)
			cn.writeNanos.Store(int64(d))
			if d > cn.s.tickDur {
				cn.slowWrites.Add(1)
			}
			cn.busy.Store(false) // msg is the tick's again
		}
		if err != nil {
			if timedOut.Load() && cn.ctx.Err() == nil {
				cn.s.refused.add(refTooSlow, "dropped a client too slow to take its batches", "client", cn.id, "remote", cn.addr, "timeout", wt)
				cn.shutdown(StatusTooSlow, fmt.Sprintf("write timeout: no batch taken within %s", wt))
			} else {
				cn.shutdown(websocket.StatusNormalClosure, "")
			}
			return
		}
		if cap(framed) > batchKeep {
			framed = nil
		}
		cn.bytesOut.Add(uint64(len(out)))
		cn.msgsOut.Add(1)
		if isBatch {
			cn.batchRaw.Add(uint64(len(msg)))
			cn.batchWire.Add(uint64(len(out)))
		}
	}
}

var compressors = sync.Pool{New: func() any { return new(wire.Compressor) }}

// pinger measures a connection's round-trip time. The writer sends a Ping
// with a random nonce every Options.PingInterval; the reader times the
// Pong that echoes the nonce of the Ping in flight. One Ping is in flight
// at a time: a Pong with any other nonce (unsolicited, repeated, forged or
// late) is ignored, and a Ping not answered within pingPatience intervals
// gives way to a new one. A peer that never answers costs a Ping per
// pingPatience intervals and is not dropped for it. Each Pong costs a
// compare under an uncontended lock and no allocation.
type pinger struct {
	mu     sync.Mutex
	nonce  uint64    // of the Ping in flight; 0: none
	sent   time.Time // when that Ping was handed to the connection
	passed int       // intervals that passed with that Ping in flight
	// rtt is the smoothed round-trip time in nanoseconds (an exponentially
	// weighted moving average, weight 1/8 per sample, as netclient's),
	// last the last sample; 0 before the first Pong. The reader stores
	// them, anyone loads them.
	rtt, last atomic.Int64
}

// pingPatience is how many ping intervals a Ping is awaited before a new
// one replaces it.
const pingPatience = 4

// ping runs once per ping interval. It appends to dst the Ping to send at
// now, or reports false (sending nothing) while the last Ping is awaited
// and fewer than pingPatience intervals old. Writer goroutine only.
func (p *pinger) ping(dst []byte, now time.Time) ([]byte, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.nonce != 0 && p.passed < pingPatience-1 {
		p.passed++
		return dst, false
	}
	p.passed = 0
	// 32 random bits: a 5-byte nonce a peer cannot predict to answer a
	// Ping before it arrives.
	p.nonce = 1 + uint64(rand.Uint32())
	p.sent = now
	return wire.AppendPing(dst, wire.KindPing, &wire.Ping{Nonce: p.nonce}), true
}

// pong takes a Pong carrying nonce received at now: when it answers the
// Ping in flight, it records the round trip. Reader goroutine only.
func (p *pinger) pong(nonce uint64, now time.Time) {
	p.mu.Lock()
	if nonce == 0 || nonce != p.nonce {
		p.mu.Unlock()
		return
	}
	d := max(int64(now.Sub(p.sent)), 1)
	p.nonce = 0
	p.mu.Unlock()
	p.last.Store(d)
	v := d
	if old := p.rtt.Load(); old != 0 {
		v = max(old+(d-old)/8, 1)
	}
	p.rtt.Store(v)
}

// times returns the smoothed and the last round-trip time; 0 before the
// first Pong.
func (p *pinger) times() (rtt, last time.Duration) {
	return time.Duration(p.rtt.Load()), time.Duration(p.last.Load())
}

// lzGate decides, for one connection, which batches get an lz4 attempt.
// Batches of quantised deltas rarely shrink, and an attempt that does not
// pay costs far more than the copy it replaces (BenchmarkCompressAttempt in
// internal/wire measures both). After lzGiveUp attempts in a row saved less
// than a sixteenth, batches under lzAlwaysTry bytes are sent without one,
// except every lzRetry-th, which notices when what the game sends starts to
// compress again. Larger batches (spawns, snapshots) are always tried.
type lzGate struct {
	misses  int // attempts in a row that saved less than a sixteenth
	skipped int // batches sent without an attempt since the last one
}

const (
	lzGiveUp    = 8
	lzRetry     = 16
	lzAlwaysTry = 2048
)

// try reports whether a batch of n bytes gets an lz4 attempt.
func (g *lzGate) try(n int) bool {
	if n >= lzAlwaysTry || g.misses < lzGiveUp {
		return true
	}
	g.skipped++
	if g.skipped >= lzRetry {
		g.skipped = 0
		return true
	}
	return false
}

// result records an attempt that turned raw bytes into framed bytes.
func (g *lzGate) result(raw, framed int) {
	if framed > raw-raw/16 {
		g.misses++
	} else {
		g.misses = 0
	}
}

// schemaOf converts a Hello's descriptions for the registry's checks.
func schemaOf(descs []wire.ComponentDesc) []components.Schema {
	out := make([]components.Schema, len(descs))
	for i, c := range descs {
		fs := make([]components.FieldLayout, len(c.Fields))
		for j, f := range c.Fields {
			fs[j] = components.FieldLayout{Name: f.Name, Type: f.Type, Quant: f.Quant}
		}
		out[i] = components.Schema{Name: c.Name, Hash: c.Hash, Fields: fs}
	}
	return out
}
