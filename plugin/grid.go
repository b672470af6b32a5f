package plugin

import (
	"math"
	"slices"
)

// cellKey packs a grid cell's integer coordinates.
type cellKey uint64

func keyOf(cx, cy int32) cellKey { return cellKey(uint64(uint32(cx))<<32 | uint64(uint32(cy))) }

// grid is a uniform spatial hash of the replicated entities that have a
// position. The world is unbounded: only occupied cells exist.
type grid struct {
	size  float64
	inv   float64
	cells map[cellKey][]*entityRec
}

func (g *grid) init(size float64) {
	g.size, g.inv = size, 1/size
	g.cells = make(map[cellKey][]*entityRec)
}

func (g *grid) coord(v float64) int32 { return cellCoord(v * g.inv) }

// cellCoord is the integer cell of a position already divided by the cell
// size, clamped so that neighbours never overflow; NaN maps to 0.
func cellCoord(c float64) int32 {
	c = math.Floor(c)
	switch {
	case c != c:
		return 0
	case c > math.MaxInt32/2:
		return math.MaxInt32 / 2
	case c < math.MinInt32/2:
		return math.MinInt32 / 2
	}
	return int32(c)
}

func (g *grid) keyAt(x, y float64) cellKey { return keyOf(g.coord(x), g.coord(y)) }

func (g *grid) insert(r *entityRec) {
	k := g.keyAt(r.x, r.y)
	cell := g.cells[k]
	r.cell, r.cellAt = k, int32(len(cell))
	g.cells[k] = append(cell, r)
}

func (g *grid) remove(r *entityRec) {
	if r.cellAt < 0 {
		return
	}
	cell := g.cells[r.cell]
	last := len(cell) - 1
	moved := cell[last]
	cell[r.cellAt] = moved
	moved.cellAt = r.cellAt
	cell[last] = nil
	// An emptied cell keeps its slice: entities come back, and a cell
	// created again would allocate on the tick.
	g.cells[r.cell] = cell[:last]
	r.cellAt = -1
}

func (g *grid) update(r *entityRec) {
	if k := g.keyAt(r.x, r.y); k != r.cell || r.cellAt < 0 {
		g.remove(r)
		g.insert(r)
	}
}

// each calls f for every entity in the cells that overlap the square
// around (x, y) of half-side radius.
func (g *grid) each(x, y, radius float64, f func(*entityRec)) {
	x0, x1 := g.coord(x-radius), g.coord(x+radius)
	y0, y1 := g.coord(y-radius), g.coord(y+radius)
	if span := (int64(x1) - int64(x0) + 1) * (int64(y1) - int64(y0) + 1); span > int64(len(g.cells)) {
		// A radius covering more cells than are occupied: walk the
		// occupied ones instead of the empty square.
		for k, cell := range g.cells {
			cx, cy := int32(uint32(k>>32)), int32(uint32(k))
			if cx >= x0 && cx <= x1 && cy >= y0 && cy <= y1 {
				for _, r := range cell {
					f(r)
				}
			}
		}
		return
	}
	for cx := x0; cx <= x1; cx++ {
		for cy := y0; cy <= y1; cy++ {
			for _, r := range g.cells[keyOf(cx, cy)] {
				f(r)
			}
		}
	}
}

// idSet is a set of net ids with O(1) add and remove.
type idSet struct {
	ids []uint32
	pos map[uint32]int
}

func (s *idSet) add(id uint32) {
	if s.pos == nil {
		s.pos = make(map[uint32]int)
	}
	if _, ok := s.pos[id]; ok {
		return
	}
	s.pos[id] = len(s.ids)
	s.ids = append(s.ids, id)
}

func (s *idSet) remove(id uint32) {
	i, ok := s.pos[id]
	if !ok {
		return
	}
	last := s.ids[len(s.ids)-1]
	s.ids[i] = last
	s.pos[last] = i
	s.ids = s.ids[:len(s.ids)-1]
	delete(s.pos, id)
}

// clientGrid buckets clients with a radius interest by their centre, with
// cells as large as the largest enter radius, so the clients that may start
// seeing a point are in the 3×3 cells around it. It is rebuilt every tick.
// When the clients' centres span a modest number of cells (the usual case)
// the cells are one dense array in cell order, found by index; otherwise a
// map holds them.
type clientGrid struct {
	size float64
	// Dense form: cells minX..minX+w-1 × minY..minY+h-1; the refs of cell
	// k are refs[start[k]:start[k+1]].
	dense      bool
	minX, minY int32
	w, h       int32
	start      []int32
	refs       []clientRef
	// Sparse form.
	cells map[cellKey][]clientRef
	// The clients with global interest, which are in no cell.
	global []*client
}

// maxDenseCells bounds the dense form's index (4 bytes a cell).
const maxDenseCells = 1 << 16

// clientRef keeps the enter test's inputs next to each other, so scanning
// the clients near a point does not chase a pointer per client.
type clientRef struct {
	x, y, r2 float64 // centre and squared enter radius
	c        *client
	// The stamp of the changed entity last seen in the client's scope
	// this tick (never 0): the search for clients an entity enters skips
	// those already seeing it here, in memory it is reading anyway, not
	// in the client.
	stamp uint64
}

