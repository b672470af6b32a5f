package netclient

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/yohamta/donburi"
	"github.com/yohamta/donburi/ecs"

	"github.com/ebisync/ebisync/components"
	"github.com/ebisync/ebisync/internal/codec"
	"github.com/ebisync/ebisync/internal/wire"
)

// Errors a Client reports. They are returned wrapped; test with errors.Is.
var (
	// ErrClosed is returned by Update and in results after Close.
	ErrClosed = errors.New("netclient: client closed")
	// ErrNotConnected means a request could not be sent because the
	// client is between connections.
	ErrNotConnected = errors.New("netclient: not connected")
	// ErrDisconnected means the connection dropped before the server
	// answered a request. The server may or may not have applied it.
	ErrDisconnected = errors.New("netclient: connection lost before the reply")
	// ErrNotMirrored means the entity is not a live mirror entity.
	ErrNotMirrored = errors.New("netclient: entity is not mirrored")
	// ErrUnknownComponent means the component type is not in the
	// client's registry.
	ErrUnknownComponent = errors.New("netclient: component not registered")
	// ErrSendQueueFull means the connection's send queue is full: the
	// network does not keep up with the requests.
	ErrSendQueueFull = errors.New("netclient: send queue full")
	// ErrProtocolVersion means the server speaks another protocol version.
	// It is permanent: the client does not reconnect.
	ErrProtocolVersion = errors.New("netclient: protocol version mismatch")
	// ErrUnauthorized means the server refused the credentials (HTTP 401:
	// a missing or invalid Options.Token). It is permanent.
	ErrUnauthorized = errors.New("netclient: not authenticated")
	// ErrForbidden means the server knows the credentials but refused the
	// account, or the page's origin (HTTP 403). It is permanent.
	ErrForbidden = errors.New("netclient: access denied")
	// ErrUnreachable means no server answered at the URL's address: the
	// connection was refused or the host does not exist. A reconnecting
	// client keeps trying.
	ErrUnreachable = errors.New("netclient: server unreachable")
	// ErrServerBusy means the server is at a connection limit (HTTP 503,
	// or 429 for too many connections from this address). A reconnecting
	// client keeps trying.
	ErrServerBusy = errors.New("netclient: server busy")
)

// HTTPError is a connection the server refused before the WebSocket
// upgrade, with an HTTP status. errors.Is matches ErrUnauthorized (401),
// ErrForbidden (403) and ErrServerBusy (429, 503). A browser does not show
// a page the status of a refused WebSocket, so in one (GOOS=js) a refusal
// is not an HTTPError but an error matching ErrUnreachable.
type HTTPError struct {
	URL        string
	StatusCode int
	Message    string // the first line of the response body
}

func (e *HTTPError) Error() string {
	status := fmt.Sprintf("HTTP %d %s", e.StatusCode, http.StatusText(e.StatusCode))
	if e.StatusCode == http.StatusNotFound {
		path := "/"
		if u, err := url.Parse(e.URL); err == nil && u.Path != "" {
			path = u.Path
		}
		return fmt.Sprintf("netclient: %s answered %s: nothing is served at %s; check the URL's path (the demo serves /sync)", e.URL, status, path)
	}
	msg := fmt.Sprintf("netclient: %s refused the connection with %s", e.URL, status)
	if e.Message != "" {
		msg += ": " + e.Message
	}
	return msg
}

// Unwrap returns the sentinel error of the status, or nil.
func (e *HTTPError) Unwrap() error {
	switch e.StatusCode {
	case http.StatusUnauthorized:
		return ErrUnauthorized
	case http.StatusForbidden:
		return ErrForbidden
	case http.StatusTooManyRequests, http.StatusServiceUnavailable:
		return ErrServerBusy
	}
	return nil
}

// TokenParam is the query parameter of the server URL that carries
// Options.Token from a browser, where a WebSocket cannot carry an
// Authorization header. It is RFC 6750's name for a bearer token in a URL,
// and plugin.BearerToken reads it.
const TokenParam = "access_token"

