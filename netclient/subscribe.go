package netclient

import (
	"errors"
	"fmt"
	"math"

	"github.com/yohamta/donburi"

	"github.com/ebisync/ebisync/internal/codec"
	"github.com/ebisync/ebisync/internal/wire"
)

// subsPerMessage bounds the entries of one Subscribe message, so that it
// stays within the server's limits: 1 088 entries and 32 KiB by default.
const subsPerMessage = 512

var errSendOverflow = errors.New("netclient: send queue overflow")

// Subscriptions and interest are remembered by the client and sent again
// after every reconnect. All of these methods are safe for concurrent use.
// While the client is between connections they only update what is
// remembered.

// Subscribe asks for components cts of every entity in scope. It fails,
// changing nothing, if a component is not registered.
// It is safe for concurrent use.
func (c *Client) Subscribe(cts ...donburi.IComponentType) error {
	comps, err := c.lookup(cts)
	if err != nil {
		return err
	}
	return c.changeComps(comps, true)
}

// SubscribeAll subscribes to every registered component.
// It is safe for concurrent use.
func (c *Client) SubscribeAll() error {
	return c.changeComps(c.codecs, true)
}

// Unsubscribe stops the subscription to components cts. The server removes
// them from mirror entities, and entities left with no subscribed
// component leave the mirror (ExitUnsubscribed).
// It is safe for concurrent use.
func (c *Client) Unsubscribe(cts ...donburi.IComponentType) error {
	comps, err := c.lookup(cts)
	if err != nil {
		return err
	}
	return c.changeComps(comps, false)
}

// SubscribeEntity keeps server entity (netID, gen) in scope with all its
// components, whatever the interest.
// It is safe for concurrent use.
func (c *Client) SubscribeEntity(netID, gen uint32) error {
	return c.changeEntity(entKey{netID, gen}, true)
}

// UnsubscribeEntity ends SubscribeEntity(netID, gen).
// It is safe for concurrent use.
func (c *Client) UnsubscribeEntity(netID, gen uint32) error {
	return c.changeEntity(entKey{netID, gen}, false)
}

// SetInterest limits the scope to entities within radius of (x, y)
// (entities without a position stay in scope). The values must be finite
// and radius not negative.
// It is safe for concurrent use.
func (c *Client) SetInterest(x, y, radius float64) error {
	if !finite(x) || !finite(y) || !finite(radius) || radius < 0 {
		return fmt.Errorf("netclient: SetInterest(%v, %v, %v): need finite values and radius >= 0", x, y, radius)
	}
	return c.setInterest(wire.Interest{Mode: wire.InterestPoint, X: x, Y: y, Radius: radius})
}

// FollowInterest limits the scope to entities within radius of server
// entity (netID, gen), following it as it moves.
// It is safe for concurrent use.
func (c *Client) FollowInterest(netID, gen uint32, radius float64) error {
	if !finite(radius) || radius < 0 {
		return fmt.Errorf("netclient: FollowInterest: radius %v: need a finite radius >= 0", radius)
	}
	return c.setInterest(wire.Interest{Mode: wire.InterestFollow, ID: uint64(netID), Gen: uint64(gen), Radius: radius})
}

// GlobalInterest puts every subscribed entity in scope, at any distance
// (the server's default unless it sets a default radius).
// It is safe for concurrent use.
func (c *Client) GlobalInterest() error {
	return c.setInterest(wire.Interest{Mode: wire.InterestGlobal})
}

func (c *Client) lookup(cts []donburi.IComponentType) ([]*codec.Codec, error) {
	comps := make([]*codec.Codec, len(cts))
	for i, ct := range cts {
		comp, ok := c.reg.Of(ct)
		if !ok {
			return nil, fmt.Errorf("%w: %v", ErrUnknownComponent, ct)
		}
		comps[i] = c.codecs[comp.Index()]
	}
	return comps, nil
}

func (c *Client) changeComps(comps []*codec.Codec, add bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed.Load() {
		return ErrClosed
	}
	var subs []wire.Sub
	for _, comp := range comps {
		if c.compSubs[comp] == add {
			continue
		}
		if add {
			c.compSubs[comp] = true
		} else {
			delete(c.compSubs, comp)
		}
		if c.live != nil {
			subs = append(subs, wire.Sub{Kind: wire.SubComponent, ID: c.live.toServer[comp.Index()]})
		}
	}
	kind := wire.KindSubscribe
	if !add {
		kind = wire.KindUnsubscribe
	}
	c.sendSubsLocked(kind, subs)
	return nil
}

func (c *Client) changeEntity(k entKey, add bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed.Load() {
		return ErrClosed
	}
	if c.entSubs[k] == add {
		return nil
	}
	kind := wire.KindSubscribe
	if add {
		c.entSubs[k] = true
	} else {
		delete(c.entSubs, k)
		kind = wire.KindUnsubscribe
	}
	c.sendSubsLocked(kind, []wire.Sub{{Kind: wire.SubEntity, ID: uint64(k.id), Gen: uint64(k.gen)}})
	return nil
}

func (c *Client) setInterest(in wire.Interest) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed.Load() {
		return ErrClosed
	}
	c.interest, c.interestSet = in, true
	c.sendLocked(wire.AppendInterest(nil, &in))
	return nil
}

// sendSubsLocked sends subs to the live session in messages of at most
// subsPerMessage entries. c.mu must be held.
func (c *Client) sendSubsLocked(kind wire.Kind, subs []wire.Sub) {
	for len(subs) > 0 {
		n := min(len(subs), subsPerMessage)
		c.sendLocked(wire.AppendSubscribe(nil, kind, &wire.Subscribe{Subs: subs[:n]}))
		subs = subs[n:]
	}
}

// sendLocked queues msg on the live session, if any. If the queue is full
// the session is dropped: the client reconnects and sends everything it
// remembers again, so the server's view of the subscriptions never
// silently diverges. c.mu must be held.
func (c *Client) sendLocked(msg []byte) {
	if s := c.live; s != nil && !s.send(msg) {
		s.fail(errSendOverflow, statusGoingAway, "client send queue overflow")
	}
}

func finite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }
