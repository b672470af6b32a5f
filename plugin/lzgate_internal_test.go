package plugin

import "testing"

// TestLZGate: batches that do not shrink stop getting lz4 attempts after
// lzGiveUp of them, but for every lzRetry-th and for large ones; one that
// shrinks restores an attempt for every batch.
func TestLZGate(t *testing.T) {
	var g lzGate
	attempt := func(n int, shrinks bool) bool {
		if !g.try(n) {
			return false
		}
		framed := n
		if shrinks {
			framed = n / 3
		}
		g.result(n, framed)
		return true
	}
	for i := range lzGiveUp {
		if !attempt(300, false) {
			t.Fatalf("batch %d was not tried before %d misses", i, lzGiveUp)
		}
	}
	tried := 0
	for range 10 * lzRetry {
		if attempt(300, false) {
			tried++
		}
	}
	if tried != 10 {
		t.Fatalf("%d of %d small batches tried after giving up, want 1 in %d", tried, 10*lzRetry, lzRetry)
	}
	if !attempt(lzAlwaysTry, false) {
		t.Fatal("a large batch was not tried")
	}
	// Saving less than a sixteenth counts as a miss.
	for range lzRetry {
		g.try(300)
	}
	if g.result(1600, 1550); g.misses < lzGiveUp {
		t.Fatalf("a 3%% saving reset the misses to %d", g.misses)
	}
	// A large batch that shrinks: small ones are tried again.
	if !attempt(4*lzAlwaysTry, true) {
		t.Fatal("a large batch was not tried")
	}
	for i := range lzGiveUp {
		if !attempt(300, true) {
			t.Fatalf("batch %d not tried after a batch shrank", i)
		}
	}
	if g.misses != 0 {
		t.Fatalf("misses %d after batches that shrank", g.misses)
	}
}
