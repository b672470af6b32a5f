package plugin_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/yohamta/donburi"
	dmath "github.com/yohamta/donburi/features/math"
	"github.com/yohamta/donburi/features/transform"

	"github.com/ebisync/ebisync"
	"github.com/ebisync/ebisync/components"
	"github.com/ebisync/ebisync/internal/testutil"
	"github.com/ebisync/ebisync/netclient"
	"github.com/ebisync/ebisync/plugin"
)

// hierarchyRegistry is the standard registry with the transform hierarchy
// and the client-writable score of the mutation tests.
func hierarchyRegistry() *components.Registry {
	reg, _, _ := mutationRegistry()
	components.RegisterTransform(reg)
	return reg
}

// treeRef is a server entity as clients know it: net id and generation.
type treeRef struct{ id, gen uint32 }

// treeNode is a server entity's place in the hierarchy, as the server's
// own donburi transform functions report it.
type treeNode struct {
	parent treeRef // zero for a root
	pos    components.PositionData
	local  transform.TransformData
	world  dmath.Vec2
	rot    float64
	scale  dmath.Vec2
}

// serverTree reads the server's hierarchy from donburi's transform
// functions (not from components.Parent, which the server derives).
func serverTree(w donburi.World) map[treeRef]treeNode {
	ref := func(e *donburi.Entry) treeRef {
		tag := components.Replicated.Get(e)
		return treeRef{tag.NetID, tag.Gen}
	}
	out := map[treeRef]treeNode{}
	for _, a := range w.Archetypes() {
		if !a.Layout().HasComponent(components.Replicated) || !a.Layout().HasComponent(transform.Transform) {
			continue
		}
		for _, e := range a.Entities() {
			entry := w.Entry(e)
			n := treeNode{
				pos:   *components.Position.Get(entry),
				local: *transform.GetTransform(entry),
				world: transform.WorldPosition(entry),
				rot:   transform.WorldRotation(entry),
				scale: transform.WorldScale(entry),
			}
			if p, ok := transform.GetParent(entry); ok {
				n.parent = ref(p)
			}
			out[ref(entry)] = n
		}
	}
	return out
}

// treeScope is a client's interest: global, or a circle.
type treeScope struct {
	global bool
	x, y   float64
	r      float64
}

func (s treeScope) covers(p components.PositionData) bool {
	return s.global || math.Hypot(p.X-s.x, p.Y-s.y) <= s.r
}

