package backendtest

import (
	"encoding/binary"
	"errors"
	"testing"

	"github.com/xgpu/xgpu/internal/cudaerr"
	"github.com/xgpu/xgpu/server/backend"
)

// The kernels a module image given to RunKernels must define, with these
// parameter layouts. Each kernel runs one thread per element: element i is
// processed by thread i of the launch (blockIdx.x*blockDim.x+threadIdx.x
// over a one-dimensional grid) if i < n, so a launch of fewer threads
// leaves the elements past them alone.
const (
	// KernelFill is fill_u32(uint32_t *p, uint32_t n, uint32_t v): p[i] = v.
	// Parameters {0, 8}, {8, 4}, {12, 4}.
	KernelFill = "fill_u32"
	// KernelAddOne is add_one_u32(uint32_t *p, uint32_t n): p[i]++.
	// Parameters {0, 8}, {8, 4}.
	KernelAddOne = "add_one_u32"
	// KernelFault is fault(): it stores to an address no context maps,
	// which makes the context fail with cudaErrorIllegalAddress.
	KernelFault = "fault"
	// GlobalCounter is an 8-byte global variable of the image.
	GlobalCounter = "counter"
)

// KernelsPTX is the suite's kernels and global in PTX, for backends that
// run CUDA code. fault stores to address 8.
const KernelsPTX = `
.version 7.0
.target sm_70
.address_size 64

.visible .global .align 8 .u64 counter;

.visible .entry fill_u32(
	.param .u64 fill_u32_p,
	.param .u32 fill_u32_n,
	.param .u32 fill_u32_v
)
{
	.reg .pred %p<2>;
	.reg .b32 %r<8>;
	.reg .b64 %rd<5>;

	ld.param.u64 %rd1, [fill_u32_p];
	ld.param.u32 %r1, [fill_u32_n];
	ld.param.u32 %r2, [fill_u32_v];
	mov.u32 %r3, %ctaid.x;
	mov.u32 %r4, %ntid.x;
	mov.u32 %r5, %tid.x;
	mad.lo.s32 %r6, %r3, %r4, %r5;
	setp.ge.u32 %p1, %r6, %r1;
	@%p1 bra FILLED;
	cvta.to.global.u64 %rd2, %rd1;
	mul.wide.u32 %rd3, %r6, 4;
	add.s64 %rd4, %rd2, %rd3;
	st.global.u32 [%rd4], %r2;
FILLED:
	ret;
}

.visible .entry add_one_u32(
	.param .u64 add_one_u32_p,
	.param .u32 add_one_u32_n
)
{
	.reg .pred %p<2>;
	.reg .b32 %r<8>;
	.reg .b64 %rd<5>;

	ld.param.u64 %rd1, [add_one_u32_p];
	ld.param.u32 %r1, [add_one_u32_n];
	mov.u32 %r2, %ctaid.x;
	mov.u32 %r3, %ntid.x;
	mov.u32 %r4, %tid.x;
	mad.lo.s32 %r5, %r2, %r3, %r4;
	setp.ge.u32 %p1, %r5, %r1;
	@%p1 bra ADDED;
	cvta.to.global.u64 %rd2, %rd1;
	mul.wide.u32 %rd3, %r5, 4;
	add.s64 %rd4, %rd2, %rd3;
	ld.global.u32 %r6, [%rd4];
	add.s32 %r7, %r6, 1;
	st.global.u32 [%rd4], %r7;
ADDED:
	ret;
}

.visible .entry fault()
{
	.reg .b32 %r<2>;
	.reg .b64 %rd<2>;

	mov.u64 %rd1, 8;
	mov.u32 %r1, 1;
	st.global.u32 [%rd1], %r1;
	ret;
}
`

var (
	fillParams   = []backend.Param{{Offset: 0, Size: 8}, {Offset: 8, Size: 4}, {Offset: 12, Size: 4}}
	addOneParams = []backend.Param{{Offset: 0, Size: 8}, {Offset: 8, Size: 4}}
)

