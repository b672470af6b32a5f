package plugin

import (
	"testing"
	"unsafe"

	"github.com/yohamta/donburi"

	"github.com/ebisync/ebisync/components"
	"github.com/ebisync/ebisync/internal/wire"
)

// TestInputAllocs: applying a client's input of a plain message type (no
// pointers) allocates nothing, since inputs arrive every frame from every
// client.
func TestInputAllocs(t *testing.T) {
	type push struct{ DX, DY float64 }
	reg := components.NewRegistry()
	components.RegisterStandard(reg)
	pushes := components.RegisterMessage[push](reg, "test.push", &components.MessageOptions{FromClient: true})
	w := donburi.NewWorld()
	s := New(w, reg, &Options{})
	steps := 0
	HandleInput(s, pushes, func(w donburi.World, e donburi.Entity, in push) { steps++ })
	c, stop := attachWriter(s, func([]byte) {})
	defer stop()
	e := w.Create(components.Replicated, components.Position, components.Owner)
	components.Owner.SetValue(w.Entry(e), components.OwnerData{Client: c.cn.id})
	s.Tick()
	tag := components.Replicated.Get(w.Entry(e))
	mc := s.msgCodecs[pushes.Index()]
	v := push{DX: 1, DY: -2}
	m := wire.Input{Seq: 1, ID: uint64(pushes.Index()), Entity: uint64(tag.NetID), Gen: uint64(tag.Gen), Value: mc.AppendFull(nil, unsafe.Pointer(&v))}
	if why := s.applyInput(c, &m); why != "" {
		t.Fatalf("refused: %s", why)
	}
	if n := testing.AllocsPerRun(100, func() { s.applyInput(c, &m) }); n != 0 {
		t.Fatalf("%.1f allocations per input, want 0", n)
	}
	if steps != 102 {
		t.Fatalf("%d steps ran, want 102", steps)
	}
}
