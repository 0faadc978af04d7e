package core

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"unsafe"

	"github.com/xgpu/xgpu/internal/cudaerr"
	"github.com/xgpu/xgpu/runtime"
	"github.com/xgpu/xgpu/runtime/cudart/fatbin"
)

// The driver API's modules and functions (libcuda.so.1). Unlike a fat
// binary nvcc registers, which loads on a device at its first launch there,
// a module the application loads with cuModuleLoadData belongs to one
// device (the current context's) and is loaded at once; its functions are
// looked up by name and keep that device.

// driverModule is a module loaded through the driver API.
type driverModule struct {
	dev int
	ref moduleRef

	mu    sync.Mutex        // guards funcs
	funcs map[string]uint64 // kernel name -> function handle
}

// driverFunction is a kernel of a driverModule with its parameter layout.
type driverFunction struct {
	dev    int
	name   string
	fn     functionRef
	params []Param
	size   int // packed argument bytes
}

// ModuleLoad loads the module image at p (a cubin, a fat binary container
// or NUL-terminated text: PTX, or a host-backend module image) on dev and
// returns the module's handle. The image is read during the call only.
func (s *Shim) ModuleLoad(dev int, p unsafe.Pointer) (uint64, error) {
	c, err := s.kernelDevice(dev)
	if err != nil {
		return 0, err
	}
	image, err := moduleImage(p)
	if err != nil {
		return 0, fmt.Errorf("core: module load: %w", err)
	}
	ref, err := c.LoadModule(dev, image)
	if err != nil {
		return 0, err
	}
	return s.dmods.add(&driverModule{dev: dev, ref: ref, funcs: make(map[string]uint64)}), nil
}

// ModuleUnload unloads module h; its functions are invalid afterwards.
func (s *Shim) ModuleUnload(h uint64) error {
	m, ok := s.dmods.remove(h)
	if !ok {
		return fmt.Errorf("core: module handle %#x: %w", h, cudaerr.InvalidResourceHandle)
	}
	m.mu.Lock()
	for _, fh := range m.funcs {
		s.dfuncs.remove(fh)
	}
	clear(m.funcs)
	m.mu.Unlock()
	c, err := s.kernelDevice(m.dev)
	if err != nil {
		return err
	}
	return c.UnloadModule(m.dev, m.ref)
}

func (s *Shim) driverModule(h uint64) (*driverModule, error) {
	m, ok := s.dmods.get(h)
	if !ok {
		return nil, fmt.Errorf("core: module handle %#x: %w", h, cudaerr.InvalidResourceHandle)
	}
	return m, nil
}

