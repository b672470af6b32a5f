// Package ebisync holds what an ebisync server and its clients share beyond
// component types: the Status of a mutation.
//
// ebisync replicates a donburi ECS World from a server to WebSocket
// clients, each of which keeps a mirror of the part it may see:
//
//   - package components registers the component types both sides sync,
//     under stable wire names, and returns a typed handle for each;
//   - package plugin is the server: a Tick that detects changes and sends
//     each client one lz4-compressed batch, an http.Handler for the
//     WebSocket endpoint, and hooks that authorise what clients ask;
//   - package netclient is the client: it dials, mirrors entities into a
//     local World, interpolates them for rendering and sends mutations;
//   - package netclient/ebitensync is the glue to an Ebitengine game loop.
//
// The README shows a whole game; docs/PROTOCOL.md describes the bytes on
// the wire.
package ebisync

import "strconv"

// Status is the outcome of a client's mutation: the server's answer, as
// counted in plugin.Stats.Mutations and delivered in
// netclient.MutationResult, or NoReply when the client resolved the request
// itself. Its String and MarshalText give the same names on both sides. A
// Status is a plain value, safe for concurrent use.
type Status uint8

// Mutation statuses. Their values are the bytes of docs/PROTOCOL.md's
// MutationResult, except NoReply, which never travels.
const (
	Ok              Status = 0
	Forbidden       Status = 1 // the server's Authorize refused it, or the component is not ClientWritable
	NotFound        Status = 2 // no such entity (or generation), or it lacks the component
	ValidationError Status = 3 // malformed, non-finite, or refused by the server's Validate
	RateLimited     Status = 4 // over the connection's MutationRate
	InternalError   Status = 5 // a server hook panicked
	// NoReply means the client resolved the request itself: it could not be
	// sent, or the connection dropped before the answer (the server may
	// then have applied it).
	NoReply Status = 255
)

var statusNames = [...]string{
	Ok:              "Ok",
	Forbidden:       "Forbidden",
	NotFound:        "NotFound",
	ValidationError: "ValidationError",
	RateLimited:     "RateLimited",
	InternalError:   "InternalError",
}

// String returns the status's name, as written in the constants: "Ok",
// "Forbidden", …, "NoReply"; "Status(N)" for any other value.
func (s Status) String() string {
	if int(s) < len(statusNames) {
		return statusNames[s]
	}
	if s == NoReply {
		return "NoReply"
	}
	return "Status(" + strconv.Itoa(int(s)) + ")"
}

// MarshalText returns String's name, so that a map keyed by Status encodes
// to JSON with names as keys.
func (s Status) MarshalText() ([]byte, error) { return []byte(s.String()), nil }
