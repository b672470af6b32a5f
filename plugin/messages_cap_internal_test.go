package plugin

import (
	"runtime"
	"testing"

	"github.com/yohamta/donburi"

	"github.com/ebisync/ebisync/components"
	"github.com/ebisync/ebisync/internal/wire"
)

// TestTakeMsgsSpawns: a message takes along the spawns its client still
// waits for of the entities it names, ahead of the budget; when the batch
// has no room for them all, what fits goes and the message waits (with the
// ones after it), never going before its spawns. A message naming only
// entities out of the client's scope goes as it is.
func TestTakeMsgsSpawns(t *testing.T) {
	type volley struct {
		Targets [6]donburi.Entity
		Other   donburi.Entity
	}
	reg := components.NewRegistry()
	components.RegisterStandard(reg)
	vm := components.RegisterMessage[volley](reg, "test.volley", nil)
	w := donburi.NewWorld()
	s := New(w, reg, &Options{BytesPerSecond: 600}) // 10 bytes a tick: one spawn per batch
	c, stop := attachWriter(s, func([]byte) {})
	defer stop()
	c.typeSubs = ^uint64(0)
	var ents []donburi.Entity
	for i := range 20 {
		e := w.Create(components.Replicated, components.Position)
		components.Position.SetValue(w.Entry(e), components.PositionData{X: float64(i)})
		ents = append(ents, e)
	}
	lone := w.Create(components.Position) // not replicated: in no scope
	s.Tick()
	for c.cn.busy.Load() {
		runtime.Gosched()
	}
	pending := func(e donburi.Entity) bool {
		r := s.recordOf(e)
		i := r.viewIndex(c)
		return i >= 0 && r.views[i].pending
	}
	var waiting []donburi.Entity
	for _, e := range ents {
		if pending(e) {
			waiting = append(waiting, e)
		}
	}
	var v volley
	if len(waiting) < len(v.Targets)+1 {
		t.Fatalf("%d of %d spawns wait after the first capped batch; want most", len(waiting), len(ents))
	}
	for i := range v.Targets {
		v.Targets[i] = waiting[len(waiting)-1-i]
	}
	v.Other = v.Targets[0] // named twice
	r := s.recordOf(v.Targets[0])
	one := s.entitySize(c, r, &r.views[r.viewIndex(c)])

	// Queued: a message out of scope, the volley, another out of scope.
	Send(s, c.cn.id, vm, volley{Other: lone})
	Send(s, c.cn.id, vm, v)
	Send(s, c.cn.id, vm, volley{})
	if len(c.msgs) != 3 {
		t.Fatalf("%d messages queued, want 3", len(c.msgs))
	}
	out := &batches{}
	b := &wire.Batch{}
	spawned := func() int {
		n := 0
		for _, e := range v.Targets {
			if !pending(e) {
				n++
			}
		}
		return n
	}

	// Room for the first message and two and a half spawns: two spawns
	// go, the volley and the message after it wait.
	first := len(s.encoded(c.msgs[0].m)) + 8
	if used := s.takeMsgs(out, c, b, 1<<20, first+2*one+one/2); used != first+2*one {
		t.Errorf("small room: %d bytes used, want %d", used, first+2*one)
	}
	if len(b.Messages) != 1 || len(c.msgs) != 2 || spawned() != 2 {
		t.Fatalf("small room: %d messages taken, %d waiting, %d targets spawned; want 1, 2, 2", len(b.Messages), len(c.msgs), spawned())
	}
	// With room, the volley goes with the rest of its spawns, and a budget
	// smaller than the volley still lets it go first, alone.
	s.takeMsgs(out, c, b, 10, maxBatch)
	if len(b.Messages) != 2 || len(c.msgs) != 1 || spawned() != len(v.Targets) {
		t.Fatalf("room: %d messages taken, %d waiting, %d targets spawned; want 2, 1, %d", len(b.Messages), len(c.msgs), spawned(), len(v.Targets))
	}
	s.takeMsgs(out, c, b, 10, maxBatch)
	if len(b.Messages) != 3 || len(c.msgs) != 0 || c.msgBytes != 0 {
		t.Fatalf("last: %d messages taken, %d waiting, %d bytes queued; want 3, 0, 0", len(b.Messages), len(c.msgs), c.msgBytes)
	}
	still := 0
	for _, e := range ents {
		if pending(e) {
			still++
		}
	}
	if still != len(waiting)-len(v.Targets) {
		t.Fatalf("%d spawns still wait, want %d: only the named ones go with the messages", still, len(waiting)-len(v.Targets))
	}
}
