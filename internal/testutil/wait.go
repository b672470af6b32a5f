package testutil

import (
	"fmt"
	"runtime"
	"testing"
	"time"
)

// Polling: cond is checked again at once (yielding the processor) for the
// first spinFor, then after a pause of a tenth of the time waited so far,
// kept within [minPollPause, maxPollPause] and never shorter than the last
// check took, so that a waiter notices a fast result within microseconds,
// a slow one within 10% of its time, and a costly check takes at most
// about half of a processor on a loaded machine.
const (
	spinFor      = 50 * time.Microsecond
	minPollPause = 20 * time.Microsecond
	maxPollPause = 5 * time.Millisecond
)

// WaitUntil polls cond until it holds and returns nil, or returns an error
// naming what once timeout has passed. what is called only then, and a
// poll allocates nothing, so a benchmark may wait between its iterations.
//
// Wait on a channel or hook when the code under test offers one; WaitUntil
// is for results only seen in state (counters, a mirror world).
func WaitUntil(timeout time.Duration, what func() string, cond func() bool) error {
	start := time.Now()
	for {
		checked := time.Now()
		if cond() {
			return nil
		}
		now := time.Now()
		waited := now.Sub(start)
		if waited > timeout {
			return fmt.Errorf("timed out after %s waiting for %s", timeout, what())
		}
		if waited < spinFor {
			runtime.Gosched()
			continue
		}
		time.Sleep(max(min(max(waited/10, minPollPause), maxPollPause), now.Sub(checked)))
	}
}

// Eventually fails t unless cond holds within timeout (see WaitUntil).
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	if err := WaitUntil(timeout, func() string { return what }, cond); err != nil {
		t.Fatal(err)
	}
}

// Consistently fails t if cond stops holding at any check during d. It
// is for claims that something does not happen (a queue stays bounded),
// which only time passing can show: it always takes d.
func Consistently(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	tk := time.NewTicker(max(d/20, time.Millisecond))
	defer tk.Stop()
	end := time.Now().Add(d)
	for {
		if !cond() {
			t.Fatalf("%s stopped holding", what)
		}
		if !time.Now().Before(end) {
			return
		}
		<-tk.C
	}
}

// LetTimePass sleeps for d. It is for tests whose subject is wall-clock
// time itself (a rate limit's interval must pass before the next event),
// never for waiting for a result: wait for that with WaitUntil or
// Eventually, or on a channel.
func LetTimePass(d time.Duration) { time.Sleep(d) }
