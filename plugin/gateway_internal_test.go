package plugin

import (
	"testing"

	"github.com/ebisync/ebisync/components"
)

type nopFeed struct{ follows int }

func (f *nopFeed) Follow(Cell, uint64) { f.follows++ }
func (f *nopFeed) Unfollow(Cell)       {}

// TestFeedQueueBound: a gateway whose ticks fall behind keeps at most
// maxFeedQueueBytes of chunks; past that it drops them and takes every
// cell again.
func TestFeedQueueBound(t *testing.T) {
	reg := components.NewRegistry()
	components.RegisterStandard(reg)
	feed := &nopFeed{}
	s := NewGateway(reg, 100, feed, &Options{DefaultRadius: 100, MaxRadius: 200})
	defer s.Close()
	s.Tick() // follows the global cell
	before := feed.follows
	chunk := make([]byte, 1<<20)
	for i := 0; i < 3*maxFeedQueueBytes>>20; i++ {
		s.FeedChunk(chunk)
	}
	s.gw.mu.Lock()
	queued := s.gw.queued
	s.gw.mu.Unlock()
	if queued > maxFeedQueueBytes {
		t.Fatalf("%d bytes queued, bound %d", queued, maxFeedQueueBytes)
	}
	if s.FeedOverflows() == 0 {
		t.Fatal("no overflow counted")
	}
	s.Tick() // the resync: every followed cell is followed again
	if feed.follows <= before {
		t.Fatalf("no cell followed again after the overflow (%d follows, %d before)", feed.follows, before)
	}
}
