package ebitensync

import (
	"fmt"
	"image/color"
	"runtime/metrics"
	"time"

	"github.com/hajimehoshi/ebiten/v2"
	"github.com/hajimehoshi/ebiten/v2/ebitenutil"
	"github.com/hajimehoshi/ebiten/v2/inpututil"
	"github.com/hajimehoshi/ebiten/v2/vector"

	"github.com/ebisync/ebisync/netclient"
)

// GraphSamples is how many bandwidth samples the overlay's graph shows.
const GraphSamples = 120

// OverlayOptions configures an Overlay. A nil *OverlayOptions means the
// defaults.
type OverlayOptions struct {
	// Keys toggle the overlay. Default F3.
	Keys []ebiten.Key
	// Visible shows the overlay from the start.
	Visible bool
	// SampleEvery is the period of one bandwidth sample. Default 250ms,
	// so the graph spans 30 seconds.
	SampleEvery time.Duration
}

// Overlay is a debug panel showing a client's connection: its state,
// entities in the mirror, bytes per second in and out, the corrections of
// predicted entities per second and the largest of them (netclient.Predict;
// 0 without prediction), the round-trip time
// ("—" while reconnecting), where lz4 paid (the batches it compressed, and
// what they saved), the server tick, the render rate and the process's
// memory, and a graph of the last GraphSamples bandwidth samples with its
// legend.
//
// Call Update from the game's Update and Draw from its Draw, both on the
// game goroutine; an Overlay is not safe for concurrent use. Samples are
// taken in Update whether the overlay is visible or not, so the graph has
// history when it is opened.
type Overlay struct {
	c       *netclient.Client
	keys    []ebiten.Key
	visible bool
	every   time.Duration

	last    time.Time
	prevIn  uint64
	prevOut uint64
	in, out [GraphSamples]float64 // bytes/s, ring buffers
	head    int                   // next slot to write
	n       int                   // samples held

	mem       [2]metrics.Sample // the process's heap objects and total memory from the OS
	heap, sys uint64
}

// NewOverlay returns an overlay for c.
// Call it on the game goroutine (Ebitengine's Update and Draw).
func NewOverlay(c *netclient.Client, opts *OverlayOptions) *Overlay {
	var o OverlayOptions
	if opts != nil {
		o = *opts
	}
	if len(o.Keys) == 0 {
		o.Keys = []ebiten.Key{ebiten.KeyF3}
	}
	if o.SampleEvery <= 0 {
		o.SampleEvery = 250 * time.Millisecond
	}
	ov := &Overlay{c: c, keys: append([]ebiten.Key(nil), o.Keys...), visible: o.Visible, every: o.SampleEvery}
	ov.mem[0].Name = "/memory/classes/heap/objects:bytes"
	ov.mem[1].Name = "/memory/classes/total:bytes"
	return ov
}

// Visible reports whether the overlay is shown.
// Call it on the game goroutine (Ebitengine's Update and Draw).
func (o *Overlay) Visible() bool { return o.visible }

// SetVisible shows or hides the overlay.
// Call it on the game goroutine (Ebitengine's Update and Draw).
func (o *Overlay) SetVisible(v bool) { o.visible = v }

// Update toggles the overlay when one of its keys was just pressed and takes a
// bandwidth sample when one is due.
// Call it on the game goroutine (Ebitengine's Update and Draw).
func (o *Overlay) Update() {
	for _, k := range o.keys {
		if inpututil.IsKeyJustPressed(k) {
			o.visible = !o.visible
			break
		}
	}
	o.sample(time.Now())
}

func (o *Overlay) sample(now time.Time) {
	if o.last.IsZero() {
		st := o.c.Stats()
		o.last, o.prevIn, o.prevOut = now, st.BytesIn, st.BytesOut
		return
	}
	dt := now.Sub(o.last)
	if dt < o.every {
		return
	}
	st := o.c.Stats()
	secs := dt.Seconds()
	o.in[o.head] = float64(st.BytesIn-o.prevIn) / secs
	o.out[o.head] = float64(st.BytesOut-o.prevOut) / secs
	o.head = (o.head + 1) % GraphSamples
	o.n = min(o.n+1, GraphSamples)
	o.last, o.prevIn, o.prevOut = now, st.BytesIn, st.BytesOut
	metrics.Read(o.mem[:])
	o.heap, o.sys = o.mem[0].Value.Uint64(), o.mem[1].Value.Uint64()
}

// Overlay geometry, in screen pixels. ebitenutil's debug font is 6×16.
const (
	panelW    = 336 // 53 characters; the graph (2*GraphSamples) fits with room
	lineH     = 16
	textLines = 10
	graphH    = 64
	panelH    = 8 + textLines*lineH + 8 + graphH + lineH + 4
	margin    = 8
)

var (
	panelBG   = color.RGBA{0x08, 0x0b, 0x14, 0xd8}
	panelEdge = color.RGBA{0x3a, 0x4a, 0x6a, 0xff}
	graphBG   = color.RGBA{0x12, 0x18, 0x28, 0xff}
	inColor   = color.RGBA{0x4c, 0xc9, 0x8c, 0xff}
	outColor  = color.RGBA{0xff, 0xa7, 0x26, 0xff}
)

// Size returns the overlay's panel size in screen pixels, for a game that
// lays out its own HUD around it (see DrawAt).
// It is safe for concurrent use.
func (o *Overlay) Size() (w, h int) { return panelW, panelH }

