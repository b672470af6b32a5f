package demotest

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/ebisync/ebisync/internal/display"
)

// TestDemoScreenshot runs `demo -screenshot FILE -frames N` at three
// window sizes, small, the default and full HD, with the network overlay
// open, and checks that each picture shows a world (many colours, many
// non-background pixels), that the window's mirror held entities, and that
// the layout the demo printed keeps its panels (HUD, overlay, minimap)
// inside the window and apart, with text in each. The 1280×720 picture is
// kept as docs/demo.png when EBISYNC_UPDATE_SCREENSHOT=1.
//
// It needs a display: DISPLAY, else xvfb-run. Without either it skips,
// unless EBISYNC_REQUIRE_DISPLAY=1, which makes that a failure (CI sets
// it).
func TestDemoScreenshot(t *testing.T) {
	wrap := display.Wrapper(t)
	if testing.Short() {
		t.Skip("builds and runs the demo; skipped with -short")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("the go command is not in PATH")
	}
	display.TrackSources(t, "github.com/ebisync/ebisync/demo")

	dir := t.TempDir()
	bin := filepath.Join(dir, "demo")
	build := []string{"build", "-o", bin}
	if raceEnabled {
		build = append(build, "-race") // the demo runs three worlds on three goroutines
	}
	build = append(build, "github.com/ebisync/ebisync/demo")
	if out, err := exec.Command(goTool, build...).CombinedOutput(); err != nil {
		t.Fatalf("go %v: %v\n%s", build, err, out)
	}
	for _, size := range []image.Point{{640, 400}, {1280, 720}, {1920, 1080}} {
		t.Run(fmt.Sprintf("%dx%d", size.X, size.Y), func(t *testing.T) {
			shot := filepath.Join(dir, fmt.Sprintf("shot-%dx%d.png", size.X, size.Y))
			stdout := runDemo(t, wrap, bin, "-screenshot", shot, "-frames", "90", "-entities", "2000", "-bots", "3",
				"-width", strconv.Itoa(size.X), "-height", strconv.Itoa(size.Y))
			m := regexp.MustCompile(`(?m)^mirror entities: (\d+)$`).FindStringSubmatch(stdout)
			if m == nil {
				t.Fatalf("no `mirror entities: N` line in the output:\n%s", stdout)
			}
			if n, _ := strconv.Atoi(m[1]); n <= 0 {
				t.Errorf("mirror entities: %d, want > 0", n)
			}
			img := readPNG(t, shot)
			if got := img.Bounds().Size(); got != size {
				t.Fatalf("screenshot is %v, want the window's %v", got, size)
			}
			checkPicture(t, img)
			checkLayout(t, stdout, img)
			if size.X >= 1280 {
				// The HUD, with the overlay open, gives the address of the
				// hosted server's Inspector.
				re := regexp.MustCompile(`(?m)^hud: inspector: http://127\.0\.0\.1:\d+/debug/ebisync/\?access_token=[0-9a-f]+$`)
				if !re.MatchString(stdout) {
					t.Errorf("the HUD does not show the Inspector's address with the overlay open:\n%s", stdout)
				}
			}
			if size.X == 1280 && os.Getenv("EBISYNC_UPDATE_SCREENSHOT") == "1" {
				b, err := os.ReadFile(shot)
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join("..", "..", "docs", "demo.png"), b, 0o644); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// runDemo runs the demo binary with args under wrap and returns its
// standard output.
func runDemo(t *testing.T, wrap []string, bin string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	argv := append(append(append([]string(nil), wrap...), bin), args...)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%v: %v\nstdout:\n%s\nstderr:\n%s", argv, err, stdout.String(), stderr.String())
	}
	t.Logf("demo output:\n%s", stdout.String())
	if stderr.Len() > 0 {
		t.Logf("demo stderr:\n%s", stderr.String())
	}
	return stdout.String()
}

func readPNG(t *testing.T, path string) image.Image {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("no screenshot: %v", err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("screenshot is not a PNG: %v", err)
	}
	return img
}

// checkLayout reads the "layout window … hud … overlay … minimap …" line
// the demo printed and checks it against the picture: every panel inside
// the window, no two overlapping, the HUD and the overlay shown (the
// screenshot opens the overlay), and text (near-white pixels) in each.
func checkLayout(t *testing.T, stdout string, img image.Image) {
	t.Helper()
	m := regexp.MustCompile(`(?m)^layout window (\S+) hud (\S+) overlay (\S+) minimap (\S+)$`).FindStringSubmatch(stdout)
	if m == nil {
		t.Fatalf("no layout line in the output:\n%s", stdout)
	}
	rect := func(s string) image.Rectangle {
		var r image.Rectangle
		if _, err := fmt.Sscanf(s, "%d,%d,%d,%d", &r.Min.X, &r.Min.Y, &r.Max.X, &r.Max.Y); err != nil {
			t.Fatalf("layout rectangle %q: %v", s, err)
		}
		return r
	}
	window := rect(m[1])
	if window != img.Bounds() {
		t.Fatalf("layout window %v, picture %v", window, img.Bounds())
	}
	panels := map[string]image.Rectangle{"hud": rect(m[2]), "overlay": rect(m[3]), "minimap": rect(m[4])}
	for _, name := range []string{"hud", "overlay"} {
		if panels[name].Empty() {
			t.Errorf("the %s is not shown", name)
		}
	}
	for name, r := range panels {
		if r.Empty() {
			continue
		}
		if !r.In(window) {
			t.Errorf("the %s %v is not inside the window %v", name, r, window)
		}
		for other, o := range panels {
			if name < other && r.Overlaps(o) {
				t.Errorf("the %s %v overlaps the %s %v", name, r, other, o)
			}
		}
		text := 0
		for y := r.Min.Y; y < r.Max.Y; y++ {
			for x := r.Min.X; x < r.Max.X; x++ {
				if c, _, _, _ := img.At(x, y).RGBA(); c>>8 > 0xe0 {
					if _, g, b, _ := img.At(x, y).RGBA(); g>>8 > 0xe0 && b>>8 > 0xe0 {
						text++
					}
				}
			}
		}
		if text < 50 {
			t.Errorf("the %s %v holds no text (%d near-white pixels)", name, r, text)
		}
	}
	t.Logf("layout: %v", panels)
}

// checkPicture checks that img is a rendered scene, not a blank or a
// single-colour frame.
func checkPicture(t *testing.T, img image.Image) {
	t.Helper()
	b := img.Bounds()
	if b.Dx() < 320 || b.Dy() < 200 {
		t.Fatalf("screenshot is %dx%d, want a window-sized picture", b.Dx(), b.Dy())
	}
	counts := make(map[uint32]int)
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			counts[(r>>8)<<16|(g>>8)<<8|bl>>8]++
		}
	}
	// The most frequent colour is the background.
	var bg uint32
	for c, n := range counts {
		if n > counts[bg] {
			bg = c
		}
	}
	total := b.Dx() * b.Dy()
	other := total - counts[bg]
	t.Logf("%dx%d, %d distinct colours, background #%06x, %d other pixels (%.1f%%)",
		b.Dx(), b.Dy(), len(counts), bg, other, 100*float64(other)/float64(total))
	if len(counts) < 16 {
		t.Errorf("only %d distinct colours: want a drawn scene", len(counts))
	}
	if other < total/50 {
		t.Errorf("only %d of %d pixels differ from the background", other, total)
	}
	// Saturated pixels come from the ships and drones (in several hues)
	// and the interest ring (one hue); the grid, asteroids and text are
	// grey. Count the hues that cover a fair number of pixels.
	var hues [12]int
	for c, n := range counts {
		r, g, bl := float64(c>>16), float64(c>>8&0xff), float64(c&0xff)
		hi, lo := max(r, g, bl), min(r, g, bl)
		if hi-lo < 80 || hi < 120 {
			continue
		}
		var h float64
		switch hi {
		case r:
			h = 60 * (g - bl) / (hi - lo)
		case g:
			h = 60*(bl-r)/(hi-lo) + 120
		default:
			h = 60*(r-g)/(hi-lo) + 240
		}
		if h < 0 {
			h += 360
		}
		hues[int(h/30)%12] += n
	}
	seen := 0
	for _, n := range hues {
		if n >= 20 {
			seen++
		}
	}
	t.Logf("vivid pixels by 30° hue: %v", hues)
	if seen < 3 {
		t.Errorf("vivid pixels in only %d hues: the entities were not drawn", seen)
	}
}
