package plugin_test

import (
	"net/http/httptest"
	"testing"
	"time"

	"github.com/yohamta/donburi"

	"github.com/ebisync/ebisync/components"
	"github.com/ebisync/ebisync/plugin"
)

func TestSmokeRaw(t *testing.T) {
	reg := components.NewRegistry()
	components.RegisterStandard(reg)
	w := donburi.NewWorld()
	srv := plugin.New(w, reg, nil)
	ts := httptest.NewServer(srv)
	defer ts.Close()
	defer srv.Close()
	var ents []donburi.Entity
	for i := 0; i < 3; i++ {
		e := w.Create(components.Replicated, components.Position)
		components.Position.SetValue(w.Entry(e), components.PositionData{X: float64(i * 10), Y: 5})
		ents = append(ents, e)
	}
	rc := dialRaw(t, wsURL(ts), reg, true)
	defer rc.close()
	rc.subscribeAll()
	for tick := 0; tick < 30; tick++ {
		for _, e := range ents {
			p := components.Position.Get(w.Entry(e))
			p.X += 1.0
		}
		srv.Tick()
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	msgs, bodies, err := rc.snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if len(bodies) == 0 {
		t.Fatal("no batches")
	}
	t.Logf("%d batches; first: %d spawns; sizes %d %d", len(bodies), len(bodies[0].Spawns), len(msgs[0]), len(msgs[len(msgs)-1]))
	last := bodies[len(bodies)-1]
	t.Logf("last: %+v", last.Updates)
}
