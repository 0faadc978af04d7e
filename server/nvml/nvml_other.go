//go:build cgo && !linux

package nvml

import (
	"context"

	"github.com/xgpu/xgpu/internal/pb"
)

// library is NVML on linux; here there is none.
type library any

// GPUs returns ErrUnsupportedOS: NVML is used on linux only.
func (s *Source) GPUs(ctx context.Context) ([]*pb.GPU, error) { return nil, ErrUnsupportedOS }
