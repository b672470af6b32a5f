package plugin

import (
	"bytes"
	"crypto/subtle"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"path"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ebisync/ebisync"
	"github.com/ebisync/ebisync/components"
	"github.com/ebisync/ebisync/internal/wire"
)

// An Inspector is a live view of a server for its operator: an HTTP
// handler serving a page (plain HTML, CSS and JavaScript embedded in the
// binary; no build step, nothing fetched from elsewhere) and the JSON
// behind it. The page shows the connections (identity, address,
// subscriptions, interest, send rate, traffic, round-trip time, queues,
// refused requests), the replicated entities as a searchable tree (the
// transform hierarchy where the game registers
// components.RegisterTransform) with counts per component, the synced
// values of the entity picked, with a form that edits them through the
// mutation path, the recent mutations, control requests and refusals with
// their statuses, and charts of the last minutes of tick time and its
// phases, traffic, process memory and CPU. A simulation's Inspector also
// lists the clients its gateways serve (ClientInfo.Gateway), with their
// gateway, identity, address, refusals and whether their session waits
// for a resume; their gateways hold their connections and scopes, so
// those figures are on each gateway's own Inspector.
//
// Mount it on the game's mux under a path ending in a slash:
//
//	insp := srv.Inspector(&plugin.InspectorOptions{Authenticate: plugin.StaticToken(token, plugin.Identity{User: "ops"})})
//	mux.Handle("/debug/ebisync/", insp)
//
// and open /debug/ebisync/?access_token=TOKEN. Under the path it serves:
//
//   - GET  ./                the page (and ./app.js, ./style.css);
//   - GET  ./api/state       the page's data as one JSON document;
//   - GET  ./api/events      the same, as Server-Sent Events, one event per
//     snapshot (event "state");
//   - POST ./api/edit        an edit: {"id", "gen", "component", "fields":
//     {"Path.To.Field": value}}, answered {"request", "status",
//     "message"} once the tick has applied it.
//
// The api paths take the query parameters entity (a net id whose values to
// include), q (a search of entity ids and names), comp (a component name
// the listed entities must have), limit (most entities listed, default
// 500), since (history samples after this Unix time in milliseconds) and
// logSince (log entries after this sequence number).
//
// Access: every api request passes InspectorOptions.Authenticate; without
// it every one is refused with 403, so an Inspector is never open by
// default. The page and its scripts are served to anyone (they hold no
// data). An edit must be a JSON POST and, when it carries an Origin, come
// from the page's own origin.
//
// Cost: while no page is open and no JSON request waits, the tick does
// nothing for the Inspector. While one is, the tick adds its duration to a
// few sums, and takes a snapshot at most once per InspectorOptions.Interval
// (copies of the clients' figures, every replicated entity's id, parent,
// components and name, and the watched entities' values); the page's data
// is built from that copy on the HTTP goroutines.
//
// Edits: an edit sets the named fields on a copy of the entity's current
// value and goes through the mutation path at the start of the next tick,
// as a client's mutation: the component must be ClientWritable, and
// Options.Authorize and Options.Validate decide, seeing a ClientInfo with
// Inspector set, the Identity the access hook returned, and an ID no
// network client has (DefaultAuthorize refuses it: the Inspector owns and
// controls nothing). Edits share one token bucket (Options.MutationRate and
// MutationBurst). They are counted in Stats.Mutations like any.
//
// An Inspector is safe for concurrent use.
type Inspector struct {
	s        *Server
	opts     InspectorOptions
	clientID uint64 // ClientInfo.ID of its edits
	comps    []compInfo
	started  time.Time
	// The registry bits of components.Name and components.Parent (0 when
	// not registered), which snapshots read from the World.
	nameBit, parentBit, readMask uint64

	demand  atomic.Int32 // open event streams and requests waiting for a snapshot
	viewers atomic.Int32 // open event streams
	nedits  atomic.Int32 // len(edits)

	// Held while a snapshot is finished (inspect_view.go), before mu.
	finMu   sync.Mutex
	prev    prevFigures
	seq     uint64 // snapshots finished
	metrics []metrics.Sample

	mu     sync.Mutex
	watch  map[uint32]int // net ids whose values were asked for → askers
	edits  []*edit
	raw    *inspSnap     // published by the tick, not yet finished
	cur    *inspView     // the last finished snapshot
	ready  chan struct{} // closed when the tick publishes a snapshot
	hist   []sample
	log    []logEntry // a ring of maxLog
	logSeq uint64
	tokens float64 // the edits' token bucket
	filled time.Time
	reqSeq uint64

	// Game goroutine only.
	acc      tickAcc
	lastSnap time.Time
	refused  map[uint64]uint64 // client id → requests refused while the Inspector existed
}