// ModuleFunction returns the handle of kernel name of module h, the same
// handle for every call with the same name.
func (s *Shim) ModuleFunction(h uint64, name string) (uint64, error) {
	m, err := s.driverModule(h)
	if err != nil {
		return 0, err
	}
	if name == "" {
		return 0, fmt.Errorf("core: module function: empty name: %w", cudaerr.InvalidValue)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if fh, ok := m.funcs[name]; ok {
		return fh, nil
	}
	c, err := s.kernelDevice(m.dev)
	if err != nil {
		return 0, err
	}
	fn, params, err := c.Function(m.dev, m.ref, name)
	if err != nil {
		return 0, err
	}
	size, err := argsSize(params)
	if err != nil {
		return 0, err
	}
	fh := s.dfuncs.add(&driverFunction{dev: m.dev, name: name, fn: fn, params: params, size: size})
	m.funcs[name] = fh
	return fh, nil
}

// ModuleGlobal returns the device address and size of variable name of
// module h.
func (s *Shim) ModuleGlobal(h uint64, name string) (addr, size uint64, err error) {
	m, err := s.driverModule(h)
	if err != nil {
		return 0, 0, err
	}
	if name == "" {
		return 0, 0, fmt.Errorf("core: module global: empty name: %w", cudaerr.InvalidValue)
	}
	c, err := s.kernelDevice(m.dev)
	if err != nil {
		return 0, 0, err
	}
	addr, size, err = c.Global(m.dev, m.ref, name)
	if err != nil {
		return 0, 0, err
	}
	if size > 0 {
		// Copies to and from it are device copies, never host ones.
		s.symbols.add(uintptr(addr), size)
	}
	return addr, size, nil
}

func (s *Shim) driverFunction(h uint64) (*driverFunction, error) {
	f, ok := s.dfuncs.get(h)
	if !ok {
		return nil, fmt.Errorf("core: function handle %#x: %w", h, cudaerr.InvalidResourceHandle)
	}
	return f, nil
}

// FunctionDevice returns the device of function h.
func (s *Shim) FunctionDevice(h uint64) (int, error) {
	f, err := s.driverFunction(h)
	if err != nil {
		return 0, err
	}
	return f.dev, nil
}

// FunctionLaunch launches function h on its device, on stream (a handle;
// 0: the device's legacy stream). Its arguments come from args (one
// pointer per parameter, as cuLaunchKernel's kernelParams) or, when args
// is nil, from packed: packedSize bytes laid out as the kernel's parameters
// (cuLaunchKernel's CU_LAUNCH_PARAM_BUFFER_POINTER).
func (s *Shim) FunctionLaunch(h uint64, grid, block [3]uint32, sharedMem, stream uint64, args, packed unsafe.Pointer, packedSize uint64) error {
	return s.FunctionLaunchEx(h, grid, block, sharedMem, stream, args, packed, packedSize, 0)
}

// FunctionLaunchEx is FunctionLaunch with flags (LaunchCooperative for
// cuLaunchCooperativeKernel and the cooperative launch attribute of
// cuLaunchKernelEx).
func (s *Shim) FunctionLaunchEx(h uint64, grid, block [3]uint32, sharedMem, stream uint64, args, packed unsafe.Pointer, packedSize uint64, flags LaunchFlags) error {
	if err := checkLaunchFlags(flags); err != nil {
		return err
	}
	f, err := s.driverFunction(h)
	if err != nil {
		return err
	}
	c, err := s.kernelDevice(f.dev)
	if err != nil {
		return err
	}
	if sharedMem > 1<<32-1 {
		return fmt.Errorf("core: %d bytes of dynamic shared memory: %w", sharedMem, cudaerr.InvalidValue)
	}
	st, err := s.stream(f.dev, stream)
	if err != nil {
		return err
	}
	if s.graphs.active.Load() != 0 {
		var pk []byte
		if args == nil && packed != nil && packedSize >= uint64(f.size) {
			pk = unsafe.Slice((*byte)(packed), f.size)
		}
		if captured, err := s.captureKernel(f.dev, stream, f.fn, f.name, f.params, f.size, grid, block, sharedMem, flags, args, pk); captured || err != nil {
			return err
		}
	}
	if args == nil && packed != nil {
		if packedSize < uint64(f.size) {
			return fmt.Errorf("core: launch of %s: %d bytes of packed arguments, its parameters take %d: %w",
				f.name, packedSize, f.size, cudaerr.InvalidValue)
		}
		return c.Launch(f.dev, f.fn, grid, block, uint32(sharedMem), flags&LaunchCooperative != 0, st, unsafe.Slice((*byte)(packed), f.size))
	}
	return launchArgs(c, f.dev, f.fn, f.name, f.params, f.size, grid, block, uint32(sharedMem), flags, st, args)
}

// FunctionAttribute returns attribute attr (a CUfunction_attribute) of
// function h.
func (s *Shim) FunctionAttribute(h uint64, attr int) (int, error) {
	f, err := s.driverFunction(h)
	if err != nil {
		return 0, err
	}
	c, err := s.kernelDevice(f.dev)
	if err != nil {
		return 0, err
	}
	return c.FuncAttribute(f.dev, f.fn, attr)
}

// FunctionSetAttribute sets attribute attr of function h.
func (s *Shim) FunctionSetAttribute(h uint64, attr, value int) error {
	f, err := s.driverFunction(h)
	if err != nil {
		return err
	}
	c, err := s.kernelDevice(f.dev)
	if err != nil {
		return err
	}
	return c.SetFuncAttribute(f.dev, f.fn, attr, value)
}

// launchArgs packs args, the application's array of pointers to the
// arguments (one per parameter), at the layout's offsets and launches fn.
func launchArgs(c kernelAPI, dev int, fn functionRef, name string, params []Param, size int,
	grid, block [3]uint32, sharedMem uint32, flags LaunchFlags, st runtime.Stream, args unsafe.Pointer) error {
	if len(params) > 0 && args == nil {
		return fmt.Errorf("core: launch of %s: no arguments for %d parameters: %w", name, len(params), cudaerr.InvalidValue)
	}
	bp := argPool.Get().(*[]byte)
	buf := (*bp)[:0]
	if cap(buf) < size {
		buf = make([]byte, size)
	}
	buf = buf[:size]
	ptrs := unsafe.Slice((*unsafe.Pointer)(args), len(params))
	for i, p := range params {
		if ptrs[i] == nil {
			*bp = buf
			argPool.Put(bp)
			return fmt.Errorf("core: launch of %s: argument %d is a nil pointer: %w", name, i, cudaerr.InvalidValue)
		}
		copy(buf[p.Offset:p.Offset+p.Size], unsafe.Slice((*byte)(ptrs[i]), p.Size))
	}
	err := c.Launch(dev, fn, grid, block, sharedMem, flags&LaunchCooperative != 0, st, buf)
	*bp = buf
	argPool.Put(bp)
	return err
}

// Bounds of a module image read from the application's memory.
const (
	maxModuleImage = 1 << 30 // the largest image a worker accepts
	elfHeaderSize  = 64      // an ELF64 file header
)

// moduleImage returns the module image at p: a cubin (ELF64), a fat binary
// container, or NUL-terminated text. The length of an image comes from its
// own headers, as the driver learns it.
func moduleImage(p unsafe.Pointer) ([]byte, error) {
	if p == nil {
		return nil, fmt.Errorf("nil image: %w", cudaerr.InvalidValue)
	}
	head := unsafe.Slice((*byte)(p), 4)
	switch {
	case string(head) == "\x7fELF":
		n, err := elfSize(p)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", err, cudaerr.InvalidKernelImage)
		}
		return unsafe.Slice((*byte)(p), n), nil
	case binary.LittleEndian.Uint32(head) == fatbin.Magic:
		n, err := fatbin.Size(unsafe.Slice((*byte)(p), fatbin.HeaderSize))
		if err != nil {
			return nil, fmt.Errorf("%w: %w", err, cudaerr.InvalidKernelImage)
		}
		image := unsafe.Slice((*byte)(p), n)
		if _, err := fatbin.Parse(image); err != nil {
			return nil, fmt.Errorf("%w: %w", err, cudaerr.InvalidKernelImage)
		}
		return image, nil
	}
	n := 0
	for n < maxModuleImage && *(*byte)(unsafe.Add(p, n)) != 0 {
		n++
	}
	if n == maxModuleImage {
		return nil, fmt.Errorf("text image without a NUL in %d bytes: %w", maxModuleImage, cudaerr.InvalidKernelImage)
	}
	// The text without its NUL: the server's driver gets PTX with one
	// added, and the content names the image (its SHA-256) either way.
	return unsafe.Slice((*byte)(p), n), nil
}

