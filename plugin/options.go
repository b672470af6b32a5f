package plugin

import (
	"log/slog"
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

	// ReadLimit bounds one message from a client, in bytes. Default 64 KiB.
	ReadLimit int64

	// WriteTimeout bounds one write to a client. A client that cannot take
	// a batch within it is dropped with close code 4003. Default 5s.
	WriteTimeout time.Duration

	// HandshakeTimeout bounds the wait for a client's Hello. Default 10s.
	HandshakeTimeout time.Duration

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

	// InboundQueue bounds the decoded messages waiting for the next tick,
	// per connection. A client that overflows it is dropped with close code
	// 4002. Default 256.
	InboundQueue int

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

	// OnConnect and OnDisconnect run on the game goroutine when a client
	// joins (after its handshake) and after it left and its state is freed.
	OnConnect    func(client ClientInfo)
	OnDisconnect func(client ClientInfo)

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
		v.ReadLimit = 64 << 10
	}
	if v.WriteTimeout <= 0 {
		v.WriteTimeout = 5 * time.Second
	}
	if v.HandshakeTimeout <= 0 {
		v.HandshakeTimeout = 10 * time.Second
	}
	if v.Logger == nil {
		v.Logger = slog.Default()
	}
	if v.CellSize <= 0 {
		v.CellSize = 128
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
	if v.InboundQueue <= 0 {
		v.InboundQueue = 256
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
