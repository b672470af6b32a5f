package plugin_test

import (
	"io"
	"log/slog"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/yohamta/donburi"

	"github.com/ebisync/ebisync/components"
	"github.com/ebisync/ebisync/internal/codec"
	"github.com/ebisync/ebisync/plugin"
)

// harness runs a server whose tick loop is the "game goroutine"; tests run
// World code on it with do.
type harness struct {
	t    testing.TB
	w    donburi.World
	reg  *components.Registry
	srv  *plugin.Server
	ts   *httptest.Server
	url  string
	jobs chan func()
	stop chan struct{}
	done chan struct{}
	// after runs on the game goroutine after every tick (a gateway's Tick).
	after func()

	mu     sync.Mutex
	ticked chan struct{} // closed, and replaced, after each tick
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// newHarness starts a server ticking every period.
func newHarness(t testing.TB, reg *components.Registry, opts *plugin.Options, period time.Duration) *harness {
	t.Helper()
	return newHarnessAfter(t, reg, opts, period, nil)
}

// newHarnessAfter starts a server ticking every period, and calls after
// (if not nil) on the game goroutine after each tick.
func newHarnessAfter(t testing.TB, reg *components.Registry, opts *plugin.Options, period time.Duration, after func()) *harness {
	t.Helper()
	if opts == nil {
		opts = &plugin.Options{}
	}
	if opts.Logger == nil {
		opts.Logger = quietLogger()
	}
	h := &harness{t: t, w: donburi.NewWorld(), reg: reg, jobs: make(chan func()), stop: make(chan struct{}), done: make(chan struct{}), ticked: make(chan struct{}), after: after}
	h.srv = plugin.New(h.w, reg, opts)
	h.ts = httptest.NewServer(h.srv)
	h.url = wsURL(h.ts)
	go func() {
		defer close(h.done)
		tk := time.NewTicker(period)
		defer tk.Stop()
		for {
			select {
			case <-h.stop:
				return
			case f := <-h.jobs:
				f()
			case <-tk.C:
				h.srv.Tick()
				if h.after != nil {
					h.after()
				}
				h.mu.Lock()
				close(h.ticked)
				h.ticked = make(chan struct{})
				h.mu.Unlock()
			}
		}
	}()
	return h
}

// do runs f on the game goroutine and waits for it.
func (h *harness) do(f func(w donburi.World)) {
	ch := make(chan struct{})
	h.jobs <- func() { f(h.w); close(ch) }
	<-ch
}

// ticks waits until n more ticks have completed.
func (h *harness) ticks(n int) {
	h.t.Helper()
	end := h.srv.CurrentTick() + uint64(n)
	timeout := time.NewTimer(10 * time.Second)
	defer timeout.Stop()
	for {
		h.mu.Lock()
		ticked := h.ticked
		h.mu.Unlock()
		if h.srv.CurrentTick() >= end {
			return
		}
		select {
		case <-ticked:
		case <-timeout.C:
			h.t.Fatalf("server did not tick %d times", n)
		}
	}
}

func (h *harness) close() {
	h.srv.Close()
	h.ts.Close()
	close(h.stop)
	<-h.done
}

func standardRegistry() *components.Registry {
	reg := components.NewRegistry()
	components.RegisterStandard(reg)
	return reg
}

// unsafePtr is v as the unsafe.Pointer the codecs take.
func unsafePtr[T any](v *T) unsafe.Pointer { return unsafe.Pointer(v) }

// codecAt returns the codec of reg's component with wire id i.
func codecAt(reg *components.Registry, i int) *codec.Codec { return codec.Of(reg.At(i)) }

// codecsOf returns the codecs of reg's components in wire-id order.
func codecsOf(reg *components.Registry) []*codec.Codec {
	out := make([]*codec.Codec, reg.Len())
	for i := range out {
		out[i] = codecAt(reg, i)
	}
	return out
}
