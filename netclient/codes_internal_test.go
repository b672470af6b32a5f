package netclient

import (
	"testing"

	"github.com/ebisync/ebisync"
	"github.com/ebisync/ebisync/internal/wire"
)

// TestCodesMatchTheWire: the exported statuses and reasons are the wire's
// values, written out so that the docs show numbers, not internal names.
func TestCodesMatchTheWire(t *testing.T) {
	for _, c := range []struct{ got, want int }{
		{int(ebisync.Ok), int(wire.StatusOk)},
		{int(ebisync.Forbidden), int(wire.StatusForbidden)},
		{int(ebisync.NotFound), int(wire.StatusNotFound)},
		{int(ebisync.ValidationError), int(wire.StatusValidationError)},
		{int(ebisync.RateLimited), int(wire.StatusRateLimited)},
		{int(ebisync.InternalError), int(wire.StatusInternalError)},
		{int(ControlTaken), int(wire.ControlTaken)},
		{int(ControlReleased), int(wire.ControlReleased)},
		{int(ControlAlreadyControlled), int(wire.ControlAlreadyControlled)},
		{int(ControlNotControlled), int(wire.ControlNotControlled)},
		{int(ControlNotFound), int(wire.ControlNotFound)},
		{int(ControlForbidden), int(wire.ControlForbidden)},
		{int(ControlRateLimited), int(wire.ControlRateLimited)},
		{int(ExitOutOfRange), int(wire.ReasonOutOfRange)},
		{int(ExitDespawned), int(wire.ReasonDespawned)},
		{int(ExitUnsubscribed), int(wire.ReasonUnsubscribed)},
		{int(ExitFiltered), int(wire.ReasonFiltered)},
		{int(statusProtocolError), wire.CloseProtocolError},
		{int(statusSchemaMismatch), wire.CloseSchemaMismatch},
	} {
		if c.got != c.want {
			t.Errorf("a constant is %d, the wire's is %d", c.got, c.want)
		}
	}
}
