package plugin

import (
	"unsafe"

	"github.com/yohamta/donburi"

	"github.com/ebisync/ebisync/components"
	"github.com/ebisync/ebisync/internal/codec"
)

// records is the server's memory of the replicated entities, by net id:
// a record per entity, the dense array the quick check reads, and the
// shadows (each component's value as last published), kept in a slab per
// plain component or allocated one by one.
type records struct {
	recs    []*entityRec // by net id; nil for free ids (net id 0 is never used)
	ids     []idRec      // by net id, as recs
	freeIDs []uint32
	slabs   []slab // by registry index

	// refOf maps an entity field to its Ref when a value with entity
	// references is encoded (see refs.go), through refScratch, a value per
	// component with references.
	refOf      func(uint64) uint64
	refScratch [][2]unsafe.Pointer // by registry index
}

// wireValue returns v as it is encoded: v itself, or for a component with
// entity references a copy (in scratch slot) whose entity fields are Refs.
func (rs *records) wireValue(c *codec.Codec, v unsafe.Pointer, slot int) unsafe.Pointer {
	if !c.HasRefs() {
		return v
	}
	p := &rs.refScratch[c.Index()][slot]
	if *p == nil {
		*p = c.New()
	}
	c.Copy(*p, v)
	c.MapRefs(*p, rs.refOf)
	return *p
}

// entityRec is the server's record of one replicated entity, by net id.
type entityRec struct {
	id      uint32
	gen     uint32
	entity  donburi.Entity
	present uint64 // mask of registered components it has (mirrored in idRec)
	maxVer  uint32 // the latest version of any of its components
	comps   []compRec

	hasPos bool
	x, y   float64
	cell   cellKey
	cellAt int32 // index in the grid cell's slice, -1 when not in the grid

	views []view    // clients that have it in scope (or pending spawn)
	subs  []*client // clients subscribed to this entity individually

	pub pubState // what the published chunks gave of it (publish.go)
}

// idRec is what detection needs to find an entity unchanged without
// reading its entityRec: dense by net id, so the check of an unchanged
// entity reads a few bytes of a sequential array instead of two records
// of a few hundred bytes each.
type idRec struct {
	entity  donburi.Entity // donburi.Null when the id is free
	gen     uint32         // kept after the id is freed, for its next use
	seen    uint32         // last tick the entity was found in the World
	present uint64         // = entityRec.present
}

// compRec is the change-tracking state of one component of one entity.
type compRec struct {
	version     uint32         // tick of the last change (or add)
	prevVersion uint32         // tick of the change before; 0 if added at version
	addedAt     uint32         // tick it was (last) added
	removedAt   uint32         // tick it was (last) removed
	shadow      unsafe.Pointer // the value as of version, unless kept in a slab
	enc         encoded        // its encodings, see cache.go
}

// slabMaxWords bounds the plain values whose shadows are kept in a dense
// slab by net id (a position, a health, a colour, a small transform)
// instead of an allocation each. Only components with a slab take the
// quick check.
const slabMaxWords = 8

// slab holds the shadows of one plain component, words per entity, by
// net id.
type slab struct {
	words int      // 0: the component's shadows are allocated one by one
	size  int      // the value's size: words*8, or less (padded with zeros)
	mem   []uint64 // len(recs) × words
}

// newSlab returns the slab for a component of the given size, plain or
// not; words is 0 (no slab) for values that are not plain or are larger
// than slabMaxWords words. (Registration refuses a component without
// fields, but a value of no size would still get a word.)
func newSlab(size uintptr, plain bool) slab {
	if !plain || size > slabMaxWords*8 {
		return slab{}
	}
	words := max(1, int((size+7)/8))
	return slab{words: words, size: int(size), mem: make([]uint64, words)} // net id 0
}

// newRecords returns the records of a server replicating comps.
func newRecords(comps []*codec.Codec) records {
	rs := records{
		refScratch: make([][2]unsafe.Pointer, len(comps)),
		recs:       make([]*entityRec, 1), // net id 0 is never used
		ids:        make([]idRec, 1),
	}
	for _, c := range comps {
		rs.slabs = append(rs.slabs, newSlab(c.PlainSize()))
	}
	return rs
}

// shadow returns the server's copy of component i of r, whose codec is c,
// as of its version.
func (rs *records) shadow(r *entityRec, i int, c *codec.Codec) unsafe.Pointer {
	if sl := &rs.slabs[i]; sl.words > 0 {
		return unsafe.Pointer(&sl.mem[int(r.id)*sl.words])
	}
	cr := &r.comps[i]
	if cr.shadow == nil {
		cr.shadow = c.New()
	}
	return cr.shadow
}

// add gives entity e a record with n components under a free net id (the
// next generation of a freed one, or a new id) and stamps its tag.
func (rs *records) add(e donburi.Entity, tag *components.ReplicatedData, n int) *entityRec {
	var id uint32
	var gen uint32 = 1
	if k := len(rs.freeIDs); k > 0 {
		id = rs.freeIDs[k-1]
		rs.freeIDs = rs.freeIDs[:k-1]
		gen = rs.genOf(id) + 1
	} else {
		id = uint32(len(rs.recs))
		rs.recs = append(rs.recs, nil)
		rs.ids = append(rs.ids, idRec{})
		for i := range rs.slabs {
			if sl := &rs.slabs[i]; sl.words > 0 {
				sl.mem = append(sl.mem, make([]uint64, sl.words)...)
			}
		}
	}
	rs.ids[id] = idRec{entity: e, gen: gen}
	r := &entityRec{id: id, gen: gen, entity: e, comps: make([]compRec, n), cellAt: -1}
	rs.recs[id] = r
	tag.NetID, tag.Gen = id, gen
	return r
}

// free forgets r: its net id is free for the next generation.
func (rs *records) free(r *entityRec) {
	rs.recs[r.id] = nil
	rs.ids[r.id].entity, rs.ids[r.id].present = donburi.Null, 0
	rs.freeIDs = append(rs.freeIDs, r.id)
}

func (rs *records) genOf(id uint32) uint32 {
	if int(id) < len(rs.ids) {
		return rs.ids[id].gen
	}
	return 0
}

// byTag returns the record a tag names, if any (it may be another
// entity's, for a tag the game copied).
func (rs *records) byTag(tag *components.ReplicatedData) *entityRec {
	if id := tag.NetID; id != 0 && int(id) < len(rs.recs) {
		return rs.recs[id]
	}
	return nil
}
