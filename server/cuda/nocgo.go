//go:build !cgo

package cuda

import "github.com/xgpu/xgpu/server/backend"

// Driver is the loaded CUDA driver library. In a build without cgo it
// cannot be loaded: Open returns ErrNoCgo.
type Driver struct{}

// Open returns ErrNoCgo: the driver binding needs cgo.
func Open(path string) (*Driver, error) { return nil, ErrNoCgo }

// New returns ErrNoCgo: the cuda backend needs cgo.
func New(cfg Config) (backend.Backend, error) { return nil, ErrNoCgo }
