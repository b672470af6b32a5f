package wire

import (
	"fmt"
	"math"
)

// The Decode functions decode the body of one message: the bytes after the
// header byte, as returned by Open. They check every length and count against
// the limits of this package and against the bytes that remain before they
// allocate, reject unknown enum values, non-finite floats and trailing bytes,
// and never panic. Every error they return wraps ErrTruncated, ErrOverflow,
// ErrTooLarge or ErrMalformed. They are safe for concurrent use.
//
// Strings are copied; Mutate.Value aliases body.

// Smallest encodings of list elements, for Reader.Count.
const (
	minComponentDescSize = 1 + 8 + 1 // name length, hash, field count
	minFieldDescSize     = 1 + 1 + 8 // name length, type length, quant
	minSubSize           = 1 + 1     // kind, id
)

// DecodeHello decodes the body of a Hello message. Each FieldDesc.Quant must
// be finite and not negative.
func DecodeHello(body []byte) (Hello, error) {
	r := Reader{b: body}
	var m Hello
	m.Version = r.Uvarint()
	m.ClientName = r.TextMax(MaxNameLen, "client name")
	m.Components = readDescs(&r, "components")
	m.Messages = readDescs(&r, "messages")
	if r.Bool() {
		m.Resume = &Resume{ClientID: r.Uvarint()}
		copy(m.Resume.Token[:], r.Raw(TokenLen))
		m.Resume.Tick = r.Uvarint()
		if r.Bool() {
			in := readInterest(&r)
			m.Resume.Interest = &in
		}
		m.Resume.Subs = readSubs(&r, MaxItems)
	}
	if err := r.End(); err != nil {
		return Hello{}, fmt.Errorf("failed to decode hello: %w", err)
	}
	return m, nil
}

func readDescs(r *Reader, what string) []ComponentDesc {
	var descs []ComponentDesc
	if n := r.Count(MaxComponents, minComponentDescSize, what); n > 0 {
		descs = make([]ComponentDesc, n)
	}
	for i := range descs {
		if r.err != nil {
			break
		}
		c := &descs[i]
		c.Name = r.TextMax(MaxNameLen, "name")
		c.Hash = r.U64()
		if n := r.Count(MaxFields, minFieldDescSize, "fields"); n > 0 {
			c.Fields = make([]FieldDesc, n)
		}
		for j := range c.Fields {
			f := &c.Fields[j]
			f.Name = r.TextMax(MaxNameLen, "field name")
			f.Type = r.TextMax(MaxNameLen, "field type")
			f.Quant = r.F64()
			if r.err == nil && !(f.Quant >= 0 && f.Quant <= math.MaxFloat64) {
				r.Failf(ErrMalformed, "quantisation step %v of field %q", f.Quant, f.Name)
			}
		}
	}
	return descs
}

// DecodeWelcome decodes the body of a Welcome message.
func DecodeWelcome(body []byte) (Welcome, error) {
	r := Reader{b: body}
	var m Welcome
	m.Version = r.Uvarint()
	m.ClientID = r.Uvarint()
	m.TickRate = r.Uvarint()
	m.Tick = r.Uvarint()
	if n := r.Count(MaxComponents, 1, "components"); n > 0 {
		m.Components = make([]string, n)
	}
	for i := range m.Components {
		m.Components[i] = r.TextMax(MaxNameLen, "component name")
	}
	if n := r.Count(MaxComponents, 1, "messages"); n > 0 {
		m.Messages = make([]string, n)
	}
	for i := range m.Messages {
		m.Messages[i] = r.TextMax(MaxNameLen, "message name")
	}
	m.Resumed = r.Bool()
	copy(m.Token[:], r.Raw(TokenLen))
	if err := r.End(); err != nil {
		return Welcome{}, fmt.Errorf("failed to decode welcome: %w", err)
	}
	return m, nil
}

// DecodeError decodes the body of an Error message.
func DecodeError(body []byte) (Error, error) {
	r := Reader{b: body}
	var m Error
	m.Code = r.Uvarint()
	m.Message = r.TextMax(MaxErrorLen, "error message")
	if err := r.End(); err != nil {
		return Error{}, fmt.Errorf("failed to decode error: %w", err)
	}
	return m, nil
}

// DecodeSubscribe decodes the body of a Subscribe or Unsubscribe message.
// A SubComponent id must be below MaxComponents, a SubEntity id at most
// MaxNetID.
func DecodeSubscribe(body []byte) (Subscribe, error) {
	return DecodeSubscribeMax(body, MaxItems)
}

// DecodeSubscribeMax is DecodeSubscribe with at most maxItems entries (at
// most MaxItems): a longer list fails with ErrTooLarge before the entries
// are allocated.
func DecodeSubscribeMax(body []byte, maxItems int) (Subscribe, error) {
	r := Reader{b: body}
	m := Subscribe{Subs: readSubs(&r, maxItems)}
	if err := r.End(); err != nil {
		return Subscribe{}, fmt.Errorf("failed to decode subscribe: %w", err)
	}
	return m, nil
}

// readSubs reads a count and at most min(maxItems, MaxItems) subscriptions.
func readSubs(r *Reader, maxItems int) []Sub {
	var subs []Sub
	if n := r.Count(min(maxItems, MaxItems), minSubSize, "subscriptions"); n > 0 {
		subs = make([]Sub, n)
	}
	for i := range subs {
		s := &subs[i]
		s.Kind = SubKind(r.Byte())
		switch {
		case r.err != nil:
		case s.Kind == SubComponent:
			s.ID = r.UvarintMax(MaxComponents-1, "component id")
		case s.Kind == SubEntity:
			s.ID = r.UvarintMax(MaxNetID, "entity id")
			s.Gen = r.Uvarint()
		default:
			r.Failf(ErrMalformed, "subscription kind %d", s.Kind)
		}
	}
	return subs
}

// DecodeInterest decodes the body of an Interest message. X, Y and Radius
// must be finite and Radius not negative.
func DecodeInterest(body []byte) (Interest, error) {
	r := Reader{b: body}
	m := readInterest(&r)
	if err := r.End(); err != nil {
		return Interest{}, fmt.Errorf("failed to decode interest: %w", err)
	}
	return m, nil
}

func readInterest(r *Reader) Interest {
	var m Interest
	m.Mode = InterestMode(r.Byte())
	switch {
	case r.err != nil:
	case m.Mode == InterestGlobal:
	case m.Mode == InterestPoint:
		m.X = r.F64()
		m.Y = r.F64()
	case m.Mode == InterestFollow:
		m.ID = r.UvarintMax(MaxNetID, "entity id")
		m.Gen = r.Uvarint()
	default:
		r.Failf(ErrMalformed, "interest mode %d", m.Mode)
	}
	m.Radius = r.F64()
	if r.err == nil {
		if !finite(m.X) || !finite(m.Y) {
			r.Failf(ErrMalformed, "interest centre (%v, %v)", m.X, m.Y)
		} else if !finite(m.Radius) || m.Radius < 0 {
			r.Failf(ErrMalformed, "interest radius %v", m.Radius)
		}
	}
	return m
}

// DecodeMutate decodes the body of a Mutate message. The returned Value
// aliases body.
func DecodeMutate(body []byte) (Mutate, error) {
	r := Reader{b: body}
	var m Mutate
	m.Request = r.Uvarint()
	m.ID = r.UvarintMax(MaxNetID, "entity id")
	m.Gen = r.Uvarint()
	m.Comp = r.UvarintMax(MaxComponents-1, "component id")
	m.Value = r.BytesMax(MaxValueLen, "value")
	if err := r.End(); err != nil {
		return Mutate{}, fmt.Errorf("failed to decode mutate: %w", err)
	}
	return m, nil
}

// DecodeMessage decodes the body of a client's Message. The returned Value
// aliases body.
func DecodeMessage(body []byte) (Message, error) {
	r := Reader{b: body}
	var m Message
	m.Request = r.Uvarint()
	m.ID = r.UvarintMax(MaxComponents-1, "message id")
	m.Value = r.BytesMax(MaxValueLen, "value")
	if err := r.End(); err != nil {
		return Message{}, fmt.Errorf("failed to decode message: %w", err)
	}
	return m, nil
}

// DecodeInput decodes the body of a client's Input. The returned Value
// aliases body.
func DecodeInput(body []byte) (Input, error) {
	r := Reader{b: body}
	var m Input
	m.Seq = r.Uvarint()
	m.ID = r.UvarintMax(MaxComponents-1, "message id")
	m.Entity = r.UvarintMax(MaxNetID, "entity id")
	m.Gen = r.Uvarint()
	m.Value = r.BytesMax(MaxValueLen, "value")
	if err := r.End(); err != nil {
		return Input{}, fmt.Errorf("failed to decode input: %w", err)
	}
	return m, nil
}

// DecodeControl decodes the body of a Control message.
func DecodeControl(body []byte) (Control, error) {
	r := Reader{b: body}
	var m Control
	m.Request = r.Uvarint()
	m.Op = ControlOp(r.Byte())
	if r.err == nil && !m.Op.Valid() {
		r.Failf(ErrMalformed, "control op %d", m.Op)
	}
	m.ID = r.UvarintMax(MaxNetID, "entity id")
	m.Gen = r.Uvarint()
	m.TimeoutMs = r.Uvarint()
	m.Children = r.Bool()
	if err := r.End(); err != nil {
		return Control{}, fmt.Errorf("failed to decode control: %w", err)
	}
	return m, nil
}

// DecodePing decodes the body of a Ping or Pong message.
func DecodePing(body []byte) (Ping, error) {
	r := Reader{b: body}
	var m Ping
	m.Nonce = r.Uvarint()
	if err := r.End(); err != nil {
		return Ping{}, fmt.Errorf("failed to decode ping: %w", err)
	}
	return m, nil
}

func finite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }
