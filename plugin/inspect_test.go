package plugin_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/yohamta/donburi"
	"github.com/yohamta/donburi/features/transform"

	"github.com/ebisync/ebisync/components"
	"github.com/ebisync/ebisync/internal/testutil"
	"github.com/ebisync/ebisync/netclient"
	"github.com/ebisync/ebisync/plugin"
)

// inspectorToken is the inspector's access token in these tests.
const inspectorToken = "s3cret-inspector-token"

// inspectorState is the part of api/state these tests read.
type inspectorState struct {
	Seq      uint64 `json:"seq"`
	Tick     uint32 `json:"tick"`
	TickTime struct {
		Ticks int     `json:"ticks"`
		AvgUs float64 `json:"avgUs"`
	} `json:"tickTime"`
	Server struct {
		Entities    int               `json:"entities"`
		Connections int               `json:"connections"`
		Mutations   map[string]uint64 `json:"mutations"`
		Refusals    map[string]uint64 `json:"refusals"`
		BytesOut    uint64            `json:"bytesOut"`
	} `json:"server"`
	Process struct {
		Heap       uint64 `json:"heapBytes"`
		Goroutines uint64 `json:"goroutines"`
	} `json:"process"`
	Connections []struct {
		ID       uint64 `json:"id"`
		Name     string `json:"name"`
		User     string `json:"user"`
		Addr     string `json:"addr"`
		Interest struct {
			Mode   string  `json:"mode"`
			Radius float64 `json:"radius"`
		} `json:"interest"`
		Subs struct {
			Components []string `json:"components"`
		} `json:"subs"`
		Scope     int      `json:"scope"`
		SendRate  float64  `json:"sendRate"`
		BytesOut  uint64   `json:"bytesOut"`
		RTTMs     *float64 `json:"rttMs"`
		RTTLastMs *float64 `json:"rttLastMs"`
		Refused   uint64   `json:"refused"`
	} `json:"connections"`
	Components []struct {
		Name     string `json:"name"`
		Count    int    `json:"count"`
		Writable bool   `json:"writable"`
	} `json:"components"`
	Entities struct {
		Total   int `json:"total"`
		Matched int `json:"matched"`
		List    []struct {
			ID      uint32 `json:"id"`
			Parent  uint32 `json:"parent"`
			Name    string `json:"name"`
			Context bool   `json:"context"`
		} `json:"list"`
	} `json:"entities"`
	Entity *struct {
		ID         uint32   `json:"id"`
		Gen        uint32   `json:"gen"`
		Live       bool     `json:"live"`
		Parent     uint32   `json:"parent"`
		Children   []uint32 `json:"children"`
		Components []struct {
			Name   string `json:"name"`
			Fields []struct {
				Path     string `json:"path"`
				Type     string `json:"type"`
				Value    any    `json:"value"`
				Editable bool   `json:"editable"`
			} `json:"fields"`
		} `json:"components"`
	} `json:"entity"`
	Log []struct {
		Seq       uint64 `json:"seq"`
		Kind      string `json:"kind"`
		User      string `json:"user"`
		Entity    uint32 `json:"entity"`
		Component string `json:"component"`
		Status    string `json:"status"`
		Message   string `json:"message"`
	} `json:"log"`
	History []struct {
		T       int64   `json:"t"`
		TickAvg float64 `json:"tickAvgUs"`
	} `json:"history"`
}

// field returns the value of a field of component comp of the state's
// entity.
func (st *inspectorState) field(comp, path string) (any, bool) {
	if st.Entity == nil {
		return nil, false
	}
	for _, c := range st.Entity.Components {
		if c.Name == comp {
			for _, f := range c.Fields {
				if f.Path == path {
					return f.Value, true
				}
			}
		}
	}
	return nil, false
}

// inspectorGame is a server with an Inspector, two authenticated clients
// and a small world: a ship with a turret as its transform child, and
// asteroids.
type inspectorGame struct {
	h        *harness
	insp     *plugin.Inspector
	its      *httptest.Server // the Inspector alone, at the root
	clients  []*clientLoop
	ship     components.ReplicatedData
	turret   components.ReplicatedData
	mu       sync.Mutex
	validate []plugin.ClientInfo // who Validate saw
}

