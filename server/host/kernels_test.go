package host

import (
	"context"
	"encoding/binary"
	"testing"

	"github.com/xgpu/xgpu/internal/cudaerr"
	"github.com/xgpu/xgpu/server/backend"
	"github.com/xgpu/xgpu/server/backend/backendtest"
)

// testImage defines the kernels and the global the kernel suite needs.
var testImage = append(ModuleImage(backendtest.KernelFill, backendtest.KernelAddOne, backendtest.KernelFault),
	"global "+backendtest.GlobalCounter+" 8\n"...)

func newSuiteBackend(t *testing.T) backend.Backend {
	b, err := New(Config{Devices: 2, Memory: 256 << 20, HostID: "kernels"})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestKernelConformance(t *testing.T) {
	backendtest.RunKernels(t, newSuiteBackend, testImage)
}

func TestKernelFault(t *testing.T) {
	backendtest.RunKernelFault(t, newSuiteBackend, testImage)
}

func TestReduceConformance(t *testing.T) {
	backendtest.RunReduce(t, newSuiteBackend)
}

func TestModuleImages(t *testing.T) {
	tests := []struct {
		name  string
		image string
		want  cudaerr.Error
	}{
		{"library kernels", "xgpu-host-module v1\nkernel fill_u32\n\n# a comment\nkernel add_one_u32 # trailing comment\n", cudaerr.Success},
		{"header only", "xgpu-host-module v1", cudaerr.Success},
		{"global", "xgpu-host-module v1\nglobal table 4096\n", cudaerr.Success},
		{"kernel outside the library", "xgpu-host-module v1\nkernel matmul\n", cudaerr.NoKernelImageForDevice},
		{"PTX", "//\n.version 8.0\n.target sm_90\n.address_size 64\n.visible .entry k() { ret; }\n", cudaerr.NoKernelImageForDevice},
		{"cubin", "\x7fELF\x02\x01\x01\x33", cudaerr.NoKernelImageForDevice},
		{"fatbin", "\x50\xed\x55\xba\x01\x00\x10\x00", cudaerr.NoKernelImageForDevice},
		{"other text", "hello", cudaerr.InvalidKernelImage},
		{"later version", "xgpu-host-module v2\nkernel fill_u32\n", cudaerr.InvalidKernelImage},
		{"bad line", "xgpu-host-module v1\nkernels fill_u32\n", cudaerr.InvalidKernelImage},
		{"global of size zero", "xgpu-host-module v1\nglobal g 0\n", cudaerr.InvalidKernelImage},
		{"global too large", "xgpu-host-module v1\nglobal g 99999999999\n", cudaerr.InvalidKernelImage},
		{"empty", "", cudaerr.InvalidValue},
	}
	d := openDevice(t, newBackend(t, Config{Devices: 1, Memory: 256 << 20}), 0, 0, 64<<20)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before, _, _ := d.MemGetInfo()
			m, err := d.LoadModule([]byte(tt.image))
			if got := cudaerr.Code(err); got != tt.want {
				t.Fatalf("LoadModule = %v, want %v", err, tt.want)
			}
			if err == nil {
				if err := d.UnloadModule(m); err != nil {
					t.Fatal(err)
				}
			}
			if after, _, _ := d.MemGetInfo(); after != before {
				t.Fatalf("free memory %d after load and unload, %d before", after, before)
			}
		})
	}
}

func TestKernelOutOfBoundsFaults(t *testing.T) {
	d := openDevice(t, newBackend(t, Config{Devices: 1, Memory: 256 << 20}), 0, 0, 64<<20)
	m, err := d.LoadModule(ModuleImage("fill_u32"))
	if err != nil {
		t.Fatal(err)
	}
	f, err := d.Function(m, "fill_u32")
	if err != nil {
		t.Fatal(err)
	}
	p, err := d.Malloc(64)
	if err != nil {
		t.Fatal(err)
	}
	// 17 words do not fit in 64 bytes: the launch is accepted and the
	// kernel faults when it runs, as on a GPU.
	args := make([]byte, 16)
	binary.LittleEndian.PutUint64(args, uint64(p))
	binary.LittleEndian.PutUint32(args[8:], 17)
	one, threads := backend.Dim3{X: 1, Y: 1, Z: 1}, backend.Dim3{X: 32, Y: 1, Z: 1}
	if err := d.LaunchKernel(f, one, threads, 0, backend.LegacyStream, args); err != nil {
		t.Fatalf("LaunchKernel = %v, want the fault deferred", err)
	}
	if err := d.Synchronize(ctx(t)); cudaerr.Code(err) != cudaerr.IllegalAddress {
		t.Fatalf("Synchronize = %v, want cudaErrorIllegalAddress", err)
	}
}

