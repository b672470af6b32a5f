package plugin_test

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/yohamta/donburi"

	"github.com/ebisync/ebisync"
	"github.com/ebisync/ebisync/components"
	"github.com/ebisync/ebisync/internal/testutil"
	"github.com/ebisync/ebisync/netclient"
	"github.com/ebisync/ebisync/plugin"
)

type aimData struct {
	Target donburi.Entity
	Lock   [2]donburi.Entity
}

var aim = donburi.NewComponentType[aimData]()

func aimRegistry() *components.Registry {
	reg := standardRegistry()
	components.Register(reg, "test.aim", aim, nil)
	return reg
}

// netRef is a server entity as clients know it.
type netRef struct{ id, gen uint32 }

// TestEntityReferences runs a world of entities that aim at each other at
// random while they move, despawn and spawn, with clients whose scopes
// cover parts of it. After every step, once replicated, each client's
// references are its own entities: the mirror of the target while the
// target is in its scope, donburi.Null otherwise, and never an entity that
// is not alive in its world. A reference resolves when its target enters
// the scope and survives the target's despawn.
func TestEntityReferences(t *testing.T) {
	rng := rand.New(rand.NewPCG(16, 1))
	h := newHarness(t, aimRegistry(), nil, 2*time.Millisecond)
	defer h.close()
	var clients []*clientLoop
	for i := range 3 {
		p := startClientLoop(t, h.url, aimRegistry(), nil)
		defer p.close()
		p.c.SubscribeAll()
		p.c.SetInterest(float64(i)*300, 0, 250+float64(i)*100)
		clients = append(clients, p)
	}

	var live []donburi.Entity
	pick := func() donburi.Entity {
		if len(live) == 0 || rng.IntN(5) == 0 {
			return donburi.Null
		}
		return live[rng.IntN(len(live))]
	}
	spawn := func(w donburi.World) {
		e := w.Create(components.Replicated, components.Position, aim)
		components.Position.SetValue(w.Entry(e), components.PositionData{X: rng.Float64() * 1000, Y: rng.Float64()*200 - 100})
		live = append(live, e)
	}
	h.do(func(w donburi.World) {
		for range 40 {
			spawn(w)
		}
	})

	steps := 40
	if testing.Short() {
		steps = 10
	}
	for step := range steps {
		h.do(func(w donburi.World) {
			for range 12 {
				switch k := rng.IntN(10); {
				case k < 5 && len(live) > 0: // retarget, the self included
					e := live[rng.IntN(len(live))]
					aim.SetValue(w.Entry(e), aimData{Target: pick(), Lock: [2]donburi.Entity{pick(), pick()}})
				case k < 7 && len(live) > 0: // move
					e := live[rng.IntN(len(live))]
					components.Position.SetValue(w.Entry(e), components.PositionData{X: rng.Float64() * 1000, Y: rng.Float64()*200 - 100})
				case k < 8 && len(live) > 1: // despawn; references to it stay in the World
					i := rng.IntN(len(live))
					w.Remove(live[i])
					live = append(live[:i], live[i+1:]...)
				default:
					spawn(w)
				}
			}
		})
		// What every entity aims at, as clients know both.
		want := map[netRef][3]netRef{}
		h.ticks(2)
		h.do(func(w donburi.World) {
			ref := func(e donburi.Entity) netRef {
				if e == donburi.Null || !w.Valid(e) {
					return netRef{}
				}
				tag := components.Replicated.Get(w.Entry(e))
				return netRef{tag.NetID, tag.Gen}
			}
			for _, e := range live {
				a := aim.Get(w.Entry(e))
				want[ref(e)] = [3]netRef{ref(a.Target), ref(a.Lock[0]), ref(a.Lock[1])}
			}
		})
		for ci, p := range clients {
			var last string
			err := testutil.WaitUntil(5*time.Second, func() string { return last }, func() bool {
				last = ""
				p.do(func(w donburi.World) {
					last = checkRefs(p, w, want)
				})
				return last == ""
			})
			if err != nil {
				t.Fatalf("step %d, client %d: %v", step, ci, err)
			}
		}
	}
}

