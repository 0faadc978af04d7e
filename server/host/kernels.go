package host

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/xgpu/xgpu/internal/cudaerr"
	"github.com/xgpu/xgpu/server/backend"
)

// ModuleHeader is the first line of a host module image.
const ModuleHeader = "xgpu-host-module v1"

// A host module image is text: the line ModuleHeader, then one
// declaration per line; blank lines and lines starting with '#' are
// ignored:
//
//	xgpu-host-module v1
//	kernel fill_u32        # a kernel of the built-in library
//	kernel add_one_u32
//	global counter 8       # a global variable of 8 bytes, zeroed at load
//
// The host backend cannot run device code, so its kernels are Go
// functions of a built-in library, and a module image only names the ones
// it exposes. The library (each kernel runs one thread per element, like
// the simplest CUDA kernels: element i < n is processed when the launch
// has more than i threads, counting x fastest over the block then the
// grid):
//
//	fill_u32(uint32_t *p, uint32_t n, uint32_t v)   p[i] = v            params {0,8} {8,4} {12,4}
//	add_one_u32(uint32_t *p, uint32_t n)            p[i] += 1           params {0,8} {8,4}
//	fault()                                          an illegal address: the Device fails with the sticky cudaErrorIllegalAddress
//
// Images of real GPU code (cubin, fatbin, PTX) fail to load with
// cudaErrorNoKernelImageForDevice, as CUDA fails for a module with no
// image that fits the device; other text fails with
// cudaErrorInvalidKernelImage. A global is an allocation of the Device
// (it counts against the quota) that lives as long as its module.

// ModuleImage returns the host module image that exposes the named
// kernels of the built-in library.
func ModuleImage(kernels ...string) []byte {
	var b bytes.Buffer
	b.WriteString(ModuleHeader + "\n")
	for _, k := range kernels {
		fmt.Fprintf(&b, "kernel %s\n", k)
	}
	return b.Bytes()
}

// maxGlobal bounds the size of one global of a host module.
const maxGlobal = 1 << 30

// hostKernel is a kernel of the built-in library. prepare runs at launch:
// it reads the packed arguments and resolves the memory they name, so
// that memory freed after the launch stays valid for it (as cudaFree
// waits for queued kernels), and returns the body that runs in stream
// order. A range that is not inside one allocation makes the body fault.
type hostKernel struct {
	params  []backend.Param
	prepare func(d *Device, args []byte, threads uint64) func() cudaerr.Error
}

var library = map[string]*hostKernel{
	"fill_u32": {
		params: []backend.Param{{Offset: 0, Size: 8}, {Offset: 8, Size: 4}, {Offset: 12, Size: 4}},
		prepare: func(d *Device, args []byte, threads uint64) func() cudaerr.Error {
			p, n, v := binary.LittleEndian.Uint64(args), binary.LittleEndian.Uint32(args[8:]), binary.LittleEndian.Uint32(args[12:])
			mem, ok := d.kernelMemory(p, min(uint64(n), threads), 4)
			return func() cudaerr.Error {
				if !ok {
					return cudaerr.IllegalAddress
				}
				fill(mem, v, 4)
				return cudaerr.Success
			}
		},
	},
	"add_one_u32": {
		params: []backend.Param{{Offset: 0, Size: 8}, {Offset: 8, Size: 4}},
		prepare: func(d *Device, args []byte, threads uint64) func() cudaerr.Error {
			p, n := binary.LittleEndian.Uint64(args), binary.LittleEndian.Uint32(args[8:])
			mem, ok := d.kernelMemory(p, min(uint64(n), threads), 4)
			return func() cudaerr.Error {
				if !ok {
					return cudaerr.IllegalAddress
				}
				for i := 0; i < len(mem); i += 4 {
					binary.LittleEndian.PutUint32(mem[i:], binary.LittleEndian.Uint32(mem[i:])+1)
				}
				return cudaerr.Success
			}
		},
	},
	"fault": {
		prepare: func(*Device, []byte, uint64) func() cudaerr.Error {
			return func() cudaerr.Error { return cudaerr.IllegalAddress }
		},
	},
}

// kernelMemory resolves n elements of size bytes at p for a kernel; ok is
// false when they do not lie inside one allocation (n == 0 is always ok).
func (d *Device) kernelMemory(p, n, size uint64) ([]byte, bool) {
	if n == 0 {
		return nil, true
	}
	if p%size != 0 {
		return nil, false
	}
	return d.lookup(backend.DevicePtr(p), n*size)
}

