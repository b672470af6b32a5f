package plugin

import (
	"encoding/hex"
	"encoding/json"
	"math/bits"
	"os"
	"reflect"
	"runtime"
	"runtime/metrics"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ebisync/ebisync/internal/wire"
)

// The Inspector's HTTP side: a snapshot from the tick is finished once
// (traffic rates, process figures, a history sample) into an inspView,
// which each request renders with its own query.

// inspView is a finished snapshot. It is not changed once finished.
type inspView struct {
	seq     uint64
	at      time.Time
	tick    uint32
	acc     tickAcc
	cost    time.Duration
	stats   Stats
	conns   []connJSON
	ents    []inspEntity // in net id order
	counts  []int        // entities per registered component
	values  map[uint32]*inspValues
	process processJSON
}

// live reports whether the snapshot saw entity id.
func (v *inspView) live(id uint32) bool {
	_, ok := v.find(id)
	return ok
}

// find returns the index of entity id in v.ents.
func (v *inspView) find(id uint32) (int, bool) {
	return slices.BinarySearchFunc(v.ents, id, func(e inspEntity, id uint32) int {
		switch {
		case e.id < id:
			return -1
		case e.id > id:
			return 1
		}
		return 0
	})
}

// prevFigures are the counters of the previous finished snapshot, for
// rates.
type prevFigures struct {
	at      time.Time
	cpu     time.Duration
	traffic Traffic
	per     map[uint64][2]uint64 // client id → bytes in, out
}

// view returns the latest snapshot, finishing the one the tick published
// last if need be; nil before the first. It is safe for concurrent use.
func (in *Inspector) view() *inspView {
	in.finMu.Lock()
	defer in.finMu.Unlock()
	in.mu.Lock()
	raw, cur := in.raw, in.cur
	in.raw = nil
	in.mu.Unlock()
	if raw == nil {
		return cur
	}
	v := in.finish(raw)
	in.mu.Lock()
	in.cur = v
	in.mu.Unlock()
	return v
}

// finish turns a snapshot of the tick into a view. in.finMu is held.
func (in *Inspector) finish(sn *inspSnap) *inspView {
	in.seq++
	v := &inspView{seq: in.seq, at: sn.at, tick: sn.tick, acc: sn.acc, cost: sn.cost, ents: sn.ents, values: sn.values}
	in.s.ReadStats(&v.stats)
	v.stats.PerClient = nil
	prev := in.prev
	secs := sn.at.Sub(prev.at).Seconds()
	rate := func(now, then uint64) float64 {
		if prev.at.IsZero() || secs <= 0 || now < then {
			return 0
		}
		return float64(now-then) / secs
	}

	// Process figures.
	cpu, cpuOK := processCPU()
	if cpuOK && !prev.at.IsZero() && secs > 0 {
		v.process.CPU = (cpu - prev.cpu).Seconds() / secs
	}
	metrics.Read(in.metrics)
	for _, m := range in.metrics {
		if m.Value.Kind() != metrics.KindUint64 {
			continue
		}
		switch m.Name {
		case "/memory/classes/heap/objects:bytes":
			v.process.Heap = m.Value.Uint64()
		case "/memory/classes/total:bytes":
			v.process.Go = m.Value.Uint64()
		case "/sched/goroutines:goroutines":
			v.process.Goroutines = m.Value.Uint64()
		}
	}
	v.process.RSS = residentBytes()
	v.process.Procs = runtime.GOMAXPROCS(0)

	// Connections, by id, with their rates.
	slices.SortFunc(sn.clients, func(a, b inspClient) int {
		switch {
		case a.info.ID < b.info.ID:
			return -1
		case a.info.ID > b.info.ID:
			return 1
		}
		return 0
	})
	per := make(map[uint64][2]uint64, len(sn.clients))
	for i := range sn.clients {
		c := &sn.clients[i]
		p := prev.per[c.info.ID]
		per[c.info.ID] = [2]uint64{c.bytesIn, c.bytesOut}
		v.conns = append(v.conns, in.connOf(c, rate(c.bytesIn, p[0]), rate(c.bytesOut, p[1])))
	}

	// Entities per component.
	v.counts = make([]int, len(in.comps))
	for i := range v.ents {
		for m := v.ents[i].mask; m != 0; m &= m - 1 {
			if k := bits.TrailingZeros64(m); k < len(v.counts) {
				v.counts[k]++
			}
		}
	}

	// The history sample.
	smp := sample{T: sn.at.UnixMilli(), CPU: v.process.CPU, Heap: v.process.Heap, Go: v.process.Go, RSS: v.process.RSS, Conns: v.stats.Connections}
	if n := sn.acc.ticks; n > 0 {
		smp.TickAvg = us(sn.acc.sum) / float64(n)
		smp.TickMax = us(sn.acc.max)
		smp.Inbound = us(sn.acc.phases[0]) / float64(n)
		smp.Detect = us(sn.acc.phases[1]) / float64(n)
		smp.Scopes = us(sn.acc.phases[2]) / float64(n)
		smp.Send = us(sn.acc.phases[3]) / float64(n)
	}
	smp.In = rate(v.stats.Traffic.BytesIn, prev.traffic.BytesIn)
	smp.Out = rate(v.stats.Traffic.BytesOut, prev.traffic.BytesOut)
	in.prev = prevFigures{at: sn.at, cpu: cpu, traffic: v.stats.Traffic, per: per}

	in.mu.Lock()
	cut := smp.T - in.opts.History.Milliseconds()
	drop := 0
	for drop < len(in.hist) && in.hist[drop].T < cut {
		drop++
	}
	if max := int(in.opts.History/in.opts.Interval) + 16; len(in.hist)-drop >= max {
		drop = len(in.hist) - max + 1
	}
	in.hist = append(in.hist[:0], in.hist[drop:]...)
	in.hist = append(in.hist, smp)
	in.mu.Unlock()
	return v
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// residentBytes returns the process's resident memory, where /proc tells
// it (Linux), else 0.
func residentBytes() uint64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, err := strconv.ParseUint(f[1], 10, 64)
	if err != nil {
		return 0
	}
	return pages * uint64(os.Getpagesize())
}

