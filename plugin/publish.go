package plugin

import (
	"errors"
	"math/bits"

	"github.com/ebisync/ebisync/internal/wire"
)

// A Publisher receives the World's changes of every tick by grid cell, so
// that processes which hold no World (gateways) can serve clients from
// them. Package plugin/natsync publishes them over NATS.
//
// The Server calls Chunk once per tick for each cell with activity (and
// once for the entities without a position, if any of them changed), then
// TickEnd. Each chunk is encoded once, however many consumers read it, and
// the Server's work for it depends on the World's changes, not on the
// number of clients. The methods run on the game goroutine during Tick and
// must not block; the Chunk's Data is valid only during the call.
//
// docs/PROTOCOL.md §12 gives the encoding of a chunk and what a consumer
// does with it.
type Publisher interface {
	Chunk(c Chunk)
	TickEnd(tick uint64, chunks int)
}

// A Chunk is one tick's changes in one grid cell (or, when Global, of the
// entities without a position), or a cell's whole state (Snapshot).
type Chunk struct {
	Tick     uint64
	Global   bool  // the entities without a position
	X, Y     int32 // the cell (Options.PublishCellSize units), when not Global
	Snapshot bool  // every entity in the cell, from Server.Snapshot
	Data     []byte
}

// ErrSnapshotsPending is Server.Snapshot's answer when maxPendingSnapshots
// requests already wait for the next tick.
var ErrSnapshotsPending = errors.New("ebisync: too many snapshot requests wait for the next tick")

// ErrNotPublishing is Server.Snapshot's answer for a Server without
// Options.Publish, or one that is closed.
var ErrNotPublishing = errors.New("ebisync: the server does not publish (no Options.Publish, or closed)")

// maxPendingSnapshots bounds the snapshot requests waiting for a tick.
const maxPendingSnapshots = 4096

// chunkVersion is the first byte of every chunk.
const chunkVersion = 1

// Chunk flags.
const (
	chunkGlobal   = 1
	chunkSnapshot = 2
)

// pubState is what an entity's record remembers of what consumers of the
// published chunks hold of it.
type pubState struct {
	at     uint32  // tick of its last entry or update; 0: never published
	global bool    // published among the entities without a position
	cell   cellKey // else the cell it was last published in
	mask   uint64  // the components consumers hold
}

// publisher is the Server's publishing state: the chunks of the tick
// being published, reused from tick to tick.
type publisher struct {
	out    Publisher
	inv    float64           // 1 / Options.PublishCellSize
	cells  map[cellKey]int32 // chunk index by cell, this tick
	global int32             // chunk index of the global chunk; -1: none
	// The tick of each cell's last chunk, which the next one names, so
	// that a consumer notices a chunk it missed.
	last       map[cellKey]uint32
	lastGlobal uint32
	chunks     []pubChunk // the first n are this tick's
	n          int
	spawn      []wire.CompValue
	buf        []byte

	// Snapshot requests, under Server.mu; taken by the tick.
	pending []snapshotReq
	serving []snapshotReq
}

type pubChunk struct {
	global bool
	key    cellKey
	b      wire.Batch   // exits
	bl     wire.Builder // entries and updates
}

type snapshotReq struct {
	global bool
	x, y   int32
	reply  func(Chunk)
}

func (p *publisher) init(out Publisher, size float64) {
	p.out = out
	p.inv = 1 / size
	p.cells = make(map[cellKey]int32)
	p.last = make(map[cellKey]uint32)
	p.global = -1
}

// chunk returns this tick's chunk for a cell, or the global one.
func (p *publisher) chunk(global bool, key cellKey) *pubChunk {
	var i int32
	var ok bool
	if global {
		i, ok = p.global, p.global >= 0
	} else {
		i, ok = p.cells[key]
	}
	if !ok {
		i = int32(p.n)
		if p.n == len(p.chunks) {
			p.chunks = append(p.chunks, pubChunk{})
		}
		p.n++
		c := &p.chunks[i]
		c.global, c.key = global, key
		c.b.Reset()
		c.bl.Reset()
		if global {
			p.global = i
		} else {
			p.cells[key] = i
		}
	}
	return &p.chunks[i]
}

