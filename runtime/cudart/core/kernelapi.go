package core

import (
	"fmt"

	"github.com/xgpu/xgpu/internal/cudaerr"
	"github.com/xgpu/xgpu/runtime"
)

// Kernel attributes: the values of cudaFuncAttributes' fields as
// CUfunction_attribute numbers them (the cudaFuncAttribute values where
// the runtime has them).
const (
	FuncAttrMaxThreadsPerBlock            = 0
	FuncAttrSharedSizeBytes               = 1
	FuncAttrConstSizeBytes                = 2
	FuncAttrLocalSizeBytes                = 3
	FuncAttrNumRegs                       = 4
	FuncAttrPTXVersion                    = 5
	FuncAttrBinaryVersion                 = 6
	FuncAttrCacheModeCA                   = 7
	FuncAttrMaxDynamicSharedSizeBytes     = 8
	FuncAttrPreferredSharedMemoryCarveout = 9
)

// MaxKernelArgs is the largest packed argument buffer of a launch (the
// parameter space of a CUDA kernel since CUDA 12.1).
const MaxKernelArgs = 32764

// Param is where one kernel parameter lies in the packed argument buffer:
// Size bytes at Offset.
type Param struct {
	Offset, Size uint32
}

// argsSize checks a parameter layout from the server and returns the
// packed buffer's length: parameters in order, not overlapping, within
// MaxKernelArgs.
func argsSize(ps []Param) (int, error) {
	end := uint64(0)
	for i, p := range ps {
		if uint64(p.Offset) < end || p.Size == 0 || uint64(p.Offset)+uint64(p.Size) > MaxKernelArgs {
			return 0, fmt.Errorf("core: parameter %d at [%d, +%d) of the server's layout is out of order or bounds: %w",
				i, p.Offset, p.Size, cudaerr.InvalidKernelImage)
		}
		end = uint64(p.Offset) + uint64(p.Size)
	}
	return int(end), nil
}

// LaunchFlags modify a launch (LaunchEx, FunctionLaunchEx; the flags of
// xgpu_launch_kernel_ex).
type LaunchFlags uint32

// Launch flags.
const (
	// LaunchCooperative launches with every block of the grid resident at
	// once, so that the blocks may synchronize grid-wide
	// (cudaLaunchCooperativeKernel, the cooperative launch attribute). A
	// grid larger than the device holds at once fails with
	// cudaErrorCooperativeLaunchTooLarge, reported as launch errors are.
	LaunchCooperative LaunchFlags = 1 << iota

	launchFlagsKnown = LaunchCooperative
)

// checkLaunchFlags refuses flags this package does not know.
func checkLaunchFlags(f LaunchFlags) error {
	if f&^launchFlagsKnown != 0 {
		return fmt.Errorf("core: launch flags %#x: %w", uint32(f), cudaerr.InvalidValue)
	}
	return nil
}

// moduleRef and functionRef are the runtime's handles of a module and a
// kernel on one device, opaque to the registry.
type (
	moduleRef   any
	functionRef any
)

// kernelAPI is the part of the runtime client the kernel path uses: the
// module and kernel calls of one client, device by device.
type kernelAPI interface {
	// LoadModule makes image (a fat binary) a module of dev, uploading
	// it to dev's server unless the server already holds it.
	LoadModule(dev int, image []byte) (moduleRef, error)
	// UnloadModule drops one load of m.
	UnloadModule(dev int, m moduleRef) error
	// Function returns kernel name of m on dev with its parameter layout.
	Function(dev int, m moduleRef, name string) (functionRef, []Param, error)
	// Launch queues f on stream st; coop makes it a cooperative launch.
	Launch(dev int, f functionRef, grid, block [3]uint32, sharedMem uint32, coop bool, st runtime.Stream, args []byte) error
	FuncAttribute(dev int, f functionRef, attr int) (int, error)
	SetFuncAttribute(dev int, f functionRef, attr, value int) error
	// Global returns the address and size of variable name of m on dev.
	Global(dev int, m moduleRef, name string) (addr, size uint64, err error)
}

// kernelDevice checks dev and returns the kernel API of the client.
func (s *Shim) kernelDevice(dev int) (kernelAPI, error) {
	c, err := s.device(dev)
	if err != nil {
		return nil, err
	}
	if s.kapi != nil {
		return s.kapi, nil
	}
	return runtimeKernels{c}, nil
}
