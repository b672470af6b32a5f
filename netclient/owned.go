package netclient

import (
	"github.com/yohamta/donburi"

	"github.com/ebisync/ebisync/components"
)

// Ownership. The client keeps the set of mirror entities whose
// components.Owner names its own client id, updated as Owner values
// arrive and entities enter and leave, so a game finds its ship or units
// without searching the mirror.

// Owns reports whether e is a mirror entity this client owns. Game
// goroutine only.
func (c *Client) Owns(e donburi.Entity) bool {
	ne := c.byEnt[e]
	if ne == nil {
		return false
	}
	_, ok := c.owned[ne]
	return ok && c.world.Valid(e)
}

// Owned appends to dst the mirror entities this client owns, in no
// particular order, and returns the result. Game goroutine only.
func (c *Client) Owned(dst []donburi.Entity) []donburi.Entity {
	for ne := range c.owned {
		if c.world.Valid(ne.e) {
			dst = append(dst, ne.e)
		}
	}
	return dst
}

// trackOwner records whether ne is owned by this client, after its Owner
// value or its presence changed.
func (c *Client) trackOwner(ne *mirrored) {
	owns := false
	if c.ownerIdx >= 0 && !ne.gone {
		if st := ne.comps[c.ownerIdx]; st != nil {
			owns = (*components.OwnerData)(st.confirmed).Client == c.ClientID()
		}
	}
	if owns {
		if c.owned == nil {
			c.owned = make(map[*mirrored]struct{})
		}
		c.owned[ne] = struct{}{}
	} else {
		delete(c.owned, ne)
	}
}