// kernelEnv is one subtest's Device and the suite's kernels loaded on it.
type kernelEnv struct {
	*env
	d              backend.Device
	k              backend.Kernels
	m              backend.Module
	fill, add, bad backend.Function
}

func newKernelEnv(t *testing.T, newBackend func(t *testing.T) backend.Backend, image []byte) *kernelEnv {
	t.Helper()
	e := newEnv(t, newBackend)
	d := e.open(0, quota)
	k, ok := d.(backend.Kernels)
	if !ok {
		t.Skipf("the %s backend's Device does not implement backend.Kernels", e.b.Name())
	}
	m, err := k.LoadModule(image)
	must(t, "LoadModule", err)
	ke := &kernelEnv{env: e, d: d, k: k, m: m}
	ke.fill = ke.function(t, KernelFill)
	ke.add = ke.function(t, KernelAddOne)
	ke.bad = ke.function(t, KernelFault)
	return ke
}

func (ke *kernelEnv) function(t *testing.T, name string) backend.Function {
	t.Helper()
	f, err := ke.k.Function(ke.m, name)
	must(t, "Function("+name+")", err)
	return f
}

func fillArgs(p backend.DevicePtr, n, v uint32) []byte {
	a := make([]byte, 16)
	binary.LittleEndian.PutUint64(a, uint64(p))
	binary.LittleEndian.PutUint32(a[8:], n)
	binary.LittleEndian.PutUint32(a[12:], v)
	return a
}

func addArgs(p backend.DevicePtr, n uint32) []byte {
	a := make([]byte, 12)
	binary.LittleEndian.PutUint64(a, uint64(p))
	binary.LittleEndian.PutUint32(a[8:], n)
	return a
}

// grid1 is a one-dimensional launch of at least n threads in blocks of 256.
func grid1(n uint32) (backend.Dim3, backend.Dim3) {
	return backend.Dim3{X: (n + 255) / 256, Y: 1, Z: 1}, backend.Dim3{X: 256, Y: 1, Z: 1}
}

func words(b []byte) []uint32 {
	w := make([]uint32, len(b)/4)
	for i := range w {
		w[i] = binary.LittleEndian.Uint32(b[4*i:])
	}
	return w
}

// RunKernels runs the conformance suite of backend.Kernels: loading
// modules, finding functions, parameter layouts, launches in stream order
// and the errors of bad calls. image is a module image of the backend
// under test that defines KernelFill, KernelAddOne, KernelFault and
// GlobalCounter. A Device that does not implement backend.Kernels skips
// the suite. The fault itself is checked by RunKernelFault, since a
// faulted GPU context may leave its process unable to use the GPU again.
func RunKernels(t *testing.T, newBackend func(t *testing.T) backend.Backend, image []byte) {
	tests := []struct {
		name string
		fn   func(t *testing.T, ke *kernelEnv, image []byte)
	}{
		{"LoadModule", testLoadModule},
		{"Functions", testFunctions},
		{"Launch", testLaunch},
		{"LaunchStreamOrder", testLaunchStreamOrder},
		{"BadLaunches", testBadLaunches},
		{"CooperativeLaunch", testCooperativeLaunch},
		{"Unload", testUnload},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.fn(t, newKernelEnv(t, newBackend, image), image)
		})
	}
}

func testLoadModule(t *testing.T, ke *kernelEnv, image []byte) {
	_, err := ke.k.LoadModule(nil)
	wantErr(t, err, "LoadModule", cudaerr.InvalidValue)
	if _, err := ke.k.LoadModule([]byte("this is no module image\n")); err == nil {
		t.Fatal("LoadModule of text that is no image succeeded")
	} else {
		var oe *backend.OpError
		if !errors.As(err, &oe) || cudaerr.Code(err) == cudaerr.Success {
			t.Fatalf("LoadModule of a bad image: %v, want an *OpError with a CUDA code", err)
		}
	}
	// A second load of the same image is a module of its own.
	m2, err := ke.k.LoadModule(image)
	must(t, "LoadModule again", err)
	if m2 == ke.m || m2 == 0 {
		t.Fatalf("second LoadModule = %#x, first %#x: want a new non-zero handle", uint64(m2), uint64(ke.m))
	}
	if _, err := ke.k.Function(m2, KernelFill); err != nil {
		t.Fatalf("Function on the second module: %v", err)
	}
	must(t, "UnloadModule(second)", ke.k.UnloadModule(m2))
}

