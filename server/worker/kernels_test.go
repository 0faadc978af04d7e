package worker

import (
	"crypto/sha256"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xgpu/xgpu/internal/calls"
	"github.com/xgpu/xgpu/internal/cudaerr"
	"github.com/xgpu/xgpu/internal/wire"
	"github.com/xgpu/xgpu/server/backend"
	"github.com/xgpu/xgpu/server/backend/backendtest"
	"github.com/xgpu/xgpu/server/host"
	"github.com/xgpu/xgpu/server/worker/workertest"
)

// hostKernels is the kernel suite's image for the host backend.
var hostKernels = append(host.ModuleImage(backendtest.KernelFill, backendtest.KernelAddOne, backendtest.KernelFault),
	"global "+backendtest.GlobalCounter+" 8\n"...)

// kernelImage returns the kernel suite's image for the backend the tests
// run on.
func kernelImage() []byte {
	if onGPU() {
		return []byte(backendtest.KernelsPTX)
	}
	return hostKernels
}

func digestOf(img []byte) digest { return sha256.Sum256(img) }

// loadImage loads img on dev the way the runtime does: ModuleHave, and
// ModuleLoad (inline or bulk) when the server does not hold it. It
// returns the module and whether the image was sent.
func loadImage(t *testing.T, c *workertest.Client, dev uint32, img []byte) (uint64, bool) {
	t.Helper()
	ctx := testCtx(t)
	dig := digestOf(img).String()
	rep, err := c.Call(ctx, calls.OpModuleHave, calls.Call{Dev: dev, Text: dig})
	if err != nil {
		t.Fatalf("ModuleHave: %v", err)
	}
	if rep.V1 != 0 {
		return rep.V1, false
	}
	m, err := c.ModuleLoad(ctx, dev, dig, img)
	if err != nil {
		t.Fatalf("ModuleLoad: %v", err)
	}
	return m, true
}

func getFunction(t *testing.T, c *workertest.Client, dev uint32, m uint64, name string) (uint64, []calls.Param) {
	t.Helper()
	rep, err := c.Call(testCtx(t), calls.OpModuleGetFunction, calls.Call{Dev: dev, Aux: m, Text: name})
	if err != nil {
		t.Fatalf("ModuleGetFunction(%s): %v", name, err)
	}
	ps, err := calls.DecodeParams(rep.Data)
	if err != nil || uint64(len(ps)) != rep.V2 {
		t.Fatalf("ModuleGetFunction(%s): layout %v (%d parameters said), %v", name, ps, rep.V2, err)
	}
	return rep.V1, ps
}

func launch(c *workertest.Client, dev uint32, f uint64, n uint32, stream uint64, args []byte) error {
	return c.Send(calls.OpLaunchKernel, calls.Call{Dev: dev, Stream: stream, Aux: f,
		Grid: [3]uint32{(n + 255) / 256, 1, 1}, Block: [3]uint32{256, 1, 1}, Data: args})
}

func fillArgs(p uint64, n, v uint32) []byte {
	a := make([]byte, 16)
	binary.LittleEndian.PutUint64(a, p)
	binary.LittleEndian.PutUint32(a[8:], n)
	binary.LittleEndian.PutUint32(a[12:], v)
	return a
}

func addArgs(p uint64, n uint32) []byte { return fillArgs(p, n, 0)[:12] }

func wantWords(t *testing.T, what string, b []byte, want func(i int) uint32) {
	t.Helper()
	for i := 0; i < len(b)/4; i++ {
		if v := binary.LittleEndian.Uint32(b[4*i:]); v != want(i) {
			t.Fatalf("%s: word %d = %d, want %d", what, i, v, want(i))
		}
	}
}

