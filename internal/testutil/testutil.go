// Package testutil holds helpers that the tests of several packages share.
package testutil

import (
	"github.com/yohamta/donburi"

	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ebisync/ebisync/components"
	"github.com/ebisync/ebisync/internal/codec"
)

// SyncBuffer is a log destination a test reads while other goroutines
// write to it. It is safe for concurrent use.
type SyncBuffer struct {
	mu    sync.Mutex
	b     strings.Builder
	wrote chan struct{} // signalled after each write; see written
}

// Write appends p.
func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case s.written() <- struct{}{}:
	default:
	}
	return s.b.Write(p)
}

// written returns the channel signalled after each write, making it on
// first use. s.mu is held.
func (s *SyncBuffer) written() chan struct{} {
	if s.wrote == nil {
		s.wrote = make(chan struct{}, 1)
	}
	return s.wrote
}

// Await waits until what was written matches re, and returns the match
// (as regexp.FindStringSubmatch). It fails t after timeout. One goroutine
// at a time may Await.
func (s *SyncBuffer) Await(t testing.TB, timeout time.Duration, re *regexp.Regexp) []string {
	t.Helper()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		s.mu.Lock()
		m := re.FindStringSubmatch(s.b.String())
		wrote := s.written()
		s.mu.Unlock()
		if m != nil {
			return m
		}
		select {
		case <-wrote:
		case <-timer.C:
			t.Fatalf("output did not match %v within %s:\n%s", re, timeout, s.String())
		}
	}
}

// String returns what was written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// WatchBuffer collects output and closes the channel Seen returns once the
// output contains a given string. It is safe for concurrent use.
type WatchBuffer struct {
	mu   sync.Mutex
	b    strings.Builder
	want string
	seen chan struct{}
}

// NewWatchBuffer returns a WatchBuffer that watches for want.
func NewWatchBuffer(want string) *WatchBuffer {
	return &WatchBuffer{want: want, seen: make(chan struct{})}
}

// Write appends p.
func (w *WatchBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	had := strings.Contains(w.b.String(), w.want)
	n, err := w.b.Write(p)
	if !had && strings.Contains(w.b.String(), w.want) {
		close(w.seen)
	}
	return n, err
}

// Seen is closed once the output contains the string watched for.
func (w *WatchBuffer) Seen() <-chan struct{} { return w.seen }

// String returns what was written so far.
func (w *WatchBuffer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// Assert fails t with the message when ok is false.
func Assert(t testing.TB, ok bool, format string, args ...any) {
	t.Helper()
	if !ok {
		t.Fatalf(format, args...)
	}
}

// RegistrySizer measures encoded component values with a registry, as a
// client that shares the server's registry does (wire.ValueSizer, by
// registry index).
type RegistrySizer struct{ Reg *components.Registry }

// FullLen implements wire.ValueSizer.
func (s RegistrySizer) FullLen(comp uint64, b []byte) (int, error) {
	c := s.Reg.At(int(comp))
	if c == nil {
		return 0, fmt.Errorf("unknown component %d", comp)
	}
	return codec.Of(c).FullLen(b)
}

// DeltaLen implements wire.ValueSizer.
func (s RegistrySizer) DeltaLen(comp uint64, b []byte) (int, error) {
	c := s.Reg.At(int(comp))
	if c == nil {
		return 0, fmt.Errorf("unknown component %d", comp)
	}
	return codec.Of(c).DeltaLen(b)
}

// Handle returns the typed handle of ct in reg, and panics if reg does not
// register it.
func Handle[T any](reg *components.Registry, ct *donburi.ComponentType[T]) *components.Synced[T] {
	h, ok := components.Lookup(reg, ct)
	if !ok {
		panic(fmt.Sprintf("testutil.Handle: %T not registered", ct))
	}
	return h
}

// Codec returns the codec of a Registry.Of or ByName result.
func Codec(c *components.Component, ok bool) (*codec.Codec, bool) {
	return codec.Of(c), ok
}
