// Package cudaerr gives the CUDA runtime's status codes (cudaError_t) a Go
// error type, with the numeric values, enum names and description strings
// of the CUDA 13 runtime, usable without any CUDA library loaded.
//
// Status codes become errors once, at the first Go layer that sees them
// (a backend, the wire decoder), and are wrapped with context from there on;
// only the C shim turns an error back into a cudaError_t, with Code:
//
//	if err := dev.Free(p); err != nil {
//		return fmt.Errorf("worker: free %#x: %w", p, err)
//	}
//	...
//	status := cudaerr.Code(err) // cudaErrorInvalidValue, or cudaSuccess for nil
//	if cudaerr.Sticky(status) {
//		// the context is poisoned: tear the session's device down
//	}
//
// Error values are plain integers: comparable, free of allocation, and safe
// for concurrent use. The package holds no mutable state.
package cudaerr
