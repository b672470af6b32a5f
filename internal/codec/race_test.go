//go:build race

package codec_test

// raceEnabled scales the property tests down: the race detector (and the
// checkptr instrumentation it turns on) makes the unsafe codec ~10x slower.
const raceEnabled = true
