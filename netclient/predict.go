package netclient

import (
	"fmt"
	"math"
	"reflect"
	"sync"
	"time"
	"unsafe"

	"github.com/yohamta/donburi"

	"github.com/ebisync/ebisync/components"
	"github.com/ebisync/ebisync/internal/codec"
	"github.com/ebisync/ebisync/internal/wire"
)

// Prediction
//
// A game steers the entities it owns (or controls) with an input stream:
// Predictor.Input sends an input of a message type registered FromClient,
// numbered 1, 2, 3, …, and runs the same step the server runs
// (plugin.HandleInput) on the mirror entity at once, so the player's own
// entity answers in the frame of the key press instead of a round trip
// later. The entity's world components then hold the predicted state; the
// client keeps the server's confirmed values apart, as always.
//
// Each batch says which input the server processed last (its InputAck).
// After applying a batch the client reconciles every predicted entity:
// it rewinds the entity's components to the confirmed values, forgets the
// inputs the batch acknowledges, and replays the rest in order with their
// steps. When the result differs from what was predicted before the batch
// (the server did something the client could not know: a collision, an
// input it refused or dropped), that is a correction, counted in
// Stats.PredictionCorrections.
//
// Corrections are not snapped on screen. Interpolated (and
// InterpolatedInto) return, for a predicted entity, its predicted value
// (not the delayed, interpolated one: the player's own entity answers at
// once, everything else stays interpolated) plus a visual error offset:
// the difference between what was on screen when the correction arrived
// and the corrected prediction, decaying exponentially with time constant
// SmoothingTime, so the drawn value slides onto the corrected one (to 1%
// of the correction after 4.6 time constants). The offset is built from
// the component's Lerp (components.Synced.SetLerp), so it is applied only
// to components registered with Options.Interpolate; the others snap.
// A correction no larger than the component's quantisation step (the
// largest q= of its fields) is rounding, neither counted nor smoothed.
//
// Steps must be deterministic functions of the entity's replicated
// components and the input: the server's state and the replay agree only
// then. Entity fields of inputs name mirror entities, as in Send.
//
// Across sessions: when the client resumes its session, every input not
// yet acknowledged is sent again with its sequence number (the server
// ignores those it already processed). A fresh session starts the
// sequence again at 1 and drops the inputs and the predicted state of the
// last one.

// SmoothingTime is the time constant of the decay of a prediction
// correction's visual offset.
const SmoothingTime = 100 * time.Millisecond

// maxPendingInputs bounds the inputs waiting for the server's
// acknowledgement; Input refuses more with ErrSendQueueFull.
const maxPendingInputs = 1024

// Predictor sends one message type's inputs and predicts their effect on
// the client's mirror. Make it with Predict.
type Predictor[T any] struct {
	c    *Client
	idx  int // local message type index
	step func(w donburi.World, e donburi.Entity, in T)
}

// Predict returns the Predictor of the input stream of message type m,
// whose step the server installed with plugin.HandleInput; step is the
// same function, run on the client's mirror world. Call it on the game
// goroutine, or before the first Update. It panics if m is not registered
// in the client's registry, is not registered FromClient, or step is nil.
func Predict[T any](c *Client, m *components.Message[T], step func(w donburi.World, e donburi.Entity, in T)) *Predictor[T] {
	idx := c.messageIndex(m.Registry(), m.Index(), m.Name())
	if !c.reg.Messages()[idx].Options().FromClient {
		panic(fmt.Sprintf("netclient: Predict: message type %q is not registered FromClient", m.Name()))
	}
	if step == nil {
		panic("netclient: Predict: nil step")
	}
	return &Predictor[T]{c: c, idx: idx, step: step}
}

// Input sends in as the next input for mirror entity e and runs the step
// on e at once. The input stays pending, and is replayed after each batch,
// until the server acknowledges it. It returns ErrClosed, ErrNotMirrored
// (e is not a live mirror entity), ErrNotConnected (between sessions) or
// ErrSendQueueFull (too many inputs unacknowledged), without running the
// step. An input the connection's send queue cannot take now is predicted
// all the same and sent, in order, before the next one. Game goroutine
// only.
func (p *Predictor[T]) Input(e donburi.Entity, in T) error {
	c := p.c
	if c.closed.Load() {
		return ErrClosed
	}
	ne := c.byEnt[e]
	if ne == nil || ne.gone || !c.world.Valid(e) {
		return ErrNotMirrored
	}
	if c.gs == nil {
		return ErrNotConnected
	}
	ps := &c.pred
	if len(ps.pending) >= maxPendingInputs {
		return ErrSendQueueFull
	}
	mc := c.msgCodecs[p.idx]
	var enc []byte
	if mc.HasRefs() {
		v := in
		mc.MapRefs(unsafe.Pointer(&v), c.refOf)
		enc = mc.AppendFull(nil, unsafe.Pointer(&v))
	} else {
		enc = mc.AppendFull(nil, unsafe.Pointer(&in))
	}
	if len(enc) > wire.MaxValueLen {
		return fmt.Errorf("netclient: Input: value of %d bytes exceeds %d", len(enc), wire.MaxValueLen)
	}
	ps.seq++
	step := p.step
	ps.pending = append(ps.pending, pendingInput{
		seq: ps.seq, id: ne.id, gen: ne.gen, typ: p.idx, value: enc,
		run: func(w donburi.World, e donburi.Entity) { step(w, e, in) },
	})
	ps.flush(c)
	c.stats.pendingInputs.Store(int64(len(ps.pending)))
	pe := c.predicted(ne)
	c.snapshot(ne, pe)
	p.step(c.world, e, in)
	c.markTouched(ne, pe)
	return nil
}

