package plugin_test

import (
	"context"
	"errors"
	"math"
	"net/url"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/yohamta/donburi"

	"github.com/ebisync/ebisync/components"
	"github.com/ebisync/ebisync/netclient"
	"github.com/ebisync/ebisync/netsim"
	"github.com/ebisync/ebisync/plugin"
)

// moveIn is one frame of a ship's motion; N numbers it for the test's
// record of what the server applied.
type moveIn struct {
	DX, DY float64
	N      uint64
}

// moveStep integrates one input: the same function on both sides.
func moveStep(w donburi.World, e donburi.Entity, in moveIn) {
	entry := w.Entry(e)
	p := components.Position.Get(entry)
	p.X += in.DX
	p.Y += in.DY
}

func predictRegistry() (*components.Registry, *components.Synced[components.PositionData], *components.Message[moveIn]) {
	reg := components.NewRegistry()
	std := components.RegisterStandard(reg)
	m := components.RegisterMessage[moveIn](reg, "test.move", &components.MessageOptions{FromClient: true})
	return reg, std.Position, m
}

// predictRig is a server ticking at 30 Hz, a netsim proxy and a predicting
// client driven frame by frame at 60 fps on a frame clock.
type predictRig struct {
	t     *testing.T
	h     *harness
	proxy *netsim.Proxy
	c     *netclient.Client
	pred  *netclient.Predictor[moveIn]
	mine  donburi.Entity // the client's mirror of its ship
	pos   *components.Synced[components.PositionData]

	mu      sync.Mutex
	ship    donburi.Entity // the server's ship (game goroutine)
	applied []uint64       // the N of every input the server applied, in order

	frames int
	base   time.Time
	tk     *time.Ticker
	n      uint64 // inputs sent
	// offline, when set, makes a frame whose input the client cannot send
	// (it is between connections) skip it instead of failing.
	offline bool
}

const (
	rigTickRate = 30
	rigFrame    = time.Second / 60
)