// InspectorOptions configures an Inspector. A nil *InspectorOptions means
// all defaults, which refuse every request. Server.Inspector copies it.
type InspectorOptions struct {
	// Authenticate decides who may use the Inspector: it runs for every
	// request to its api paths and returns who is asking, which edits
	// carry in ClientInfo.Identity. An error refuses the request with 401,
	// or 403 when it wraps ErrAccessDenied. Without it every request is
	// refused with 403. StaticToken admits one bearer token; a game with
	// accounts may call the hook it gives Options.Authenticate and admit
	// only its operators (players should not see every connection's
	// address). It runs on the request's goroutine and must be safe for
	// concurrent use.
	Authenticate func(r *http.Request) (Identity, error)

	// Interval is the least time between two snapshots. Default 500 ms;
	// shorter than 200 ms counts as 200 ms.
	Interval time.Duration

	// History is how far back the charts reach. Default 5 minutes.
	History time.Duration

	// MaxViewers bounds the pages open at once (event streams); more are
	// answered 503. Default 8.
	MaxViewers int
}

// EditResult is the answer to an Inspector's edit, as POST api/edit
// returns it in JSON: the status the mutation path gave it (an
// ebisync.Status name: "Ok", "Forbidden", …, or "NoReply" when the game
// did not tick in time) and its message. It is a plain value.
type EditResult struct {
	Request uint64 `json:"request"`
	Status  string `json:"status"`
	Message string `json:"message,omitempty"`
}

// compInfo is what the Inspector keeps of a registered component.
type compInfo struct {
	name     string
	writable bool
	custom   bool // a Marshaler: shown as bytes, not edited
}

// Limits of the Inspector's input.
const (
	maxEditBody   = 64 << 10 // bytes of one edit request
	maxEditFields = 64       // fields one edit sets
	maxPending    = 64       // edits waiting for the tick
	maxQuery      = 100      // bytes of a search
	maxLimit      = 5000     // entities one answer lists
	maxWatched    = 64       // entities whose values snapshots copy
	editWait      = 5 * time.Second
	stateWait     = 3 * time.Second
	sseKeepAlive  = 15 * time.Second
	sseWriteLimit = 10 * time.Second
	maxLog        = 256
)

// Inspector returns the server's Inspector, an http.Handler to mount on
// the game's mux (see Inspector). A server has at most one: a second call
// panics (a programmer error). It is safe for concurrent use.
func (s *Server) Inspector(opts *InspectorOptions) *Inspector {
	var o InspectorOptions
	if opts != nil {
		o = *opts
	}
	if o.Interval <= 0 {
		o.Interval = 500 * time.Millisecond
	}
	o.Interval = max(o.Interval, 200*time.Millisecond)
	if o.History <= 0 {
		o.History = 5 * time.Minute
	}
	if o.MaxViewers <= 0 {
		o.MaxViewers = 8
	}
	in := &Inspector{
		s:        s,
		opts:     o,
		clientID: s.nextID.Add(1),
		started:  time.Now(),
		watch:    make(map[uint32]int),
		ready:    make(chan struct{}),
		refused:  make(map[uint64]uint64),
		tokens:   float64(s.opts.MutationBurst),
		filled:   time.Now(),
		metrics: []metrics.Sample{
			{Name: "/memory/classes/heap/objects:bytes"},
			{Name: "/memory/classes/total:bytes"},
			{Name: "/sched/goroutines:goroutines"},
		},
	}
	for i, c := range s.comps {
		rc := s.reg.At(i)
		fs := rc.Fields()
		in.comps = append(in.comps, compInfo{
			name:     c.Name(),
			writable: c.Options().ClientWritable,
			custom:   len(fs) == 1 && strings.HasPrefix(fs[0].Type, "custom:"),
		})
	}
	if c, ok := s.reg.Of(components.Name); ok {
		in.nameBit = 1 << c.Index()
	}
	if c, ok := s.reg.Of(components.Parent); ok {
		in.parentBit = 1 << c.Index()
	}
	in.readMask = in.nameBit | in.parentBit
	if !s.insp.CompareAndSwap(nil, in) {
		panic("ebisync: Server.Inspector called twice; a server has one Inspector")
	}
	s.refused.observer.Store(in)
	return in
}

