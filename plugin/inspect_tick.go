package plugin

import (
	"fmt"
	"reflect"
	"slices"
	"time"
	"unsafe"

	"github.com/ebisync/ebisync/components"
	"github.com/ebisync/ebisync/internal/wire"
)

// The Inspector's game-goroutine side: the snapshot Tick takes while an
// Inspector is open, the edits it applies through the mutation path, and
// the notes of requests for the Inspector's log. Everything here runs
// inside Tick; the snapshot copies what it reads (the values of the
// watched entities by the codec's Copy, which copies []byte fields deeply;
// strings are immutable), so nothing in it refers to the World's memory
// once the tick is over.

// tickAcc sums the ticks between two snapshots. Game goroutine only.
type tickAcc struct {
	ticks    int
	sum, max time.Duration
	phases   [4]time.Duration
}

// inspSnap is one snapshot, as the tick takes it.
type inspSnap struct {
	at      time.Time
	tick    uint32
	acc     tickAcc
	cost    time.Duration // the snapshot's own time on the game goroutine
	clients []inspClient
	ents    []inspEntity
	values  map[uint32]*inspValues // the watched entities
}

// inspClient is one client as a snapshot sees it.
type inspClient struct {
	info              ClientInfo
	mode              wire.InterestMode
	cx, cy            float64
	enterR, leaveR    float64
	follow            uint32
	typeSubs          uint64
	nsubs             int
	entSubs           []uint32 // the first maxShownSubs, in id order
	scope             int
	interval          uint32
	dirty             int
	busy              bool
	inBytes           int
	bytesIn, bytesOut uint64
	msgsIn, msgsOut   uint64
	lastWrite         time.Duration
	rtt, rttLast      time.Duration // 0: not measured yet
	refused           uint64
	parked            bool
	remote            bool // a simulation's remote client (remote.go)
}

// maxShownSubs bounds the entity subscriptions of one client a snapshot
// lists.
const maxShownSubs = 64

// inspEntity is one replicated entity as a snapshot sees it.
type inspEntity struct {
	id, gen, parent uint32
	mask            uint64 // registered components it has
	name            string // components.Name, clipped
}

// inspValues is a watched entity's synced values, copied out of the World.
type inspValues struct {
	id, gen uint32
	comps   []inspComp
}

// inspComp is one component value: a copy (of the component's Go type,
// entity fields as Refs), or the bytes of a Marshaler's encoding.
type inspComp struct {
	index int
	val   unsafe.Pointer
	raw   []byte
}

// maxShownName bounds an entity's name in a snapshot, in bytes.
const maxShownName = 80

// inspectTick adds the tick to the next snapshot's figures and takes the
// snapshot when in.opts.Interval has passed since the last one. It runs at
// the end of Tick, only while an Inspector is open.
func (s *Server) inspectTick(in *Inspector, start time.Time, d time.Duration) {
	if start.Sub(in.lastSnap) > 2*in.opts.Interval {
		in.acc = tickAcc{} // the figures of a time nobody looked
	}
	a := &in.acc
	a.ticks++
	a.sum += d
	a.max = max(a.max, d)
	for k := range a.phases {
		a.phases[k] += time.Duration(s.stats.phases[k].Load())
	}
	if start.Sub(in.lastSnap) < in.opts.Interval {
		return
	}
	in.lastSnap = start
	defer func() {
		// A game's Marshaler that panics costs the page its snapshot, not
		// the game its tick.
		if v := recover(); v != nil {
			s.log.Error("ebisync: panic while the Inspector's snapshot was taken", "panic", v)
		}
	}()
	t0 := time.Now()
	sn := s.snapshot(in)
	sn.cost = time.Since(t0)
	in.publish(sn)
}

