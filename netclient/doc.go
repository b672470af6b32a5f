// Package netclient is ebisync's client: it connects to an ebisync server
// over WebSocket and mirrors the server's replicated entities into a local
// donburi world that the game renders.
//
//	reg := components.NewRegistry()
//	components.RegisterStandard(reg) // the same registrations as the server
//	c, err := netclient.Dial(ctx, "ws://localhost:8080/sync", reg, nil)
//	if err != nil { … }
//	defer c.Close()
//	c.SubscribeAll()
//	// each frame, on the game goroutine:
//	if err := c.Update(); err != nil { … } // closed for good
//
// # Goroutines
//
// A Client runs a reader goroutine (which also supervises reconnects) and
// a writer goroutine per connection. The reader decodes batches off the
// socket and queues them; it never touches the world. Everything that
// touches the mirror world happens on the game goroutine, the one that
// calls Update: applying batches, the OnSpawn/OnDespawn/OnChange hooks,
// resolving mutation and control results. Methods that read or write the
// mirror (Update, System, Entity, NetID, Mutate, TakeControl,
// ReleaseControl, Interpolated, InterpolatedInto) must be called on that
// goroutine; the others (Subscribe and friends, the interest setters,
// Stats, Connected, URL, ClientID, ServerTick, Registry, World, Err, Close)
// are safe for concurrent use, and so are the error, status and reason
// types, which are plain values. Requests sent from the game goroutine go through a
// bounded queue to the writer, so they never block the game: when the
// queue is full a mutation resolves at once with ErrSendQueueFull.
//
// If the game stops calling Update, the reader stops reading once
// Options.MaxPendingBatches batches wait (backpressure: TCP pushes back on
// the server, which eventually drops the client; it reconnects when Update
// runs again).
//
// # The mirror world
//
// Each server entity in the client's scope is one mirror entity carrying
// components.Replicated (NetID and Gen name the server entity) and the
// components the server sent. The client writes values by copying into
// donburi's storage, never by handing it a pointer (donburi's Set and Add
// keep the pointer, which would alias). It keeps, per entity and
// component, the last value the server sent (the confirmed value); deltas
// apply to it, and the world receives a copy. So the game may write mirror
// components (a local prediction, say): the next server update overwrites
// them, and deltas stay correct.
//
// The client refers to mirror entities by donburi.Entity and checks
// World.Valid before each use. If the game removes a mirror entity, the
// client recreates it (firing OnSpawn) on the next update from the server;
// if the game removes a mirror component, the next update adds it back.
// Game code should likewise keep donburi.Entity values, not *donburi.Entry:
// donburi reuses one Entry object per entity id, which silently points at a
// new entity once the id is reused.
//
// The client only ever calls World.Create with components.Replicated alone
// and adds the other components afterwards: donburi v1.15.8 panics in
// Create when the archetype's first entity arrived there by AddComponent or
// RemoveComponent (its entity counter starts off by one), and mirror
// entities move between archetypes all the time. For the same reason game
// code should not Create entities with Replicated plus other components in
// the mirror world.
//
// After a reconnect that does not resume the session (see Reconnecting)
// the client clears the mirror (OnDespawn with ExitResync) and the server
// sends every entity in scope again, as to a new client. A connection
// that delivered something the client cannot decode or apply (a desync
// cannot be repaired in place) is closed with code 4000 and replaced the
// same way; Stats.DecodeErrors counts these.
// The client never panics on input from the network.
//
// # Queries, and a server and a client in one process
//
// Package netclient itself never uses donburi queries. donburi keeps a
// query's per-world cache in a map without a lock, and the query behind
// ComponentType.Each, Iter and First is a single package-level one shared
// by every world in the process. A program that runs an ebisync server
// (its world ticked on one goroutine) and a client (its mirror updated on
// another) in one process must therefore not call ct.Each(world, …) on
// both worlds: make one query per world with donburi.NewQuery and use each
// only on its own world's goroutine.
//
// # Mutations and control
//
// Mutate and TakeControl return a buffered channel that receives exactly
// one result: the server's answer, during a later Update, or a client-side
// failure (not connected, queue full, connection lost before the answer,
// Close). No channel is left waiting. An optimistic mutation shows its
// value in the mirror at once and reverts to the server's value if the
// server refuses it.
//
// # Prediction
//
// Predict returns a Predictor for an input stream (plugin.HandleInput on
// the server): Input sends one input for an entity the player owns or
// controls and runs the same step on the mirror at once. After each batch
// the client rewinds the predicted entities to the server's values,
// replays the inputs the server has not acknowledged, and counts what
// changed as a correction (Stats.PredictionCorrections). Interpolated
// returns a predicted entity's predicted value, not a delayed one, with a
// correction's offset decaying over SmoothingTime instead of a jump.
//
// # Messages, references, the hierarchy and ownership
//
// OnMessage installs a handler for one message type (registered with
// components.RegisterMessage on both sides); handlers run during Update,
// in the order the server sent the messages, after the batch's state is
// applied. PublishMessages delivers them as donburi features/events events
// instead. Send sends a message the type allows clients to send and
// resolves like a mutation.
//
// A donburi.Entity field of a component or message holds a mirror entity:
// the mirror of the referenced server entity while it is in the client's
// scope, donburi.Null otherwise. When the target enters or leaves the
// scope, the references to it are written again and OnChange fires, so a
// reference is never an entity that is not alive in the mirror. A mirror
// entity in a mutation or message reaches the server as the entity it
// mirrors. With components.RegisterTransform, the mirror links entities
// into donburi's transform hierarchy as the server's Parent components
// say (a child whose parent is outside the scope is a root), so
// transform.WorldPosition agrees with the server. Owns and Owned name the
// mirror entities whose components.Owner is this client.
//
// # Interpolation
//
// For components registered with components.Options.Interpolate (the
// standard Position is), the client keeps the last few server values per
// entity. Interpolated returns the value at render time now −
// Options.InterpolationDelay, between the two server values around it,
// clamped to the newest (never extrapolated). Render time follows server
// ticks, anchored to the earliest batch arrivals and slewed smoothly, so
// arrival jitter does not make motion stutter. The world itself always
// holds the newest server value.
//
// # In a browser
//
// The package builds for GOOS=js GOARCH=wasm and dials through the
// browser's WebSocket API. A page cannot set headers on a WebSocket, so
// Options.Token travels as the URL's query parameter TokenParam
// ("access_token"), which plugin.BearerToken reads as well as the header;
// the browser also sends the page's Origin (a page served by the game's
// own server passes the server's Origin check) and the cookies of the
// server's site. Options.HTTPHeader and HTTPClient are not used there. A
// browser does not tell a page why a WebSocket failed to open, so a
// refusal before the upgrade (HTTP 401, 403, 429, 503) is reported like an
// unreachable server (ErrUnreachable), not as an *HTTPError.
//
// # Reconnecting
//
// When a connection drops, the client reconnects with exponential backoff
// and full jitter (Options.MinBackoff, MaxBackoff) and asks to resume its
// session with the token of its last Welcome. Within the server's resume
// window (plugin.Options.ResumeWindow, 10 s by default) it keeps its
// client id, ownership, controls and subscriptions, and its mirror: the
// server sends only what changed while it was away, and the entities that
// left its scope meanwhile exit with ExitAway. Otherwise it gets a fresh
// session: the mirror is cleared (ExitResync) and the server resends
// everything in scope. The Hello that asks to resume carries the
// remembered interest and subscriptions, so that a server resuming a
// session it did not serve (another gateway's) starts its scope from
// them; after the Welcome the client sends them again either way. A
// resumed session's server may send an entity the client kept as a spawn
// at the same generation: the client refreshes that mirror entity in
// place (the same donburi entity, no OnSpawn or OnDespawn, OnChange for
// each component that changed, was added or was removed). Requests in
// flight when the connection dropped resolve with ErrDisconnected, and
// server messages sent while it was away are lost. Stats.Resumes counts
// resumed sessions. It does not reconnect after Close, with
// Options.NoReconnect, or after a permanent refusal (schema or
// protocol-version mismatch, a refused handshake): Update then returns
// the reason.
//
// Options.URLs gives further addresses of the same game, such as other
// gateways in front of one world. Dial connects to the first of its url
// and Options.URLs that answers. When the connection drops, each
// reconnect attempt tries them all in turn, starting at the URL that last
// worked, with the backoff between such rounds; the client asks to resume
// at whichever URL answers, and a server that does not know its session
// gives it a fresh one. Client.URL names the URL in use.
package netclient
