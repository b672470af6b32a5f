package plugin

import (
	"unsafe"

	"github.com/ebisync/ebisync/internal/codec"
)

// encoded is the encode-once cache of one component of one entity: the
// bytes every client is sent of it are encoded here, once, and batches
// copy them from here, so a change is serialised once however many
// clients receive it (after bevy_replicon's SerializedData, which
// serialises each component once per tick into one buffer that every
// client's message points into).
//
// Detection writes the delta as it finds a change; the full encoding is
// written on the first request of each version. Batch building reads
// both through records.full and records.catchUp.
type encoded struct {
	delta       []byte // from the value at compRec.prevVersion to the value at compRec.version
	full        []byte // the full value as of fullVersion
	fullVersion uint32
}

// setDelta encodes the fields in mask of cur, against old, as the delta
// of a new version, and returns it.
func (e *encoded) setDelta(c *codec.Codec, old, cur unsafe.Pointer, mask uint64) []byte {
	e.delta = c.AppendDelta(e.delta[:0], old, cur, mask)
	return e.delta
}

// dropDelta forgets the delta: a version without a previous one (a
// component just added) has none.
func (e *encoded) dropDelta() { e.delta = e.delta[:0] }

// fullOf returns the full encoding of v, the value as of version,
// encoding it at most once per version.
func (e *encoded) fullOf(c *codec.Codec, v unsafe.Pointer, version uint32) []byte {
	if e.fullVersion != version || e.full == nil {
		e.full = c.AppendFull(e.full[:0], v)
		e.fullVersion = version
	}
	return e.full
}

// full returns the full encoding of component i of r, whose codec is c,
// as of its version.
func (rs *records) full(r *entityRec, i int, c *codec.Codec) []byte {
	cr := &r.comps[i]
	return cr.enc.fullOf(c, rs.wireValue(c, rs.shadow(r, i, c), 0), cr.version)
}

// catchUp returns what brings a client that holds component i of r as of
// tick sync (older than the component's version) up to date, and whether
// it is a delta: the delta when the client holds the version before,
// otherwise the full value.
func (rs *records) catchUp(r *entityRec, i int, c *codec.Codec, sync uint32) ([]byte, bool) {
	cr := &r.comps[i]
	if cr.prevVersion != 0 && cr.prevVersion <= sync {
		return cr.enc.delta, true
	}
	return rs.full(r, i, c), false
}