// checkTree compares p's mirror with want, the server's tree: the mirror
// holds exactly the entities in scope; each has the server's local
// transform, its server parent as mirror parent (in the transform
// hierarchy and in components.Parent) when that parent is mirrored and is
// a root otherwise, and the mirrored children of its server children; and
// where the whole ancestor chain is mirrored, the world position,
// rotation and scale agree with the server's. It returns the first
// difference, or "".
func checkTree(p *clientLoop, w donburi.World, want map[treeRef]treeNode, scope treeScope) string {
	mirror := map[treeRef]donburi.Entity{}
	for _, a := range w.Archetypes() {
		if !a.Layout().HasComponent(components.Replicated) {
			continue
		}
		for _, e := range a.Entities() {
			id, gen, ok := p.c.NetID(e)
			if !ok {
				return fmt.Sprintf("mirror entity %v is not a mirror", e)
			}
			r := treeRef{id, gen}
			if _, ok := want[r]; !ok {
				return fmt.Sprintf("entity %d/%d is mirrored but gone on the server", id, gen)
			}
			mirror[r] = e
		}
	}
	for r, n := range want {
		if _, ok := mirror[r]; ok != scope.covers(n.pos) {
			return fmt.Sprintf("entity %d/%d at %v: mirrored %v, in scope %v", r.id, r.gen, n.pos, ok, scope.covers(n.pos))
		}
	}
	kids := map[treeRef][]donburi.Entity{}
	for r := range mirror {
		if pr := want[r].parent; pr != (treeRef{}) {
			if _, ok := mirror[pr]; ok {
				kids[pr] = append(kids[pr], mirror[r])
			}
		}
	}
	for r, e := range mirror {
		n := want[r]
		entry := w.Entry(e)
		if !entry.HasComponent(transform.Transform) || !entry.HasComponent(components.Parent) {
			return fmt.Sprintf("entity %d lacks Transform or Parent in the mirror", r.id)
		}
		local := transform.GetTransform(entry)
		if local.LocalPosition != n.local.LocalPosition || local.LocalRotation != n.local.LocalRotation || local.LocalScale != n.local.LocalScale {
			return fmt.Sprintf("entity %d: local transform %+v, want %+v", r.id, *local, n.local)
		}
		wantParent := donburi.Null
		if n.parent != (treeRef{}) {
			wantParent = mirror[n.parent] // Null when not mirrored
		}
		if got := components.Parent.Get(entry).Entity; got != wantParent {
			return fmt.Sprintf("entity %d: Parent component %v, want %v (server parent %d/%d)", r.id, got, wantParent, n.parent.id, n.parent.gen)
		}
		gotParent := donburi.Null
		if pe, ok := transform.GetParent(entry); ok {
			if !pe.Valid() {
				return fmt.Sprintf("entity %d: hierarchy parent is not alive in the mirror", r.id)
			}
			gotParent = pe.Entity()
		}
		if gotParent != wantParent {
			return fmt.Sprintf("entity %d: hierarchy parent %v, want %v (server parent %d/%d)", r.id, gotParent, wantParent, n.parent.id, n.parent.gen)
		}
		if wp := transform.WorldPosition(entry); gotParent == donburi.Null && wp != local.LocalPosition {
			// A root's world position is its own: anything else is a
			// link to an entity no longer in the hierarchy.
			return fmt.Sprintf("entity %d is a root at world position %v, not at its local position %v", r.id, wp, local.LocalPosition)
		}
		var gotKids []donburi.Entity
		if cs, ok := transform.GetChildren(entry); ok {
			for _, c := range cs {
				if !c.Valid() {
					return fmt.Sprintf("entity %d: a hierarchy child is not alive in the mirror", r.id)
				}
				gotKids = append(gotKids, c.Entity())
			}
		}
		wantKids := kids[r]
		slices.Sort(gotKids)
		slices.Sort(wantKids)
		if !slices.Equal(gotKids, wantKids) {
			return fmt.Sprintf("entity %d: children %v, want %v", r.id, gotKids, wantKids)
		}
		chain := true
		for q := n.parent; q != (treeRef{}); q = want[q].parent {
			if _, ok := mirror[q]; !ok {
				chain = false
				break
			}
		}
		if !chain {
			continue
		}
		wp, rot, sc := transform.WorldPosition(entry), transform.WorldRotation(entry), transform.WorldScale(entry)
		if math.Abs(wp.X-n.world.X) > 1e-9 || math.Abs(wp.Y-n.world.Y) > 1e-9 {
			return fmt.Sprintf("entity %d: world position %v, server %v", r.id, wp, n.world)
		}
		if math.Abs(rot-n.rot) > 1e-9 || math.Abs(sc.X-n.scale.X) > 1e-9 || math.Abs(sc.Y-n.scale.Y) > 1e-9 {
			return fmt.Sprintf("entity %d: world rotation %v scale %v, server %v %v", r.id, rot, sc, n.rot, n.scale)
		}
	}
	return ""
}

// TestTransformHierarchy reparents, spawns and despawns entities of a
// donburi transform hierarchy at random, with clients whose scopes cover
// parts of the world. After every step, once replicated, each client's
// mirror tree is the server's restricted to its scope (a child whose
// parent is outside it is a root), and transform.WorldPosition agrees
// with the server's for every entity whose ancestors are all mirrored.
//
// With a bandwidth cap, the changes of a step reach a client over several
// batches, so a reparenting may arrive in halves.
func TestTransformHierarchy(t *testing.T) {
	t.Run("uncapped", func(t *testing.T) { testTransformHierarchy(t, &plugin.Options{Hysteresis: 1}) })
	t.Run("bandwidth cap", func(t *testing.T) {
		testTransformHierarchy(t, &plugin.Options{Hysteresis: 1, BytesPerSecond: 30000, TickRate: 500})
	})
}

