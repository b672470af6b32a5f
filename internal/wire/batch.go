package wire

import "fmt"

// ValueSizer tells the batch decoder how many bytes the encoded value of
// component comp at the start of b occupies. It must return an error for
// an unknown comp or an invalid value, and must never read past b.
//
// Component values in a batch carry no length prefix: their length follows
// from the component's codec, which the components package owns.
type ValueSizer interface {
	FullLen(comp uint64, b []byte) (int, error)
	DeltaLen(comp uint64, b []byte) (int, error)
}

// Exit says an entity left the client's scope.
type Exit struct {
	Reason ScopeReason
	ID     uint64
}

// CompValue is one component value of a Spawn, in the component's full
// encoding.
type CompValue struct {
	Comp  uint64
	Value []byte
}

// Spawn brings an entity into the client's scope with the full value of each
// of its replicated components.
type Spawn struct {
	ID, Gen uint64
	Comps   []CompValue
}

// Update sets one component of an entity already in scope: a full value
// (which adds the component if the client does not have it) or, when Delta
// is set, a delta against the value the client holds.
type Update struct {
	Comp, ID uint64
	Delta    bool
	Value    []byte
}

// Removal says a component was removed from an entity in scope.
type Removal struct {
	Comp, ID uint64
}

// MutationResult answers a Mutate with the same Request.
type MutationResult struct {
	Request uint64
	Status  Status
	Message string // at most MaxNameLen bytes of UTF-8; empty when Status is StatusOk
}

// Msg is a server's message in a batch: a value of message type ID (an
// index into the Welcome's Messages) in its full encoding. Messages come
// after the batch's state, so they may name entities it spawns.
type Msg struct {
	ID    uint64
	Value []byte
}

// ControlReply answers a Control with the same Request. Holder is the client
// id that controls the entity after the request, 0 when none does.
type ControlReply struct {
	Request uint64
	Result  ControlResult
	ID, Gen uint64
	Holder  uint64
}

// Batch is the decoded form of a batch message: what changed in the client's
// view since the previous batch, TickAdvance server ticks ago.
//
// A client applies the lists in this order: Exits, Spawns, Removals,
// Updates, Results, Controls, Messages. Within a list, entries apply in order.
//
// A Batch is meant to be reused: Reset and DecodeBatch keep the capacity of
// its lists, so decoding allocates nothing once they are large enough. A
// Batch is not safe for concurrent use.
type Batch struct {
	TickAdvance uint64
	// Resume marks the first batch of a resumed session. Keep lists the
	// entities the client keeps (ascending ids); it forgets every other
	// entity it holds before it applies the rest of the batch.
	Resume bool
	Keep   []uint64
	// InputAck is the sequence of the last input the server applied, as
	// of this batch's state; 0 when the batch does not say.
	InputAck uint64
	Exits    []Exit
	Spawns   []Spawn
	Updates  []Update
	Removals []Removal
	Results  []MutationResult
	Controls []ControlReply
	Messages []Msg

	// comps backs the Comps of decoded Spawns and of Spawns added with
	// AddSpawn.
	comps []CompValue
}

// Reset empties b, keeping the capacity of its lists. It drops b's
// references to values and strings so they can be collected.
func (b *Batch) Reset() {
	b.TickAdvance = 0
	b.Resume = false
	b.Keep = b.Keep[:0]
	b.InputAck = 0
	b.Exits = b.Exits[:0]
	clear(b.Spawns)
	b.Spawns = b.Spawns[:0]
	clear(b.Updates)
	b.Updates = b.Updates[:0]
	b.Removals = b.Removals[:0]
	clear(b.Results)
	b.Results = b.Results[:0]
	b.Controls = b.Controls[:0]
	clear(b.Messages)
	b.Messages = b.Messages[:0]
	clear(b.comps)
	b.comps = b.comps[:0]
}

// AddSpawn appends a Spawn of entity id, gen to b.Spawns. Its Comps is a
// copy of comps (the values are not copied) held in storage b reuses after
// Reset, so building a batch this way stops allocating once b has grown.
func (b *Batch) AddSpawn(id, gen uint64, comps []CompValue) {
	start := len(b.comps)
	b.comps = append(b.comps, comps...)
	b.Spawns = append(b.Spawns, Spawn{ID: id, Gen: gen, Comps: b.comps[start:len(b.comps):len(b.comps)]})
}

