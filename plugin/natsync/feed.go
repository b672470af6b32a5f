package natsync

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/ebisync/ebisync/plugin"
)

// Feed limits.
const (
	// FeedBuffer is the capacity of the channel that every subscription
	// of a Feed delivers into. nats.go drops a message when it is full
	// (a slow consumer): FeedStats.Dropped counts them.
	FeedBuffer = 1 << 16

	// MaxSnapshotRequests bounds a Feed's snapshot requests in flight;
	// the others wait their turn in order.
	MaxSnapshotRequests = 16

	// SnapshotTimeout bounds one snapshot request (the flush that puts
	// the cell's subscription in place, then the request). The
	// simulation answers at the end of its next tick.
	SnapshotTimeout = 2 * time.Second

	// SnapshotMaxBackoff caps the wait before asking a cell's snapshot
	// again after a request timed out, failed (no responders, a
	// connection moving to another node) or was answered empty (the
	// simulation refused it: too many requests waiting, or closed). The
	// wait starts at 50 ms and doubles up to this cap.
	SnapshotMaxBackoff = 2 * time.Second
)

// A Feed is a plugin.Feed over NATS: it brings a gateway (plugin.NewGateway)
// the chunks of the cells the gateway follows, the tick markers, and the
// cells' snapshots, from a simulation that publishes them with a Publisher
// on the same world.
//
// Every subscription of a Feed (the tick subject's and one per followed
// cell) delivers into one channel, so the chunks and markers reach the
// gateway in the order NATS delivered them: a tick's marker after the
// tick's chunks. One goroutine reads the channel and hands each message
// to the gateway (Server.FeedChunk, Server.FeedTickEnd).
//
// Follow and Unfollow run on the gateway's game goroutine and do not
// block on the network: Follow subscribes to the cell's subject (nats.go
// only buffers the SUB) and queues the snapshot request. Goroutines, at
// most MaxSnapshotRequests at a time, flush the connection (so that the
// subscription is in place at the server before the request leaves),
// send the request, and hand the answer to Server.FeedSnapshot. A request
// that times out, fails or is answered empty is sent again, with a
// backoff that grows to SnapshotMaxBackoff, for as long as the gateway
// follows the cell under the same token.
//
// A message lost on the way (a NATS node that went away with messages in
// flight, or one nats.go dropped because the channel was full) is
// repaired by the gateway: the cell's next chunk names the tick of the
// chunk before, the gateway sees the gap and follows its cells again,
// each from a fresh snapshot. FeedStats counts what was dropped.
type Feed struct {
	nc       *nats.Conn
	world    string
	tickSubj string
	snapSubj string
	joinSubj string
	reqSubj  string
	relaySub *nats.Subscription // the gateway's relay subject, from Attach
	msgs     chan *nats.Msg
	tickSub  *nats.Subscription

	ctx    context.Context // cancelled by Close: ends the requests in flight
	cancel context.CancelFunc
	stop   chan struct{} // closed by Close: ends the reader
	wg     sync.WaitGroup

	mu       sync.Mutex
	gw       *plugin.Server
	closed   bool
	subs     map[plugin.Cell]*nats.Subscription
	tokens   map[plugin.Cell]uint64 // the token of each followed cell
	queue    []snapJob              // snapshot requests waiting for a worker
	workers  int                    // snapshot goroutines running
	inflight int                    // requests they serve
	dropped  uint64                 // by the subscriptions already gone
	lastErr  error
	subFails uint64

	chunks, ticks, tickGaps, malformed atomic.Uint64
	relays, upErrors                   atomic.Uint64
	snapshots, retries                 atomic.Uint64
	lastTick                           atomic.Uint64
}

var (
	_ plugin.Feed     = (*Feed)(nil)
	_ plugin.Upstream = (*Feed)(nil)
)

type snapJob struct {
	cell  plugin.Cell
	token uint64
}