// StaticToken returns an InspectorOptions.Authenticate (or
// Options.Authenticate) that admits the requests whose bearer token
// (BearerToken: the Authorization header, else the access_token query
// parameter) is token, as id, and refuses the others with 401. It
// compares in constant time. It panics if token is empty. It and the
// function it returns are safe for concurrent use.
func StaticToken(token string, id Identity) func(r *http.Request) (Identity, error) {
	if token == "" {
		panic("ebisync: StaticToken with an empty token")
	}
	want := []byte(token)
	return func(r *http.Request) (Identity, error) {
		if subtle.ConstantTimeCompare([]byte(BearerToken(r)), want) != 1 {
			return Identity{}, fmt.Errorf("%w: a valid access token is required", ErrUnauthenticated)
		}
		return id, nil
	}
}

//go:embed inspect
var inspectFiles embed.FS

// ServeHTTP serves the page, its files and the api (see Inspector). It is
// safe for concurrent use.
func (in *Inspector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	h := w.Header()
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
	switch {
	case strings.HasSuffix(p, "/api/state"):
		in.api(w, r, http.MethodGet, in.serveState)
	case strings.HasSuffix(p, "/api/events"):
		in.api(w, r, http.MethodGet, in.serveEvents)
	case strings.HasSuffix(p, "/api/edit"):
		in.api(w, r, http.MethodPost, in.serveEdit)
	case strings.HasSuffix(p, "/"):
		in.serveFile(w, r, "index.html")
	case strings.HasSuffix(p, "/app.js"):
		in.serveFile(w, r, "app.js")
	case strings.HasSuffix(p, "/style.css"):
		in.serveFile(w, r, "style.css")
	default:
		http.NotFound(w, r)
	}
}

func (in *Inspector) serveFile(w http.ResponseWriter, r *http.Request, name string) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	b, err := inspectFiles.ReadFile("inspect/" + name)
	if err != nil {
		http.NotFound(w, r)
		return
	}
	h := w.Header()
	h.Set("Content-Type", mime.TypeByExtension(path.Ext(name)))
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	if r.Method == http.MethodHead {
		return
	}
	_, _ = w.Write(b)
}