// Smallest encodings of section entries, for Reader.Count.
const (
	minSpawnSize   = 3 // id delta, gen, component count
	minResultSize  = 3 // request, status, message length
	minControlSize = 5 // request, result, id, gen, holder
	minMessageSize = 2 // message id, value length
)

// AppendBatch appends b as a batch message (header byte KindBatch and body)
// to dst. It does not sort, does not modify b and does not allocate when dst
// has room.
//
// Entity ids are written as deltas within a section, so a section holds
// entries whose ids strictly ascend. AppendBatch starts a new section
// wherever the section key changes (the Reason of Exits; the Comp of
// Removals; the Comp and Delta of Updates) or ids stop ascending, and after
// MaxItems entries. Any order therefore encodes correctly, and DecodeBatch
// returns the lists in the same order; the message is smallest when the
// caller sorts Exits by Reason then ID, Spawns by ID, Removals by Comp then
// ID, and Updates by Comp, Delta, then ID.
//
// Ids above MaxNetID, component ids not below MaxComponents, a Spawn with
// more than MaxComponents values, or values that do not match their
// component's codec produce a batch that DecodeBatch rejects. Messages
// longer than MaxNameLen bytes are cut.
func AppendBatch(dst []byte, b *Batch) []byte {
	w := Writer{B: dst}
	w.Byte(byte(KindBatch))
	w.Uvarint(b.TickAdvance)
	if b.Resume {
		appendKeep(&w, b.Keep)
	}
	if b.InputAck != 0 {
		w.Byte(OpInputAck)
		w.Uvarint(b.InputAck)
	}
	appendExits(&w, b.Exits)
	appendSpawns(&w, b.Spawns)
	appendRemovals(&w, b.Removals)
	appendUpdates(&w, b.Updates)
	appendResults(&w, b.Results)
	appendControls(&w, b.Controls)
	appendMessages(&w, b.Messages)
	return w.B
}

// appendKeep writes keep as one or more sections; an empty keep is one
// empty section, which still marks the batch as a resume.
func appendKeep(w *Writer, keep []uint64) {
	for i := 0; i == 0 || i < len(keep); {
		j := i
		for j < len(keep) && j-i < MaxItems && (j == i || keep[j] > keep[j-1]) {
			j++
		}
		w.Byte(OpKeep)
		w.Uvarint(uint64(j - i))
		prev := uint64(0)
		for _, id := range keep[i:j] {
			w.Uvarint(id - prev)
			prev = id
		}
		if j == i {
			break
		}
		i = j
	}
}

func appendMessages(w *Writer, msgs []Msg) {
	for i := 0; i < len(msgs); i += MaxItems {
		j := min(i+MaxItems, len(msgs))
		w.Byte(OpMessage)
		w.Uvarint(uint64(j - i))
		for _, m := range msgs[i:j] {
			w.Uvarint(m.ID)
			w.Bytes(m.Value)
		}
	}
}

func appendExits(w *Writer, exits []Exit) {
	for i := 0; i < len(exits); {
		j := i + 1
		for j < len(exits) && j-i < MaxItems &&
			exits[j].Reason == exits[i].Reason && exits[j].ID > exits[j-1].ID {
			j++
		}
		w.Byte(OpScopeExit)
		w.Byte(byte(exits[i].Reason))
		w.Uvarint(uint64(j - i))
		prev := uint64(0)
		for _, e := range exits[i:j] {
			w.Uvarint(e.ID - prev)
			prev = e.ID
		}
		i = j
	}
}

func appendSpawns(w *Writer, spawns []Spawn) {
	for i := 0; i < len(spawns); {
		j := i + 1
		for j < len(spawns) && j-i < MaxItems && spawns[j].ID > spawns[j-1].ID {
			j++
		}
		w.Byte(OpSpawn)
		w.Uvarint(uint64(j - i))
		prev := uint64(0)
		for k := i; k < j; k++ {
			s := &spawns[k]
			w.Uvarint(s.ID - prev)
			prev = s.ID
			w.Uvarint(s.Gen)
			w.Uvarint(uint64(len(s.Comps)))
			for _, c := range s.Comps {
				w.Uvarint(c.Comp)
				w.Raw(c.Value)
			}
		}
		i = j
	}
}

func appendRemovals(w *Writer, removals []Removal) {
	for i := 0; i < len(removals); {
		j := i + 1
		for j < len(removals) && j-i < MaxItems &&
			removals[j].Comp == removals[i].Comp && removals[j].ID > removals[j-1].ID {
			j++
		}
		w.Byte(OpRemove)
		w.Uvarint(removals[i].Comp)
		w.Uvarint(uint64(j - i))
		prev := uint64(0)
		for _, rm := range removals[i:j] {
			w.Uvarint(rm.ID - prev)
			prev = rm.ID
		}
		i = j
	}
}

func appendUpdates(w *Writer, updates []Update) {
	for i := 0; i < len(updates); {
		first := &updates[i]
		j := i + 1
		for j < len(updates) && j-i < MaxItems &&
			updates[j].Comp == first.Comp && updates[j].Delta == first.Delta &&
			updates[j].ID > updates[j-1].ID {
			j++
		}
		if first.Delta {
			w.Byte(OpUpdateDelta)
		} else {
			w.Byte(OpUpdateFull)
		}
		w.Uvarint(first.Comp)
		w.Uvarint(uint64(j - i))
		prev := uint64(0)
		for k := i; k < j; k++ {
			u := &updates[k]
			w.Uvarint(u.ID - prev)
			prev = u.ID
			w.Raw(u.Value)
		}
		i = j
	}
}

func appendResults(w *Writer, results []MutationResult) {
	for i := 0; i < len(results); i += MaxItems {
		j := min(i+MaxItems, len(results))
		w.Byte(OpMutationResult)
		w.Uvarint(uint64(j - i))
		for k := i; k < j; k++ {
			res := &results[k]
			w.Uvarint(res.Request)
			w.Byte(byte(res.Status))
			writeText(w, res.Message, MaxNameLen)
		}
	}
}

func appendControls(w *Writer, controls []ControlReply) {
	for i := 0; i < len(controls); i += MaxItems {
		j := min(i+MaxItems, len(controls))
		w.Byte(OpControlResult)
		w.Uvarint(uint64(j - i))
		for _, c := range controls[i:j] {
			w.Uvarint(c.Request)
			w.Byte(byte(c.Result))
			w.Uvarint(c.ID)
			w.Uvarint(c.Gen)
			w.Uvarint(c.Holder)
		}
	}
}

