package wire

import "fmt"

// ProtocolVersion is the version a Hello carries and a Welcome confirms.
const ProtocolVersion = 5

// Limits every decoder enforces. They bound memory per message, not the
// game: a batch that needs more is split by the server.
const (
	// MaxMessageSize bounds one WebSocket message and one decompressed body.
	MaxMessageSize = 4 << 20
	// MaxNameLen bounds component names, field names, type strings, client
	// names and status messages.
	MaxNameLen = 256
	// MaxComponents bounds the registry size and component ids, and
	// likewise the message types and their ids.
	MaxComponents = 1024
	// MaxFields bounds the field count of one component layout.
	MaxFields = 64
	// MaxValueLen bounds one encoded component value.
	MaxValueLen = 1 << 20
	// MaxItems bounds any list count in a message (subscriptions, section
	// entries).
	MaxItems = 1 << 20
	// MaxNetID bounds network entity ids.
	MaxNetID = 1<<32 - 1
	// MaxErrorLen bounds the message of an Error, which may name a
	// component and a field and say how they differ.
	MaxErrorLen = 4096
)

// WebSocket close status codes the server uses. An Error message carrying
// the same code and the long reason precedes a close with one of the 40xx
// codes, because a close reason is limited to 123 bytes.
const (
	CloseGoingAway      = 1001 // the server is shutting down
	CloseProtocolError  = 4000 // the peer broke this protocol
	CloseSchemaMismatch = 4001 // protocol version or component registry mismatch
	CloseRateLimited    = 4002 // too many messages or abusive behaviour
	CloseTooSlow        = 4003 // a write timed out: the client does not keep up
)

// Kind is the message kind, the low 7 bits of a message's first byte.
type Kind byte

// Valid reports whether k is a known message kind.
func (k Kind) Valid() bool { return k >= KindHello && k <= KindInput }

