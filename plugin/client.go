package plugin

import (
	"math"
	"math/bits"
	"slices"
	"time"

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
	ID       uint64   // unique for the server's lifetime, never 0
	Name     string   // as the client announced itself: not verified
	Addr     string   // remote address (see Options.RemoteAddr)
	Identity Identity // as Options.Authenticate verified it; zero without the hook
	// Inspector is true for an edit made through the server's Inspector
	// (Server.Inspector), under the Identity its access hook returned;
	// never for a network client.
	Inspector bool
	// Gateway names the gateway that serves the client, on a simulation
	// whose clients connect to gateways (NewGateway, Upstream); "" for a
	// client of the Server's own connections. Identity then carries the
	// User the gateway's Authenticate hook verified, not its Data.
	Gateway string
}

// client is the tick-side state of one connected client. Only the game
// goroutine touches it.
type client struct {
	// Read for every changed entity the client sees or is near, so kept
	// together at the start. direct and usedNow are set by plan before
	// scopes are updated, so the changes of this tick can be written into
	// the batch as they are found (entity by entity, while the entity is
	// in cache) instead of being listed and looked up again per client.
	s        *Server
	mode     wire.InterestMode
	direct   bool   // the client gets an uncapped batch this tick: emit changes as they are found
	nsubs    int    // entity subscriptions
	typeSubs uint64 // mask of subscribed component ids
	cx, cy   float64
	enterR   float64
	leaveR   float64
	ref      *clientRef   // the client's entry in the client grid; nil when not in it
	usedNow  int          // bytes emitted into this tick's batch so far
	count    int          // entities in scope
	build    wire.Builder // spawns and updates of this tick's batch
	dirty    []dirtyRef

	cn      *conn
	entSubs map[uint32]uint32 // individually subscribed net id → gen

	followID     uint32
	followGen    uint32
	followEntity donburi.Entity // set by the server; resolved each tick
	scanX, scanY float64
	lastScan     uint32
	nextScan     uint32 // the first tick at which the client may be rescanned again
	needScan     bool

	// Session resume (resume.go).
	parked   bool      // the connection is gone; the session may be resumed
	parkedAt time.Time // when it was parked
	subsAt   uint32    // last tick a subscription change removed components
	resuming bool      // the next batch is a resumed session's first: it carries keep
	keep     []uint64  // the entities the resumed client keeps
	// keepAll: a session resumed from another gateway keeps every entity
	// in scope at its first batch, which waits for its cells until
	// holdUntil (upstream.go).
	keepAll   bool
	holdUntil time.Time
	touched   bool // a remote client listed for this tick's relay (remote.go)

	member []uint64 // bitset by net id: entities in scope (or pending spawn)

	exits    []wire.Exit
	msgs     []queuedMsg // the game's messages for the next batches
	msgBytes int         // their size, against Options.MessageQueueBytes
	results  []wire.MutationResult
	controls []wire.ControlReply

	interval uint32 // ticks between batches
	minIntv  uint32
	lastSent uint32
	lastVis  uint64 // what the client sees of lastSent (Server.visTick)
	good     int
	busyRun  int
	lastSlow int64
	batch    wire.Batch // exits, removals, results, control replies
	outBuf   []byte     // the encoded batch; reused once the writer is idle
	dirtyTmp []dirtyRef // chooseSized's second dirty list, swapped with dirty

	inputs inputState // the client's input stream (input.go)
}

// dirtyRef names an in-scope entity with something to send: its net id
// and where this client's view was in the entity's view list when marked.
// Removals may move views, so resolve checks and falls back to a scan.
type dirtyRef struct {
	id uint32
	vi int32
}

// view is what one client holds of one in-scope entity. Views live with
// the entity, so the clients of a changed entity are updated in one
// sequential pass over memory that is already in cache.
type view struct {
	c       *client
	sync    uint32 // the client is up to date as of this tick
	since   uint32 // tick the entity entered scope
	held    uint64 // components the client holds
	spawned uint32 // tick of the batch that carried its spawn
	dirty   bool
	pending bool // spawn not yet sent
	kept    bool // pending, but the client may hold it: a resumed session kept it (keepScope)
}

// viewIndex returns the index of c's view of r, or -1.
func (r *entityRec) viewIndex(c *client) int {
	for i := range r.views {
		if r.views[i].c == c {
			return i
		}
	}
	return -1
}

