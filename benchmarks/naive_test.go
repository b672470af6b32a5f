package benchmarks_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/yohamta/donburi"
	"github.com/yohamta/donburi/filter"

	"github.com/ebisync/ebisync/components"
	"github.com/ebisync/ebisync/internal/cputime"
	"github.com/ebisync/ebisync/internal/testutil"
)

// naiveServer is the baseline: what a game would write by hand without a
// replication library. Every tick it snapshots every entity and, for every
// client, json.Marshals the snapshot and hands it to that client's writer
// goroutine. There is no interest management, no delta and no change
// detection. Its structure otherwise matches ebisync's (a tick that hands
// bytes to one writer goroutine per connection), so the tick times of the
// two compare the same work: deciding and encoding what to send.
type naiveServer struct {
	ts    *httptest.Server
	query *donburi.Query
	snap  []naiveEntity

	mu    sync.Mutex
	conns []*naiveConn
	wg    sync.WaitGroup
}

// naiveEntity is the snapshot of one entity: its id and the same components
// ebisync's clients subscribe to in BenchmarkServerTick.
type naiveEntity struct {
	ID     uint32  `json:"id"`
	X      float64 `json:"x"`
	Y      float64 `json:"y"`
	Health int32   `json:"hp"`
	Max    int32   `json:"maxHp"`
}

type naiveConn struct {
	ws  *websocket.Conn
	out chan []byte
}

func startNaive() *naiveServer {
	n := &naiveServer{query: donburi.NewQuery(filter.Contains(components.Position, components.Health))}
	n.ts = httptest.NewServer(n)
	return n
}

func (n *naiveServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{CompressionMode: websocket.CompressionDisabled})
	if err != nil {
		return
	}
	n.wg.Add(1)
	defer n.wg.Done()
	ctx := ws.CloseRead(context.Background())
	c := &naiveConn{ws: ws, out: make(chan []byte, 1)}
	n.mu.Lock()
	n.conns = append(n.conns, c)
	n.mu.Unlock()
	for {
		select {
		case <-ctx.Done():
			return
		case msg := <-c.out:
			if err := ws.Write(ctx, websocket.MessageText, msg); err != nil {
				ws.CloseNow()
				return
			}
		}
	}
}

func (n *naiveServer) connections() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.conns)
}

// tick sends every client a JSON snapshot of the world and returns the
// bytes it handed to the writers.
func (n *naiveServer) tick(world donburi.World) (handed int) {
	n.snap = n.snap[:0]
	n.query.Each(world, func(e *donburi.Entry) {
		p := components.Position.Get(e)
		h := components.Health.Get(e)
		n.snap = append(n.snap, naiveEntity{ID: uint32(e.Entity().Id()), X: p.X, Y: p.Y, Health: h.Current, Max: h.Max})
	})
	n.mu.Lock()
	conns := n.conns
	n.mu.Unlock()
	for _, c := range conns {
		data, err := json.Marshal(n.snap)
		if err != nil {
			panic(err) // plain structs of numbers always marshal
		}
		c.out <- data // the previous snapshot was delivered: never blocks
		handed += len(data)
	}
	return handed
}

func (n *naiveServer) close(clients []*rawClient) {
	n.mu.Lock()
	conns := n.conns
	n.mu.Unlock()
	for _, c := range conns {
		c.ws.Close(websocket.StatusGoingAway, "")
	}
	for _, c := range clients {
		c.close()
	}
	n.wg.Wait()
	n.ts.Close()
}

// naiveResult is the baseline's measurement.
type naiveResult struct {
	ticks             int
	tickNanos         int64         // sim change + naive tick, summed
	tickCPU           time.Duration // the same in the calling thread's CPU time
	e2eNanos          int64         // the same until every client has its snapshot
	bytes             int64         // handed to writers, summed
	setup, warmUpTick time.Duration
}

// runNaive measures the baseline on the scenario's world for up to
// maxTicks ticks after one warm-up tick, fewer when ticks are slow (at
// least 3): see the package doc.
func runNaive(s *tickScenario, w *tickWorld, maxTicks int) (naiveResult, error) {
	var res naiveResult
	start := time.Now()
	n := startNaive()
	clients, err := connectAll(s.clients, func(ctx context.Context, _ int) (*rawClient, error) {
		return dialPlain(ctx, n.ts.URL)
	})
	if err != nil {
		n.close(nil)
		return res, err
	}
	defer n.close(clients)
	err = testutil.WaitUntil(30*time.Second, func() string { return fmt.Sprintf("%d naive connections", s.clients) }, func() bool {
		return n.connections() == s.clients
	})
	if err != nil {
		return res, err
	}
	res.setup = time.Since(start)

	var handed uint64
	deliver := func() error {
		return testutil.WaitUntil(60*time.Second, func() string {
			_, got := sums(clients)
			return fmt.Sprintf("naive delivery: handed %d bytes, clients got %d (reader error: %v)", handed, got, firstErr(clients))
		}, func() bool {
			_, got := sums(clients)
			return got == handed
		})
	}

	t0 := time.Now()
	w.step(s)
	handed += uint64(n.tick(w.world))
	if err := deliver(); err != nil {
		return res, err
	}
	res.warmUpTick = time.Since(t0)

	ticks := maxTicks
	if budget := 5 * time.Second; time.Duration(ticks)*res.warmUpTick > budget {
		ticks = max(3, int(budget/res.warmUpTick))
	}
	for range ticks {
		t0 := time.Now()
		c0, _ := cputime.Thread()
		w.step(s)
		b := n.tick(w.world)
		c1, _ := cputime.Thread()
		res.tickNanos += int64(time.Since(t0))
		res.tickCPU += c1 - c0
		handed += uint64(b)
		res.bytes += int64(b)
		if err := deliver(); err != nil {
			return res, err
		}
		res.e2eNanos += int64(time.Since(t0))
		res.ticks++
	}
	return res, nil
}
