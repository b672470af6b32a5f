// Package benchmarks measures ebisync's server over real loopback WebSocket
// connections, against a reference figure and against a naive baseline. It
// has no API: everything is in its _test.go files.
//
// # Running
//
// The budget test is an ordinary test and runs with go test ./... (under a
// second, also with -race):
//
//	go test ./benchmarks
//
// The benchmarks run only with -bench. Every iteration of BenchmarkServerTick
// waits for the delivery of its tick to hundreds of clients, and its
// setup connects them, so pass an iteration count rather than a duration:
//
//	go test ./benchmarks -run '^$' -bench . -benchtime 20x -timeout 30m
//	go test ./benchmarks -run '^$' -bench ReferenceScenario            # quick
//	go test ./benchmarks -run '^$' -bench 'ServerTick/entities=1000$/clients=100$' -benchtime 200x
//
// With -short the ServerTick cases above 100 000 entity×client products are
// skipped. A case with 10 000 entities and 500 clients takes about 10 s of
// setup, ticks and baseline on two cores.
//
// To see where a tick spends its time, profile and focus on Tick:
//
//	go test ./benchmarks -run '^$' -bench 'ServerTick/entities=10000$/clients=500$' -benchtime 200x \
//		-cpuprofile cpu.out -o bench.test
//	go tool pprof -top -cum -focus 'plugin.\(\*Server\).Tick' bench.test cpu.out
//
// To see what allocates in steady state only (the setup allocates plenty),
// pass -allocdiff: every allocation is then recorded and the allocs profile
// is written before and after the measured ticks:
//
//	go test ./benchmarks -run '^$' -bench 'ServerTick/entities=1000$/clients=100$' -benchtime 300x -args -allocdiff /tmp/p
//	go tool pprof -sample_index alloc_objects -top -ignore 'Stats|pprof' \
//		-diff_base /tmp/p/BenchmarkServerTick-entities1000-clients100.before.pb.gz \
//		/tmp/p/BenchmarkServerTick-entities1000-clients100.after.pb.gz
//
// # BenchmarkReferenceScenario and TestReferenceScenarioBudget
//
// Three entities with Replicated and Position move at 60 units per second
// inside a 900×900 box, bouncing off its walls; one client subscribes to
// Position with the default global interest. One iteration is one tick:
// the simulation step, Server.Tick, and the wait until the client has
// decoded that tick's batch and the server's writer is idle again (so no
// tick is skipped and every batch carries exactly one tick of change).
// ns/op is therefore a loopback round trip, not a cost.
//
//   - B/update: WebSocket payload bytes of a batch that carried updates,
//     averaged over the measured ticks (the initial spawn is warm-up). One
//     update is one tick's batch for all three entities.
//   - B/update-framed: the same plus the WebSocket frame header the client
//     reads (2 bytes below 126 payload bytes; server frames are unmasked).
//     TCP/IP headers are not counted.
//   - B/s/client, B/s/client-framed: B/update × 60 ticks per second.
//   - x-smaller-vs-reference: the reference system's 77 B/update divided by
//     B/update. The target is ≥ 3 (≤ 25.6 B/update, ≤ 1533 B/s).
//   - updates/batch: entity updates per batch (3).
//
// The bytes depend on the heading: a quantised coordinate (step 0.01) that
// moves 64 steps or more per tick costs two bytes in a delta, fewer costs
// one. headings=mixed (40°, 165°, 290°) is the scenario; headings=diagonal
// is its worst case at this speed, every coordinate costing two bytes.
// TestReferenceScenarioBudget runs both until it has 300 one-tick batches
// (120 with -short) and fails if either exceeds the target; bytes do not
// depend on timing, so the test is deterministic.
//
// One thing does depend on timing: after a write that took longer than a
// tick, the server halves that client's send rate for a while, and the next
// batch carries two ticks of movement. On a loaded machine (or under
// -race) that happens now and then. Such ticks and batches are left out of
// the figures and logged; the test runs more ticks instead (up to 20×).
//
// # BenchmarkServerTick
//
// N entities (Replicated, Position, Health) at random positions on a
// 4096×4096 map; C clients over loopback, each with a fixed InterestPoint at
// a random centre and an enter radius covering 5% of the map (radius =
// sqrt(0.05·A/π) ≈ 517; CellSize = radius/4), subscribed to Position and
// Health. Every tick 10% of the entities move by up to 2 units per axis.
// The moves come from a precomputed 60-tick cycle whose second half undoes
// the first, so the measured loop does nothing but apply a tick's moves and
// call Server.Tick, and the pairs of every tick are known exactly. Setup
// connects the clients, waits until all joined and subscribed, and runs ten
// more ticks before measuring.
//
// One iteration is one tick. The timer runs over the moves and
// Server.Tick only; then, with the timer stopped, the benchmark waits until
// every client received every batch the tick handed to the writers, byte
// for byte, so that the next tick finds no writer busy and does the full
// work for every client (a busy writer would make the server skip that
// client for the tick, which would flatter the figure).
//
//   - ns/op, ns/pair: wall time of the moves plus Tick, per tick and per
//     pair. A pair is (changed entity, client whose enter radius contains
//     it after the move), counted exactly from the plan. Pairs of entities
//     in the hysteresis band are not counted, so ns/pair errs high.
//   - cpu-ns/pair (Linux): the same with the CPU time of the tick's thread
//     (the benchmark goroutine is locked to its thread) instead of wall
//     time. It leaves out the time the thread waited for a core, so it is
//     the figure to read on a busy machine.
//   - sim-cpu-ns/pair (Linux): the part of cpu-ns/pair spent in the moves
//     themselves (the game's own work: a World.Entry lookup and a
//     position write per moving entity), measured on its own so that the
//     server's share, cpu-ns/pair minus sim-cpu-ns/pair, can be read.
//   - pairs/tick: the average pair count.
//   - detect-ns/pair, scopes-ns/pair, send-ns/pair: the tick's phases as
//     Stats().Phases reports them after each tick (wall time): change
//     detection; scope updates including writing this tick's changes into
//     the batches; finishing the batches and queueing them for the
//     writers. Per pair, so they add up to a little less than ns/pair (the
//     moves and the inbound phase are not in them).
//   - B/client/tick: growth of Stats().BytesOut (batch payload bytes after
//     compression) per client per tick.
//   - allocs/tick: growth of runtime.MemStats.Mallocs from just before to
//     just after the timed part, per tick. It counts the whole process
//     during that window: besides the tick, the server's writer goroutines
//     start writing the tick's batches while the tick is still handing out
//     the others, and the readers of the benchmark clients run too. The
//     readers use one buffer and conn.Reader with a context that never
//     ends, and allocate nothing per message. How much writer work falls
//     inside the window depends on scheduling, so read it with
//     allocs/tick-e2e and -allocdiff.
//   - allocs/tick-e2e: Mallocs growth over the whole iteration, tick plus
//     complete delivery to every client. The harness polls the server's
//     counters with Server.ReadStats into one reused Stats, which
//     allocates nothing, so this is what the whole system allocates per
//     tick.
//   - naive-ns/tick, naive-B/client/tick: the baseline, measured the same
//     way on the same world and moves (see below).
//   - x-bytes-vs-naive: naive-B/client/tick ÷ B/client/tick.
//   - x-wall-vs-naive: naive wall ns per tick ÷ ebisync wall ns per tick.
//   - x-cpu-vs-naive (Linux): the same ratio with the tick thread's CPU
//     time; the better comparison on a busy machine.
//
// The log line of each case adds: setup time, tick time until delivered,
// batches per client per tick (about 1: each client sees a change nearly
// every tick), ticks skipped because a writer was busy (must be 0), raw
// bytes before compression, scope entries per client, and the baseline's
// details.
//
// The naive baseline is what a game would write without a library: every
// tick it snapshots every entity (id, x, y, health, max health) and, for
// every client, json.Marshals the snapshot and hands it to that client's
// writer goroutine, which writes it as one WebSocket text message. No
// interest management, no deltas, floats at full precision. Its shape
// otherwise matches the server's (the tick hands bytes to one writer per
// connection), so the two tick times compare the same job: deciding and
// encoding what to send. It runs after the ebisync server was closed, on
// up to min(b.N, 20) ticks after one warm-up tick, and on fewer (at least
// 3) when the warm-up tick shows they would take more than 5 s: at 10 000
// entities and 500 clients a naive tick marshals and writes about 390 MB,
// so it is measured on 3 ticks, and the figures are per-tick averages of
// those.
//
// # BenchmarkClientsPerCore
//
// How many clients one core holds, counting the whole server process: the
// demo scene (package demo/sim: 3 000 asteroids and drones on an 8 000 ×
// 8 000 wrap-around map, plus a ship and its shield orb per client) stepped
// and replicated at 30 Hz by sim.Host, with N clients in another process.
// Three processes, each this test binary run again with -test.run naming a
// helper (TestClientsPerCoreServerHelper, …ReadersHelper, …BareHelper):
//
//   - the server: sim.NewHost on a loopback port, ticking on its own;
//   - the readers: N WebSocket connections, each sending the demo's Hello,
//     reading the Welcome and subscribing to every component (the server
//     follows the client's ship with the demo's 600-unit radius; the ships
//     are not steered), then reading every message into one buffer,
//     opening it (lz4 included) and reading its tick advance; every 64th
//     batch of a connection is decoded in full;
//   - the bare server: N connections from a new readers process (no
//     handshake), to which it writes, 30 times a second, one binary message
//     of the ebisync run's average batch size with coder/websocket,
//     compression off, as the plugin does. Two writers are measured, each
//     in its own process: loop (one goroutine per core writing to its share
//     of the connections in turn) and conn (a goroutine per connection,
//     woken through a channel each tick).
//
// Each process's CPU is its own (getrusage: user plus system), read at the
// start and the end of a measuring window (-cpc.window, 10 s; 5 s with
// -short) that opens 3 s after every client was admitted. One iteration
// measures one client count; pass -benchtime 1x.
//
//   - server-us/client-s: server process CPU in µs per client per second
//     of the window;
//   - server-us/client-tick: server CPU per client per server tick;
//   - clients/core: 10⁶ ÷ (server-us/client-tick × 30), the clients one
//     core would hold at 30 Hz at this cost per client and tick (equal to
//     10⁶ ÷ server-us/client-s while the server keeps up);
//   - bare-us/write: the bare server's CPU per message written, for the
//     cheaper of the writers measured (bare-loop-us/write and
//     bare-conn-us/write give each);
//   - x-vs-bare-write: server-us/client-tick ÷ bare-us/write. 1 is the
//     floor: every client needs one write per tick;
//   - server-us/batch: server CPU per batch written;
//   - idle-us/tick: server CPU per tick over 2 s before any client
//     connected (the simulation and a tick with nobody to send to);
//   - B/batch, B/client-s, B/client-tick, batches/client-tick: what the
//     server sent (Stats().BytesOut, after compression, and
//     Stats().Batches);
//   - ticks/s, tick-us: ticks run per second of the window, and the
//     average wall time of the last ticks (sim.Host.TickStats);
//   - detect-us/client-tick, scopes-us/client-tick, send-us/client-tick:
//     the plugin's tick phases over the window (Stats().PhaseTotals, wall
//     time on the game goroutine) per client per tick, which judge a change
//     to the tick with less noise than the process's CPU;
//   - skipped/client-tick: clients skipped for a busy writer
//     (Stats().SkippedBusy) per client per tick;
//   - server-cores, reader-cores: the server's and the readers' CPU over
//     the window, in cores.
//
// The client counts are 100, 500 and 2 000 (-short skips 2 000); set them
// with -cpc.clients or $EBISYNC_CPC_CLIENTS. -cpc.bare chooses the bare
// writers (none skips the bare server, for quick comparisons of two
// builds), and -cpc.profile DIR writes a CPU profile of the server process
// over each window to DIR/server-N.pprof:
//
//	go test ./benchmarks -run '^$' -bench ClientsPerCore -benchtime 1x -timeout 30m
//	go test ./benchmarks -run '^$' -bench ClientsPerCore -benchtime 1x -args -cpc.clients 500 -cpc.profile /tmp/p
//	go tool pprof -top /tmp/p/server-500.pprof
//
// The server CPU includes the demo's own simulation, its reader goroutines
// and the runtime. Every process is limited to as many open files as the
// hard limit allows (each raises its soft limit to the clients plus 256).
// The readers share the machine with the server: when the server and the
// readers need more than the cores there are, the server's ticks fall
// behind (ticks/s below 30), batches carry several ticks each and the
// per-client figures are those of that overloaded server.
//
// # The rest of the published suite
//
// benchmarks/results.sh runs BenchmarkClientsPerCore and the four below
// with -count (3 by default) and writes results.txt (the raw output, for
// benchstat), RESULTS.md (every figure as the median and range of the
// runs, its same-run baseline and ratio, and the machine) and clients.png
// (server CPU and bytes per client against the client count), through the
// command in benchmarks/report, a module of its own so that the library
// does not depend on gonum/plot. Each benchmark's doc comment defines its
// figures:
//
//   - BenchmarkClientApply: netclient's Update CPU per component update
//     applied to the mirror (target at most 100 ns);
//   - BenchmarkIdle: the traffic of 100 idle netclient clients in kbit/s
//     per client (target at most 5 with TCP/IP headers), and the check
//     that a tick with no change sends nothing;
//   - BenchmarkIdleServer: the tick's CPU with 100 and 1 000 idle clients;
//   - BenchmarkCompression: lz4's ratio and time on a spawn burst and on
//     delta batches.
//
// # Input latency
//
// BenchmarkInputLatency (not in the published suite: it measures frames,
// not cost) counts, at 60 fps through a netsim proxy adding a 150 ms round
// trip to a 30 Hz server, the frames from the player's act to the first
// frame that draws its effect, both included: predicted (an input,
// netclient.Predict; target 1 frame) and unpredicted (a mutation).
//
// # Noise
//
// The machine these were written on has 2 cores shared with other jobs.
// Wall-clock figures vary by 2× from run to run; the CPU-time figures
// less, bytes not at all. Compare runs with benchstat and -count, and
// prefer the cpu- figures.
package benchmarks