// Options configures a Client. A nil *Options means every default; a zero
// field means that field's default.
type Options struct {
	// World is the mirror world the client writes into. Default: a new
	// donburi world. (donburi.NewWorld is not safe for concurrent use:
	// concurrent Dials are serialised, but a game calling NewWorld itself
	// on another goroutine at the same moment still races.)
	World donburi.World

	// Name is sent to the server for its logs.
	Name string

	// ReadLimit bounds one message from the server, in bytes. Default
	// 4 MiB + 64, the protocol's largest message (docs/PROTOCOL.md §10).
	ReadLimit int64

	// HandshakeTimeout bounds dialing plus the Hello/Welcome exchange, for
	// Dial and each reconnect attempt. Default 10s.
	HandshakeTimeout time.Duration

	// WriteTimeout bounds one write to the server. Default 5s.
	WriteTimeout time.Duration

	// PingInterval is how often the client measures the round-trip time.
	// Default 1s.
	PingInterval time.Duration

	// IdleTimeout drops a connection on which nothing arrived for this
	// long (the server answers every ping, so silence means a dead link);
	// the client then reconnects. Default 10s, and at least two ping
	// intervals; negative disables it.
	IdleTimeout time.Duration

	// NoReconnect turns off automatic reconnection: when the connection
	// drops, the client is closed for good and Update returns why.
	NoReconnect bool

	// MinBackoff and MaxBackoff bound the wait before a reconnect attempt:
	// attempt n waits a random duration in [0, min(MaxBackoff,
	// MinBackoff×2ⁿ)) ("full jitter"). Defaults 100ms and 5s.
	MinBackoff time.Duration
	MaxBackoff time.Duration

	// URLs are further addresses of the same game (gateways in front of
	// one world, say), ws:// or wss:// like Dial's url, for when a server
	// cannot be reached or its connection drops. Dial tries its url first
	// and then these in order, each attempt bounded by HandshakeTimeout.
	// A reconnect attempt is a round over url and these that starts at the
	// URL that last worked and goes on to the next ones in turn, wrapping
	// around; the backoff comes before each round, not between the URLs of
	// one. Whichever URL answers, the client asks to resume its session: a
	// server that knows the session resumes it, any other starts a fresh
	// one (the mirror resyncs, see ExitResync). A refusal that a reconnect
	// cannot help (a schema or protocol-version mismatch, a refused
	// handshake, HTTP 401 or 403) ends Dial, or the reconnecting, at once,
	// as with a single URL: the URLs serve one game, which would refuse
	// the same way. A URL listed twice is tried once per round. Client.URL
	// names the URL in use.
	URLs []string

	// Logger receives the client's logs. A connection that drops and
	// comes back is logged at Info, failed attempts at Debug. Default
	// slog.Default().
	Logger *slog.Logger

	// Token, if set, is sent with every dial for the server's
	// Authenticate hook (see plugin.BearerToken): as the header
	// "Authorization: Bearer <token>", or, in a browser (GOOS=js), which
	// lets a page set no headers on a WebSocket, as the query parameter
	// TokenParam of the URL. A URL can end up in the logs of proxies on the
	// way, so a browser game should give it a short-lived token.
	Token string

	// HTTPHeader and HTTPClient are passed to the WebSocket dial (for
	// other authentication headers, proxies, TLS configuration). A browser
	// makes its own requests: there (GOOS=js) they are not used.
	HTTPHeader http.Header
	HTTPClient *http.Client

	// InterpolationDelay is how far in the past Interpolated renders. It
	// must cover the interval between two updates of a component plus the
	// arrival jitter, or rendering stalls at the newest value. Default two
	// server ticks (from the Welcome's tick rate).
	InterpolationDelay time.Duration

	// MaxPendingBatches bounds the decoded batches waiting for Update.
	// When the game stops calling Update the reader blocks on this queue,
	// which stops reading the socket; TCP then pushes back on the server,
	// which eventually drops the client as too slow (close code 4003) and
	// the client reconnects once Update runs again. Default 64.
	MaxPendingBatches int

	// OnSpawn is called when an entity enters the mirror (also when the
	// client recreates a mirror entity the game removed). OnDespawn is
	// called before a mirror entity is removed, with the reason.
	// OnChange is called after the server changed a component of a mirror
	// entity: a new value was written, the component was removed (the
	// entity no longer has it), or an optimistic value was reverted. They
	// run on the game goroutine inside Update and may use the world and
	// the Client (but must not call Update).
	OnSpawn   func(e donburi.Entity)
	OnDespawn func(e donburi.Entity, reason ExitReason)
	OnChange  func(e donburi.Entity, comp *components.Component)
}