// connOf renders one client.
func (in *Inspector) connOf(c *inspClient, inRate, outRate float64) connJSON {
	j := connJSON{
		ID: c.info.ID, Name: clip(c.info.Name, 64), User: c.info.Identity.User, Addr: c.info.Addr,
		Scope: c.scope, InBps: inRate, OutBps: outRate,
		BytesIn: c.bytesIn, BytesOut: c.bytesOut, MsgsIn: c.msgsIn, MsgsOut: c.msgsOut,
		Writing: c.busy, Dirty: c.dirty, InboundBytes: c.inBytes, LastWriteUs: us(c.lastWrite), Refused: c.refused,
		Parked: c.parked,
	}
	if c.remote {
		j.Gateway = c.info.Gateway
		j.Interest.Mode = "gateway"
		j.Subs.Components = []string{}
		return j
	}
	if c.interval > 0 {
		j.SendRate = float64(in.s.opts.TickRate) / float64(c.interval)
	}
	if c.rtt > 0 {
		rtt, last := ms(c.rtt), ms(c.rttLast)
		j.RTTMs, j.RTTLastMs = &rtt, &last
	}
	j.Interest.Mode = "global"
	switch c.mode {
	case wire.InterestPoint:
		j.Interest.Mode = "point"
	case wire.InterestFollow:
		j.Interest.Mode = "follow"
		j.Interest.Follow = c.follow
	}
	if c.mode != wire.InterestGlobal {
		j.Interest.X, j.Interest.Y, j.Interest.Radius, j.Interest.Leave = c.cx, c.cy, c.enterR, c.leaveR
	}
	j.Subs.Components = []string{}
	for m := c.typeSubs; m != 0; m &= m - 1 {
		if k := bits.TrailingZeros64(m); k < len(in.comps) {
			j.Subs.Components = append(j.Subs.Components, in.comps[k].name)
		}
	}
	j.Subs.Entities = c.nsubs
	j.Subs.EntityIDs = c.entSubs
	return j
}

