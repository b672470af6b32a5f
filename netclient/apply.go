package netclient

import (
	"fmt"
	"math"
	"slices"
	"unsafe"

	"github.com/yohamta/donburi"

	"github.com/ebisync/ebisync/components"
	"github.com/ebisync/ebisync/internal/codec"
	"github.com/ebisync/ebisync/internal/wire"
)

// mirrored is the client's record of one server entity in scope. Its
// world entity is stored as a donburi.Entity (never an *Entry, which donburi
// reuses for whatever entity later gets the same id) and checked with
// Valid before each use.
type mirrored struct {
	id, gen uint32
	e       donburi.Entity
	comps   []*compState // by local component index; nil: absent
	hold    []int32      // optimistic mutations in flight, by component index
	refs    []uint32     // net ids its confirmed values refer to
	gone    bool         // left the mirror
}

// compState is what the client knows of one component of one entity.
type compState struct {
	// confirmed is the last value the server sent: deltas apply onto it,
	// and the world gets copies of it. It is never world storage, which the
	// game or an optimistic mutation may have changed.
	confirmed unsafe.Pointer
	samples   *samples // interpolated components only
}

func (ne *mirrored) held(idx int) bool { return ne.hold != nil && ne.hold[idx] > 0 }

// handle processes one event on the game goroutine.
func (c *Client) handle(ev event, now float64) {
	switch ev.kind {
	case evBatch:
		if ev.sess == c.gs && !ev.sess.broken {
			if err := c.applyBatch(ev.sess, &ev.in.batch, ev.in.recv.Seconds(), now); err != nil {
				ev.sess.broken = true
				c.noResume.Store(true)
				ev.sess.protocolError(err)
			}
		}
		c.recycle(ev.in)
	case evUp:
		c.beginSession(ev.sess)
	case evDown:
		err := ErrDisconnected
		if ev.err != nil {
			err = fmt.Errorf("%w: %w", ErrDisconnected, ev.err)
		}
		c.abandonPending(ev.sess, err)
		if c.gs == ev.sess {
			c.gs = nil
		}
	}
}

// beginSession starts applying s's batches. A fresh session clears the
// mirror (the server resends everything in scope) and restarts the tick
// and clock from its Welcome. A resumed one keeps the mirror, whose tick
// must be the one the Hello claimed; its first batch says which entities
// stay.
func (c *Client) beginSession(s *session) {
	defer c.predictSession(s) // resend or drop the pending inputs (predict.go)
	if s.welcome.Resumed {
		if c.tick != s.resumedFrom {
			// The mirror is not at the tick the server resumes from (a
			// batch of the last session failed to apply): start afresh.
			s.broken = true
			c.noResume.Store(true)
			s.protocolError(fmt.Errorf("mirror at tick %d, session resumed from %d", c.tick, s.resumedFrom))
			return
		}
		// The mirror stays at c.tick until the first batch, which
		// advances from the Welcome's tick.
		c.gs = s
		c.sessTick = s.welcome.Tick
		c.stats.resumes.Add(1)
		return
	}
	for _, ne := range c.byNet {
		c.despawn(ne, ExitResync)
	}
	c.gs = s
	c.tick = s.welcome.Tick
	c.sessTick = s.welcome.Tick
	c.tickBase = s.welcome.Tick
	c.advances = [len(c.advances)]uint64{}
	c.nadv = 0
	c.clock = clock{dt: 1 / float64(s.welcome.TickRate)}
	c.clock.delay = c.opts.InterpolationDelay.Seconds()
	if c.clock.delay <= 0 {
		c.clock.delay = 2 * c.clock.dt
	}
	c.stats.serverTick.Store(c.tick)
}

