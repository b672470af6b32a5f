package plugin_test

import (
	"math/rand/v2"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/yohamta/donburi"

	"github.com/ebisync/ebisync/components"
	"github.com/ebisync/ebisync/internal/testutil"
	"github.com/ebisync/ebisync/plugin"
)

// costMsg is a message whose value is 8 bytes on the wire (a float64 is
// written as its bits).
type costMsg struct {
	V float64
}

// costRig is a server ticked by the test, one replicated entity that moves
// every tick (so every tick sends a batch), and a raw client reading them.
type costRig struct {
	tb  testing.TB
	w   donburi.World
	srv *plugin.Server
	ts  *httptest.Server
	rc  *rawClient
	m   *components.Message[costMsg]
	e   donburi.Entity
	rng *rand.Rand

	settled bool // the spawn arrived: each tick's batch holds the move and the tick's messages
}

func newCostRig(tb testing.TB) *costRig {
	tb.Helper()
	reg := standardRegistry()
	r := &costRig{tb: tb, w: donburi.NewWorld(), rng: rand.New(rand.NewPCG(8, 12))}
	r.m = components.RegisterMessage[costMsg](reg, "cost.msg", nil)
	r.srv = plugin.New(r.w, reg, &plugin.Options{Logger: quietLogger()})
	r.ts = httptest.NewServer(r.srv)
	r.e = r.w.Create(components.Replicated, components.Position)
	r.rc = dialRaw(tb, wsURL(r.ts), reg, true)
	r.rc.subscribeAll()
	if err := testutil.WaitUntil(5*time.Second, func() string { return "the client to join" }, func() bool {
		r.srv.Tick()
		return r.srv.Stats().Clients == 1
	}); err != nil {
		tb.Fatal(err)
	}
	// Settle: the spawn and any catching up arrive before measuring.
	for range 4 {
		r.tick(0)
	}
	r.settled = true
	return r
}

func (r *costRig) close() {
	r.rc.close()
	r.srv.Close()
	r.ts.Close()
}

// tick moves the entity, broadcasts n messages, ticks, and returns the
// size of the batch the client received with them, as on the wire
// (compressed or not, without the WebSocket frame header). A tick that
// finds the client's writer still busy with the previous batch builds
// nothing for it; the next (empty) tick then sends what it held.
func (r *costRig) tick(n int) int {
	r.tb.Helper()
	before, _, _ := r.rc.snapshot()
	components.Position.Get(r.w.Entry(r.e)).X += 1
	for range n {
		plugin.Broadcast(r.srv, r.m, costMsg{V: r.rng.Float64()})
	}
	var after [][]byte
	arrived := func() bool {
		after, _, _ = r.rc.snapshot()
		return len(after) > len(before)
	}
	for tries := 0; ; tries++ {
		r.srv.Tick()
		if testutil.WaitUntil(20*time.Millisecond, func() string { return "" }, arrived) == nil {
			break
		}
		if tries == 100 {
			r.tb.Fatal("no batch after 100 ticks")
		}
	}
	_, bodies, err := r.rc.snapshot()
	if err != nil {
		r.tb.Fatal(err)
	}
	if len(after) != len(before)+1 {
		r.tb.Fatalf("one tick sent %d batches", len(after)-len(before))
	}
	last := bodies[len(bodies)-1]
	if r.settled && (len(last.Messages) != n || len(last.Updates) != 1 || len(last.Spawns) != 0) {
		r.tb.Fatalf("the tick's batch holds %d messages, %d updates and %d spawns; want %d, the move and none", len(last.Messages), len(last.Updates), len(last.Spawns), n)
	}
	for _, m := range last.Messages {
		if len(m.Value) != 8 {
			r.tb.Fatalf("a message value of %d bytes, want 8", len(m.Value))
		}
	}
	return len(after[len(after)-1])
}

// costPerMessage runs rounds pairs of ticks, one with perTick messages
// and one with none, and returns the bytes each message added to its
// batch on average.
func (r *costRig) costPerMessage(rounds, perTick int) float64 {
	with, without := 0, 0
	for range rounds {
		with += r.tick(perTick)
		without += r.tick(0)
	}
	return float64(with-without) / float64(rounds*perTick)
}

// BenchmarkMessage reports what an 8-byte game message costs on the wire
// inside a batch (B/msg), sent 16 to a batch.
func BenchmarkMessage(b *testing.B) {
	r := newCostRig(b)
	defer r.close()
	const perTick = 16
	with, without, n := 0, 0, 0
	for b.Loop() {
		with += r.tick(perTick)
		without += r.tick(0)
		n++
	}
	b.ReportMetric(float64(with-without)/float64(n*perTick), "B/msg")
}

// TestMessageWireCost: an 8-byte message costs at most 12 bytes on the
// wire inside a batch, alone in its batch (where it carries the message
// section's header) and among others.
func TestMessageWireCost(t *testing.T) {
	r := newCostRig(t)
	defer r.close()
	for _, perTick := range []int{1, 4, 64} {
		cost := r.costPerMessage(50, perTick)
		t.Logf("%d messages a batch: %.2f B/msg", perTick, cost)
		if cost > 12 {
			t.Errorf("%d messages a batch: an 8-byte message costs %.2f bytes on the wire, want at most 12", perTick, cost)
		}
		if cost < 8 {
			t.Errorf("%d messages a batch: %.2f B/msg is less than the value itself: the measurement is wrong", perTick, cost)
		}
	}
}