func (o *Options) withDefaults() Options {
	var v Options
	if o != nil {
		v = *o
	}
	if v.ReadLimit <= 0 {
		v.ReadLimit = wire.MaxMessageSize + 64
	}
	if v.Token != "" {
		v.HTTPHeader = v.HTTPHeader.Clone()
		if v.HTTPHeader == nil {
			v.HTTPHeader = http.Header{}
		}
		v.HTTPHeader.Set("Authorization", "Bearer "+v.Token)
	}
	if v.HandshakeTimeout <= 0 {
		v.HandshakeTimeout = 10 * time.Second
	}
	if v.WriteTimeout <= 0 {
		v.WriteTimeout = 5 * time.Second
	}
	if v.PingInterval <= 0 {
		v.PingInterval = time.Second
	}
	if v.IdleTimeout == 0 {
		v.IdleTimeout = 10 * time.Second
	}
	if v.IdleTimeout > 0 {
		v.IdleTimeout = max(v.IdleTimeout, 2*v.PingInterval)
	}
	if v.MinBackoff <= 0 {
		v.MinBackoff = 100 * time.Millisecond
	}
	if v.MaxBackoff <= 0 {
		v.MaxBackoff = 5 * time.Second
	}
	if v.MaxBackoff < v.MinBackoff {
		v.MaxBackoff = v.MinBackoff
	}
	if v.Logger == nil {
		v.Logger = slog.Default()
	}
	if v.MaxPendingBatches <= 0 {
		v.MaxPendingBatches = 64
	}
	return v
}

// ExitReason says why an entity left the mirror.
type ExitReason uint8

// Exit reasons. The first four come from the server.
const (
	ExitOutOfRange   ExitReason = 1 // left the interest radius
	ExitDespawned    ExitReason = 2 // destroyed on the server
	ExitUnsubscribed ExitReason = 3 // the client unsubscribed
	ExitFiltered     ExitReason = 4 // hidden by the server's filter
	// ExitResync means the client cleared its mirror at a reconnect that
	// began a fresh session; the server sends the entities again.
	ExitResync ExitReason = 100
	// ExitAway means the entity left the client's scope while its
	// connection was down, and the session resumed: it was despawned, went
	// out of range or was hidden, and the client cannot tell which.
	ExitAway ExitReason = 101
)

// String returns the reason's name, e.g. "out of range".
func (r ExitReason) String() string {
	switch r {
	case ExitOutOfRange:
		return "out of range"
	case ExitDespawned:
		return "despawned"
	case ExitUnsubscribed:
		return "unsubscribed"
	case ExitFiltered:
		return "filtered"
	case ExitResync:
		return "resync"
	case ExitAway:
		return "away"
	}
	return "reason(" + itoa(uint64(r)) + ")"
}

