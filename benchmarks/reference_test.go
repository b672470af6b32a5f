package benchmarks_test

import (
	"context"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/yohamta/donburi"
	"go.uber.org/goleak"

	"github.com/ebisync/ebisync/components"
	"github.com/ebisync/ebisync/internal/testutil"
	"github.com/ebisync/ebisync/plugin"
)

// The reference system's figures for the reference scenario, and the
// targets: at most a third of them.
const (
	referenceBytesPerUpdate = 77.0   // bytes per update (one tick's batch)
	referenceBytesPerSecond = 4620.0 // 77 B × 60 Hz, "about 4.6 KB/s"
	targetBytesPerUpdate    = 25.6
	targetBytesPerSecond    = 1533.0
	referenceTickRate       = 60
)

// referenceSim is three objects crossing a 900×900 box at 60 units per
// second, bouncing off its walls: every tick each one moves one unit, as a
// moving game object does.
type referenceSim struct {
	world donburi.World
	objs  []movingObject
}

type movingObject struct {
	e      donburi.Entity
	vx, vy float64
}

const (
	refMin, refMax = 100.0, 1000.0
	refSpeed       = 60.0 // units per second
)

// Headings of the three objects, in degrees. A coordinate that moves by 64
// or more quantisation steps (0.64 units) per tick costs two bytes in a
// delta, one below that; so the cost depends on the heading. mixedHeadings
// is the scenario; diagonalHeadings is its worst case at this speed (every
// coordinate costs two bytes).
var (
	mixedHeadings    = []float64{40, 165, 290}
	diagonalHeadings = []float64{45, 135, 315}
)

func newReferenceSim(headings []float64) *referenceSim {
	s := &referenceSim{world: donburi.NewWorld()}
	starts := [][2]float64{{212.5, 318.25}, {764.1, 433.7}, {487.9, 861.3}}
	for i, p := range starts {
		e := s.world.Create(components.Replicated, components.Position)
		*components.Position.Get(s.world.Entry(e)) = components.PositionData{X: p[0], Y: p[1]}
		a := headings[i] * math.Pi / 180
		s.objs = append(s.objs, movingObject{e: e, vx: refSpeed * math.Cos(a), vy: refSpeed * math.Sin(a)})
	}
	return s
}

// step advances the simulation by one 60 Hz tick.
func (s *referenceSim) step() {
	const dt = 1.0 / referenceTickRate
	for i := range s.objs {
		o := &s.objs[i]
		p := components.Position.Get(s.world.Entry(o.e))
		p.X, o.vx = bounce(p.X+o.vx*dt, o.vx)
		p.Y, o.vy = bounce(p.Y+o.vy*dt, o.vy)
	}
}

func bounce(v, vel float64) (float64, float64) {
	switch {
	case v < refMin:
		return 2*refMin - v, -vel
	case v > refMax:
		return 2*refMax - v, -vel
	}
	return v, vel
}

// referenceRun is the reference scenario served over loopback to one
// decoding client.
type referenceRun struct {
	sim     *referenceSim
	es      *ebisyncServer
	client  *rawClient
	batches uint64 // the server's Stats().Batches after the last tick
}

func startReference(tb testing.TB, headings []float64) *referenceRun {
	tb.Helper()
	sim := newReferenceSim(headings)
	reg := components.NewRegistry()
	components.RegisterStandard(reg)
	srv := plugin.New(sim.world, reg, &plugin.Options{TickRate: referenceTickRate, Logger: discardLogger, MaxConnectionsPerAddress: loopbackClients, MaxHandshakes: loopbackClients})
	es := startEbisync(srv)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Global interest is the server's default: no Interest message.
	c, err := dialEbisync(ctx, es.ts.URL, reg, helloFor(reg, "reference"), true, subscribeMsg(compIndex(tb, reg, components.Position)))
	if err != nil {
		es.close(nil)
		tb.Fatal(err)
	}
	r := &referenceRun{sim: sim, es: es, client: c}
	if err := r.warmUp(); err != nil {
		r.close()
		tb.Fatal(err)
	}
	return r
}

// warmUp ticks until the client holds the three objects.
func (r *referenceRun) warmUp() error {
	err := testutil.WaitUntil(10*time.Second, func() string { return "the connection to register" }, func() bool {
		return r.es.srv.Stats().Connections == 1
	})
	if err != nil {
		return err
	}
	// Until the server has the Subscribe, a tick sends nothing.
	var tickErr error
	err = testutil.WaitUntil(10*time.Second, func() string {
		return fmt.Sprintf("the spawn of %d objects", len(r.sim.objs))
	}, func() bool {
		rec, sent, err := r.tick()
		tickErr = err
		return err != nil || (sent && rec.spawns == len(r.sim.objs))
	})
	if tickErr != nil {
		return tickErr
	}
	return err
}

// tick advances the simulation, runs one server tick and, if the tick sent
// the client a batch, waits until the client has it and the server's writer
// is idle again, so that no tick is skipped for a busy writer and every
// batch carries exactly one tick of changes.
func (r *referenceRun) tick() (rec msgRecord, sent bool, err error) {
	r.sim.step()
	r.es.srv.Tick()
	batches := r.es.srv.Stats().Batches
	if batches == r.batches {
		return msgRecord{}, false, nil
	}
	if batches != r.batches+1 {
		return rec, false, fmt.Errorf("one tick handed %d batches to one client", batches-r.batches)
	}
	r.batches = batches
	select {
	case rec = <-r.client.records:
	case <-r.client.done:
		return rec, false, fmt.Errorf("client reader stopped: %w", r.client.Err())
	case <-time.After(10 * time.Second):
		return rec, false, fmt.Errorf("no batch within 10s")
	}
	return rec, true, waitDelivered(r.es.srv, []*rawClient{r.client})
}