// api checks the method and the credentials of an api request, and serves
// it with serve.
func (in *Inspector) api(w http.ResponseWriter, r *http.Request, method string, serve func(http.ResponseWriter, *http.Request, Identity)) {
	if r.Method != method {
		w.Header().Set("Allow", method)
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	id, err := in.authenticate(r)
	if err != nil {
		status := http.StatusUnauthorized
		if errors.Is(err, ErrAccessDenied) {
			status = http.StatusForbidden
		}
		in.note(logEntry{Kind: "refusal", Addr: in.remote(r), Status: "inspector " + strconv.Itoa(status), Message: truncate(err.Error(), 200)})
		http.Error(w, "ebisync inspector: "+err.Error(), status)
		return
	}
	in.s.mu.Lock()
	closed := in.s.closed
	in.s.mu.Unlock()
	if closed {
		http.Error(w, "ebisync server closed", http.StatusServiceUnavailable)
		return
	}
	serve(w, r, id)
}

// authenticate runs the access hook; without one, or when it panics, the
// request is refused.
func (in *Inspector) authenticate(r *http.Request) (id Identity, err error) {
	hook := in.opts.Authenticate
	if hook == nil {
		return Identity{}, fmt.Errorf("%w: no access hook (InspectorOptions.Authenticate)", ErrAccessDenied)
	}
	defer func() {
		if v := recover(); v != nil {
			in.s.log.Error("ebisync: the Inspector's Authenticate panicked", "panic", v)
			id, err = Identity{}, fmt.Errorf("%w: authentication failed", ErrUnauthenticated)
		}
	}()
	return hook(r)
}

func (in *Inspector) remote(r *http.Request) string {
	if in.s.opts.RemoteAddr != nil {
		return in.s.opts.RemoteAddr(r)
	}
	return r.RemoteAddr
}

// query is what an api request asks to see.
type query struct {
	entity   uint32
	q        string
	comp     int // registry index; -1: any
	limit    int
	since    int64
	logSince uint64
}

func (in *Inspector) parseQuery(r *http.Request) (query, error) {
	v := r.URL.Query()
	qr := query{comp: -1, limit: 500, q: strings.TrimSpace(clip(v.Get("q"), maxQuery))}
	if s := v.Get("entity"); s != "" {
		n, err := strconv.ParseUint(strings.TrimPrefix(s, "#"), 10, 32)
		if err != nil {
			return qr, fmt.Errorf("entity %q is not a net id", clip(s, 40))
		}
		qr.entity = uint32(n)
	}
	if s := v.Get("comp"); s != "" {
		qr.comp = -2 // no such component: nothing matches
		for i, c := range in.comps {
			if c.name == s {
				qr.comp = i
			}
		}
	}
	if s := v.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			return qr, fmt.Errorf("limit %q is not a count", clip(s, 40))
		}
		qr.limit = min(n, maxLimit)
	}
	if s := v.Get("since"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return qr, fmt.Errorf("since %q is not a time in milliseconds", clip(s, 40))
		}
		qr.since = n
	}
	if s := v.Get("logSince"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return qr, fmt.Errorf("logSince %q is not a sequence number", clip(s, 40))
		}
		qr.logSince = n
	}
	return qr, nil
}

