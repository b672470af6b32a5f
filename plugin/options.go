package plugin

import (
	"log/slog"
	"math"
	"net/http"
	"time"

	"github.com/yohamta/donburi"

	"github.com/ebisync/ebisync/components"
	"github.com/ebisync/ebisync/internal/wire"
)

// Options configures a Server. A nil *Options means all defaults; a zero
// field means that field's default.
type Options struct {
	// TickRate is how many times per second the game calls Tick; it is
	// told to clients (for interpolation) and turns rates into ticks.
	// Default 60.
	TickRate int

	// ReadLimit bounds one message from a client, in bytes, as received
	// and again after decompression: a larger one closes the connection
	// with 1009 (as received) or 4000 (decompressed). Clients send small
	// things; raise it only for a registry whose Hello is larger. Default
	// 32 KiB.
	ReadLimit int64

	// WriteTimeout bounds one write to a client. A client that cannot take
	// a batch within it is dropped with close code 4003. Default 5s.
	WriteTimeout time.Duration

	// HandshakeTimeout bounds the wait for a client's Hello. Default 10s.
	HandshakeTimeout time.Duration

	// PingInterval is how often the server sends each client a Ping to
	// measure its round-trip time (ClientStats.RTT, the Inspector). One
	// Ping is in flight at a time; one unanswered for four intervals gives
	// way to a new one. A client that does not answer is not dropped for
	// it. Default 2s; negative sends no Pings.
	PingInterval time.Duration

	// Logger receives the server's logs. A client that vanished is logged at
	// Debug. Default slog.Default().
	Logger *slog.Logger

	// CellSize is the side of a spatial-grid cell, in world units. Pick
	// about the typical interest radius divided by 4. Default 128.
	CellSize float64

	// DefaultRadius is the interest radius a client has until it sends its
	// own interest; 0 means global interest (every entity). Default 0.
	DefaultRadius float64

	// MaxRadius caps the radius a client may ask for; 0 means no cap.
	// With a cap, a client's request for global interest is ignored (the
	// game may still give a client global interest with
	// Server.SetGlobalInterest).
	MaxRadius float64

	// Hysteresis is the leave radius divided by the enter radius: an entity
	// enters a client's scope within Radius and leaves it beyond
	// Radius×Hysteresis, so entities on the edge do not flap. Default 1.15.
	Hysteresis float64

	// RescanInterval is the most ticks between two full scope evaluations of
	// a client (which also re-run Filter). Default 15.
	RescanInterval int

	// BytesPerSecond caps the batch bytes each client is sent per second;
	// 0 means no cap. Changes that do not fit are sent on later ticks, most
	// urgent first; nothing starves.
	BytesPerSecond int

	// SendRate is how many batches per second a client receives at most.
	// Default TickRate. The server lowers it for a client whose writes are
	// slow and raises it again when they recover.
	SendRate int

	// MutationRate and MutationBurst set each connection's token bucket for
	// mutations and control requests. Defaults 30 per second, burst 60.
	MutationRate  float64
	MutationBurst int

	// InboundQueueBytes bounds the decoded messages of one connection
	// waiting for the next tick, in bytes of server memory. A client that
	// overflows it is dropped with close code 4002. Default 64 KiB.
	InboundQueueBytes int

	// MessageQueueBytes bounds the encoded game messages (Send, Broadcast,
	// SendToViewers) waiting for one client's next batches. Messages count
	// against the client's byte budget like state, and are never dropped
	// while it is connected: a client whose queue overflows, because it does
	// not keep up with what the game sends it, is dropped with close code
	// 4003. Default 256 KiB.
	MessageQueueBytes int

	// MaxInputsPerTick bounds the inputs (HandleInput) of one client
	// applied in one tick; the rest wait for the next ticks, at most
	// MaxInputsQueued of them (and within InboundQueueBytes); past that the
	// oldest waiting input is dropped, and its sequence number counts as
	// processed. Defaults: 2×ceil(60/TickRate)+2, enough for a 60 Hz
	// client plus catch-up, and 4×MaxInputsPerTick.
	MaxInputsPerTick int
	MaxInputsQueued  int

	// MaxEntitySubscriptions caps one client's entity subscriptions; a
	// client that asks for more is dropped with close code 4002.
	// Subscriptions to entities that do not exist are ignored. Default
	// 1024.
	MaxEntitySubscriptions int

	// SubscriptionRate is how many subscription entries (added or removed)
	// one connection may send per second, with a burst of
	// MaxEntitySubscriptions plus 64; a client past it is dropped with close
	// code 4002. Default 256.
	SubscriptionRate float64

	// RescanRate is how many times per second one client's whole scope is
	// evaluated at most. Subscriptions, interest changes and a moving
	// centre ask for such a rescan; past this rate they are merged into the
	// next one allowed. Default 10.
	RescanRate float64

	// ControlIdleTimeout ends a hold of exclusive control when its holder
	// neither mutated the entity nor took control again for this long,
	// whatever timeout it asked for (also none). Default 30s.
	ControlIdleTimeout time.Duration

	// Authenticate, if set, runs before the WebSocket upgrade, on the
	// connection's goroutine, and returns who the client is; the Identity
	// is in ClientInfo for every hook and in Stats. An error refuses the
	// connection before the upgrade with 401 Unauthorized, or 403 Forbidden
	// when it wraps ErrAccessDenied; its text is sent in the response body,
	// so it must not reveal secrets. A panic in it is a 401. See
	// BearerToken; netclient sends Options.Token as a bearer token.
	Authenticate func(r *http.Request) (Identity, error)

	// OriginPatterns lists the other origins whose pages may connect, as
	// host patterns in path.Match syntax ("*.example.com", or with a scheme,
	// "https://game.example.com"). A browser's request from any other site
	// is refused with 403; same-origin pages and clients that send no
	// Origin (netclient, native games) are always allowed. Default none.
	OriginPatterns []string

	// MaxConnections bounds open connections, handshakes included;
	// MaxHandshakes bounds those still in their handshake (upgrade, Hello,
	// Welcome); MaxConnectionsPerAddress bounds the connections from one IP
	// address. Over a server-wide limit the upgrade is answered 503, over
	// the per-address limit 429, both with Retry-After. Defaults 10000, 256
	// and 32.
	MaxConnections           int
	MaxHandshakes            int
	MaxConnectionsPerAddress int

	// RemoteAddr, if set, returns the client address used for the
	// per-address limit, ClientInfo.Addr and logs: behind a trusted reverse
	// proxy, the address it forwards. Default r.RemoteAddr.
	RemoteAddr func(r *http.Request) string

	// RefusalLogInterval is the least time between two log lines for the
	// same refusal reason; each line carries the count since the last.
	// Default 10s.
	RefusalLogInterval time.Duration

	// Position tells where an entity is, for interest management. It runs on
	// the game goroutine, during change detection, and must only read: it
	// must not create or remove entities or add or remove components.
	// Default: components.Position when present; entities without a
	// position are visible at any distance.
	Position func(e *donburi.Entry) (x, y float64, ok bool)

	// Filter, if set, hides entities from clients for game rules (teams,
	// fog of war): an entity enters a client's scope only if Filter returns
	// true. It runs on the game goroutine when scope is evaluated (on
	// enter, on moves and at least every RescanInterval ticks), so its
	// answer may change over time.
	Filter func(client ClientInfo, e *donburi.Entry) bool

	// Authorize decides each mutation of a ClientWritable component and
	// each request to take control: nil allows it, an error refuses it
	// with StatusForbidden (ControlForbidden) and the error's text. It runs
	// on the game goroutine; a panic in it answers StatusInternalError.
	// Default DefaultAuthorize; see also RequireControl and AllowAll.
	Authorize func(req *Request) error

	// Validate, if set, checks a mutated value after Authorize and before it
	// is applied; an error answers StatusValidationError with its text.
	Validate func(req *Request) error

	// OnConnect and OnDisconnect run on the game goroutine when a client's
	// session starts (after its handshake) and after it ended and its state
	// is freed: when its connection ended, or, for a connection that
	// vanished, once ResumeWindow passed without a resume.
	OnConnect    func(client ClientInfo)
	OnDisconnect func(client ClientInfo)
	// OnResume runs on the game goroutine when a client resumes its
	// session on a new connection (see ResumeWindow): same client id,
	// ownership, controls and subscriptions. OnDisconnect runs only when
	// a session ends for good: its window passed without a resume.
	OnResume func(client ClientInfo)

	// Publish, when set, receives every tick's changes by grid cell
	// (PublishCellSize), encoded once, for gateways that serve clients
	// without the World: see Publisher and package plugin/natsync. It
	// needs components.Position registered and Position left nil. Default:
	// nil, nothing is published.
	Publish Publisher

	// PublishCellSize is the side of a published cell, in world units.
	// Each active cell costs a message per tick, and a consumer follows
	// whole cells: pick about the typical interest radius, so that a
	// client's interest covers a few cells. Default 4 × CellSize.
	PublishCellSize float64

	// GatewayTimeout is how long a simulation waits for a gateway that
	// serves its clients to be heard from (a gateway sends at least every
	// half second) before it takes the gateway for dead: its clients'
	// sessions are kept for ResumeWindow, for a resume at another gateway.
	// Default 3 s.
	GatewayTimeout time.Duration

	// ResumeWindow is how long a client's session outlives its
	// connection. A client that reconnects within it with the token of its
	// last Welcome gets its session back; its first batch carries only what
	// changed since the last batch it applied. Meanwhile the session keeps
	// its entities, controls and subscriptions, and messages sent to it are
	// dropped. Default 10 s; negative turns resume off (a session ends
	// with its connection).
	ResumeWindow time.Duration
	// MaxResumable and ResumeBytes bound the sessions kept for departed
	// clients, by count and by estimated bytes; beyond either, the longest
	// departed one ends. Defaults 1024 and 64 MiB.
	MaxResumable int
	ResumeBytes  int

	// defaultPos: Position was left nil (set by withDefaults).
	defaultPos bool
}