// publish writes this tick's changes, ch, into a chunk per cell, hands
// them to the Publisher, and answers the snapshot requests that waited
// for this tick. It reads the records as detection left them.
func (s *Server) publish(ch *changes) {
	p := &s.pub
	if p.out == nil {
		return
	}
	clear(p.cells)
	p.global, p.n = -1, 0
	for _, r := range ch.removed {
		if r.pub.at != 0 {
			c := p.chunk(r.pub.global, r.pub.cell)
			c.b.Exits = append(c.b.Exits, wire.Exit{Reason: wire.ReasonDespawned, ID: uint64(r.id)})
			r.pub = pubState{}
		}
	}
	for _, x := range ch.ids {
		r := s.recs[x.id()]
		if r == nil {
			continue
		}
		global := !r.hasPos
		var cell cellKey
		if !global {
			cell = keyOf(cellCoord(r.x*p.inv), cellCoord(r.y*p.inv))
		}
		ps := &r.pub
		moved := ps.at != 0 && (ps.global != global || !global && ps.cell != cell)
		if moved {
			old := p.chunk(ps.global, ps.cell)
			old.b.Exits = append(old.b.Exits, wire.Exit{Reason: wire.ReasonOutOfRange, ID: uint64(r.id)})
		}
		c := p.chunk(global, cell)
		plan := ch.plans[x.plan()]
		if ps.at == 0 || moved || !plan.ok || ps.mask != r.present {
			s.pubEntry(c, r)
		} else {
			k := int(plan.first)
			for m := plan.changed; m != 0; m &= m - 1 {
				c.bl.Update(uint64(bits.TrailingZeros64(m)), uint64(r.id), true, ch.deltas[k])
				k++
			}
		}
		*ps = pubState{at: s.tick, global: global, cell: cell, mask: r.present}
	}
	for i := 0; i < p.n; i++ {
		c := &p.chunks[i]
		x, y := c.key.coords()
		var prev uint32
		if c.global {
			prev, p.lastGlobal = p.lastGlobal, s.tick
		} else {
			prev = p.last[c.key]
			p.last[c.key] = s.tick
		}
		p.buf = appendChunk(p.buf[:0], uint64(s.tick), uint64(prev), c, false)
		p.out.Chunk(Chunk{Tick: uint64(s.tick), Global: c.global, X: x, Y: y, Data: p.buf})
	}
	p.out.TickEnd(uint64(s.tick), p.n)
	s.answerSnapshots()
}

// pubEntry writes r's whole state into chunk c: consumers replace what
// they hold of it.
func (s *Server) pubEntry(c *pubChunk, r *entityRec) {
	p := &s.pub
	p.spawn = p.spawn[:0]
	for m := r.present; m != 0; m &= m - 1 {
		i := bits.TrailingZeros64(m)
		p.spawn = append(p.spawn, wire.CompValue{Comp: uint64(i), Value: s.full(r, i, s.comps[i])})
	}
	c.bl.Spawn(uint64(r.id), uint64(r.gen), p.spawn)
	clear(p.spawn)
}

// appendChunk appends chunk c of tick to dst, prev being the tick of the
// cell's chunk before (0: none, or a snapshot): docs/PROTOCOL.md §12.
func appendChunk(dst []byte, tick, prev uint64, c *pubChunk, snapshot bool) []byte {
	w := wire.Writer{B: dst}
	w.Byte(chunkVersion)
	w.Uvarint(tick)
	w.Uvarint(prev)
	var flags byte
	if c.global {
		flags |= chunkGlobal
	}
	if snapshot {
		flags |= chunkSnapshot
	}
	w.Byte(flags)
	if !c.global {
		x, y := c.key.coords()
		w.Varint(int64(x))
		w.Varint(int64(y))
	}
	return wire.AppendBatchBuilt(w.B, &c.b, &c.bl)
}

// coords returns the cell's integer coordinates.
func (k cellKey) coords() (x, y int32) { return int32(uint32(k >> 32)), int32(uint32(k)) }

// Snapshot asks for the whole state of one published cell (or, when
// global, of the entities without a position). At the end of the next
// Tick, after that tick's chunks, reply is called on the game goroutine
// with a Chunk flagged Snapshot that holds an entry for every entity in
// the cell as of that tick; its Data is valid only during the call. A
// consumer applies the chunks of later ticks on top of it.
//
// Snapshot is safe for concurrent use. It returns ErrNotPublishing for a
// Server without Options.Publish or one that is closed (reply is then
// never called), and ErrSnapshotsPending when 4096 requests already wait.
func (s *Server) Snapshot(global bool, x, y int32, reply func(Chunk)) error {
	if s.pub.out == nil {
		return ErrNotPublishing
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrNotPublishing
	}
	if len(s.pub.pending) >= maxPendingSnapshots {
		return ErrSnapshotsPending
	}
	s.pub.pending = append(s.pub.pending, snapshotReq{global: global, x: x, y: y, reply: reply})
	return nil
}

// answerSnapshots answers the snapshot requests made before this tick's
// end, with the state the tick's chunks lead to.
func (s *Server) answerSnapshots() {
	p := &s.pub
	s.mu.Lock()
	p.serving, p.pending = p.pending, p.serving[:0]
	s.mu.Unlock()
	if len(p.serving) == 0 {
		return
	}
	var c pubChunk
	if p.n < len(p.chunks) {
		c = p.chunks[p.n] // reuse a spare chunk's buffers
	}
	for i := range p.serving {
		q := &p.serving[i]
		c.global, c.key = q.global, keyOf(q.x, q.y)
		c.b.Reset()
		c.bl.Reset()
		if q.global {
			for _, id := range s.globals.ids {
				if r := s.recs[id]; r != nil && r.pub.at != 0 {
					s.pubEntry(&c, r)
				}
			}
		} else {
			// Snapshots are rare: a walk over every record beats an index
			// of the published cells kept up to date every tick.
			for _, r := range s.recs {
				if r != nil && r.pub.at != 0 && !r.pub.global && r.pub.cell == c.key {
					s.pubEntry(&c, r)
				}
			}
		}
		p.buf = appendChunk(p.buf[:0], uint64(s.tick), 0, &c, true)
		q.reply(Chunk{Tick: uint64(s.tick), Global: q.global, X: q.x, Y: q.y, Snapshot: true, Data: p.buf})
		q.reply = nil
	}
	if p.n < len(p.chunks) {
		p.chunks[p.n] = c
	} else {
		p.chunks = append(p.chunks, c)
	}
	clear(p.serving)
	p.serving = p.serving[:0]
}
