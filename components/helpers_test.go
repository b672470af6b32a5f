package components_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/ebisync/ebisync/internal/testutil"
)

// assert fails the test with the formatted message unless ok.
var assert = testutil.Assert

// mustPanic runs f and fails unless it panics with a message containing
// every one of want.
func mustPanic(t *testing.T, f func(), want ...string) {
	t.Helper()
	panicked, msg := func() (panicked bool, msg string) {
		defer func() {
			if r := recover(); r != nil {
				panicked, msg = true, fmt.Sprint(r)
			}
		}()
		f()
		return false, ""
	}()
	assert(t, panicked, "no panic, want one containing %q", want)
	for _, w := range want {
		assert(t, strings.Contains(msg, w), "panic %q does not contain %q", msg, w)
	}
}