func newPredictRig(t *testing.T, latency, jitter time.Duration) *predictRig {
	r := &predictRig{t: t}
	sreg, _, sm := predictRegistry()
	var h *harness
	h = newHarness(t, sreg, &plugin.Options{
		TickRate: rigTickRate,
		OnConnect: func(ci plugin.ClientInfo) {
			r.mu.Lock()
			defer r.mu.Unlock()
			if r.ship != donburi.Null {
				return // a second session of the same player keeps its ship
			}
			w := h.w
			e := w.Create(components.Replicated, components.Position, components.Owner)
			components.Position.SetValue(w.Entry(e), components.PositionData{X: 100, Y: 100})
			components.Owner.SetValue(w.Entry(e), components.OwnerData{Client: ci.ID})
			r.ship = e
		},
	}, time.Second/rigTickRate)
	r.h = h
	plugin.HandleInput(h.srv, sm, func(w donburi.World, e donburi.Entity, in moveIn) {
		r.mu.Lock()
		r.applied = append(r.applied, in.N)
		r.mu.Unlock()
		moveStep(w, e, in)
	})
	u, err := url.Parse(h.ts.URL)
	if err != nil {
		t.Fatal(err)
	}
	r.proxy, err = netsim.Listen(u.Host, &netsim.Options{Latency: latency, Jitter: jitter})
	if err != nil {
		t.Fatal(err)
	}
	creg, pos, cm := predictRegistry()
	r.pos = pos
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r.c, err = netclient.Dial(ctx, r.proxy.URL(h.url), creg, &netclient.Options{Logger: quietLogger(), MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.c.SubscribeAll(); err != nil {
		t.Fatal(err)
	}
	r.pred = netclient.Predict(r.c, cm, moveStep)
	r.base = time.Now()
	r.tk = time.NewTicker(rigFrame)
	for r.mine == donburi.Null {
		if r.frames > 10*60 {
			t.Fatal("the client's ship did not reach its mirror within 10 s of frames")
		}
		r.frame(nil)
		if own := r.c.Owned(nil); len(own) > 0 {
			r.mine = own[0]
		}
	}
	return r
}

func (r *predictRig) close() {
	r.tk.Stop()
	r.c.Close()
	r.proxy.Close()
	r.h.close()
}

// now is the frame clock: frame n is drawn at base + n/60 s.
func (r *predictRig) now() time.Time { return r.base.Add(time.Duration(r.frames) * rigFrame) }

// frame runs one frame at 60 fps: Update, then the input (if any), then
// the drawn position of the player's ship.
func (r *predictRig) frame(in *moveIn) components.PositionData {
	r.t.Helper()
	<-r.tk.C
	r.frames++
	if err := r.c.Update(); err != nil {
		r.t.Fatalf("Update: %v", err)
	}
	if in != nil {
		r.n++
		v := *in
		v.N = r.n
		switch err := r.pred.Input(r.mine, v); {
		case r.offline && errors.Is(err, netclient.ErrNotConnected):
			r.n--
		case err != nil:
			r.t.Fatalf("Input %d: %v", r.n, err)
		}
	}
	if r.mine == donburi.Null {
		return components.PositionData{}
	}
	p, ok := netclient.Interpolated(r.c, r.mine, r.pos, r.now())
	if !ok {
		r.t.Fatal("Interpolated: the ship is not in the mirror")
	}
	return p
}

// serverPos is the server's position of the ship.
func (r *predictRig) serverPos() components.PositionData {
	var p components.PositionData
	r.h.do(func(w donburi.World) {
		r.mu.Lock()
		e := r.ship
		r.mu.Unlock()
		p = *components.Position.Get(w.Entry(e))
	})
	return p
}

// settle runs frames without input until the server acknowledged every
// input, then returns the drawn position.
func (r *predictRig) settle() components.PositionData {
	r.t.Helper()
	var p components.PositionData
	for start := r.frames; ; {
		p = r.frame(nil)
		if r.c.Stats().PendingInputs == 0 {
			return p
		}
		if r.frames-start > 10*60 {
			r.t.Fatalf("inputs still unacknowledged after 10 s of frames: %+v", r.c.Stats())
		}
	}
}

// checkApplied requires that the server applied inputs 1…n once each, in
// order.
func (r *predictRig) checkApplied() {
	r.t.Helper()
	r.mu.Lock()
	got := slices.Clone(r.applied)
	r.mu.Unlock()
	if uint64(len(got)) != r.n {
		r.t.Fatalf("the server applied %d inputs, the client sent %d", len(got), r.n)
	}
	for i, n := range got {
		if n != uint64(i+1) {
			r.t.Fatalf("input %d applied as the %d-th: an input was lost, repeated or reordered", n, i+1)
		}
	}
	st := r.h.srv.Stats()
	if st.InputsApplied != r.n || st.InputsRefused != 0 || st.InputsDropped != 0 {
		r.t.Fatalf("server stats: %d applied, %d refused, %d dropped; want %d, 0, 0", st.InputsApplied, st.InputsRefused, st.InputsDropped, r.n)
	}
}

func near(a, b components.PositionData, tol float64) bool {
	return math.Abs(a.X-b.X) <= tol && math.Abs(a.Y-b.Y) <= tol
}

// quantum is components.Position's quantisation step.
const quantum = 0.01

// TestPrediction drives a predicting client through a 100 ms ± 20 ms
// proxy against a 30 Hz server:
//
//   - each input moves the drawn ship in the frame it is made;
//   - once every input is acknowledged, the prediction equals the server's
//     position within one quantum;
//   - a push the server makes on its own (a collision the client cannot
//     predict) converges on screen within convergeFrames frames of the
//     push, with no per-frame change of the drawn position above jumpBound
//     while the ship keeps moving;
//   - the server applies inputs 1…N once each.
func TestPrediction(t *testing.T) {
	const (
		burst = 45
		push  = 40.0
		// The correction arrives after half a round trip plus a tick (at
		// most about 100 ms); its offset then decays with
		// netclient.SmoothingTime (100 ms) to 1% in 4.6 time constants.
		convergeFrames = 45
		// One frame of the offset's decay is 1−exp(−16.7/100) = 15% of the
		// push; a frame's own motion adds 1.
		jumpBound = 0.2*push + 1
	)
	r := newPredictRig(t, 100*time.Millisecond, 20*time.Millisecond)
	defer r.close()

	// A burst of inputs: the drawn ship answers each in its frame.
	start := r.serverPos()
	prev := r.frame(nil)
	if !near(prev, start, quantum) {
		t.Fatalf("drawn %+v before any input, server %+v", prev, start)
	}
	for i := 0; i < burst; i++ {
		p := r.frame(&moveIn{DX: 1.5, DY: -0.5})
		if math.Abs(p.X-prev.X-1.5) > quantum || math.Abs(p.Y-prev.Y+0.5) > quantum {
			t.Fatalf("input %d moved the drawn ship from %+v to %+v in its frame, want (+1.5, -0.5)", i+1, prev, p)
		}
		prev = p
	}
	drawn := r.settle()
	server := r.serverPos()
	want := components.PositionData{X: start.X + 1.5*burst, Y: start.Y - 0.5*burst}
	if !near(server, want, 1e-9) {
		t.Fatalf("server at %+v after %d inputs, want %+v", server, burst, want)
	}
	if !near(drawn, server, quantum) {
		t.Fatalf("acknowledged prediction %+v, server %+v: more than one quantum apart", drawn, server)
	}
	r.checkApplied()

	// A push the client cannot predict, while the ship keeps moving.
	corrections := r.c.Stats().PredictionCorrections
	prev = r.frame(&moveIn{DX: 1})
	r.h.do(func(w donburi.World) {
		r.mu.Lock()
		defer r.mu.Unlock()
		components.Position.Get(w.Entry(r.ship)).X += push
	})
	pushed := r.frames
	converged := -1
	maxJump := 0.0
	for r.frames-pushed < 90 {
		p := r.frame(&moveIn{DX: 1})
		maxJump = max(maxJump, math.Hypot(p.X-prev.X, p.Y-prev.Y))
		prev = p
		world, _ := r.pos.Get(r.c.World(), r.mine)
		corrected := r.c.Stats().PredictionCorrections > corrections
		if converged < 0 && corrected && near(p, world, push/100) {
			converged = r.frames - pushed
		}
		if converged >= 0 && !near(p, world, push/100) {
			t.Fatalf("frame %d after the push: drawn %+v strays from the prediction %+v after converging", r.frames-pushed, p, world)
		}
	}
	if converged < 0 || converged > convergeFrames {
		t.Fatalf("the push converged on screen after %d frames, want at most %d", converged, convergeFrames)
	}
	if maxJump > jumpBound {
		t.Fatalf("largest per-frame change of the drawn ship %.2f, want at most %.2f (the push is %.0f)", maxJump, jumpBound, push)
	}
	t.Logf("push of %.0f: converged on screen in %d frames, largest per-frame change %.2f, %d corrections", push, converged, maxJump, r.c.Stats().PredictionCorrections-corrections)
	drawn = r.settle()
	server = r.serverPos()
	if !near(drawn, server, quantum) {
		t.Fatalf("after the push: acknowledged prediction %+v, server %+v", drawn, server)
	}
	r.checkApplied()
	if st := r.h.srv.Stats(); st.InputsDuplicate != 0 {
		t.Fatalf("%d duplicate inputs without a reconnect", st.InputsDuplicate)
	}
}

// TestPredictionRefused: inputs for an entity the client does not own are
// refused by the server, and the client's prediction of them is undone.
func TestPredictionRefused(t *testing.T) {
	r := newPredictRig(t, 0, 0)
	defer r.close()
	var other donburi.Entity
	r.h.do(func(w donburi.World) {
		e := w.Create(components.Replicated, components.Position)
		components.Position.SetValue(w.Entry(e), components.PositionData{X: 5, Y: 5})
		other = e
	})
	var theirs donburi.Entity
	for start := r.frames; theirs == donburi.Null; {
		r.frame(nil)
		for e := range r.pos.ComponentType().Iter(r.c.World()) {
			if e.Entity() != r.mine {
				theirs = e.Entity()
			}
		}
		if r.frames-start > 600 {
			t.Fatal("the other entity did not reach the mirror")
		}
	}
	for i := 0; i < 10; i++ {
		if err := r.pred.Input(theirs, moveIn{DX: 3}); err != nil {
			t.Fatal(err)
		}
		r.n++
	}
	if p, _ := netclient.Interpolated(r.c, theirs, r.pos, r.now()); !near(p, components.PositionData{X: 35, Y: 5}, quantum) {
		t.Fatalf("predicted %+v, want (35, 5)", p)
	}
	r.settle()
	if p, _ := r.pos.Get(r.c.World(), theirs); !near(p, components.PositionData{X: 5, Y: 5}, quantum) {
		t.Fatalf("the refused inputs' prediction was not undone: %+v", p)
	}
	st := r.h.srv.Stats()
	if st.InputsRefused != 10 || st.InputsApplied != 0 {
		t.Fatalf("server: %d refused, %d applied; want 10, 0", st.InputsRefused, st.InputsApplied)
	}
	if r.c.Stats().PredictionCorrections == 0 {
		t.Fatal("the undone prediction is not counted as a correction")
	}
	var sp components.PositionData
	r.h.do(func(w donburi.World) { sp = *components.Position.Get(w.Entry(other)) })
	if sp.X != 5 {
		t.Fatalf("a refused input moved the server's entity to %+v", sp)
	}
}

// TestPredictionResume: inputs in flight when the connection is cut are
// sent again on the resumed session; the server applies each once.
func TestPredictionResume(t *testing.T) {
	r := newPredictRig(t, 60*time.Millisecond, 10*time.Millisecond)
	defer r.close()
	r.offline = true
	for i := 0; i < 20; i++ {
		r.frame(&moveIn{DX: 1})
	}
	if r.c.Stats().PendingInputs == 0 {
		t.Fatal("no input in flight when the connection is cut")
	}
	r.proxy.Cut()
	for start := r.frames; r.c.Stats().Resumes == 0; {
		r.frame(&moveIn{DX: 1})
		if r.frames-start > 10*60 {
			t.Fatalf("no resumed session within 10 s of frames: %+v", r.c.Stats())
		}
	}
	for i := 0; i < 20; i++ {
		r.frame(&moveIn{DX: 1})
	}
	drawn := r.settle()
	server := r.serverPos()
	if !near(drawn, server, quantum) {
		t.Fatalf("after the resume: acknowledged prediction %+v, server %+v", drawn, server)
	}
	r.checkApplied()
	t.Logf("%d inputs, %d sent again and ignored as duplicates", r.n, r.h.srv.Stats().InputsDuplicate)
}
