// Package swarm drives many headless demo clients ("bots") from a few
// goroutines: each bot dials the server with netclient, subscribes to
// everything, follows its own ship with an interest radius and steers it
// at random through mutations of sim.Steer.
//
// It is what the bot swarm command (demo/bots) and the desktop demo's
// companion bots run. It does not import Ebitengine.
package swarm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/yohamta/donburi"

	"github.com/ebisync/ebisync/components"
	"github.com/ebisync/ebisync/demo/sim"
	"github.com/ebisync/ebisync/netclient"
)

// Config configures a Swarm. A zero field means its default.
type Config struct {
	URL    string  // ws://host:port/sync; required
	N      int     // number of bots; default 1
	Radius float64 // interest radius around each ship; default 600
	Rate   int     // Update calls per second per bot; default 60
	// Workers is how many goroutines share the bots' Update calls, each
	// driving its share round-robin. Default min(N, GOMAXPROCS).
	Workers int
	Name    string // bots are named Name-1, Name-2, …; default "bot"
	// Calm bots potter about near where they spawned, circling slowly,
	// instead of cruising off: company for a player rather than load.
	Calm bool
	Seed uint64 // steering randomness; default 1
	// World is the server's world configuration (nil: the default), which
	// tells where ships spawn.
	World  *sim.Config
	Logger *slog.Logger // default slog.Default()
}

// Swarm is a set of connected bots.
type Swarm struct {
	cfg   Config
	bots  []*bot
	start time.Time

	mu  sync.Mutex
	end time.Time
}

type bot struct {
	name   string
	c      *netclient.Client
	pilot  *sim.Pilot
	rng    *rand.Rand
	change time.Time // next change of steering
	err    error     // why the client stopped, if it did
	// Counters, and their values when the measurement started. frames
	// counts Update calls, changes component values the server changed
	// (OnChange), spawns entities entering the mirror (OnSpawn).
	frames, changes, spawns    uint64
	in0, out0, msgs0           uint64
	frames0, changes0, spawns0 uint64
	reconnects0                uint64
	// Silences during Run, sampled every pollInterval: the last count of
	// messages from the server (batches and pongs) and the last server
	// tick applied (it advances with each batch), when each last changed,
	// and the longest time either stood still.
	msgs, tick        uint64
	msgsAt, tickAt    time.Time
	msgsGap, batchGap time.Duration
}

// pollInterval is how often Run samples each bot's counters for
// silences: about ten Stats calls per bot per second, a few thousand
// cheap atomic reads a second at 200 bots, for a resolution well under
// the seconds of silence that matter.
const pollInterval = 100 * time.Millisecond

// observe samples b's counters at now and extends its silences.
func (b *bot) observe(now time.Time) {
	st := b.c.Stats()
	if st.MessagesIn != b.msgs {
		b.msgs, b.msgsAt = st.MessagesIn, now
	}
	if st.ServerTick != b.tick {
		b.tick, b.tickAt = st.ServerTick, now
	}
	b.msgsGap = max(b.msgsGap, now.Sub(b.msgsAt))
	b.batchGap = max(b.batchGap, now.Sub(b.tickAt))
}

