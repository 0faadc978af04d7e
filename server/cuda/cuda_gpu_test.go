//go:build cuda && cgo

package cuda

import (
	"context"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xgpu/xgpu/internal/cudaerr"
	"github.com/xgpu/xgpu/server/backend"
	"github.com/xgpu/xgpu/server/backend/backendtest"
)

// requireGPU skips the test unless the CUDA driver loads, initializes and
// sees at least one device.
func requireGPU(t *testing.T) *Driver {
	t.Helper()
	d, err := Open("")
	if err != nil {
		t.Skipf("no CUDA driver: %v", err)
	}
	if err := d.Init(); err != nil {
		t.Skipf("cuInit: %v", err)
	}
	if n, err := d.DeviceCount(); err != nil || n == 0 {
		t.Skipf("no CUDA device (%d, %v)", n, err)
	}
	return d
}

func newGPUBackend(t *testing.T) *Backend {
	t.Helper()
	b, err := New(Config{})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return b.(*Backend)
}

func TestConformance(t *testing.T) {
	requireGPU(t)
	backendtest.Run(t, func(t *testing.T) backend.Backend { return newGPUBackend(t) })
}

func TestDriverOnGPU(t *testing.T) {
	d := requireGPU(t)
	v, err := d.Version()
	if err != nil || v < 12000 {
		t.Fatalf("Version() = %d, %v; want CUDA 12 or later", v, err)
	}
	dev, err := d.DeviceGet(0)
	if err != nil {
		t.Fatal(err)
	}
	name, err := d.DeviceName(dev)
	if err != nil || name == "" {
		t.Fatalf("DeviceName = %q, %v", name, err)
	}
	uuid, err := d.DeviceUUID(dev)
	if err != nil || uuid == (UUID{}) {
		t.Fatalf("DeviceUUID = %v, %v", uuid, err)
	}
	bus, err := d.DevicePCIBusID(dev)
	if err != nil || len(nvmlBusID(bus)) != len("00000000:00:00.0") {
		t.Fatalf("DevicePCIBusID = %q (NVML form %q), %v", bus, nvmlBusID(bus), err)
	}
	gran, err := d.MemGetAllocationGranularity(dev, GranularityMinimum)
	if err != nil || gran == 0 || backend.WindowAlignment%gran != 0 {
		t.Fatalf("granularity = %d, %v; want a divisor of %d", gran, err, backend.WindowAlignment)
	}
	vmm, err := d.DeviceAttribute(dev, AttrVirtualMemoryManagementSupport)
	if err != nil || vmm != 1 {
		t.Fatalf("VMM support attribute = %d, %v", vmm, err)
	}
	t.Logf("driver %d, %s %s at %s (%s), VMM granularity %d, cuFuncGetParamInfo %v",
		v, name, uuid, bus, nvmlBusID(bus), gran, d.Has("cuFuncGetParamInfo"))

	// A driver error maps to its Result and to the runtime's code.
	_, err = d.DeviceGet(1 << 19)
	if !errors.Is(err, ErrInvalidDevice) || cudaerr.Code(err) != cudaerr.InvalidDevice {
		t.Fatalf("DeviceGet(1<<19) = %v, want CUDA_ERROR_INVALID_DEVICE", err)
	}
}

func openTestDevice(t *testing.T, b *Backend) *DeviceContext {
	t.Helper()
	dev, err := b.Open(backend.DeviceSpec{Index: 0, WindowBase: backendtest.WindowBase, WindowSize: backendtest.WindowSize, MemoryQuota: 64 << 20})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { dev.Close() })
	return dev.(*DeviceContext)
}

func testCtx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func gpuBackend(t *testing.T) backend.Backend { return newGPUBackend(t) }

// TestKernelConformance runs the kernel suite on the GPU with the PTX
// above.
func TestKernelConformance(t *testing.T) {
	requireGPU(t)
	backendtest.RunKernels(t, gpuBackend, []byte(backendtest.KernelsPTX))
}

// TestLaunchErrorDeferred checks that a launch the driver refuses when it
// issues it (1025 threads per block) is reported by the next
// synchronizing call, once.
func TestLaunchErrorDeferred(t *testing.T) {
	requireGPU(t)
	b := newGPUBackend(t)
	defer b.Close()
	d := openTestDevice(t, b)
	t.Logf("host functions off the driver's callback thread: %v; peers with mapped access: %d; reduction kernels: %v",
		d.g.waitValue.Load(), len(d.g.access)-1, d.ReducerErr())
	m, err := d.LoadModule([]byte(backendtest.KernelsPTX))
	if err != nil {
		t.Fatalf("LoadModule: %v", err)
	}
	addOne, err := d.Function(m, backendtest.KernelAddOne)
	if err != nil {
		t.Fatal(err)
	}
	if regs, err := d.FuncAttribute(addOne, FuncAttrNumRegs); err != nil || regs <= 0 {
		t.Errorf("FuncAttribute(NumRegs) = %d, %v", regs, err)
	}
	p, err := d.Malloc(4096)
	if err != nil {
		t.Fatal(err)
	}
	args := make([]byte, 12)
	binary.LittleEndian.PutUint64(args[0:], uint64(p))
	binary.LittleEndian.PutUint32(args[8:], 16)
	s := backend.LegacyStream
	if err := d.LaunchKernel(addOne, Dim3{X: 1, Y: 1, Z: 1}, Dim3{X: 1025, Y: 1, Z: 1}, 0, s, args); err != nil {
		t.Fatalf("LaunchKernel(1025 threads) = %v at enqueue; want the error deferred", err)
	}
	if err := d.StreamSynchronize(testCtx(t), s); cudaerr.Code(err) != cudaerr.InvalidValue {
		t.Fatalf("StreamSynchronize after a bad launch = %v, want cudaErrorInvalidValue", err)
	}
	if err := d.StreamSynchronize(testCtx(t), s); err != nil {
		t.Fatalf("second StreamSynchronize = %v, want the error reported once", err)
	}
}

