package main

import (
	"image"
	"image/color"
	"math"

	"github.com/hajimehoshi/ebiten/v2"
	"github.com/hajimehoshi/ebiten/v2/vector"
)

// canvas batches filled shapes and strokes of many colours into few
// DrawTriangles calls: a frame draws a few hundred shapes, and one call
// each would cost more than drawing them.
type canvas struct {
	dst    *ebiten.Image
	white  *ebiten.Image
	vs     []ebiten.Vertex
	is     []uint16
	path   vector.Path
	stroke vector.StrokeOptions
}

func newCanvas() *canvas {
	img := ebiten.NewImage(3, 3)
	img.Fill(color.White)
	return &canvas{white: img.SubImage(image.Rect(1, 1, 2, 2)).(*ebiten.Image)}
}

// begin starts a batch on dst.
func (c *canvas) begin(dst *ebiten.Image) {
	c.dst = dst
	c.vs, c.is = c.vs[:0], c.is[:0]
}

// flush draws what was batched, without anti-aliasing.
func (c *canvas) flush() { c.draw(false) }

// flushSmooth draws what was batched with anti-aliasing. It costs a
// full-size offscreen pass per call, which software renderers (Xvfb in
// CI) feel: use it once a frame, for what has curved edges.
func (c *canvas) flushSmooth() { c.draw(true) }

func (c *canvas) draw(antialias bool) {
	if len(c.is) > 0 {
		op := &ebiten.DrawTrianglesOptions{AntiAlias: antialias, ColorScaleMode: ebiten.ColorScaleModePremultipliedAlpha}
		c.dst.DrawTriangles(c.vs, c.is, c.white, op)
	}
	c.vs, c.is = c.vs[:0], c.is[:0]
}

// paint colours the vertices from n on, and flushes before indices could
// overflow.
func (c *canvas) paint(n int, clr color.Color) {
	r, g, b, a := clr.RGBA() // premultiplied
	for i := n; i < len(c.vs); i++ {
		v := &c.vs[i]
		v.SrcX, v.SrcY = 1, 1
		v.ColorR, v.ColorG, v.ColorB, v.ColorA = float32(r)/0xffff, float32(g)/0xffff, float32(b)/0xffff, float32(a)/0xffff
	}
	if len(c.vs) > 60000 {
		c.draw(true)
	}
}

// fill fills the current path: convex shapes, or shapes that are a fan
// from their first point.
func (c *canvas) fill(clr color.Color) {
	n := len(c.vs)
	c.vs, c.is = c.path.AppendVerticesAndIndicesForFilling(c.vs, c.is)
	c.paint(n, clr)
	c.path = vector.Path{}
}

// strokePath strokes the current path. clr should be opaque: joins overlap.
func (c *canvas) strokePath(width float32, clr color.Color) {
	n := len(c.vs)
	c.stroke.Width = width
	c.stroke.LineJoin = vector.LineJoinRound
	c.vs, c.is = c.path.AppendVerticesAndIndicesForStroke(c.vs, c.is, &c.stroke)
	c.paint(n, clr)
	c.path = vector.Path{}
}

func (c *canvas) circle(x, y, r float32, clr color.Color) {
	c.path.Arc(x, y, r, 0, 2*math.Pi, vector.Clockwise)
	c.path.Close()
	c.fill(clr)
}

func (c *canvas) ring(x, y, r, width float32, clr color.Color) {
	c.path.Arc(x, y, r, 0, 2*math.Pi, vector.Clockwise)
	c.path.Close()
	c.strokePath(width, clr)
}

func (c *canvas) line(x0, y0, x1, y1, width float32, clr color.Color) {
	c.path.MoveTo(x0, y0)
	c.path.LineTo(x1, y1)
	c.strokePath(width, clr)
}

// polygon fills the polygon through pts (x, y pairs), a fan from the
// first point.
func (c *canvas) polygon(clr color.Color, pts ...float32) {
	c.path.MoveTo(pts[0], pts[1])
	for i := 2; i+1 < len(pts); i += 2 {
		c.path.LineTo(pts[i], pts[i+1])
	}
	c.path.Close()
	c.fill(clr)
}

// rgb turns 0xRRGGBB into an opaque colour.
func rgb(v uint32) color.RGBA {
	return color.RGBA{uint8(v >> 16), uint8(v >> 8), uint8(v), 0xff}
}

// shade scales a colour's brightness by f (0: black).
func shade(c color.RGBA, f float64) color.RGBA {
	s := func(v uint8) uint8 { return uint8(min(255, float64(v)*f)) }
	return color.RGBA{s(c.R), s(c.G), s(c.B), c.A}
}

// mix blends a towards b by t, both opaque.
func mix(a, b color.RGBA, t float64) color.RGBA {
	m := func(x, y uint8) uint8 { return uint8(float64(x) + (float64(y)-float64(x))*t) }
	return color.RGBA{m(a.R, b.R), m(a.G, b.G), m(a.B, b.B), 0xff}
}