func TestKernelsThroughTheWorker(t *testing.T) {
	b := newBackend(t, 1)
	cfg := testConfig(devCfg(0, 0))
	cfg.ModuleCacheDir = t.TempDir()
	r := start(t, cfg, b)
	c := dial(t, r, testToken)
	ctx := testCtx(t)
	img := kernelImage()

	m, sent := loadImage(t, c, 0, img)
	if !sent || m == 0 {
		t.Fatalf("first load: module %#x, sent %v; want the image sent", m, sent)
	}
	fill, fillLayout := getFunction(t, c, 0, m, backendtest.KernelFill)
	add, _ := getFunction(t, c, 0, m, backendtest.KernelAddOne)
	if want := []calls.Param{{Offset: 0, Size: 8}, {Offset: 8, Size: 4}, {Offset: 12, Size: 4}}; len(fillLayout) != 3 || fillLayout[0] != want[0] || fillLayout[1] != want[1] || fillLayout[2] != want[2] {
		t.Fatalf("fill_u32 layout %v, want %v", fillLayout, want)
	}
	rep, err := c.Call(ctx, calls.OpFuncGetParams, calls.Call{Dev: 0, Aux: add})
	if err != nil || rep.V1 != add || rep.V2 != 2 || len(rep.Data) != 2*calls.ParamSize {
		t.Fatalf("FuncGetParams(add_one) = %#x, %d params, %d bytes, %v", rep.V1, rep.V2, len(rep.Data), err)
	}

	const n = 10007
	p := mustMalloc(t, c, 0, 4*n)
	if err := launch(c, 0, fill, n, 0, fillArgs(p, n, 41)); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := launch(c, 0, add, n, 0, addArgs(p, n)); err != nil {
			t.Fatal(err)
		}
	}
	wantWords(t, "fill then add_one twice", readBack(t, c, 0, p, 4*n), func(int) uint32 { return 43 })

	t.Run("attributes", func(t *testing.T) {
		rep, err := c.Call(ctx, calls.OpFuncGetAttribute, calls.Call{Dev: 0, Aux: fill, Aux2: uint64(backend.FuncAttrMaxThreadsPerBlock)})
		if err != nil || rep.V1 < 1 || rep.V1 > 1024 {
			t.Fatalf("FuncGetAttribute(MaxThreadsPerBlock) = %d, %v", rep.V1, err)
		}
		if _, err := c.Call(ctx, calls.OpFuncSetAttribute, calls.Call{Dev: 0, Aux: fill, Aux2: uint64(backend.FuncAttrMaxDynamicSharedSizeBytes), N: 2048}); err != nil {
			t.Fatalf("FuncSetAttribute: %v", err)
		}
		rep, err = c.Call(ctx, calls.OpFuncGetAttribute, calls.Call{Dev: 0, Aux: fill, Aux2: uint64(backend.FuncAttrMaxDynamicSharedSizeBytes)})
		if err != nil || rep.V1 != 2048 {
			t.Fatalf("FuncGetAttribute(MaxDynamicSharedSizeBytes) = %d, %v; want 2048", rep.V1, err)
		}
		rep, err = c.Call(ctx, calls.OpModuleGetGlobal, calls.Call{Dev: 0, Aux: m, Text: backendtest.GlobalCounter})
		if err != nil || rep.V1 == 0 || rep.V2 != 8 {
			t.Fatalf("ModuleGetGlobal = %#x, %d, %v", rep.V1, rep.V2, err)
		}
	})

	t.Run("bad calls", func(t *testing.T) {
		one := [3]uint32{1, 1, 1}
		tests := []struct {
			name string
			op   wire.Op
			call calls.Call
			want cudaerr.Error
		}{
			{"have with a bad digest", calls.OpModuleHave, calls.Call{Dev: 0, Text: "xyz"}, cudaerr.InvalidValue},
			{"load of an image that is not its digest", calls.OpModuleLoad, calls.Call{Dev: 0, Text: strings.Repeat("00", 32), N: uint64(len(img)), Data: img}, cudaerr.InvalidValue},
			{"load with a short inline image", calls.OpModuleLoad, calls.Call{Dev: 0, Text: digestOf(img).String(), N: uint64(len(img)) + 1, Data: img}, cudaerr.InvalidValue},
			{"load of nothing", calls.OpModuleLoad, calls.Call{Dev: 0, Text: digestOf(nil).String()}, cudaerr.InvalidValue},
			{"load on an unknown device", calls.OpModuleLoad, calls.Call{Dev: 7, Text: digestOf(img).String(), N: uint64(len(img)), Data: img}, cudaerr.InvalidDevice},
			{"function of an unknown module", calls.OpModuleGetFunction, calls.Call{Dev: 0, Aux: 0xdeadbeef, Text: "fill_u32"}, cudaerr.InvalidResourceHandle},
			{"unknown kernel", calls.OpModuleGetFunction, calls.Call{Dev: 0, Aux: m, Text: "no_such_kernel"}, cudaerr.SymbolNotFound},
			{"params of an unknown function", calls.OpFuncGetParams, calls.Call{Dev: 0, Aux: 0xdeadbeef}, cudaerr.InvalidResourceHandle},
			{"launch of an unknown function", calls.OpLaunchKernel, calls.Call{Dev: 0, Aux: 0xdeadbeef, Grid: one, Block: one, Data: fillArgs(p, 1, 1)}, cudaerr.InvalidResourceHandle},
			{"launch with short arguments", calls.OpLaunchKernel, calls.Call{Dev: 0, Aux: fill, Grid: one, Block: one, Data: fillArgs(p, 1, 1)[:12]}, cudaerr.InvalidValue},
			{"launch with long arguments", calls.OpLaunchKernel, calls.Call{Dev: 0, Aux: add, Grid: one, Block: one, Data: fillArgs(p, 1, 1)}, cudaerr.InvalidValue},
			{"launch with a zero grid", calls.OpLaunchKernel, calls.Call{Dev: 0, Aux: add, Block: one, Data: addArgs(p, 1)}, cudaerr.InvalidConfiguration},
			{"launch on an unknown stream", calls.OpLaunchKernel, calls.Call{Dev: 0, Stream: 99, Aux: add, Grid: one, Block: one, Data: addArgs(p, 1)}, cudaerr.InvalidResourceHandle},
			{"unload of an unknown module", calls.OpModuleUnload, calls.Call{Dev: 0, Aux: 0xdeadbeef}, cudaerr.InvalidResourceHandle},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				wantCode(t, tt.name, callStatus(t, c, tt.op, tt.call), tt.want)
			})
		}
		// As asynchronous calls, the failures surface at the next sync.
		if err := c.Send(calls.OpLaunchKernel, calls.Call{Dev: 0, Aux: fill, Grid: one, Block: one, Data: []byte{1}}); err != nil {
			t.Fatal(err)
		}
		wantCode(t, "sync after a launch with bad arguments", c.Sync(ctx, 0, 0), cudaerr.InvalidValue)
		wantCode(t, "next sync", c.Sync(ctx, 0, 0), cudaerr.Success)
		wantWords(t, "memory after the refused launches", readBack(t, c, 0, p, 4*n), func(int) uint32 { return 43 })
	})

	t.Run("same image again", func(t *testing.T) {
		m2, sent := loadImage(t, c, 0, img)
		if sent || m2 != m {
			t.Fatalf("second load: module %#x (first %#x), sent %v; want the loaded module without sending", m2, m, sent)
		}
		// Two loads: the first unload keeps the module.
		wantCode(t, "unload", callStatus(t, c, calls.OpModuleUnload, calls.Call{Dev: 0, Aux: m}), cudaerr.Success)
		if err := launch(c, 0, add, n, 0, addArgs(p, n)); err != nil {
			t.Fatal(err)
		}
		wantWords(t, "add_one after one of two unloads", readBack(t, c, 0, p, 4*n), func(int) uint32 { return 44 })
		wantCode(t, "last unload", callStatus(t, c, calls.OpModuleUnload, calls.Call{Dev: 0, Aux: m}), cudaerr.Success)
		wantCode(t, "launch after the last unload", callStatus(t, c, calls.OpLaunchKernel,
			calls.Call{Dev: 0, Aux: add, Grid: [3]uint32{1, 1, 1}, Block: [3]uint32{1, 1, 1}, Data: addArgs(p, 1)}), cudaerr.InvalidResourceHandle)
	})
}

