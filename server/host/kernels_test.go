package host

import (
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
