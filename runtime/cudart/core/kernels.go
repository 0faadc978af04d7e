package core

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"unsafe"

	"github.com/xgpu/xgpu/internal/cudaerr"
	"github.com/xgpu/xgpu/runtime"
	"github.com/xgpu/xgpu/runtime/cudart/fatbin"
)

// The kernel path. nvcc's constructors register each object's fat binary,
// kernels and device variables at process start, long before (and often
// without) a launch: registration only records them. The first launch of
// a kernel on a device loads its module there (the runtime uploads the
// image once per server, keyed by its digest), looks the kernel up and
// learns its parameter layout; later launches of that kernel on that
// device find all of it cached.

// kernels is the registry of fat binaries, kernels and device variables.
type kernels struct {
	mu      sync.RWMutex // guards the maps below
	modules map[uint64]*module
	byHost  map[uintptr]uint64 // host stub address -> kernel handle
	kernel  map[uint64]*kernel
	vars    map[uintptr]*variable
	next    uint64
}

func (k *kernels) init() {
	k.modules = make(map[uint64]*module)
	k.byHost = make(map[uintptr]uint64)
	k.kernel = make(map[uint64]*kernel)
	k.vars = make(map[uintptr]*variable)
	k.next = firstHandle
}

// module is one registered fat binary.
type module struct {
	handle uint64
	image  []byte // the container, in the application's memory

	mu     sync.Mutex // guards loaded
	loaded map[int]loadResult
}

type loadResult struct {
	m   moduleRef
	err error
}

// kernel is one registered kernel.
type kernel struct {
	handle  uint64
	mod     *module
	name    string
	namePtr unsafe.Pointer // the name in the application's memory (cudaFuncGetName)

	mu  sync.RWMutex // guards per
	per map[int]*kernelOnDevice
}

// kernelOnDevice is what the first launch on a device learned.
type kernelOnDevice struct {
	fn     functionRef
	params []Param
	size   int // packed argument bytes
	err    error
}

// variable is one registered __device__ or __constant__ variable.
type variable struct {
	mod  *module
	name string
	size uint64

	mu  sync.Mutex // guards per
	per map[int]varOnDevice
}

type varOnDevice struct {
	addr, size uint64
	err        error
}

// errNoKernel is the error for a host function no fat binary registered.
func errNoKernel(host uintptr) error {
	return fmt.Errorf("core: %#x is not a registered kernel: %w", host, cudaerr.InvalidDeviceFunction)
}

// HostModuleHeader starts the module images of the host backend's
// built-in kernels (server/host.ModuleHeader). A wrapper whose data is
// such an image, NUL-terminated, registers like a fat binary, so that C
// programs can launch kernels on emulated devices.
const HostModuleHeader = "xgpu-host-module v1\n"

// maxHostModule bounds a host module image.
const maxHostModule = 1 << 20

// RegisterFatbin records the fat binary container at p (the data of a
// __fatBinC_Wrapper_t), which must stay valid until UnregisterFatbin: it
// is static data of the application. Only the headers are read now.
func (s *Shim) RegisterFatbin(p unsafe.Pointer) (uint64, error) {
	if p == nil {
		return 0, fmt.Errorf("core: register fat binary: nil container: %w", cudaerr.InvalidKernelImage)
	}
	image, err := registeredImage(p)
	if err != nil {
		return 0, fmt.Errorf("core: register fat binary: %w: %w", err, cudaerr.InvalidKernelImage)
	}
	k := &s.kern
	k.mu.Lock()
	defer k.mu.Unlock()
	h := k.next
	k.next++
	k.modules[h] = &module{handle: h, image: image, loaded: make(map[int]loadResult)}
	return h, nil
}