// TestReduce runs the reduction suite on the GPU: every element type and
// operator of the kernels the gpu loads at start, against the CPU
// reference. When nvcc is on the PATH, the kernels are compiled afresh
// from kernels/reduce.cu and the embedded PTX must match them.
func TestReduce(t *testing.T) {
	requireGPU(t)
	if fresh := compileReducePTX(t); fresh != nil {
		if !samePTX(t, fresh, reducePTX) {
			t.Errorf("kernels/reduce_sm90.ptx is not what nvcc makes of kernels/reduce.cu: run make generate-ptx; testing the fresh PTX")
			reduceImage = fresh
			defer func() { reduceImage = reducePTX }()
		}
	}
	b := newGPUBackend(t)
	d := openTestDevice(t, b)
	if err := d.ReducerErr(); err != nil {
		b.Close()
		t.Fatalf("reduction kernels: %v", err)
	}
	b.Close()
	backendtest.RunReduce(t, gpuBackend)
}

// compileReducePTX runs nvcc as make generate-ptx does; nil without nvcc.
func compileReducePTX(t *testing.T) []byte {
	nvcc, err := exec.LookPath("nvcc")
	if err != nil {
		t.Logf("no nvcc: testing the embedded PTX only")
		return nil
	}
	out := filepath.Join(t.TempDir(), "reduce.ptx")
	cmd := exec.Command(nvcc, "-ptx", "-arch=compute_90", "-o", out, "kernels/reduce.cu")
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nvcc: %v\n%s", err, msg)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// samePTX compares two PTX texts; when they come from different nvcc
// releases (their header comments differ) only that is logged.
func samePTX(t *testing.T, a, b []byte) bool {
	if string(a) == string(b) {
		return true
	}
	release := func(p []byte) string {
		for _, l := range strings.Split(string(p), "\n") {
			if strings.HasPrefix(l, "// Cuda compilation tools") {
				return l
			}
		}
		return ""
	}
	if release(b) == "" {
		return false // not nvcc output: the placeholder of a tree never generated
	}
	if ra, rb := release(a), release(b); ra != rb {
		t.Logf("embedded PTX from %q, this machine's nvcc is %q: not compared", rb, ra)
		return true
	}
	return false
}

// TestWindowPlacement checks that allocations land in the window asked
// for, that a second window is placed too, and that a taken window fails.
func TestWindowPlacement(t *testing.T) {
	requireGPU(t)
	b := newGPUBackend(t)
	defer b.Close()
	d := openTestDevice(t, b)
	for _, size := range []uint64{1, 4096, 3 << 20} {
		p, err := d.Malloc(size)
		if err != nil {
			t.Fatal(err)
		}
		if uint64(p) < backendtest.WindowBase || uint64(p)+size > backendtest.WindowBase+backendtest.WindowSize {
			t.Fatalf("Malloc(%d) = %#x, outside the window", size, uint64(p))
		}
	}
	// Another Backend in this process cannot reserve the same range.
	b2 := newGPUBackend(t)
	defer b2.Close()
	d2, err := b2.Open(backend.DeviceSpec{Index: 0, WindowBase: backendtest.WindowBase, WindowSize: backendtest.WindowSize})
	if err == nil {
		d2.Close()
		t.Fatal("Open of a window another Backend holds succeeded")
	}
	var oe *backend.OpError
	if !errors.As(err, &oe) || oe.Op != "Open" {
		t.Fatalf("Open of a taken window = %v, want an *OpError of Open", err)
	}
	t.Logf("Open of a taken window: %v", err)
}

// TestKernelFault runs backendtest.RunKernelFault in a child process (a
// lost context may leave the process unable to use CUDA again), then
// checks in the same child that a fresh context after the fault works or
// reports what the driver does.
func TestKernelFault(t *testing.T) {
	requireGPU(t)
	if os.Getenv("XGPU_CUDA_FAULT_CHILD") == "1" {
		backendtest.RunKernelFault(t, gpuBackend, []byte(backendtest.KernelsPTX))
		b := newGPUBackend(t)
		defer b.Close()
		d2, err := b.Open(backend.DeviceSpec{Index: 0, WindowBase: backendtest.WindowBase, WindowSize: backendtest.WindowSize, MemoryQuota: 1 << 20})
		if err != nil {
			t.Logf("reopen after the fault: %v", err)
			return
		}
		defer d2.Close()
		_, err = d2.Malloc(4096)
		t.Logf("Malloc on a fresh context after the fault: %v", err)
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestKernelFault$", "-test.v")
	cmd.Env = append(os.Environ(), "XGPU_CUDA_FAULT_CHILD=1")
	out, err := cmd.CombinedOutput()
	t.Logf("child:\n%s", out)
	if err != nil {
		t.Fatalf("child: %v", err)
	}
}
