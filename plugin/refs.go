package plugin

import (
	"unsafe"

	"github.com/yohamta/donburi"

	"github.com/ebisync/ebisync/components"
	"github.com/ebisync/ebisync/internal/codec"
)

// Entity references. A donburi.Entity field of a component or message
// travels as the codec.Ref of the entity's record (its net id and
// generation). Detection compares the field as the server's entity; the
// server writes the Ref when it encodes, and resolves a client's Ref back
// to a live entity when it decodes a mutation or a message.

// recordOf returns e's live record, or nil when e is not alive, not
// replicated, or not yet seen by a tick.
func (s *Server) recordOf(e donburi.Entity) *entityRec {
	if e == donburi.Null || s.world == nil || !s.world.Valid(e) {
		return nil
	}
	entry := s.world.Entry(e)
	if !entry.HasComponent(components.Replicated) {
		return nil
	}
	r := s.byTag(components.Replicated.Get(entry))
	if r == nil || r.entity != e {
		return nil
	}
	return r
}

// refOfEntity maps a server entity to the Ref clients know it by: 0 for Null,
// and for an entity that is not alive or not replicated.
func (s *Server) refOfEntity(v uint64) uint64 {
	r := s.recordOf(donburi.Entity(v))
	if r == nil {
		return 0
	}
	return uint64(codec.MakeRef(r.id, r.gen))
}

// refsPending reports whether the value v of c names a replicated entity
// this tick's detection has not reached yet, whose net id its encoding
// would lack.
func (s *Server) refsPending(c *codec.Codec, v unsafe.Pointer) bool {
	if s.world == nil {
		return false // a gateway's values hold Refs
	}
	pending := false
	c.MapRefs(v, func(x uint64) uint64 {
		e := donburi.Entity(x)
		if !pending && e != donburi.Null && s.world.Valid(e) && s.world.Entry(e).HasComponent(components.Replicated) && s.recordOf(e) == nil {
			pending = true
		}
		return x
	})
	return pending
}

// entityOf maps a client's Ref to the live entity it names, or Null.
func (s *Server) entityOf(v uint64) uint64 {
	ref := codec.Ref(v)
	r := s.record(uint64(ref.ID()), uint64(ref.Gen()))
	if r == nil {
		return uint64(donburi.Null)
	}
	return uint64(r.entity)
}
