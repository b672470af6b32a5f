package plugin

import (
	"github.com/ebisync/ebisync/internal/wire"
)

// A frame is one tick's data as it passes from step to step. Tick resets
// it, and each step takes what the step before it returns:
//
//	applyInbound(f)                the clients' queued messages, applied to the World
//	ch := detect(&f.changes)       what changed in the World since the last tick
//	out := plan(&f.out)            the clients that get a batch this tick, their batches started
//	updateScopes(ch, out)          scope exits, enters and updates, written into out
//	send(out)                      the batches, encoded and handed to the writers
//
// The Server keeps one frame and reuses its arrays, so a steady tick
// allocates nothing; no step reads another step's part of it through the
// Server.
type frame struct {
	changes changes
	out     batches

	// applyInbound's buffers.
	limited []limitedReq
	inbound []inbound
}

// reset empties the frame and returns it. It drops every
// reference the last tick left (records, clients, encoded values), so
// nothing that a tick let go of stays reachable through the frame.
func (f *frame) reset() *frame {
	ch := &f.changes
	ch.ids = ch.ids[:0]
	clear(ch.removed)
	ch.removed = ch.removed[:0]
	ch.plans = ch.plans[:0]
	clear(ch.deltas) // they alias the records' buffers
	ch.deltas = ch.deltas[:0]
	ch.entities = 0
	o := &f.out
	clear(o.clients)
	o.clients = o.clients[:0]
	clear(o.spawn)
	o.spawn = o.spawn[:0]
	o.sent, o.skipped, o.rescans = 0, 0, 0
	return f
}

// changes is what detection found in one tick, in the order the scope
// step wants it: detect returns it and updateScopes takes it.
type changes struct {
	// ids are the entities that changed (a component added, removed or
	// changed, or a move), in net id order.
	ids []change
	// removed are the records of the entities that left the World (or
	// lost their tag). Their ids are free; the scope step takes them out
	// of every client's scope.
	removed []*entityRec
	// plans are the changed entities' fast paths, by the index a change
	// holds; deltas are the encoded deltas they name, which alias the
	// records' encode-once caches.
	plans  []fastPath
	deltas [][]byte
	// entities is the change in the replicated entity count.
	entities int64
}

// change names a changed entity: its net id in the high half, so that
// sorting changes sorts them by id, and the index of its plan in
// changes.plans in the low half.
type change uint64

func (c change) id() uint32   { return uint32(c >> 32) }
func (c change) plan() uint32 { return uint32(c) }

// add lists the changed entity id with its fast path p, whose deltas are
// ch.deltas[p.first:]. A plan that does not apply keeps no deltas.
func (ch *changes) add(id uint32, p fastPath) {
	if !p.ok {
		ch.deltas = ch.deltas[:p.first]
	}
	ch.ids = append(ch.ids, change(uint64(id)<<32|uint64(len(ch.plans))))
	ch.plans = append(ch.plans, p)
}

// fastPath is what the common view of a changed entity needs: a client
// that holds every component it receives and was up to date before this
// tick gets the encoded delta of each component that changed, and nothing
// else. Detection records it for each changed entity, while the entity's
// component records are in cache, so emitFast applies it to one view in a
// few comparisons without reading those records, which are cache misses by
// the scope step.
type fastPath struct {
	ok      bool   // false when a component was added this tick
	minSync uint32 // a view synced before this has more to catch up
	changed uint64 // components with a delta this tick
	first   int32  // index in changes.deltas of the first changed component's delta
	bytes   int32  // the deltas' total length
}

// batches is the outgoing side of one tick: plan starts a batch for each
// client in clients, updateScopes writes into them, and send encodes them
// and hands them to the writers.
type batches struct {
	clients []*client // the clients that get a batch this tick, in Server.clients order
	ready   []*client // send's list of the batches encoded this tick

	// Counted during the tick and published once at its end: an atomic
	// add per batch would share a cache line with the writers' counters.
	sent    uint64 // batches handed to writers
	skipped uint64 // clients skipped because their writer was busy
	rescans uint64 // whole-scope evaluations

	// Buffers of the batch writers, which fill one client's batch at a
	// time.
	spawn []wire.CompValue
	sizes []int
	order []dirtyRef
	rank  []uint32
	prio  []float64
}
