//go:build !linux

package plugin

import "time"

// threadCPU reports false: per-thread CPU time is only read on Linux.
func threadCPU() (time.Duration, bool) { return 0, false }
