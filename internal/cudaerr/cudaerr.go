package cudaerr

import (
	"errors"
	"strconv"
)

// Error is a CUDA runtime status code, cudaError_t. Its numeric values are
// the runtime's own, so an Error converts to and from the C enum with a plain
// conversion. Success (0) is a status, not an error: functions return a nil
// error rather than Success.
type Error int32

// unrecognized is what the CUDA runtime's cudaGetErrorName and
// cudaGetErrorString return for a value outside the enum.
const unrecognized = "unrecognized error code"

// Error returns "<name>: <description>", for example
// "cudaErrorInvalidValue: invalid argument".
func (e Error) Error() string {
	if ent, ok := table[e]; ok {
		return ent.name + ": " + ent.desc
	}
	return e.String() + ": " + unrecognized
}

// Name returns the enum name, such as "cudaErrorInvalidValue", or
// "unrecognized error code" for a value the CUDA 13 runtime does not define,
// as cudaGetErrorName does.
func (e Error) Name() string {
	if ent, ok := table[e]; ok {
		return ent.name
	}
	return unrecognized
}

// Description returns the short description the runtime's
// cudaGetErrorString returns, such as "invalid argument", or
// "unrecognized error code" for a value the runtime does not define.
func (e Error) Description() string {
	if ent, ok := table[e]; ok {
		return ent.desc
	}
	return unrecognized
}

// String returns the enum name, or "cudaError(<n>)" for a value the CUDA 13
// runtime does not define.
func (e Error) String() string {
	if ent, ok := table[e]; ok {
		return ent.name
	}
	return "cudaError(" + strconv.FormatInt(int64(e), 10) + ")"
}

// Known reports whether e is a value of the CUDA 13 runtime's enum.
func (e Error) Known() bool {
	_, ok := table[e]
	return ok
}

// Code returns the status an error stands for: Success for nil, the first
// Error found by unwrapping err, and Unknown for any other error (including
// one that wraps Success, which no failure may report).
func Code(err error) Error {
	if err == nil {
		return Success
	}
	var e Error
	if errors.As(err, &e) && e != Success {
		return e
	}
	return Unknown
}

// Is reports whether Code(err) is code. Is(nil, Success) is true.
func Is(err error, code Error) bool {
	return Code(err) == code
}

// Sticky reports whether code is one of the errors that CUDA documents as
// leaving the process's context in an inconsistent state: once one is seen,
// "any further CUDA work will return the same error" and the context must be
// torn down (for xgpu: the session's device closed and reopened). These are
// the faults raised while executing device code (illegal address,
// instruction, program counter or address space, misaligned address,
// hardware stack error, device-side assert, launch failure or timeout,
// tensor memory leak), errors contained by the GPU's error containment, an
// external device's error, and an MPS client terminated by its server.
func Sticky(code Error) bool {
	switch code {
	case IllegalAddress, LaunchTimeout, Assert, HardwareStackError,
		IllegalInstruction, MisalignedAddress, InvalidAddressSpace,
		InvalidPc, LaunchFailure, TensorMemoryLeak, Contained,
		MpsClientTerminated, ExternalDevice:
		return true
	}
	return false
}
