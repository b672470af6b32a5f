package main

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"
	"os"
	"time"

	"github.com/hajimehoshi/ebiten/v2"
	"github.com/hajimehoshi/ebiten/v2/ebitenutil"
	"github.com/hajimehoshi/ebiten/v2/inpututil"
	"github.com/yohamta/donburi"
	"github.com/yohamta/donburi/ecs"
	"github.com/yohamta/donburi/features/transform"
	"github.com/yohamta/donburi/filter"

	"github.com/ebisync/ebisync/components"
	"github.com/ebisync/ebisync/demo/sim"
	"github.com/ebisync/ebisync/netclient"
	"github.com/ebisync/ebisync/netclient/ebitensync"
)

// Colours of the scene.
var (
	bgColor       = color.RGBA{0x0a, 0x0e, 0x18, 0xff}
	gridMinor     = color.RGBA{0x13, 0x1a, 0x2a, 0xff}
	gridMajor     = color.RGBA{0x1c, 0x27, 0x3f, 0xff}
	edgeColor     = color.RGBA{0x5a, 0x3a, 0x6e, 0xff}
	interestRing  = color.RGBA{0x3f, 0xa9, 0xf5, 0xff}
	interestFill  = color.NRGBA{0x3f, 0xa9, 0xf5, 0x12}
	selfRing      = color.RGBA{0xff, 0xff, 0xff, 0xff}
	flameColor    = color.RGBA{0xff, 0xb3, 0x47, 0xff}
	hudPanel      = color.NRGBA{0x05, 0x08, 0x10, 0xc0}
	minimapBG     = color.NRGBA{0x06, 0x09, 0x12, 0xe0}
	minimapBorder = color.RGBA{0x3a, 0x4a, 0x6a, 0xff}
	chaseLine     = color.NRGBA{0xff, 0x6e, 0x6e, 0x90}
	hitFlash      = color.RGBA{0xff, 0x52, 0x52, 0xff}
)

// flashTime is how long a hit flashes around a ship, in seconds.
const flashTime = 0.6

// gameConfig is what the window needs from the command line.
type gameConfig struct {
	radius     float64
	world      sim.Config
	serverInfo string // shown in the HUD
	inspectURL string // the hosted server's Inspector, shown with the F3 overlay; "" when not hosting
	screenshot string // write a PNG after frames frames, then exit
	frames     int
	autopilot  bool
}

// game is the window: it pumps the client, steers the player's ship from
// the keyboard and draws the mirror world.
type game struct {
	cfg     gameConfig
	client  *netclient.Client
	heading *components.Synced[sim.HeadingData]
	flashes map[donburi.Entity]time.Time // ships hit recently (the demo.hit message), by when
	ecs     *ecs.ECS
	pilot   *sim.Pilot
	overlay *ebitensync.Overlay
	canvas  *canvas
	drawn   *donburi.Query // this world's own query (see package netclient)

	zoom      float64
	camX      float64
	camY      float64
	camSet    bool
	autoTurn  time.Time
	autoSteer sim.SteerData

	frames   int
	shotDone bool
	shotErr  error
	visible  int // entities drawn last frame
	mirrored int
}

func newGame(c *netclient.Client, cfg gameConfig) *game {
	heading, _ := components.Lookup(c.Registry(), sim.Heading)
	g := &game{
		heading: heading,
		flashes: make(map[donburi.Entity]time.Time),
		cfg:     cfg,
		client:  c,
		ecs:     ecs.NewECS(c.World()),
		pilot:   sim.NewPilot(c, cfg.radius, &cfg.world),
		overlay: ebitensync.NewOverlay(c, &ebitensync.OverlayOptions{Visible: cfg.screenshot != ""}),
		canvas:  newCanvas(),
		drawn:   donburi.NewQuery(filter.Contains(sim.Ship, components.Position)),
		zoom:    1,
	}
	// A hit arrives as a message, after the state of its batch: the ship it
	// names is the client's own mirror entity.
	if hit, ok := components.LookupMessage[sim.HitData](c.Registry(), "demo.hit"); ok {
		netclient.OnMessage(c, hit, func(h sim.HitData) {
			if h.Ship != donburi.Null {
				g.flashes[h.Ship] = time.Now()
			}
		})
	}
	// The glue: one system applies what arrived, then the game's own.
	g.ecs.AddSystem(ebitensync.System(c))
	g.ecs.AddSystem(func(*ecs.ECS) { g.pilot.Update() })
	return g
}

