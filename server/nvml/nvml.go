package nvml

import (
	"errors"
	"fmt"
)

// ErrUnavailable is matched (with errors.Is) by every error meaning that NVML
// cannot be used by this process at all: the build has no cgo or is not for
// linux, or the NVML library fails to load or initialise. Callers branch on it
// to fall back to another GPU source.
var ErrUnavailable = errors.New("nvml: unavailable")

var (
	// ErrNoCgo is returned by a build without cgo. It matches ErrUnavailable.
	ErrNoCgo error = &unavailableError{msg: "nvml: built without cgo"}

	// ErrUnsupportedOS is returned on systems other than linux. It matches
	// ErrUnavailable.
	ErrUnsupportedOS error = &unavailableError{msg: "nvml: only supported on linux"}
)

// unavailableError is an error that matches ErrUnavailable.
type unavailableError struct{ msg string }

func (e *unavailableError) Error() string        { return e.msg }
func (e *unavailableError) Is(target error) bool { return target == ErrUnavailable }

// InitError reports that NVML failed to load or initialise. It matches
// ErrUnavailable.
type InitError struct {
	Library string // the library that was loaded
	Err     error  // NVML's status, a go-nvml Return in cgo builds
	// NotFound is true when the library itself could not be loaded.
	NotFound bool
}

func (e *InitError) Error() string {
	if e.NotFound {
		return fmt.Sprintf("nvml: cannot load %s (is the NVIDIA driver installed?): %v", e.Library, e.Err)
	}
	return fmt.Sprintf("nvml: init %s: %v", e.Library, e.Err)
}

func (e *InitError) Unwrap() error        { return e.Err }
func (e *InitError) Is(target error) bool { return target == ErrUnavailable }

// defaultLibrary is the NVML library loaded when Source.LibraryPath is empty.
const defaultLibrary = "libnvidia-ml.so.1"

// Source lists the GPUs of this host through NVML. The zero value is ready
// to use.
type Source struct {
	// LibraryPath is the NVML library to load. Zero: libnvidia-ml.so.1,
	// found through the dynamic loader's search path.
	LibraryPath string

	// lib replaces the NVML library in tests; nil loads LibraryPath.
	lib library
}

func (s *Source) libraryName() string {
	if s.LibraryPath != "" {
		return s.LibraryPath
	}
	return defaultLibrary
}
