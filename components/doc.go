// Package components is ebisync's registry of synced component types.
//
// A game registers each donburi component type it wants replicated under an
// explicit, stable wire name:
//
//	reg := components.NewRegistry()                 // Owner and Control built in
//	std := components.RegisterStandard(reg)         // Position, Velocity, Name, Health
//	ship := components.Register(reg, "game.ship", Ship, nil)
//
// Registration returns a typed handle, a *Synced[T], as donburi's
// NewComponentType returns a typed component type. Its methods read and
// write values as T (Get, Set, Touch, Lerp), and netclient's typed
// functions take it: netclient.Interpolated(client, e, std.Position, now),
// netclient.Mutate(client, e, ship, value, nil). Lookup finds the handle of a
// component type already registered.
//
// Registration inspects the type once with reflection and builds a field
// codec that later reads and writes component memory directly, without
// reflection or allocation per value. Supported field types are bool, every
// int and uint size, float32, float64, string, []byte, fixed arrays and
// nested structs of those. Pointers, maps, interfaces, funcs, chans and
// slices other than []byte are refused at registration with the offending
// field named. Only exported fields are synced; a field tagged
// `ebisync:"-"` is skipped. Fields that are not synced stay local: the
// receiver keeps its own values of them when a value arrives. A field of
// type donburi.Entity is a reference to another entity: it travels as the
// server's net id and generation, and a client sees its own mirror of that
// entity, or donburi.Null while it is outside the client's scope.
//
// int and uint travel as int64 and uint64, so 32- and 64-bit peers share a
// schema. On a 32-bit peer, a full value that does not fit its int or uint
// field is refused; a delta wraps it modulo 2^32. A []byte field does not
// distinguish nil from empty: an empty one is received as nil.
//
// A float field tagged `ebisync:"q=0.01"` is quantised: it travels as an
// integer number of steps, and the receiver gets round(v/step)*step, so the
// error is at most step/2. Quantised floats also make change detection ignore
// movements smaller than half a step. The integer is clamped to ±2^51
// steps (NaN sends 0), within which a float64 receiver's value maps back to
// exactly the step it was sent as, which deltas rely on. A float32 field
// only has 24 bits of precision: |v/step| must stay below 2^22 for the same
// guarantee.
//
// Values travel in two encodings, described byte by byte in
// docs/PROTOCOL.md: the full encoding (every field) and the delta encoding
// (a change mask, then only the changed fields, numbers as differences from
// the receiver's baseline).
//
// # Concurrency and panics
//
// A Registry is built during initialisation, on one goroutine, and then
// frozen by the server or client that uses it; once frozen, everything that
// reads it (Registry's and Component's methods, a Synced's Name, Index,
// Component, ComponentType, Lerp) is safe for concurrent use. A Synced's Get,
// Set and Touch, and Registry.Touch, use a donburi World and must run on the
// goroutine that owns it. Register, RegisterStandard and Synced.SetLerp
// panic on programmer errors (a duplicate name, an unsupported field, a
// frozen registry), which show at start-up; nothing in this package panics on
// input from the network.
package components