func newInspectorGame(t *testing.T) *inspectorGame {
	t.Helper()
	reg, _, _ := mutationRegistry()
	components.RegisterTransform(reg)
	g := &inspectorGame{}
	g.h = newHarness(t, reg, &plugin.Options{
		TickRate:     100,
		PingInterval: 50 * time.Millisecond,
		Authenticate: func(r *http.Request) (plugin.Identity, error) {
			switch tok := plugin.BearerToken(r); tok {
			case "alice", "bob":
				return plugin.Identity{User: tok}, nil
			}
			return plugin.Identity{}, plugin.ErrUnauthenticated
		},
		// The operator may edit scores through the inspector; everything
		// else follows the default rules (the inspector owns nothing).
		Authorize: func(req *plugin.Request) error {
			if req.Client.Inspector && req.Client.Identity.User == "ops" && req.Component != nil && req.Component.Name() == "test.score" {
				return nil
			}
			return plugin.DefaultAuthorize(req)
		},
		Validate: func(req *plugin.Request) error {
			g.mu.Lock()
			g.validate = append(g.validate, req.Client)
			g.mu.Unlock()
			return nil
		},
	}, 10*time.Millisecond)
	g.insp = g.h.srv.Inspector(&plugin.InspectorOptions{
		Authenticate: plugin.StaticToken(inspectorToken, plugin.Identity{User: "ops"}),
		Interval:     200 * time.Millisecond,
	})
	g.its = httptest.NewServer(g.insp)
	g.h.do(func(w donburi.World) {
		ship := w.Entry(w.Create(components.Replicated, components.Position, components.Name, score, note, transform.Transform, components.Parent))
		components.Name.SetValue(ship, components.NameData{Value: "ship <b>alice</b>"})
		score.SetValue(ship, scoreData{Points: 10})
		turret := w.Entry(w.Create(components.Replicated, components.Position, components.Name, score, transform.Transform, components.Parent))
		components.Name.SetValue(turret, components.NameData{Value: "turret"})
		score.SetValue(turret, scoreData{Points: 1})
		transform.AppendChild(ship, turret, false)
		for i := range 20 {
			e := w.Entry(w.Create(components.Replicated, components.Position, components.Health))
			components.Position.SetValue(e, components.PositionData{X: float64(i * 10), Y: 5})
		}
	})
	g.h.ticks(2)
	g.ship = findTag(g.h, func(e *donburi.Entry) bool {
		return e.HasComponent(components.Name) && components.Name.Get(e).Value != "turret"
	})
	g.turret = findTag(g.h, func(e *donburi.Entry) bool {
		return e.HasComponent(components.Name) && components.Name.Get(e).Value == "turret"
	})
	for _, user := range []string{"alice", "bob"} {
		c := startClientLoop(t, g.h.url, reg, &netclient.Options{Token: user, Name: user + "'s client"})
		if err := c.c.SubscribeAll(); err != nil {
			t.Fatal(err)
		}
		g.clients = append(g.clients, c)
	}
	return g
}

func (g *inspectorGame) close() {
	for _, c := range g.clients {
		c.close()
	}
	g.h.close()
	g.its.Close()
}

// get fetches an api path of the inspector with token (none if empty).
func (g *inspectorGame) get(t *testing.T, path, token string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, g.its.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

// state fetches and decodes api/state with the query.
func (g *inspectorGame) state(t *testing.T, query string) inspectorState {
	t.Helper()
	resp, b := g.get(t, "/api/state?"+query, inspectorToken)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET api/state?%s: %s\n%s", query, resp.Status, b)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("GET api/state: Content-Type %q", ct)
	}
	var st inspectorState
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatalf("api/state is not the expected JSON: %v\n%s", err, b)
	}
	return st
}

// edit posts an edit with the token and returns the HTTP status and the
// decoded answer.
func (g *inspectorGame) edit(t *testing.T, token, body string) (int, plugin.EditResult) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, g.its.URL+"/api/edit", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var res plugin.EditResult
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(b, &res); err != nil {
			t.Fatalf("POST api/edit: %v\n%s", err, b)
		}
	} else {
		res.Message = string(b)
	}
	return resp.StatusCode, res
}

