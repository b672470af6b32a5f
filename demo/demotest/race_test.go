//go:build race

package demotest

const raceEnabled = true