// registeredImage returns the image at p: a fat binary container, or a
// host module image.
func registeredImage(p unsafe.Pointer) ([]byte, error) {
	head := unsafe.Slice((*byte)(p), fatbin.HeaderSize)
	if string(head) == HostModuleHeader[:fatbin.HeaderSize] {
		n := 0
		for n < maxHostModule && *(*byte)(unsafe.Add(p, n)) != 0 {
			n++
		}
		image := unsafe.Slice((*byte)(p), n)
		if n == maxHostModule || !bytes.HasPrefix(image, []byte(HostModuleHeader)) {
			return nil, errors.New("not a NUL-terminated host module image")
		}
		return image, nil
	}
	n, err := fatbin.Size(head)
	if err != nil {
		return nil, err
	}
	image := unsafe.Slice((*byte)(p), n)
	if _, err := fatbin.Parse(image); err != nil {
		return nil, err
	}
	return image, nil
}

// UnregisterFatbin forgets module h with its kernels and variables (the
// object holding them is going away). Modules loaded on devices stay
// there until the session ends.
func (s *Shim) UnregisterFatbin(h uint64) error {
	k := &s.kern
	k.mu.Lock()
	defer k.mu.Unlock()
	m, ok := k.modules[h]
	if !ok {
		return fmt.Errorf("core: module handle %#x: %w", h, cudaerr.InvalidResourceHandle)
	}
	delete(k.modules, h)
	for host, kh := range k.byHost {
		if k.kernel[kh].mod == m {
			delete(k.byHost, host)
			delete(k.kernel, kh)
		}
	}
	for host, v := range k.vars {
		if v.mod == m {
			delete(k.vars, host)
		}
	}
	return nil
}

// RegisterFunction records that the host stub at host launches kernel
// name of module h; namePtr is the name's address in the application.
func (s *Shim) RegisterFunction(h uint64, host uintptr, name string, namePtr unsafe.Pointer) error {
	k := &s.kern
	k.mu.Lock()
	defer k.mu.Unlock()
	m, ok := k.modules[h]
	if !ok {
		return fmt.Errorf("core: module handle %#x: %w", h, cudaerr.InvalidResourceHandle)
	}
	if old, dup := k.byHost[host]; dup {
		// A stub registered twice (an object loaded twice) launches the
		// latest registration's kernel, as CUDA does.
		delete(k.kernel, old)
	}
	kh := k.next
	k.next++
	k.kernel[kh] = &kernel{handle: kh, mod: m, name: name, namePtr: namePtr, per: make(map[int]*kernelOnDevice)}
	k.byHost[host] = kh
	return nil
}

// RegisterVar records that the host shadow at host stands for device
// variable name (size bytes) of module h.
func (s *Shim) RegisterVar(h uint64, host uintptr, name string, size uint64) error {
	k := &s.kern
	k.mu.Lock()
	defer k.mu.Unlock()
	m, ok := k.modules[h]
	if !ok {
		return fmt.Errorf("core: module handle %#x: %w", h, cudaerr.InvalidResourceHandle)
	}
	k.vars[host] = &variable{mod: m, name: name, size: size, per: make(map[int]varOnDevice)}
	return nil
}

// Kernel returns the handle of the kernel the host stub at host launches.
func (s *Shim) Kernel(host uintptr) (uint64, error) {
	k := &s.kern
	k.mu.RLock()
	defer k.mu.RUnlock()
	kh, ok := k.byHost[host]
	if !ok {
		return 0, errNoKernel(host)
	}
	return kh, nil
}

func (s *Shim) kernelByHandle(h uint64) (*kernel, error) {
	k := &s.kern
	k.mu.RLock()
	defer k.mu.RUnlock()
	kn, ok := k.kernel[h]
	if !ok {
		return nil, fmt.Errorf("core: kernel handle %#x: %w", h, cudaerr.InvalidDeviceFunction)
	}
	return kn, nil
}

// KernelName returns the address of kernel h's (mangled) name in the
// application's memory.
func (s *Shim) KernelName(h uint64) (unsafe.Pointer, error) {
	kn, err := s.kernelByHandle(h)
	if err != nil {
		return nil, err
	}
	return kn.namePtr, nil
}