func TestCooperativeLaunchLimit(t *testing.T) {
	const sms = 4
	d := openDevice(t, newBackend(t, Config{Devices: 1, Memory: 256 << 20, Multiprocessors: sms}), 0, 0, 64<<20)
	m, err := d.LoadModule(ModuleImage("fill_u32"))
	if err != nil {
		t.Fatal(err)
	}
	f, err := d.Function(m, "fill_u32")
	if err != nil {
		t.Fatal(err)
	}
	if err := d.SetFuncAttribute(f, backend.FuncAttrMaxDynamicSharedSizeBytes, maxSharedOptin); err != nil {
		t.Fatal(err)
	}
	p, err := d.Malloc(4)
	if err != nil {
		t.Fatal(err)
	}
	args := make([]byte, 16)
	binary.LittleEndian.PutUint64(args, uint64(p))
	binary.LittleEndian.PutUint32(args[8:], 1)
	// Blocks per SM of an H200 for a kernel of 16 registers per thread.
	tests := []struct {
		name   string
		block  backend.Dim3
		shared uint32
		perSM  uint64
	}{
		{"one thread: the block limit", backend.Dim3{X: 1, Y: 1, Z: 1}, 0, 32},
		{"one warp", backend.Dim3{X: 32, Y: 1, Z: 1}, 0, 32},
		{"256 threads: the thread limit", backend.Dim3{X: 256, Y: 1, Z: 1}, 0, 8},
		{"2-D block of 1024", backend.Dim3{X: 32, Y: 32, Z: 1}, 0, 2},
		{"100 KiB of shared memory", backend.Dim3{X: 256, Y: 1, Z: 1}, 100 << 10, 2},
		{"one byte of shared memory", backend.Dim3{X: 1, Y: 1, Z: 1}, 1, 32},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			most := d.MaxCooperativeBlocks(tt.block, tt.shared)
			if most != tt.perSM*sms {
				t.Fatalf("MaxCooperativeBlocks = %d, want %d", most, tt.perSM*sms)
			}
			fits := backend.Dim3{X: uint32(most), Y: 1, Z: 1}
			if err := d.LaunchCooperativeKernel(f, fits, tt.block, tt.shared, backend.LegacyStream, args); err != nil {
				t.Fatalf("cooperative launch of %v blocks: %v", fits, err)
			}
			// The limit counts the blocks of every grid dimension.
			over := backend.Dim3{X: uint32(most/2 + 1), Y: 2, Z: 1}
			err := d.LaunchCooperativeKernel(f, over, tt.block, tt.shared, backend.LegacyStream, args)
			if !backend.Is(err, "LaunchCooperativeKernel", cudaerr.CooperativeLaunchTooLarge) {
				t.Fatalf("cooperative launch of %v blocks = %v, want cudaErrorCooperativeLaunchTooLarge", over, err)
			}
			// The same grid launched ordinarily is fine.
			if err := d.LaunchKernel(f, over, tt.block, tt.shared, backend.LegacyStream, args); err != nil {
				t.Fatalf("ordinary launch of %v blocks: %v", over, err)
			}
		})
	}
	if got := d.MaxCooperativeBlocks(backend.Dim3{X: 1025, Y: 1, Z: 1}, 0); got != 0 {
		t.Errorf("MaxCooperativeBlocks of a block too large = %d, want 0", got)
	}
	if err := d.Synchronize(context.Background()); err != nil {
		t.Fatal(err)
	}
}