// module is a loaded host module.
type module struct {
	handle  backend.Module
	kernels map[string]*hostKernel
	globals map[string]global
	funcs   []backend.Function // handles Function gave out
}

type global struct {
	p    backend.DevicePtr
	size uint64
}

// function is a kernel handle.
type function struct {
	mod   *module
	k     *hostKernel
	attrs funcAttrs
}

// funcAttrs are the settable attributes of a function.
type funcAttrs struct {
	maxDynShared int // FuncAttrMaxDynamicSharedSizeBytes
	carveout     int // FuncAttrPreferredSharedMemoryCarveout
}

// Shared memory limits of the emulated device: those of an H100 or H200.
const (
	defaultDynShared = 48 << 10
	maxSharedOptin   = 227 << 10
	hostNumRegs      = 16
)

// kernelTable is a Device's modules and functions.
type kernelTable struct {
	mu      sync.Mutex // guards the maps
	modules map[backend.Module]*module
	funcs   map[backend.Function]*function
}

var _ backend.Kernels = (*Device)(nil)

// parseModule reads a host module image.
func parseModule(image []byte) (kernels map[string]*hostKernel, globals map[string]uint64, code cudaerr.Error, why string) {
	if !bytes.HasPrefix(image, []byte(ModuleHeader)) {
		if isGPUImage(image) {
			return nil, nil, cudaerr.NoKernelImageForDevice, "the host backend runs no GPU code (cubin, fatbin or PTX)"
		}
		return nil, nil, cudaerr.InvalidKernelImage, "not a module image"
	}
	kernels, globals = map[string]*hostKernel{}, map[string]uint64{}
	sc := bufio.NewScanner(bytes.NewReader(image))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if line == 1 {
			if text != ModuleHeader {
				return nil, nil, cudaerr.InvalidKernelImage, fmt.Sprintf("first line %q is not %q", text, ModuleHeader)
			}
			continue
		}
		if i := strings.IndexByte(text, '#'); i >= 0 {
			text = strings.TrimSpace(text[:i])
		}
		f := strings.Fields(text)
		switch {
		case len(f) == 0:
		case f[0] == "kernel" && len(f) == 2:
			k := library[f[1]]
			if k == nil {
				return nil, nil, cudaerr.NoKernelImageForDevice, fmt.Sprintf("line %d: kernel %q is not in the host backend's library", line, f[1])
			}
			kernels[f[1]] = k
		case f[0] == "global" && len(f) == 3:
			size, err := strconv.ParseUint(f[2], 10, 64)
			if err != nil || size == 0 || size > maxGlobal {
				return nil, nil, cudaerr.InvalidKernelImage, fmt.Sprintf("line %d: global %q has a bad size %q", line, f[1], f[2])
			}
			globals[f[1]] = size
		default:
			return nil, nil, cudaerr.InvalidKernelImage, fmt.Sprintf("line %d: cannot parse %q", line, text)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, nil, cudaerr.InvalidKernelImage, err.Error()
	}
	return kernels, globals, cudaerr.Success, ""
}

// isGPUImage reports whether image looks like code for a real GPU: an ELF
// cubin, a fatbin (or the wrapper nvcc registers it with), or PTX text.
func isGPUImage(image []byte) bool {
	if len(image) >= 4 {
		switch binary.LittleEndian.Uint32(image) {
		case 0x464c457f, // "\x7fELF": a cubin
			0xba55ed50, // fatbin
			0x466243b1: // fatbin wrapper
			return true
		}
	}
	head := image[:min(len(image), 4096)]
	return bytes.Contains(head, []byte(".version")) && bytes.Contains(head, []byte(".target"))
}

