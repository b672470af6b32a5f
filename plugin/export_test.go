package plugin

import "github.com/ebisync/ebisync/internal/wire"

// SetInputHook sets the hook that runs as each client message is read
// ("read") and applied ("apply"), for tests that stand in for a bug that
// panics there. It returns a function that removes it.
func SetInputHook(f func(stage string, kind wire.Kind)) (restore func()) {
	inputHook = f
	return func() { inputHook = nil }
}
