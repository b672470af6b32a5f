package netclient

import (
	"slices"

	"github.com/yohamta/donburi"
	"github.com/yohamta/donburi/features/transform"

	"github.com/ebisync/ebisync/components"
)

// The transform hierarchy. When the registry has components.Parent and
// transform.Transform (components.RegisterTransform), the client links
// each mirror entity to the parent its Parent component names, with
// donburi's transform functions, whenever that component, the entity's
// Transform, or the parent's presence in the mirror changes. A parent
// outside the scope leaves the child a root. A link that would close a
// cycle is refused, and tried again after each batch: a batch applies
// reparentings one entity at a time, in an order that may pass through a
// cycle, and with a bandwidth cap the rest of a reparenting may come in a
// later batch. (A consistent server never sends a real cycle.)

// maxDepth bounds the ancestor walk that keeps the mirror's hierarchy free
// of cycles.
const maxDepth = 1024

// initHierarchy finds the components the hierarchy needs.
func (c *Client) initHierarchy() {
	c.ownerIdx = -1
	if o, ok := c.reg.Of(components.Owner); ok {
		c.ownerIdx = o.Index()
	}
	p, okP := c.reg.Of(components.Parent)
	t, okT := c.reg.Of(transform.Transform)
	c.parentIdx, c.transformIdx = -1, -1
	if okP && okT {
		c.parentIdx, c.transformIdx = p.Index(), t.Index()
	}
}

// hierarchyComp reports whether a change of component idx may change ne's
// place in the hierarchy.
func (c *Client) hierarchyComp(idx int) bool {
	return c.parentIdx >= 0 && (idx == c.parentIdx || idx == c.transformIdx)
}

// linkParent makes ne's mirror entity a child of the entity its Parent
// component names, or a root.
func (c *Client) linkParent(ne *mirrored) {
	if c.parentIdx < 0 || ne.gone || !c.world.Valid(ne.e) {
		return
	}
	entry := c.world.Entry(ne.e)
	if !entry.HasComponent(transform.Transform) {
		return
	}
	want := donburi.Null
	if entry.HasComponent(components.Parent) {
		want = components.Parent.Get(entry).Entity
	}
	cur, has := transform.GetParent(entry)
	ok := want != donburi.Null && c.world.Valid(want) && want != ne.e && c.world.Entry(want).HasComponent(transform.Transform)
	if ok && c.descends(want, ne.e) {
		// A batch applies reparentings one entity at a time, so a
		// consistent server's batch may pass through a cycle (B goes
		// under A, then A leaves B): try again once the batch is in.
		c.relink = append(c.relink, ne)
		ok = false
	}
	if !ok {
		if has {
			transform.RemoveParent(entry, false)
		}
		return
	}
	switch {
	case has && cur.Valid() && cur.Entity() == want:
	case has:
		transform.ChangeParent(entry, c.world.Entry(want), false)
	default:
		transform.AppendChild(c.world.Entry(want), entry, false)
	}
}

// relinkRefused links again the entities whose link was refused as a
// cycle while a batch was applied. With the whole reparenting in, the
// mirror's links are a part of the server's forest, so each succeeds. One
// still refused waits for the next batch: with a bandwidth cap the server
// may send the other half of a reparenting later. (A real cycle, which a
// consistent server never sends, is left out for good.)
func (c *Client) relinkRefused() {
	if len(c.relink) == 0 {
		return
	}
	todo := c.relink
	c.relink = nil
	for i, ne := range todo {
		if !slices.Contains(todo[:i], ne) {
			c.linkParent(ne) // appends ne to c.relink again if still refused
		}
	}
	clear(todo)
	if len(c.relink) == 0 {
		c.relink = todo[:0]
	}
}

// descends reports whether e is anc or one of its descendants in the
// mirror's hierarchy.
func (c *Client) descends(e, anc donburi.Entity) bool {
	for range maxDepth {
		if e == anc {
			return true
		}
		if !c.world.Valid(e) {
			return false
		}
		entry := c.world.Entry(e)
		if !entry.HasComponent(transform.Transform) {
			return false
		}
		p, ok := transform.GetParent(entry)
		if !ok || !p.Valid() {
			return false
		}
		e = p.Entity()
	}
	return true
}

// unlink detaches ne's mirror entity from its parent and its children
// before it leaves the world, so that no hierarchy keeps a removed entry.
func (c *Client) unlink(ne *mirrored) {
	if c.parentIdx < 0 || !c.world.Valid(ne.e) {
		return
	}
	entry := c.world.Entry(ne.e)
	if !entry.HasComponent(transform.Transform) {
		return
	}
	if children, ok := transform.GetChildren(entry); ok {
		for _, ch := range append([]*donburi.Entry(nil), children...) {
			if ch.Valid() && ch.HasComponent(transform.Transform) {
				transform.RemoveParent(ch, false)
			}
		}
	}
	transform.RemoveParent(entry, false)
}
