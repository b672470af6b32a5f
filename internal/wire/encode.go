package wire

import (
	"strings"
	"unicode/utf8"
)

// The Append functions encode one whole uncompressed message, header byte
// included, and append it to dst. They never fail and allocate only when dst
// must grow. They are safe for concurrent use as long as the messages they
// read are not modified concurrently.
//
// An Append function writes ids, counts and floats as given: a caller that
// breaks a limit documented on the message type (an id above MaxNetID, a
// component id not below MaxComponents, a NaN) produces a message that the
// matching Decode function rejects. Strings are the exception: every string is
// made valid UTF-8 (invalid bytes become U+FFFD) and cut at a rune boundary to
// its limit, so a message can never be refused for its text.

// AppendHello appends a Hello message to dst.
func AppendHello(dst []byte, m *Hello) []byte {
	w := Writer{B: dst}
	w.Byte(byte(KindHello))
	w.Uvarint(m.Version)
	writeText(&w, m.ClientName, MaxNameLen)
	appendDescs(&w, m.Components)
	appendDescs(&w, m.Messages)
	if m.Resume == nil {
		w.Byte(0)
	} else {
		w.Byte(1)
		w.Uvarint(m.Resume.ClientID)
		w.B = append(w.B, m.Resume.Token[:]...)
		w.Uvarint(m.Resume.Tick)
		if in := m.Resume.Interest; in == nil {
			w.Byte(0)
		} else {
			w.Byte(1)
			appendInterestBody(&w, in)
		}
		appendSubs(&w, m.Resume.Subs)
	}
	return w.B
}

func appendDescs(w *Writer, descs []ComponentDesc) {
	w.Uvarint(uint64(len(descs)))
	for i := range descs {
		c := &descs[i]
		writeText(w, c.Name, MaxNameLen)
		w.U64(c.Hash)
		w.Uvarint(uint64(len(c.Fields)))
		for j := range c.Fields {
			f := &c.Fields[j]
			writeText(w, f.Name, MaxNameLen)
			writeText(w, f.Type, MaxNameLen)
			w.F64(f.Quant)
		}
	}
}

// AppendWelcome appends a Welcome message to dst.
func AppendWelcome(dst []byte, m *Welcome) []byte {
	w := Writer{B: dst}
	w.Byte(byte(KindWelcome))
	w.Uvarint(m.Version)
	w.Uvarint(m.ClientID)
	w.Uvarint(m.TickRate)
	w.Uvarint(m.Tick)
	w.Uvarint(uint64(len(m.Components)))
	for _, name := range m.Components {
		writeText(&w, name, MaxNameLen)
	}
	w.Uvarint(uint64(len(m.Messages)))
	for _, name := range m.Messages {
		writeText(&w, name, MaxNameLen)
	}
	w.Bool(m.Resumed)
	w.B = append(w.B, m.Token[:]...)
	return w.B
}

// AppendError appends an Error message to dst. A Message longer than
// MaxErrorLen bytes is cut.
func AppendError(dst []byte, m *Error) []byte {
	w := Writer{B: dst}
	w.Byte(byte(KindError))
	w.Uvarint(m.Code)
	writeText(&w, m.Message, MaxErrorLen)
	return w.B
}

// AppendSubscribe appends a Subscribe or Unsubscribe message to dst. kind
// must be KindSubscribe or KindUnsubscribe; it is written as given.
func AppendSubscribe(dst []byte, kind Kind, m *Subscribe) []byte {
	w := Writer{B: dst}
	w.Byte(byte(kind))
	appendSubs(&w, m.Subs)
	return w.B
}

func appendSubs(w *Writer, subs []Sub) {
	w.Uvarint(uint64(len(subs)))
	for _, s := range subs {
		w.Byte(byte(s.Kind))
		w.Uvarint(s.ID)
		if s.Kind == SubEntity {
			w.Uvarint(s.Gen)
		}
	}
}

// AppendInterest appends an Interest message to dst. Only the fields of
// m.Mode are written: X and Y for InterestPoint, ID and Gen for
// InterestFollow; Radius always.
func AppendInterest(dst []byte, m *Interest) []byte {
	w := Writer{B: dst}
	w.Byte(byte(KindInterest))
	appendInterestBody(&w, m)
	return w.B
}

func appendInterestBody(w *Writer, m *Interest) {
	w.Byte(byte(m.Mode))
	switch m.Mode {
	case InterestPoint:
		w.F64(m.X)
		w.F64(m.Y)
	case InterestFollow:
		w.Uvarint(m.ID)
		w.Uvarint(m.Gen)
	}
	w.F64(m.Radius)
}

// AppendMutate appends a Mutate message to dst.
func AppendMutate(dst []byte, m *Mutate) []byte {
	w := Writer{B: dst}
	w.Byte(byte(KindMutate))
	w.Uvarint(m.Request)
	w.Uvarint(m.ID)
	w.Uvarint(m.Gen)
	w.Uvarint(m.Comp)
	w.Bytes(m.Value)
	return w.B
}

// AppendMessage appends a client's Message to dst.
func AppendMessage(dst []byte, m *Message) []byte {
	w := Writer{B: dst}
	w.Byte(byte(KindMessage))
	w.Uvarint(m.Request)
	w.Uvarint(m.ID)
	w.Bytes(m.Value)
	return w.B
}

// AppendInput appends a client's Input to dst.
func AppendInput(dst []byte, m *Input) []byte {
	w := Writer{B: dst}
	w.Byte(byte(KindInput))
	w.Uvarint(m.Seq)
	w.Uvarint(m.ID)
	w.Uvarint(m.Entity)
	w.Uvarint(m.Gen)
	w.Bytes(m.Value)
	return w.B
}

// AppendControl appends a Control message to dst.
func AppendControl(dst []byte, m *Control) []byte {
	w := Writer{B: dst}
	w.Byte(byte(KindControl))
	w.Uvarint(m.Request)
	w.Byte(byte(m.Op))
	w.Uvarint(m.ID)
	w.Uvarint(m.Gen)
	w.Uvarint(m.TimeoutMs)
	w.Bool(m.Children)
	return w.B
}

// AppendPing appends a Ping or Pong message to dst. kind must be KindPing or
// KindPong; it is written as given.
func AppendPing(dst []byte, kind Kind, m *Ping) []byte {
	w := Writer{B: dst}
	w.Byte(byte(kind))
	w.Uvarint(m.Nonce)
	return w.B
}

// writeText writes s as a length-prefixed string of valid UTF-8 of at most
// max bytes. It allocates only when s is not valid UTF-8.
// Text appends s as a string of at most max bytes of valid UTF-8: invalid
// bytes become U+FFFD, and a longer s is cut at a rune boundary.
func (w *Writer) Text(s string, max int) { writeText(w, s, max) }

func writeText(w *Writer, s string, max int) {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	if len(s) > max {
		i := max
		for i > 0 && !utf8.RuneStart(s[i]) {
			i--
		}
		s = s[:i]
	}
	w.String(s)
}