// The JSON of api/state and of each event of api/events.
type (
	stateJSON struct {
		Seq         uint64       `json:"seq"`
		Time        int64        `json:"t"` // Unix milliseconds
		Tick        uint32       `json:"tick"`
		TickRate    int          `json:"tickRate"`
		UptimeSec   float64      `json:"uptimeSec"`
		IntervalMs  int64        `json:"intervalMs"`
		HistorySec  float64      `json:"historySec"`
		SnapshotUs  float64      `json:"snapshotUs"` // the snapshot's time on the game goroutine
		Server      serverJSON   `json:"server"`
		TickTime    tickJSON     `json:"tickTime"`
		Process     processJSON  `json:"process"`
		Connections []connJSON   `json:"connections"`
		Components  []compJSON   `json:"components"`
		Entities    entitiesJSON `json:"entities"`
		Entity      *entityJSON  `json:"entity"`
		Log         []logEntry   `json:"log"`
		History     []sample     `json:"history"`
	}
	serverJSON struct {
		Entities      int               `json:"entities"`
		Connections   int               `json:"connections"`
		Clients       int               `json:"clients"`
		Subscriptions int               `json:"subscriptions"`
		ScopeEntries  int               `json:"scopeEntries"`
		Ticks         uint64            `json:"ticks"`
		Batches       uint64            `json:"batches"`
		SkippedBusy   uint64            `json:"skippedBusy"`
		Connects      uint64            `json:"connects"`
		BytesIn       uint64            `json:"bytesIn"`
		BytesOut      uint64            `json:"bytesOut"`
		MessagesIn    uint64            `json:"messagesIn"`
		MessagesOut   uint64            `json:"messagesOut"`
		BatchBytes    uint64            `json:"batchBytes"`
		BatchRawBytes uint64            `json:"batchRawBytes"`
		Mutations     map[string]uint64 `json:"mutations"`
		Refusals      map[string]uint64 `json:"refusals"`
		// A simulation's gateways heard from, and the clients they serve
		// (Stats.Gateways, Stats.RemoteClients).
		Gateways      int `json:"gateways,omitempty"`
		RemoteClients int `json:"remoteClients,omitempty"`
	}
	tickJSON struct {
		Ticks  int     `json:"ticks"` // since the previous snapshot
		AvgUs  float64 `json:"avgUs"`
		MaxUs  float64 `json:"maxUs"`
		LastUs float64 `json:"lastUs"`
		Phases struct {
			Inbound float64 `json:"inboundUs"`
			Detect  float64 `json:"detectUs"`
			Scopes  float64 `json:"scopesUs"`
			Send    float64 `json:"sendUs"`
		} `json:"phases"` // average per tick since the previous snapshot
	}
	processJSON struct {
		CPU        float64 `json:"cpu"`       // cores busy (user and system time per second)
		Heap       uint64  `json:"heapBytes"` // live and unswept heap objects
		Go         uint64  `json:"goBytes"`   // all memory the Go runtime mapped
		RSS        uint64  `json:"rssBytes"`  // resident (Linux; else 0)
		Goroutines uint64  `json:"goroutines"`
		Procs      int     `json:"gomaxprocs"`
	}
	connJSON struct {
		ID       uint64 `json:"id"`
		Name     string `json:"name"` // as the client announced itself: not verified
		User     string `json:"user"` // as Authenticate verified it
		Addr     string `json:"addr"`
		Interest struct {
			Mode   string  `json:"mode"` // "global", "point", "follow" or "gateway"
			X      float64 `json:"x"`
			Y      float64 `json:"y"`
			Radius float64 `json:"radius"`
			Leave  float64 `json:"leave"`
			Follow uint32  `json:"follow,omitempty"` // net id
		} `json:"interest"`
		Subs struct {
			Components []string `json:"components"`
			Entities   int      `json:"entities"`
			EntityIDs  []uint32 `json:"entityIds,omitempty"` // the first 64
		} `json:"subs"`
		Scope        int      `json:"scope"`    // entities in scope
		SendRate     float64  `json:"sendRate"` // batches per second at most, as the server paces it now
		InBps        float64  `json:"inBps"`
		OutBps       float64  `json:"outBps"`
		BytesIn      uint64   `json:"bytesIn"`
		BytesOut     uint64   `json:"bytesOut"`
		MsgsIn       uint64   `json:"msgsIn"`
		MsgsOut      uint64   `json:"msgsOut"`
		RTTMs        *float64 `json:"rttMs"`     // ClientStats.RTT; null until the client answered a Ping
		RTTLastMs    *float64 `json:"rttLastMs"` // ClientStats.RTTLast; null likewise
		Writing      bool     `json:"writing"`   // a batch is queued for or in its writer
		Dirty        int      `json:"dirty"`     // entities waiting for a later batch
		InboundBytes int      `json:"inboundBytes"`
		LastWriteUs  float64  `json:"lastWriteUs"`
		Refused      uint64   `json:"refused"` // mutations and control requests refused
		// Parked: the connection is gone and the session waits for a
		// resume (Options.ResumeWindow); its traffic is its last
		// connection's.
		Parked bool `json:"parked,omitempty"`
		// Gateway: a simulation's client that a gateway serves
		// (ClientInfo.Gateway). Its gateway runs its scope and holds its
		// connection, so interest mode is "gateway" and the scope, rates,
		// traffic and round trip are zero here; parked means that its
		// gateway let it go or went silent.
		Gateway string `json:"gateway,omitempty"`
	}
	compJSON struct {
		ID       int    `json:"id"`
		Name     string `json:"name"`
		Count    int    `json:"count"`
		Writable bool   `json:"writable"`
		Custom   bool   `json:"custom,omitempty"`
	}
	entitiesJSON struct {
		Total   int              `json:"total"`
		Matched int              `json:"matched"`
		List    []entityListJSON `json:"list"`
	}
	entityListJSON struct {
		ID      uint32 `json:"id"`
		Gen     uint32 `json:"gen"`
		Parent  uint32 `json:"parent,omitempty"`
		Name    string `json:"name,omitempty"`
		Comps   []int  `json:"comps"`
		Context bool   `json:"context,omitempty"` // listed as an ancestor of a match
	}
	entityJSON struct {
		ID         uint32          `json:"id"`
		Gen        uint32          `json:"gen"`
		Live       bool            `json:"live"`
		Parent     uint32          `json:"parent,omitempty"`
		Name       string          `json:"name,omitempty"`
		Children   []uint32        `json:"children"`
		Components []componentJSON `json:"components"`
	}
	componentJSON struct {
		ID       int          `json:"id"`
		Name     string       `json:"name"`
		Writable bool         `json:"writable"`
		Custom   bool         `json:"custom,omitempty"`
		Fields   []valueField `json:"fields,omitempty"`
		Raw      string       `json:"raw,omitempty"` // hex, of a Marshaler's encoding
	}
	// sample is one point of the charts.
	sample struct {
		T       int64   `json:"t"` // Unix milliseconds
		TickAvg float64 `json:"tickAvgUs"`
		TickMax float64 `json:"tickMaxUs"`
		Inbound float64 `json:"inboundUs"`
		Detect  float64 `json:"detectUs"`
		Scopes  float64 `json:"scopesUs"`
		Send    float64 `json:"sendUs"`
		In      float64 `json:"inBps"`
		Out     float64 `json:"outBps"`
		CPU     float64 `json:"cpu"`
		Heap    uint64  `json:"heapBytes"`
		Go      uint64  `json:"goBytes"`
		RSS     uint64  `json:"rssBytes"`
		Conns   int     `json:"connections"`
	}
)