func testTransformHierarchy(t *testing.T, opts *plugin.Options) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 16))
	h := newHarness(t, hierarchyRegistry(), opts, 2*time.Millisecond)
	defer h.close()

	scopes := []treeScope{{global: true}, {x: 250, y: 0, r: 300}, {x: 700, y: 50, r: 220}}
	var clients []*clientLoop
	for _, sc := range scopes {
		p := startClientLoop(t, h.url, hierarchyRegistry(), nil)
		defer p.close()
		if err := p.c.SubscribeAll(); err != nil {
			t.Fatal(err)
		}
		if !sc.global {
			if err := p.c.SetInterest(sc.x, sc.y, sc.r); err != nil {
				t.Fatal(err)
			}
		}
		clients = append(clients, p)
	}

	var live []donburi.Entity
	randPos := func() components.PositionData {
		return components.PositionData{X: rng.Float64() * 1000, Y: rng.Float64()*200 - 100}
	}
	randLocal := func() transform.TransformData {
		return transform.TransformData{
			LocalPosition: dmath.Vec2{X: rng.NormFloat64() * 50, Y: rng.NormFloat64() * 50},
			LocalRotation: rng.Float64()*360 - 180,
			LocalScale:    dmath.Vec2{X: 0.5 + rng.Float64(), Y: 0.5 + rng.Float64()},
		}
	}
	setLocal := func(entry *donburi.Entry) {
		d := transform.GetTransform(entry)
		l := randLocal()
		d.LocalPosition, d.LocalRotation, d.LocalScale = l.LocalPosition, l.LocalRotation, l.LocalScale
	}
	// descends reports whether e is anc or below it.
	descends := func(w donburi.World, e, anc donburi.Entity) bool {
		for {
			if e == anc {
				return true
			}
			p, ok := transform.GetParent(w.Entry(e))
			if !ok {
				return false
			}
			e = p.Entity()
		}
	}
	attach := func(w donburi.World, child, parent donburi.Entity) {
		if descends(w, parent, child) {
			return // would close a cycle
		}
		ce, pe := w.Entry(child), w.Entry(parent)
		if _, ok := transform.GetParent(ce); ok {
			transform.ChangeParent(ce, pe, false)
		} else {
			transform.AppendChild(pe, ce, false)
		}
	}
	spawn := func(w donburi.World) donburi.Entity {
		e := w.Create(components.Replicated, components.Position, transform.Transform, components.Parent)
		entry := w.Entry(e)
		components.Position.SetValue(entry, randPos())
		setLocal(entry)
		live = append(live, e)
		return e
	}
	pick := func() donburi.Entity { return live[rng.IntN(len(live))] }
	prune := func(w donburi.World) {
		live = slices.DeleteFunc(live, func(e donburi.Entity) bool { return !w.Valid(e) })
	}
	h.do(func(w donburi.World) {
		for range 50 {
			spawn(w)
		}
		for range 35 {
			attach(w, pick(), pick())
		}
	})

	steps := 60
	if testing.Short() {
		steps = 15
	}
	var reparents, detaches, recursive, detachedRemovals, spawns int
	// What the mirrors held, summed over the steps: entities, children
	// linked to a parent, and children with a mirrored grandparent.
	var mirrored, linked, chained [3]int
	for step := range steps {
		h.do(func(w donburi.World) {
			for range 10 {
				switch k := rng.IntN(13); {
				case k < 3: // reparent (a root gets a parent, a child another)
					attach(w, pick(), pick())
					reparents++
				case k == 12: // invert a link: the parent goes under its child
					c := w.Entry(pick())
					if p, ok := transform.GetParent(c); ok {
						transform.RemoveParent(c, false)
						attach(w, p.Entity(), c.Entity())
						reparents++
					}
				case k < 4: // detach
					if e := w.Entry(pick()); e.Valid() {
						if _, ok := transform.GetParent(e); ok {
							transform.RemoveParent(e, false)
							detaches++
						}
					}
				case k < 6 || len(live) < 40: // spawn, perhaps as a child
					e := spawn(w)
					if rng.IntN(2) == 0 {
						attach(w, e, pick())
					}
					spawns++
				case k < 7 && len(live) > 40: // despawn with descendants
					transform.RemoveRecursive(w.Entry(pick()))
					prune(w)
					recursive++
				case k < 8 && len(live) > 40: // despawn, its children become roots
					e := w.Entry(pick())
					if cs, ok := transform.GetChildren(e); ok {
						for _, c := range slices.Clone(cs) {
							transform.RemoveParent(c, false)
						}
					}
					transform.RemoveParent(e, false)
					w.Remove(e.Entity())
					prune(w)
					detachedRemovals++
				case k < 10: // move, in and out of scopes
					components.Position.SetValue(w.Entry(pick()), randPos())
				default: // change a local transform
					setLocal(w.Entry(pick()))
				}
			}
		})
		h.ticks(2)
		var want map[treeRef]treeNode
		h.do(func(w donburi.World) { want = serverTree(w) })
		for ci, p := range clients {
			var last string
			err := testutil.WaitUntil(10*time.Second, func() string { return last }, func() bool {
				p.do(func(w donburi.World) { last = checkTree(p, w, want, scopes[ci]) })
				return last == ""
			})
			if err != nil {
				t.Fatalf("step %d, client %d: %v", step, ci, err)
			}
			p.do(func(w donburi.World) {
				mirrored[ci] += w.Len()
				transform.Transform.Each(w, func(e *donburi.Entry) {
					if pe, ok := transform.GetParent(e); ok {
						linked[ci]++
						if _, ok := transform.GetParent(pe); ok {
							chained[ci]++
						}
					}
				})
			})
		}
	}
	t.Logf("%d reparents, %d detaches, %d spawns, %d recursive and %d plain despawns; mirrors held %v entities, %v of them with a parent, %v with their whole chain",
		reparents, detaches, spawns, recursive, detachedRemovals, mirrored, linked, chained)
	for ci := range clients {
		if linked[ci] == 0 || chained[ci] == 0 {
			t.Errorf("client %d never held a child with its parent: the test is not testing", ci)
		}
	}
}