// Update runs at Ebitengine's tick rate (60 Hz) on the game goroutine.
func (g *game) Update() error {
	if g.shotDone {
		if g.shotErr != nil {
			return g.shotErr
		}
		return ebiten.Termination
	}
	if inpututil.IsKeyJustPressed(ebiten.KeyEscape) {
		return ebiten.Termination
	}
	g.overlay.Update()
	g.ecs.Update()
	if err := g.client.Err(); err != nil && !errors.Is(err, netclient.ErrClosed) {
		return fmt.Errorf("connection lost for good: %w", err)
	}

	steer := g.keyboard()
	if g.cfg.autopilot && steer == (sim.SteerData{}) {
		steer = g.autopilot()
	}
	g.pilot.Fly(steer) // predicted: the ship answers in this frame

	switch {
	case ebiten.IsKeyPressed(ebiten.KeyQ) || ebiten.IsKeyPressed(ebiten.KeyMinus):
		g.zoom /= 1.02
	case ebiten.IsKeyPressed(ebiten.KeyE) || ebiten.IsKeyPressed(ebiten.KeyEqual):
		g.zoom *= 1.02
	}
	if _, wy := ebiten.Wheel(); wy != 0 {
		g.zoom *= math.Pow(1.1, wy)
	}
	g.zoom = max(0.25, min(4, g.zoom))
	return nil
}

// keyboard reads the arrow keys and WASD.
func (g *game) keyboard() sim.SteerData {
	var s sim.SteerData
	pressed := func(keys ...ebiten.Key) bool {
		for _, k := range keys {
			if ebiten.IsKeyPressed(k) {
				return true
			}
		}
		return false
	}
	if pressed(ebiten.KeyArrowUp, ebiten.KeyW) {
		s.Thrust += 100
	}
	if pressed(ebiten.KeyArrowDown, ebiten.KeyS) {
		s.Thrust -= 60
	}
	if pressed(ebiten.KeyArrowLeft, ebiten.KeyA) {
		s.Turn -= 100
	}
	if pressed(ebiten.KeyArrowRight, ebiten.KeyD) {
		s.Turn += 100
	}
	return s
}

// autopilot cruises in wide loops around where it is, for screenshots
// and idle demos.
func (g *game) autopilot() sim.SteerData {
	now := time.Now()
	if now.After(g.autoTurn) {
		turns := []int8{-45, -30, 30, 45}
		g.autoSteer = sim.SteerData{Thrust: 40, Turn: turns[now.UnixNano()/1e6%int64(len(turns))]}
		g.autoTurn = now.Add(3 * time.Second)
	}
	return g.autoSteer
}

// Layout keeps one screen pixel per window pixel at the current size.
func (g *game) Layout(w, h int) (int, int) { return w, h }

// view maps world coordinates to the screen for one frame.
type view struct {
	cx, cy float64 // camera centre, world
	sx, sy float64 // screen centre
	scale  float64 // pixels per world unit
}

func (v view) pt(x, y float64) (float32, float32) {
	return float32(v.sx + (x-v.cx)*v.scale), float32(v.sy + (y-v.cy)*v.scale)
}