// LoadModule loads a host module image (see ModuleImage).
func (d *Device) LoadModule(image []byte) (backend.Module, error) {
	const op = "LoadModule"
	if err := d.check(op); err != nil {
		return 0, err
	}
	if len(image) == 0 {
		return 0, backend.Errorf(name, op, cudaerr.InvalidValue, "empty image")
	}
	kernels, globals, code, why := parseModule(image)
	if code != cudaerr.Success {
		return 0, backend.Errorf(name, op, code, "%s", why)
	}
	m := &module{handle: backend.Module(d.handle()), kernels: kernels, globals: make(map[string]global, len(globals))}
	for gname, size := range globals {
		p, err := d.Malloc(size)
		if err != nil {
			d.freeGlobals(m)
			return 0, &backend.OpError{Backend: name, Op: op, Err: fmt.Errorf("global %q: %w", gname, cudaerr.Code(err))}
		}
		m.globals[gname] = global{p: p, size: size}
	}
	d.kern.mu.Lock()
	defer d.kern.mu.Unlock()
	if d.closed.Load() {
		return 0, backend.Errorf(name, op, cudaerr.ContextIsDestroyed, "")
	}
	d.kern.modules[m.handle] = m
	return m.handle, nil
}

func (d *Device) freeGlobals(m *module) {
	for _, g := range m.globals {
		_ = d.Free(g.p)
	}
}

// UnloadModule unloads m. Launches already queued keep the memory they
// resolved, so they complete as though the module were still loaded.
func (d *Device) UnloadModule(m backend.Module) error {
	const op = "UnloadModule"
	if err := d.check(op); err != nil {
		return err
	}
	d.kern.mu.Lock()
	mod := d.kern.modules[m]
	if mod == nil {
		d.kern.mu.Unlock()
		return backend.Errorf(name, op, cudaerr.InvalidResourceHandle, "%#x is not a loaded module of this device", uint64(m))
	}
	delete(d.kern.modules, m)
	for _, f := range mod.funcs {
		delete(d.kern.funcs, f)
	}
	d.kern.mu.Unlock()
	d.freeGlobals(mod)
	return nil
}

// Function returns the kernel fname of module m.
func (d *Device) Function(m backend.Module, fname string) (backend.Function, error) {
	const op = "Function"
	if err := d.check(op); err != nil {
		return 0, err
	}
	d.kern.mu.Lock()
	defer d.kern.mu.Unlock()
	mod := d.kern.modules[m]
	if mod == nil {
		return 0, backend.Errorf(name, op, cudaerr.InvalidResourceHandle, "%#x is not a loaded module of this device", uint64(m))
	}
	k := mod.kernels[fname]
	if k == nil {
		return 0, backend.Errorf(name, op, cudaerr.SymbolNotFound, "module %#x has no kernel %q", uint64(m), fname)
	}
	for _, f := range mod.funcs {
		if fn := d.kern.funcs[f]; fn != nil && fn.k == k {
			return f, nil // one handle per kernel, as CUDA gives
		}
	}
	h := backend.Function(d.handle())
	d.kern.funcs[h] = &function{mod: mod, k: k, attrs: funcAttrs{maxDynShared: defaultDynShared, carveout: -1}}
	mod.funcs = append(mod.funcs, h)
	return h, nil
}

// functionLocked returns function f; the caller holds kern.mu.
func (d *Device) functionLocked(op string, f backend.Function) (*function, error) {
	fn := d.kern.funcs[f]
	if fn == nil {
		return nil, backend.Errorf(name, op, cudaerr.InvalidResourceHandle, "%#x is not a function of a loaded module of this device", uint64(f))
	}
	return fn, nil
}

// FuncParams returns the parameter layout of f.
func (d *Device) FuncParams(f backend.Function) ([]backend.Param, error) {
	const op = "FuncParams"
	if err := d.check(op); err != nil {
		return nil, err
	}
	d.kern.mu.Lock()
	defer d.kern.mu.Unlock()
	fn, err := d.functionLocked(op, f)
	if err != nil {
		return nil, err
	}
	return append([]backend.Param(nil), fn.k.params...), nil
}

// FuncAttribute returns one attribute of f. The library's kernels use no
// static shared, constant or local memory.
func (d *Device) FuncAttribute(f backend.Function, attr backend.FuncAttribute) (int, error) {
	const op = "FuncAttribute"
	if err := d.check(op); err != nil {
		return 0, err
	}
	d.kern.mu.Lock()
	defer d.kern.mu.Unlock()
	fn, err := d.functionLocked(op, f)
	if err != nil {
		return 0, err
	}
	switch attr {
	case backend.FuncAttrMaxThreadsPerBlock:
		return backend.MaxBlockThreads, nil
	case backend.FuncAttrSharedSizeBytes, backend.FuncAttrConstSizeBytes, backend.FuncAttrLocalSizeBytes,
		backend.FuncAttrPTXVersion, backend.FuncAttrBinaryVersion, backend.FuncAttrCacheModeCA:
		return 0, nil
	case backend.FuncAttrNumRegs:
		return hostNumRegs, nil
	case backend.FuncAttrMaxDynamicSharedSizeBytes:
		return fn.attrs.maxDynShared, nil
	case backend.FuncAttrPreferredSharedMemoryCarveout:
		return fn.attrs.carveout, nil
	}
	return 0, backend.Errorf(name, op, cudaerr.InvalidValue, "unknown attribute %d", attr)
}

