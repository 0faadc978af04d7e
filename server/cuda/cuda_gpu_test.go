//go:build cuda && cgo

package cuda

import (
	"context"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
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

// PTX written for these tests: add_one adds 1 to each of n 32-bit words at
// p; fill stores v to each of n words at p (its parameters are laid out
// with padding: u32 at 0, u64 at 8, u32 at 16); crash stores to address 8.
const testPTX = `
.version 7.0
.target sm_70
.address_size 64

.visible .entry add_one(
	.param .u64 add_one_p,
	.param .u32 add_one_n
)
{
	.reg .pred %p<2>;
	.reg .b32 %r<8>;
	.reg .b64 %rd<5>;

	ld.param.u64 %rd1, [add_one_p];
	ld.param.u32 %r1, [add_one_n];
	mov.u32 %r2, %ctaid.x;
	mov.u32 %r3, %ntid.x;
	mov.u32 %r4, %tid.x;
	mad.lo.s32 %r5, %r2, %r3, %r4;
	setp.ge.u32 %p1, %r5, %r1;
	@%p1 bra DONE;
	cvta.to.global.u64 %rd2, %rd1;
	mul.wide.u32 %rd3, %r5, 4;
	add.s64 %rd4, %rd2, %rd3;
	ld.global.u32 %r6, [%rd4];
	add.s32 %r7, %r6, 1;
	st.global.u32 [%rd4], %r7;
DONE:
	ret;
}

.visible .entry fill(
	.param .u32 fill_v,
	.param .u64 fill_p,
	.param .u32 fill_n
)
{
	.reg .pred %p<2>;
	.reg .b32 %r<7>;
	.reg .b64 %rd<5>;

	ld.param.u32 %r1, [fill_v];
	ld.param.u64 %rd1, [fill_p];
	ld.param.u32 %r2, [fill_n];
	mov.u32 %r3, %ctaid.x;
	mov.u32 %r4, %ntid.x;
	mov.u32 %r5, %tid.x;
	mad.lo.s32 %r6, %r3, %r4, %r5;
	setp.ge.u32 %p1, %r6, %r2;
	@%p1 bra FILLED;
	cvta.to.global.u64 %rd2, %rd1;
	mul.wide.u32 %rd3, %r6, 4;
	add.s64 %rd4, %rd2, %rd3;
	st.global.u32 [%rd4], %r1;
FILLED:
	ret;
}

.visible .entry crash()
{
	.reg .b32 %r<2>;
	.reg .b64 %rd<2>;

	mov.u64 %rd1, 8;
	mov.u32 %r1, 1;
	st.global.u32 [%rd1], %r1;
	ret;
}
`

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

func TestPTXKernel(t *testing.T) {
	requireGPU(t)
	b := newGPUBackend(t)
	defer b.Close()
	d := openTestDevice(t, b)
	t.Logf("host functions off the driver's callback thread: %v; peers with mapped access: %d",
		d.g.waitValue.Load(), len(d.g.access)-1)

	m, err := d.LoadModule([]byte(testPTX))
	if err != nil {
		t.Fatalf("LoadModule: %v", err)
	}
	addOne, err := d.Function(m, "add_one")
	if err != nil {
		t.Fatalf("Function(add_one): %v", err)
	}
	fill, err := d.Function(m, "fill")
	if err != nil {
		t.Fatalf("Function(fill): %v", err)
	}
	if _, err := d.Function(m, "no_such_kernel"); cudaerr.Code(err) != cudaerr.SymbolNotFound {
		t.Fatalf("Function(no_such_kernel) = %v, want cudaErrorSymbolNotFound", err)
	}

	layouts := []struct {
		name string
		f    Function
		want []ParamInfo
	}{
		{"add_one", addOne, []ParamInfo{{0, 8}, {8, 4}}},
		{"fill", fill, []ParamInfo{{0, 4}, {8, 8}, {16, 4}}},
	}
	for _, l := range layouts {
		t.Run("params "+l.name, func(t *testing.T) {
			got, err := d.FuncParams(l.f)
			if err != nil {
				t.Fatalf("FuncParams: %v", err)
			}
			if len(got) != len(l.want) {
				t.Fatalf("FuncParams = %v, want %v", got, l.want)
			}
			for i := range got {
				if got[i] != l.want[i] {
					t.Fatalf("FuncParams = %v, want %v", got, l.want)
				}
			}
		})
	}
	if regs, err := d.FuncAttribute(addOne, FuncAttrNumRegs); err != nil || regs <= 0 {
		t.Errorf("FuncAttribute(NumRegs) = %d, %v", regs, err)
	}

	const n = 100003 // not a multiple of the block size
	p, err := d.Malloc(4 * n)
	if err != nil {
		t.Fatal(err)
	}
	s, err := d.StreamCreate(backend.StreamNonBlocking, 0)
	if err != nil {
		t.Fatal(err)
	}
	grid := Dim3{(n + 255) / 256, 1, 1}
	block := Dim3{256, 1, 1}

	// fill with 41, then add one twice: every word must be 43.
	args := make([]byte, 20)
	binary.LittleEndian.PutUint32(args[0:], 41)
	binary.LittleEndian.PutUint64(args[8:], uint64(p))
	binary.LittleEndian.PutUint32(args[16:], n)
	if err := d.LaunchKernel(fill, grid, block, 0, s, args); err != nil {
		t.Fatalf("LaunchKernel(fill): %v", err)
	}
	args = make([]byte, 12)
	binary.LittleEndian.PutUint64(args[0:], uint64(p))
	binary.LittleEndian.PutUint32(args[8:], n)
	for range 2 {
		if err := d.LaunchKernel(addOne, grid, block, 0, s, args); err != nil {
			t.Fatalf("LaunchKernel(add_one): %v", err)
		}
		clear(args) // the launch copied them
		binary.LittleEndian.PutUint64(args[0:], uint64(p))
		binary.LittleEndian.PutUint32(args[8:], n)
	}
	out := make([]byte, 4*n)
	if err := d.MemcpyDtoHAsync(out, p, s); err != nil {
		t.Fatal(err)
	}
	if err := d.StreamSynchronize(testCtx(t), s); err != nil {
		t.Fatalf("StreamSynchronize: %v", err)
	}
	for i := range n {
		if v := binary.LittleEndian.Uint32(out[4*i:]); v != 43 {
			t.Fatalf("word %d = %d, want 43", i, v)
		}
	}

	// A launch the driver refuses (1025 threads per block) is reported by
	// the next synchronizing call, once.
	if err := d.LaunchKernel(addOne, Dim3{1, 1, 1}, Dim3{1025, 1, 1}, 0, s, args); err != nil {
		t.Fatalf("LaunchKernel(1025 threads) = %v at enqueue; want the error deferred", err)
	}
	if err := d.StreamSynchronize(testCtx(t), s); cudaerr.Code(err) != cudaerr.InvalidValue {
		t.Fatalf("StreamSynchronize after a bad launch = %v, want cudaErrorInvalidValue", err)
	}
	if err := d.StreamSynchronize(testCtx(t), s); err != nil {
		t.Fatalf("second StreamSynchronize = %v, want the error reported once", err)
	}

	if err := d.UnloadModule(m); err != nil {
		t.Fatalf("UnloadModule: %v", err)
	}
	if err := d.LaunchKernel(addOne, grid, block, 0, s, args); cudaerr.Code(err) != cudaerr.InvalidResourceHandle {
		t.Fatalf("LaunchKernel after UnloadModule = %v, want cudaErrorInvalidResourceHandle", err)
	}
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

// TestStickyError runs a kernel that faults in a child process (a lost
// context may leave the process unable to use CUDA again) and checks that
// the fault is reported, sticks, and that closing and reopening works.
func TestStickyError(t *testing.T) {
	requireGPU(t)
	if os.Getenv("XGPU_CUDA_STICKY_CHILD") == "1" {
		stickyChild(t)
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestStickyError$", "-test.v")
	cmd.Env = append(os.Environ(), "XGPU_CUDA_STICKY_CHILD=1")
	out, err := cmd.CombinedOutput()
	t.Logf("child:\n%s", out)
	if err != nil {
		t.Fatalf("child: %v", err)
	}
}

func stickyChild(t *testing.T) {
	b := newGPUBackend(t)
	defer b.Close()
	d := openTestDevice(t, b)
	m, err := d.LoadModule([]byte(testPTX))
	if err != nil {
		t.Fatal(err)
	}
	crash, err := d.Function(m, "crash")
	if err != nil {
		t.Fatal(err)
	}
	if err := d.LaunchKernel(crash, Dim3{1, 1, 1}, Dim3{1, 1, 1}, 0, backend.LegacyStream, nil); err != nil {
		t.Fatalf("LaunchKernel(crash) = %v at enqueue", err)
	}
	err = d.Synchronize(testCtx(t))
	code := cudaerr.Code(err)
	if !cudaerr.Sticky(code) {
		t.Fatalf("Synchronize after a faulting kernel = %v, want a sticky error", err)
	}
	if _, err := d.Malloc(1); cudaerr.Code(err) != code {
		t.Fatalf("Malloc after the fault = %v, want %v", err, code)
	}
	if err := d.Close(); err != nil {
		t.Fatalf("Close after the fault: %v", err)
	}
	// The last Device closed: the primary context was released. A new one
	// may or may not be usable in this process; report what the driver does.
	d2, err := b.Open(backend.DeviceSpec{Index: 0, WindowBase: backendtest.WindowBase, WindowSize: backendtest.WindowSize, MemoryQuota: 1 << 20})
	if err != nil {
		t.Logf("reopen after the fault: %v", err)
		return
	}
	defer d2.Close()
	_, err = d2.Malloc(4096)
	t.Logf("Malloc on a fresh context after the fault: %v", err)
}