func (g *game) Draw(screen *ebiten.Image) {
	now := time.Now()
	b := screen.Bounds()
	w, h := float64(b.Dx()), float64(b.Dy())
	screen.Fill(bgColor)

	// Camera: the ship, interpolated; before it is found, where the
	// client looks for it.
	ship, haveShip := g.pilot.Ship()
	if haveShip {
		if x, y, ok := ebitensync.Position(g.client, ship, now); ok {
			g.camX, g.camY, g.camSet = x, y, true
		}
	}
	if !g.camSet {
		g.camX, g.camY = g.cfg.world.SpawnPoint(g.client.ClientID())
	}
	// Fit the interest circle with a margin at zoom 1.
	base := min(w, h) / (2.3 * g.cfg.radius)
	v := view{cx: g.camX, cy: g.camY, sx: w / 2, sy: h / 2, scale: base * g.zoom}

	c := g.canvas
	c.begin(screen)
	g.drawGrid(c, v, w, h)
	ix, iy := v.pt(g.camX, g.camY)
	ir := float32(g.cfg.radius * v.scale)
	c.circle(ix, iy, ir, interestFill)
	c.flush()
	c.ring(ix, iy, ir, 2, interestRing)

	g.visible, g.mirrored = 0, 0
	var own, labels []label // the player's own label is placed first
	world := g.client.World()
	for entry := range g.drawn.Iter(world) {
		g.mirrored++
		e := entry.Entity()
		x, y, ok := ebitensync.Position(g.client, e, now)
		if !ok {
			continue
		}
		px, py := v.pt(x, y)
		info := sim.Ship.Get(entry)
		// Ships stay legible when zoomed out.
		r := float32(float64(info.Radius) * v.scale)
		switch info.Kind {
		case sim.KindDrone:
			r = max(r, 6)
		case sim.KindPlayer:
			r = max(r, 10)
		case sim.KindOrb:
			r = max(r, 2.5)
			// A child of a ship in the transform hierarchy: drawn at its
			// local offset from where the ship is drawn.
			if parent, ok := transform.GetParent(entry); ok && parent.Valid() {
				if sx, sy, ok := ebitensync.Position(g.client, parent.Entity(), now); ok {
					off := transform.GetTransform(entry).LocalPosition
					x, y = sx+off.X, sy+off.Y
					px, py = v.pt(x, y)
				}
			}
		default:
			r = max(r, 2)
		}
		if px < -r-50 || py < -r-50 || float64(px) > w+float64(r)+50 || float64(py) > h+float64(r)+50 {
			continue
		}
		g.visible++
		col := rgb(info.Color)
		angle := 0.0
		if hd, ok := netclient.Interpolated(g.client, e, g.heading, now); ok {
			angle = float64(hd.Angle)
		}
		switch info.Kind {
		case sim.KindAsteroid:
			c.circle(px, py, r, shade(col, 0.55))
			c.circle(px, py, max(r-max(1.5, r*0.18), 0.5), col)
		case sim.KindDrone:
			drawShip(c, px, py, r, angle, col, false)
			// The chased ship is an entity reference: this client's own
			// mirror of it, or Null while it is out of sight.
			if entry.HasComponent(sim.Target) {
				if t := sim.Target.Get(entry).Ship; t != donburi.Null {
					if tx, ty, ok := ebitensync.Position(g.client, t, now); ok {
						qx, qy := v.pt(tx, ty)
						c.line(px, py, qx, qy, 1, chaseLine)
					}
				}
			}
		case sim.KindOrb:
			c.circle(px, py, r, col)
		case sim.KindPlayer:
			self := haveShip && e == ship
			if self && g.pilot.Thrusting() || entry.HasComponent(sim.Steer) && sim.Steer.Get(entry).Thrust > 0 {
				drawFlame(c, px, py, r, angle, now)
			}
			drawShip(c, px, py, r, angle, col, true)
			if at, ok := g.flashes[e]; ok {
				if age := now.Sub(at).Seconds(); age < flashTime {
					k := float32(age / flashTime)
					c.ring(px, py, r*(1.4+1.6*k), 3*(1-k)+0.5, hitFlash)
				} else {
					delete(g.flashes, e)
				}
			}
			if self {
				pulse := float32(0.5 + 0.5*math.Sin(float64(now.UnixMilli()%100000)/180))
				c.ring(px, py, r*1.9+2*pulse, 1.5, mix(col, selfRing, 0.6))
			}
			if entry.HasComponent(components.Name) {
				name := components.Name.Get(entry).Value
				lb := label{name, int(px) - charW/2*len(name), int(py - r*1.9 - 22)}
				if self {
					lb.text += " (you)"
					lb.x -= charW / 2 * len(" (you)")
					own = append(own, lb)
				} else {
					labels = append(labels, lb)
				}
			}
		}
	}
	c.flushSmooth()

	// Panels are laid out for the window; labels go over the world, last,
	// clear of each other and of the panels.
	ow, oh := g.overlay.Size()
	lay := layoutScreen(b.Dx(), b.Dy(), g.hudText(haveShip, ship), g.overlay.Visible(), ow, oh)
	radiusLabel := fmt.Sprintf("interest radius %.0f", g.cfg.radius)
	labels = append(append(own, label{radiusLabel, int(ix) - charW/2*len(radiusLabel), int(iy+ir) + 4}), labels...)
	for _, l := range placeLabels(labels, lay.hud, lay.overlay, lay.minimap) {
		ebitenutil.DebugPrintAt(screen, l.text, l.x, l.y)
	}
	if !lay.minimap.Empty() {
		g.drawMinimap(screen, c, lay.minimap, haveShip)
	}
	g.drawHUD(screen, lay)
	g.overlay.DrawAt(screen, lay.overlay.Min.X, lay.overlay.Min.Y)

	g.frames++
	if g.cfg.screenshot != "" && !g.shotDone && g.frames >= g.cfg.frames {
		// Wait for the mirror to fill (bounded), so the picture shows it.
		if g.mirrored > 0 || g.frames >= g.cfg.frames+600 {
			g.shotErr = writePNG(screen, g.cfg.screenshot)
			g.shotDone = true
			fmt.Println(lay)
			for _, l := range lay.hudLines {
				fmt.Printf("hud: %s\n", l)
			}
			fmt.Printf("mirror entities: %d\n", g.mirrored)
			fmt.Printf("drawn entities: %d\n", g.visible)
			fmt.Printf("frames: %d (%.1f fps, %.1f tps)\n", g.frames, ebiten.ActualFPS(), ebiten.ActualTPS())
		}
	}
}