// SetFuncAttribute sets FuncAttrMaxDynamicSharedSizeBytes (up to the
// 227 KiB an H100 or H200 block may opt in to) or
// FuncAttrPreferredSharedMemoryCarveout (-1 to 100).
func (d *Device) SetFuncAttribute(f backend.Function, attr backend.FuncAttribute, v int) error {
	const op = "SetFuncAttribute"
	if err := d.check(op); err != nil {
		return err
	}
	d.kern.mu.Lock()
	defer d.kern.mu.Unlock()
	fn, err := d.functionLocked(op, f)
	if err != nil {
		return err
	}
	switch {
	case attr == backend.FuncAttrMaxDynamicSharedSizeBytes && v >= 0 && v <= maxSharedOptin:
		fn.attrs.maxDynShared = v
	case attr == backend.FuncAttrPreferredSharedMemoryCarveout && v >= -1 && v <= 100:
		fn.attrs.carveout = v
	default:
		return backend.Errorf(name, op, cudaerr.InvalidValue, "attribute %d cannot be set to %d", attr, v)
	}
	return nil
}

// ModuleGlobal returns the address and size of global gname of m.
func (d *Device) ModuleGlobal(m backend.Module, gname string) (backend.DevicePtr, uint64, error) {
	const op = "ModuleGlobal"
	if err := d.check(op); err != nil {
		return 0, 0, err
	}
	d.kern.mu.Lock()
	defer d.kern.mu.Unlock()
	mod := d.kern.modules[m]
	if mod == nil {
		return 0, 0, backend.Errorf(name, op, cudaerr.InvalidResourceHandle, "%#x is not a loaded module of this device", uint64(m))
	}
	g, ok := mod.globals[gname]
	if !ok {
		return 0, 0, backend.Errorf(name, op, cudaerr.SymbolNotFound, "module %#x has no global %q", uint64(m), gname)
	}
	return g.p, g.size, nil
}

// Launch limits of the emulated device, CUDA's.
const (
	maxGridX   = 1<<31 - 1
	maxGridYZ  = 65535
	maxBlockXY = 1024
	maxBlockZ  = 64
)

// LaunchKernel queues f on s. The arguments must be exactly as long as
// f's parameter layout.
func (d *Device) LaunchKernel(f backend.Function, grid, block backend.Dim3, sharedMem uint32, sh backend.Stream, args []byte) error {
	return d.launch("LaunchKernel", false, f, grid, block, sharedMem, sh, args)
}

var _ backend.CooperativeLauncher = (*Device)(nil)

// LaunchCooperativeKernel queues f on s as LaunchKernel does. The
// library's kernels never wait for other blocks, so the launch runs as an
// ordinary one; it is refused, as CUDA refuses it, when the grid has more
// blocks than the emulated device holds at once (MaxCooperativeBlocks):
// cudaErrorCooperativeLaunchTooLarge.
func (d *Device) LaunchCooperativeKernel(f backend.Function, grid, block backend.Dim3, sharedMem uint32, sh backend.Stream, args []byte) error {
	return d.launch("LaunchCooperativeKernel", true, f, grid, block, sharedMem, sh, args)
}

