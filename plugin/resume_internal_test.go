package plugin

import (
	"bytes"
	"context"
	"runtime"
	"slices"
	"sync"
	"testing"

	"github.com/yohamta/donburi"

	"github.com/ebisync/ebisync/components"
	"github.com/ebisync/ebisync/internal/testutil"
	"github.com/ebisync/ebisync/internal/wire"
)

// resumeServer is a server of 200 replicated entities, ticked by the test.
func resumeServer(t *testing.T, opts *Options) (*Server, donburi.World) {
	reg := components.NewRegistry()
	components.RegisterStandard(reg)
	w := donburi.NewWorld()
	s := New(w, reg, opts)
	for i := range 200 {
		e := w.Create(components.Replicated, components.Position)
		components.Position.SetValue(w.Entry(e), components.PositionData{X: float64(i), Y: 1})
	}
	return s, w
}

// resumeClientOf joins a client that subscribes to every component.
func resumeClientOf(t *testing.T, s *Server) *client {
	c, stop := attachWriter(s, func([]byte) {})
	t.Cleanup(stop)
	c.typeSubs = ^uint64(0) >> (64 - uint(len(s.comps)))
	s.joinSession(c.cn)
	return c
}

// TestResumeByteBound: two parked clients that each fit the byte bound
// but not together: the longest parked ends, the other stays.
func TestResumeByteBound(t *testing.T) {
	s, _ := resumeServer(t, &Options{ResumeBytes: 1 << 30})
	a := resumeClientOf(t, s)
	b := resumeClientOf(t, s)
	for range 5 {
		s.Tick()
	}
	pa, pb := a.parkedBytes(), b.parkedBytes()
	s.opts.ResumeBytes = pa + pb/2 // either fits alone, both do not
	a.cn.resumable, b.cn.resumable = true, true
	s.leaves = append(s.leaves, a.cn)
	s.admit()
	s.leaves = append(s.leaves, b.cn)
	s.admit()
	if len(s.parked) != 1 {
		t.Errorf("want 1 parked (b), got %d: the bound evicted a session that fit", len(s.parked))
	}
}

// claimingConn is a connection with no socket, to claim a session with.
func claimingConn(s *Server, id uint64) *conn {
	ctx, cancel := context.WithCancel(context.Background())
	return &conn{s: s, id: id, out: make(chan []byte, 1), ctrl: make(chan []byte, 4), ctx: ctx, cancel: cancel}
}

// TestResumeClaimsInAnyOrder: two resumes of one session (X claims, then
// Y) whose handshakes end in the other order; then both connections end.
// The session is parked once, and ends with the server.
func TestResumeClaimsInAnyOrder(t *testing.T) {
	s, _ := resumeServer(t, &Options{})
	c := resumeClientOf(t, s)
	s.Tick()
	id := c.cn.id
	tok := s.sessions[id].token
	old := c.cn
	old.resumable = true
	s.leaves = append(s.leaves, old)
	s.admit() // parked
	if !c.parked {
		t.Fatal("not parked")
	}
	ident := old.identity
	x := claimingConn(s, 0)
	x.identity = ident
	y := claimingConn(s, 0)
	y.identity = ident
	// the handshakes, in claim order X then Y (Y's claim shuts X down)
	// No websocket here: both are marked closing, as a shutdown would.
	for _, cn := range []*conn{x, y} {
		cn := cn
		cn.once.Do(func() { cn.endCode.Store(1001); cn.cancel() })
	}
	if !s.claimSession(x, &wire.Resume{ClientID: id, Token: tok, Tick: 0}) || !s.claimSession(y, &wire.Resume{ClientID: id, Token: tok, Tick: 0}) {
		t.Fatal("claims refused")
	}
	// Y's handshake ends first
	s.joins = append(s.joins, y, x)
	s.admit()
	t.Logf("after joins: c.cn==x %v, c.cn==y %v, y ctx err %v", c.cn == x, c.cn == y, y.ctx.Err())
	// both connections end (X was shut down by Y's claim; Y by X's resumeClient)
	x.resumable, y.resumable = true, true
	x.left.Store(true)
	y.left.Store(true)
	s.leaves = append(s.leaves, x, y)
	s.admit()
	s.mu.Lock()
	ss := s.sessions[id]
	s.mu.Unlock()
	t.Logf("parked=%d session.conn==y %v", len(s.parked), ss != nil && ss.conn == y)
	s.expireParked(true)
	s.Tick()
	if len(s.parked) != 0 || s.byID[id] != nil {
		t.Errorf("expireParked(all) left the session: parked=%d byID present=%v sessions=%d", len(s.parked), s.byID[id] != nil, len(s.sessions))
	}
}

