package plugin

import (
	"github.com/ebisync/ebisync"

	"sync/atomic"
	"time"

	"github.com/ebisync/ebisync/internal/wire"
)

type serverStats struct {
	ticks, batches, skipped atomic.Uint64
	rescans                 atomic.Uint64
	connects                atomic.Uint64
	// Batch bytes of connections that are gone; those of open ones are
	// counted per connection (so writers never share a counter) and
	// added here, under Server.mu, when the connection is removed.
	rawBytes, wireBytes uint64
	tickNanos           atomic.Int64
	phases              [4]atomic.Int64 // of the last tick, as in TickPhases
	entities            atomic.Int64
	clients             atomic.Int64
	subscriptions       atomic.Int64
	clientState         atomic.Int64
	mutations           [wire.StatusInternalError + 1]atomic.Uint64
	gameMsgsIn          atomic.Uint64
	gameMsgsOut         atomic.Uint64
	inputsApplied       atomic.Uint64 // input.go
	inputsRefused       atomic.Uint64
	inputsDuplicate     atomic.Uint64
	inputsLate          atomic.Uint64
	inputsDropped       atomic.Uint64
	resumes             atomic.Uint64
	resumeRefused       atomic.Uint64
	parked              atomic.Int64
	remote              [3]atomic.Int64 // gateways, remote clients, remote parked (remote.go)
	totals              tickTotals      // over every tick (tickstats.go)
	gone                Traffic         // of the connections that ended; under Server.mu
}

// Stats is a snapshot of a server's counters.
type Stats struct {
	Ticks         uint64        // ticks run
	TickTime      time.Duration // duration of the last tick
	Phases        TickPhases    // where the last tick's time went
	Entities      int           // replicated entities
	Connections   int           // open connections (including handshaking)
	Clients       int           // connected clients the tick serves (Parked counts the departed ones kept for resume)
	Subscriptions int           // component + entity subscriptions over all clients, parked included
	ScopeEntries  int           // per-client in-scope entity records over all clients, parked included
	Batches       uint64        // batches handed to writers
	SkippedBusy   uint64        // client-ticks skipped because the writer was busy
	Rescans       uint64        // whole-scope evaluations of a client (see Options.RescanRate)
	Connects      uint64        // handshakes completed
	BytesOut      uint64        // batch bytes on the wire (after compression)
	RawBytesOut   uint64        // batch bytes before compression
	// GameMessagesIn counts the clients' game messages handled (answered
	// with any status); GameMessagesOut the game's messages queued for
	// clients, one per client they go to.
	GameMessagesIn, GameMessagesOut uint64
	// Inputs (HandleInput): InputsApplied ran their step, InputsRefused
	// did not (not the owner or controller, no such entity, a bad value);
	// InputsDuplicate were ignored as already received; InputsLate waited
	// for a later tick past Options.MaxInputsPerTick, and InputsDropped of
	// those were dropped past Options.MaxInputsQueued.
	InputsApplied, InputsRefused, InputsDuplicate, InputsLate, InputsDropped uint64
	// Resumes counts sessions resumed on a new connection; ResumesRefused
	// the Hellos whose resume token was unknown, forged, expired or
	// another identity's (each got a fresh session); Parked is the
	// sessions now waiting for their client to come back.
	Resumes, ResumesRefused uint64
	Parked                  int
	// On a simulation whose clients connect to gateways (NewGateway,
	// Upstream): Gateways is the gateways it hears from, RemoteClients
	// the clients they serve, and RemoteParked the sessions of clients
	// whose gateway let them go (or went silent), kept for a resume at any
	// gateway. RemoteClients and RemoteParked are not in Clients and
	// Parked. As of the last completed tick.
	Gateways, RemoteClients, RemoteParked int
	// Mutations counts the answers to mutations and to game messages by
	// status (the statuses with none are absent).
	Mutations map[ebisync.Status]uint64
	// Refusals counts refused connections and dropped clients by reason
	// (the Refused* constants), since the server started.
	Refusals map[string]uint64
	// TickHistogram counts every tick by its duration, PhaseTotals sums
	// Phases over every tick, and Traffic totals every connection's
	// traffic, open and ended: the counters a scraper wants (package
	// plugin/promsync exports them to Prometheus).
	TickHistogram TickHistogram
	PhaseTotals   TickPhases
	Traffic       Traffic
	PerClient     []ClientStats
}

// TickPhases splits a tick's time (wall clock) by what it did, to see
// which knob matters: Detect grows with the replicated entities (see
// components.Options.Explicit), Scopes with changed entities times the
// clients that see them, Send with the clients that get a batch.
type TickPhases struct {
	Inbound time.Duration // joins, leaves, subscriptions, mutations, controls
	Detect  time.Duration // change detection over every replicated entity
	Scopes  time.Duration // scope enter/leave and writing this tick's changes
	Send    time.Duration // finishing each batch and queueing it for its writer
}

// ClientStats is one client's traffic.
type ClientStats struct {
	ClientInfo
	BytesIn, BytesOut, MessagesIn, MessagesOut uint64
	LastWrite                                  time.Duration
	// RTT is the client's smoothed round-trip time (an exponentially
	// weighted moving average, weight 1/8 per sample) and RTTLast the last
	// sample, from the server's Pings (Options.PingInterval) to the
	// client's Pongs; 0 until the client answered one.
	RTT, RTTLast time.Duration
}