// TestCooperativeLaunchThroughTheWorker sends OpLaunchCooperativeKernel:
// a grid that fits runs as an ordinary launch does, one larger than the
// device holds at once is refused with cudaErrorCooperativeLaunchTooLarge
// (by the launch, or by the next sync where the driver refuses it when it
// issues the launch), and the worker checks a cooperative launch as it
// checks an ordinary one.
func TestCooperativeLaunchThroughTheWorker(t *testing.T) {
	b := newBackend(t, 1)
	cfg := testConfig(devCfg(0, 0))
	cfg.ModuleCacheDir = t.TempDir()
	r := start(t, cfg, b)
	c := dial(t, r, testToken)
	ctx := testCtx(t)
	m, _ := loadImage(t, c, 0, kernelImage())
	fill, _ := getFunction(t, c, 0, m, backendtest.KernelFill)
	add, _ := getFunction(t, c, 0, m, backendtest.KernelAddOne)

	const n = 3000
	p := mustMalloc(t, c, 0, 4*n)
	grid, block := [3]uint32{(n + 255) / 256, 1, 1}, [3]uint32{256, 1, 1}
	wantCode(t, "cooperative fill", callStatus(t, c, calls.OpLaunchCooperativeKernel,
		calls.Call{Dev: 0, Aux: fill, Grid: grid, Block: block, Data: fillArgs(p, n, 7)}), cudaerr.Success)
	if err := c.Send(calls.OpLaunchCooperativeKernel, calls.Call{Dev: 0, Aux: add, Grid: grid, Block: block, Data: addArgs(p, n)}); err != nil {
		t.Fatal(err)
	}
	wantWords(t, "cooperative fill, then add_one", readBack(t, c, 0, p, 4*n), func(int) uint32 { return 8 })

	// No GPU holds a million blocks of 1024 threads at once.
	err := callStatus(t, c, calls.OpLaunchCooperativeKernel, calls.Call{Dev: 0, Aux: fill,
		Grid: [3]uint32{1 << 20, 1, 1}, Block: [3]uint32{1024, 1, 1}, Data: fillArgs(p, n, 99)})
	if err == nil {
		err = c.Sync(ctx, 0, 0)
	}
	wantCode(t, "cooperative launch of a grid too large", err, cudaerr.CooperativeLaunchTooLarge)
	wantCode(t, "next sync", c.Sync(ctx, 0, 0), cudaerr.Success)
	wantWords(t, "memory after the refused launch", readBack(t, c, 0, p, 4*n), func(int) uint32 { return 8 })

	one := [3]uint32{1, 1, 1}
	tests := []struct {
		name string
		call calls.Call
		want cudaerr.Error
	}{
		{"unknown function", calls.Call{Dev: 0, Aux: 0xdeadbeef, Grid: one, Block: one, Data: fillArgs(p, 1, 1)}, cudaerr.InvalidResourceHandle},
		{"short arguments", calls.Call{Dev: 0, Aux: fill, Grid: one, Block: one, Data: fillArgs(p, 1, 1)[:12]}, cudaerr.InvalidValue},
		{"zero grid", calls.Call{Dev: 0, Aux: add, Block: one, Data: addArgs(p, 1)}, cudaerr.InvalidConfiguration},
		{"unknown stream", calls.Call{Dev: 0, Stream: 99, Aux: add, Grid: one, Block: one, Data: addArgs(p, 1)}, cudaerr.InvalidResourceHandle},
		{"unknown device", calls.Call{Dev: 7, Aux: add, Grid: one, Block: one, Data: addArgs(p, 1)}, cudaerr.InvalidDevice},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantCode(t, tt.name, callStatus(t, c, calls.OpLaunchCooperativeKernel, tt.call), tt.want)
		})
	}
	wantWords(t, "memory after the refused launches", readBack(t, c, 0, p, 4*n), func(int) uint32 { return 8 })
}