func testFunctions(t *testing.T, ke *kernelEnv, _ []byte) {
	layouts := []struct {
		name string
		f    backend.Function
		want []backend.Param
	}{
		{KernelFill, ke.fill, fillParams},
		{KernelAddOne, ke.add, addOneParams},
		{KernelFault, ke.bad, nil},
	}
	for _, l := range layouts {
		t.Run("params of "+l.name, func(t *testing.T) {
			got, err := ke.k.FuncParams(l.f)
			must(t, "FuncParams", err)
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
	if v, err := ke.k.FuncAttribute(ke.fill, backend.FuncAttrMaxThreadsPerBlock); err != nil || v < 1 || v > backend.MaxBlockThreads {
		t.Errorf("FuncAttribute(MaxThreadsPerBlock) = %d, %v", v, err)
	}
	must(t, "SetFuncAttribute(MaxDynamicSharedSizeBytes)", ke.k.SetFuncAttribute(ke.fill, backend.FuncAttrMaxDynamicSharedSizeBytes, 1024))
	if v, err := ke.k.FuncAttribute(ke.fill, backend.FuncAttrMaxDynamicSharedSizeBytes); err != nil || v != 1024 {
		t.Errorf("FuncAttribute(MaxDynamicSharedSizeBytes) after setting 1024 = %d, %v", v, err)
	}
	p, size, err := ke.k.ModuleGlobal(ke.m, GlobalCounter)
	if err != nil || p == 0 || size != 8 {
		t.Errorf("ModuleGlobal(%s) = %#x, %d, %v; want a pointer to 8 bytes", GlobalCounter, uint64(p), size, err)
	}

	tests := []struct {
		name string
		op   string
		call func() error
		want cudaerr.Error
	}{
		{"unknown kernel", "Function", func() error { _, err := ke.k.Function(ke.m, "no_such_kernel"); return err }, cudaerr.SymbolNotFound},
		{"unknown module", "Function", func() error { _, err := ke.k.Function(ke.m+12345, KernelFill); return err }, cudaerr.InvalidResourceHandle},
		{"unknown global", "ModuleGlobal", func() error { _, _, err := ke.k.ModuleGlobal(ke.m, "no_such_global"); return err }, cudaerr.SymbolNotFound},
		{"params of an unknown function", "FuncParams", func() error { _, err := ke.k.FuncParams(ke.fill + 12345); return err }, cudaerr.InvalidResourceHandle},
		{"attribute of an unknown function", "FuncAttribute", func() error {
			_, err := ke.k.FuncAttribute(ke.fill+12345, backend.FuncAttrNumRegs)
			return err
		}, cudaerr.InvalidResourceHandle},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantErr(t, tt.call(), tt.op, tt.want)
		})
	}
}

func testLaunch(t *testing.T, ke *kernelEnv, _ []byte) {
	const n = 100003 // not a multiple of the block size
	p := malloc(t, ke.d, 4*n)
	s, err := ke.d.StreamCreate(backend.StreamNonBlocking, 0)
	must(t, "StreamCreate", err)
	grid, block := grid1(n)
	args := fillArgs(p, n, 41)
	must(t, "LaunchKernel(fill)", ke.k.LaunchKernel(ke.fill, grid, block, 0, s, args))
	clear(args) // the launch copied them
	args = addArgs(p, n)
	for range 2 {
		must(t, "LaunchKernel(add_one)", ke.k.LaunchKernel(ke.add, grid, block, 0, s, args))
	}
	// Fewer threads than elements: only the first 256 are touched.
	must(t, "LaunchKernel(add_one, one block)", ke.k.LaunchKernel(ke.add, backend.Dim3{X: 1, Y: 1, Z: 1}, block, 0, s, args))
	out := make([]byte, 4*n)
	must(t, "MemcpyDtoHAsync", ke.d.MemcpyDtoHAsync(out, p, s))
	must(t, "StreamSynchronize", ke.d.StreamSynchronize(ctx(t), s))
	for i, v := range words(out) {
		want := uint32(43)
		if i < 256 {
			want = 44
		}
		if v != want {
			t.Fatalf("word %d = %d, want %d", i, v, want)
		}
	}

	// Dynamic shared memory and a multi-dimensional block are accepted.
	must(t, "LaunchKernel(shared memory, 2-D block)",
		ke.k.LaunchKernel(ke.fill, backend.Dim3{X: 1, Y: 1, Z: 1}, backend.Dim3{X: 32, Y: 4, Z: 1}, 4096, s, fillArgs(p, 8, 7)))
	must(t, "StreamSynchronize", ke.d.StreamSynchronize(ctx(t), s))
	if got := words(download(t, ke.d, p, 36)); got[0] != 7 || got[7] != 7 || got[8] != 44 {
		t.Fatalf("after fill of 8 words: %v", got)
	}
}

func testLaunchStreamOrder(t *testing.T, ke *kernelEnv, _ []byte) {
	const n = 4096
	p := malloc(t, ke.d, 4*n)
	a, err := ke.d.StreamCreate(backend.StreamNonBlocking, 0)
	must(t, "StreamCreate", err)
	b, err := ke.d.StreamCreate(backend.StreamNonBlocking, 0)
	must(t, "StreamCreate", err)
	ev, err := ke.d.EventCreate(backend.EventDisableTiming)
	must(t, "EventCreate", err)
	grid, threads := grid1(n)

	// A held-up stream a: the fill and the record wait behind the gate,
	// and stream b's add waits for the record.
	g := block(t, ke.d, a)
	must(t, "LaunchKernel(fill)", ke.k.LaunchKernel(ke.fill, grid, threads, 0, a, fillArgs(p, n, 100)))
	must(t, "EventRecord", ke.d.EventRecord(ev, a))
	must(t, "StreamWaitEvent", ke.d.StreamWaitEvent(b, ev))
	must(t, "LaunchKernel(add_one)", ke.k.LaunchKernel(ke.add, grid, threads, 0, b, addArgs(p, n)))
	g.waitEntered(t)
	pending(t, "StreamQuery(b) behind the gate", func() error { return ke.d.StreamQuery(b) })
	g.open()
	must(t, "StreamSynchronize(b)", ke.d.StreamSynchronize(ctx(t), b))
	for i, v := range words(download(t, ke.d, p, 4*n)) {
		if v != 101 {
			t.Fatalf("word %d = %d, want 101 (fill, then add_one after the event)", i, v)
		}
	}
}

func testBadLaunches(t *testing.T, ke *kernelEnv, _ []byte) {
	p := malloc(t, ke.d, 4096)
	upload(t, ke.d, p, make([]byte, 4096))
	one := backend.Dim3{X: 1, Y: 1, Z: 1}
	s := backend.LegacyStream
	tests := []struct {
		name string
		call func() error
		want cudaerr.Error
	}{
		{"zero grid", func() error {
			return ke.k.LaunchKernel(ke.add, backend.Dim3{X: 0, Y: 1, Z: 1}, one, 0, s, addArgs(p, 1))
		}, cudaerr.InvalidConfiguration},
		{"zero block", func() error {
			return ke.k.LaunchKernel(ke.add, one, backend.Dim3{X: 1, Y: 0, Z: 1}, 0, s, addArgs(p, 1))
		}, cudaerr.InvalidConfiguration},
		{"arguments too long", func() error {
			return ke.k.LaunchKernel(ke.add, one, one, 0, s, make([]byte, backend.MaxKernelArgs+1))
		}, cudaerr.InvalidValue},
		{"unknown function", func() error { return ke.k.LaunchKernel(ke.add+12345, one, one, 0, s, addArgs(p, 1)) }, cudaerr.InvalidResourceHandle},
		{"unknown stream", func() error { return ke.k.LaunchKernel(ke.add, one, one, 0, 0xdead, addArgs(p, 1)) }, cudaerr.InvalidResourceHandle},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantErr(t, tt.call(), "LaunchKernel", tt.want)
		})
	}
	must(t, "Synchronize", ke.d.Synchronize(ctx(t)))
	wantBytes(t, "memory after rejected launches", download(t, ke.d, p, 4096), make([]byte, 4096))
}