// snapshot copies what the Inspector shows out of the server's state.
func (s *Server) snapshot(in *Inspector) *inspSnap {
	sn := &inspSnap{at: time.Now(), tick: s.tick, acc: in.acc}
	in.acc = tickAcc{}
	sn.clients = make([]inspClient, 0, len(s.clients))
	for _, c := range s.clients {
		cn := c.cn
		ic := inspClient{
			info:      c.info(),
			mode:      c.mode,
			cx:        c.cx,
			cy:        c.cy,
			enterR:    c.enterR,
			leaveR:    c.leaveR,
			follow:    c.followID,
			typeSubs:  c.typeSubs,
			nsubs:     c.nsubs,
			scope:     c.count,
			interval:  c.interval,
			dirty:     len(c.dirty),
			busy:      cn.busy.Load(),
			bytesIn:   cn.bytesIn.Load(),
			bytesOut:  cn.bytesOut.Load(),
			msgsIn:    cn.msgsIn.Load(),
			msgsOut:   cn.msgsOut.Load(),
			lastWrite: time.Duration(cn.writeNanos.Load()),
			refused:   in.refused[cn.id],
			parked:    c.parked,
		}
		ic.rtt, ic.rttLast = cn.pinger.times()
		for id := range c.entSubs {
			ic.entSubs = append(ic.entSubs, id)
		}
		slices.Sort(ic.entSubs)
		ic.entSubs = ic.entSubs[:min(len(ic.entSubs), maxShownSubs)]
		cn.inMu.Lock()
		ic.inBytes = cn.inBytes
		cn.inMu.Unlock()
		sn.clients = append(sn.clients, ic)
	}
	// A simulation's remote clients: their gateways hold their
	// connections and run their scopes, so a snapshot shows who they are,
	// where they connect and what the simulation refused them.
	for _, g := range s.remote.gws {
		for _, c := range g.clients {
			sn.clients = append(sn.clients, inspClient{info: c.info(), refused: in.refused[c.cn.id], remote: true})
		}
	}
	for _, c := range s.remote.parked {
		sn.clients = append(sn.clients, inspClient{info: c.info(), refused: in.refused[c.cn.id], remote: true, parked: true})
	}
	// Forget the counts of clients that left.
	if len(in.refused) > len(sn.clients) {
		for id := range in.refused {
			if _, ok := s.byID[id]; !ok {
				delete(in.refused, id)
			}
		}
	}

	// An entity's components are its record's mask; only those with a
	// registered Name or Parent are read from the World.
	sn.ents = make([]inspEntity, 0, len(s.recs))
	for _, r := range s.recs {
		if r == nil {
			continue
		}
		e := inspEntity{id: r.id, gen: r.gen, mask: r.present}
		if r.present&in.readMask != 0 && s.world.Valid(r.entity) {
			entry := s.world.Entry(r.entity)
			if r.present&in.nameBit != 0 {
				e.name = clip(components.Name.Get(entry).Value, maxShownName)
			}
			if r.present&in.parentBit != 0 {
				if p := s.recordOf(components.Parent.Get(entry).Entity); p != nil {
					e.parent = p.id
				}
			}
		}
		sn.ents = append(sn.ents, e)
	}

	in.mu.Lock()
	watched := make([]uint32, 0, len(in.watch))
	for id := range in.watch {
		watched = append(watched, id)
	}
	in.mu.Unlock()
	if len(watched) > 0 {
		sn.values = make(map[uint32]*inspValues, len(watched))
		for _, id := range watched {
			if v := s.copyValues(in, id); v != nil {
				sn.values[id] = v
			}
		}
	}
	return sn
}

// copyValues copies the synced values of the live entity with net id id.
func (s *Server) copyValues(in *Inspector, id uint32) *inspValues {
	if int(id) >= len(s.recs) || s.recs[id] == nil || !s.world.Valid(s.recs[id].entity) {
		return nil
	}
	r := s.recs[id]
	entry := s.world.Entry(r.entity)
	v := &inspValues{id: r.id, gen: r.gen}
	for i, c := range s.comps {
		if !entry.HasComponent(c.ComponentType()) {
			continue
		}
		live := entry.Component(c.ComponentType())
		ic := inspComp{index: i}
		if in.comps[i].custom {
			ic.raw = c.AppendFull(nil, live)
		} else {
			ic.val = c.New()
			c.Copy(ic.val, live)
			if c.HasRefs() {
				c.MapRefs(ic.val, s.refOfEntity)
			}
		}
		v.comps = append(v.comps, ic)
	}
	return v
}

// edit is an Inspector's edit waiting for the tick.
type edit struct {
	request uint64
	id, gen uint32
	comp    int // registry index
	fields  []editField
	who     ClientInfo
	done    chan EditResult // capacity 1
}

// editField is one field an edit sets: its indices in the component's Go
// type, its type, and the JSON of its new value.
type editField struct {
	path  string
	index []int
	typ   reflect.Type
	raw   []byte
}

// applyEdits applies the Inspector's queued edits, in arrival order,
// through the mutation path.
func (s *Server) applyEdits() {
	in := s.insp.Load()
	if in == nil || in.nedits.Load() == 0 {
		return
	}
	in.mu.Lock()
	edits := in.edits
	in.edits = nil
	in.nedits.Store(0)
	in.mu.Unlock()
	for _, e := range edits {
		res := s.applyEdit(in, e)
		in.note(logEntry{Kind: "edit", Client: e.who.ID, User: e.who.Identity.User, Addr: e.who.Addr,
			Entity: e.id, Component: s.comps[e.comp].Name(), Status: res.Status, OK: res.Status == "Ok", Message: res.Message})
		e.done <- res
	}
}

