package components

import (
	"fmt"
	"strconv"
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
func (r *Registry) Schema() []Schema {
	out := make([]Schema, len(r.list))
	for i, c := range r.list {
		out[i] = Schema{Name: c.Name(), Hash: c.c.SchemaHash(), Fields: c.Fields()}
	}
	return out
}

// MismatchError reports how two registries disagree. Component and Field
// name the first difference found (Field is empty when the component itself
// is missing on one side).
type MismatchError struct {
	Component string
	Field     string
	Reason    string
}

func (e *MismatchError) Error() string {
	if e.Field == "" {
		return fmt.Sprintf("schema mismatch: component %q: %s", e.Component, e.Reason)
	}
	return fmt.Sprintf("schema mismatch: component %q field %q: %s", e.Component, e.Field, e.Reason)
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
	seen := make(map[string]bool, len(remote))
	for _, rs := range remote {
		if seen[rs.Name] {
			return &MismatchError{Component: rs.Name, Reason: "listed twice " + peer}
		}
		seen[rs.Name] = true
		c, ok := r.byName[rs.Name]
		if !ok {
			return &MismatchError{Component: rs.Name, Reason: fmt.Sprintf("registered %s but not %s", peer, local)}
		}
		if c.c.SchemaHash() == rs.Hash && len(rs.Fields) == c.NumFields() {
			continue
		}
		mine := c.Fields()
		for i := 0; i < len(mine) || i < len(rs.Fields); i++ {
			switch {
			case i >= len(rs.Fields):
				return &MismatchError{Component: c.Name(), Field: mine[i].Name, Reason: "missing " + peer}
			case i >= len(mine):
				return &MismatchError{Component: c.Name(), Field: rs.Fields[i].Name, Reason: "missing " + local}
			}
			l, o := mine[i], rs.Fields[i]
			switch {
			case l.Name != o.Name:
				return &MismatchError{Component: c.Name(), Field: l.Name, Reason: fmt.Sprintf("field %d is %q %s but %q %s (renamed or reordered)", i, l.Name, local, o.Name, peer)}
			case l.Type != o.Type:
				return &MismatchError{Component: c.Name(), Field: l.Name, Reason: fmt.Sprintf("type %s %s but %s %s", l.Type, local, o.Type, peer)}
			case l.Quant != o.Quant:
				return &MismatchError{Component: c.Name(), Field: l.Name, Reason: fmt.Sprintf("quantisation step %s %s but %s %s", fmtStep(l.Quant), local, fmtStep(o.Quant), peer)}
			}
		}
		return &MismatchError{Component: c.Name(), Reason: fmt.Sprintf("schema hash %#x %s but %#x %s", c.c.SchemaHash(), local, rs.Hash, peer)}
	}
	for _, c := range r.list {
		if !seen[c.Name()] {
			return &MismatchError{Component: c.Name(), Reason: fmt.Sprintf("registered %s but not %s", local, peer)}
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