// drawShip draws an arrowhead pointing at angle; players' have a notch.
func drawShip(c *canvas, x, y, r float32, angle float64, col color.RGBA, player bool) {
	cos, sin := float32(math.Cos(angle)), float32(math.Sin(angle))
	at := func(fwd, side float32) (float32, float32) {
		return x + fwd*cos - side*sin, y + fwd*sin + side*cos
	}
	nx, ny := at(1.5*r, 0)
	lx, ly := at(-r, -r)
	rx, ry := at(-r, r)
	if player {
		bx, by := at(-0.45*r, 0)
		c.polygon(col, nx, ny, lx, ly, bx, by, rx, ry)
		// A light cockpit stripe shows the heading at any size.
		cx, cy := at(0.5*r, 0)
		c.circle(cx, cy, max(1.2, r*0.22), mix(col, selfRing, 0.7))
		return
	}
	c.polygon(shade(col, 0.5), nx, ny, lx, ly, rx, ry)
	ix, iy := at(1.0*r, 0)
	jx, jy := at(-0.6*r, -0.6*r)
	kx, ky := at(-0.6*r, 0.6*r)
	c.polygon(col, ix, iy, jx, jy, kx, ky)
}

// drawFlame draws a flickering exhaust behind a thrusting ship.
func drawFlame(c *canvas, x, y, r float32, angle float64, now time.Time) {
	cos, sin := float32(math.Cos(angle)), float32(math.Sin(angle))
	flick := float32(0.8 + 0.4*math.Abs(math.Sin(float64(now.UnixMilli())/40)))
	at := func(fwd, side float32) (float32, float32) {
		return x + fwd*cos - side*sin, y + fwd*sin + side*cos
	}
	tx, ty := at(-r*(1.2+1.1*flick), 0)
	lx, ly := at(-0.6*r, -0.45*r)
	rx, ry := at(-0.6*r, 0.45*r)
	c.polygon(flameColor, tx, ty, lx, ly, rx, ry)
}

// drawGrid draws grid lines every 250 units (every 1000 brighter) and the
// world's edges, where it wraps.
func (g *game) drawGrid(c *canvas, v view, w, h float64) {
	x0, y0 := v.cx-v.sx/v.scale, v.cy-v.sy/v.scale
	x1, y1 := x0+w/v.scale, y0+h/v.scale
	const step = 250
	// A few fixed stars per cell, hashed from the cell, for texture.
	for gx := math.Floor(x0/step) * step; gx <= x1; gx += step {
		for gy := math.Floor(y0/step) * step; gy <= y1; gy += step {
			h := uint64(int64(gx)*73856093 ^ int64(gy)*19349663)
			for k := 0; k < 3; k++ {
				h = h*6364136223846793005 + 1442695040888963407
				sx, sy := v.pt(gx+float64(h>>40%step), gy+float64(h>>20%step))
				b := uint8(0x30 + h>>8%0x40)
				size := float32(1 + h>>4%2)
				c.polygon(color.RGBA{b, b, b + 0x10, 0xff}, sx, sy, sx+size, sy, sx+size, sy+size, sx, sy+size)
			}
		}
	}
	for gx := math.Floor(x0/step) * step; gx <= x1; gx += step {
		col, width := gridMinor, float32(1)
		if math.Mod(gx, 1000) == 0 {
			col, width = gridMajor, 1.5
		}
		px, _ := v.pt(gx, 0)
		c.line(px, 0, px, float32(h), width, col)
	}
	for gy := math.Floor(y0/step) * step; gy <= y1; gy += step {
		col, width := gridMinor, float32(1)
		if math.Mod(gy, 1000) == 0 {
			col, width = gridMajor, 1.5
		}
		_, py := v.pt(0, gy)
		c.line(0, py, float32(w), py, width, col)
	}
	// The edges of the world: the sim wraps there, interest does not.
	ww, wh := g.cfg.world.Width, g.cfg.world.Height
	for _, ex := range []float64{0, ww} {
		if ex >= x0 && ex <= x1 {
			px, _ := v.pt(ex, 0)
			c.line(px, 0, px, float32(h), 3, edgeColor)
		}
	}
	for _, ey := range []float64{0, wh} {
		if ey >= y0 && ey <= y1 {
			_, py := v.pt(0, ey)
			c.line(0, py, float32(w), py, 3, edgeColor)
		}
	}
}

