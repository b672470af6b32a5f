// Command report turns the output of the benchmark suite (go test -bench
// with -count, as benchmarks/results.sh runs it) into benchmarks/RESULTS.md
// and a chart of the server's CPU and bytes per client against the client
// count:
//
//	go run . -in ../results.txt -md ../RESULTS.md -chart ../clients.png
//
// Every figure in RESULTS.md is the median of the runs, with their range;
// nothing is typed in by hand. It is its own module so that the library
// does not depend on gonum/plot.
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

func main() {
	in := flag.String("in", "results.txt", "benchmark output to read")
	md := flag.String("md", "RESULTS.md", "markdown file to write")
	chart := flag.String("chart", "clients.png", "PNG chart to write")
	command := flag.String("command", "", "the command that produced the input, quoted in the markdown")
	flag.Parse()
	if err := run(*in, *md, *chart, *command); err != nil {
		fmt.Fprintln(os.Stderr, "report:", err)
		os.Exit(1)
	}
}

func run(in, md, chart, command string) error {
	f, err := os.Open(in)
	if err != nil {
		return err
	}
	defer f.Close()
	res, err := parse(f)
	if err != nil {
		return err
	}
	var b strings.Builder
	writeMarkdown(&b, res, command, chart)
	if err := os.WriteFile(md, []byte(b.String()), 0o644); err != nil {
		return err
	}
	return drawChart(res, chart)
}

// results holds every run of every benchmark, by name without the
// GOMAXPROCS suffix, and the header lines of the output.
type results struct {
	runs       map[string][]map[string]float64
	cpu, goos  string
	goarch     string
	procs      string
	goVersion  string
	generated  time.Time
	benchOrder []string
}

var benchLine = regexp.MustCompile(`^(Benchmark\S+?)(?:-(\d+))?\s+\d+\s+(.*)$`)

func parse(r io.Reader) (*results, error) {
	res := &results{runs: make(map[string][]map[string]float64), generated: time.Now().UTC()}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "cpu: "):
			res.cpu = strings.TrimPrefix(line, "cpu: ")
		case strings.HasPrefix(line, "goos: "):
			res.goos = strings.TrimPrefix(line, "goos: ")
		case strings.HasPrefix(line, "goarch: "):
			res.goarch = strings.TrimPrefix(line, "goarch: ")
		case strings.HasPrefix(line, "# go version "):
			res.goVersion = strings.TrimPrefix(line, "# go version ")
		}
		m := benchLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		name := m[1]
		if m[2] != "" {
			res.procs = m[2]
		}
		f := strings.Fields(m[3])
		vals := make(map[string]float64)
		for i := 0; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				return nil, fmt.Errorf("%q: %v", line, err)
			}
			vals[f[i+1]] = v
		}
		if _, ok := res.runs[name]; !ok {
			res.benchOrder = append(res.benchOrder, name)
		}
		res.runs[name] = append(res.runs[name], vals)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(res.runs) == 0 {
		return nil, errors.New("no benchmark results in the input")
	}
	return res, nil
}

// stat is the median and range of one metric over the runs of one
// benchmark.
type stat struct {
	med, lo, hi float64
	n           int
}

func (r *results) stat(name, unit string) (stat, bool) {
	var vs []float64
	for _, run := range r.runs[name] {
		if v, ok := run[unit]; ok {
			vs = append(vs, v)
		}
	}
	if len(vs) == 0 {
		return stat{}, false
	}
	sort.Float64s(vs)
	med := vs[len(vs)/2]
	if len(vs)%2 == 0 {
		med = (vs[len(vs)/2-1] + vs[len(vs)/2]) / 2
	}
	return stat{med: med, lo: vs[0], hi: vs[len(vs)-1], n: len(vs)}, true
}

// cell formats a metric as "median (lo–hi)", or "–" when it is missing.
func (r *results) cell(name, unit string, digits int) string {
	s, ok := r.stat(name, unit)
	if !ok {
		return "–"
	}
	if s.n == 1 || s.lo == s.hi {
		return num(s.med, digits)
	}
	return fmt.Sprintf("%s (%s–%s)", num(s.med, digits), num(s.lo, digits), num(s.hi, digits))
}