// TestResumeBoundWithClaims: sessions resumed twice at once and then
// departed still count against MaxResumable.
func TestResumeBoundWithClaims(t *testing.T) {
	s, _ := resumeServer(t, &Options{MaxResumable: 1})
	c := resumeClientOf(t, s)
	s.Tick()
	id, tok := c.cn.id, s.sessions[c.cn.id].token
	c.cn.resumable = true
	s.leaves = append(s.leaves, c.cn)
	s.admit()
	x, y := claimingConn(s, 0), claimingConn(s, 0)
	for _, cn := range []*conn{x, y} {
		cn := cn
		cn.once.Do(func() { cn.endCode.Store(1001); cn.cancel() })
	}
	s.claimSession(x, &wire.Resume{ClientID: id, Token: tok})
	s.claimSession(y, &wire.Resume{ClientID: id, Token: tok})
	s.joins = append(s.joins, y, x)
	s.admit()
	x.resumable, y.resumable = true, true
	s.leaves = append(s.leaves, x, y)
	s.admit()
	for range 5 {
		o := resumeClientOf(t, s)
		s.Tick()
		o.cn.resumable = true
		s.leaves = append(s.leaves, o.cn)
		s.admit()
	}
	t.Logf("MaxResumable=1, parked=%d", len(s.parked))
	if len(s.parked) > 1 {
		t.Errorf("count bound not enforced: %d parked", len(s.parked))
	}
}

// TestResumeAfterEntityUnsubscribe: an entity unsubscription narrows what
// the client receives of an entity still in scope, and the batch with the
// removal is lost: the resume sends the removal again.
func TestResumeAfterEntityUnsubscribe(t *testing.T) {
	reg := components.NewRegistry()
	components.RegisterStandard(reg)
	w := donburi.NewWorld()
	s := New(w, reg, &Options{})
	e := w.Create(components.Replicated, components.Position, components.Health)
	components.Health.SetValue(w.Entry(e), components.HealthData{Current: 1, Max: 1})
	pos, _ := reg.Of(components.Position)
	hp, _ := reg.Of(components.Health)
	c, stop := attachWriter(s, func([]byte) {})
	defer stop()
	s.joinSession(c.cn)
	c.typeSubs = 1 << uint(pos.Index())
	tickWritten(s)
	tag := components.Replicated.Get(w.Entry(e))
	s.subscribe(c, []wire.Sub{{Kind: wire.SubEntity, ID: uint64(tag.NetID), Gen: uint64(tag.Gen)}}, true)
	components.Health.SetValue(w.Entry(e), components.HealthData{Current: 2, Max: 2})
	for range 30 {
		tickWritten(s)
	}
	r := s.recs[tag.NetID]
	v := &r.views[r.viewIndex(c)]
	t0 := c.lastSent
	t.Logf("lastSent=%d tick=%d", c.lastSent, s.tick)
	t.Logf("t0=%d held=%b (health bit %d)", t0, v.held, hp.Index())
	s.subscribe(c, []wire.Sub{{Kind: wire.SubEntity, ID: uint64(tag.NetID), Gen: uint64(tag.Gen)}}, false)
	components.Position.SetValue(w.Entry(e), components.PositionData{X: 3})
	for range 30 {
		tickWritten(s) // the batch with the Removal of Health: lost
		if v := &r.views[r.viewIndex(c)]; v.sync > t0 {
			break
		}
	}
	v = &r.views[r.viewIndex(c)]
	t.Logf("after unsub tick %d: held=%b sync=%d", s.tick, v.held, v.sync)
	id, tok := c.cn.id, s.sessions[c.cn.id].token
	c.cn.resumable = true
	s.leaves = append(s.leaves, c.cn)
	s.admit()
	y := claimingConn(s, 0)
	if !s.claimSession(y, &wire.Resume{ClientID: id, Token: tok, Tick: uint64(t0)}) {
		t.Fatal("claim refused")
	}
	s.joins = append(s.joins, y)
	s.admit()
	v = &r.views[r.viewIndex(c)]
	t.Logf("after resume from %d: held=%b sync=%d pending=%v keep=%v", t0, v.held, v.sync, v.pending, c.keep)
	if !v.pending && v.held&(1<<uint(hp.Index())) == 0 {
		t.Errorf("entity kept, but the Health removal the lost batch carried will not be sent again: client keeps a stale Health")
	}
}

// tickWritten ticks s and waits until its writers took their batches.
func tickWritten(s *Server) {
	s.Tick()
	for _, c := range s.clients {
		for !c.parked && c.cn.busy.Load() {
			runtime.Gosched()
		}
	}
}