// render builds the JSON of v for qr, and moves qr.since and qr.logSince
// past the history and log entries it includes.
func (in *Inspector) render(v *inspView, qr *query) ([]byte, error) {
	st := &v.stats
	j := stateJSON{
		Seq: v.seq, Time: v.at.UnixMilli(), Tick: v.tick, TickRate: in.s.opts.TickRate,
		UptimeSec:  v.at.Sub(in.started).Seconds(),
		IntervalMs: in.opts.Interval.Milliseconds(),
		HistorySec: in.opts.History.Seconds(),
		SnapshotUs: us(v.cost),
		Server: serverJSON{
			Entities: st.Entities, Connections: st.Connections, Clients: st.Clients,
			Subscriptions: st.Subscriptions, ScopeEntries: st.ScopeEntries,
			Ticks: st.Ticks, Batches: st.Batches, SkippedBusy: st.SkippedBusy, Connects: st.Connects,
			BytesIn: st.Traffic.BytesIn, BytesOut: st.Traffic.BytesOut,
			MessagesIn: st.Traffic.MessagesIn, MessagesOut: st.Traffic.MessagesOut,
			BatchBytes: st.BytesOut, BatchRawBytes: st.RawBytesOut,
			Mutations: make(map[string]uint64, len(st.Mutations)),
			Refusals:  st.Refusals,
			Gateways:  st.Gateways, RemoteClients: st.RemoteClients,
		},
		Process:     v.process,
		Connections: v.conns,
	}
	for k, n := range st.Mutations {
		j.Server.Mutations[k.String()] = n
	}
	if j.Connections == nil {
		j.Connections = []connJSON{}
	}
	if n := v.acc.ticks; n > 0 {
		j.TickTime.Ticks = n
		j.TickTime.AvgUs = us(v.acc.sum) / float64(n)
		j.TickTime.MaxUs = us(v.acc.max)
		j.TickTime.Phases.Inbound = us(v.acc.phases[0]) / float64(n)
		j.TickTime.Phases.Detect = us(v.acc.phases[1]) / float64(n)
		j.TickTime.Phases.Scopes = us(v.acc.phases[2]) / float64(n)
		j.TickTime.Phases.Send = us(v.acc.phases[3]) / float64(n)
	}
	j.TickTime.LastUs = us(st.TickTime)
	for i, c := range in.comps {
		j.Components = append(j.Components, compJSON{ID: i, Name: c.name, Count: v.counts[i], Writable: c.writable, Custom: c.custom})
	}
	j.Entities = v.list(qr)
	if qr.entity != 0 {
		j.Entity = in.entityOf(v, qr.entity)
	}

	in.mu.Lock()
	j.History = []sample{}
	for _, s := range in.hist {
		if s.T > qr.since && s.T <= j.Time {
			j.History = append(j.History, s)
		}
	}
	j.Log = []logEntry{}
	for _, e := range in.log {
		if e.Seq > qr.logSince {
			j.Log = append(j.Log, e)
		}
	}
	in.mu.Unlock()
	slices.SortFunc(j.Log, func(a, b logEntry) int {
		switch {
		case a.Seq < b.Seq:
			return -1
		case a.Seq > b.Seq:
			return 1
		}
		return 0
	})
	if n := len(j.History); n > 0 {
		qr.since = j.History[n-1].T
	}
	if n := len(j.Log); n > 0 {
		qr.logSince = j.Log[n-1].Seq
	}
	return json.Marshal(&j)
}

// list returns the entities qr asks for: those matching its search and
// component, in id order, at most qr.limit, with their ancestors (marked
// as context) so that the tree they make holds together.
func (v *inspView) list(qr *query) entitiesJSON {
	out := entitiesJSON{Total: len(v.ents), List: []entityListJSON{}}
	q := strings.ToLower(qr.q)
	qid, idErr := strconv.ParseUint(strings.TrimPrefix(q, "#"), 10, 32)
	picked := make(map[uint32]bool)
	var order []int
	for i := range v.ents {
		e := &v.ents[i]
		if qr.comp == -2 || qr.comp >= 0 && e.mask&(1<<qr.comp) == 0 {
			continue
		}
		if q != "" && !(idErr == nil && uint64(e.id) == qid) && !(e.name != "" && strings.Contains(strings.ToLower(e.name), q)) {
			continue
		}
		out.Matched++
		if len(order) < qr.limit {
			order = append(order, i)
			picked[e.id] = true
		}
	}
	ctx := make(map[uint32]bool)
	for _, i := range order {
		for p, depth := v.ents[i].parent, 0; p != 0 && depth < 64; depth++ {
			if picked[p] || ctx[p] {
				break
			}
			k, ok := v.find(p)
			if !ok {
				break
			}
			ctx[p] = true
			p = v.ents[k].parent
		}
	}
	for i := range v.ents {
		e := &v.ents[i]
		if !picked[e.id] && !ctx[e.id] {
			continue
		}
		item := entityListJSON{ID: e.id, Gen: e.gen, Parent: e.parent, Name: e.name, Context: ctx[e.id], Comps: []int{}}
		for m := e.mask; m != 0; m &= m - 1 {
			item.Comps = append(item.Comps, bits.TrailingZeros64(m))
		}
		out.List = append(out.List, item)
	}
	return out
}

// entityOf renders entity id: its place in the tree and, when the snapshot
// copied them, its synced values.
func (in *Inspector) entityOf(v *inspView, id uint32) *entityJSON {
	j := &entityJSON{ID: id, Children: []uint32{}, Components: []componentJSON{}}
	k, ok := v.find(id)
	if !ok {
		return j
	}
	e := &v.ents[k]
	j.Live, j.Gen, j.Parent, j.Name = true, e.gen, e.parent, e.name
	for i := range v.ents {
		if v.ents[i].parent == id {
			j.Children = append(j.Children, v.ents[i].id)
		}
	}
	vals := v.values[id]
	if vals == nil {
		return j
	}
	for _, c := range vals.comps {
		ci := in.comps[c.index]
		cj := componentJSON{ID: c.index, Name: ci.name, Writable: ci.writable, Custom: ci.custom}
		if c.raw != nil {
			cj.Raw = hex.EncodeToString(c.raw[:min(len(c.raw), maxShownString/2)])
		} else {
			cj.Fields = fieldsOf(reflect.NewAt(in.s.comps[c.index].Type(), c.val).Elem())
		}
		j.Components = append(j.Components, cj)
	}
	return j
}
