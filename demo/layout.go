package main

import (
	"fmt"
	"image"
	"strings"
)

// Screen layout, in pixels. ebitenutil's debug font is 6×16.
const (
	charW   = 6
	lineH   = 16
	edge    = 8  // from the window's edges and between panels
	padding = 8  // inside a panel, around its text
	minHUD  = 60 // characters the HUD keeps beside the overlay
)

// screenLayout is where the panels go in a window of one size: the HUD
// (top left, its lines wrapped to fit), the network overlay (top right,
// or under the HUD when the window is too narrow for both side by side)
// and the minimap (bottom right, smaller or left out when it would cover
// another panel). Every rectangle is inside the window, and none overlaps
// another; -screenshot prints them (String) so that a test can check.
type screenLayout struct {
	window   image.Rectangle
	hud      image.Rectangle
	hudLines []string
	overlay  image.Rectangle // empty when the overlay is hidden
	minimap  image.Rectangle // empty when it does not fit
}

// layoutScreen lays out a w×h window whose HUD shows text and whose
// overlay, when visible, is ow×oh.
func layoutScreen(w, h int, text []string, overlay bool, ow, oh int) screenLayout {
	l := screenLayout{window: image.Rect(0, 0, w, h)}
	hudMax := w - 2*edge // the HUD panel's widest
	beside := overlay && w-3*edge-ow >= minHUD*charW+2*padding
	if beside {
		hudMax = w - 3*edge - ow
	}
	l.hudLines = wrap(text, max(1, (hudMax-2*padding)/charW))
	widest := 0
	for _, s := range l.hudLines {
		widest = max(widest, len(s))
	}
	l.hud = image.Rect(edge, edge, edge+widest*charW+2*padding, edge+len(l.hudLines)*lineH+padding)
	if overlay {
		x, y := w-edge-ow, edge
		if !beside {
			y = l.hud.Max.Y + edge
		}
		l.overlay = image.Rect(max(edge, x), y, max(edge, x)+ow, y+oh).Intersect(l.window.Inset(edge))
	}
	for _, size := range []int{150, 100, 70} {
		m := image.Rect(w-edge-size, h-edge-size, w-edge, h-edge)
		if m.In(l.window) && !m.Overlaps(l.hud) && !m.Overlaps(l.overlay) {
			l.minimap = m
			break
		}
	}
	return l
}

// wrap breaks lines longer than n characters at spaces (or, in a word
// longer than n, anywhere).
func wrap(lines []string, n int) []string {
	var out []string
	for _, s := range lines {
		for len(s) > n {
			cut := strings.LastIndex(s[:n+1], " ")
			if cut <= 0 {
				cut = n
			}
			out = append(out, strings.TrimRight(s[:cut], " "))
			s = strings.TrimLeft(s[cut:], " ")
		}
		out = append(out, s)
	}
	return out
}

// String lists the rectangles as the screenshot test reads them:
// "layout window 0,0,640,400 hud 8,8,…" (x0,y0,x1,y1; an empty one is
// 0,0,0,0).
func (l screenLayout) String() string {
	r := func(r image.Rectangle) string {
		return fmt.Sprintf("%d,%d,%d,%d", r.Min.X, r.Min.Y, r.Max.X, r.Max.Y)
	}
	return fmt.Sprintf("layout window %s hud %s overlay %s minimap %s", r(l.window), r(l.hud), r(l.overlay), r(l.minimap))
}

// placeLabels moves labels up, a line at a time, until none overlaps
// another or a panel; one that finds no free place within a few lines is
// left out. Labels are placed in order, so the first ones (the player's
// own) keep their place.
func placeLabels(labels []label, panels ...image.Rectangle) []label {
	placed := labels[:0:0]
	for _, lb := range labels {
		for try := 0; try < 4; try++ {
			r := lb.rect()
			free := true
			for _, p := range placed {
				free = free && !r.Overlaps(p.rect())
			}
			for _, p := range panels {
				free = free && !r.Overlaps(p)
			}
			if free {
				placed = append(placed, lb)
				break
			}
			lb.y -= lineH
		}
	}
	return placed
}

// label is a line of text drawn in the world, over an entity.
type label struct {
	text string
	x, y int
}

func (l label) rect() image.Rectangle {
	return image.Rect(l.x, l.y, l.x+len(l.text)*charW, l.y+lineH)
}