// TestResumeReaddedComponentRemovedAgain: a batch the client never
// applied removed a component, which came back while the session was
// parked and goes again in the tick that resumes it, before the entity's
// first batch on the new connection. The client still holds the component
// from before the lost batch, so that batch must carry its removal.
func TestResumeReaddedComponentRemovedAgain(t *testing.T) {
	reg := components.NewRegistry()
	components.RegisterStandard(reg)
	w := donburi.NewWorld()
	s := New(w, reg, &Options{})
	e := w.Create(components.Replicated, components.Position, components.Velocity)
	c, take, stop := attachCapture(s)
	defer stop()
	s.joinSession(c.cn)
	c.typeSubs = ^uint64(0) >> (64 - uint(len(s.comps)))
	vel, _ := reg.Of(components.Velocity)

	m := mirrorModel{}
	for range 3 {
		tickWritten(s)
	}
	m.apply(t, reg, take())
	tag := components.Replicated.Get(w.Entry(e))
	id := uint64(tag.NetID)
	if !m[id][uint64(vel.Index())] {
		t.Fatalf("the client was not sent Velocity: mirror %v", m)
	}
	t0 := c.lastSent // the last batch the client applied

	// Velocity goes (the batch with its removal is lost), the connection
	// ends, and Velocity comes back while the session is parked.
	w.Entry(e).RemoveComponent(components.Velocity)
	tickWritten(s)
	if c.lastSent <= t0 {
		t.Fatalf("no batch after tick %d", t0)
	}
	take()
	c.cn.resumable = true
	s.leaves = append(s.leaves, c.cn)
	s.admit()
	if !c.parked {
		t.Fatal("not parked")
	}
	components.Velocity.SetValue(addComponent(w, e, components.Velocity), components.VelocityData{X: 1})
	tickWritten(s)

	// The client resumes from t0; Velocity goes again in the tick that
	// admits the resume.
	y, takeY, stopY := captureConn(s)
	defer stopY()
	if !s.claimSession(y, &wire.Resume{ClientID: c.cn.id, Token: s.sessions[c.cn.id].token, Tick: uint64(t0)}) {
		t.Fatal("claim refused")
	}
	s.joins = append(s.joins, y)
	w.Entry(e).RemoveComponent(components.Velocity)
	for range 3 {
		tickWritten(s)
	}
	got := takeY()
	if len(got) == 0 {
		t.Fatal("no batch on the resumed connection")
	}
	m.apply(t, reg, got)
	if m[id][uint64(vel.Index())] {
		t.Errorf("the resumed client still holds Velocity, which the server removed: mirror of entity %d %v", id, m[id])
	}
}

// addComponent adds ct to e and returns e's entry.
func addComponent(w donburi.World, e donburi.Entity, ct donburi.IComponentType) *donburi.Entry {
	entry := w.Entry(e)
	entry.AddComponent(ct)
	return entry
}

// captureConn is a connection with no socket whose writer keeps a copy of
// every batch, to resume a session on; take returns and forgets the
// copies so far.
func captureConn(s *Server) (cn *conn, take func() [][]byte, stop func()) {
	cn = claimingConn(s, 0)
	var mu sync.Mutex
	var got [][]byte
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-cn.ctx.Done():
				return
			case b := <-cn.out:
				mu.Lock()
				got = append(got, bytes.Clone(b))
				mu.Unlock()
				cn.busy.Store(false)
			}
		}
	}()
	take = func() [][]byte {
		mu.Lock()
		defer mu.Unlock()
		b := got
		got = nil
		return b
	}
	return cn, take, func() { cn.cancel(); <-done }
}

// mirrorModel is what a client holds, as the batches it applied say: the
// components of each entity, by net id and component id.
type mirrorModel map[uint64]map[uint64]bool

// apply applies encoded batches in the protocol's order.
func (m mirrorModel) apply(t *testing.T, reg *components.Registry, msgs [][]byte) {
	t.Helper()
	for _, msg := range msgs {
		kind, body, _, err := wire.Open(msg, nil)
		if err != nil || kind != wire.KindBatch {
			t.Fatalf("not a batch: %v %v", kind, err)
		}
		var b wire.Batch
		if err := wire.DecodeBatch(body, testutil.RegistrySizer{Reg: reg}, &b); err != nil {
			t.Fatal(err)
		}
		if b.Resume {
			for id := range m {
				if !slices.Contains(b.Keep, id) {
					delete(m, id)
				}
			}
		}
		for _, x := range b.Exits {
			delete(m, x.ID)
		}
		for _, sp := range b.Spawns {
			m[sp.ID] = map[uint64]bool{}
			for _, cv := range sp.Comps {
				m[sp.ID][cv.Comp] = true
			}
		}
		for _, rm := range b.Removals {
			if m[rm.ID] != nil {
				delete(m[rm.ID], rm.Comp)
			}
		}
		for _, u := range b.Updates {
			if m[u.ID] == nil {
				t.Fatalf("update of entity %d, which the client does not hold", u.ID)
			}
			if u.Delta && !m[u.ID][u.Comp] {
				t.Fatalf("delta of component %d of entity %d, which the client does not hold", u.Comp, u.ID)
			}
			m[u.ID][u.Comp] = true
		}
	}
}