// Client is a connection to an ebisync server that mirrors the server's
// world into a local donburi world. Create it with Dial.
//
// Methods documented as game-goroutine-only must be called from the
// goroutine that calls Update and owns the mirror world; the others are
// safe for concurrent use.
type Client struct {
	reg       *components.Registry
	codecs    []*codec.Codec // by local component index
	msgCodecs []*codec.Codec // by local message type index
	world     donburi.World
	opts      Options
	log       *slog.Logger
	urls      []string // Dial's url, then Options.URLs without repeats
	hello     wire.Hello
	epoch     time.Time // monotonic origin of ping nonces and the clock

	ctx       context.Context // cancelled by Close
	cancel    context.CancelFunc
	wg        sync.WaitGroup // the supervisor goroutine
	closeOnce sync.Once
	closed    atomic.Bool

	events chan event       // network → game goroutine, in order
	free   chan *inbound    // game goroutine → reader: buffers to reuse
	comp   *wire.Compressor // used by one writer at a time, made on first use
	http   *http.Client     // Options.HTTPClient with eofconn.Conn connections

	// Network-side state, guarded by mu.
	mu          sync.Mutex
	live        *session
	compSubs    map[*codec.Codec]bool
	entSubs     map[entKey]bool
	interest    wire.Interest
	interestSet bool
	term        error // why the client stopped for good

	connected atomic.Bool
	clientID  atomic.Uint64

	// url is the URL of the live (or last) session, urls[at]: written by
	// Dial before the supervisor goroutine starts, then by it alone (see
	// setURL). URL reads at.
	url string
	at  atomic.Int32

	// Session resume. resumable is what the next Hello presents: the
	// last session's id, token and final tick; the Hello adds the
	// remembered interest and subscriptions. resumeIDs is the component
	// id mapping (toServer) of the connection that gave the token, by
	// which the Hello numbers its component subscriptions: the new
	// server's numbering is not known before its Welcome. The handshake
	// matches registries by name, not order, so servers of one game agree
	// on the numbering when they register their components in the same
	// order; where the new server's differs, attach unsubscribes what the
	// Hello named by mistake (staleLocked). Both belong to the supervisor
	// goroutine. noResume, set when the mirror cannot be trusted (a batch
	// failed to apply), makes the next Hello ask for a fresh session.
	resumable *wire.Resume
	resumeIDs []uint64
	noResume  atomic.Bool

	// Pending requests, guarded by pmu (Close resolves them from any
	// goroutine).
	pmu       sync.Mutex
	nextReq   uint64
	mutations map[uint64]*pendingMutation
	controls  map[uint64]*pendingControl

	// Game-goroutine state.
	parentIdx, transformIdx int                               // components.Parent and transform.Transform; -1 without both
	ownerIdx                int                               // components.Owner
	relink                  []*mirrored                       // links refused as cycles while a batch applied; retried after it
	owned                   map[*mirrored]struct{}            // the mirror entities this client owns
	msgHandlers             []func(unsafe.Pointer)            // by local message type index; nil: drop
	msgScratch              []unsafe.Pointer                  // by local message type index, decoded into
	scratch                 []unsafe.Pointer                  // per component, for values with entity references
	refsTo                  map[uint32]map[*mirrored]struct{} // referenced net id → the mirror entities referring to it
	gs                      *session                          // the session whose batches Update applies
	tick                    uint64                            // server tick of the last applied batch: the mirror's state
	sessTick                uint64                            // the session's Welcome tick plus the advances applied: the next batch advances from it
	tickBase                uint64                            // server tick the interpolation clock counts from, set by a fresh session
	advances                [8]uint64                         // TickAdvance of the last batches that advanced
	nadv                    int
	byNet                   map[uint32]*mirrored
	byEnt                   map[donburi.Entity]*mirrored
	clock                   clock
	subsWarn                noSubsWarning
	pred                    predictState // the input stream and predicted entities (predict.go)

	stats counters
}

// entKey names an entity subscription.
type entKey struct{ id, gen uint32 }

// Update applies everything received since the last call to the mirror
// world: spawns, despawns, component updates and removals, in the order the
// server sent them. It fires the Options hooks and resolves mutation and
// control results. Call it once per frame on the game goroutine.
//
// Update returns nil while the client is alive, and the reason once it is
// closed for good: ErrClosed after Close, or the error that ended the last
// connection when the client does not reconnect (Options.NoReconnect, a
// schema or protocol-version mismatch). After Close it does not touch the
// world.
func (c *Client) Update() error {
	if c.closed.Load() {
		return c.Err()
	}
	// Handle only what is queued now, so that a fast server cannot keep
	// one Update running.
	if n := len(c.events); n > 0 {
		now := time.Since(c.epoch).Seconds()
		for ; n > 0 && !c.closed.Load(); n-- {
			c.handle(<-c.events, now)
		}
	}
	c.stats.entities.Store(int64(len(c.byNet)))
	c.warnNoSubs()
	if c.closed.Load() {
		return c.Err()
	}
	if c.gs == nil && len(c.events) == 0 {
		return c.Err()
	}
	return nil
}

// noSubsGrace is how long a client may be connected with no subscriptions
// before it warns that its mirror stays empty.
var noSubsGrace = 5 * time.Second

// noSubsWarning is the state of the one warning about a forgotten
// SubscribeAll.
type noSubsWarning struct {
	since time.Time // first Update seen connected with no subscriptions; zero otherwise
	done  bool
}