// applyBatch applies one batch in the protocol's order: exits, spawns,
// removals, updates, mutation results, control results. An error means
// the server's view and the mirror disagree; the caller drops the
// connection. recv is the batch's arrival and now the local time of
// application, both in seconds since the client's epoch.
func (c *Client) applyBatch(s *session, b *wire.Batch, recv, now float64) error {
	c.sessTick += b.TickAdvance
	c.tick = c.sessTick
	if b.TickAdvance > 0 {
		c.advances[c.nadv%len(c.advances)] = b.TickAdvance
		c.nadv++
	}
	c.stats.serverTick.Store(c.tick)
	c.clock.observe(recv, now, c.relTick())
	c.predictBegin() // predict.go

	if b.Resume {
		// A resumed session's first batch: what is not kept left the
		// client's scope while it was away, or is sent again below.
		keep := slices.Clone(b.Keep)
		slices.Sort(keep)
		for id, ne := range c.byNet {
			if _, ok := slices.BinarySearch(keep, uint64(id)); !ok {
				c.despawn(ne, ExitAway)
			}
		}
	}
	for _, x := range b.Exits {
		if ne := c.byNet[uint32(x.ID)]; ne != nil {
			c.despawn(ne, ExitReason(x.Reason))
		}
	}
	for i := range b.Spawns {
		if err := c.spawn(s, &b.Spawns[i]); err != nil {
			return err
		}
	}
	for _, rm := range b.Removals {
		if rm.Comp >= uint64(len(s.fromServer)) {
			return fmt.Errorf("%w: removal of unknown component id %d", wire.ErrMalformed, rm.Comp)
		}
		if ne := c.byNet[uint32(rm.ID)]; ne != nil {
			c.remove(ne, s.fromServer[rm.Comp])
		}
	}
	for i := range b.Updates {
		if err := c.update(s, &b.Updates[i]); err != nil {
			return err
		}
	}
	for i := range b.Results {
		c.finishMutation(&b.Results[i])
	}
	for i := range b.Controls {
		c.finishControl(&b.Controls[i])
	}
	c.predictEnd(b.InputAck) // rewind and replay the predicted entities (predict.go)
	c.relinkRefused()        // before the messages, whose handlers see the tree
	for i := range b.Messages {
		if err := c.deliver(s, &b.Messages[i]); err != nil {
			return err
		}
	}
	return nil
}

// batchInterval is the usual number of ticks between two batches: the
// least tick advance of the last few batches. A longer advance means
// nothing changed in between, not that the server sends less often.
func (c *Client) batchInterval() float64 {
	iv := uint64(math.MaxUint64)
	for _, a := range c.advances[:min(c.nadv, len(c.advances))] {
		iv = min(iv, a)
	}
	if iv == math.MaxUint64 {
		return 1
	}
	return float64(iv)
}

// relTick is the current server tick relative to the session's Welcome,
// the clock's and the samples' timeline.
func (c *Client) relTick() float64 { return float64(c.tick) - float64(c.tickBase) }

func (c *Client) spawn(s *session, sp *wire.Spawn) error {
	if sp.Gen > math.MaxUint32 {
		return fmt.Errorf("%w: spawn of entity %d with generation %d", wire.ErrMalformed, sp.ID, sp.Gen)
	}
	id := uint32(sp.ID)
	if old := c.byNet[id]; old != nil {
		if old.gen == uint32(sp.Gen) {
			// The entity the mirror holds: a resumed session's first
			// batch keeps an entity and spawns it to bring it up to date.
			return c.refresh(s, old, sp)
		}
		// Another generation under the same id without an exit first is
		// not allowed by the protocol, but the result is well defined:
		// the new entity replaces the old.
		c.log.Debug("ebisync: spawn of another generation of an entity already mirrored", "id", id, "gen", sp.Gen, "mirrored", old.gen)
		c.despawn(old, ExitDespawned)
	}
	ne := &mirrored{id: id, gen: uint32(sp.Gen), comps: make([]*compState, c.reg.Len())}
	for _, cv := range sp.Comps {
		comp := s.fromServer[cv.Comp] // DecodeBatch checked the id with FullLen
		idx := comp.Index()
		if ne.comps[idx] != nil {
			return fmt.Errorf("%w: spawn of entity %d lists %s twice", wire.ErrMalformed, id, comp.Name())
		}
		st := &compState{confirmed: comp.New()}
		if _, err := comp.DecodeFull(cv.Value, st.confirmed); err != nil {
			return err
		}
		ne.comps[idx] = st
		c.pushSample(ne, comp, st)
	}
	c.byNet[id] = ne
	c.trackRefs(ne)
	c.create(ne)
	return nil
}

