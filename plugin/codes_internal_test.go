package plugin

import (
	"testing"

	"github.com/ebisync/ebisync/internal/wire"
)

// TestCloseCodesMatchTheWire: the exported close codes are the wire's,
// written out so that the docs show numbers, not internal names.
func TestCloseCodesMatchTheWire(t *testing.T) {
	for _, c := range []struct{ got, want int }{
		{int(StatusProtocolError), wire.CloseProtocolError},
		{int(StatusSchema), wire.CloseSchemaMismatch},
		{int(StatusAbuse), wire.CloseRateLimited},
		{int(StatusTooSlow), wire.CloseTooSlow},
	} {
		if c.got != c.want {
			t.Errorf("close code %d, the wire's is %d", c.got, c.want)
		}
	}
}