// FeedStats is a snapshot of a Feed's counters.
type FeedStats struct {
	// Cells is the number of cells followed.
	Cells int
	// Chunks and Ticks count the chunks and tick markers handed to the
	// gateway; TickGaps counts the times a tick marker was not the one
	// after the marker before (markers, and perhaps chunks, were lost).
	Chunks, Ticks, TickGaps uint64
	// Malformed counts the tick markers that did not decode.
	Malformed uint64
	// Snapshots counts the snapshots handed to the gateway, and
	// SnapshotRetries the requests sent again (timed out, failed, or
	// answered empty). SnapshotsWaiting is the follows whose snapshot is
	// asked for or queued.
	Snapshots, SnapshotRetries uint64
	SnapshotsWaiting           int
	// Relays counts the simulation's answer envelopes handed to the
	// gateway, and UpstreamErrors the requests envelopes whose publish
	// failed (their requests go unanswered).
	Relays, UpstreamErrors uint64
	// Dropped counts the messages nats.go dropped because the Feed's
	// channel was full (a slow consumer: the gateway's reader fell
	// behind). Backlog is the messages in the channel now.
	Dropped uint64
	Backlog int
	// SubscribeErrors counts the subscriptions that failed (a closed
	// connection); such a cell never becomes ready. LastError is the
	// last of those errors, or nil.
	SubscribeErrors uint64
	LastError       error
}

// NewFeed returns a Feed of world's chunks on nc. It subscribes to the
// world's tick markers at once; give the Feed to plugin.NewGateway, then
// the gateway to Attach before its first Tick. It is safe for concurrent
// use.
func NewFeed(nc *nats.Conn, world string) (*Feed, error) {
	if err := checkWorld(world); err != nil {
		return nil, err
	}
	f := &Feed{
		nc:       nc,
		world:    world,
		tickSubj: TickSubject(world),
		snapSubj: SnapshotSubject(world),
		joinSubj: JoinSubject(world),
		reqSubj:  RequestsSubject(world),
		msgs:     make(chan *nats.Msg, FeedBuffer),
		stop:     make(chan struct{}),
		subs:     map[plugin.Cell]*nats.Subscription{},
		tokens:   map[plugin.Cell]uint64{},
	}
	sub, err := nc.ChanSubscribe(f.tickSubj, f.msgs)
	if err != nil {
		return nil, err
	}
	f.tickSub = sub
	f.ctx, f.cancel = context.WithCancel(context.Background())
	return f, nil
}