// loadModule loads module m on dev, once; a failure is remembered.
func (s *Shim) loadModule(c kernelAPI, m *module, dev int) (moduleRef, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if r, ok := m.loaded[dev]; ok {
		return r.m, r.err
	}
	rm, err := c.LoadModule(dev, m.image)
	if err != nil && isTransient(err) {
		return rm, err
	}
	m.loaded[dev] = loadResult{rm, err}
	return rm, err
}

// isTransient reports whether err may go away on a retry (a closed or
// lost session does not come back either, but remembering it gains
// nothing).
func isTransient(err error) bool {
	var lost *runtime.LostError
	return errors.As(err, &lost) || errors.Is(err, runtime.ErrClosed)
}

// onDevice returns kernel kn's function and layout on dev, resolving them
// at the first call.
func (s *Shim) onDevice(c kernelAPI, kn *kernel, dev int) (*kernelOnDevice, error) {
	kn.mu.RLock()
	kd := kn.per[dev]
	kn.mu.RUnlock()
	if kd != nil {
		return kd, kd.err
	}
	rm, err := s.loadModule(c, kn.mod, dev)
	if err != nil {
		return nil, err
	}
	kd = &kernelOnDevice{}
	kd.fn, kd.params, kd.err = c.Function(dev, rm, kn.name)
	if kd.err == nil {
		kd.size, kd.err = argsSize(kd.params)
	}
	if kd.err != nil && isTransient(kd.err) {
		return nil, kd.err
	}
	kn.mu.Lock()
	if prev := kn.per[dev]; prev != nil {
		kd = prev
	} else {
		kn.per[dev] = kd
	}
	kn.mu.Unlock()
	return kd, kd.err
}

// argPool holds packed argument buffers, so that launches allocate
// nothing in the steady state.
var argPool = sync.Pool{New: func() any { b := make([]byte, 0, 256); return &b }}

// Launch launches kernel h on dev with grid and block dimensions,
// sharedMem bytes of dynamic shared memory, on stream (a handle; 0: dev's
// legacy stream). args is the application's array of pointers to the
// arguments, one per kernel parameter, as cudaLaunchKernel takes it.
func (s *Shim) Launch(h uint64, dev int, grid, block [3]uint32, sharedMem, stream uint64, args unsafe.Pointer) error {
	return s.LaunchEx(h, dev, grid, block, sharedMem, stream, args, 0)
}

// LaunchEx is Launch with flags (LaunchCooperative for
// cudaLaunchCooperativeKernel and the cooperative launch attribute). A
// launch captured on a capturing stream keeps its flags in its node, and
// every replay launches with them.
func (s *Shim) LaunchEx(h uint64, dev int, grid, block [3]uint32, sharedMem, stream uint64, args unsafe.Pointer, flags LaunchFlags) error {
	if err := checkLaunchFlags(flags); err != nil {
		return err
	}
	c, err := s.kernelDevice(dev)
	if err != nil {
		return err
	}
	kn, err := s.kernelByHandle(h)
	if err != nil {
		return err
	}
	if sharedMem > 1<<32-1 {
		return fmt.Errorf("core: %d bytes of dynamic shared memory: %w", sharedMem, cudaerr.InvalidValue)
	}
	st, err := s.stream(dev, stream)
	if err != nil {
		return err
	}
	kd, err := s.onDevice(c, kn, dev)
	if err != nil {
		return err
	}
	if s.graphs.active.Load() != 0 {
		if captured, err := s.captureKernel(dev, stream, kd.fn, kn.name, kd.params, kd.size, grid, block, sharedMem, flags, args, nil); captured || err != nil {
			return err
		}
	}
	return launchArgs(c, dev, kd.fn, kn.name, kd.params, kd.size, grid, block, uint32(sharedMem), flags, st, args)
}