// applyEdit builds the mutation an edit asks for (the entity's current
// value with the edited fields set) and hands it to the mutation path,
// under a stand-in client that carries the Inspector's identity.
func (s *Server) applyEdit(in *Inspector, e *edit) (res EditResult) {
	c := &client{s: s, cn: &conn{s: s, id: e.who.ID, name: e.who.Name, addr: e.who.Addr, identity: e.who.Identity, inspector: true}}
	defer func() {
		if v := recover(); v != nil {
			s.log.Error("ebisync: panic while applying an Inspector edit", "panic", v)
			res = EditResult{Request: e.request, Status: ebisyncStatus(wire.StatusInternalError), Message: "internal error"}
		}
	}()
	comp := s.comps[e.comp]
	m := wire.Mutate{Request: e.request, ID: uint64(e.id), Gen: uint64(e.gen), Comp: uint64(e.comp)}
	if r := s.record(uint64(e.id), uint64(e.gen)); r != nil {
		entry := s.world.Entry(r.entity)
		if entry.HasComponent(comp.ComponentType()) {
			val := comp.New()
			comp.Copy(val, entry.Component(comp.ComponentType()))
			if comp.HasRefs() {
				comp.MapRefs(val, s.refOfEntity) // as a client would send them
			}
			rv := reflect.NewAt(comp.Type(), val).Elem()
			for _, f := range e.fields {
				nv := reflect.New(f.typ)
				if err := jsonUnmarshal(f.raw, nv.Interface()); err != nil {
					s.result(c, e.request, wire.StatusValidationError, fmt.Sprintf("field %s: %v", f.path, err))
					return resultOf(c)
				}
				fv := rv
				if f.index != nil {
					fv = rv.FieldByIndex(f.index)
				}
				fv.Set(nv.Elem())
			}
			m.Value = comp.AppendFull(nil, val)
		}
	}
	s.mutate(c, &m) // answers NotFound itself for an entity or component that is gone
	return resultOf(c)
}

// resultOf returns the answer the mutation path gave the stand-in client.
func resultOf(c *client) EditResult {
	r := c.results[len(c.results)-1]
	return EditResult{Request: r.Request, Status: ebisyncStatus(r.Status), Message: r.Message}
}

// noteRequest notes the answer to a client's mutation or control request
// in the Inspector's log, and counts the refused ones per client.
func (s *Server) noteRequest(c *client, m *inbound) {
	in := s.insp.Load()
	if in == nil {
		return
	}
	switch m.kind {
	case wire.KindMutate:
		if len(c.results) == 0 {
			return
		}
		r := c.results[len(c.results)-1]
		name := ""
		if m.mutate.Comp < uint64(len(s.comps)) {
			name = s.comps[m.mutate.Comp].Name()
		}
		ok := r.Status == wire.StatusOk
		if !ok {
			in.refused[c.cn.id]++
		}
		in.note(logEntry{Kind: "mutation", Client: c.cn.id, Name: c.cn.name, User: c.cn.identity.User,
			Entity: uint32(min(m.mutate.ID, 1<<32-1)), Component: name, Status: ebisyncStatus(r.Status), OK: ok, Message: r.Message})
	case wire.KindControl:
		if len(c.controls) == 0 {
			return
		}
		r := c.controls[len(c.controls)-1]
		ok := r.Result == wire.ControlTaken || r.Result == wire.ControlReleased
		if !ok {
			in.refused[c.cn.id]++
		}
		op := "take"
		if m.control.Op == wire.ControlRelease {
			op = "release"
		}
		msg := op
		if r.Holder != 0 {
			msg = fmt.Sprintf("%s (holder: client %d)", op, r.Holder)
		}
		in.note(logEntry{Kind: "control", Client: c.cn.id, Name: c.cn.name, User: c.cn.identity.User,
			Entity: uint32(min(m.control.ID, 1<<32-1)), Status: controlName(r.Result), OK: ok, Message: msg})
	}
}

// noteLimited notes the requests of a client that its token bucket
// refused.
func (s *Server) noteLimited(c *client, limited []limitedReq) {
	in := s.insp.Load()
	if in == nil || len(limited) == 0 {
		return
	}
	in.refused[c.cn.id] += uint64(len(limited))
	kind := "mutation"
	if limited[0].control {
		kind = "control"
	}
	msg := "over the rate limit"
	if len(limited) > 1 {
		msg = fmt.Sprintf("%d requests over the rate limit", len(limited))
	}
	in.note(logEntry{Kind: kind, Client: c.cn.id, Name: c.cn.name, User: c.cn.identity.User,
		Status: ebisyncStatus(wire.StatusRateLimited), Message: msg})
}

// controlName names a control result.
func controlName(r wire.ControlResult) string {
	switch r {
	case wire.ControlTaken:
		return "Taken"
	case wire.ControlReleased:
		return "Released"
	case wire.ControlAlreadyControlled:
		return "AlreadyControlled"
	case wire.ControlNotControlled:
		return "NotControlled"
	case wire.ControlNotFound:
		return "NotFound"
	case wire.ControlForbidden:
		return "Forbidden"
	case wire.ControlRateLimited:
		return "RateLimited"
	}
	return fmt.Sprintf("ControlResult(%d)", r)
}