// TestInspectorState opens the inspector with a real HTTP client: it is
// refused without credentials, and its JSON shows the connections with
// their identities, the entities with their hierarchy and counts, an
// entity's values, the server's figures and the history; its event stream
// sends a snapshot, then newer ones as the game ticks.
func TestInspectorState(t *testing.T) {
	g := newInspectorGame(t)
	defer g.close()

	for _, tok := range []string{"", "wrong", "alice"} {
		resp, b := g.get(t, "/api/state", tok)
		if resp.StatusCode != http.StatusUnauthorized || strings.Contains(string(b), `"connections"`) {
			t.Errorf("GET api/state with token %q: %s %q, want 401 and no data", tok, resp.Status, b)
		}
	}
	if resp, _ := g.get(t, "/api/events", ""); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("GET api/events without a token: %s, want 401", resp.Status)
	}
	// The page itself holds no data and is served to anyone.
	resp, b := g.get(t, "/", "")
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), "ebisync") || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "default-src 'none'") {
		t.Errorf("GET /: %s %v", resp.Status, resp.Header)
	}
	for _, f := range []string{"/app.js", "/style.css"} {
		if resp, _ := g.get(t, f, ""); resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s: %s", f, resp.Status)
		}
	}

	// Each client's RTT shows once it answered a Ping (every 50 ms here).
	var st inspectorState
	testutil.Eventually(t, 10*time.Second, "both clients in the inspector's connections, with their RTT", func() bool {
		st = g.state(t, "")
		if len(st.Connections) != 2 {
			return false
		}
		for _, c := range st.Connections {
			if c.RTTMs == nil {
				return false
			}
		}
		return true
	})
	users := map[string]bool{}
	for _, c := range st.Connections {
		users[c.User] = true
		if !strings.HasSuffix(c.Name, "'s client") || c.Addr == "" || c.SendRate <= 0 {
			t.Errorf("connection %+v", c)
		}
		if c.RTTMs == nil || *c.RTTMs <= 0 || *c.RTTMs > 5000 || c.RTTLastMs == nil || *c.RTTLastMs <= 0 || *c.RTTLastMs > 5000 {
			t.Errorf("client %d: RTT %v ms, last %v ms; want both positive and under 5 s", c.ID, ptrVal(c.RTTMs), ptrVal(c.RTTLastMs))
		} else {
			t.Logf("client %d (%s): RTT %.3f ms, last %.3f ms", c.ID, c.User, *c.RTTMs, *c.RTTLastMs)
		}
		if len(c.Subs.Components) != len(st.Components) {
			t.Errorf("client %d subscribes to %v, want every component (SubscribeAll)", c.ID, c.Subs.Components)
		}
	}
	if !users["alice"] || !users["bob"] {
		t.Errorf("connections' users %v, want alice and bob", users)
	}
	if st.Server.Entities != 22 || st.Entities.Total != 22 || st.Server.Connections != 2 {
		t.Errorf("entities %d (listed %d), connections %d; want 22, 22, 2", st.Server.Entities, st.Entities.Total, st.Server.Connections)
	}
	counts := map[string]int{}
	for _, c := range st.Components {
		counts[c.Name] = c.Count
	}
	if counts["test.score"] != 2 || counts["ebisync.health"] != 20 || counts["ebisync.position"] != 22 || counts["ebisync.parent"] != 2 {
		t.Errorf("counts per component %v", counts)
	}
	if st.Process.Heap == 0 || st.Process.Goroutines == 0 || st.TickTime.Ticks == 0 {
		t.Errorf("process %+v, tick time %+v", st.Process, st.TickTime)
	}

	// The tree: the turret's parent is the ship; a search for the turret
	// lists the ship too, as its context.
	for _, e := range st.Entities.List {
		if e.ID == g.turret.NetID && e.Parent != g.ship.NetID {
			t.Errorf("the turret's parent is %d, want the ship %d", e.Parent, g.ship.NetID)
		}
	}
	found := g.state(t, "q=TURR")
	if found.Entities.Matched != 1 || len(found.Entities.List) != 2 || !found.Entities.List[0].Context || found.Entities.List[1].Name != "turret" {
		t.Errorf("search for the turret: %+v", found.Entities)
	}
	if byComp := g.state(t, "comp=ebisync.health&limit=5"); byComp.Entities.Matched != 20 || len(byComp.Entities.List) != 5 {
		t.Errorf("entities with ebisync.health, at most 5: matched %d, listed %d", byComp.Entities.Matched, len(byComp.Entities.List))
	}

	// An entity's values, copied out by the tick.
	ship := g.state(t, fmt.Sprintf("entity=%d", g.ship.NetID))
	if ship.Entity == nil || !ship.Entity.Live || ship.Entity.Gen != g.ship.Gen || len(ship.Entity.Children) != 1 || ship.Entity.Children[0] != g.turret.NetID {
		t.Fatalf("the ship: %+v", ship.Entity)
	}
	if v, _ := ship.field("test.score", "Points"); fmt.Sprint(v) != "10" {
		t.Errorf("the ship's test.score Points = %v, want 10", v)
	}
	if v, _ := ship.field("ebisync.name", "Value"); v != "ship <b>alice</b>" {
		t.Errorf("the ship's name = %v", v)
	}
	if gone := g.state(t, "entity=4000"); gone.Entity == nil || gone.Entity.Live {
		t.Errorf("an entity that does not exist: %+v", gone.Entity)
	}
	if resp, _ := g.get(t, "/api/state?entity=x", inspectorToken); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("GET api/state?entity=x: %s, want 400", resp.Status)
	}

	// Live updates: the event stream sends a snapshot at once, then newer
	// ones, each with the history samples since the previous.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, g.its.URL+"/api/events?access_token="+inspectorToken, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("GET api/events: %s %v", resp.Status, resp.Header)
	}
	events := readEvents(resp.Body)
	var prev inspectorState
	for i := range 3 {
		var ev inspectorState
		select {
		case data, ok := <-events:
			if !ok {
				t.Fatal("the event stream ended")
			}
			if err := json.Unmarshal(data, &ev); err != nil {
				t.Fatalf("event %d: %v", i, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no event %d within 10s", i)
		}
		if i > 0 && (ev.Seq <= prev.Seq || ev.Tick <= prev.Tick) {
			t.Errorf("event %d: seq %d tick %d after seq %d tick %d", i, ev.Seq, ev.Tick, prev.Seq, prev.Tick)
		}
		if i == 0 && len(ev.History) < 2 {
			t.Errorf("the first event carries %d history samples, want the history so far", len(ev.History))
		}
		if i > 0 && (len(ev.History) == 0 || ev.History[0].T <= prev.History[len(prev.History)-1].T) {
			t.Errorf("event %d's history does not follow the previous one's", i)
		}
		if len(ev.Connections) != 2 {
			t.Errorf("event %d: %d connections", i, len(ev.Connections))
		}
		prev = ev
	}
	cancel()
}

// readEvents returns the data of each Server-Sent Event of r.
func readEvents(r io.Reader) <-chan []byte {
	out := make(chan []byte, 16)
	go func() {
		defer close(out)
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 0, 64<<10), 8<<20)
		for sc.Scan() {
			if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				out <- []byte(data)
			}
		}
	}()
	return out
}

