package plugin

import (
	"github.com/yohamta/donburi"
	"github.com/yohamta/donburi/features/transform"

	"github.com/ebisync/ebisync/components"
)

// The transform hierarchy. With components.RegisterTransform, the server
// writes each replicated entity's components.Parent from donburi's
// transform hierarchy at the start of every tick, before detection, so a
// reparenting replicates like any change. Entities without a Parent
// component (the game creates hierarchy members with it) are left alone.

// syncParents writes every hierarchy member's Parent from the hierarchy.
func (s *Server) syncParents() {
	if !s.hierarchy {
		return
	}
	for _, a := range s.world.Archetypes() {
		l := a.Layout()
		if !l.HasComponent(components.Replicated) || !l.HasComponent(transform.Transform) || !l.HasComponent(components.Parent) {
			continue
		}
		for _, e := range a.Entities() {
			entry := s.world.Entry(e)
			want := donburi.Null
			if p, ok := transform.GetParent(entry); ok && p.Valid() {
				want = p.Entity()
			}
			if pd := components.Parent.Get(entry); pd.Entity != want {
				pd.Entity = want
			}
		}
	}
}
