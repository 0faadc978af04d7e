package backend

import (
	"fmt"

	"github.com/xgpu/xgpu/internal/cudaerr"
)

// Validate checks what can be checked without knowing the backend: a
// non-negative index, and a non-empty window of WindowAlignment-aligned base
// and size that neither starts at address 0 nor wraps around the address
// space, at least as large as a non-zero MemoryQuota. The error wraps
// cudaerr.InvalidDevice for a negative index and cudaerr.InvalidValue
// otherwise. Backends check the rest (index in range, quota within the
// device, windows disjoint) in Open.
func (s DeviceSpec) Validate() error {
	switch {
	case s.Index < 0:
		return fmt.Errorf("backend: device index %d is negative: %w", s.Index, cudaerr.InvalidDevice)
	case s.WindowSize == 0:
		return fmt.Errorf("backend: window size is zero: %w", cudaerr.InvalidValue)
	case s.WindowBase == 0:
		return fmt.Errorf("backend: window starts at address 0: %w", cudaerr.InvalidValue)
	case s.WindowBase%WindowAlignment != 0:
		return fmt.Errorf("backend: window base %#x is not a multiple of %#x: %w", s.WindowBase, WindowAlignment, cudaerr.InvalidValue)
	case s.WindowSize%WindowAlignment != 0:
		return fmt.Errorf("backend: window size %#x is not a multiple of %#x: %w", s.WindowSize, WindowAlignment, cudaerr.InvalidValue)
	case s.WindowBase+s.WindowSize < s.WindowBase:
		return fmt.Errorf("backend: window [%#x, +%#x) wraps around the address space: %w", s.WindowBase, s.WindowSize, cudaerr.InvalidValue)
	case s.MemoryQuota > s.WindowSize:
		return fmt.Errorf("backend: memory quota %d exceeds window size %d: %w", s.MemoryQuota, s.WindowSize, cudaerr.InvalidValue)
	}
	return nil
}

// WindowEnd returns the first address past the window.
func (s DeviceSpec) WindowEnd() uint64 { return s.WindowBase + s.WindowSize }

// Overlaps reports whether the windows of s and o share an address.
func (s DeviceSpec) Overlaps(o DeviceSpec) bool {
	return s.WindowBase < o.WindowEnd() && o.WindowBase < s.WindowEnd()
}