// Dial connects cfg.N bots, one after another (donburi.NewWorld, which
// netclient.Dial calls, is not safe for concurrent use), and subscribes
// them. On failure it closes the bots already connected.
func Dial(ctx context.Context, cfg Config) (*Swarm, error) {
	if cfg.URL == "" {
		return nil, errors.New("swarm: no server URL")
	}
	if cfg.N <= 0 {
		cfg.N = 1
	}
	if cfg.Radius <= 0 {
		cfg.Radius = 600
	}
	if cfg.Rate <= 0 {
		cfg.Rate = 60
	}
	if cfg.Workers <= 0 {
		cfg.Workers = runtime.GOMAXPROCS(0)
	}
	cfg.Workers = min(cfg.Workers, cfg.N)
	if cfg.Name == "" {
		cfg.Name = "bot"
	}
	if cfg.Seed == 0 {
		cfg.Seed = 1
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Swarm{cfg: cfg}
	for i := range cfg.N {
		b := &bot{name: fmt.Sprintf("%s-%d", cfg.Name, i+1), rng: rand.New(rand.NewPCG(cfg.Seed, uint64(i)))}
		c, err := netclient.Dial(ctx, cfg.URL, sim.NewRegistry(), &netclient.Options{
			Name:     b.name,
			Logger:   cfg.Logger,
			OnChange: func(donburi.Entity, *components.Component) { b.changes++ },
			OnSpawn:  func(donburi.Entity) { b.spawns++ },
		})
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("failed to dial %s: %w", b.name, err)
		}
		if err := c.SubscribeAll(); err != nil {
			c.Close()
			s.Close()
			return nil, fmt.Errorf("failed to subscribe %s: %w", b.name, err)
		}
		b.c, b.pilot = c, sim.NewPilot(c, cfg.Radius, cfg.World)
		s.bots = append(s.bots, b)
	}
	return s, nil
}

// Len returns the number of bots.
func (s *Swarm) Len() int { return len(s.bots) }

// Run drives the bots until ctx is done: Update, find and follow the
// ship, steer. It measures traffic from its start to its end, and each
// bot's longest silence (see Report). It returns an error, in one line, if
// a bot's client stopped for good; Report.Check tells whether the run as a
// whole went well.
func (s *Swarm) Run(ctx context.Context) error {
	s.mu.Lock()
	s.start = time.Now()
	s.end = time.Time{}
	for _, b := range s.bots {
		st := b.c.Stats()
		b.in0, b.out0, b.msgs0 = st.BytesIn, st.BytesOut, st.MessagesIn
		b.frames0, b.changes0, b.spawns0 = b.frames, b.changes, b.spawns
		b.reconnects0 = st.Reconnects
		// Every bot is connected and subscribed: from now on it should
		// hear from the server.
		b.msgs, b.tick = st.MessagesIn, st.ServerTick
		b.msgsAt, b.tickAt = s.start, s.start
		b.msgsGap, b.batchGap = 0, 0
	}
	s.mu.Unlock()

	var wg sync.WaitGroup
	for w := range s.cfg.Workers {
		var mine []*bot
		for i := w; i < len(s.bots); i += s.cfg.Workers {
			mine = append(mine, s.bots[i])
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.drive(ctx, mine)
		}()
	}
	wg.Wait()
	end := time.Now()
	s.mu.Lock()
	s.end = end
	s.mu.Unlock()
	var first error
	failed := 0
	for _, b := range s.bots {
		b.observe(end) // a silence that lasts to the end counts too
		if b.err != nil {
			if first == nil {
				first = fmt.Errorf("%s: %w", b.name, b.err)
			}
			failed++
		}
	}
	if first != nil {
		return fmt.Errorf("%d of %d bots' clients stopped for good (first %w)", failed, len(s.bots), first)
	}
	return nil
}

// drive runs one worker's bots, each Update once per period. The bots'
// Update calls are spread over the period rather than bunched.
// Every pollInterval it also samples the bots' counters for silences.
func (s *Swarm) drive(ctx context.Context, bots []*bot) {
	t := time.NewTicker(time.Second / time.Duration(s.cfg.Rate))
	defer t.Stop()
	nextPoll := time.Now().Add(pollInterval)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		for _, b := range bots {
			if b.err == nil {
				b.step(now, s.cfg.Calm)
			}
		}
		if !now.Before(nextPoll) {
			nextPoll = now.Add(pollInterval)
			for _, b := range bots {
				b.observe(now)
			}
		}
	}
}