// TestControlCoversNewChildren: a client holds control of a ship taken
// with its children; a child (with a child of its own) the game attaches
// afterwards joins the hold, shows the client in components.Control, and
// accepts the client's mutations under RequireControl; a child the game
// detaches leaves the hold and is free for another client.
func TestControlCoversNewChildren(t *testing.T) {
	reg := hierarchyRegistry()
	h := newHarness(t, reg, &plugin.Options{Authorize: plugin.RequireControl}, 2*time.Millisecond)
	defer h.close()

	var ship, kept, dropped, turret, barrel donburi.Entity
	h.do(func(w donburi.World) {
		mk := func(x float64) donburi.Entity {
			e := w.Create(components.Replicated, components.Position, transform.Transform, components.Parent, score)
			components.Position.SetValue(w.Entry(e), components.PositionData{X: x})
			return e
		}
		ship, kept, dropped, turret, barrel = mk(0), mk(1), mk(2), mk(3), mk(4)
		transform.AppendChild(w.Entry(ship), w.Entry(kept), false)
		transform.AppendChild(w.Entry(ship), w.Entry(dropped), false)
		transform.AppendChild(w.Entry(turret), w.Entry(barrel), false) // built apart, attached later
	})
	h.ticks(2)
	tags := map[donburi.Entity]components.ReplicatedData{}
	h.do(func(w donburi.World) {
		for _, e := range []donburi.Entity{ship, kept, dropped, turret, barrel} {
			tags[e] = *components.Replicated.Get(w.Entry(e))
		}
	})

	pilot := startClientLoop(t, h.url, hierarchyRegistry(), nil)
	defer pilot.close()
	other := startClientLoop(t, h.url, hierarchyRegistry(), nil)
	defer other.close()
	for _, p := range []*clientLoop{pilot, other} {
		if err := p.c.SubscribeAll(); err != nil {
			t.Fatal(err)
		}
	}
	mirrorOf := func(p *clientLoop, e donburi.Entity) donburi.Entity {
		t.Helper()
		var m donburi.Entity
		testutil.Eventually(t, 5*time.Second, "the entity mirrored", func() bool {
			ok := false
			p.do(func(donburi.World) { m, ok = p.c.Entity(tags[e].NetID) })
			return ok
		})
		return m
	}
	mutate := func(p *clientLoop, e donburi.Entity, pts int32) netclient.MutationResult {
		t.Helper()
		me := mirrorOf(p, e)
		var ch <-chan netclient.MutationResult
		p.do(func(donburi.World) {
			ch = netclient.Mutate(p.c, me, testutil.Handle(p.c.Registry(), score), scoreData{Points: pts}, nil)
		})
		var r netclient.MutationResult
		testutil.Eventually(t, 5*time.Second, "the mutation's answer", func() bool {
			var ok bool
			p.do(func(donburi.World) {
				select {
				case r = <-ch:
					ok = true
				default:
				}
			})
			return ok
		})
		return r
	}
	take := func(p *clientLoop, e donburi.Entity) netclient.ControlResult {
		t.Helper()
		me := mirrorOf(p, e)
		var ch <-chan netclient.ControlResult
		p.do(func(donburi.World) { ch = p.c.TakeControl(me, 0, true) })
		var r netclient.ControlResult
		testutil.Eventually(t, 5*time.Second, "the control answer", func() bool {
			var ok bool
			p.do(func(donburi.World) {
				select {
				case r = <-ch:
					ok = true
				default:
				}
			})
			return ok
		})
		return r
	}
	// mirrorHolder reads components.Control of e in p's mirror.
	mirrorHolder := func(p *clientLoop, e donburi.Entity) uint64 {
		me := mirrorOf(p, e)
		var holder uint64
		p.do(func(w donburi.World) {
			if w.Valid(me) && w.Entry(me).HasComponent(components.Control) {
				holder = components.Control.Get(w.Entry(me)).Client
			}
		})
		return holder
	}

	// Before any hold, RequireControl refuses the turret's mutation.
	if r := mutate(pilot, turret, 1); r.Status != ebisync.Forbidden {
		t.Fatalf("mutation without control: %v %q, want Forbidden", r.Status, r.Message)
	}
	if r := take(pilot, ship); r.Status != netclient.ControlTaken {
		t.Fatalf("take the ship with children: %+v", r)
	}
	id := pilot.c.ClientID()
	testutil.Eventually(t, 5*time.Second, "the hold to cover the ship and its children", func() bool {
		ctl := controlOf(h)
		return ctl[tags[ship].NetID] == id && ctl[tags[kept].NetID] == id && ctl[tags[dropped].NetID] == id
	})
	if ctl := controlOf(h); ctl[tags[turret].NetID] != 0 || ctl[tags[barrel].NetID] != 0 {
		t.Fatalf("the turret is held before it is attached: %v", ctl)
	}

	// The game attaches the turret (with its barrel) and detaches a child.
	h.do(func(w donburi.World) {
		transform.AppendChild(w.Entry(ship), w.Entry(turret), false)
		transform.RemoveParent(w.Entry(dropped), false)
	})
	testutil.Eventually(t, 5*time.Second, "the hold to follow the hierarchy", func() bool {
		ctl := controlOf(h)
		return ctl[tags[turret].NetID] == id && ctl[tags[barrel].NetID] == id && ctl[tags[dropped].NetID] == 0 &&
			ctl[tags[ship].NetID] == id && ctl[tags[kept].NetID] == id
	})
	testutil.Eventually(t, 5*time.Second, "the pilot's mirror to show the holds", func() bool {
		return mirrorHolder(pilot, turret) == id && mirrorHolder(pilot, barrel) == id && mirrorHolder(pilot, dropped) == 0
	})

	// The new children take the pilot's mutations; the detached one does
	// not, and another client may take it.
	for i, e := range []donburi.Entity{turret, barrel} {
		if r := mutate(pilot, e, int32(10+i)); r.Status != ebisync.Ok {
			t.Fatalf("pilot's mutation of new child %d: %v %q, want Ok", i, r.Status, r.Message)
		}
	}
	if r := mutate(other, turret, 99); r.Status != ebisync.Forbidden {
		t.Fatalf("other's mutation of the pilot's turret: %v %q, want Forbidden", r.Status, r.Message)
	}
	if r := mutate(pilot, dropped, 5); r.Status != ebisync.Forbidden {
		t.Fatalf("pilot's mutation of the detached child: %v %q, want Forbidden", r.Status, r.Message)
	}
	h.do(func(w donburi.World) {
		if got := score.Get(w.Entry(turret)).Points; got != 10 {
			t.Errorf("turret score %d, want the pilot's 10", got)
		}
		if got := score.Get(w.Entry(barrel)).Points; got != 11 {
			t.Errorf("barrel score %d, want the pilot's 11", got)
		}
	})
	if r := take(other, dropped); r.Status != netclient.ControlTaken {
		t.Fatalf("other takes the detached child: %+v", r)
	}
	if r := mutate(other, dropped, 7); r.Status != ebisync.Ok {
		t.Fatalf("other's mutation of the child it took: %v %q", r.Status, r.Message)
	}

	// Detaching the turret releases it and its barrel.
	h.do(func(w donburi.World) { transform.RemoveParent(w.Entry(turret), false) })
	testutil.Eventually(t, 5*time.Second, "the detached turret released", func() bool {
		ctl := controlOf(h)
		return ctl[tags[turret].NetID] == 0 && ctl[tags[barrel].NetID] == 0 && ctl[tags[ship].NetID] == id
	})
}