// DecodeBatch decodes the body of a batch message into b, which it resets
// first. Sections may come in any order and any number; their entries are
// appended to b's lists in the order read. vs measures component values,
// which alias body, as do b's values.
//
// DecodeBatch applies the same checks as the other Decode functions, and
// checks that entity ids strictly ascend within a section and stay at most
// MaxNetID. An error from vs is wrapped together with ErrMalformed. On error b
// is left empty. DecodeBatch allocates nothing once b's lists are large
// enough, except for the strings of non-empty mutation result messages.
func DecodeBatch(body []byte, vs ValueSizer, b *Batch) error {
	b.Reset()
	r := Reader{b: body}
	b.TickAdvance = r.Uvarint()
	for r.err == nil && r.Remaining() > 0 {
		switch op := r.Byte(); op {
		case OpScopeExit:
			reason := ScopeReason(r.Byte())
			if r.err == nil && !reason.Valid() {
				r.Failf(ErrMalformed, "scope exit reason %d", reason)
				break
			}
			n := r.Count(MaxItems, 1, "scope exits")
			var ids idSeq
			for range n {
				id := ids.next(&r)
				if r.err != nil {
					break
				}
				b.Exits = append(b.Exits, Exit{Reason: reason, ID: id})
			}

		case OpSpawn:
			n := r.Count(MaxItems, minSpawnSize, "spawns")
			var ids idSeq
			for range n {
				id := ids.next(&r)
				gen := r.Uvarint()
				nc := r.Count(MaxComponents, 1, "spawn components")
				start := len(b.comps)
				for range nc {
					comp := r.UvarintMax(MaxComponents-1, "component id")
					v := readValue(&r, vs, comp, false)
					if r.err != nil {
						break
					}
					b.comps = append(b.comps, CompValue{Comp: comp, Value: v})
				}
				if r.err != nil {
					break
				}
				end := len(b.comps)
				b.Spawns = append(b.Spawns, Spawn{ID: id, Gen: gen, Comps: b.comps[start:end:end]})
			}

		case OpUpdateFull, OpUpdateDelta:
			delta := op == OpUpdateDelta
			comp := r.UvarintMax(MaxComponents-1, "component id")
			n := r.Count(MaxItems, 1, "updates")
			var ids idSeq
			for range n {
				id := ids.next(&r)
				v := readValue(&r, vs, comp, delta)
				if r.err != nil {
					break
				}
				b.Updates = append(b.Updates, Update{Comp: comp, ID: id, Delta: delta, Value: v})
			}

		case OpRemove:
			comp := r.UvarintMax(MaxComponents-1, "component id")
			n := r.Count(MaxItems, 1, "removals")
			var ids idSeq
			for range n {
				id := ids.next(&r)
				if r.err != nil {
					break
				}
				b.Removals = append(b.Removals, Removal{Comp: comp, ID: id})
			}

		case OpMutationResult:
			n := r.Count(MaxItems, minResultSize, "mutation results")
			for range n {
				req := r.Uvarint()
				st := Status(r.Byte())
				if r.err == nil && !st.Valid() {
					r.Failf(ErrMalformed, "mutation status %d", st)
				}
				msg := r.TextMax(MaxNameLen, "mutation message")
				if r.err != nil {
					break
				}
				b.Results = append(b.Results, MutationResult{Request: req, Status: st, Message: msg})
			}

		case OpControlResult:
			n := r.Count(MaxItems, minControlSize, "control results")
			for range n {
				var c ControlReply
				c.Request = r.Uvarint()
				c.Result = ControlResult(r.Byte())
				if r.err == nil && !c.Result.Valid() {
					r.Failf(ErrMalformed, "control result %d", c.Result)
				}
				c.ID = r.UvarintMax(MaxNetID, "entity id")
				c.Gen = r.Uvarint()
				c.Holder = r.Uvarint()
				if r.err != nil {
					break
				}
				b.Controls = append(b.Controls, c)
			}

		case OpKeep:
			b.Resume = true
			n := r.Count(MaxItems, 1, "kept entities")
			var ids idSeq
			for range n {
				id := ids.next(&r)
				if r.err != nil {
					break
				}
				b.Keep = append(b.Keep, id)
			}

		case OpInputAck:
			ack := r.Uvarint()
			if r.err == nil && ack == 0 {
				r.Failf(ErrMalformed, "input acknowledgement 0")
			}
			b.InputAck = max(b.InputAck, ack)

		case OpMessage:
			n := r.Count(MaxItems, minMessageSize, "messages")
			for range n {
				id := r.UvarintMax(MaxComponents-1, "message id")
				v := r.BytesMax(MaxValueLen, "message value")
				if r.err != nil {
					break
				}
				b.Messages = append(b.Messages, Msg{ID: id, Value: v})
			}

		default:
			if r.err == nil {
				r.Failf(ErrMalformed, "batch section op %d", op)
			}
		}
	}
	if err := r.End(); err != nil {
		b.Reset()
		return fmt.Errorf("failed to decode batch: %w", err)
	}
	return nil
}

// idSeq reconstructs the strictly ascending entity ids of one section from
// their deltas.
type idSeq struct {
	prev    uint64
	started bool
}

func (s *idSeq) next(r *Reader) uint64 {
	d := r.Uvarint()
	if r.err != nil {
		return 0
	}
	if s.started && d == 0 {
		r.Failf(ErrMalformed, "entity id %d repeated in a section", s.prev)
		return 0
	}
	if d > MaxNetID-s.prev {
		r.Failf(ErrTooLarge, "entity id %d + %d exceeds %d", s.prev, d, uint64(MaxNetID))
		return 0
	}
	s.prev += d
	s.started = true
	return s.prev
}

// readValue reads one component value whose length vs measures.
func readValue(r *Reader, vs ValueSizer, comp uint64, delta bool) []byte {
	if r.err != nil {
		return nil
	}
	rest := r.b[r.off:len(r.b):len(r.b)]
	var n int
	var err error
	if delta {
		n, err = vs.DeltaLen(comp, rest)
	} else {
		n, err = vs.FullLen(comp, rest)
	}
	if err != nil {
		r.Fail(fmt.Errorf("%w: value of component %d: %w", ErrMalformed, comp, err))
		return nil
	}
	if n < 0 || n > len(rest) || n > MaxValueLen {
		r.Failf(ErrMalformed, "value of component %d measured %d bytes, %d remain", comp, n, len(rest))
		return nil
	}
	return r.Raw(n)
}
