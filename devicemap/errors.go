package devicemap

import (
	"errors"
	"strconv"
	"strings"
)

// ParseError reports a map that is malformed or invalid. Parse, Load, New,
// Validate and UnmarshalJSON return it.
type ParseError struct {
	// Path is the file Load read; empty for the other functions.
	Path string
	// Device is the index (position) of the device at fault, or -1 when the
	// problem is not about one device.
	Device int
	// Field is the JSON name of the field at fault, e.g. "memoryQuota" or
	// "peers[2].kind"; empty when the problem is the document as a whole.
	Field string
	// Err is the problem.
	Err error
}

func (e *ParseError) Error() string {
	var b strings.Builder
	b.WriteString("devicemap: ")
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	if e.Device >= 0 {
		b.WriteString("device ")
		b.WriteString(strconv.Itoa(e.Device))
		b.WriteString(": ")
	}
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	if e.Err == nil {
		b.WriteString("invalid")
	} else {
		b.WriteString(strings.TrimPrefix(e.Err.Error(), "devicemap: "))
	}
	return b.String()
}

// Unwrap returns the underlying problem.
func (e *ParseError) Unwrap() error { return e.Err }

func mapErr(field string, err error) *ParseError {
	return &ParseError{Device: -1, Field: field, Err: err}
}

func devErr(i int, field string, err error) *ParseError {
	return &ParseError{Device: i, Field: field, Err: err}
}

func msg(s string) error { return errors.New(s) }

// Errors of Select; a *SelectError wraps one of them.
var (
	// ErrInvalidEntry: the entry is neither a decimal index nor a "GPU-" id.
	ErrInvalidEntry = errors.New("devicemap: invalid device entry")
	// ErrAmbiguousDevice: a UUID prefix matches more than one device.
	ErrAmbiguousDevice = errors.New("devicemap: ambiguous device")
	// ErrDuplicateDevice: an entry names a device already selected.
	ErrDuplicateDevice = errors.New("devicemap: device listed twice")
)

// SelectError reports the entry of a device list that Select stopped at.
type SelectError struct {
	// Entry is the entry as written in the list.
	Entry string
	// Pos is the entry's position in the list, from 0.
	Pos int
	// Err is ErrInvalidEntry, ErrNoSuchDevice, ErrAmbiguousDevice or
	// ErrDuplicateDevice, possibly wrapped with details.
	Err error
}

func (e *SelectError) Error() string {
	return "devicemap: device list entry " + strconv.Itoa(e.Pos) + " " + strconv.Quote(e.Entry) + ": " +
		strings.TrimPrefix(e.Err.Error(), "devicemap: ")
}

// Unwrap returns the underlying problem.
func (e *SelectError) Unwrap() error { return e.Err }