// watchEntity asks snapshots for id's values until the returned function
// is called. Past maxWatched entities it asks nothing.
func (in *Inspector) watchEntity(id uint32) func() {
	if id == 0 {
		return func() {}
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if _, ok := in.watch[id]; !ok && len(in.watch) >= maxWatched {
		return func() {}
	}
	in.watch[id]++
	return func() {
		in.mu.Lock()
		defer in.mu.Unlock()
		if in.watch[id]--; in.watch[id] <= 0 {
			delete(in.watch, id)
		}
	}
}

// serveState answers the page's data as one JSON document, from a
// snapshot no older than the interval (waiting for the next one if need
// be, up to a few seconds).
func (in *Inspector) serveState(w http.ResponseWriter, r *http.Request, _ Identity) {
	qr, err := in.parseQuery(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	fresh := func(v *inspView) bool {
		if v == nil || time.Since(v.at) > in.opts.Interval {
			return false
		}
		if qr.entity == 0 {
			return true
		}
		_, ok := v.values[qr.entity]
		return ok || !v.live(qr.entity)
	}
	v := in.view()
	if !fresh(v) {
		defer in.watchEntity(qr.entity)()
		in.demand.Add(1)
		defer in.demand.Add(-1)
		deadline := time.NewTimer(stateWait)
		defer deadline.Stop()
	wait:
		for {
			in.mu.Lock()
			ready := in.ready
			in.mu.Unlock()
			if v = in.view(); fresh(v) {
				break
			}
			select {
			case <-ready:
			case <-deadline.C:
				break wait // the game is not ticking: answer what there is
			case <-r.Context().Done():
				return
			}
		}
	}
	if v == nil {
		http.Error(w, "ebisync inspector: no snapshot yet (is the game calling Tick?)", http.StatusServiceUnavailable)
		return
	}
	body, err := in.render(v, &qr)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(body)
}

// serveEvents streams the page's data, one event per snapshot, until the
// page goes away or the server closes.
func (in *Inspector) serveEvents(w http.ResponseWriter, r *http.Request, _ Identity) {
	qr, err := in.parseQuery(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if n := in.viewers.Add(1); int(n) > in.opts.MaxViewers {
		in.viewers.Add(-1)
		w.Header().Set("Retry-After", "5")
		http.Error(w, fmt.Sprintf("ebisync inspector: %d pages open already", in.opts.MaxViewers), http.StatusServiceUnavailable)
		return
	}
	defer in.viewers.Add(-1)
	defer in.watchEntity(qr.entity)()
	in.demand.Add(1)
	defer in.demand.Add(-1)

	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	write := func(b []byte) bool {
		_ = rc.SetWriteDeadline(time.Now().Add(sseWriteLimit))
		if _, err := w.Write(b); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	if !write([]byte("retry: 2000\n\n")) {
		return
	}
	keep := time.NewTicker(sseKeepAlive)
	defer keep.Stop()
	var last uint64
	var buf bytes.Buffer
	for {
		in.mu.Lock()
		ready := in.ready
		in.mu.Unlock()
		if v := in.view(); v != nil && v.seq != last {
			last = v.seq
			body, err := in.render(v, &qr)
			if err != nil {
				in.s.log.Error("ebisync: the Inspector failed to render its data", "err", err)
				return
			}
			// render moved qr past the history and log entries sent: the
			// page appends each event's to those it has.
			buf.Reset()
			fmt.Fprintf(&buf, "id: %d\nevent: state\ndata: ", v.seq)
			buf.Write(body)
			buf.WriteString("\n\n")
			if !write(buf.Bytes()) {
				return
			}
		}
		select {
		case <-ready:
		case <-keep.C:
			if !write([]byte(": keep-alive\n\n")) {
				return
			}
		case <-r.Context().Done():
			return
		case <-in.s.hsCtx.Done():
			return // Server.Close
		}
	}
}

// editRequest is the body of POST api/edit.
type editRequest struct {
	ID        uint32                     `json:"id"`
	Gen       uint32                     `json:"gen"`
	Component string                     `json:"component"`
	Fields    map[string]json.RawMessage `json:"fields"`
}

// serveEdit queues an edit for the tick and answers its result.
func (in *Inspector) serveEdit(w http.ResponseWriter, r *http.Request, who Identity) {
	if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct != "application/json" {
		http.Error(w, "ebisync inspector: an edit is a JSON body (Content-Type: application/json)", http.StatusUnsupportedMediaType)
		return
	}
	if err := checkOrigin(r, nil); err != nil {
		http.Error(w, "ebisync inspector: cross-site edit refused: "+err.Error(), http.StatusForbidden)
		return
	}
	var req editRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxEditBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		http.Error(w, "ebisync inspector: malformed edit: "+truncate(err.Error(), 200), http.StatusBadRequest)
		return
	}
	if _, err := dec.Token(); err != io.EOF {
		http.Error(w, "ebisync inspector: malformed edit: data after the JSON object", http.StatusBadRequest)
		return
	}
	if req.ID == 0 || len(req.Fields) == 0 || len(req.Fields) > maxEditFields {
		http.Error(w, fmt.Sprintf("ebisync inspector: an edit names an entity (id, gen) and 1 to %d fields", maxEditFields), http.StatusBadRequest)
		return
	}
	info := ClientInfo{ID: in.clientID, Name: "inspector", Addr: in.remote(r), Identity: who, Inspector: true}
	in.mu.Lock()
	in.reqSeq++
	e := &edit{request: in.reqSeq, id: req.ID, gen: req.Gen, comp: -1, who: info, done: make(chan EditResult, 1)}
	in.mu.Unlock()

	// Answers that need no tick: counted and logged as the tick would.
	refuse := func(st wire.Status, msg string) {
		in.s.stats.mutations[st].Add(1)
		res := EditResult{Request: e.request, Status: ebisyncStatus(st), Message: msg}
		in.note(logEntry{Kind: "edit", Client: info.ID, User: who.User, Addr: info.Addr, Entity: req.ID, Component: clip(req.Component, 64), Status: res.Status, Message: msg})
		writeJSON(w, http.StatusOK, res)
	}
	for i, c := range in.comps {
		if c.name == req.Component {
			e.comp = i
		}
	}
	if e.comp < 0 {
		refuse(wire.StatusNotFound, fmt.Sprintf("no component named %q", clip(req.Component, 64)))
		return
	}
	if in.comps[e.comp].custom {
		refuse(wire.StatusValidationError, fmt.Sprintf("%s has its own encoding: the inspector does not edit it", req.Component))
		return
	}
	typ := in.s.comps[e.comp].Type()
	for p, raw := range req.Fields {
		index, ft, err := editPath(typ, p)
		if err != nil {
			refuse(wire.StatusValidationError, err.Error())
			return
		}
		e.fields = append(e.fields, editField{path: p, index: index, typ: ft, raw: raw})
	}
	in.mu.Lock()
	now := time.Now()
	o := &in.s.opts
	in.tokens = min(in.tokens+now.Sub(in.filled).Seconds()*o.MutationRate, float64(o.MutationBurst))
	in.filled = now
	limited := in.tokens < 1 || len(in.edits) >= maxPending
	if !limited {
		in.tokens--
		in.edits = append(in.edits, e)
		in.nedits.Store(int32(len(in.edits)))
	}
	in.mu.Unlock()
	if limited {
		refuse(wire.StatusRateLimited, "edit rate limit exceeded")
		return
	}
	t := time.NewTimer(editWait)
	defer t.Stop()
	select {
	case res := <-e.done:
		writeJSON(w, http.StatusOK, res)
	case <-t.C:
		writeJSON(w, http.StatusGatewayTimeout, EditResult{Request: e.request, Status: ebisync.NoReply.String(), Message: fmt.Sprintf("the game did not tick within %s; the edit may still apply", editWait)})
	case <-r.Context().Done():
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

func ebisyncStatus(st wire.Status) string { return ebisync.Status(st).String() }

// publish hands a snapshot from the tick to the HTTP side.
func (in *Inspector) publish(sn *inspSnap) {
	in.mu.Lock()
	in.raw = sn
	close(in.ready)
	in.ready = make(chan struct{})
	in.mu.Unlock()
}

// logEntry is one line of the Inspector's log.
type logEntry struct {
	Seq       uint64 `json:"seq"`
	Time      int64  `json:"t"`    // Unix milliseconds
	Kind      string `json:"kind"` // "mutation", "control", "edit" or "refusal"
	Client    uint64 `json:"client,omitempty"`
	Name      string `json:"name,omitempty"`
	User      string `json:"user,omitempty"`
	Addr      string `json:"addr,omitempty"`
	Entity    uint32 `json:"entity,omitempty"`
	Component string `json:"component,omitempty"`
	Status    string `json:"status"`
	OK        bool   `json:"ok"`
	Message   string `json:"message,omitempty"`
}

// note appends e to the log. It is safe for concurrent use.
func (in *Inspector) note(e logEntry) {
	e.Time = time.Now().UnixMilli()
	e.Name = clip(e.Name, 64)
	e.Message = clip(e.Message, 300)
	in.mu.Lock()
	in.logSeq++
	e.Seq = in.logSeq
	if len(in.log) < maxLog {
		in.log = append(in.log, e)
	} else {
		in.log[(e.Seq-1)%maxLog] = e
	}
	in.mu.Unlock()
}

// noteRefusal notes a refused connection or dropped client; args are the
// refusal's log attributes.
func (in *Inspector) noteRefusal(reason, msg string, args []any) {
	e := logEntry{Kind: "refusal", Status: reason, Message: strings.TrimPrefix(msg, "refused ")}
	for i := 0; i+1 < len(args); i += 2 {
		switch args[i] {
		case "remote":
			e.Addr, _ = args[i+1].(string)
		case "client":
			e.Client, _ = args[i+1].(uint64)
		case "err":
			e.Message += ": " + fmt.Sprint(args[i+1])
		}
	}
	in.note(e)
}