// snapshot copies ne's world components into pe.before.
func (c *Client) snapshot(ne *mirrored, pe *predictedEnt) {
	clear(pe.had)
	if !c.world.Valid(ne.e) {
		return
	}
	entry := c.world.Entry(ne.e)
	for idx, st := range ne.comps {
		comp := c.codecs[idx]
		if st == nil || !entry.HasComponent(comp.ComponentType()) {
			continue
		}
		if pe.before[idx] == nil {
			pe.before[idx] = comp.New()
		}
		comp.Copy(pe.before[idx], entry.Component(comp.ComponentType()))
		pe.had[idx] = true
	}
}

// markTouched marks the components of ne that differ from pe.before as
// predicted: those a step writes.
func (c *Client) markTouched(ne *mirrored, pe *predictedEnt) {
	if !c.world.Valid(ne.e) {
		return
	}
	entry := c.world.Entry(ne.e)
	for idx := range ne.comps {
		comp := c.codecs[idx]
		if pe.touched[idx] || !pe.had[idx] || !entry.HasComponent(comp.ComponentType()) {
			continue
		}
		now := entry.Component(comp.ComponentType())
		if !comp.Equal(pe.before[idx], now) || floatDistance(comp.Type(), pe.before[idx], now) > 0 {
			pe.touched[idx] = true
		}
	}
}

// predictState is the client's input stream and predicted entities. Game
// goroutine only.
type predictState struct {
	seq     uint64 // the last sequence number given
	acked   uint64 // the last InputAck received
	sent    uint64 // the last sequence number handed to the session
	pending []pendingInput
	ents    map[uint32]*predictedEnt // by net id
	lastNow time.Time                // the latest render time a predicted value was asked for
	tol     []float64                // by component index: the largest quantisation step; -1: not computed
}

// pendingInput is one input the server has not acknowledged.
type pendingInput struct {
	seq     uint64
	id, gen uint32
	typ     int    // local message type index
	value   []byte // its full encoding
	run     func(w donburi.World, e donburi.Entity)
}

// predictedEnt is the prediction state of one mirror entity.
type predictedEnt struct {
	gen     uint32
	before  []unsafe.Pointer // by component index: the predicted value before the batch (or the step)
	had     []bool           // before holds a value
	touched []bool           // by component index: a step wrote it; only these are compared
	smooth  []*smoothing     // by component index; nil: none
}

// smoothing is the visual offset of one component's last correction:
// shown = predicted + k·(shown − fixed), k = exp(−(now − t0)/SmoothingTime).
type smoothing struct {
	shown unsafe.Pointer // what was on screen when the correction arrived
	fixed unsafe.Pointer // the corrected prediction then
	mid   unsafe.Pointer // scratch
	t0    time.Time
	on    bool
}

// flush hands the pending inputs not yet sent to the session, in order,
// until its send queue is full.
func (ps *predictState) flush(c *Client) {
	s := c.gs
	if s == nil {
		return
	}
	for i := range ps.pending {
		p := &ps.pending[i]
		if p.seq <= ps.sent {
			continue
		}
		msg := wire.AppendInput(nil, &wire.Input{Seq: p.seq, ID: s.msgToServer[p.typ], Entity: uint64(p.id), Gen: uint64(p.gen), Value: p.value})
		if !s.send(msg) {
			return
		}
		ps.sent = p.seq
	}
}

// predicted marks ne as predicted.
func (c *Client) predicted(ne *mirrored) *predictedEnt {
	ps := &c.pred
	if ps.ents == nil {
		ps.ents = make(map[uint32]*predictedEnt)
	}
	pe := ps.ents[ne.id]
	if pe == nil || pe.gen != ne.gen {
		n := len(c.codecs)
		pe = &predictedEnt{gen: ne.gen, before: make([]unsafe.Pointer, n), had: make([]bool, n), touched: make([]bool, n), smooth: make([]*smoothing, n)}
		ps.ents[ne.id] = pe
	}
	return pe
}

