package netclient

import (
	"unsafe"

	"github.com/yohamta/donburi"

	"github.com/ebisync/ebisync/internal/codec"
)

// Entity references. A component field of type donburi.Entity travels as
// a codec.Ref (the server entity's net id and generation). The confirmed
// values keep Refs; the world, interpolated values and hooks get mirror
// entities: the referenced entity's mirror while it is in scope, else
// donburi.Null. The client keeps, per referenced net id, the mirror
// entities that refer to it, and when that id enters or leaves the mirror
// it writes their values into the world again (firing OnChange), so that a
// reference resolves once its target arrives and is never an entity that
// is not alive in the world.

// resolveRef maps a decoded Ref to the mirror entity it names, or Null.
func (c *Client) resolveRef(v uint64) uint64 {
	r := codec.Ref(v)
	if r.ID() == 0 {
		return uint64(donburi.Null)
	}
	ne := c.byNet[r.ID()]
	if ne == nil || ne.gen != r.Gen() || ne.gone || !c.world.Valid(ne.e) {
		return uint64(donburi.Null)
	}
	return uint64(ne.e)
}

// refOf maps a mirror entity to the Ref of the server entity it mirrors,
// or 0 for Null and for entities that are not mirrors.
func (c *Client) refOf(v uint64) uint64 {
	e := donburi.Entity(v)
	ne := c.byEnt[e]
	if ne == nil || ne.gone || !c.world.Valid(e) {
		return 0
	}
	return uint64(codec.MakeRef(ne.id, ne.gen))
}

// toWorld copies the confirmed value src into dst, a value the game sees,
// resolving its entity references.
func (c *Client) toWorld(comp *codec.Codec, dst, src unsafe.Pointer) {
	comp.Copy(dst, src)
	if comp.HasRefs() {
		comp.MapRefs(dst, c.resolveRef)
	}
}

// scratchOf returns a value of comp's type the client reuses.
func (c *Client) scratchOf(comp *codec.Codec) unsafe.Pointer {
	if c.scratch == nil {
		c.scratch = make([]unsafe.Pointer, len(c.codecs))
	}
	p := c.scratch[comp.Index()]
	if p == nil {
		p = comp.New()
		c.scratch[comp.Index()] = p
	}
	return p
}

// trackRefs records which net ids ne's confirmed values refer to, after
// they changed.
func (c *Client) trackRefs(ne *mirrored) {
	old := ne.refs
	ne.refs = nil
	for idx, st := range ne.comps {
		comp := c.codecs[idx]
		if st == nil || !comp.HasRefs() {
			continue
		}
		comp.MapRefs(st.confirmed, func(v uint64) uint64 {
			if id := codec.Ref(v).ID(); id != 0 && !containsID(ne.refs, id) {
				ne.refs = append(ne.refs, id)
			}
			return v
		})
	}
	for _, id := range old {
		if !containsID(ne.refs, id) {
			c.unrefer(id, ne)
		}
	}
	for _, id := range ne.refs {
		if !containsID(old, id) {
			if c.refsTo == nil {
				c.refsTo = make(map[uint32]map[*mirrored]struct{})
			}
			set := c.refsTo[id]
			if set == nil {
				set = make(map[*mirrored]struct{})
				c.refsTo[id] = set
			}
			set[ne] = struct{}{}
		}
	}
}

// untrackRefs forgets ne's references, as it leaves the mirror.
func (c *Client) untrackRefs(ne *mirrored) {
	for _, id := range ne.refs {
		c.unrefer(id, ne)
	}
	ne.refs = nil
}

func (c *Client) unrefer(id uint32, ne *mirrored) {
	set := c.refsTo[id]
	delete(set, ne)
	if len(set) == 0 {
		delete(c.refsTo, id)
	}
}

// resyncReferrers writes into the world again the values of the entities
// that refer to net id id, which has just entered or left the mirror.
func (c *Client) resyncReferrers(id uint32) {
	for ne := range c.refsTo[id] {
		for idx, st := range ne.comps {
			if comp := c.codecs[idx]; st != nil && comp.HasRefs() && !ne.held(idx) {
				c.syncWorld(ne, comp, false)
			}
		}
	}
}

func containsID(ids []uint32, id uint32) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}