// refresh applies a spawn of the entity ne mirrors, at its generation, in
// place: the spawn's values become the confirmed ones, components it does
// not list are removed, and the world entity stays the same. No OnSpawn or
// OnDespawn fires; OnChange fires for each component whose world value
// changed, was added or was removed. A component with an optimistic
// mutation in flight keeps its world value until the mutations resolve, as
// for an update.
func (c *Client) refresh(s *session, ne *mirrored, sp *wire.Spawn) error {
	listed := make([]bool, len(ne.comps)) // then: listed or removed
	for _, cv := range sp.Comps {
		comp := s.fromServer[cv.Comp] // DecodeBatch checked the id with FullLen
		idx := comp.Index()
		if listed[idx] {
			return fmt.Errorf("%w: spawn of entity %d lists %s twice", wire.ErrMalformed, ne.id, comp.Name())
		}
		listed[idx] = true
		st := ne.comps[idx]
		if st == nil {
			st = &compState{confirmed: comp.New()}
		}
		if _, err := comp.DecodeFull(cv.Value, st.confirmed); err != nil {
			return err
		}
		ne.comps[idx] = st
		c.pushSample(ne, comp, st)
	}
	for idx, st := range ne.comps {
		if st != nil && !listed[idx] {
			ne.comps[idx] = nil
			listed[idx] = true
		}
	}
	c.trackRefs(ne)
	c.trackOwner(ne)
	if !c.world.Valid(ne.e) {
		// The game removed the mirror entity; bring it back whole.
		c.create(ne)
		return nil
	}
	for idx, ch := range listed {
		if ch && !ne.held(idx) {
			c.syncWorld(ne, c.codecs[idx], false)
		}
	}
	return nil
}

// create makes ne's world entity from its confirmed values and fires
// OnSpawn.
//
// It creates the entity with Replicated alone and adds the other components
// one by one, although one Create with all of them would be cheaper:
// donburi v1.15.8 miscounts the entities of an archetype whose first entity
// arrived by AddComponent or RemoveComponent (its per-archetype index starts
// at 1), and a later Create into that archetype panics. The client moves
// entities between archetypes all the time, so it only ever creates into
// {Replicated}, whose first entity is always created.
func (c *Client) create(ne *mirrored) {
	e := c.world.Create(components.Replicated)
	entry := c.world.Entry(e)
	for idx, st := range ne.comps {
		comp := c.codecs[idx]
		if ct := comp.ComponentType(); st != nil && ct != components.Replicated {
			entry.AddComponent(ct) // fresh storage; never hand donburi a pointer
			c.toWorld(comp, entry.Component(ct), st.confirmed)
		}
	}
	tag := (*components.ReplicatedData)(entry.Component(components.Replicated))
	tag.NetID, tag.Gen = ne.id, ne.gen
	delete(c.byEnt, ne.e)
	ne.e = e
	c.byEnt[e] = ne
	c.linkParent(ne)
	c.trackOwner(ne)
	if c.opts.OnSpawn != nil {
		c.opts.OnSpawn(e)
	}
	c.resyncReferrers(ne.id)
}