// testCooperativeLaunch checks backend.CooperativeLauncher: a grid that
// fits runs as an ordinary launch would, one of more blocks than any
// device holds at once is refused with cudaErrorCooperativeLaunchTooLarge
// (at once, or from the next synchronizing call) and touches nothing, and
// the Device works on after it. A Device without the interface skips it.
func testCooperativeLaunch(t *testing.T, ke *kernelEnv, _ []byte) {
	cl, ok := ke.d.(backend.CooperativeLauncher)
	if !ok {
		t.Skipf("the %s backend's Device does not implement backend.CooperativeLauncher", ke.b.Name())
	}
	const n = 1000
	p := malloc(t, ke.d, 4*n)
	upload(t, ke.d, p, make([]byte, 4*n))
	s, err := ke.d.StreamCreate(backend.StreamNonBlocking, 0)
	must(t, "StreamCreate", err)
	grid, block := grid1(n)
	must(t, "LaunchCooperativeKernel(fill)", cl.LaunchCooperativeKernel(ke.fill, grid, block, 0, s, fillArgs(p, n, 5)))
	must(t, "LaunchCooperativeKernel(add_one)", cl.LaunchCooperativeKernel(ke.add, grid, block, 0, s, addArgs(p, n)))
	must(t, "StreamSynchronize", ke.d.StreamSynchronize(ctx(t), s))
	for i, v := range words(download(t, ke.d, p, 4*n)) {
		if v != 6 {
			t.Fatalf("word %d = %d, want 6 (cooperative fill, then add_one)", i, v)
		}
	}

	// A million blocks of 1024 threads: no GPU holds them at once.
	huge := backend.Dim3{X: 1 << 20, Y: 1, Z: 1}
	err = cl.LaunchCooperativeKernel(ke.fill, huge, backend.Dim3{X: 1024, Y: 1, Z: 1}, 0, s, fillArgs(p, n, 99))
	if err == nil {
		err = ke.d.StreamSynchronize(ctx(t), s)
	}
	if cudaerr.Code(err) != cudaerr.CooperativeLaunchTooLarge {
		t.Fatalf("cooperative launch of %v blocks = %v, want cudaErrorCooperativeLaunchTooLarge", huge, err)
	}
	must(t, "StreamSynchronize after the refused launch", ke.d.StreamSynchronize(ctx(t), s))
	for i, v := range words(download(t, ke.d, p, 4*n)) {
		if v != 6 {
			t.Fatalf("word %d = %d after a refused launch, want 6", i, v)
		}
	}

	one := backend.Dim3{X: 1, Y: 1, Z: 1}
	tests := []struct {
		name string
		call func() error
		want cudaerr.Error
	}{
		{"zero grid", func() error {
			return cl.LaunchCooperativeKernel(ke.add, backend.Dim3{X: 0, Y: 1, Z: 1}, one, 0, s, addArgs(p, 1))
		}, cudaerr.InvalidConfiguration},
		{"unknown function", func() error { return cl.LaunchCooperativeKernel(ke.add+12345, one, one, 0, s, addArgs(p, 1)) }, cudaerr.InvalidResourceHandle},
		{"unknown stream", func() error { return cl.LaunchCooperativeKernel(ke.add, one, one, 0, 0xdead, addArgs(p, 1)) }, cudaerr.InvalidResourceHandle},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantErr(t, tt.call(), "LaunchCooperativeKernel", tt.want)
		})
	}
	must(t, "StreamSynchronize", ke.d.StreamSynchronize(ctx(t), s))
}

