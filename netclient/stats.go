package netclient

import (
	"sync"
	"sync/atomic"
	"time"
)

// Stats is a snapshot of a client's counters. Totals count since Dial,
// across reconnects; byte counts are WebSocket message payloads (frame
// headers excluded).
type Stats struct {
	Connected bool

	BytesIn, BytesOut       uint64
	MessagesIn, MessagesOut uint64

	// Rates over about the last second.
	BytesInPerSec    float64
	BytesOutPerSec   float64
	MessagesInPerSec float64

	// CompressedIn is the bytes of the messages that arrived lz4-compressed
	// and UncompressedIn their size once decompressed, so lz4 saved
	// UncompressedIn − CompressedIn bytes: without it BytesIn would be
	// BytesIn − CompressedIn + UncompressedIn.
	CompressedIn   uint64
	UncompressedIn uint64
	// CompressedMessagesIn counts the messages that arrived lz4-compressed.
	// A server compresses only what lz4 shrinks: spawn bursts and snapshots
	// (about 3×); batches of quantised deltas barely compress and go raw.
	CompressedMessagesIn uint64

	// DecodeErrors counts messages from the server that could not be
	// decoded or applied; each one ends the connection (and the client
	// resyncs on a new one).
	DecodeErrors uint64

	// GameMessagesIn counts the game messages (of registered message
	// types) received from the server, handled or not.
	GameMessagesIn uint64

	// Reconnects counts successful reconnections, and Resumes those of
	// them that resumed the session (the mirror was kept).
	Reconnects uint64
	Resumes    uint64

	// RTT is the smoothed round-trip time (an exponentially weighted
	// moving average, weight 1/8 per sample) and RTTLast the last sample;
	// both 0 before the first sample.
	RTT     time.Duration
	RTTLast time.Duration

	// Entities is the number of mirrored entities as of the last Update.
	Entities int

	// ServerTick is the server tick of the last batch Update applied.
	ServerTick uint64

	// PendingBatches is the number of events queued for Update.
	PendingBatches int

	// Prediction (Predict): PredictionCorrections counts the corrections
	// of predicted components since Dial; CorrectionsPerSec and
	// LargestCorrection (the largest difference of a float field) cover
	// about the last second. PendingInputs is the inputs not yet
	// acknowledged by the server.
	PredictionCorrections uint64
	CorrectionsPerSec     float64
	LargestCorrection     float64
	PendingInputs         int
}

// Stats returns a snapshot of the client's counters. It is safe for
// concurrent use.
func (c *Client) Stats() Stats {
	now := time.Since(c.epoch)
	st := Stats{
		Connected:            c.connected.Load(),
		BytesIn:              c.stats.bytesIn.Load(),
		BytesOut:             c.stats.bytesOut.Load(),
		MessagesIn:           c.stats.msgsIn.Load(),
		MessagesOut:          c.stats.msgsOut.Load(),
		CompressedIn:         c.stats.compressedIn.Load(),
		UncompressedIn:       c.stats.uncompressedIn.Load(),
		CompressedMessagesIn: c.stats.compressedMsgsIn.Load(),
		DecodeErrors:         c.stats.decodeErrors.Load(),
		Reconnects:           c.stats.reconnects.Load(),
		Resumes:              c.stats.resumes.Load(),
		GameMessagesIn:       c.stats.gameMsgsIn.Load(),
		RTT:                  time.Duration(c.stats.rtt.Load()),
		RTTLast:              time.Duration(c.stats.rttLast.Load()),
		Entities:             int(c.stats.entities.Load()),
		ServerTick:           c.stats.serverTick.Load(),
		PendingBatches:       len(c.events),
	}
	st.BytesInPerSec, st.BytesOutPerSec, st.MessagesInPerSec = c.stats.window.rates(now)
	st.PredictionCorrections = c.stats.corrections.Load()
	st.CorrectionsPerSec, st.LargestCorrection = c.stats.corrWindow.read(now)
	st.PendingInputs = int(c.stats.pendingInputs.Load())
	return st
}

// counters are the client's statistics; every field is safe for concurrent
// use.
type counters struct {
	bytesIn, bytesOut, msgsIn, msgsOut atomic.Uint64
	compressedIn, uncompressedIn       atomic.Uint64
	compressedMsgsIn                   atomic.Uint64
	decodeErrors, reconnects, resumes  atomic.Uint64
	gameMsgsIn                         atomic.Uint64
	rtt, rttLast                       atomic.Int64
	entities                           atomic.Int64
	serverTick                         atomic.Uint64
	window                             rateWindow
	corrections                        atomic.Uint64 // predict.go
	corrWindow                         correctionWindow
	pendingInputs                      atomic.Int64
}

func (k *counters) countIn(n int, now time.Duration) {
	k.bytesIn.Add(uint64(n))
	k.msgsIn.Add(1)
	k.window.add(now, uint64(n), 0, 1)
}

func (k *counters) countOut(n int, now time.Duration) {
	k.bytesOut.Add(uint64(n))
	k.msgsOut.Add(1)
	k.window.add(now, 0, uint64(n), 0)
}

func (k *counters) observeRTT(d time.Duration) {
	k.rttLast.Store(int64(d))
	for {
		old := k.rtt.Load()
		v := int64(d)
		if old != 0 {
			v = old + (int64(d)-old)/8
		}
		if k.rtt.CompareAndSwap(old, v) {
			return
		}
	}
}

// rateWindow sums traffic in ten 100ms slots, a rolling window of about a
// second.
type rateWindow struct {
	mu    sync.Mutex
	slots [rateSlots]rateSlot
}

const (
	rateSlots = 10
	slotLen   = 100 * time.Millisecond
)

type rateSlot struct {
	n                         int64 // slot number: time / slotLen
	bytesIn, bytesOut, msgsIn uint64
}

func (w *rateWindow) add(now time.Duration, bin, bout, min uint64) {
	n := int64(now / slotLen)
	w.mu.Lock()
	s := &w.slots[n%rateSlots]
	if s.n != n {
		*s = rateSlot{n: n}
	}
	s.bytesIn += bin
	s.bytesOut += bout
	s.msgsIn += min
	w.mu.Unlock()
}

// rates returns per-second rates over the current slot and the nine before
// it.
func (w *rateWindow) rates(now time.Duration) (bin, bout, min float64) {
	n := int64(now / slotLen)
	var sb, so, sm uint64
	w.mu.Lock()
	for i := range w.slots {
		s := &w.slots[i]
		if s.n > n-rateSlots && s.n <= n {
			sb += s.bytesIn
			so += s.bytesOut
			sm += s.msgsIn
		}
	}
	w.mu.Unlock()
	span := (time.Duration(rateSlots-1)*slotLen + now%slotLen).Seconds()
	if now < time.Duration(rateSlots-1)*slotLen {
		span = now.Seconds() // the client is younger than the window
	}
	if span <= 0 {
		return 0, 0, 0
	}
	return float64(sb) / span, float64(so) / span, float64(sm) / span
}