func num(v float64, digits int) string { return strconv.FormatFloat(v, 'f', digits, 64) }

// sub returns the benchmarks named prefix/..., in the order they ran.
func (r *results) sub(prefix string) []string {
	var out []string
	for _, n := range r.benchOrder {
		if strings.HasPrefix(n, prefix+"/") {
			out = append(out, n)
		}
	}
	return out
}

// param returns the value of key=value in a sub-benchmark name.
func param(name, key string) string {
	for p := range strings.SplitSeq(name, "/") {
		if v, ok := strings.CutPrefix(p, key+"="); ok {
			return v
		}
	}
	return ""
}

func (r *results) runCount(name string) int { return len(r.runs[name]) }

func writeMarkdown(w *strings.Builder, r *results, command, chart string) {
	fmt.Fprintf(w, "# ebisync benchmark results\n\n")
	fmt.Fprintf(w, "Written by `benchmarks/results.sh` (`benchmarks/report`) from `benchmarks/results.txt`, the raw `go test -bench` output (benchstat reads it). Do not edit by hand: run the script again.\n\n")
	fmt.Fprintf(w, "Every figure is the median of the runs, with their range in brackets. Baselines are measured in the same run as the figure they divide.\n\n")
	fmt.Fprintf(w, "## Machine\n\n")
	fmt.Fprintf(w, "| | |\n|---|---|\n")
	fmt.Fprintf(w, "| CPU | %s |\n", orDash(r.cpu))
	fmt.Fprintf(w, "| logical CPUs | %d (GOMAXPROCS %s in the runs) |\n", runtime.NumCPU(), orDash(r.procs))
	fmt.Fprintf(w, "| OS/arch | %s/%s |\n", orDash(r.goos), orDash(r.goarch))
	fmt.Fprintf(w, "| Go | %s |\n", orDash(r.goVersion))
	fmt.Fprintf(w, "| date | %s |\n\n", r.generated.Format("2006-01-02"))
	if command != "" {
		fmt.Fprintf(w, "Commands:\n\n```sh\n%s\n```\n\n", command)
	}

	if names := r.sub("BenchmarkClientsPerCore"); len(names) > 0 {
		fmt.Fprintf(w, "## Clients per core (`BenchmarkClientsPerCore`)\n\n")
		fmt.Fprintf(w, "The demo scene at 30 Hz, the whole server process's CPU (getrusage), N reading clients in another process. The baseline, bare-µs/write, is a bare coder/websocket server writing messages of the same average size to the same number of connections once per tick, measured right after (the cheaper of its two writers); x-vs-bare-write is server µs per client per tick ÷ bare µs per write, whose target is at most 1.5 (1 is the floor: one write per client per tick).\n\n")
		fmt.Fprintf(w, "![server CPU and bytes per client against client count](%s)\n\n", chartName(chart))
		fmt.Fprintf(w, "| clients | runs | server µs/client-s | server µs/client-tick | clients/core at 30 Hz | bare µs/write | x-vs-bare-write (≤ 1.5) | B/batch | B/client-tick | ticks/s | skipped/client-tick | idle µs/tick | server cores | reader cores |\n")
		fmt.Fprintf(w, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, n := range names {
			fmt.Fprintf(w, "| %s | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", param(n, "clients"), r.runCount(n),
				r.cell(n, "server-us/client-s", 0), r.cell(n, "server-us/client-tick", 1), r.cell(n, "clients/core", 0),
				r.cell(n, "bare-us/write", 1), r.cell(n, "x-vs-bare-write", 2), r.cell(n, "B/batch", 0), r.cell(n, "B/client-tick", 0),
				r.cell(n, "ticks/s", 1), r.cell(n, "skipped/client-tick", 3), r.cell(n, "idle-us/tick", 0),
				r.cell(n, "server-cores", 2), r.cell(n, "reader-cores", 2))
		}
		fmt.Fprintf(w, "\nThe bare server's two writers (µs per write): ")
		var parts []string
		for _, n := range names {
			parts = append(parts, fmt.Sprintf("%s clients: loop %s, conn %s", param(n, "clients"), r.cell(n, "bare-loop-us/write", 1), r.cell(n, "bare-conn-us/write", 1)))
		}
		fmt.Fprintf(w, "%s.\n\n", strings.Join(parts, "; "))
		fmt.Fprintf(w, "A server below 30 ticks/s could not keep up on this machine (the readers share its cores): its batches carry several ticks each, and clients are skipped while their writer is busy, so its per-tick figures are those of an overloaded server.\n\n")
	}

	if n := "BenchmarkIdle"; r.runCount(n) > 0 {
		fmt.Fprintf(w, "## Idle clients (`BenchmarkIdle`)\n\n")
		fmt.Fprintf(w, "100 netclient clients of a server whose 1 000 entities never move; their keep-alive (each client pings once a second and the server answers) is all the traffic. A tick with no change must send nothing.\n\n")
		fmt.Fprintf(w, "| runs | kbit/s/client (WebSocket) | kbit/s/client with TCP/IP headers (≤ 5) | batches/tick (must be 0) |\n|---:|---:|---:|---:|\n")
		fmt.Fprintf(w, "| %d | %s | %s | %s |\n\n", r.runCount(n), r.cell(n, "kbit/s/client", 2), r.cell(n, "kbit/s/client-ip", 2), r.cell(n, "batches/tick", 0))
	}

	if names := r.sub("BenchmarkIdleServer"); len(names) > 0 {
		fmt.Fprintf(w, "## Idle server (`BenchmarkIdleServer`)\n\n")
		fmt.Fprintf(w, "The tick's thread CPU with N clients connected and nothing changing (1 000 static entities).\n\n")
		fmt.Fprintf(w, "| clients | runs | cpu µs/tick | cpu ns/client-tick | B/tick |\n|---:|---:|---:|---:|---:|\n")
		for _, n := range names {
			fmt.Fprintf(w, "| %s | %d | %s | %s | %s |\n", param(n, "clients"), r.runCount(n), r.cell(n, "cpu-us/tick", 1), r.cell(n, "cpu-ns/client-tick", 0), r.cell(n, "B/tick", 0))
		}
		fmt.Fprintln(w)
	}

	if n := "BenchmarkClientApply"; r.runCount(n) > 0 {
		fmt.Fprintf(w, "## Client apply (`BenchmarkClientApply`)\n\n")
		fmt.Fprintf(w, "netclient's Update per component update applied to the mirror (100 Position deltas per batch, 1 000 mirrored entities; the server ticks on the same thread between Updates).\n\n")
		fmt.Fprintf(w, "| runs | cpu ns/update (≤ 100) | wall ns/update |\n|---:|---:|---:|\n")
		fmt.Fprintf(w, "| %d | %s | %s |\n\n", r.runCount(n), r.cell(n, "ns/update", 0), r.cell(n, "wall-ns/update", 0))
	}

	if n := "BenchmarkCompression"; r.runCount(n) > 0 {
		fmt.Fprintf(w, "## Compression (`BenchmarkCompression`)\n\n")
		fmt.Fprintf(w, "lz4 as the server frames it, on a spawn burst (about 500 entities entering a client's scope) and on 60 delta batches (10%% of 10 000 entities moving per tick).\n\n")
		fmt.Fprintf(w, "| batch | runs | raw B | x ratio (raw ÷ lz4) | compress µs | open µs |\n|---|---:|---:|---:|---:|---:|\n")
		fmt.Fprintf(w, "| spawn burst | %d | %s | %s | %s | %s |\n", r.runCount(n), r.cell(n, "spawn-B", 0), r.cell(n, "spawn-x-ratio", 2), r.cell(n, "spawn-compress-us", 1), r.cell(n, "spawn-open-us", 1))
		fmt.Fprintf(w, "| delta | %d | %s | %s | %s | %s |\n\n", r.runCount(n), r.cell(n, "delta-B", 0), r.cell(n, "delta-x-ratio", 2), r.cell(n, "delta-compress-us", 2), r.cell(n, "delta-open-us", 2))
		fmt.Fprintf(w, "Delta batches lz4 shrinks by a sixteenth or more: %s of them (the server stops trying on a connection after eight misses in a row).\n", r.cell(n, "delta-shrunk-share", 2))
	}
}

func orDash(s string) string {
	if s == "" {
		return "–"
	}
	return s
}

func chartName(path string) string {
	if i := strings.LastIndexByte(path, '/'); i >= 0 {
		return path[i+1:]
	}
	return path
}

// drawChart plots, against the client count, the server's CPU per client
// per tick with the bare write's, and the bytes per client per second.
func drawChart(r *results, path string) error {
	names := r.sub("BenchmarkClientsPerCore")
	if len(names) == 0 {
		return errors.New("no BenchmarkClientsPerCore results to chart")
	}
	type point struct{ x, server, bare, bytes stat }
	var pts []point
	for _, n := range names {
		x, err := strconv.ParseFloat(param(n, "clients"), 64)
		if err != nil {
			return fmt.Errorf("%s: %v", n, err)
		}
		p := point{x: stat{med: x}}
		p.server, _ = r.stat(n, "server-us/client-tick")
		p.bare, _ = r.stat(n, "bare-us/write")
		p.bytes, _ = r.stat(n, "B/client-tick")
		pts = append(pts, p)
	}
	slices.SortFunc(pts, func(a, b point) int { return int(a.x.med - b.x.med) })

	series := func(get func(point) stat) (plotter.XYs, plotter.YErrors) {
		xy := make(plotter.XYs, len(pts))
		errs := make(plotter.YErrors, len(pts))
		for i, p := range pts {
			s := get(p)
			xy[i] = plotter.XY{X: p.x.med, Y: s.med}
			errs[i].Low, errs[i].High = s.med-s.lo, s.hi-s.med
		}
		return xy, errs
	}
	addLine := func(p *plot.Plot, label string, get func(point) stat, dashed bool, shape draw.GlyphDrawer) error {
		xy, errs := series(get)
		l, sc, err := plotter.NewLinePoints(xy)
		if err != nil {
			return err
		}
		if dashed {
			l.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
		}
		sc.Shape = shape
		eb, err := plotter.NewYErrorBars(struct {
			plotter.XYs
			plotter.YErrors
		}{xy, errs})
		if err != nil {
			return err
		}
		p.Add(l, sc, eb)
		p.Legend.Add(label, l, sc)
		return nil
	}

	cpu := plot.New()
	cpu.Title.Text = "Server CPU per client per tick (demo scene, 30 Hz)"
	cpu.X.Label.Text = "clients (log scale)"
	cpu.X.Scale = plot.LogScale{}
	cpu.X.Tick.Marker = plot.LogTicks{Prec: -1}
	cpu.Y.Label.Text = "µs of CPU"
	cpu.Y.Min = 0
	if err := addLine(cpu, "ebisync server (whole process)", func(p point) stat { return p.server }, false, draw.CircleGlyph{}); err != nil {
		return err
	}
	if err := addLine(cpu, "bare coder/websocket write, same bytes", func(p point) stat { return p.bare }, true, draw.BoxGlyph{}); err != nil {
		return err
	}
	bytes := plot.New()
	bytes.Title.Text = "Bytes sent per client per tick"
	bytes.X.Label.Text = "clients (log scale)"
	bytes.X.Scale = plot.LogScale{}
	bytes.X.Tick.Marker = plot.LogTicks{Prec: -1}
	bytes.Y.Label.Text = "bytes (after compression)"
	bytes.Y.Min = 0
	if err := addLine(bytes, "", func(p point) stat { return p.bytes }, false, draw.CircleGlyph{}); err != nil {
		return err
	}
	bytes.Legend = plot.NewLegend()

	const w, h = 20 * vg.Centimeter, 9 * vg.Centimeter
	img := vgimg.New(2*w, h)
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: 1, Cols: 2, PadX: vg.Centimeter, PadY: vg.Centimeter / 2, PadLeft: vg.Centimeter / 2, PadRight: vg.Centimeter / 2, PadTop: vg.Centimeter / 2, PadBottom: vg.Centimeter / 2}
	canvases := plot.Align([][]*plot.Plot{{cpu, bytes}}, tiles, dc)
	cpu.Draw(canvases[0][0])
	bytes.Draw(canvases[0][1])
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
