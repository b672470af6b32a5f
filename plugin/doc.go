// Package plugin is the ebisync server: it replicates a donburi World to
// WebSocket clients, each of which keeps a mirror of the part it may see.
//
// A game registers the components it wants synced (package components),
// makes a Server over its World, mounts it on its HTTP mux and calls Tick
// once per game tick after its simulation:
//
//	reg := components.NewRegistry()
//	components.RegisterStandard(reg)
//	srv := plugin.New(world, reg, &plugin.Options{TickRate: 30, DefaultRadius: 600})
//	mux.Handle("/sync", srv)
//	ecs.AddSystem(srv.System) // or srv.Tick() from a plain loop
//
// Entities opt in with the components.Replicated tag. Each tick the server
// detects what changed (a shadow copy per component, compared field by
// field; quantised floats in steps), works out each client's scope (its
// subscriptions, an interest radius with hysteresis, the Filter hook) and
// sends each client one batch: spawns with full values for entities
// entering its scope, field deltas against what that client was last sent,
// component removals and scope exits. A change is encoded once per version
// however many clients receive it; batches are lz4-compressed when that
// shrinks them (a connection whose small batches keep not shrinking stops
// trying on most of them). docs/ARCHITECTURE.md walks through a tick.
//
// # Goroutines
//
// Everything that touches the World runs inside Tick, on the caller's
// goroutine; so do the game hooks (Authorize, Validate, Filter, Position,
// OnConnect, OnDisconnect) and the methods documented as game-goroutine
// only (FollowEntity, SetInterest, SetGlobalInterest). Each connection has a
// reader and a writer goroutine that talk to the tick through bounded
// queues; Tick queues its batches for a short-lived dispatch goroutine that
// wakes the writers, so the game thread does not pay a wake-up per client.
// A slow client is sent nothing while its writer is busy (its next
// batch carries everything since, so memory per client stays bounded), has
// its send rate lowered, and is dropped with close code 4003 when a write
// exceeds Options.WriteTimeout. ServeHTTP, Stats, ReadStats, CurrentTick
// and Close are safe for concurrent use.
//
// # Mutations and control
//
// Clients may ask to change components registered ClientWritable. The
// request passes a per-connection token bucket (RateLimited), is decoded
// and bounded (ValidationError), checked by Authorize (Forbidden) and
// Validate (ValidationError), applied at the start of the next tick in
// arrival order, and answered in that tick's batch. Clients may take
// exclusive control of an entity (optionally with its donburi transform
// children, optionally with a timeout), through the same token bucket
// (wire result "rate limited" when over it); the holder is published in the
// built-in components.Control component and released on request, timeout,
// despawn or disconnect. RequireControl is an Authorize that admits only
// the controller.
//
// # Hostile input
//
// Everything read from a connection is bounded before it is allocated. A
// peer that breaks the protocol is closed with code 4000 and a reason, one
// that floods is closed with 4002, and a schema mismatch at the handshake
// is refused with 4001 and a message naming the component and field; the
// server and every other client go on. A peer that simply went away is
// logged at Debug. A panic in a game hook answers InternalError and is
// logged; the tick goes on.
//
// # Cost
//
// A tick's cost follows what changed. An unchanged entity costs a compare
// of its values with the server's copies (a few loads when every compared
// component is plain, with no strings, slices or Marshaler, at most 64
// bytes and without MaxRate; a full check otherwise, so register larger or
// non-plain components Explicit and Touch them); a changed one, its delta encoded
// once plus a few comparisons and a write per client that sees it; a
// client, one batch per tick it is sent something. Stats reports traffic
// (ReadStats does too, without allocating, to poll every frame), and
// Stats().Phases splits the last tick's time (inbound, detect, scopes,
// send) to show which of those dominates. benchmarks/README.md has
// measured figures.
//
// # Limits
//
// A server replicates at most 64 component types. donburi's Query cache is
// shared by every World in the process and has no lock: a game that runs a
// server World and client mirror Worlds on different goroutines in one
// process must use a separate donburi.NewQuery per World (the server
// itself uses no donburi queries).
package plugin
