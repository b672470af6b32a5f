package netclient

import "time"

// RenderTime returns the local time at which Interpolated renders the
// (fractional) server tick, for tests that need exact interpolation points.
func RenderTime(c *Client, tick float64) time.Time {
	rel := tick - float64(c.gs.welcome.Tick)
	sec := c.clock.off + c.clock.delay + rel*c.clock.dt
	return c.epoch.Add(time.Duration(sec * float64(time.Second)))
}