func (g *clientGrid) init() { g.cells = make(map[cellKey][]clientRef) }

func (g *clientGrid) coord(v float64) int32 { return cellCoord(v / g.size) }

func (g *clientGrid) rebuild(clients []*client) {
	for k, v := range g.cells {
		if len(v) == 0 {
			delete(g.cells, k)
			continue
		}
		clear(v)
		g.cells[k] = v[:0]
	}
	clear(g.refs)
	g.refs = g.refs[:0]
	clear(g.global) // no pointer to a client that left outlives the tick
	g.global = g.global[:0]
	g.dense = false
	g.size = 0
	for _, c := range clients {
		c.ref = nil
		if !c.radiusMode() {
			g.global = append(g.global, c)
		}
	}
	for _, c := range clients {
		if c.radiusMode() && c.enterR > g.size {
			g.size = c.enterR
		}
	}
	if g.size == 0 {
		return
	}
	minX, minY, maxX, maxY := int32(math.MaxInt32), int32(math.MaxInt32), int32(math.MinInt32), int32(math.MinInt32)
	for _, c := range clients {
		if c.radiusMode() {
			x, y := g.coord(c.cx), g.coord(c.cy)
			minX, maxX = min(minX, x), max(maxX, x)
			minY, maxY = min(minY, y), max(maxY, y)
		}
	}
	if w, h := int64(maxX)-int64(minX)+1, int64(maxY)-int64(minY)+1; w*h <= maxDenseCells {
		g.buildDense(clients, minX, minY, int32(w), int32(h))
		return
	}
	for _, c := range clients {
		if c.radiusMode() {
			k := keyOf(g.coord(c.cx), g.coord(c.cy))
			g.cells[k] = append(g.cells[k], clientRef{x: c.cx, y: c.cy, r2: c.enterR * c.enterR, c: c})
		}
	}
	// Appends are over: the cells' elements stay where they are until the
	// next rebuild.
	for _, cell := range g.cells {
		for i := range cell {
			cell[i].c.ref = &cell[i]
		}
	}
}

// buildDense lays the clients out cell by cell (a counting sort).
func (g *clientGrid) buildDense(clients []*client, minX, minY, w, h int32) {
	g.dense = true
	g.minX, g.minY, g.w, g.h = minX, minY, w, h
	n := int(w * h)
	g.start = slices.Grow(g.start[:0], n+1)[:n+1]
	clear(g.start)
	total := 0
	for _, c := range clients {
		if c.radiusMode() {
			g.start[g.cellIndex(c.cx, c.cy)+1]++
			total++
		}
	}
	for k := 1; k <= n; k++ {
		g.start[k] += g.start[k-1]
	}
	g.refs = slices.Grow(g.refs[:0], total)[:total]
	// Fill each cell from its end, using start[k+1] as a cursor that ends
	// at the cell's start.
	for _, c := range clients {
		if c.radiusMode() {
			k := g.cellIndex(c.cx, c.cy)
			g.start[k+1]--
			g.refs[g.start[k+1]] = clientRef{x: c.cx, y: c.cy, r2: c.enterR * c.enterR, c: c}
		}
	}
	// start[k+1] was counted down to where cell k begins: shift so that
	// start[k] is where cell k begins and start[n] is the end.
	copy(g.start[:n], g.start[1:n+1])
	g.start[n] = int32(total)
	for i := range g.refs {
		g.refs[i].c.ref = &g.refs[i]
	}
}

func (g *clientGrid) cellIndex(x, y float64) int32 {
	return (g.coord(x)-g.minX)*g.h + g.coord(y) - g.minY
}

// near calls f for each radius client whose enter radius contains (x, y)
// and whose ref is not stamped with stamp.
func (g *clientGrid) near(x, y float64, stamp uint64, f func(*client)) {
	if g.size == 0 {
		return
	}
	cx, cy := g.coord(x), g.coord(y)
	for dx := int32(-1); dx <= 1; dx++ {
		for dy := int32(-1); dy <= 1; dy++ {
			var cell []clientRef
			if g.dense {
				gx, gy := cx+dx-g.minX, cy+dy-g.minY
				if gx < 0 || gy < 0 || gx >= g.w || gy >= g.h {
					continue
				}
				k := gx*g.h + gy
				cell = g.refs[g.start[k]:g.start[k+1]]
			} else {
				cell = g.cells[keyOf(cx+dx, cy+dy)]
			}
			for i := range cell {
				// Without branches until the rare hit: whether a client's
				// radius holds the point is a coin toss the branch
				// predictor loses, and most that hold it are stamped.
				ref := &cell[i]
				ddx, ddy := x-ref.x, y-ref.y
				if b2i(ddx*ddx+ddy*ddy <= ref.r2)&b2i(ref.stamp != stamp) != 0 {
					f(ref.c)
				}
			}
		}
	}
}

// b2i is 1 for true: the compiler turns it into a flag set, not a branch.
func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
