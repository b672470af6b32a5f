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
// # Messages, references and the hierarchy
//
// Besides state, a game sends one-off messages of the types it registered
// with components.RegisterMessage: Send to one client, Broadcast to all,
// SendToViewers to the clients that see an entity. Each goes in the
// client's next batch, after that batch's state, so it may name an entity
// the same batch spawns; it is encoded once however many clients receive
// it. It never reaches a client before the spawn of an entity it names
// that is in (or entering) the client's scope: under a byte budget that
// holds spawns back, the spawns a message needs go with it, ahead of the
// budget's choice. A reference to an entity out of the client's scope
// arrives as Null. A message for a client that disconnects is dropped with
// it. Messages count against the client's byte budget and are never
// dropped while it is connected; a client whose queue passes
// Options.MessageQueueBytes is closed with 4003. Clients send messages of
// types registered FromClient; the handler installed with Handle runs on
// the game goroutine during Tick with the client's identity, and the
// client gets its answer as a status.
//
// # Inputs
//
// A player's own entity steered by messages or mutations answers a round
// trip late. An input stream answers at once: HandleInput installs the step
// the server runs for each input of a message type registered FromClient,
// and the client (netclient.Predict) runs the same step on its mirror as
// it sends the input, then reconciles with the server's state when each
// batch acknowledges inputs. The server applies a client's inputs in order,
// once each, only to entities the client owns or controls, at most
// Options.MaxInputsPerTick per tick; Stats counts them.
//
// A donburi.Entity field of a registered component or message is a
// reference: it travels as the entity's net id and generation, and a
// client sees its own mirror of that entity, or donburi.Null while the
// entity is outside its scope. A client's reference in a mutation or
// message reaches the game as the server's entity (Null when none is
// alive). With components.RegisterTransform, the server replicates
// donburi's transform hierarchy: each tick it writes components.Parent of
// every replicated entity that has a Transform and a Parent from the
// hierarchy, and clients rebuild the tree in their mirrors.
//
// # Sessions and resume
//
// A client's session outlives its connection for Options.ResumeWindow
// (10 s by default). A client that lost its connection (netclient does
// this by itself) reconnects with the session's token and gets it back:
// the same client id, ownership, controls, subscriptions and input
// sequence, and a first batch that carries only what changed while it was
// away. Meanwhile the tick keeps its scope up to date and sends it
// nothing; messages to it are dropped. OnConnect runs when a session
// starts, OnResume when a client resumes it, OnDisconnect when it ends
// (the window passed, the client closed normally or was dropped for what
// it sent, or the server closed). Stats.Clients counts connected clients,
// Stats.Parked the sessions waiting; MaxResumable and ResumeBytes bound
// them.
//
// # Hostile input
//
// Every byte from the network is treated as hostile; docs/SECURITY.md has
// the threat model, every limit with its default, and every answer.
//
// Before the upgrade, a request from another site's page is refused with
// 403 (Options.OriginPatterns lists the sites allowed; clients that send no
// Origin, like netclient in a native game, pass, and so do pages the server
// serves itself), Options.Authenticate may refuse it with 401 or 403 and
// otherwise names the client's Identity for every hook (BearerToken reads a
// token from the Authorization header, or from the access_token query
// parameter, which is how netclient sends it from a browser), and
// MaxConnections, MaxHandshakes and MaxConnectionsPerAddress answer 503 or
// 429. After it, every message is bounded in bytes before anything is
// allocated (ReadLimit, as received and decompressed), decoded in full and
// validated before the World sees it (entity ids must be live, floats in
// interests and mutations finite), and what a client may hold or cost is
// bounded: its queue in bytes (InboundQueueBytes), its entity subscriptions
// (MaxEntitySubscriptions) and their rate (SubscriptionRate), its rescans
// (RescanRate), its requests (MutationRate). An idle client holds no
// compression or read buffers. A peer that breaks the protocol is closed
// with 4000 and a reason, one that floods with 4002, one past the read limit
// with 1009, and a schema mismatch at the handshake with 4001 and a message
// naming the component and field; the server and every other client go on.
// Should handling one client's input panic all the same, that client is
// closed with 1011 and the stack logged at Error. A panic in a game hook
// answers InternalError. Refusals are counted by reason in Stats.Refusals
// and logged at most once per reason per RefusalLogInterval; a peer that
// simply went away is logged at Debug.
//
// Control follows the rules of mutation: DefaultAuthorize lets a client take
// control only of what it owns, and the owner may always end another
// client's hold on its entity (unless the game's Authorize says otherwise).
// A hold nobody uses ends after ControlIdleTimeout.
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
// # Inspector and metrics
//
// Server.Inspector returns an http.Handler for the game's operator: a
// page (embedded, no build step) that follows the server live, the same
// data as JSON, and edits through the mutation path; its access hook
// (InspectorOptions.Authenticate) is required, so it is never open by
// default. With no page open the tick does nothing for it; with one, the
// tick copies a snapshot at most every InspectorOptions.Interval. Stats
// also counts every tick by duration (TickHistogram), the phases' totals
// and every connection's traffic, which package plugin/promsync exports to
// Prometheus, and gives each client's round-trip time (ClientStats.RTT),
// which the server measures off the game goroutine with a Ping every
// Options.PingInterval.
//
// # Scaling out
//
// A game that outgrows one machine keeps its World in one process and
// serves its clients from gateways (docs/SCALING.md). Options.Publish
// hands every tick's changes, by grid cell of Options.PublishCellSize and
// encoded once, to a Publisher (package plugin/natsync publishes them
// over NATS), and Server.Snapshot answers a cell's whole state. NewGateway
// returns a Server that holds no World: a Feed brings it the chunks of
// the cells its clients' interest covers, and it serves them with the
// same protocol, scope, budgets and pacing. A gateway forwards no request
// yet: its clients watch.
//
// # Limits
//
// A server replicates at most 64 component types. donburi's Query cache is
// shared by every World in the process and has no lock: a game that runs a
// server World and client mirror Worlds on different goroutines in one
// process must use a separate donburi.NewQuery per World (the server
// itself uses no donburi queries).
package plugin