// TestCooperativeLaunchNotSupported: a device whose backend has no
// cooperative launches refuses them and runs ordinary launches.
func TestCooperativeLaunchNotSupported(t *testing.T) {
	r := start(t, testConfig(devCfg(0, 0)), noCooperative{newHost(t, 1)})
	c := dial(t, r, testToken)
	m, _ := loadImage(t, c, 0, hostKernels)
	fill, _ := getFunction(t, c, 0, m, backendtest.KernelFill)
	p := mustMalloc(t, c, 0, 64)
	one := [3]uint32{1, 1, 1}
	call := calls.Call{Dev: 0, Aux: fill, Grid: one, Block: [3]uint32{16, 1, 1}, Data: fillArgs(p, 16, 3)}
	wantCode(t, "cooperative launch", callStatus(t, c, calls.OpLaunchCooperativeKernel, call), cudaerr.NotSupported)
	wantCode(t, "ordinary launch", callStatus(t, c, calls.OpLaunchKernel, call), cudaerr.Success)
	wantWords(t, "fill", readBack(t, c, 0, p, 64), func(int) uint32 { return 3 })
}

// noCooperative hides the CooperativeLauncher of its devices, keeping
// their Kernels.
type noCooperative struct{ *host.Backend }

func (b noCooperative) Open(spec backend.DeviceSpec) (backend.Device, error) {
	d, err := b.Backend.Open(spec)
	if err != nil {
		return nil, err
	}
	return struct {
		backend.Device
		backend.Kernels
	}{d, d.(backend.Kernels)}, nil
}

