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
func (r *Registry) Schema() []Schema {
	out := make([]Schema, len(r.list))
	for i, c := range r.list {
		out[i] = Schema{Name: c.name, Hash: c.hash, Fields: c.Fields()}
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
func (r *Registry) Check(remote []Schema) error {
	seen := make(map[string]bool, len(remote))
	for _, rs := range remote {
		if seen[rs.Name] {
			return &MismatchError{Component: rs.Name, Reason: "listed twice by the remote side"}
		}
		seen[rs.Name] = true
		c, ok := r.byName[rs.Name]
		if !ok {
			return &MismatchError{Component: rs.Name, Reason: "registered on the remote side but not locally"}
		}
		if c.hash == rs.Hash && len(rs.Fields) == len(c.fields) {
			continue
		}
		local := c.Fields()
		for i := 0; i < len(local) || i < len(rs.Fields); i++ {
			switch {
			case i >= len(rs.Fields):
				return &MismatchError{Component: c.name, Field: local[i].Name, Reason: "missing on the remote side"}
			case i >= len(local):
				return &MismatchError{Component: c.name, Field: rs.Fields[i].Name, Reason: "missing locally"}
			}
			l, o := local[i], rs.Fields[i]
			switch {
			case l.Name != o.Name:
				return &MismatchError{Component: c.name, Field: l.Name, Reason: fmt.Sprintf("field %d is %q locally but %q remotely (renamed or reordered)", i, l.Name, o.Name)}
			case l.Type != o.Type:
				return &MismatchError{Component: c.name, Field: l.Name, Reason: fmt.Sprintf("type %s locally but %s remotely", l.Type, o.Type)}
			case l.Quant != o.Quant:
				return &MismatchError{Component: c.name, Field: l.Name, Reason: fmt.Sprintf("quantisation step %s locally but %s remotely", fmtStep(l.Quant), fmtStep(o.Quant))}
			}
		}
		return &MismatchError{Component: c.name, Reason: fmt.Sprintf("schema hash %#x locally but %#x remotely", c.hash, rs.Hash)}
	}
	for _, c := range r.list {
		if !seen[c.name] {
			return &MismatchError{Component: c.name, Reason: "registered locally but not on the remote side"}
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