// predictSession adjusts the input stream to a new session s: a resumed
// one gets every unacknowledged input again, a fresh one starts over.
func (c *Client) predictSession(s *session) {
	if c.gs != s {
		return // the session did not start
	}
	ps := &c.pred
	if s.welcome.Resumed {
		ps.sent = ps.acked
		ps.flush(c)
		return
	}
	clear(ps.pending)
	ps.pending = ps.pending[:0]
	ps.seq, ps.acked, ps.sent = 0, 0, 0
	clear(ps.ents)
	c.stats.pendingInputs.Store(0)
}

// predictBegin records, before a batch applies, each predicted entity's
// predicted values.
func (c *Client) predictBegin() {
	for id, pe := range c.pred.ents {
		ne := c.byNet[id]
		clear(pe.had)
		if ne == nil || ne.gen != pe.gen {
			continue
		}
		c.snapshot(ne, pe)
	}
}

// predictEnd reconciles the predicted entities with a batch just applied
// that acknowledged the inputs up to ack: rewind to the confirmed values,
// replay the inputs still pending, and smooth what changed.
func (c *Client) predictEnd(ack uint64) {
	ps := &c.pred
	defer ps.flush(c)
	defer func() { c.stats.pendingInputs.Store(int64(len(ps.pending))) }()
	if ack > ps.acked && ack <= ps.seq {
		ps.acked = ack
		n := 0
		for n < len(ps.pending) && ps.pending[n].seq <= ack {
			n++
		}
		clear(ps.pending[:n])
		ps.pending = ps.pending[:copy(ps.pending, ps.pending[n:])]
		ps.sent = max(ps.sent, ack)
	}
	if len(ps.ents) == 0 {
		return
	}
	// Rewind.
	for id, pe := range ps.ents {
		ne := c.byNet[id]
		if ne == nil || ne.gen != pe.gen {
			delete(ps.ents, id) // left the mirror; its inputs replay on nothing
			continue
		}
		if !c.world.Valid(ne.e) {
			continue
		}
		entry := c.world.Entry(ne.e)
		for idx, st := range ne.comps {
			comp := c.codecs[idx]
			if st == nil || ne.held(idx) || !entry.HasComponent(comp.ComponentType()) {
				continue
			}
			c.toWorld(comp, entry.Component(comp.ComponentType()), st.confirmed)
		}
	}
	// Replay.
	for i := range ps.pending {
		p := &ps.pending[i]
		ne := c.byNet[p.id]
		if ne == nil || ne.gen != p.gen || ne.gone || !c.world.Valid(ne.e) {
			continue
		}
		if pe := ps.ents[p.id]; pe == nil || pe.gen != p.gen {
			continue
		}
		p.run(c.world, ne.e)
	}
	// Compare.
	for id, pe := range ps.ents {
		ne := c.byNet[id]
		if !c.world.Valid(ne.e) {
			continue
		}
		entry := c.world.Entry(ne.e)
		for idx := range ne.comps {
			comp := c.codecs[idx]
			if !pe.touched[idx] || !pe.had[idx] || !entry.HasComponent(comp.ComponentType()) {
				continue
			}
			now := entry.Component(comp.ComponentType())
			if comp.Equal(pe.before[idx], now) {
				continue
			}
			d := floatDistance(comp.Type(), pe.before[idx], now)
			if d > 0 && d <= c.quantum(idx)*(1+1e-6) {
				continue // rounding of the confirmed value
			}
			c.stats.correction(d, time.Since(c.epoch))
			if !comp.Options().Interpolate {
				continue
			}
			c.smoothCorrection(pe, comp, pe.before[idx], now)
		}
	}
}

// smoothCorrection starts the visual offset of a correction of comp from
// before (the prediction before the batch) to now (the corrected one).
func (c *Client) smoothCorrection(pe *predictedEnt, comp *codec.Codec, before, now unsafe.Pointer) {
	idx := comp.Index()
	sm := pe.smooth[idx]
	if sm == nil {
		sm = &smoothing{shown: comp.New(), fixed: comp.New(), mid: comp.New()}
		pe.smooth[idx] = sm
	}
	t := c.pred.lastNow
	if t.IsZero() {
		t = time.Now()
	}
	// What was on screen: the prediction before the batch, with what is
	// left of the previous correction's offset.
	shown := c.scratchOf(comp)
	c.smoothed(sm, comp, before, t, shown)
	comp.Copy(sm.shown, shown)
	comp.Copy(sm.fixed, now)
	sm.t0, sm.on = t, true
}