// Stats returns a snapshot of the server's counters. It is safe for
// concurrent use; the per-tick figures (Clients, Subscriptions,
// ScopeEntries) are as of the last completed tick. It allocates the
// Mutations map and the PerClient slice: to poll every frame, use
// ReadStats.
func (s *Server) Stats() Stats {
	var st Stats
	s.ReadStats(&st)
	return st
}

// ReadStats is Stats into st, reusing st.Mutations and st.PerClient's
// backing array: once they have grown to the server's mutation statuses
// and connections, it does not allocate. It is safe for concurrent use
// with the server (not with other uses of st).
func (s *Server) ReadStats(st *Stats) {
	mut, ref, per := st.Mutations, st.Refusals, st.PerClient[:0]
	if mut == nil {
		mut = make(map[ebisync.Status]uint64)
	}
	if ref == nil {
		ref = make(map[string]uint64)
	}
	clear(mut)
	clear(ref)
	s.refused.read(ref)
	*st = Stats{
		Ticks:    s.stats.ticks.Load(),
		TickTime: time.Duration(s.stats.tickNanos.Load()),
		Phases: TickPhases{
			Inbound: time.Duration(s.stats.phases[0].Load()),
			Detect:  time.Duration(s.stats.phases[1].Load()),
			Scopes:  time.Duration(s.stats.phases[2].Load()),
			Send:    time.Duration(s.stats.phases[3].Load()),
		},
		Entities:        int(s.stats.entities.Load()),
		Clients:         int(s.stats.clients.Load()),
		Subscriptions:   int(s.stats.subscriptions.Load()),
		ScopeEntries:    int(s.stats.clientState.Load()),
		Batches:         s.stats.batches.Load(),
		SkippedBusy:     s.stats.skipped.Load(),
		Rescans:         s.stats.rescans.Load(),
		Connects:        s.stats.connects.Load(),
		GameMessagesIn:  s.stats.gameMsgsIn.Load(),
		GameMessagesOut: s.stats.gameMsgsOut.Load(),
		InputsApplied:   s.stats.inputsApplied.Load(),
		InputsRefused:   s.stats.inputsRefused.Load(),
		InputsDuplicate: s.stats.inputsDuplicate.Load(),
		InputsLate:      s.stats.inputsLate.Load(),
		InputsDropped:   s.stats.inputsDropped.Load(),
		Resumes:         s.stats.resumes.Load(),
		ResumesRefused:  s.stats.resumeRefused.Load(),
		Parked:          int(s.stats.parked.Load()),
		Gateways:        int(s.stats.remote[0].Load()),
		RemoteClients:   int(s.stats.remote[1].Load()),
		RemoteParked:    int(s.stats.remote[2].Load()),
		Mutations:       mut,
		Refusals:        ref,
	}
	for i := range s.stats.mutations {
		if n := s.stats.mutations[i].Load(); n > 0 {
			mut[ebisync.Status(i)] = n
		}
	}
	s.stats.totals.read(st)
	s.mu.Lock()
	st.Connections = len(s.conns) + s.handshaking
	st.BytesOut, st.RawBytesOut = s.stats.wireBytes, s.stats.rawBytes
	st.Traffic = s.stats.gone
	for cn := range s.conns {
		rtt, last := cn.pinger.times()
		st.BytesOut += cn.batchWire.Load()
		st.RawBytesOut += cn.batchRaw.Load()
		st.Traffic.BytesIn += cn.bytesIn.Load()
		st.Traffic.BytesOut += cn.bytesOut.Load()
		st.Traffic.MessagesIn += cn.msgsIn.Load()
		st.Traffic.MessagesOut += cn.msgsOut.Load()
		per = append(per, ClientStats{
			ClientInfo:  cn.info(),
			BytesIn:     cn.bytesIn.Load(),
			BytesOut:    cn.bytesOut.Load(),
			MessagesIn:  cn.msgsIn.Load(),
			MessagesOut: cn.msgsOut.Load(),
			LastWrite:   time.Duration(cn.writeNanos.Load()),
			RTT:         rtt,
			RTTLast:     last,
		})
	}
	s.mu.Unlock()
	st.PerClient = per
}

// publishStats stores the figures of the tick that found ch and sent out
// for Stats.
func (s *Server) publishStats(ch *changes, out *batches) {
	if out.sent != 0 {
		s.stats.batches.Add(out.sent)
	}
	if out.rescans != 0 {
		s.stats.rescans.Add(out.rescans)
	}
	if out.skipped != 0 {
		s.stats.skipped.Add(out.skipped)
	}
	if ch.entities != 0 {
		s.stats.entities.Add(ch.entities)
	}
	subs, state := 0, 0
	for _, c := range s.clients {
		subs += c.subscriptionCount()
		state += c.count
	}
	s.stats.clients.Store(int64(len(s.clients) - len(s.parked)))
	s.stats.subscriptions.Store(int64(subs))
	s.stats.clientState.Store(int64(state))
}