func (b *bot) step(now time.Time, calm bool) {
	b.frames++
	if err := b.c.Update(); err != nil {
		b.err = err
		return
	}
	b.pilot.Update()
	if _, ok := b.pilot.Ship(); !ok || now.Before(b.change) {
		return
	}
	var st sim.SteerData
	if calm {
		// Slow, always turning: circles of a few ship lengths.
		st = sim.SteerData{Thrust: int8(15 + b.rng.IntN(15)), Turn: int8(40 + b.rng.IntN(40))}
		if b.rng.IntN(2) == 0 {
			st.Turn = -st.Turn
		}
	} else {
		// Mostly forward, turning a little, now and then hard.
		st = sim.SteerData{Thrust: int8(b.rng.IntN(3) * 50), Turn: int8(b.rng.IntN(5)*50 - 100)}
		if b.rng.IntN(4) == 0 {
			st.Turn = 0
		}
	}
	b.pilot.Steer(st)
	b.change = now.Add(time.Duration(300+b.rng.IntN(1700)) * time.Millisecond)
}

// Close closes every bot's client. It may be called while nothing runs.
func (s *Swarm) Close() {
	for _, b := range s.bots {
		b.c.Close()
	}
}

// Report is the traffic of the bots during Run, per bot, in per-second
// rates over Run's duration.
type Report struct {
	Bots     int
	Duration time.Duration
	BytesIn  Spread // batches from the server, bytes/s
	BytesOut Spread // subscriptions, interest, mutations, pings; bytes/s
	Messages Spread // messages from the server per second: batches, and a pong a second
	Updates  Spread // component values changed by the server per second (OnChange)
	Spawns   Spread // entities entering the mirror per second
	Frames   Spread // Update calls per second
	Entities Spread // mirror entities at the end
	// WithShip counts the bots that found and follow their ship.
	WithShip int
	// Connected counts the bots connected at the end, Reconnects their
	// reconnections during Run.
	Connected  int
	Reconnects int
	Mutations  int // Steer mutations sent
	Refused    int // … not answered Ok
	// Silence is the longest any bot went without a message from the
	// server (a batch or a pong, which answers its ping every second)
	// during Run, SilenceBot that bot; BatchSilence and BatchSilenceBot the
	// same for batches (the server's tick advancing for it). A silence
	// still going on at the end counts; the resolution is pollInterval.
	Silence, BatchSilence       time.Duration
	SilenceBot, BatchSilenceBot string
	Failed                      []string
}

// Spread is the average, minimum and maximum of a figure over the bots.
type Spread struct{ Avg, Min, Max float64 }

func spread(v []float64) Spread {
	if len(v) == 0 {
		return Spread{}
	}
	s := Spread{Min: v[0], Max: v[0]}
	sum := 0.0
	for _, x := range v {
		s.Min, s.Max, sum = min(s.Min, x), max(s.Max, x), sum+x
	}
	s.Avg = sum / float64(len(v))
	return s
}

// Report returns the figures of the last Run. Call it after Run returned.
func (s *Swarm) Report() Report {
	s.mu.Lock()
	start, end := s.start, s.end
	s.mu.Unlock()
	if end.IsZero() {
		end = time.Now()
	}
	secs := end.Sub(start).Seconds()
	if secs <= 0 {
		secs = 1e-9
	}
	r := Report{Bots: len(s.bots), Duration: end.Sub(start)}
	var in, out, msgs, upd, spawns, frames, ents []float64
	for _, b := range s.bots {
		st := b.c.Stats()
		in = append(in, float64(st.BytesIn-b.in0)/secs)
		out = append(out, float64(st.BytesOut-b.out0)/secs)
		msgs = append(msgs, float64(st.MessagesIn-b.msgs0)/secs)
		upd = append(upd, float64(b.changes-b.changes0)/secs)
		spawns = append(spawns, float64(b.spawns-b.spawns0)/secs)
		frames = append(frames, float64(b.frames-b.frames0)/secs)
		ents = append(ents, float64(st.Entities))
		if _, ok := b.pilot.Ship(); ok {
			r.WithShip++
		}
		if st.Connected {
			r.Connected++
		}
		r.Reconnects += int(st.Reconnects - b.reconnects0)
		if b.msgsGap > r.Silence {
			r.Silence, r.SilenceBot = b.msgsGap, b.name
		}
		if b.batchGap > r.BatchSilence {
			r.BatchSilence, r.BatchSilenceBot = b.batchGap, b.name
		}
		r.Mutations += b.pilot.Sent
		r.Refused += b.pilot.Refused
		if b.err != nil {
			r.Failed = append(r.Failed, fmt.Sprintf("%s: %v", b.name, b.err))
		}
	}
	r.BytesIn, r.BytesOut, r.Messages = spread(in), spread(out), spread(msgs)
	r.Updates, r.Spawns, r.Frames, r.Entities = spread(upd), spread(spawns), spread(frames), spread(ents)
	return r
}