// TestInspectorEdit: an edit through the inspector reaches the World and
// the clients' mirrors with status Ok, under the inspector's identity (the
// game's hooks see it); the mutation path refuses what it refuses a
// client, and the page's log lists each answer; without credentials, from
// another site or not as JSON, an edit is refused before it is queued.
func TestInspectorEdit(t *testing.T) {
	g := newInspectorGame(t)
	defer g.close()
	id, gen := g.ship.NetID, g.ship.Gen
	points := func() int32 {
		var p int32
		g.h.do(func(w donburi.World) {
			for _, a := range w.Archetypes() {
				for _, e := range a.Entities() {
					if entry := w.Entry(e); entry.HasComponent(score) && components.Replicated.Get(entry).NetID == id {
						p = score.Get(entry).Points
					}
				}
			}
		})
		return p
	}
	body := func(comp, fields string) string {
		return fmt.Sprintf(`{"id":%d,"gen":%d,"component":%q,"fields":%s}`, id, gen, comp, fields)
	}

	// Refused before the mutation path.
	if code, _ := g.edit(t, "", body("test.score", `{"Points":50}`)); code != http.StatusUnauthorized {
		t.Errorf("an edit without credentials: %d, want 401", code)
	}
	if code, _ := g.edit(t, "alice", body("test.score", `{"Points":50}`)); code != http.StatusUnauthorized {
		t.Errorf("an edit with a player's token: %d, want 401", code)
	}
	for name, mod := range map[string]func(*http.Request){
		"as a form":      func(r *http.Request) { r.Header.Set("Content-Type", "application/x-www-form-urlencoded") },
		"from elsewhere": func(r *http.Request) { r.Header.Set("Origin", "https://evil.example") },
	} {
		req, _ := http.NewRequest(http.MethodPost, g.its.URL+"/api/edit", strings.NewReader(body("test.score", `{"Points":50}`)))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+inspectorToken)
		mod(req)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnsupportedMediaType && resp.StatusCode != http.StatusForbidden {
			t.Errorf("an edit %s: %s, want 415 or 403", name, resp.Status)
		}
	}
	for _, bad := range []string{`{"id":1`, `{"id":1,"gen":1,"component":"test.score","fields":{}}`, `{"id":1,"extra":2}`,
		body("test.score", `{"Points":"`+strings.Repeat("9", 70<<10)+`"}`)} {
		if code, _ := g.edit(t, inspectorToken, bad); code != http.StatusBadRequest {
			t.Errorf("edit %.60q: %d, want 400", bad, code)
		}
	}
	if p := points(); p != 10 {
		t.Fatalf("refused edits changed the World: Points = %d", p)
	}

	// Through the mutation path.
	cases := []struct {
		name, comp, fields, want string
	}{
		{"allowed", "test.score", `{"Points":77}`, "Ok"},
		{"refused by Authorize", "test.note", `{"Text":"hi"}`, "Forbidden"},
		{"not client-writable", "ebisync.position", `{"X":1}`, "Forbidden"},
		{"a value of the wrong type", "test.score", `{"Points":"many"}`, "ValidationError"},
		{"out of range", "test.score", `{"Points":5000000000}`, "ValidationError"},
		{"no such field", "test.score", `{"Goals":1}`, "ValidationError"},
		{"no such component", "test.nothing", `{"X":1}`, "NotFound"},
	}
	for _, tc := range cases {
		code, res := g.edit(t, inspectorToken, body(tc.comp, tc.fields))
		if code != http.StatusOK || res.Status != tc.want {
			t.Errorf("%s: %d %+v, want %s", tc.name, code, res, tc.want)
		}
	}
	if code, res := g.edit(t, inspectorToken, fmt.Sprintf(`{"id":%d,"gen":%d,"component":"test.score","fields":{"Points":1}}`, id, gen+1)); code != http.StatusOK || res.Status != "NotFound" {
		t.Errorf("an edit of a stale generation: %d %+v, want NotFound", code, res)
	}
	if p := points(); p != 77 {
		t.Fatalf("after the edits, Points = %d, want 77", p)
	}
	g.mu.Lock()
	var who plugin.ClientInfo
	for _, ci := range g.validate {
		if ci.Inspector {
			who = ci
		}
	}
	g.mu.Unlock()
	if !who.Inspector || who.Identity.User != "ops" || who.ID == 0 {
		t.Errorf("Validate saw %+v, want the inspector's identity", who)
	}
	for _, c := range g.clients {
		if c.c.ClientID() == who.ID {
			t.Errorf("the inspector's edits carry client %d's id", who.ID)
		}
	}
	// The clients' mirrors follow.
	for i, c := range g.clients {
		testutil.Eventually(t, 5*time.Second, fmt.Sprintf("client %d's mirror to show Points 77", i), func() bool {
			got := int32(-1)
			c.do(func(w donburi.World) {
				if e, ok := c.c.Entity(id); ok && w.Valid(e) {
					got = score.Get(w.Entry(e)).Points
				}
			})
			return got == 77
		})
	}
	// The inspector shows the new value, the answers in its log and the
	// statuses in its counts.
	st := g.state(t, fmt.Sprintf("entity=%d", id))
	testutil.Eventually(t, 5*time.Second, "the new value in the inspector", func() bool {
		st = g.state(t, fmt.Sprintf("entity=%d", id))
		v, _ := st.field("test.score", "Points")
		return fmt.Sprint(v) == "77"
	})
	statuses := map[string]int{}
	for _, e := range st.Log {
		if e.Kind == "edit" {
			statuses[e.Status]++
			if e.User != "ops" {
				t.Errorf("log entry %+v: want user ops", e)
			}
		}
	}
	if statuses["Ok"] != 1 || statuses["Forbidden"] != 2 || statuses["ValidationError"] != 3 || statuses["NotFound"] != 2 {
		t.Errorf("the log's edit statuses %v", statuses)
	}
	if st.Server.Mutations["Ok"] < 1 || st.Server.Mutations["Forbidden"] < 2 || st.Server.Mutations["ValidationError"] < 3 {
		t.Errorf("mutations by status %v", st.Server.Mutations)
	}
	var refusal bool
	for _, e := range st.Log {
		refusal = refusal || e.Kind == "refusal"
	}
	if !refusal {
		t.Errorf("the refused requests are not in the log: %+v", st.Log)
	}
}