func (r *referenceRun) close() { r.es.close([]*rawClient{r.client}) }

// updateTally sums the batch messages that carried one tick of updates.
//
// The server sends a client nothing on a tick after one of its writes took
// longer than a tick (it halves that client's send rate for a while); the
// next batch then carries two ticks of movement. That happens on a loaded
// machine, more so under -race. Such batches are counted apart, so that
// the figures stay those of one tick per batch, as at 60 Hz with a
// client that keeps up.
type updateTally struct {
	ticks, msgs, updates int
	bytes, framed        int
	skipped, coalesced   int // ticks without a batch; batches advancing more than one tick
}

func (t *updateTally) add(rec msgRecord, sent bool) {
	t.ticks++
	switch {
	case !sent:
		t.skipped++
		return
	case rec.advance != 1:
		t.coalesced++
		return
	case rec.updates == 0:
		return
	}
	t.msgs++
	t.updates += rec.updates
	t.bytes += rec.size
	t.framed += rec.size + frameHeaderLen(rec.size)
}

func (t *updateTally) perUpdate() float64       { return float64(t.bytes) / float64(t.msgs) }
func (t *updateTally) perUpdateFramed() float64 { return float64(t.framed) / float64(t.msgs) }

// BenchmarkReferenceScenario measures the bytes one client receives per
// tick for three moving objects: one iteration is one tick, from the
// simulation step to the client holding the tick's batch.
func BenchmarkReferenceScenario(b *testing.B) {
	b.Run("headings=mixed", func(b *testing.B) { benchReference(b, mixedHeadings) })
	b.Run("headings=diagonal", func(b *testing.B) { benchReference(b, diagonalHeadings) })
}

func benchReference(b *testing.B, headings []float64) {
	r := startReference(b, headings)
	defer r.close()
	var t updateTally
	for b.Loop() {
		rec, sent, err := r.tick()
		if err != nil {
			b.Fatal(err)
		}
		t.add(rec, sent)
	}
	if t.msgs == 0 {
		b.Fatal("no batch carried updates")
	}
	b.ReportMetric(t.perUpdate(), "B/update")
	b.ReportMetric(t.perUpdateFramed(), "B/update-framed")
	b.ReportMetric(t.perUpdate()*referenceTickRate, "B/s/client")
	b.ReportMetric(t.perUpdateFramed()*referenceTickRate, "B/s/client-framed")
	b.ReportMetric(referenceBytesPerUpdate/t.perUpdate(), "x-smaller-vs-reference")
	b.ReportMetric(float64(t.updates)/float64(t.msgs), "updates/batch")
	if t.skipped > 0 || t.coalesced > 0 {
		b.Logf("%d of %d ticks sent nothing and %d batches carried more than one tick (slow writes on a loaded machine); they are left out", t.skipped, t.ticks, t.coalesced)
	}
}

// TestReferenceScenarioBudget guards the byte targets of the reference
// scenario. Bytes do not depend on timing, so this is an ordinary test.
func TestReferenceScenarioBudget(t *testing.T) {
	defer goleak.VerifyNone(t)
	t.Run("headings=mixed", func(t *testing.T) { testReferenceBudget(t, mixedHeadings) })
	t.Run("headings=diagonal", func(t *testing.T) { testReferenceBudget(t, diagonalHeadings) })
}

func testReferenceBudget(t *testing.T, headings []float64) {
	// want one-tick batches; a loaded machine may need more ticks (see
	// updateTally), up to a bound.
	want := 300
	if testing.Short() {
		want = 120
	}
	r := startReference(t, headings)
	var tally updateTally
	for tally.msgs < want && tally.ticks < 20*want {
		rec, sent, err := r.tick()
		if err != nil {
			r.close()
			t.Fatal(err)
		}
		if sent && (rec.updates != len(r.sim.objs) || rec.spawns != 0 || rec.exits != 0) {
			r.close()
			t.Fatalf("tick %d: batch with %d updates, %d spawns, %d exits; want %d updates",
				tally.ticks, rec.updates, rec.spawns, rec.exits, len(r.sim.objs))
		}
		tally.add(rec, sent)
	}
	r.close()
	if tally.skipped > 0 || tally.coalesced > 0 {
		t.Logf("%d of %d ticks sent nothing and %d batches carried more than one tick (slow writes on a loaded machine); they are left out", tally.skipped, tally.ticks, tally.coalesced)
	}
	if tally.msgs < want {
		t.Fatalf("only %d of %d ticks gave a one-tick batch: the machine is too loaded to measure", tally.msgs, tally.ticks)
	}

	perUpdate, perSecond := tally.perUpdate(), tally.perUpdate()*referenceTickRate
	t.Logf("%d one-tick batches: %.2f B/update (%.2f with WebSocket framing), %.0f B/s/client (%.0f framed), %.2fx smaller than the reference's %.0f B/update",
		tally.msgs, perUpdate, tally.perUpdateFramed(), perSecond, tally.perUpdateFramed()*referenceTickRate,
		referenceBytesPerUpdate/perUpdate, referenceBytesPerUpdate)
	if perUpdate > targetBytesPerUpdate {
		t.Errorf("%.2f B/update, want at most %.1f (a third of the reference's %.0f)", perUpdate, targetBytesPerUpdate, referenceBytesPerUpdate)
	}
	if perSecond > targetBytesPerSecond {
		t.Errorf("%.0f B/s per client at %d Hz, want at most %.0f (a third of the reference's %.0f)", perSecond, referenceTickRate, targetBytesPerSecond, referenceBytesPerSecond)
	}
}
