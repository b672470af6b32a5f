package ebisync_test

import (
	"encoding/json"
	"testing"

	"github.com/ebisync/ebisync"
)

func TestStatusNames(t *testing.T) {
	for s, want := range map[ebisync.Status]string{
		ebisync.Ok: "Ok", ebisync.Forbidden: "Forbidden", ebisync.NotFound: "NotFound",
		ebisync.ValidationError: "ValidationError", ebisync.RateLimited: "RateLimited",
		ebisync.InternalError: "InternalError", ebisync.NoReply: "NoReply", 9: "Status(9)",
	} {
		if got := s.String(); got != want {
			t.Errorf("Status(%d).String() = %q, want %q", uint8(s), got, want)
		}
	}
	b, err := json.Marshal(map[ebisync.Status]uint64{ebisync.Ok: 2, ebisync.Forbidden: 1})
	if err != nil || string(b) != `{"Forbidden":1,"Ok":2}` {
		t.Errorf("JSON %s, %v", b, err)
	}
}
