package plugin

import (
	"sync/atomic"
	"time"
)

// tickBounds are the upper bounds of TickHistogram's buckets: from 25 µs
// to a second, with the budgets of 60 Hz (16.7 ms) and 30 Hz (33.3 ms)
// between two bounds each.
var tickBounds = [...]time.Duration{
	25 * time.Microsecond, 50 * time.Microsecond, 100 * time.Microsecond,
	250 * time.Microsecond, 500 * time.Microsecond, time.Millisecond,
	2 * time.Millisecond, 4 * time.Millisecond, 8 * time.Millisecond,
	16 * time.Millisecond, 33 * time.Millisecond, 66 * time.Millisecond,
	125 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond,
	time.Second,
}

// TickBuckets returns the upper bounds of the buckets of
// Stats.TickHistogram, shortest first: Counts[i] counts the ticks that
// took at most TickBuckets()[i] and longer than the bound before it, and
// the last count those longer than every bound. It returns a new slice
// on every call and is safe for concurrent use.
func TickBuckets() []time.Duration { return append([]time.Duration(nil), tickBounds[:]...) }

// TickHistogram counts ticks by duration, since the server started. It is
// a plain value, part of Stats.
type TickHistogram struct {
	Counts [len(tickBounds) + 1]uint64 // by bucket (see TickBuckets); the last: longer than every bound
	Sum    time.Duration               // of every tick counted
}

// Count returns the number of ticks counted. Like any read of a plain
// value, it is safe for concurrent use with other reads.
func (h *TickHistogram) Count() uint64 {
	var n uint64
	for _, c := range h.Counts {
		n += c
	}
	return n
}

// Traffic is what connections received and sent, in bytes and messages
// (every message: batches, handshakes, pongs). It is a plain value, part
// of Stats.
type Traffic struct {
	BytesIn, BytesOut, MessagesIn, MessagesOut uint64
}

// tickTotals is what the server counts over every tick, for Stats and
// scrapers. Only the game goroutine writes it.
type tickTotals struct {
	hist   [len(tickBounds) + 1]atomic.Uint64
	sum    atomic.Int64
	phases [4]atomic.Int64 // sums of TickPhases
}

// observe counts one tick of duration d and its phases.
func (t *tickTotals) observe(d time.Duration, phases *[4]atomic.Int64) {
	i := 0
	for i < len(tickBounds) && d > tickBounds[i] {
		i++
	}
	t.hist[i].Add(1)
	t.sum.Add(int64(d))
	for k := range t.phases {
		t.phases[k].Add(phases[k].Load())
	}
}

// read fills the histogram and the phase totals of st.
func (t *tickTotals) read(st *Stats) {
	for i := range t.hist {
		st.TickHistogram.Counts[i] = t.hist[i].Load()
	}
	st.TickHistogram.Sum = time.Duration(t.sum.Load())
	st.PhaseTotals = TickPhases{
		Inbound: time.Duration(t.phases[0].Load()),
		Detect:  time.Duration(t.phases[1].Load()),
		Scopes:  time.Duration(t.phases[2].Load()),
		Send:    time.Duration(t.phases[3].Load()),
	}
}

// retire adds the traffic of a connection that ended to the server's
// totals. s.mu is held.
func (st *serverStats) retire(cn *conn) {
	st.gone.BytesIn += cn.bytesIn.Load()
	st.gone.BytesOut += cn.bytesOut.Load()
	st.gone.MessagesIn += cn.msgsIn.Load()
	st.gone.MessagesOut += cn.msgsOut.Load()
}

// observeTick ends a tick that started at start: it counts the tick in
// the totals that Stats reports, and takes the Inspector's snapshot when
// one is open and due (inspect_tick.go). With no Inspector open it does a
// few atomic adds and allocates nothing.
func (s *Server) observeTick(start time.Time) {
	d := time.Duration(s.stats.tickNanos.Load())
	s.stats.totals.observe(d, &s.stats.phases)
	if in := s.insp.Load(); in != nil && in.demand.Load() > 0 {
		s.inspectTick(in, start, d)
	}
}
