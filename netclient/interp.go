package netclient

import (
	"math"
	"time"
	"unsafe"

	"github.com/yohamta/donburi"

	"github.com/ebisync/ebisync/components"
	"github.com/ebisync/ebisync/internal/codec"
)

// Interpolation
//
// For each component registered with components.Options.Interpolate the
// client keeps the last few server values of every entity, each stamped
// with its server tick. The renderer asks for the value at render time
// now − InterpolationDelay, mapped onto server ticks by a clock that
// follows the arrival times of batches; the value is interpolated with
// Component.Lerp between the two samples around it, and clamped to the
// oldest and newest samples (never extrapolated).
//
// The server sends a component only when it changed. A value that stayed
// still for a while and then moves would otherwise be interpolated across
// the whole still period, so when a new value arrives more than one update
// interval after the previous one, the previous value is first repeated
// one update interval before the new one. One update interval is the usual
// batch interval (the least tick advance of recent batches: a longer
// advance means nothing changed meanwhile), or the component's MaxRate
// period when that is longer.

const (
	// clockLeak is how fast (seconds per second) the arrival baseline may
	// rise when no batch arrives as early as before, so the clock follows
	// a server whose ticks run slower than nominal.
	clockLeak = 0.05
	// clockSlew bounds how fast the offset in use moves toward the
	// baseline: render time runs between 0.9× and 1.1× real time, never
	// backwards.
	clockSlew = 0.1
	// clockSnap is the disagreement (seconds) past which the clock jumps
	// instead of slewing: after a stall, or while it settles.
	clockSnap = 0.25
)

// clock maps local time to server ticks. The offset is the local time
// (seconds since the client's epoch) at which tick 0 of the session's
// timeline arrives; it follows the earliest arrivals (the least delayed
// batches), so jitter does not move it. The offset in use is a continuous
// function of local time: from the moment a batch is applied it moves from
// anchorOff toward base at no more than clockSlew seconds per second, so
// render time never steps back between two frames.
type clock struct {
	dt        float64 // seconds per tick
	delay     float64 // interpolation delay, seconds
	have      bool
	base      float64 // arrival baseline the offset follows
	last      float64 // arrival time of the last observed batch
	anchorT   float64 // local time of the last observation's application
	anchorOff float64 // offset in use at anchorT
}

// observe records that the batch for tick (on the session's timeline)
// arrived at local time recv and is applied at local time now.
func (k *clock) observe(recv, now, tick float64) {
	s := recv - tick*k.dt
	if !k.have {
		k.have, k.base, k.last = true, s, recv
		k.anchorT, k.anchorOff = now, s
		return
	}
	cur := k.off(now) // before base moves: the offset is continuous at now
	el := max(recv-k.last, 0)
	k.last = recv
	k.base = math.Min(s, k.base+el*clockLeak)
	k.anchorT, k.anchorOff = max(now, k.anchorT), cur
	if math.Abs(k.base-cur) > clockSnap {
		k.anchorOff = k.base
	}
}

// off returns the offset in use at local time now.
func (k *clock) off(now float64) float64 {
	step := max(now-k.anchorT, 0) * clockSlew
	return k.anchorOff + math.Max(-step, math.Min(step, k.base-k.anchorOff))
}

// renderTick returns the (fractional) tick to render at local time now.
func (k *clock) renderTick(now float64) float64 {
	if !k.have {
		return math.Inf(1)
	}
	return (now - k.delay - k.off(now)) / k.dt
}

type sample struct {
	tick float64
	v    unsafe.Pointer
}

// samples are the buffered server values of one component of one entity,
// oldest first, at most cap(s) of them.
type samples struct {
	s []sample
}

// push appends the value v received for tick. hold is the tick until which
// the newest value is known to have stayed unchanged.
func (r *samples) push(comp *codec.Codec, tick, hold float64, v unsafe.Pointer) {
	if n := len(r.s); n > 0 {
		last := r.s[n-1]
		if tick <= last.tick {
			comp.Copy(last.v, v) // a second value in one batch
			return
		}
		if hold > last.tick {
			r.add(comp, hold, last.v)
		}
	}
	r.add(comp, tick, v)
}

func (r *samples) add(comp *codec.Codec, tick float64, v unsafe.Pointer) {
	if len(r.s) < cap(r.s) {
		r.s = append(r.s, sample{tick: tick, v: comp.New()})
	} else {
		oldest := r.s[0].v
		copy(r.s, r.s[1:])
		r.s[len(r.s)-1] = sample{tick: tick, v: oldest}
	}
	comp.Copy(r.s[len(r.s)-1].v, v)
}