// resolve returns the record and the client's view named by d, or nils
// when the entity is gone or out of the client's scope.
func (c *client) resolve(d dirtyRef) (*entityRec, *view) {
	r := c.s.recs[d.id]
	if r == nil {
		return nil, nil
	}
	if int(d.vi) < len(r.views) && r.views[d.vi].c == c {
		return r, &r.views[d.vi]
	}
	if i := r.viewIndex(c); i >= 0 {
		return r, &r.views[i]
	}
	return nil, nil
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
	c.lastSent, c.lastVis = uint32(cn.welcomeTick), cn.welcomeVis
	return c
}

func (c *client) info() ClientInfo { return c.cn.info() }

func (cn *conn) info() ClientInfo {
	ci := ClientInfo{ID: cn.id, Name: cn.name, Addr: cn.addr, Identity: cn.identity, Inspector: cn.inspector}
	if cn.remote != nil {
		ci.Gateway = cn.remote.name
	}
	return ci
}

func (c *client) radiusMode() bool { return c.mode != wire.InterestGlobal }

func (c *client) setRadius(r float64) {
	if max := c.s.opts.MaxRadius; max > 0 && r > max {
		r = max
	}
	c.enterR = r
	c.leaveR = r * c.s.opts.Hysteresis
}

func (c *client) has(id uint32) bool {
	w := int(id >> 6)
	return w < len(c.member) && c.member[w]&(1<<(id&63)) != 0
}

func (c *client) setMember(id uint32) {
	w := int(id >> 6)
	if w >= len(c.member) {
		c.member = append(c.member, make([]uint64, w+1-len(c.member))...)
	}
	c.member[w] |= 1 << (id & 63)
	c.count++
}

func (c *client) clearMember(id uint32) {
	c.member[id>>6] &^= 1 << (id & 63)
	c.count--
}

// eachMember calls f with the net id of every entity in the client's
// scope. f may take entities out of scope.
func (c *client) eachMember(f func(id uint32)) {
	for w := range c.member {
		for m := c.member[w]; m != 0; m &= m - 1 {
			f(uint32(w<<6 | bits.TrailingZeros64(m)))
		}
	}
}

// enter puts r in the client's scope; its spawn goes with the next batch.
func (c *client) enter(r *entityRec) {
	r.views = append(r.views, view{c: c, since: c.s.tick, pending: true, dirty: true})
	c.setMember(r.id)
	c.dirty = append(c.dirty, dirtyRef{id: r.id, vi: int32(len(r.views) - 1)})
}

// exitAt takes r out of the scope of the client of view i. A client that
// was never sent the spawn is never sent the exit.
func exitAt(r *entityRec, i int, reason wire.ScopeReason) {
	v := &r.views[i]
	c := v.c
	if (!v.pending || v.kept) && !c.parked { // a resumed client is sent what it keeps instead
		c.exits = append(c.exits, wire.Exit{Reason: reason, ID: uint64(r.id)})
	}
	c.clearMember(r.id)
	last := len(r.views) - 1
	r.views[i] = r.views[last]
	r.views[last] = view{}
	r.views = r.views[:last]
}

// exit takes r out of the client's scope.
func (c *client) exit(r *entityRec, reason wire.ScopeReason) {
	if i := r.viewIndex(c); i >= 0 {
		exitAt(r, i, reason)
	}
}

// markDirty flags view i of r for the next batch of its client.
func markDirty(r *entityRec, i int) {
	v := &r.views[i]
	if !v.dirty {
		v.dirty = true
		v.c.dirty = append(v.c.dirty, dirtyRef{id: r.id, vi: int32(i)})
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
	c.eachMember(func(id uint32) {
		if r := s.recs[id]; r != nil {
			if i := r.viewIndex(c); i >= 0 {
				last := len(r.views) - 1
				r.views[i] = r.views[last]
				r.views[last] = view{}
				r.views = shrunk(r.views[:last])
			}
		}
	})
	for id := range c.entSubs {
		if int(id) >= len(s.recs) {
			continue // entSubs holds only live ids; checked all the same
		}
		if r := s.recs[id]; r != nil {
			r.subs = shrunk(slices.DeleteFunc(r.subs, func(v *client) bool { return v == c }))
		}
	}
	s.releaseClient(c)
	c.member, c.dirty, c.exits, c.results, c.controls, c.entSubs = nil, nil, nil, nil, nil, nil
	c.msgs, c.msgBytes = nil, 0
	c.count = 0
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

// shrunk returns s, moved to a smaller array when it uses a quarter of a
// large one, so that an entity once seen by many clients does not keep
// their room after they left.
func shrunk[T any](s []T) []T {
	if c := cap(s); c > 16 && len(s) <= c/4 {
		return append(make([]T, 0, 2*len(s)), s...)
	}
	return s
}