func testUnload(t *testing.T, ke *kernelEnv, image []byte) {
	p := malloc(t, ke.d, 1024)
	grid, block := grid1(256)
	// Work queued before the unload completes.
	must(t, "LaunchKernel(fill)", ke.k.LaunchKernel(ke.fill, grid, block, 0, backend.LegacyStream, fillArgs(p, 256, 9)))
	must(t, "UnloadModule", ke.k.UnloadModule(ke.m))
	must(t, "Synchronize", ke.d.Synchronize(ctx(t)))
	if got := words(download(t, ke.d, p, 1024)); got[0] != 9 || got[255] != 9 {
		t.Fatalf("fill queued before the unload: %d .. %d, want 9", got[0], got[255])
	}
	wantErr(t, ke.k.LaunchKernel(ke.fill, grid, block, 0, backend.LegacyStream, fillArgs(p, 256, 1)), "LaunchKernel", cudaerr.InvalidResourceHandle)
	_, err := ke.k.Function(ke.m, KernelFill)
	wantErr(t, err, "Function", cudaerr.InvalidResourceHandle)
	wantErr(t, ke.k.UnloadModule(ke.m), "UnloadModule", cudaerr.InvalidResourceHandle)

	// Another Device on the same physical device has modules of its own.
	other := ke.open(1, quota)
	ko := other.(backend.Kernels)
	m, err := ko.LoadModule(image)
	must(t, "LoadModule on a second Device", err)
	f, err := ko.Function(m, KernelAddOne)
	must(t, "Function on a second Device", err)
	_, err = ke.k.FuncParams(f)
	wantErr(t, err, "FuncParams", cudaerr.InvalidResourceHandle)
	if _, err := ko.FuncParams(f); err != nil {
		t.Fatalf("FuncParams on its own Device: %v", err)
	}
}