// drawMinimap shows the whole world, the player and the interest circle
// in r: the mirror holds only what is inside the circle.
func (g *game) drawMinimap(screen *ebiten.Image, c *canvas, r image.Rectangle, haveShip bool) {
	size := float32(r.Dx())
	mx, my := float32(r.Min.X), float32(r.Min.Y)
	s := size / float32(math.Max(g.cfg.world.Width, g.cfg.world.Height))
	c.begin(screen)
	c.polygon(minimapBG, mx, my, mx+size, my, mx+size, my+size, mx, my+size)
	c.path.MoveTo(mx, my)
	c.path.LineTo(mx+size, my)
	c.path.LineTo(mx+size, my+size)
	c.path.LineTo(mx, my+size)
	c.path.Close()
	c.strokePath(1, minimapBorder)
	px, py := mx+float32(g.camX)*s, my+float32(g.camY)*s
	c.circle(px, py, max(2, float32(g.cfg.radius)*s), color.RGBA{0x0c, 0x22, 0x33, 0xff})
	c.ring(px, py, max(2, float32(g.cfg.radius)*s), 1, interestRing)
	if haveShip {
		c.circle(px, py, 2.5, selfRing)
	}
	c.flush()
	if r.Dx() >= 100 {
		ebitenutil.DebugPrintAt(screen, fmt.Sprintf("world %.0fx%.0f", g.cfg.world.Width, g.cfg.world.Height), int(mx)+4, int(my)+2)
	}
}

// hudText is the HUD's lines before they are wrapped to the window.
func (g *game) hudText(haveShip bool, ship donburi.Entity) []string {
	st := g.client.Stats()
	you := "looking for your ship..."
	if haveShip {
		entry := g.client.World().Entry(ship)
		p := components.Position.Get(entry)
		speed := 0.0
		if entry.HasComponent(components.Velocity) {
			vel := components.Velocity.Get(entry)
			speed = math.Hypot(vel.X, vel.Y)
		}
		you = fmt.Sprintf("ship at (%4.0f, %4.0f)  speed %3.0f", p.X, p.Y, speed)
	}
	state, rtt := "connected", fmt.Sprintf("rtt %.1fms", st.RTT.Seconds()*1000)
	if !st.Connected {
		state, rtt = "reconnecting...", "rtt --"
	}
	lines := []string{
		"ebisync demo   WASD/arrows: steer   Q/E or wheel: zoom   F3: network   Esc: quit",
		fmt.Sprintf("%s   mirror %d entities (%d on screen) within radius %.0f", you, g.mirrored, g.visible, g.cfg.radius),
		fmt.Sprintf("%s to %s   in %.1f KB/s   %s   server tick %d", state, g.cfg.serverInfo, st.BytesInPerSec/1024, rtt, st.ServerTick),
	}
	if g.overlay.Visible() && g.cfg.inspectURL != "" {
		lines = append(lines, "inspector: "+g.cfg.inspectURL)
	}
	return lines
}

// drawHUD draws the HUD's panel and lines where the layout put them.
func (g *game) drawHUD(screen *ebiten.Image, lay screenLayout) {
	r := lay.hud
	c := g.canvas
	c.begin(screen)
	x0, y0, x1, y1 := float32(r.Min.X), float32(r.Min.Y), float32(r.Max.X), float32(r.Max.Y)
	c.polygon(hudPanel, x0, y0, x1, y0, x1, y1, x0, y1)
	c.flush()
	for i, l := range lay.hudLines {
		ebitenutil.DebugPrintAt(screen, l, r.Min.X+padding, r.Min.Y+padding/2+i*lineH)
	}
}

// writePNG saves the screen. Called from Draw, where reading the screen's
// pixels is allowed.
func writePNG(screen *ebiten.Image, path string) error {
	b := screen.Bounds()
	img := image.NewRGBA(image.Rect(0, 0, b.Dx(), b.Dy()))
	screen.ReadPixels(img.Pix)
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		return fmt.Errorf("failed to encode screenshot: %w", err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("failed to write screenshot: %w", err)
	}
	return nil
}
