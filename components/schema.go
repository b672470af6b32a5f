package components

import (
	"fmt"
	"strconv"

	"github.com/ebisync/ebisync/internal/codec"
)

// Schema is one component's layout as exchanged in the handshake.
type Schema struct {
	Name   string
	Hash   uint64
	Fields []FieldLayout
}

// Schema returns the layouts of every registered component, in wire-id
// order.
// It is safe for concurrent use once r is frozen.
func (r *Registry) Schema() []Schema { return schemaOf(r.codecs()) }

// MessageSchema returns the layouts of every registered message type, in
// wire-id order. It is safe for concurrent use once r is frozen.
func (r *Registry) MessageSchema() []Schema { return schemaOf(r.msgCodecs()) }

func schemaOf(list []*codec.Codec) []Schema {
	out := make([]Schema, len(list))
	for i, c := range list {
		fs := c.Fields()
		out[i] = Schema{Name: c.Name(), Hash: c.SchemaHash(), Fields: make([]FieldLayout, len(fs))}
		for j, f := range fs {
			out[i].Fields[j] = FieldLayout(f)
		}
	}
	return out
}

// MismatchError reports how two registries disagree. Component and Field
// name the first difference found (Field is empty when the component itself
// is missing on one side).
type MismatchError struct {
	Component string // the component or, when Message is set, the message type
	Field     string
	Reason    string
	Message   bool // Component names a message type
}

// Error describes the difference. It is safe for concurrent use.
func (e *MismatchError) Error() string {
	what := "component"
	if e.Message {
		what = "message"
	}
	if e.Field == "" {
		return fmt.Sprintf("schema mismatch: %s %q: %s", what, e.Component, e.Reason)
	}
	return fmt.Sprintf("schema mismatch: %s %q field %q: %s", what, e.Component, e.Field, e.Reason)
}

// Check compares r (the local side) with the remote schema and returns a
// *MismatchError naming the first component and field that differ, or nil
// when both sides register the same components with the same layouts.
// Registration order may differ: components are matched by name.
// It is safe for concurrent use once r is frozen.
func (r *Registry) Check(remote []Schema) error {
	return r.CheckSides(remote, "locally", "on the remote side")
}

// CheckSides is Check with the two sides named in the error's reason, e.g.
// CheckSides(remote, "on the server", "on the client").
// It is safe for concurrent use once r is frozen.
func (r *Registry) CheckSides(remote []Schema, local, peer string) error {
	return checkList(remote, r.codecs(), local, peer, false)
}

// CheckMessages compares r's message types with the remote side's, as
// CheckSides compares components; the *MismatchError it returns has Message
// set. It is safe for concurrent use once r is frozen.
func (r *Registry) CheckMessages(remote []Schema, local, peer string) error {
	return checkList(remote, r.msgCodecs(), local, peer, true)
}

func checkList(remote []Schema, list []*codec.Codec, local, peer string, msg bool) error {
	byName := make(map[string]*codec.Codec, len(list))
	for _, c := range list {
		byName[c.Name()] = c
	}
	seen := make(map[string]bool, len(remote))
	mismatch := func(name, field, reason string) error {
		return &MismatchError{Component: name, Field: field, Reason: reason, Message: msg}
	}
	for _, rs := range remote {
		if seen[rs.Name] {
			return mismatch(rs.Name, "", "listed twice "+peer)
		}
		seen[rs.Name] = true
		c, ok := byName[rs.Name]
		if !ok {
			return mismatch(rs.Name, "", fmt.Sprintf("registered %s but not %s", peer, local))
		}
		if c.SchemaHash() == rs.Hash && len(rs.Fields) == c.NumFields() {
			continue
		}
		mine := c.Fields()
		for i := 0; i < len(mine) || i < len(rs.Fields); i++ {
			switch {
			case i >= len(rs.Fields):
				return mismatch(c.Name(), mine[i].Name, "missing "+peer)
			case i >= len(mine):
				return mismatch(c.Name(), rs.Fields[i].Name, "missing "+local)
			}
			l, o := mine[i], rs.Fields[i]
			switch {
			case l.Name != o.Name:
				return mismatch(c.Name(), l.Name, fmt.Sprintf("field %d is %q %s but %q %s (renamed or reordered)", i, l.Name, local, o.Name, peer))
			case l.Type != o.Type:
				return mismatch(c.Name(), l.Name, fmt.Sprintf("type %s %s but %s %s", l.Type, local, o.Type, peer))
			case l.Quant != o.Quant:
				return mismatch(c.Name(), l.Name, fmt.Sprintf("quantisation step %s %s but %s %s", fmtStep(l.Quant), local, fmtStep(o.Quant), peer))
			}
		}
		return mismatch(c.Name(), "", fmt.Sprintf("schema hash %#x %s but %#x %s", c.SchemaHash(), local, rs.Hash, peer))
	}
	for _, c := range list {
		if !seen[c.Name()] {
			return mismatch(c.Name(), "", fmt.Sprintf("registered %s but not %s", local, peer))
		}
	}
	return nil
}

func fmtStep(s float64) string {
	if s == 0 {
		return "none"
	}
	return strconv.FormatFloat(s, 'g', -1, 64)
}
