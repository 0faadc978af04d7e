package collective

import (
	"errors"
	"strconv"
	"strings"
)

// Sentinel errors. Operations return them wrapped (in an *OpError), so test
// with errors.Is. The NCCL shim maps them to ncclResult_t: ErrInvalidArgument
// to ncclInvalidArgument, ErrMismatch to ncclInvalidUsage, ErrPeerLost and
// ErrTimeout to ncclRemoteError, the rest to ncclSystemError.
var (
	// ErrInvalidArgument: a bad count, type, operator, rank or buffer. The
	// operation changed nothing and the communicator stays usable.
	ErrInvalidArgument = errors.New("collective: invalid argument")
	// ErrMismatch: two ranks disagree about an operation (a message of one
	// length met a receive of another), which means they called different
	// operations or different counts.
	ErrMismatch = errors.New("collective: ranks disagree about the operation")
	// ErrPeerLost: a peer rank died or closed its communicator.
	ErrPeerLost = errors.New("collective: peer lost")
	// ErrTimeout: no message of the operation completed within
	// Options.Timeout.
	ErrTimeout = errors.New("collective: timed out")
	// ErrClosed: the communicator (or this rank's transport) was closed.
	ErrClosed = errors.New("collective: communicator closed")
	// ErrAborted: an earlier operation failed part-way, so the ranks no
	// longer agree on the state of the communicator; every later operation
	// fails with it (wrapping the first failure). Make a new communicator.
	ErrAborted = errors.New("collective: communicator aborted by an earlier failure")
)

// OpError is the error every Comm operation returns.
type OpError struct {
	Op   string // "all-reduce", "broadcast", "send", ...
	Rank int    // the rank that reports it
	Err  error  // the cause; wraps one of the sentinels above where one applies
}

func (e *OpError) Error() string {
	var b strings.Builder
	b.WriteString("collective: rank ")
	b.WriteString(strconv.Itoa(e.Rank))
	b.WriteString(": ")
	b.WriteString(e.Op)
	b.WriteString(": ")
	if e.Err == nil {
		b.WriteString("unknown error")
	} else {
		b.WriteString(strings.TrimPrefix(e.Err.Error(), "collective: "))
	}
	return b.String()
}

func (e *OpError) Unwrap() error { return e.Err }

// abortedError is the sticky error of a communicator after a failure: it
// is ErrAborted and also its cause.
type abortedError struct{ cause error }

func (e *abortedError) Error() string {
	return "collective: communicator aborted by an earlier failure: " + strings.TrimPrefix(e.cause.Error(), "collective: ")
}

func (e *abortedError) Unwrap() []error { return []error{ErrAborted, e.cause} }