// TestInspectorClientRequests: the log lists the clients' own mutations
// with their statuses, and the connections count their refused requests.
func TestInspectorClientRequests(t *testing.T) {
	g := newInspectorGame(t)
	defer g.close()
	c := g.clients[0]
	var local donburi.Entity
	testutil.Eventually(t, 5*time.Second, "the ship in the mirror", func() bool {
		var ok bool
		c.do(func(donburi.World) { local, ok = c.c.Entity(g.ship.NetID) })
		return ok
	})
	var ch <-chan netclient.MutationResult
	c.do(func(donburi.World) {
		ch = netclient.Mutate(c.c, local, testutil.Handle(c.c.Registry(), score), scoreData{Points: 5}, nil)
	})
	select {
	case res := <-ch:
		if res.Status.String() != "Forbidden" {
			t.Fatalf("a player's mutation of the ship it does not own: %v", res.Status)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no mutation result")
	}
	testutil.Eventually(t, 5*time.Second, "the refused mutation in the log and the connection", func() bool {
		st := g.state(t, "")
		logged := false
		for _, e := range st.Log {
			logged = logged || e.Kind == "mutation" && e.Status == "Forbidden" && e.User == "alice" && e.Entity == g.ship.NetID && e.Component == "test.score"
		}
		refused := false
		for _, cn := range st.Connections {
			refused = refused || cn.User == "alice" && cn.Refused == 1
		}
		return logged && refused
	})
}

// TestInspectorNeedsAccessHook: without InspectorOptions.Authenticate
// every api request is refused, whatever it carries.
func TestInspectorNeedsAccessHook(t *testing.T) {
	srv := plugin.New(donburi.NewWorld(), standardRegistry(), &plugin.Options{Logger: quietLogger(),
		Authenticate: func(*http.Request) (plugin.Identity, error) { return plugin.Identity{User: "anyone"}, nil }})
	defer srv.Close()
	ts := httptest.NewServer(srv.Inspector(nil))
	defer ts.Close()
	for _, p := range []string{"/api/state", "/api/events"} {
		resp, err := http.Get(ts.URL + p + "?access_token=x")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("GET %s: %s %q, want 403", p, resp.Status, b)
		}
	}
	resp, err := http.Post(ts.URL+"/api/edit", "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("POST api/edit: %s, want 403", resp.Status)
	}
	defer func() {
		if v := recover(); v == nil {
			t.Error("a second Inspector did not panic")
		}
	}()
	srv.Inspector(nil)
	t.Error(errors.New("unreachable"))
}

// ptrVal is *p, or nil for a nil p, for messages.
func ptrVal[T any](p *T) any {
	if p == nil {
		return nil
	}
	return *p
}
