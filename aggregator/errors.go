package aggregator

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Kinds of error callers branch on, with errors.Is. The aggregator's own
// errors and the Client's errors (rebuilt from gRPC status codes) both wrap
// them.
var (
	// ErrNotFound: no such lease, or the server is not registered (a server
	// answers it by registering again). gRPC NotFound.
	ErrNotFound = errors.New("aggregator: not found")
	// ErrAlreadyRegistered: another live instance holds the server id. gRPC
	// AlreadyExists.
	ErrAlreadyRegistered = errors.New("aggregator: already registered")
	// ErrInvalid: a request or inventory is malformed; nothing was changed.
	// gRPC InvalidArgument.
	ErrInvalid = errors.New("aggregator: invalid argument")
	// ErrExhausted: not enough free vGPUs for an allocation; an
	// *InsufficientError says how many. gRPC ResourceExhausted.
	ErrExhausted = errors.New("aggregator: not enough free vGPUs")
	// ErrConflict: a Store transaction found its conditions false (a
	// concurrent change) and changed nothing. The aggregator retries; when it
	// gives up the RPC fails with gRPC Aborted.
	ErrConflict = errors.New("aggregator: conflicting concurrent change")
	// ErrUnavailable: the store (etcd) or the aggregator cannot be reached.
	// gRPC Unavailable.
	ErrUnavailable = errors.New("aggregator: unavailable")
	// ErrServerClosed is returned by Serve after Shutdown or Close, and by
	// calls on a closed Aggregator or Store.
	ErrServerClosed = errors.New("aggregator: server closed")
)

// Error is an error of one of the kinds above with a message for people.
type Error struct {
	// Kind is ErrNotFound, ErrAlreadyRegistered, ErrInvalid, ErrExhausted,
	// ErrConflict or ErrUnavailable.
	Kind error
	// Msg says what happened, without the "aggregator: " prefix.
	Msg string
}

func (e *Error) Error() string { return "aggregator: " + e.Msg }

// Unwrap returns e.Kind.
func (e *Error) Unwrap() error { return e.Kind }

// GRPCStatus returns the status the gRPC service sends for e.
func (e *Error) GRPCStatus() *status.Status { return status.New(codeOf(e.Kind), e.Error()) }

func errorf(kind error, format string, args ...any) *Error {
	return &Error{Kind: kind, Msg: fmt.Sprintf(format, args...)}
}

// InsufficientError reports an allocation the pool cannot satisfy. It wraps
// ErrExhausted.
type InsufficientError struct {
	// Free is the number of free vGPUs of live servers with at least
	// MemoryBytes of memory.
	Free int
	// Asked is the number of vGPUs requested.
	Asked int
	// MemoryBytes is the minimum memory per vGPU requested; 0 means any.
	MemoryBytes uint64
}

func (e *InsufficientError) Error() string {
	mem := ""
	if e.MemoryBytes > 0 {
		mem = fmt.Sprintf(" with at least %d bytes", e.MemoryBytes)
	}
	return fmt.Sprintf("aggregator: not enough free vGPUs: %d free%s, %d asked", e.Free, mem, e.Asked)
}

// Unwrap returns ErrExhausted.
func (e *InsufficientError) Unwrap() error { return ErrExhausted }

// GRPCStatus returns a ResourceExhausted status.
func (e *InsufficientError) GRPCStatus() *status.Status {
	return status.New(codes.ResourceExhausted, e.Error())
}

func codeOf(kind error) codes.Code {
	switch kind {
	case ErrNotFound:
		return codes.NotFound
	case ErrAlreadyRegistered:
		return codes.AlreadyExists
	case ErrInvalid:
		return codes.InvalidArgument
	case ErrExhausted:
		return codes.ResourceExhausted
	case ErrConflict:
		return codes.Aborted
	case ErrUnavailable, ErrServerClosed:
		return codes.Unavailable
	}
	return codes.Internal
}

func kindOf(c codes.Code) error {
	switch c {
	case codes.NotFound:
		return ErrNotFound
	case codes.AlreadyExists:
		return ErrAlreadyRegistered
	case codes.InvalidArgument:
		return ErrInvalid
	case codes.ResourceExhausted:
		return ErrExhausted
	case codes.Aborted:
		return ErrConflict
	case codes.Unavailable:
		return ErrUnavailable
	}
	return nil
}

// toStatus turns an error of the aggregator into the error a gRPC handler
// returns.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	var s interface{ GRPCStatus() *status.Status }
	if errors.As(err, &s) {
		st := s.GRPCStatus()
		return status.Error(st.Code(), err.Error())
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return status.FromContextError(err).Err()
	}
	if errors.Is(err, ErrServerClosed) {
		return status.Error(codes.Unavailable, err.Error())
	}
	return status.Error(codes.Internal, err.Error())
}

// fromStatus turns an error of a gRPC call made by the Client into an
// error wrapping one of the kinds above when the code maps to one.
func fromStatus(op string, err error) error {
	st, ok := status.FromError(err)
	if !ok {
		return fmt.Errorf("aggregator: %s: %w", op, err)
	}
	switch st.Code() {
	case codes.Canceled:
		return fmt.Errorf("aggregator: %s: %w (%s)", op, context.Canceled, st.Message())
	case codes.DeadlineExceeded:
		return fmt.Errorf("aggregator: %s: %w (%s)", op, context.DeadlineExceeded, st.Message())
	}
	kind := kindOf(st.Code())
	if kind == nil {
		return fmt.Errorf("aggregator: %s: %w", op, err)
	}
	return &Error{Kind: kind, Msg: op + ": " + strings.TrimPrefix(st.Message(), "aggregator: ")}
}