// checkRefs compares the references of p's mirror with want, the server's,
// and returns the first difference, or "".
func checkRefs(p *clientLoop, w donburi.World, want map[netRef][3]netRef) string {
	resolve := func(r netRef) donburi.Entity {
		if r.id == 0 {
			return donburi.Null
		}
		e, ok := p.c.Entity(r.id)
		if !ok {
			return donburi.Null
		}
		if _, gen, _ := p.c.NetID(e); gen != r.gen {
			return donburi.Null
		}
		return e
	}
	for _, a := range w.Archetypes() {
		if !a.Layout().HasComponent(aim) {
			continue
		}
		for _, e := range a.Entities() {
			id, gen, ok := p.c.NetID(e)
			if !ok {
				return fmt.Sprintf("mirror entity %v is not a mirror", e)
			}
			exp, present := want[netRef{id, gen}]
			if !present {
				return fmt.Sprintf("entity %d/%d is mirrored but gone on the server", id, gen)
			}
			got := aim.Get(w.Entry(e))
			for i, g := range []donburi.Entity{got.Target, got.Lock[0], got.Lock[1]} {
				if g != donburi.Null && !w.Valid(g) {
					return fmt.Sprintf("entity %d reference %d is %v, not alive in the mirror", id, i, g)
				}
				if wantE := resolve(exp[i]); g != wantE {
					return fmt.Sprintf("entity %d reference %d is %v, want %v (server %d/%d)", id, i, g, wantE, exp[i].id, exp[i].gen)
				}
			}
		}
	}
	return ""
}

// TestMutationReferences: a client's mutation naming its mirror entities
// reaches the server as the server's entities, and a reference to an
// entity that is not a mirror arrives as donburi.Null; the value then
// comes back to the client as its own mirror entities.
func TestMutationReferences(t *testing.T) {
	reg := func() *components.Registry {
		r := standardRegistry()
		components.Register(r, "test.aim", aim, &components.Options{ClientWritable: true})
		return r
	}
	h := newHarness(t, reg(), &plugin.Options{Authorize: plugin.AllowAll}, 2*time.Millisecond)
	defer h.close()
	var shooter, target donburi.Entity
	h.do(func(w donburi.World) {
		for range 5 { // entities the client never sees: server and mirror ids differ
			w.Create(components.Position)
		}
		shooter = w.Create(components.Replicated, components.Position, aim)
		target = w.Create(components.Replicated, components.Position)
	})
	h.ticks(2)
	p := startClientLoop(t, h.url, reg(), nil)
	defer p.close()
	p.c.SubscribeAll()
	mirror := func(e donburi.Entity) donburi.Entity {
		id, _ := serverRef(h, e)
		var m donburi.Entity
		testutil.Eventually(t, 5*time.Second, "the entity mirrored", func() bool {
			ok := false
			p.do(func(donburi.World) { m, ok = p.c.Entity(id) })
			return ok
		})
		return m
	}
	ms, mt := mirror(shooter), mirror(target)
	if ms == shooter || mt == target {
		t.Fatal("a mirror entity has its server entity's id: the test cannot tell them apart")
	}
	var ch <-chan netclient.MutationResult
	p.do(func(donburi.World) {
		ch = netclient.Mutate(p.c, ms, testutil.Handle(p.c.Registry(), aim), aimData{Target: mt, Lock: [2]donburi.Entity{ms, donburi.Entity(12345)}}, nil)
	})
	var r netclient.MutationResult
	testutil.Eventually(t, 5*time.Second, "the mutation's answer", func() bool {
		ok := false
		p.do(func(donburi.World) {
			select {
			case r = <-ch:
				ok = true
			default:
			}
		})
		return ok
	})
	if r.Status != ebisync.Ok {
		t.Fatalf("mutation: %v %q", r.Status, r.Message)
	}
	h.do(func(w donburi.World) {
		if got := *aim.Get(w.Entry(shooter)); got != (aimData{Target: target, Lock: [2]donburi.Entity{shooter, donburi.Null}}) {
			t.Errorf("the server holds %+v, want target %v, lock [%v Null]", got, target, shooter)
		}
	})
	testutil.Eventually(t, 5*time.Second, "the value back in the mirror", func() bool {
		var got aimData
		p.do(func(w donburi.World) { got = *aim.Get(w.Entry(ms)) })
		return got == aimData{Target: mt, Lock: [2]donburi.Entity{ms, donburi.Null}}
	})
}
