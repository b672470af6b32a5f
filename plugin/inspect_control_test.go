package plugin_test

import (
	"testing"
	"time"

	"github.com/yohamta/donburi"

	"github.com/ebisync/ebisync/components"
	"github.com/ebisync/ebisync/internal/testutil"
	"github.com/ebisync/ebisync/netclient"
)

// TestInspectorControlRequests: the Inspector's log lists the clients'
// control requests with the statuses the clients got (a take and a
// release by the ship's owner, a take by another client that the default
// rules refuse), and the refused one counts against its connection.
func TestInspectorControlRequests(t *testing.T) {
	g := newInspectorGame(t)
	defer g.close()
	alice, bob := g.clients[0], g.clients[1]
	var aliceID uint64
	alice.do(func(donburi.World) { aliceID = alice.c.ClientID() })
	g.h.do(func(w donburi.World) {
		for _, a := range w.Archetypes() {
			if !a.Layout().HasComponent(components.Replicated) {
				continue
			}
			for _, e := range a.Entities() {
				entry := w.Entry(e)
				if components.Replicated.Get(entry).NetID == g.ship.NetID {
					entry.AddComponent(components.Owner)
					components.Owner.SetValue(entry, components.OwnerData{Client: aliceID})
				}
			}
		}
	})
	local := func(c *clientLoop) donburi.Entity {
		t.Helper()
		var e donburi.Entity
		testutil.Eventually(t, 5*time.Second, "the ship in the mirror", func() bool {
			var ok bool
			c.do(func(donburi.World) { e, ok = c.c.Entity(g.ship.NetID) })
			return ok
		})
		return e
	}
	request := func(c *clientLoop, take bool) netclient.ControlStatus {
		t.Helper()
		e := local(c)
		var ch <-chan netclient.ControlResult
		c.do(func(donburi.World) {
			if take {
				ch = c.c.TakeControl(e, 0, false)
			} else {
				ch = c.c.ReleaseControl(e)
			}
		})
		select {
		case res := <-ch:
			return res.Status
		case <-time.After(5 * time.Second):
			t.Fatal("no control result")
		}
		return netclient.ControlNoReply
	}
	// The owner takes control once the ship's Owner has reached its mirror.
	testutil.Eventually(t, 5*time.Second, "alice's take of her ship", func() bool {
		return request(alice, true) == netclient.ControlTaken
	})
	if st := request(bob, true); st != netclient.ControlForbidden {
		t.Fatalf("bob's take of alice's ship: %v, want Forbidden", st)
	}
	if st := request(alice, false); st != netclient.ControlReleased {
		t.Fatalf("alice's release: %v, want Released", st)
	}

	type entry struct{ user, status string }
	want := []entry{{"alice", "Taken"}, {"bob", "Forbidden"}, {"alice", "Released"}}
	testutil.Eventually(t, 5*time.Second, "the control requests in the log, bob's refusal on his connection", func() bool {
		st := g.state(t, "")
		var got []entry
		for _, e := range st.Log {
			if e.Kind == "control" && e.Entity == g.ship.NetID {
				got = append(got, entry{e.User, e.Status})
			}
		}
		// Takes refused before the Owner reached alice's mirror come first.
		if len(got) < len(want) {
			return false
		}
		got = got[len(got)-len(want):]
		for i := range want {
			if got[i] != want[i] {
				return false
			}
		}
		refused := false
		for _, cn := range st.Connections {
			refused = refused || cn.User == "bob" && cn.Refused == 1
		}
		return refused
	})
}
