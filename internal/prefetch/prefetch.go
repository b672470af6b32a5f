// Package prefetch asks the processor to start loading a cache line that
// is about to be read. The server's tick visits records it reached through
// pointers (an entity's record, then its list of views); on a miss each of
// those loads stalls for a full memory latency. Asking for the line a few
// entities ahead lets several misses be in flight at once.
//
// A prefetch is only a hint: it never faults, changes no memory and may be
// ignored. On architectures without an implementation here, Line does
// nothing.
package prefetch
