package plugin

import (
	"testing"
	"time"

	"github.com/yohamta/donburi"

	"github.com/ebisync/ebisync/components"
	"github.com/ebisync/ebisync/internal/wire"
)

// TestPinger: one Ping in flight, given up for a new one after
// pingPatience intervals; only the Pong of the Ping in flight counts, once;
// the RTT is the first sample, then a moving average.
func TestPinger(t *testing.T) {
	var p pinger
	at := time.Unix(1000, 0)
	nonceOf := func(msg []byte) uint64 {
		t.Helper()
		kind, body, _, err := wire.Open(msg, nil)
		if err != nil || kind != wire.KindPing {
			t.Fatalf("ping: kind %v, err %v", kind, err)
		}
		m, err := wire.DecodePing(body)
		if err != nil || m.Nonce == 0 {
			t.Fatalf("ping: nonce %d, err %v", m.Nonce, err)
		}
		return m.Nonce
	}
	msg, ok := p.ping(nil, at)
	if !ok {
		t.Fatal("no first Ping")
	}
	if len(msg) > 6 {
		t.Errorf("a Ping of %d bytes, want at most 6", len(msg))
	}
	first := nonceOf(msg)
	for i := 1; i < pingPatience; i++ {
		if _, ok := p.ping(nil, at.Add(time.Duration(i)*time.Second)); ok {
			t.Fatalf("a new Ping after %d intervals with one in flight", i)
		}
	}
	msg, ok = p.ping(nil, at.Add(pingPatience*time.Second))
	if !ok {
		t.Fatalf("no new Ping after %d unanswered intervals", pingPatience)
	}
	second := nonceOf(msg)
	sent := at.Add(pingPatience * time.Second)
	p.pong(first, sent.Add(time.Millisecond)) // the Ping given up
	p.pong(0, sent.Add(time.Millisecond))
	p.pong(second+1, sent.Add(time.Millisecond))
	if r, l := p.times(); r != 0 || l != 0 || second == first {
		t.Fatalf("RTT %v (last %v) from Pongs that answer no Ping in flight", r, l)
	}
	p.pong(second, sent.Add(80*time.Millisecond))
	p.pong(second, sent.Add(900*time.Millisecond)) // replayed
	if r, l := p.times(); r != 80*time.Millisecond || l != 80*time.Millisecond {
		t.Fatalf("RTT %v (last %v), want 80ms", r, l)
	}
	// Answered: the next interval sends a Ping at once.
	msg, ok = p.ping(nil, sent.Add(time.Second))
	if !ok {
		t.Fatal("no Ping after an answer")
	}
	p.pong(nonceOf(msg), sent.Add(time.Second+160*time.Millisecond))
	if r, l := p.times(); r != 90*time.Millisecond || l != 160*time.Millisecond {
		t.Fatalf("RTT %v (last %v), want 90ms (80 + (160-80)/8) and 160ms", r, l)
	}
}

// TestPongAllocs: the reader handles a Pong, answering the Ping in flight
// or forged, without allocating; the writer composes its Pings into one
// reused buffer.
func TestPongAllocs(t *testing.T) {
	reg := components.NewRegistry()
	components.RegisterStandard(reg)
	s := New(donburi.NewWorld(), reg, nil)
	cn := &conn{s: s}
	var ping, pong []byte
	now := time.Now()
	answer := func(forged bool) {
		var ok bool
		cn.pinger.nonce = 0 // the last Ping answered or given up
		if ping, ok = cn.pinger.ping(ping[:0], now); !ok {
			t.Fatal("no Ping")
		}
		m, err := wire.DecodePing(ping[1:])
		if err != nil {
			t.Fatal(err)
		}
		if forged {
			m.Nonce++
		}
		pong = wire.AppendPing(pong[:0], wire.KindPong, &m)
		if err := cn.handle(pong); err != nil {
			t.Fatal(err)
		}
	}
	for _, forged := range []bool{false, true} {
		answer(forged)
		if a := testing.AllocsPerRun(100, func() { answer(forged) }); a != 0 {
			t.Errorf("%.1f allocations per Ping and Pong (forged %v), want 0", a, forged)
		}
	}
	if r, _ := cn.pinger.times(); r <= 0 {
		t.Errorf("RTT %v after answered Pings", r)
	}
}
