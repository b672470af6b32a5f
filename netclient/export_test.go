package netclient

import "time"

// RenderTime returns the local time at which Interpolated renders the
// (fractional) server tick, for tests that need exact interpolation points.
func RenderTime(c *Client, tick float64) time.Time {
	rel := tick - float64(c.gs.welcome.Tick)
	// Solve t = delay + off(t) + rel·dt; off moves at most clockSlew
	// seconds per second, so the iteration contracts.
	sec := c.clock.anchorT
	for range 50 {
		sec = c.clock.delay + c.clock.off(sec) + rel*c.clock.dt
	}
	return c.epoch.Add(time.Duration(sec * float64(time.Second)))
}

// SetNoSubsGrace sets how long a client waits before it warns that it has
// no subscriptions, and returns a function that restores it.
func SetNoSubsGrace(d time.Duration) (restore func()) {
	old := noSubsGrace
	noSubsGrace = d
	return func() { noSubsGrace = old }
}