// despawn removes ne from the mirror, firing OnDespawn first.
func (c *Client) despawn(ne *mirrored, reason ExitReason) {
	ne.gone = true
	if c.byNet[ne.id] == ne {
		delete(c.byNet, ne.id)
	}
	c.untrackRefs(ne)
	c.trackOwner(ne)
	if c.world.Valid(ne.e) {
		if c.opts.OnDespawn != nil {
			c.opts.OnDespawn(ne.e, reason)
		}
		// The hook may have removed it, or removed it and created another
		// entity that reuses its id (Valid compares versions).
		if c.world.Valid(ne.e) {
			c.unlink(ne)
			c.world.Remove(ne.e)
		}
	}
	delete(c.byEnt, ne.e)
	c.resyncReferrers(ne.id)
}

// remove applies the server's removal of comp from ne.
func (c *Client) remove(ne *mirrored, comp *codec.Codec) {
	idx := comp.Index()
	if ne.comps[idx] == nil {
		return
	}
	ne.comps[idx] = nil
	if comp.HasRefs() {
		c.trackRefs(ne)
	}
	if idx == c.ownerIdx {
		c.trackOwner(ne)
	}
	if ne.held(idx) {
		return // syncWorld runs when the mutations resolve
	}
	c.syncWorld(ne, comp, true)
}

func (c *Client) update(s *session, u *wire.Update) error {
	ne := c.byNet[uint32(u.ID)]
	comp := s.fromServer[u.Comp] // DecodeBatch checked the id
	if ne == nil {
		return fmt.Errorf("%w: update of %s for entity %d, which is not in scope", wire.ErrMalformed, comp.Name(), u.ID)
	}
	idx := comp.Index()
	st := ne.comps[idx]
	if u.Delta {
		if st == nil {
			return fmt.Errorf("%w: delta of %s for entity %d, which does not have it", wire.ErrMalformed, comp.Name(), u.ID)
		}
		if _, err := comp.DecodeDelta(u.Value, st.confirmed); err != nil {
			return err
		}
	} else {
		fresh := st == nil
		if fresh {
			st = &compState{confirmed: comp.New()}
		}
		if _, err := comp.DecodeFull(u.Value, st.confirmed); err != nil {
			return err
		}
		if fresh {
			ne.comps[idx] = st
		}
	}
	if comp.HasRefs() {
		c.trackRefs(ne)
	}
	c.pushSample(ne, comp, st)
	if !c.world.Valid(ne.e) {
		// The game removed the mirror entity; bring it back whole.
		c.create(ne)
		return nil
	}
	if !ne.held(idx) {
		c.syncWorld(ne, comp, true)
	}
	return nil
}

// syncWorld makes the world's comp of ne equal to the confirmed value
// (removing it if the server has none) and fires OnChange if that changed
// what the world encodes (or always, when force is set).
func (c *Client) syncWorld(ne *mirrored, comp *codec.Codec, force bool) {
	if ne.gone || !c.world.Valid(ne.e) {
		return
	}
	ct := comp.ComponentType()
	entry := c.world.Entry(ne.e)
	st := ne.comps[comp.Index()]
	switch {
	case st == nil:
		if !entry.HasComponent(ct) {
			return
		}
		entry.RemoveComponent(ct)
	case !entry.HasComponent(ct):
		// AddComponent without a value allocates fresh storage; never
		// hand donburi a pointer to keep.
		entry.AddComponent(ct)
		c.toWorld(comp, entry.Component(ct), st.confirmed)
	default:
		dst := entry.Component(ct)
		src := st.confirmed
		if comp.HasRefs() {
			src = c.scratchOf(comp)
			c.toWorld(comp, src, st.confirmed)
		}
		same := !force && comp.Equal(dst, src)
		comp.Copy(dst, src) // also when same: Equal ignores sub-step differences
		if same {
			return
		}
	}
	if c.hierarchyComp(comp.Index()) {
		c.linkParent(ne)
	}
	if comp.Index() == c.ownerIdx {
		c.trackOwner(ne)
	}
	if c.opts.OnChange != nil {
		c.opts.OnChange(ne.e, c.reg.At(comp.Index()))
	}
}
