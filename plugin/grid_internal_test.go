package plugin

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/ebisync/ebisync/internal/wire"
)

// TestClientGridNear: both forms of the client grid (dense cells and the
// map used when centres are spread wide) find exactly the clients whose
// enter radius contains a point, less those stamped for that point.
func TestClientGridNear(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, spread := range []float64{2000, 1e9} { // dense, then sparse
		var clients []*client
		for i := range 300 {
			c := &client{mode: wire.InterestPoint, cx: rng.Float64()*spread - spread/4, cy: rng.Float64()*spread - spread/4}
			c.enterR = 50 + rng.Float64()*150
			if i%7 == 0 {
				c.mode = wire.InterestGlobal
			}
			clients = append(clients, c)
		}
		var g clientGrid
		g.init()
		g.rebuild(clients)
		if g.dense != (spread < 1e6) {
			t.Fatalf("spread %g: dense = %v", spread, g.dense)
		}
		for _, c := range clients {
			if (c.ref != nil) != c.radiusMode() || (c.ref != nil && c.ref.c != c) {
				t.Fatalf("spread %g: client at (%g, %g), mode %v: wrong grid ref", spread, c.cx, c.cy, c.mode)
			}
		}
		for k := range 2000 {
			stamp := uint64(k + 1)
			stamped := map[*client]bool{}
			for _, c := range clients {
				if c.ref != nil && rng.IntN(4) == 0 {
					c.ref.stamp = stamp
					stamped[c] = true
				}
			}
			x, y := rng.Float64()*spread-spread/4, rng.Float64()*spread-spread/4
			if rng.IntN(2) == 0 { // near a client, so hits are common
				c := clients[rng.IntN(len(clients))]
				x, y = c.cx+rng.Float64()*300-150, c.cy+rng.Float64()*300-150
			}
			var got, want []*client
			g.near(x, y, stamp, func(c *client) { got = append(got, c) })
			for _, c := range clients {
				if c.radiusMode() && !stamped[c] && (x-c.cx)*(x-c.cx)+(y-c.cy)*(y-c.cy) <= c.enterR*c.enterR {
					want = append(want, c)
				}
			}
			key := func(a, b *client) int {
				if a.cx < b.cx {
					return -1
				}
				if a.cx > b.cx {
					return 1
				}
				return 0
			}
			slices.SortFunc(got, key)
			slices.SortFunc(want, key)
			if !slices.Equal(got, want) {
				t.Fatalf("spread %g: near(%g, %g) found %d clients, want %d", spread, x, y, len(got), len(want))
			}
		}
	}
}
