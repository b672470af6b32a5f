package plugin

import (
	"math"
	"slices"

	"github.com/yohamta/donburi"

	"github.com/ebisync/ebisync/internal/wire"
)

// scope exit reasons, as on the wire.
const (
	reasonOutOfRange   = wire.ReasonOutOfRange
	reasonDespawned    = wire.ReasonDespawned
	reasonUnsubscribed = wire.ReasonUnsubscribed
	reasonFiltered     = wire.ReasonFiltered
)

// ClientInfo identifies a connected client to game hooks.
type ClientInfo struct {
	ID   uint64 // unique for the server's lifetime, never 0
	Name string // as the client announced itself
	Addr string // remote address
}

// client is the tick-side state of one connected client. Only the game
// goroutine touches it.
type client struct {
	s  *Server
	cn *conn

	typeSubs uint64            // mask of subscribed component ids
	entSubs  map[uint32]uint32 // individually subscribed net id → gen
	nsubs    int

	mode         wire.InterestMode
	cx, cy       float64
	followID     uint32
	followGen    uint32
	followEntity donburi.Entity // set by the server; resolved each tick
	enterR       float64
	leaveR       float64
	scanX, scanY float64
	lastScan     uint32
	needScan     bool

	slot  []int32 // by net id: index+1 into scope, 0 when absent
	scope []scopeEnt
	dirty []dirtyRef

	exits    []wire.Exit
	results  []wire.MutationResult
	controls []wire.ControlReply

	interval   uint32 // ticks between batches
	minIntv    uint32
	lastSent   uint32
	good       int
	busyRun    int
	lastSlow   int64
	batch      wire.Batch
	sizes      []int
	order      []dirtyRef
	rank       []uint32
	dirtyTmp   []dirtyRef
	prio       []float64
	spawnComps []wire.CompValue
}

// dirtyRef names an in-scope entity with something to send. idx is where
// its scope entry was when marked; an exit may move entries, so resolve
// checks it and falls back to the slot lookup.
type dirtyRef struct {
	id  uint32
	idx int32
}

func (c *client) resolve(d dirtyRef) *scopeEnt {
	if int(d.idx) < len(c.scope) && c.scope[d.idx].id == d.id {
		return &c.scope[d.idx]
	}
	return c.entry(d.id)
}

// scopeEnt is what the client holds of one in-scope entity.
type scopeEnt struct {
	id      uint32
	sync    uint32 // the client is up to date as of this tick
	held    uint64 // components the client holds
	since   uint32 // tick the entity entered scope
	dirty   bool
	pending bool // spawn not yet sent
}

func newClient(s *Server, cn *conn) *client {
	minIntv := uint32(s.opts.TickRate / s.opts.SendRate)
	if minIntv < 1 {
		minIntv = 1
	}
	c := &client{
		s:        s,
		cn:       cn,
		entSubs:  make(map[uint32]uint32),
		interval: minIntv,
		minIntv:  minIntv,
		needScan: true,
	}
	if s.opts.DefaultRadius > 0 {
		c.mode = wire.InterestPoint
		c.setRadius(s.opts.DefaultRadius)
	}
	c.lastSent = uint32(cn.welcomeTick)
	return c
}

func (c *client) info() ClientInfo { return ClientInfo{ID: c.cn.id, Name: c.cn.name, Addr: c.cn.addr} }

func (c *client) radiusMode() bool { return c.mode != wire.InterestGlobal }

func (c *client) setRadius(r float64) {
	if max := c.s.opts.MaxRadius; max > 0 && r > max {
		r = max
	}
	c.enterR = r
	c.leaveR = r * c.s.opts.Hysteresis
}

func (c *client) entry(id uint32) *scopeEnt {
	if int(id) >= len(c.slot) {
		return nil
	}
	i := c.slot[id]
	if i == 0 {
		return nil
	}
	return &c.scope[i-1]
}

func (c *client) has(id uint32) bool { return int(id) < len(c.slot) && c.slot[id] != 0 }

// enter puts r in the client's scope; its spawn goes with the next batch.
func (c *client) enter(r *entityRec) {
	if int(r.id) >= len(c.slot) {
		c.slot = slices.Grow(c.slot, len(c.s.recs)-len(c.slot))[:len(c.s.recs)]
	}
	c.scope = append(c.scope, scopeEnt{id: r.id, since: c.s.tick, pending: true, dirty: true})
	c.slot[r.id] = int32(len(c.scope))
	c.dirty = append(c.dirty, dirtyRef{id: r.id, idx: int32(len(c.scope) - 1)})
	r.viewers = append(r.viewers, c)
}

