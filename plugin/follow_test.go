package plugin_test

import (
	"testing"
	"time"

	"github.com/yohamta/donburi"

	"github.com/ebisync/ebisync/components"
	"github.com/ebisync/ebisync/internal/testutil"
	"github.com/ebisync/ebisync/plugin"
)

// TestServerFollowEntity: the game points a new client's interest at the
// ship it spawned for it; the scope moves with the ship.
func TestServerFollowEntity(t *testing.T) {
	reg := standardRegistry()
	var h *harness
	ships := map[uint64]donburi.Entity{}
	opts := &plugin.Options{
		DefaultRadius: 100,
		OnConnect: func(ci plugin.ClientInfo) {
			w := h.srv.World()
			e := w.Create(components.Replicated, components.Position, components.Owner)
			components.Position.SetValue(w.Entry(e), components.PositionData{X: 5000, Y: 5000})
			components.Owner.SetValue(w.Entry(e), components.OwnerData{Client: ci.ID})
			ships[ci.ID] = e
			if !h.srv.FollowEntity(ci.ID, e, 300) {
				t.Error("FollowEntity: client unknown in OnConnect")
			}
		},
	}
	h = newHarness(t, reg, opts, 2*time.Millisecond)
	defer h.close()
	h.do(func(w donburi.World) {
		for _, p := range [][2]float64{{0, 0}, {5100, 5000}, {9000, 9000}, {9100, 9000}} {
			e := w.Create(components.Replicated, components.Position)
			components.Position.SetValue(w.Entry(e), components.PositionData{X: p[0], Y: p[1]})
		}
	})
	rc := dialRaw(t, h.url, reg, true)
	defer rc.close()
	rc.subscribeAll()
	m := newRawMirror(reg)
	xs := func() map[float64]bool {
		_, bodies, err := rc.snapshot()
		if err != nil {
			t.Fatal(err)
		}
		if err := m.apply(bodies); err != nil {
			t.Fatal(err)
		}
		out := map[float64]bool{}
		pos, _ := reg.Of(components.Position)
		for _, cs := range m.ents {
			if v, ok := cs[uint64(pos.Index())]; ok {
				out[(*components.PositionData)(v).X] = true
			}
		}
		return out
	}
	testutil.Eventually(t, 5*time.Second, "ship and its neighbour in scope", func() bool {
		got := xs()
		return len(got) == 2 && got[5000] && got[5100]
	})
	// The ship flies to the far corner; the scope follows.
	h.do(func(w donburi.World) {
		components.Position.SetValue(w.Entry(ships[rc.wel.ClientID]), components.PositionData{X: 9050, Y: 9000})
	})
	testutil.Eventually(t, 5*time.Second, "scope to follow the ship", func() bool {
		got := xs()
		return len(got) == 3 && got[9050] && got[9000] && got[9100]
	})
}