// Draw draws the overlay in the top-right corner of dst when it is
// visible.
// Call it on the game goroutine (Ebitengine's Update and Draw).
func (o *Overlay) Draw(dst *ebiten.Image) {
	b := dst.Bounds()
	o.DrawAt(dst, b.Max.X-panelW-margin, b.Min.Y+margin)
}

// lines returns the overlay's text.
func (o *Overlay) lines(st netclient.Stats) [textLines]string {
	state, rtt := "connected", fmt.Sprintf("%s (last %s)", ms(st.RTT), ms(st.RTTLast))
	if !st.Connected {
		state, rtt = "reconnecting...", "-- (reconnecting)" // the debug font has Latin-1 only: no dash or ellipsis
	}
	if err := o.c.Err(); err != nil {
		state, rtt = "stopped", "--"
	}
	// lz4 pays on spawn bursts and snapshots; batches of quantised deltas
	// barely shrink, and the server sends them raw on purpose.
	lz1, lz2 := "lz4      no batch compressed yet", "         (deltas go raw: they barely shrink)"
	if n := st.CompressedMessagesIn; n > 0 && st.CompressedIn > 0 {
		lz1 = fmt.Sprintf("lz4      %d of %d batches: %s -> %s (%.2fx)", n, st.MessagesIn, exact(st.UncompressedIn), exact(st.CompressedIn), float64(st.UncompressedIn)/float64(st.CompressedIn))
		lz2 = "         spawns, snapshots; deltas go raw"
	}
	return [textLines]string{
		"ebisync  " + state,
		fmt.Sprintf("client #%d  server tick %d", o.c.ClientID(), st.ServerTick),
		fmt.Sprintf("mirror   %d entities", st.Entities),
		fmt.Sprintf("in       %s  %.0f msg/s", kbps(st.BytesInPerSec), st.MessagesInPerSec),
		fmt.Sprintf("out      %s  corrections %.1f/s max %.1f", kbps(st.BytesOutPerSec), st.CorrectionsPerSec, st.LargestCorrection), // of predicted entities
		"rtt      " + rtt,
		lz1,
		lz2,
		fmt.Sprintf("total    in %s out %s", size(st.BytesIn), size(st.BytesOut)),
		fmt.Sprintf("render   %.0f fps  heap %s  sys %s", ebiten.ActualFPS(), size(o.heap), size(o.sys)),
	}
}

// DrawAt draws the overlay with its top-left corner at (x, y) when it is
// visible.
// Call it on the game goroutine (Ebitengine's Update and Draw).
func (o *Overlay) DrawAt(dst *ebiten.Image, x, y int) {
	if !o.visible {
		return
	}
	x0, y0 := float32(x), float32(y)
	vector.DrawFilledRect(dst, x0, y0, panelW, panelH, panelBG, false)
	vector.StrokeRect(dst, x0, y0, panelW, panelH, 1, panelEdge, false)

	lines := o.lines(o.c.Stats())
	tx, ty := x+8, y+6
	for i, l := range lines {
		ebitenutil.DebugPrintAt(dst, l, tx, ty+i*lineH)
	}

	gx := x0 + 8
	gy := y0 + 8 + textLines*lineH + 8
	gw := float32(2 * GraphSamples)
	vector.DrawFilledRect(dst, gx, gy, gw, graphH, graphBG, false)
	peak := 1024.0 // at least 1 KB/s full scale, so idle noise stays flat
	for i := 0; i < o.n; i++ {
		peak = max(peak, o.in[i], o.out[i])
	}
	// Oldest sample on the left; inbound as bars, outbound as a line.
	var px, py float32
	for i := 0; i < o.n; i++ {
		k := (o.head - o.n + i + GraphSamples) % GraphSamples
		gxi := gx + gw - float32(2*(o.n-i))
		h := float32(o.in[k] / peak * graphH)
		vector.DrawFilledRect(dst, gxi, gy+graphH-h, 2, h, inColor, false)
		gyi := gy + graphH - float32(o.out[k]/peak*graphH)
		if i > 0 {
			vector.StrokeLine(dst, px, py, gxi+1, gyi, 1, outColor, false)
		}
		px, py = gxi+1, gyi
	}
	// Legend: a swatch of each series, then the scale.
	ly := gy + graphH + 4
	vector.DrawFilledRect(dst, gx, ly+4, 8, 8, inColor, false)
	ebitenutil.DebugPrintAt(dst, "in", int(gx)+11, int(ly)-2)
	vector.StrokeLine(dst, gx+30, ly+8, gx+40, ly+8, 2, outColor, false)
	ebitenutil.DebugPrintAt(dst, "out", int(gx)+43, int(ly)-2)
	ebitenutil.DebugPrintAt(dst, fmt.Sprintf("last %ds, top %s", int(o.every.Seconds()*GraphSamples), kbps(peak)), int(gx)+70, int(ly)-2)
}

func kbps(v float64) string {
	if v < 1024 {
		return fmt.Sprintf("%.0f B/s", v)
	}
	if v >= 1<<20 {
		return fmt.Sprintf("%.2f MB/s", v/(1<<20))
	}
	return fmt.Sprintf("%.1f KB/s", v/1024)
}

func size(v uint64) string {
	if v >= 1<<20 {
		return fmt.Sprintf("%.1f MB", float64(v)/(1<<20))
	}
	return fmt.Sprintf("%.1f KB", float64(v)/1024)
}

// exact is size with byte precision below 10 KB.
func exact(v uint64) string {
	if v < 10<<10 {
		return fmt.Sprintf("%d B", v)
	}
	return size(v)
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1fms", d.Seconds()*1000) }
