//go:build !cgo

package nvml

import (
	"context"

	"github.com/xgpu/xgpu/internal/pb"
)

// library is NVML in cgo builds; here there is none.
type library any

// GPUs returns ErrNoCgo: NVML needs cgo.
func (s *Source) GPUs(ctx context.Context) ([]*pb.GPU, error) { return nil, ErrNoCgo }
