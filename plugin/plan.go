package plugin

import "time"

// plan decides, before scopes are updated, which clients get a batch this
// tick, starts those batches and lists their clients in out, emptied by
// frame.reset, which it returns. A client is direct (the scope step writes
// its changes into its batch as it finds them) when its batch is uncapped.
func (s *Server) plan(out *batches) *batches {
	for _, c := range s.clients {
		c.direct = false
		c.usedNow = 0
		if s.pace(c, out) {
			out.clients = append(out.clients, c)
			c.batch.Reset()
			c.build.Reset()
			c.direct = s.budget(c) >= maxBatch-4096
		}
	}
	return out
}

// budget returns the most bytes the client's next batch may carry.
func (s *Server) budget(c *client) int {
	if s.opts.BytesPerSecond <= 0 {
		return maxBatch
	}
	b := s.opts.BytesPerSecond * int(s.tick-c.lastSent) / s.opts.TickRate
	if b > maxBatch {
		b = maxBatch
	}
	return b
}

// pace adapts the client's send interval and reports whether the client
// gets a batch this tick. A writer still busy on two build attempts in a
// row, or two writes slower than a tick since the last look, doubles the
// interval (up to 8× the base, at most a second); a run of prompt batches
// worth about half a second steps it back down by one (see sent). One slow
// write alone (a GC pause, a busy core) changes nothing. A client skipped
// for a busy writer is counted in out.
func (s *Server) pace(c *client, out *batches) bool {
	if c.parked || c.keepAll && time.Now().Before(c.holdUntil) && !s.cellsReady(c) {
		return false
	}
	if c.cn.busy.Load() {
		c.good = 0
		c.busyRun++
		if c.busyRun >= 2 {
			c.busyRun = 0
			s.slowDown(c)
		}
		out.skipped++
		return false
	}
	c.busyRun = 0
	if slow := c.cn.slowWrites.Load(); slow-c.lastSlow >= 2 {
		c.lastSlow = slow
		c.good = 0
		s.slowDown(c)
	}
	return s.tick-c.lastSent >= c.interval
}

func (s *Server) slowDown(c *client) {
	if c.interval < 8*c.minIntv && c.interval < uint32(s.opts.TickRate) {
		c.interval *= 2
	}
}

// sent records that the client was handed a batch this tick: a prompt one,
// towards stepping its interval back down.
func (s *Server) sent(c *client) {
	c.lastSent, c.lastVis = s.tick, s.visibleTick()
	if c.interval > c.minIntv {
		c.good++
		if c.good >= max(1, s.opts.TickRate/(2*int(c.interval))) {
			c.interval--
			c.good = 0
			c.lastSlow = c.cn.slowWrites.Load()
		}
	}
}
