package dcerpc

import (
	"errors"
	"fmt"

	msdcerpc "github.com/oiweiwei/go-msrpc/dcerpc"
)

// Fault statuses the runtime sends (C706 appendix E, [MS-RPCE] 2.2.2.7,
// [MS-ERREF] 2.2).
const (
	StatusAccessDenied  uint32 = 0x00000005 // ERROR_ACCESS_DENIED: authentication failed or required
	StatusBadStubData   uint32 = 0x000006f7 // RPC_X_BAD_STUB_DATA: the request did not unmarshal
	StatusOpRangeError  uint32 = 0x1c010002 // nca_s_op_rng_error: unknown opnum
	StatusUnknownIf     uint32 = 0x1c010003 // nca_s_unk_if: unknown presentation context
	StatusFaultUnspec   uint32 = 0x1c000012 // nca_s_fault_unspec: the handler failed
	StatusServerTooBusy uint32 = 0x1c010014 // nca_s_server_too_busy: reassembly memory exhausted
)

// Fault is an error a handler returns to make the call fail with a
// specific fault status, e.g. Fault(StatusAccessDenied).
type Fault uint32

func (f Fault) Error() string { return fmt.Sprintf("dcerpc: fault 0x%08x", uint32(f)) }

// faultStatus maps what an interface handle returned to a fault status
// (0: no fault). The generated go-msrpc handles return a nil operation
// with an error only when the request did not unmarshal, and a nil
// operation with no error for an opnum they do not know.
func faultStatus(op msdcerpc.Operation, err error) uint32 {
	var f Fault
	switch {
	case errors.As(err, &f) && f != 0:
		return uint32(f)
	case errors.Is(err, msdcerpc.ErrNotImplemented):
		return StatusOpRangeError
	case op == nil && err == nil:
		return StatusOpRangeError
	case op == nil:
		return StatusBadStubData
	case err != nil:
		return StatusFaultUnspec
	}
	return 0
}