// exit takes r out of the client's scope. A client that was never sent the
// spawn is never sent the exit. The caller removes c from r.viewers unless
// it drops the whole list.
func (c *client) exit(r *entityRec, reason wire.ScopeReason) {
	i := c.slot[r.id] - 1
	if !c.scope[i].pending {
		c.exits = append(c.exits, wire.Exit{Reason: reason, ID: uint64(r.id)})
	}
	last := len(c.scope) - 1
	if int(i) != last {
		c.scope[i] = c.scope[last]
		c.slot[c.scope[i].id] = i + 1
	}
	c.scope = c.scope[:last]
	c.slot[r.id] = 0
}

func (c *client) markDirty(id uint32) {
	if int(id) >= len(c.slot) || c.slot[id] == 0 {
		return
	}
	i := c.slot[id] - 1
	if e := &c.scope[i]; !e.dirty {
		e.dirty = true
		c.dirty = append(c.dirty, dirtyRef{id: id, idx: i})
	}
}

func removeViewer(r *entityRec, c *client) {
	for i, v := range r.viewers {
		if v == c {
			last := len(r.viewers) - 1
			r.viewers[i] = r.viewers[last]
			r.viewers[last] = nil
			r.viewers = r.viewers[:last]
			return
		}
	}
}

func (c *client) forgetEntitySub(id uint32) {
	if _, ok := c.entSubs[id]; ok {
		delete(c.entSubs, id)
		c.nsubs--
	}
}

// recvMask is the set of components the client receives for r.
func (c *client) recvMask(r *entityRec) uint64 {
	if c.entitySubscribed(r) {
		return ^uint64(0)
	}
	return c.typeSubs
}

// entitySubscribed reports whether the client subscribed to r by itself.
func (c *client) entitySubscribed(r *entityRec) bool {
	if c.nsubs == 0 {
		return false
	}
	gen, ok := c.entSubs[r.id]
	return ok && gen == r.gen
}

func (c *client) inRange(r *entityRec, radius float64) bool {
	if c.mode == wire.InterestGlobal || !r.hasPos {
		return true
	}
	dx, dy := r.x-c.cx, r.y-c.cy
	return dx*dx+dy*dy <= radius*radius
}

// visibility decides whether r belongs in the client's scope, using the
// enter radius (entering) or the leave radius (staying). It returns the
// reason when it does not.
func (c *client) visibility(r *entityRec, staying bool) (bool, wire.ScopeReason) {
	if c.entitySubscribed(r) {
		return true, 0
	}
	if c.typeSubs == 0 {
		return false, reasonUnsubscribed
	}
	radius := c.enterR
	if staying {
		radius = c.leaveR
	}
	if !c.inRange(r, radius) {
		return false, reasonOutOfRange
	}
	if f := c.s.opts.Filter; f != nil {
		if !c.s.callFilter(f, c, r) {
			return false, reasonFiltered
		}
	}
	return true, 0
}

// closeness is 1 at the client's centre and 0 at its radius.
func (c *client) closeness(r *entityRec) float64 {
	if c.mode == wire.InterestGlobal || !r.hasPos || c.enterR <= 0 {
		return 1
	}
	d := math.Hypot(r.x-c.cx, r.y-c.cy) / c.leaveR
	if d > 1 {
		return 0
	}
	return 1 - d
}

// dropClient frees everything the client held: scope, subscriptions,
// controls, pending results.
func (s *Server) dropClient(c *client) {
	for i := range c.scope {
		if r := s.recs[c.scope[i].id]; r != nil {
			removeViewer(r, c)
		}
	}
	for id := range c.entSubs {
		if r := s.recs[id]; r != nil {
			r.subs = slices.DeleteFunc(r.subs, func(v *client) bool { return v == c })
		}
	}
	s.releaseClient(c)
	c.scope, c.slot, c.dirty, c.exits, c.results, c.controls, c.entSubs = nil, nil, nil, nil, nil, nil, nil
	c.nsubs = 0
	c.typeSubs = 0
	if i := slices.Index(s.clients, c); i >= 0 {
		s.clients = slices.Delete(s.clients, i, i+1)
	}
	delete(s.byID, c.cn.id)
	if s.opts.OnDisconnect != nil {
		s.opts.OnDisconnect(c.info())
	}
}
