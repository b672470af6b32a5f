//go:build !linux

// Package cputime reads the CPU time of the calling OS thread, for the
// benchmarks that report a tick's cost without the time its thread waited
// for a core.
package cputime

import "time"

// Thread reports false: per-thread CPU time is only read on Linux.
func Thread() (time.Duration, bool) { return 0, false }