// TestModuleCacheAcrossSessions runs two sessions, one after the other,
// with the same module cache directory: the second gets the image from
// the cache, not from its client.
func TestModuleCacheAcrossSessions(t *testing.T) {
	b := newBackend(t, 1)
	dir := t.TempDir()
	img := kernelImage()
	big := append(append([]byte(nil), img...), '\n')
	if !onGPU() {
		// An image past the inline limit travels as a bulk transfer.
		big = append(big, "# padding\n"...)
		big = append(big, strings.Repeat("# "+strings.Repeat("x", 77)+"\n", calls.InlineMax/80+10)...)
	} else {
		big = append(big, "// padding\n"...)
		big = append(big, strings.Repeat("// "+strings.Repeat("x", 76)+"\n", calls.InlineMax/80+10)...)
	}
	if len(big) <= calls.InlineMax {
		t.Fatalf("padded image has %d bytes, not more than %d", len(big), calls.InlineMax)
	}

	session := func(name string, wantSent bool) {
		cfg := testConfig(devCfg(0, 0))
		cfg.ModuleCacheDir = dir
		r := start(t, cfg, b)
		c := dial(t, r, testToken)
		m, sent := loadImage(t, c, 0, big)
		if sent != wantSent {
			t.Fatalf("%s: image sent = %v, want %v", name, sent, wantSent)
		}
		fill, _ := getFunction(t, c, 0, m, backendtest.KernelFill)
		p := mustMalloc(t, c, 0, 4096)
		if err := launch(c, 0, fill, 1024, 0, fillArgs(p, 1024, 5)); err != nil {
			t.Fatal(err)
		}
		wantWords(t, name, readBack(t, c, 0, p, 4096), func(int) uint32 { return 5 })
		if _, err := c.Call(testCtx(t), calls.OpCloseSession, calls.Call{}); err != nil {
			t.Fatal(err)
		}
		c.Close()
		if err := r.result(t, 10*time.Second); err != nil {
			t.Fatalf("%s: Serve = %v", name, err)
		}
	}
	session("first session", true)
	file := filepath.Join(dir, digestOf(big).String()+".img")
	if st, err := os.Stat(file); err != nil || st.Size() != int64(len(big)) || st.Mode().Perm() != 0o600 {
		t.Fatalf("cached image: %v, %v", st, err)
	}
	session("second session", false)

	// A damaged file is dropped and the image sent again.
	if err := os.WriteFile(file, append([]byte("tampered"), big...), 0o600); err != nil {
		t.Fatal(err)
	}
	session("after damage", true)
	if got, err := os.ReadFile(file); err != nil || string(got) != string(big) {
		t.Fatalf("cache after damage holds %d bytes, %v; want the image again", len(got), err)
	}
}