// FuncAttributes are a kernel's attributes, as cudaFuncAttributes holds
// them.
type FuncAttributes struct {
	SharedSizeBytes, ConstSizeBytes, LocalSizeBytes   uint64
	MaxThreadsPerBlock, NumRegs                       int
	PTXVersion, BinaryVersion, CacheModeCA            int
	MaxDynamicSharedSizeBytes, PreferredShmemCarveout int
}

// FuncAttributes returns kernel h's attributes on dev.
func (s *Shim) FuncAttributes(h uint64, dev int) (FuncAttributes, error) {
	c, err := s.kernelDevice(dev)
	if err != nil {
		return FuncAttributes{}, err
	}
	kn, err := s.kernelByHandle(h)
	if err != nil {
		return FuncAttributes{}, err
	}
	kd, err := s.onDevice(c, kn, dev)
	if err != nil {
		return FuncAttributes{}, err
	}
	var out FuncAttributes
	for _, f := range []struct {
		attr int
		set  func(int)
	}{
		{FuncAttrMaxThreadsPerBlock, func(v int) { out.MaxThreadsPerBlock = v }},
		{FuncAttrSharedSizeBytes, func(v int) { out.SharedSizeBytes = uint64(v) }},
		{FuncAttrConstSizeBytes, func(v int) { out.ConstSizeBytes = uint64(v) }},
		{FuncAttrLocalSizeBytes, func(v int) { out.LocalSizeBytes = uint64(v) }},
		{FuncAttrNumRegs, func(v int) { out.NumRegs = v }},
		{FuncAttrPTXVersion, func(v int) { out.PTXVersion = v }},
		{FuncAttrBinaryVersion, func(v int) { out.BinaryVersion = v }},
		{FuncAttrCacheModeCA, func(v int) { out.CacheModeCA = v }},
		{FuncAttrMaxDynamicSharedSizeBytes, func(v int) { out.MaxDynamicSharedSizeBytes = v }},
		{FuncAttrPreferredSharedMemoryCarveout, func(v int) { out.PreferredShmemCarveout = v }},
	} {
		v, err := c.FuncAttribute(dev, kd.fn, f.attr)
		if err != nil {
			return FuncAttributes{}, err
		}
		f.set(v)
	}
	return out, nil
}

// FuncSetAttribute sets attribute attr (a cudaFuncAttribute) of kernel h
// on dev.
func (s *Shim) FuncSetAttribute(h uint64, dev, attr, value int) error {
	c, err := s.kernelDevice(dev)
	if err != nil {
		return err
	}
	kn, err := s.kernelByHandle(h)
	if err != nil {
		return err
	}
	kd, err := s.onDevice(c, kn, dev)
	if err != nil {
		return err
	}
	return c.SetFuncAttribute(dev, kd.fn, attr, value)
}

// SymbolAddress returns the device address and size of the variable whose
// host shadow is at host, on dev.
func (s *Shim) SymbolAddress(host uintptr, dev int) (addr, size uint64, err error) {
	c, err := s.kernelDevice(dev)
	if err != nil {
		return 0, 0, err
	}
	s.kern.mu.RLock()
	v, ok := s.kern.vars[host]
	s.kern.mu.RUnlock()
	if !ok {
		return 0, 0, fmt.Errorf("core: %#x is not a registered device variable: %w", host, cudaerr.InvalidSymbol)
	}
	v.mu.Lock()
	r, ok := v.per[dev]
	v.mu.Unlock()
	if ok {
		return r.addr, r.size, r.err
	}
	rm, err := s.loadModule(c, v.mod, dev)
	if err != nil {
		return 0, 0, err
	}
	r.addr, r.size, r.err = c.Global(dev, rm, v.name)
	if r.err != nil && isTransient(r.err) {
		return 0, 0, r.err
	}
	if r.err == nil && r.size > 0 {
		// Copies to and from it are device copies, never host ones.
		s.symbols.add(uintptr(r.addr), r.size)
	}
	v.mu.Lock()
	v.per[dev] = r
	v.mu.Unlock()
	return r.addr, r.size, r.err
}
