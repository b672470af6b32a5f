// Package cputime reads the CPU time of the calling OS thread, for the
// benchmarks that report a tick's cost without the time its thread waited
// for a core.
package cputime

import (
	"syscall"
	"time"
	"unsafe"
)

// clockThreadCPUTime is CLOCK_THREAD_CPUTIME_ID (linux/time.h), which
// package syscall does not name. Unlike getrusage(RUSAGE_THREAD), which
// lags by up to a scheduler tick, it includes the time the thread has run
// since it was last scheduled.
const clockThreadCPUTime = 3

// Thread returns the CPU time the calling OS thread has used, and true.
// Lock the goroutine to its thread first (runtime.LockOSThread), or the
// figure mixes goroutines.
func Thread() (time.Duration, bool) {
	var ts syscall.Timespec
	_, _, errno := syscall.Syscall(syscall.SYS_CLOCK_GETTIME, clockThreadCPUTime, uintptr(unsafe.Pointer(&ts)), 0)
	if errno != 0 {
		return 0, false
	}
	return time.Duration(ts.Nano()), true
}