// String formats the report over a few lines, per-bot figures as
// avg/min/max.
func (r Report) String() string {
	kb := func(s Spread) string {
		if s.Max < 10*1024 {
			return fmt.Sprintf("%.0f / %.0f / %.0f B/s", s.Avg, s.Min, s.Max)
		}
		return fmt.Sprintf("%.1f / %.1f / %.1f KB/s", s.Avg/1024, s.Min/1024, s.Max/1024)
	}
	n := func(s Spread) string { return fmt.Sprintf("%.1f / %.1f / %.1f", s.Avg, s.Min, s.Max) }
	out := fmt.Sprintf("bots: %d over %v (%d connected, %d following their ship)\n", r.Bots, r.Duration.Round(time.Millisecond), r.Connected, r.WithShip)
	out += "per bot               avg / min / max\n"
	out += "  bytes in/s          " + kb(r.BytesIn) + "\n"
	out += "  bytes out/s         " + kb(r.BytesOut) + "\n"
	out += "  updates/s           " + n(r.Updates) + "  (component values changed by the server)\n"
	out += "  batches/s           " + n(r.Messages) + "  (server messages, incl. 1 pong/s)\n"
	out += "  spawns/s            " + n(r.Spawns) + "  (entities entering the mirror)\n"
	out += "  frames/s            " + n(r.Frames) + "  (Update calls)\n"
	out += "  mirror entities     " + n(r.Entities) + "\n"
	out += fmt.Sprintf("steer mutations: %d sent, %d not ok\n", r.Mutations, r.Refused)
	out += fmt.Sprintf("longest silence: %v without a message (%s), %v without a batch (%s); %d reconnects\n",
		r.Silence.Round(time.Millisecond), orNone(r.SilenceBot), r.BatchSilence.Round(time.Millisecond), orNone(r.BatchSilenceBot), r.Reconnects)
	for _, f := range r.Failed {
		out += "FAILED " + f + "\n"
	}
	return out
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// Check returns, in one line, why the run the report describes failed, or
// nil: a bot's client stopped for good, fewer bots were connected at the
// end than ran (the server died, or a bot lost its connection and did not
// get it back), or a bot went more than maxSilence without a message or
// without a batch from the server (maxSilence <= 0 skips that check).
func (r Report) Check(maxSilence time.Duration) error {
	var why []string
	if len(r.Failed) > 0 {
		why = append(why, fmt.Sprintf("%d of %d bots' clients stopped for good (first %s)", len(r.Failed), r.Bots, r.Failed[0]))
	}
	if r.Connected < r.Bots {
		why = append(why, fmt.Sprintf("%d of %d bots not connected at the end", r.Bots-r.Connected, r.Bots))
	}
	if maxSilence > 0 {
		if r.Silence > maxSilence {
			why = append(why, fmt.Sprintf("%s heard nothing from the server for %v (over %v)", r.SilenceBot, r.Silence.Round(time.Millisecond), maxSilence))
		} else if r.BatchSilence > maxSilence {
			why = append(why, fmt.Sprintf("%s got no batch for %v (over %v)", r.BatchSilenceBot, r.BatchSilence.Round(time.Millisecond), maxSilence))
		}
	}
	if len(why) == 0 {
		return nil
	}
	return errors.New(strings.Join(why, "; "))
}
