package backend

import (
	"errors"
	"fmt"

	"github.com/xgpu/xgpu/internal/cudaerr"
)

// OpError is the error every Backend and Device method returns: the
// operation that failed and why. Err wraps a cudaerr.Error, so
// cudaerr.Code(err) gives the status to hand the application.
type OpError struct {
	// Backend is the implementation's Name, "host" or "cuda".
	Backend string
	// Op is the method, such as "Malloc" or "MemcpyHtoDAsync".
	Op string
	// Err is the cause; it wraps a cudaerr.Error.
	Err error
}

// Error returns "<backend>: <op>: <cause>".
func (e *OpError) Error() string {
	if e.Backend == "" {
		return "backend: " + e.Op + ": " + e.Err.Error()
	}
	return e.Backend + ": " + e.Op + ": " + e.Err.Error()
}

// Unwrap returns the cause.
func (e *OpError) Unwrap() error { return e.Err }

// Errorf returns an *OpError for op whose cause is code, with a detail
// formatted from format and args in front of it:
//
//	Errorf("host", "Free", cudaerr.InvalidValue, "%#x is not an allocation", p)
//	// host: Free: 0x1000 is not an allocation: cudaErrorInvalidValue: invalid argument
//
// With an empty format the cause is code alone.
func Errorf(backendName, op string, code cudaerr.Error, format string, args ...any) error {
	var err error = code
	if format != "" {
		err = &detailError{msg: fmt.Sprintf(format, args...), code: code}
	}
	return &OpError{Backend: backendName, Op: op, Err: err}
}

// detailError is a cudaerr.Error with a sentence of context in front.
type detailError struct {
	msg  string
	code cudaerr.Error
}

func (e *detailError) Error() string { return e.msg + ": " + e.code.Error() }
func (e *detailError) Unwrap() error { return e.code }

// Is reports whether err is an *OpError of operation op whose cause is code;
// a test helper for conformance suites and callers that branch on both.
func Is(err error, op string, code cudaerr.Error) bool {
	var oe *OpError
	return errors.As(err, &oe) && oe.Op == op && cudaerr.Code(oe.Err) == code
}
