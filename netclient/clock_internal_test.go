package netclient

import (
	"math/rand/v2"
	"testing"
)

// TestClockNeverGoesBack renders frames every 1–8 ms against a server
// whose 60 Hz ticks stall every 1 000 ticks or so for 50–400 ms (its ticker
// drops the missed ticks, so its timeline falls behind local time), with
// batches jittered by up to 30 ms. The rendered tick never decreases between frames, and once
// the stalls stop it settles close behind the server's.
func TestClockNeverGoesBack(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	k := clock{dt: 1.0 / 60, delay: 2.0 / 60}
	type batch struct{ recv, tick float64 }
	var queue []batch
	var now, last, next, tick, recv float64
	for i := range 200000 {
		now += 0.001 + 0.007*rng.Float64()
		for next <= now {
			tick++
			// One connection delivers in order.
			recv = max(recv, next+0.03*rng.Float64())
			queue = append(queue, batch{recv, tick})
			next += k.dt
			if i < 180000 && rng.IntN(1000) == 0 {
				next += 0.05 + 0.35*rng.Float64()
			}
		}
		// Apply, in order, the batches received by now.
		for len(queue) > 0 && queue[0].recv <= now {
			k.observe(queue[0].recv, now, queue[0].tick)
			queue = queue[1:]
		}
		if !k.have {
			continue
		}
		rt := k.renderTick(now)
		if last != 0 && rt < last {
			t.Fatalf("frame %d at %.4f s: rendered tick %.5f after %.5f", i, now, rt, last)
		}
		last = rt
	}
	// No stall in the last 90 s or so: the clock has settled to render
	// about the interpolation delay plus the jitter behind the server.
	if behind := tick - last; behind < 0 || behind > 8 {
		t.Fatalf("rendering tick %.1f when the server is at %.0f", last, tick)
	}
}
