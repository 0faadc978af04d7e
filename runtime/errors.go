package runtime

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/xgpu/xgpu/internal/cudaerr"
)

// ErrClosed is wrapped by the errors of calls made after (or cut short by)
// Client.Close. cudaerr.Code reports it as cudaErrorCudartUnloading, as the
// CUDA runtime does for calls made while it shuts down.
var ErrClosed = closedError{}

type closedError struct{}

func (closedError) Error() string { return "runtime: client closed" }
func (closedError) Unwrap() error { return cudaerr.CudartUnloading }

// Error is the error of one runtime call: the CUDA API name of the call,
// the logical device it addressed (-1 when none) and the cause. The cause
// wraps a cudaerr.Error, so cudaerr.Code(err) gives the cudaError_t a C
// caller receives.
type Error struct {
	Op  string // CUDA API name, such as "cudaMemcpyAsync"
	Dev int    // logical device, or -1
	Err error
}

func (e *Error) Error() string {
	if e.Dev < 0 {
		return "runtime: " + e.Op + ": " + e.Err.Error()
	}
	return "runtime: " + e.Op + " on device " + strconv.Itoa(e.Dev) + ": " + e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }

// LostError reports that the session holding a device is gone: its worker
// or server died, the network between them failed, or the worker broke the
// protocol. The session does not come back: every later call on its
// devices fails with the same LostError. cudaerr.Code reports it as
// cudaErrorDevicesUnavailable ("CUDA-capable device(s) is/are busy or
// unavailable"), the status a CUDA application gets for a device it cannot
// use, and which every framework treats as fatal for that device rather
// than as a fault in its own kernels (cudaErrorLaunchFailure would send
// people hunting for a bug in device code). Err is the transport's reason,
// for humans.
type LostError struct {
	Server string // control address of the server that held the session
	Addr   string // data address of the session's worker
	Err    error
}

func (e *LostError) Error() string {
	return fmt.Sprintf("session with worker %s (server %s) lost: %v", e.Addr, e.Server, e.Err)
}

// Unwrap gives both cudaErrorDevicesUnavailable and the transport error,
// so that errors.Is and errors.As see either.
func (e *LostError) Unwrap() []error { return []error{cudaerr.DevicesUnavailable, e.Err} }

// opErr wraps err with the API name and device. A nil err stays nil.
func opErr(op string, dev int, err error) error {
	if err == nil {
		return nil
	}
	return &Error{Op: op, Dev: dev, Err: err}
}

// replyStatus turns a reply's status into an error: nil for cudaSuccess.
func replyStatus(s int32) error {
	if s == 0 {
		return nil
	}
	return cudaerr.Error(s)
}

// invalid is a cudaErrorInvalidValue with an explanation for humans.
func invalid(format string, args ...any) error {
	return &detailError{code: cudaerr.InvalidValue, msg: fmt.Sprintf(format, args...)}
}

// detailError is a CUDA status with a reason attached.
type detailError struct {
	code cudaerr.Error
	msg  string
}

func (e *detailError) Error() string { return e.code.Error() + " (" + e.msg + ")" }
func (e *detailError) Unwrap() error { return e.code }

// errDevice is the error of a call naming a device index outside the map.
func errDevice(dev, n int) error {
	return &detailError{code: cudaerr.InvalidDevice, msg: fmt.Sprintf("device %d outside 0..%d", dev, n-1)}
}

var errNilMap = errors.New("runtime: config: Map is required")