// warnNoSubs logs once, at Warn, that the client has been connected for
// noSubsGrace with no subscription: the server sends such a client
// nothing, and a silently empty mirror is the usual symptom of a forgotten
// SubscribeAll.
func (c *Client) warnNoSubs() {
	w := &c.subsWarn
	if w.done || !c.connected.Load() {
		return
	}
	c.mu.Lock()
	none := len(c.compSubs) == 0 && len(c.entSubs) == 0
	c.mu.Unlock()
	switch {
	case !none:
		w.done = true // it subscribed: nothing was forgotten
	case w.since.IsZero():
		w.since = time.Now()
	case time.Since(w.since) >= noSubsGrace:
		w.done = true
		c.log.Warn("ebisync: connected with no subscriptions, so the server sends nothing and the mirror stays empty; call SubscribeAll or Subscribe", "url", c.URL(), "for", noSubsGrace)
	}
}

// System is Update as a donburi ecs system: ecs.AddSystem(client.System).
// It drops Update's error; check Err.
// Game goroutine only, like Update.
func (c *Client) System(_ *ecs.ECS) { _ = c.Update() }

// Err returns why the client stopped for good (see Update), or nil while it
// is alive. It is safe for concurrent use.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.term
}

// setTerm records the first terminal error.
func (c *Client) setTerm(err error) {
	c.mu.Lock()
	if c.term == nil {
		c.term = err
	}
	c.mu.Unlock()
}

// World returns the mirror world. It is safe for concurrent use; the world
// itself is not.
func (c *Client) World() donburi.World { return c.world }

// Registry returns the client's (frozen) registry. It is safe for
// concurrent use.
func (c *Client) Registry() *components.Registry { return c.reg }

// Connected reports whether a connection is up (handshake done and not
// dropped). It is safe for concurrent use.
func (c *Client) Connected() bool { return c.connected.Load() }

// URL returns the server URL of the current connection, or of the last
// one while the client reconnects: Dial's url or one of Options.URLs. It
// is safe for concurrent use.
func (c *Client) URL() string { return c.urls[c.at.Load()] }

// ClientID returns the id the server gave the current (or last)
// connection; control holders are named by it. It changes on reconnect.
// It is safe for concurrent use.
func (c *Client) ClientID() uint64 { return c.clientID.Load() }

// ServerTick returns the server tick of the last batch Update applied. It
// is safe for concurrent use.
func (c *Client) ServerTick() uint64 { return c.stats.serverTick.Load() }

// Entity returns the mirror entity of server entity netID, if it is in the
// mirror and the game has not removed it. Game goroutine only.
func (c *Client) Entity(netID uint32) (donburi.Entity, bool) {
	ne := c.byNet[netID]
	if ne == nil || !c.world.Valid(ne.e) {
		return donburi.Null, false
	}
	return ne.e, true
}

// NetID returns the server id and generation of mirror entity e. Game
// goroutine only.
func (c *Client) NetID(e donburi.Entity) (id, gen uint32, ok bool) {
	ne := c.byEnt[e]
	if ne == nil || !c.world.Valid(e) {
		return 0, 0, false
	}
	return ne.id, ne.gen, true
}

// closeGrace bounds the close handshake in Close.
const closeGrace = time.Second

// Close closes the connection (with a normal close handshake), stops
// reconnecting and waits for the client's goroutines to exit. Pending
// mutation and control results resolve with ErrClosed (optimistic values
// are not reverted: the world is left as it is). Close is idempotent and
// safe for concurrent use, including from a hook inside Update. It always
// returns nil.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		c.closed.Store(true)
		c.setTerm(ErrClosed)
		c.cancel()
		c.mu.Lock()
		s := c.live
		c.mu.Unlock()
		if s != nil {
			s.fail(ErrClosed, statusNormal, "client closed")
			// A dead server never answers the close handshake: give it a
			// moment, then drop the connection.
			t := time.AfterFunc(closeGrace, s.kill)
			defer t.Stop()
		}
		c.wg.Wait()
	})
	c.wg.Wait()
	c.abandonPending(nil, ErrClosed)
	return nil
}

// itoa formats v without fmt, for String methods.
func itoa(v uint64) string {
	if v == 0 {
		return "0"
	}
	var b [20]byte
	i := len(b)
	for v > 0 {
		i--
		b[i] = byte('0' + v%10)
		v /= 10
	}
	return string(b[i:])
}