// elfSize returns the length of the little-endian ELF64 image at p: the
// end of its farthest header table or section.
func elfSize(p unsafe.Pointer) (int, error) {
	h := unsafe.Slice((*byte)(p), elfHeaderSize)
	if h[4] != 2 || h[5] != 1 {
		return 0, errors.New("not a little-endian 64-bit ELF image")
	}
	le := binary.LittleEndian
	phoff, shoff := le.Uint64(h[0x20:]), le.Uint64(h[0x28:])
	phentsize, phnum := uint64(le.Uint16(h[0x36:])), uint64(le.Uint16(h[0x38:]))
	shentsize, shnum := uint64(le.Uint16(h[0x3a:])), uint64(le.Uint16(h[0x3c:]))
	end := uint64(elfHeaderSize)
	grow := func(off, n uint64) error {
		if off > maxModuleImage || n > maxModuleImage || off+n > maxModuleImage {
			return fmt.Errorf("ELF image reaches past %d bytes", maxModuleImage)
		}
		end = max(end, off+n)
		return nil
	}
	if phnum > 0 {
		if err := grow(phoff, phentsize*phnum); err != nil {
			return 0, err
		}
	}
	if shnum > 0 {
		if shentsize < 64 {
			return 0, fmt.Errorf("ELF section header size %d, want 64", shentsize)
		}
		if err := grow(shoff, shentsize*shnum); err != nil {
			return 0, err
		}
		const shtNobits = 8 // a section that takes no room in the file
		for i := range shnum {
			sh := unsafe.Slice((*byte)(unsafe.Add(p, shoff+i*shentsize)), 64)
			if le.Uint32(sh[4:]) == shtNobits {
				continue
			}
			if err := grow(le.Uint64(sh[24:]), le.Uint64(sh[32:])); err != nil {
				return 0, err
			}
		}
	}
	return int(end), nil
}

// PointerInfo describes p as cuPointerGetAttributes needs it: what
// PointerAttributes reports, with the allocation or registered host range
// holding p in Base and Size.
func (s *Shim) PointerInfo(p unsafe.Pointer, dev int) (runtime.PointerAttributes, error) {
	c, err := s.Client()
	if err != nil {
		return runtime.PointerAttributes{}, err
	}
	if base, size, ok := s.host.find(uintptr(p)); ok {
		return runtime.PointerAttributes{Type: runtime.MemoryTypeHost, Device: dev,
			HostPointer: uint64(uintptr(p)), DevicePointer: uint64(uintptr(p)), Base: uint64(base), Size: size}, nil
	}
	return c.PointerGetAttributes(uint64(uintptr(p)))
}
