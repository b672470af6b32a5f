package components

import (
	"fmt"
	"unsafe"

	"github.com/yohamta/donburi"
)

// Synced is the typed handle of a component registered in a Registry, as
// returned by Register and Lookup. Its methods read and write the
// component's values as T. netclient's typed functions (Interpolated,
// InterpolatedInto, Mutate) take it too.
//
// A Synced is immutable once its registry is frozen and then safe for
// concurrent use; the methods that touch a World (Get, Set, Touch) must run
// on the goroutine that owns that World.
type Synced[T any] struct {
	comp *Component
	ct   *donburi.ComponentType[T]
	reg  *Registry
}

// Component returns the untyped registry entry.
// It is safe for concurrent use.
func (s *Synced[T]) Component() *Component { return s.comp }

// Name returns the component's wire name.
// It is safe for concurrent use.
func (s *Synced[T]) Name() string { return s.comp.Name() }

// Index returns the component's wire id in its registry.
// It is safe for concurrent use.
func (s *Synced[T]) Index() int { return s.comp.Index() }

// ComponentType returns the donburi component type.
// It is safe for concurrent use.
func (s *Synced[T]) ComponentType() *donburi.ComponentType[T] { return s.ct }

// Registry returns the registry the handle belongs to.
// It is safe for concurrent use.
func (s *Synced[T]) Registry() *Registry { return s.reg }

// String returns the component's wire name. It is safe for concurrent use.
func (s *Synced[T]) String() string { return s.comp.Name() }

// Get returns a copy of e's value of the component, and false when e is not
// alive in w or has no such component.
// Call it on the goroutine that owns w.
func (s *Synced[T]) Get(w donburi.World, e donburi.Entity) (T, bool) {
	if !w.Valid(e) {
		var zero T
		return zero, false
	}
	entry := w.Entry(e)
	if !entry.HasComponent(s.ct) {
		var zero T
		return zero, false
	}
	return *s.ct.Get(entry), true
}

// Set stores a copy of v as e's value of the component, adding the
// component if e lacks it. For a component registered Explicit it also
// marks the value changed (Touch), so the server sends it on its next tick.
// It reports false, and does nothing, when e is not alive in w.
// Call it on the goroutine that owns w.
func (s *Synced[T]) Set(w donburi.World, e donburi.Entity, v T) bool {
	if !w.Valid(e) {
		return false
	}
	entry := w.Entry(e)
	if !entry.HasComponent(s.ct) {
		entry.AddComponent(s.ct)
	}
	s.ct.SetValue(entry, v)
	if s.comp.c.Options().Explicit {
		s.reg.Touch(entry, s.ct)
	}
	return true
}

// Touch marks e's value of the component as changed: the server sends it on
// its next tick. It is what components registered Explicit need after each
// change made other than through Set; see Registry.Touch.
// Call it on the goroutine that owns w.
func (s *Synced[T]) Touch(w donburi.World, e donburi.Entity) {
	if w.Valid(e) {
		s.reg.Touch(w.Entry(e), s.ct)
	}
}

// SetLerp installs the interpolation used for the component on the client
// (Options.Interpolate) in place of the default, which interpolates float
// fields linearly and takes every other field from b. f must not retain its
// pointers. SetLerp panics once the registry is frozen.
// It is not safe for concurrent use: call it while registering.
func (s *Synced[T]) SetLerp(f func(a, b *T, t float64) T) {
	if s.reg.frozen.Load() {
		panic(fmt.Sprintf("ebisync: SetLerp on %q: registry is frozen (a server or client is using it)", s.comp.Name()))
	}
	codecSetLerp(s.comp, f)
}

// Lerp returns the value between a (t=0) and b (t=1), as the client
// interpolates it: the function installed by SetLerp, else float fields
// linearly (exactly a at t=0 and b at t=1 for finite values) and every
// other field as in b.
// It is safe for concurrent use once the registry is frozen.
func (s *Synced[T]) Lerp(a, b T, t float64) T {
	var out T
	s.comp.c.Lerp(unsafe.Pointer(&out), unsafe.Pointer(&a), unsafe.Pointer(&b), t)
	return out
}
