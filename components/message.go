package components

import (
	"fmt"
	"reflect"

	"github.com/ebisync/ebisync/internal/codec"
	"github.com/ebisync/ebisync/internal/wire"
)

// MessageOptions configures a registered message type. A nil
// *MessageOptions means every field's zero value.
type MessageOptions struct {
	// FromClient lets clients send this message to the server, whose
	// handler decides each one. Without it only the server sends it.
	FromClient bool
}

// MessageType is one registered message type: a one-off event (a hit, a
// chat line, "the match starts") that the server sends to clients or, with
// MessageOptions.FromClient, a client sends to the server. Its values use
// the same field codec as components, donburi.Entity fields included. It
// is immutable after registration and safe for concurrent use.
type MessageType struct {
	c    *codec.Codec
	opts MessageOptions
}

// Name returns the message type's wire name. It is safe for concurrent use.
func (m *MessageType) Name() string { return m.c.Name() }

// Index returns the message type's wire id in its registry. It is safe for
// concurrent use.
func (m *MessageType) Index() int { return m.c.Index() }

// Options returns the message type's options. It is safe for concurrent
// use.
func (m *MessageType) Options() MessageOptions { return m.opts }

// Fields returns the synced fields in wire order. It is safe for concurrent
// use.
func (m *MessageType) Fields() []FieldLayout {
	fs := m.c.Fields()
	out := make([]FieldLayout, len(fs))
	for i, f := range fs {
		out[i] = FieldLayout(f)
	}
	return out
}

// String returns the message type's wire name. It is safe for concurrent
// use.
func (m *MessageType) String() string { return m.c.Name() }

// Message is the typed handle of a message type, as returned by
// RegisterMessage. plugin.Send and netclient.Send take it. It is immutable
// and safe for concurrent use.
type Message[T any] struct {
	mt  *MessageType
	reg *Registry
}

// Type returns the untyped registry entry. It is safe for concurrent use.
func (m *Message[T]) Type() *MessageType { return m.mt }

// Name returns the message type's wire name. It is safe for concurrent use.
func (m *Message[T]) Name() string { return m.mt.Name() }

// Index returns the message type's wire id in its registry. It is safe for
// concurrent use.
func (m *Message[T]) Index() int { return m.mt.Index() }

// Registry returns the registry the handle belongs to. It is safe for
// concurrent use.
func (m *Message[T]) Registry() *Registry { return m.reg }

// String returns the message type's wire name. It is safe for concurrent
// use.
func (m *Message[T]) String() string { return m.mt.Name() }

// RegisterMessage adds message type T to r under the wire name name (its
// own namespace, apart from components) and returns its typed handle.
// Server and client must register the same message types: the handshake
// compares them as it compares components.
//
// It panics, naming the offending field, if name is empty or taken by
// another message type, if T is already registered as a message, if T has
// an unsupported field or more than 64 synced fields, or if r is frozen.
// It is not safe for concurrent use.
func RegisterMessage[T any](r *Registry, name string, opts *MessageOptions) *Message[T] {
	if r.frozen.Load() {
		panic(fmt.Sprintf("ebisync: register message %q: registry is frozen (a server or client is using it)", name))
	}
	if name == "" || len(name) > wire.MaxNameLen {
		panic(fmt.Sprintf("ebisync: register message %q: the wire name must be 1 to %d bytes", name, wire.MaxNameLen))
	}
	typ := reflect.TypeFor[T]()
	for _, m := range r.msgs {
		if m.mt.Name() == name {
			panic(fmt.Sprintf("ebisync: register message %q: the name is already registered", name))
		}
		if m.mt.c.Type() == typ {
			panic(fmt.Sprintf("ebisync: register message %q: Go type %s already registered as %q", name, typ, m.mt.Name()))
		}
	}
	if len(r.msgs) >= wire.MaxComponents {
		panic(fmt.Sprintf("ebisync: register message %q: more than %d message types", name, wire.MaxComponents))
	}
	c, err := codec.Build[T](name, len(r.msgs), nil, codec.Options{})
	if err != nil {
		panic(fmt.Sprintf("ebisync: register message %q (%s): %v", name, typ, err))
	}
	mt := &MessageType{c: c}
	if opts != nil {
		mt.opts = *opts
	}
	h := &Message[T]{mt: mt, reg: r}
	r.msgs = append(r.msgs, h.entry())
	return h
}

// msgEntry is a registry's record of a message type.
type msgEntry struct {
	mt    *MessageType
	typed any // *Message[T]
}

func (m *Message[T]) entry() msgEntry { return msgEntry{mt: m.mt, typed: m} }

// Messages returns the registered message types in wire-id order. It is
// safe for concurrent use once r is frozen.
func (r *Registry) Messages() []*MessageType {
	out := make([]*MessageType, len(r.msgs))
	for i, m := range r.msgs {
		out[i] = m.mt
	}
	return out
}

// LookupMessage returns the typed handle of the message type registered
// under name, and false when there is none or its Go type is not T. It is
// safe for concurrent use once r is frozen.
func LookupMessage[T any](r *Registry, name string) (*Message[T], bool) {
	for _, m := range r.msgs {
		if m.mt.Name() == name {
			h, ok := m.typed.(*Message[T])
			return h, ok
		}
	}
	return nil, false
}

func (r *Registry) codecs() []*codec.Codec {
	out := make([]*codec.Codec, len(r.list))
	for i, c := range r.list {
		out[i] = c.c
	}
	return out
}

func (r *Registry) msgCodecs() []*codec.Codec {
	out := make([]*codec.Codec, len(r.msgs))
	for i, m := range r.msgs {
		out[i] = m.mt.c
	}
	return out
}