// launch checks a launch and queues it; a cooperative one must also fit
// on the device at once.
func (d *Device) launch(op string, coop bool, f backend.Function, grid, block backend.Dim3, sharedMem uint32, sh backend.Stream, args []byte) error {
	s, err := d.stream(op, sh)
	if err != nil {
		return err
	}
	d.kern.mu.Lock()
	fn, err := d.functionLocked(op, f)
	var k *hostKernel
	var maxShared int
	if err == nil {
		k, maxShared = fn.k, fn.attrs.maxDynShared
	}
	d.kern.mu.Unlock()
	switch {
	case err != nil:
		return err
	case grid.X == 0 || grid.Y == 0 || grid.Z == 0 || block.X == 0 || block.Y == 0 || block.Z == 0:
		return backend.Errorf(name, op, cudaerr.InvalidConfiguration, "grid %v or block %v has a zero dimension", grid, block)
	case len(args) > backend.MaxKernelArgs:
		return backend.Errorf(name, op, cudaerr.InvalidValue, "%d bytes of arguments exceed %d", len(args), backend.MaxKernelArgs)
	case len(args) != backend.ArgsSize(k.params):
		return backend.Errorf(name, op, cudaerr.InvalidValue, "%d bytes of arguments for a kernel whose parameters take %d", len(args), backend.ArgsSize(k.params))
	case block.Threads() > backend.MaxBlockThreads || block.X > maxBlockXY || block.Y > maxBlockXY || block.Z > maxBlockZ:
		return backend.Errorf(name, op, cudaerr.InvalidValue, "block %v exceeds the device's limits", block)
	case grid.X > maxGridX || grid.Y > maxGridYZ || grid.Z > maxGridYZ:
		return backend.Errorf(name, op, cudaerr.InvalidValue, "grid %v exceeds the device's limits", grid)
	case int64(sharedMem) > int64(maxShared):
		return backend.Errorf(name, op, cudaerr.InvalidValue, "%d bytes of dynamic shared memory exceed the kernel's %d", sharedMem, maxShared)
	}
	if coop {
		if most := d.MaxCooperativeBlocks(block, sharedMem); grid.Threads() > most {
			return backend.Errorf(name, op, cudaerr.CooperativeLaunchTooLarge,
				"grid %v has %d blocks; at most %d blocks of %v with %d bytes of shared memory are resident at once",
				grid, grid.Threads(), most, block, sharedMem)
		}
	}
	body := k.prepare(d, args, grid.Threads()*block.Threads())
	return d.enqueue(op, s, task{kind: opKernel, kern: body})
}

// Occupancy limits of the emulated device, from its H200 attributes
// (H200Attributes); the client shim computes
// cudaOccupancyMaxActiveBlocksPerMultiprocessor from the same values.
var (
	occProfile     = H200Attributes()
	smThreads      = int64(occProfile[39])  // cudaDevAttrMaxThreadsPerMultiProcessor
	smBlocks       = int64(occProfile[106]) // cudaDevAttrMaxBlocksPerMultiprocessor
	smRegs         = int64(occProfile[82])  // cudaDevAttrMaxRegistersPerMultiprocessor
	smShared       = int64(occProfile[81])  // cudaDevAttrMaxSharedMemoryPerMultiprocessor
	sharedReserved = int64(occProfile[111]) // cudaDevAttrReservedSharedMemoryPerBlock
	warpSize       = int64(occProfile[10])  // cudaDevAttrWarpSize
)

// blocksPerSM returns how many blocks of threads threads (> 0), each
// using regs registers per thread and shared bytes of shared memory, one
// multiprocessor of the emulated device holds at once: bounded by
// threads, blocks, registers (allocated per warp in units of 256) and
// shared memory (with the per-block reservation), as CUDA's occupancy
// calculator bounds them.
func blocksPerSM(threads, regs, shared int64) int64 {
	warps := (threads + warpSize - 1) / warpSize
	blocks := min(smThreads/(warps*warpSize), smBlocks)
	if regs > 0 {
		perWarp := (regs*warpSize + 255) / 256 * 256
		blocks = min(blocks, smRegs/(perWarp*warps))
	}
	if shared > 0 {
		blocks = min(blocks, smShared/((shared+sharedReserved+127)/128*128))
	}
	return max(blocks, 0)
}

// MaxCooperativeBlocks returns the most blocks a cooperative launch of a
// library kernel with this block size and dynamic shared memory may have
// on d: the blocks one multiprocessor holds at once (the kernels use 16
// registers per thread and no static shared memory) times the device's
// multiprocessors. A block the device cannot run at all gives 0.
func (d *Device) MaxCooperativeBlocks(block backend.Dim3, sharedMem uint32) uint64 {
	threads := block.Threads()
	if threads == 0 || threads > backend.MaxBlockThreads {
		return 0
	}
	per := blocksPerSM(int64(threads), hostNumRegs, int64(sharedMem))
	return uint64(per) * uint64(d.b.infos[d.spec.Index].Multiprocessors)
}