// Attach gives the Feed the gateway it feeds, and starts the goroutine
// that hands it the messages. Call it once, after plugin.NewGateway and
// before the gateway's first Tick. Attach after Close does nothing.
func (f *Feed) Attach(gw *plugin.Server) {
	if gw == nil || !gw.IsGateway() {
		panic("natsync: Feed.Attach needs a gateway (plugin.NewGateway)")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.gw != nil {
		panic("natsync: Feed.Attach called twice")
	}
	if f.closed {
		return
	}
	f.gw = gw
	if sub, err := f.nc.ChanSubscribe(RelaySubject(f.world, gw.GatewayName()), f.msgs); err == nil {
		f.relaySub = sub
	} else {
		f.subFails++
		f.lastErr = err
	}
	f.wg.Add(1)
	go f.read()
	f.startWorkers()
}

// Join asks the simulation to admit one of the gateway's clients
// (plugin.Upstream): a NATS request on the join subject. It is safe for
// concurrent use: the gateway calls it from each client's handshake.
func (f *Feed) Join(ctx context.Context, req []byte) ([]byte, error) {
	m, err := f.nc.RequestWithContext(ctx, f.joinSubj, req)
	if err != nil {
		return nil, err
	}
	return m.Data, nil
}

// Requests publishes one requests envelope of the gateway
// (plugin.Upstream). nats.go copies data before it returns; a failed
// publish (a closed connection, a full reconnect buffer) loses the
// envelope, whose requests then go unanswered. The gateway calls it on its
// game goroutine during Tick; it is safe for concurrent use.
func (f *Feed) Requests(data []byte) {
	if err := f.nc.Publish(f.reqSubj, data); err != nil {
		f.upErrors.Add(1)
	}
}

// read hands the gateway each message of the channel, in order.
func (f *Feed) read() {
	defer f.wg.Done()
	gw := f.gw // set before read starts, never changed
	for {
		select {
		case <-f.stop:
			return
		case m := <-f.msgs:
			if f.relaySub != nil && m.Subject == f.relaySub.Subject {
				f.relays.Add(1)
				gw.FeedReplies(m.Data)
				continue
			}
			if m.Subject != f.tickSubj {
				f.chunks.Add(1)
				gw.FeedChunk(m.Data) // nats.go gave m its own copy of the data
				continue
			}
			tick, _, err := DecodeTick(m.Data)
			if err != nil {
				f.malformed.Add(1)
				continue
			}
			if last := f.lastTick.Swap(tick); last != 0 && tick != last+1 {
				// Ticks went by unseen: their chunks are lost too, and a
				// cell that stays quiet after a lost chunk would not show
				// its gap. Every cell is taken again.
				f.tickGaps.Add(1)
				gw.FeedResync()
			}
			f.ticks.Add(1)
			gw.FeedTickEnd(tick)
		}
	}
}

func (f *Feed) subject(c plugin.Cell) string {
	if c.Global {
		return GlobalSubject(f.world)
	}
	return CellSubject(f.world, c.X, c.Y)
}

// Follow subscribes to c's chunks and queues the request for its
// snapshot, which goes to the gateway with token. It is the gateway's to
// call, on its game goroutine; it does not block on the network.
func (f *Feed) Follow(c plugin.Cell, token uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return
	}
	if f.subs[c] == nil {
		sub, err := f.nc.ChanSubscribe(f.subject(c), f.msgs)
		if err != nil {
			f.subFails++
			f.lastErr = err
			return
		}
		f.subs[c] = sub
	}
	f.tokens[c] = token
	f.queue = append(f.queue, snapJob{cell: c, token: token})
	f.startWorkers()
}

// Unfollow unsubscribes from c's chunks; a snapshot request for it still
// waiting is dropped. It is the gateway's to call, on its game goroutine.
func (f *Feed) Unfollow(c plugin.Cell) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.tokens, c)
	if sub := f.subs[c]; sub != nil {
		f.unsubscribe(sub)
		delete(f.subs, c)
	}
}

// unsubscribe keeps sub's count of dropped messages and unsubscribes.
// f.mu is held.
func (f *Feed) unsubscribe(sub *nats.Subscription) {
	if n, err := sub.Dropped(); err == nil && n > 0 {
		f.dropped += uint64(n)
	}
	_ = sub.Unsubscribe()
}

// startWorkers starts snapshot goroutines for the queued requests that
// no idle one will take, up to MaxSnapshotRequests. f.mu is held.
func (f *Feed) startWorkers() {
	if f.gw == nil || f.closed {
		return
	}
	for f.workers < MaxSnapshotRequests && f.workers-f.inflight < len(f.queue) {
		f.workers++
		f.wg.Add(1)
		go f.work()
	}
}

// work serves queued snapshot requests until none is left.
func (f *Feed) work() {
	defer f.wg.Done()
	for {
		f.mu.Lock()
		job, ok := f.next()
		if !ok {
			f.workers--
			f.mu.Unlock()
			return
		}
		f.inflight++
		f.mu.Unlock()
		f.serve(job)
		f.mu.Lock()
		f.inflight--
		f.mu.Unlock()
	}
}

// next pops the next request still wanted. f.mu is held.
func (f *Feed) next() (snapJob, bool) {
	for !f.closed && len(f.queue) > 0 {
		job := f.queue[0]
		f.queue[0] = snapJob{}
		f.queue = f.queue[1:]
		if len(f.queue) == 0 {
			f.queue = nil // let the backing array go
		}
		if f.wanted(job) {
			return job, true
		}
	}
	return snapJob{}, false
}