// String returns the kind's name, e.g. "hello", or "kind(N)" for an unknown
// kind.
func (k Kind) String() string {
	if k.Valid() {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", byte(k))
}

var kindNames = [...]string{
	KindHello:       "hello",
	KindWelcome:     "welcome",
	KindError:       "error",
	KindSubscribe:   "subscribe",
	KindUnsubscribe: "unsubscribe",
	KindInterest:    "interest",
	KindBatch:       "batch",
	KindMutate:      "mutate",
	KindControl:     "control",
	KindPing:        "ping",
	KindPong:        "pong",
	KindMessage:     "message",
	KindInput:       "input",
}

// FlagCompressed is bit 7 of a message's first byte: the body is an lz4 block.
const FlagCompressed byte = 0x80

// Message kinds.
const (
	KindHello       Kind = 1  // client → server, first message
	KindWelcome     Kind = 2  // server → client, reply to Hello
	KindError       Kind = 3  // server → client, before a close
	KindSubscribe   Kind = 4  // client → server
	KindUnsubscribe Kind = 5  // client → server
	KindInterest    Kind = 6  // client → server
	KindBatch       Kind = 7  // server → client
	KindMutate      Kind = 8  // client → server
	KindControl     Kind = 9  // client → server, take/release
	KindPing        Kind = 10 // either way
	KindPong        Kind = 11 // either way, reply to Ping
	KindMessage     Kind = 12 // client → server, since protocol version 3
	KindInput       Kind = 13 // client → server, since protocol version 4
)

// Batch section ops: the first byte of each section of a Batch body.
const (
	OpScopeExit      byte = 1  // reason, count, entity ids
	OpSpawn          byte = 2  // count, (id, gen, ncomp, (comp, full value)…)
	OpUpdateFull     byte = 3  // comp, count, (id, full value)…; adds the component if absent
	OpUpdateDelta    byte = 4  // comp, count, (id, delta value)…
	OpRemove         byte = 5  // comp, count, entity ids: component removed
	OpMutationResult byte = 6  // request id, status, message
	OpControlResult  byte = 7  // request id, result, entity id, gen, holder
	OpMessage        byte = 8  // count, (message id, value length, value)…; since protocol version 3
	OpKeep           byte = 9  // count, entity ids: a resumed session's scope; since protocol version 4
	OpInputAck       byte = 10 // the last input sequence the server applied; since protocol version 4
)

// ScopeReason says why an entity left a client's scope.
type ScopeReason byte

// Scope exit reasons.
const (
	ReasonOutOfRange   ScopeReason = 1 // left the interest radius
	ReasonDespawned    ScopeReason = 2 // destroyed on the server (or lost its Replicated tag)
	ReasonUnsubscribed ScopeReason = 3 // the client unsubscribed
	ReasonFiltered     ScopeReason = 4 // the server's filter hook hid it
)

// Valid reports whether r is a known scope exit reason.
func (r ScopeReason) Valid() bool { return r >= ReasonOutOfRange && r <= ReasonFiltered }

// Status is a mutation result status.
type Status byte

// Mutation statuses.
const (
	StatusOk              Status = 0
	StatusForbidden       Status = 1
	StatusNotFound        Status = 2
	StatusValidationError Status = 3
	StatusRateLimited     Status = 4
	StatusInternalError   Status = 5
)

// Valid reports whether s is a known status.
func (s Status) Valid() bool { return s <= StatusInternalError }

// String returns the status's name, e.g. "ok", or "status(N)" for an
// unknown status.
func (s Status) String() string {
	if s.Valid() {
		return statusNames[s]
	}
	return fmt.Sprintf("status(%d)", byte(s))
}

var statusNames = [...]string{
	StatusOk:              "ok",
	StatusForbidden:       "forbidden",
	StatusNotFound:        "not found",
	StatusValidationError: "validation error",
	StatusRateLimited:     "rate limited",
	StatusInternalError:   "internal error",
}

// ControlOp is the operation of a Control message.
type ControlOp byte

// Control operations.
const (
	ControlTake    ControlOp = 1
	ControlRelease ControlOp = 2
)

// Valid reports whether op is a known control operation.
func (op ControlOp) Valid() bool { return op == ControlTake || op == ControlRelease }

// ControlResult is the outcome of a Control message.
type ControlResult byte

// Control results.
const (
	ControlTaken             ControlResult = 1
	ControlReleased          ControlResult = 2
	ControlAlreadyControlled ControlResult = 3
	ControlNotControlled     ControlResult = 4
	ControlNotFound          ControlResult = 5
	ControlForbidden         ControlResult = 6
	ControlRateLimited       ControlResult = 7 // since protocol version 2
)

// Valid reports whether r is a known control result.
func (r ControlResult) Valid() bool { return r >= ControlTaken && r <= ControlRateLimited }

// FieldDesc describes one field of a component layout in a Hello.
type FieldDesc struct {
	Name  string  // dotted path, e.g. "Pos.X"
	Type  string  // Go-like type string, e.g. "float64", "[4]uint8"
	Quant float64 // quantisation step, 0 when not quantised
}

// ComponentDesc describes one registered component in a Hello.
type ComponentDesc struct {
	Name   string
	Hash   uint64
	Fields []FieldDesc
}

// Hello is the client's first message. Messages describes the registered
// message types as Components describes components.
type Hello struct {
	Version    uint64
	ClientName string
	Components []ComponentDesc
	Messages   []ComponentDesc
	// Resume, when not nil, asks to resume the session the token names.
	Resume *Resume
}

// TokenLen is the length of a resume token.
const TokenLen = 16

// Resume asks the server to resume a session: the client id and token of
// the session's last Welcome, and the server tick of the last batch the
// client applied. Interest and Subs are the client's interest (nil when it
// never set one) and subscriptions as it remembers them: a server that did
// not serve the session's last connection (a gateway taking over another
// gateway's client) starts the resumed session's scope from them.
type Resume struct {
	ClientID uint64
	Token    [TokenLen]byte
	Tick     uint64
	Interest *Interest
	Subs     []Sub
}

// Welcome accepts a Hello. Component ids on the wire are indices into
// Components, the server's registry order.
type Welcome struct {
	Version    uint64
	ClientID   uint64
	TickRate   uint64 // server ticks per second
	Tick       uint64 // the server tick the first batch advances from
	Components []string
	Messages   []string // message type ids on the wire index this list
	// Resumed is set when the server resumed the session the Hello named:
	// the client keeps its mirror, and the first batch carries Keep.
	Resumed bool
	// Token resumes this session (Hello.Resume) after a lost connection.
	Token [TokenLen]byte
}

// Error is sent before the server closes a connection for a reason the
// client should show (schema mismatch, protocol violation).
type Error struct {
	Code    uint64 // the close status code that follows, e.g. CloseSchemaMismatch
	Message string // at most MaxErrorLen bytes of UTF-8
}

// SubKind is what a subscription names.
type SubKind byte

// Subscription kinds.
const (
	SubComponent SubKind = 1 // every in-scope entity's component of this id
	SubEntity    SubKind = 2 // one entity, always in scope, all its components
)

// Valid reports whether k is a known subscription kind.
func (k SubKind) Valid() bool { return k == SubComponent || k == SubEntity }

// Sub is one subscription entry.
type Sub struct {
	Kind SubKind
	ID   uint64 // component id or entity net id
	Gen  uint64 // entity generation (SubEntity only)
}

// Subscribe (and Unsubscribe, same layout) lists subscriptions to add
// (remove).
type Subscribe struct {
	Subs []Sub
}

// InterestMode says how the interest centre is chosen.
type InterestMode byte

// Interest modes.
const (
	InterestGlobal InterestMode = 0 // no radius: everything subscribed
	InterestPoint  InterestMode = 1 // fixed centre X, Y
	InterestFollow InterestMode = 2 // centre follows entity ID/Gen
)

// Valid reports whether m is a known interest mode.
func (m InterestMode) Valid() bool { return m <= InterestFollow }

// Interest sets the client's area of interest.
type Interest struct {
	Mode   InterestMode
	X, Y   float64 // InterestPoint
	ID     uint64  // InterestFollow
	Gen    uint64  // InterestFollow
	Radius float64 // enter radius; leave radius is Radius × the server's hysteresis
}

// Mutate asks the server to set a component of an entity. Value is the
// component's full encoding.
type Mutate struct {
	Request uint64
	ID      uint64
	Gen     uint64
	Comp    uint64
	Value   []byte
}

// Control takes or releases exclusive control of an entity.
type Control struct {
	Request   uint64
	Op        ControlOp
	ID        uint64
	Gen       uint64
	TimeoutMs uint64 // 0: no timeout
	Children  bool   // propagate to children
}

// Message is a client's message to the server: a value of message type ID
// (an index into the Welcome's Messages), in its full encoding. The server
// answers it with a MutationResult for Request.
type Message struct {
	Request uint64
	ID      uint64
	Value   []byte
}

// Input is one step of a client's input stream: a value of message type
// ID (an index into the Welcome's Messages) for entity (Entity, Gen). Seq
// numbers a client's inputs 1, 2, 3, … across every entity and type, and
// across a resumed session.
type Input struct {
	Seq         uint64
	ID          uint64
	Entity, Gen uint64
	Value       []byte
}

// Ping carries an opaque nonce that the Pong echoes.
type Ping struct {
	Nonce uint64
}
