package codec_test

import (
	"math"
	"testing"

	"github.com/yohamta/donburi"

	"github.com/ebisync/ebisync/components"
	"github.com/ebisync/ebisync/internal/codec"
)

type targeting struct {
	Target donburi.Entity
	Score  int32
	Wing   [2]struct {
		Leader donburi.Entity
		Range  float32
	}
}

func TestEntityFields(t *testing.T) {
	c := register(components.NewRegistry(), "test.target", donburi.NewComponentType[targeting](), nil)
	assert(t, c.HasRefs(), "HasRefs false")
	fs := c.Fields()
	assert(t, fs[0].Type == "entity" && fs[2].Type == "[2]struct{Leader entity;Range float32}", "fields %+v", fs)

	// MapRefs visits every entity leaf, array elements included.
	var v targeting
	v.Target, v.Wing[0].Leader, v.Wing[1].Leader = 5, 6, 7
	c.MapRefs(ptr(&v), func(e uint64) uint64 { return uint64(codec.MakeRef(uint32(e)*10, 3)) })
	assert(t, codec.Ref(v.Target) == codec.MakeRef(50, 3) && codec.Ref(v.Wing[1].Leader) == codec.MakeRef(70, 3), "mapped %+v", v)

	// A Ref survives the full encoding, and a delta carries the new Ref
	// whole.
	v.Score = 9
	got := fullRoundTrip(t, c, &v)
	assert(t, got == v, "full round trip %+v, want %+v", got, v)
	nv := v
	nv.Target = donburi.Entity(codec.MakeRef(1<<31, math.MaxUint32))
	nv.Wing[0].Leader = 0
	d := c.AppendDelta(nil, ptr(&v), ptr(&nv), c.Diff(ptr(&v), ptr(&nv)))
	n, err := c.DecodeDelta(d, ptr(&got))
	assert(t, err == nil && n == len(d) && got == nv, "delta %+v, %v; want %+v", got, err, nv)

	// No reference costs one byte.
	var none targeting
	assert(t, len(c.AppendFull(nil, ptr(&none))) == 1+1+2*(1+4), "null refs: % x", c.AppendFull(nil, ptr(&none)))

	// An id or generation past 32 bits is refused before anything is
	// written.
	bad := []byte{0xff, 0xff, 0xff, 0xff, 0x7f, 1}
	_, err = c.FullLen(bad)
	assert(t, err != nil, "FullLen accepted an id of 35 bits")
}

func TestEntityFieldQuantised(t *testing.T) {
	type q struct {
		E donburi.Entity `ebisync:"q=1"`
	}
	_, err := codec.Build[q]("bad", 0, nil, codec.Options{})
	assert(t, err != nil, "q= on an entity accepted")
}