// RunKernelFault checks a kernel that faults: the launch itself succeeds,
// the next synchronizing call reports cudaErrorIllegalAddress, the error
// sticks to every later call but Owns and Close, and Close works. image is
// the module image given to RunKernels. Run it where losing the context
// harms nothing else (a child process for a GPU).
func RunKernelFault(t *testing.T, newBackend func(t *testing.T) backend.Backend, image []byte) {
	ke := newKernelEnv(t, newBackend, image)
	p := malloc(t, ke.d, 64)
	one := backend.Dim3{X: 1, Y: 1, Z: 1}
	must(t, "LaunchKernel(fault)", ke.k.LaunchKernel(ke.bad, one, one, 0, backend.LegacyStream, nil))
	err := ke.d.Synchronize(ctx(t))
	if code := cudaerr.Code(err); code != cudaerr.IllegalAddress {
		t.Fatalf("Synchronize after a faulting kernel = %v, want cudaErrorIllegalAddress", err)
	}
	if _, err := ke.d.Malloc(64); cudaerr.Code(err) != cudaerr.IllegalAddress {
		t.Fatalf("Malloc after the fault = %v, want the sticky cudaErrorIllegalAddress", err)
	}
	if err := ke.k.LaunchKernel(ke.add, one, one, 0, backend.LegacyStream, addArgs(p, 1)); cudaerr.Code(err) != cudaerr.IllegalAddress {
		t.Fatalf("LaunchKernel after the fault = %v, want the sticky cudaErrorIllegalAddress", err)
	}
	if !ke.d.Owns(p, 64) {
		t.Error("Owns after the fault = false; allocations stay until Close")
	}
	must(t, "Close after the fault", ke.d.Close())
}