// TestKernelFaultIsolation: a session whose kernel faults gets the error at
// its next synchronizing call and for good, and another session on the
// same physical device keeps working. (On a GPU the sessions must be
// separate processes, whose contexts are separate; the runtime's GPU test
// checks that. Here the host backend's devices stand for them.)
func TestKernelFaultIsolation(t *testing.T) {
	if onGPU() {
		t.Skip("a fault loses the GPU context of this whole test process; the runtime's GPU tests run it across worker processes")
	}
	b := newHost(t, 1)
	r1 := start(t, testConfig(devCfg(0, 0)), b)
	cfg2 := testConfig(devCfg(1, 0))
	cfg2.Token = "11111111111111112222222222222222"
	r2 := start(t, cfg2, b)
	c1 := dial(t, r1, testToken)
	c2 := dial(t, r2, cfg2.Token)
	ctx := testCtx(t)

	m1, _ := loadImage(t, c1, 0, hostKernels)
	bad, _ := getFunction(t, c1, 0, m1, backendtest.KernelFault)
	m2, _ := loadImage(t, c2, 1, hostKernels)
	add, _ := getFunction(t, c2, 1, m2, backendtest.KernelAddOne)
	p2 := mustMalloc(t, c2, 1, 4096)
	if err := c2.MemcpyHtoD(ctx, 1, p2, make([]byte, 4096), 0); err != nil {
		t.Fatal(err)
	}

	if err := c1.Send(calls.OpLaunchKernel, calls.Call{Dev: 0, Aux: bad, Grid: [3]uint32{1, 1, 1}, Block: [3]uint32{1, 1, 1}}); err != nil {
		t.Fatal(err)
	}
	wantCode(t, "sync after the faulting kernel", c1.Sync(ctx, 0, 0), cudaerr.IllegalAddress)
	_, err := c1.Malloc(ctx, 0, 64)
	wantCode(t, "Malloc after the fault", err, cudaerr.IllegalAddress)

	for i := range 3 {
		if err := launch(c2, 1, add, 1024, 0, addArgs(p2, 1024)); err != nil {
			t.Fatal(err)
		}
		wantWords(t, "other session's kernels", readBack(t, c2, 1, p2, 4096), func(int) uint32 { return uint32(i + 1) })
	}
}

// TestKernelsNotSupported: a backend whose devices run no code answers
// every module call with cudaErrorNotSupported.
func TestKernelsNotSupported(t *testing.T) {
	r := start(t, testConfig(devCfg(0, 0)), noKernels{newHost(t, 1)})
	c := dial(t, r, testToken)
	img := hostKernels
	for _, tt := range []struct {
		op   wire.Op
		call calls.Call
	}{
		{calls.OpModuleHave, calls.Call{Dev: 0, Text: digestOf(img).String()}},
		{calls.OpModuleLoad, calls.Call{Dev: 0, Text: digestOf(img).String(), N: uint64(len(img)), Data: img}},
		{calls.OpModuleGetFunction, calls.Call{Dev: 0, Aux: 1, Text: "fill_u32"}},
		{calls.OpLaunchKernel, calls.Call{Dev: 0, Aux: 1, Grid: [3]uint32{1, 1, 1}, Block: [3]uint32{1, 1, 1}}},
	} {
		wantCode(t, calls.Name(tt.op), callStatus(t, c, tt.op, tt.call), cudaerr.NotSupported)
	}
}

// noKernels hides the Kernels of its devices.
type noKernels struct{ *host.Backend }

func (b noKernels) Open(spec backend.DeviceSpec) (backend.Device, error) {
	d, err := b.Backend.Open(spec)
	if err != nil {
		return nil, err
	}
	return struct{ backend.Device }{d}, nil
}
