//go:build !race

package displaytest

const raceEnabled = false