// wanted reports whether the gateway still follows job's cell under job's
// token. f.mu is held.
func (f *Feed) wanted(job snapJob) bool {
	tok, ok := f.tokens[job.cell]
	return ok && tok == job.token && !f.closed
}

// serve asks for job's snapshot until an answer comes, the gateway lets
// go of the cell (or follows it again under another token), or the Feed
// closes.
func (f *Feed) serve(job snapJob) {
	req := AppendSnapshotRequest(nil, job.cell.Global, job.cell.X, job.cell.Y)
	backoff := 50 * time.Millisecond
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			t := time.NewTimer(backoff)
			select {
			case <-f.ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			backoff = min(2*backoff, SnapshotMaxBackoff)
		}
		f.mu.Lock()
		ok := f.wanted(job)
		f.mu.Unlock()
		if !ok {
			return
		}
		if attempt > 0 {
			f.retries.Add(1)
		}
		data, err := f.request(req)
		if f.ctx.Err() != nil {
			return
		}
		if err == nil && len(data) > 0 {
			f.snapshots.Add(1)
			f.gw.FeedSnapshot(job.token, data)
			return
		}
	}
}

// errEmpty is a snapshot request answered with an empty message.
var errEmpty = errors.New("natsync: the snapshot request was refused")

// request flushes the connection, so that the subscriptions made before
// are in place at the server, then asks for a snapshot.
func (f *Feed) request(req []byte) ([]byte, error) {
	ctx, cancel := context.WithTimeout(f.ctx, SnapshotTimeout)
	defer cancel()
	if err := f.nc.FlushWithContext(ctx); err != nil {
		return nil, err
	}
	m, err := f.nc.RequestWithContext(ctx, f.snapSubj, req)
	if err != nil {
		return nil, err
	}
	if len(m.Data) == 0 {
		return nil, errEmpty
	}
	return m.Data, nil
}

// Stats returns a snapshot of the Feed's counters. It is safe for
// concurrent use.
func (f *Feed) Stats() FeedStats {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := FeedStats{
		Cells:           len(f.subs),
		Chunks:          f.chunks.Load(),
		Ticks:           f.ticks.Load(),
		TickGaps:        f.tickGaps.Load(),
		Malformed:       f.malformed.Load(),
		Snapshots:       f.snapshots.Load(),
		SnapshotRetries: f.retries.Load(),
		Relays:          f.relays.Load(),
		UpstreamErrors:  f.upErrors.Load(),
		Dropped:         f.dropped,
		Backlog:         len(f.msgs),
		SubscribeErrors: f.subFails,
		LastError:       f.lastErr,
	}
	for _, job := range f.queue {
		if f.wanted(job) {
			st.SnapshotsWaiting++
		}
	}
	st.SnapshotsWaiting += f.inflight
	if !f.closed {
		if n, err := f.tickSub.Dropped(); err == nil {
			st.Dropped += uint64(n)
		}
	}
	for _, sub := range f.subs {
		if n, err := sub.Dropped(); err == nil {
			st.Dropped += uint64(n)
		}
	}
	return st
}

// Close unsubscribes from every subject, ends the snapshot requests in
// flight and the goroutine that feeds the gateway, and waits for them.
// It does not close the connection; it returns the error of the tick
// subject's unsubscription, nil if the connection was closed already. Follow and Unfollow after Close do
// nothing.
func (f *Feed) Close() error {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return nil
	}
	f.closed = true
	for c, sub := range f.subs {
		f.unsubscribe(sub)
		delete(f.subs, c)
	}
	if n, err := f.tickSub.Dropped(); err == nil {
		f.dropped += uint64(n)
	}
	err := f.tickSub.Unsubscribe()
	if f.relaySub != nil {
		_ = f.relaySub.Unsubscribe()
	}
	clear(f.tokens)
	f.queue = nil
	f.mu.Unlock()
	f.cancel()
	close(f.stop)
	f.wg.Wait()
	if errors.Is(err, nats.ErrConnectionClosed) || errors.Is(err, nats.ErrBadSubscription) {
		err = nil // the connection closed first: nothing is left subscribed
	}
	return err
}