// smoothed writes into out the predicted value p with sm's offset at time
// t: p + k·(shown − fixed), from lerps alone (out must not alias p).
func (c *Client) smoothed(sm *smoothing, comp *codec.Codec, p unsafe.Pointer, t time.Time, out unsafe.Pointer) {
	k := 0.0
	if sm.on {
		k = math.Exp(-t.Sub(sm.t0).Seconds() / SmoothingTime.Seconds())
		if k < 1e-3 {
			sm.on, k = false, 0
		}
	}
	if k == 0 {
		comp.Copy(out, p)
		return
	}
	// Lerp(fixed, Lerp(p, shown, k/(1+k)), 1+k) = p + k·(shown − fixed).
	comp.Lerp(sm.mid, p, sm.shown, k/(1+k))
	comp.Lerp(out, sm.fixed, sm.mid, 1+k)
}

// predictedInto writes into out, for a predicted entity, its predicted
// value of component idx with the visual offset of its last correction,
// and reports whether ne is predicted.
func (c *Client) predictedInto(ne *mirrored, idx int, now time.Time, out unsafe.Pointer) bool {
	pe := c.pred.ents[ne.id]
	if pe == nil || pe.gen != ne.gen {
		return false
	}
	comp := c.codecs[idx]
	entry := c.world.Entry(ne.e)
	if !entry.HasComponent(comp.ComponentType()) {
		return false
	}
	if now.After(c.pred.lastNow) {
		c.pred.lastNow = now
	}
	p := entry.Component(comp.ComponentType())
	if sm := pe.smooth[idx]; sm != nil && sm.on {
		c.smoothed(sm, comp, p, now, out)
		return true
	}
	comp.Copy(out, p)
	return true
}

// quantum returns the largest quantisation step of component idx's fields.
func (c *Client) quantum(idx int) float64 {
	ps := &c.pred
	if ps.tol == nil {
		ps.tol = make([]float64, len(c.codecs))
		for i := range ps.tol {
			ps.tol[i] = -1
		}
	}
	if ps.tol[idx] < 0 {
		q := 0.0
		for _, f := range c.reg.At(idx).Fields() {
			q = max(q, f.Quant)
		}
		ps.tol[idx] = q
	}
	return ps.tol[idx]
}

// floatDistance returns the largest difference between the float fields
// of a and b, values of type t.
func floatDistance(t reflect.Type, a, b unsafe.Pointer) float64 {
	return floatDist(reflect.NewAt(t, a).Elem(), reflect.NewAt(t, b).Elem())
}

func floatDist(a, b reflect.Value) float64 {
	switch a.Kind() {
	case reflect.Float32, reflect.Float64:
		d := math.Abs(a.Float() - b.Float())
		if math.IsNaN(d) {
			return math.Inf(1)
		}
		return d
	case reflect.Struct:
		d := 0.0
		for i := range a.NumField() {
			d = max(d, floatDist(a.Field(i), b.Field(i)))
		}
		return d
	case reflect.Array:
		d := 0.0
		for i := range a.Len() {
			d = max(d, floatDist(a.Index(i), b.Index(i)))
		}
		return d
	}
	return 0
}

// correctionWindow counts prediction corrections over about the last
// second, in ten 100 ms slots, with the largest of each.
type correctionWindow struct {
	mu    sync.Mutex
	slots [rateSlots]correctionSlot
}

type correctionSlot struct {
	n       int64 // slot number: time / slotLen
	count   uint64
	largest float64
}

func (w *correctionWindow) add(now time.Duration, d float64) {
	n := int64(now / slotLen)
	w.mu.Lock()
	s := &w.slots[n%rateSlots]
	if s.n != n {
		*s = correctionSlot{n: n}
	}
	s.count++
	s.largest = max(s.largest, d)
	w.mu.Unlock()
}

// read returns the corrections per second and the largest correction over
// the current slot and the nine before it.
func (w *correctionWindow) read(now time.Duration) (perSec, largest float64) {
	n := int64(now / slotLen)
	var count uint64
	w.mu.Lock()
	for i := range w.slots {
		s := &w.slots[i]
		if s.n > n-rateSlots && s.n <= n {
			count += s.count
			largest = max(largest, s.largest)
		}
	}
	w.mu.Unlock()
	span := (time.Duration(rateSlots-1)*slotLen + now%slotLen).Seconds()
	if now < time.Duration(rateSlots-1)*slotLen {
		span = now.Seconds()
	}
	if span <= 0 {
		return 0, largest
	}
	return float64(count) / span, largest
}

// correction counts one prediction correction of size d.
func (k *counters) correction(d float64, now time.Duration) {
	k.corrections.Add(1)
	k.corrWindow.add(now, d)
}
