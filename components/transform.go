package components

import (
	"github.com/yohamta/donburi"
	"github.com/yohamta/donburi/features/transform"
)

// ParentData names the parent of an entity in donburi's transform
// hierarchy (features/transform), or donburi.Null for a root. The server
// maintains it from the hierarchy on every tick; a client links its mirror
// entities to match.
type ParentData struct {
	Entity donburi.Entity
}

// Parent is the component "ebisync.parent" that RegisterTransform
// registers.
var Parent = donburi.NewComponentType[ParentData]()

// Transform holds the typed handles RegisterTransform returns.
type Transform struct {
	Transform *Synced[transform.TransformData]
	Parent    *Synced[ParentData]
}

// RegisterTransform registers donburi's transform.Transform component as
// "ebisync.transform" (its local position, rotation and scale) and Parent
// as "ebisync.parent", which carries the hierarchy. With both registered,
// a server replicates the parent/child links of donburi's
// features/transform, and a client's mirror rebuilds them within its
// scope: transform.GetParent, GetChildren and WorldPosition answer on the
// client as on the server for the entities the client sees (a child whose
// parent is outside the scope is a root in the mirror). The game builds its
// hierarchy on the server with transform.AppendChild and friends, as
// usual, and gives the entities it replicates components.Replicated.
//
// It panics if either is already registered. Like Register, it is not safe
// for concurrent use.
func RegisterTransform(r *Registry) Transform {
	return Transform{
		Transform: Register(r, "ebisync.transform", transform.Transform, nil),
		Parent:    Register(r, "ebisync.parent", Parent, nil),
	}
}