func (o *Options) withDefaults() Options {
	var v Options
	if o != nil {
		v = *o
	}
	if v.TickRate <= 0 {
		v.TickRate = 60
	}
	if v.ReadLimit <= 0 {
		v.ReadLimit = 32 << 10
	}
	if v.ReadLimit > wire.MaxMessageSize {
		v.ReadLimit = wire.MaxMessageSize
	}
	if v.WriteTimeout <= 0 {
		v.WriteTimeout = 5 * time.Second
	}
	if v.HandshakeTimeout <= 0 {
		v.HandshakeTimeout = 10 * time.Second
	}
	if v.PingInterval == 0 {
		v.PingInterval = 2 * time.Second
	}
	if v.Logger == nil {
		v.Logger = slog.Default()
	}
	if v.CellSize <= 0 {
		v.CellSize = 128
	}
	if !(v.PublishCellSize > 0) || math.IsInf(v.PublishCellSize, 0) {
		v.PublishCellSize = 4 * v.CellSize
	}
	if v.Hysteresis < 1 {
		v.Hysteresis = 1.15
	}
	if v.RescanInterval <= 0 {
		v.RescanInterval = 15
	}
	if v.SendRate <= 0 || v.SendRate > v.TickRate {
		v.SendRate = v.TickRate
	}
	if v.MutationRate <= 0 {
		v.MutationRate = 30
	}
	if v.MutationBurst <= 0 {
		v.MutationBurst = 60
	}
	if v.InboundQueueBytes <= 0 {
		v.InboundQueueBytes = 64 << 10
	}
	if v.MessageQueueBytes <= 0 {
		v.MessageQueueBytes = 256 << 10
	}
	if v.MaxInputsPerTick <= 0 {
		v.MaxInputsPerTick = 2*((60+v.TickRate-1)/v.TickRate) + 2
	}
	if v.MaxInputsQueued <= 0 {
		v.MaxInputsQueued = 4 * v.MaxInputsPerTick
	}
	if v.MaxEntitySubscriptions <= 0 {
		v.MaxEntitySubscriptions = 1024
	}
	if v.SubscriptionRate <= 0 {
		v.SubscriptionRate = 256
	}
	if v.RescanRate <= 0 {
		v.RescanRate = 10
	}
	if v.ControlIdleTimeout <= 0 {
		v.ControlIdleTimeout = 30 * time.Second
	}
	if v.MaxConnections <= 0 {
		v.MaxConnections = 10000
	}
	if v.MaxHandshakes <= 0 {
		v.MaxHandshakes = 256
	}
	if v.MaxConnectionsPerAddress <= 0 {
		v.MaxConnectionsPerAddress = 32
	}
	if v.ResumeWindow == 0 {
		v.ResumeWindow = 10 * time.Second
	}
	if v.GatewayTimeout <= 0 {
		v.GatewayTimeout = 3 * time.Second
	}
	if v.MaxResumable <= 0 {
		v.MaxResumable = 1024
	}
	if v.ResumeBytes <= 0 {
		v.ResumeBytes = 64 << 20
	}
	if v.RefusalLogInterval <= 0 {
		v.RefusalLogInterval = 10 * time.Second
	}
	if v.Position == nil {
		v.Position = defaultPosition
		v.defaultPos = true
	}
	if v.Authorize == nil {
		v.Authorize = DefaultAuthorize
	}
	return v
}

func defaultPosition(e *donburi.Entry) (float64, float64, bool) {
	if !e.HasComponent(components.Position) {
		return 0, 0, false
	}
	p := components.Position.Get(e)
	return p.X, p.Y, true
}

// maxBatch is the most bytes one batch may carry regardless of budget.
const maxBatch = wire.MaxMessageSize - 1024