// at writes into out the value at tick rt.
func (r *samples) at(comp *codec.Codec, out unsafe.Pointer, rt float64) {
	n := len(r.s)
	switch {
	case rt >= r.s[n-1].tick:
		comp.Copy(out, r.s[n-1].v)
		return
	case rt <= r.s[0].tick:
		comp.Copy(out, r.s[0].v)
		return
	}
	for i := n - 1; i > 0; i-- {
		a, b := &r.s[i-1], &r.s[i]
		if a.tick <= rt {
			comp.Lerp(out, a.v, b.v, (rt-a.tick)/(b.tick-a.tick))
			return
		}
	}
}

// pushSample buffers st's confirmed value for interpolation.
func (c *Client) pushSample(ne *mirrored, comp *codec.Codec, st *compState) {
	o := comp.Options()
	if !o.Interpolate {
		return
	}
	if st.samples == nil {
		// Enough samples to cover the delay, plus the hold sample and one
		// tick of jitter on each side.
		n := int(math.Ceil(c.clock.delay/c.clock.dt)) + 3
		st.samples = &samples{s: make([]sample, 0, min(max(n, 4), 32))}
	}
	interval := c.batchInterval()
	if o.MaxRate > 0 {
		interval = max(interval, math.Ceil(1/(o.MaxRate*c.clock.dt)))
	}
	t := c.relTick()
	st.samples.push(comp, t, t-interval, st.confirmed)
}

// Interpolated returns the value of component h of mirror entity e at
// render time now − Options.InterpolationDelay, interpolated between the
// buffered server values (see InterpolatedInto). Pass time.Now() (with its
// monotonic reading) as now. It reports false if e is not a live mirror
// entity or the server has not sent it the component. Game goroutine only.
func Interpolated[T any](c *Client, e donburi.Entity, h *components.Synced[T], now time.Time) (T, bool) {
	var out T
	ok := InterpolatedInto(c, e, h, now, &out)
	return out, ok
}

// InterpolatedInto writes into out the value of component h of mirror
// entity e at render time now − Options.InterpolationDelay: interpolated
// between the two buffered server values around it, the oldest before
// them, and the newest after (it never extrapolates). For a component that
// is not interpolated, or one with an optimistic mutation in flight, it
// writes the world's current value instead. For an entity the game
// predicts (Predict) it writes the predicted value, with what is left of
// the last correction's offset (SmoothingTime), not a delayed one. It
// reports false, leaving out
// alone, if e is not a live mirror entity or the server has not sent it the
// component. It does not allocate, so a renderer can call it for every
// entity every frame. Game goroutine only.
//
// h is best taken from the registry the client was dialled with; a handle
// from another registry that registers the same component type costs a map
// lookup per call.
func InterpolatedInto[T any](c *Client, e donburi.Entity, h *components.Synced[T], now time.Time, out *T) bool {
	idx, ok := c.localIndex(h.Registry(), h.Index(), h.ComponentType())
	if !ok || out == nil {
		return false
	}
	return c.interpolatedInto(e, idx, now, unsafe.Pointer(out))
}

// localIndex maps a component registered at index idx of reg to its index
// in the client's registry.
func (c *Client) localIndex(reg *components.Registry, idx int, ct donburi.IComponentType) (int, bool) {
	if reg == c.reg {
		return idx, true
	}
	comp, ok := c.reg.Of(ct)
	if !ok {
		return 0, false
	}
	return comp.Index(), true
}

func (c *Client) interpolatedInto(e donburi.Entity, idx int, now time.Time, out unsafe.Pointer) bool {
	ne := c.byEnt[e]
	if ne == nil || !c.world.Valid(e) || idx >= len(ne.comps) {
		return false
	}
	st := ne.comps[idx]
	if st == nil {
		return false
	}
	comp := c.codecs[idx]
	if !ne.held(idx) && c.predictedInto(ne, idx, now, out) {
		return true // the predicted value, smoothed (predict.go)
	}
	if ne.held(idx) || st.samples == nil || len(st.samples.s) == 0 {
		if entry := c.world.Entry(e); entry.HasComponent(comp.ComponentType()) {
			comp.Copy(out, entry.Component(comp.ComponentType()))
		} else {
			c.toWorld(comp, out, st.confirmed)
		}
		return true
	}
	st.samples.at(comp, out, c.clock.renderTick(now.Sub(c.epoch).Seconds()))
	if comp.HasRefs() {
		comp.MapRefs(out, c.resolveRef)
	}
	return true
}
