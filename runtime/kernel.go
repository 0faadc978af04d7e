package runtime

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	goruntime "runtime"
	"sync"
	"weak"

	"github.com/xgpu/xgpu/internal/calls"
	"github.com/xgpu/xgpu/internal/cudaerr"
	"github.com/xgpu/xgpu/internal/wire"
	"github.com/xgpu/xgpu/peers"
)

// Modules and kernels. A module is loaded on one logical device (its
// handle means nothing on another): LoadModule names the image by its
// SHA-256 and sends it only when the device's server does not hold it
// already, so that an image crosses the network once per server. A
// kernel's parameter layout is learned from the server once, with
// GetFunction, and kept in the Function; launches pack the arguments at
// their offsets and go fire-and-forget, and a kernel's fault is reported
// by the next synchronising call.

// Module is a module loaded on one logical device: a small value,
// compared with ==. The zero Module is not a valid module.
type Module struct {
	dev int
	id  uint64 // the worker's handle, never 0
}

// Device returns the module's logical device.
func (m Module) Device() int { return m.dev }

// Handle returns the worker's handle of the module.
func (m Module) Handle() uint64 { return m.id }

func (m Module) String() string { return fmt.Sprintf("device %d module %#x", m.dev, m.id) }

// Param is where one kernel parameter lies in the packed argument buffer:
// Size bytes at Offset.
type Param = calls.Param

// Dim3 is a grid size in blocks or a block size in threads.
type Dim3 struct{ X, Y, Z uint32 }

// Function is a kernel of a loaded module with its parameter layout. It
// is immutable and safe to share; GetFunction returns the same *Function
// for the same module and name.
type Function struct {
	mod      Module
	name     string
	id       uint64 // the worker's handle
	params   []Param
	argsSize int
}

// Module returns the function's module.
func (f *Function) Module() Module { return f.mod }

// Device returns the function's logical device.
func (f *Function) Device() int { return f.mod.dev }

// Name returns the kernel's name as given to GetFunction.
func (f *Function) Name() string { return f.name }

// Handle returns the worker's handle of the function.
func (f *Function) Handle() uint64 { return f.id }

// Params returns the parameter layout, in order. It must not be modified.
func (f *Function) Params() []Param { return f.params }

// ArgsSize returns the length of the packed argument buffer: the end of
// the last parameter.
func (f *Function) ArgsSize() int { return f.argsSize }

func (f *Function) String() string { return fmt.Sprintf("%s on %v", f.name, f.mod) }

// FuncAttribute is a kernel attribute; its values are those of
// cudaFuncAttribute (and CUfunction_attribute).
type FuncAttribute int32

// Kernel attributes.
const (
	FuncAttrMaxThreadsPerBlock            FuncAttribute = 0
	FuncAttrSharedSizeBytes               FuncAttribute = 1
	FuncAttrConstSizeBytes                FuncAttribute = 2
	FuncAttrLocalSizeBytes                FuncAttribute = 3
	FuncAttrNumRegs                       FuncAttribute = 4
	FuncAttrPTXVersion                    FuncAttribute = 5
	FuncAttrBinaryVersion                 FuncAttribute = 6
	FuncAttrCacheModeCA                   FuncAttribute = 7
	FuncAttrMaxDynamicSharedSizeBytes     FuncAttribute = 8
	FuncAttrPreferredSharedMemoryCarveout FuncAttribute = 9
)

// funcKey names a function in the client's cache.
type funcKey struct {
	mod  Module
	name string
}

// kernelCache holds the functions the client has looked up.
type kernelCache struct {
	mu      sync.Mutex // guards the fields below
	funcs   map[funcKey]*Function
	globals []globalRange // module globals the client asked for
}

// globalRange is a module's global variable: device memory the driver
// placed outside the device's window when it loaded the module, which
// copies (cudaMemcpyToSymbol) may address like an allocation until the
// module is unloaded.
type globalRange struct {
	mod        Module
	base, size uint64
}

// globalOf finds the module global holding [p, p+n); ok is false when none
// does. It is only asked after a pointer missed the allocation tables.
func (c *Client) globalOf(p, n uint64) (dev int, base, size uint64, ok bool) {
	kc := c.kernels()
	kc.mu.Lock()
	defer kc.mu.Unlock()
	for _, g := range kc.globals {
		if p >= g.base && p-g.base < g.size && n <= g.size-(p-g.base) {
			return g.mod.dev, g.base, g.size, true
		}
	}
	return 0, 0, 0, false
}

// kernelCaches holds each Client's function cache, keyed weakly so that a
// Client that is no longer referenced takes its cache with it.
var kernelCaches sync.Map // weak.Pointer[Client] -> *kernelCache

func (c *Client) kernels() *kernelCache {
	key := weak.Make(c)
	if v, ok := kernelCaches.Load(key); ok {
		return v.(*kernelCache)
	}
	v, loaded := kernelCaches.LoadOrStore(key, &kernelCache{funcs: make(map[funcKey]*Function)})
	if !loaded {
		goruntime.AddCleanup(c, func(k weak.Pointer[Client]) { kernelCaches.Delete(k) }, key)
	}
	return v.(*kernelCache)
}

// LoadModule loads a module image (a cubin, fatbin or PTX for the cuda
// backend) on device dev. The image goes to the server only if none of
// its workers holds an image with the same SHA-256; image may be reused
// as soon as LoadModule returns. Each LoadModule of an image counts: the
// module stays loaded until as many UnloadModule calls.
func (c *Client) LoadModule(dev int, image []byte) (Module, error) {
	const op = "cuModuleLoadData"
	d, err := c.device(op, dev)
	if err != nil {
		return Module{}, err
	}
	if len(image) == 0 {
		return Module{}, opErr(op, dev, invalid("empty module image"))
	}
	if len(image) > maxModuleImage {
		return Module{}, opErr(op, dev, invalid("module image of %d bytes exceeds %d", len(image), maxModuleImage))
	}
	sum := sha256.Sum256(image)
	dig := hex.EncodeToString(sum[:])
	id, _, err := d.s.roundTrip(calls.OpModuleHave, &calls.Call{Dev: uint32(dev), Text: dig})
	if err != nil {
		return Module{}, opErr(op, dev, err)
	}
	if id == 0 {
		if id, err = d.s.moduleLoad(dev, dig, image); err != nil {
			return Module{}, opErr(op, dev, err)
		}
		if id == 0 {
			return Module{}, opErr(op, dev, fmt.Errorf("%w (worker returned module handle 0)", cudaerr.Unknown))
		}
	}
	return Module{dev: dev, id: id}, nil
}

// maxModuleImage is the largest image a worker accepts.
const maxModuleImage = 1 << 30

// moduleLoad sends an image: inline up to calls.InlineMax, otherwise as a
// bulk transfer named by the call's request id, sent while the call waits
// for its reply.
func (s *session) moduleLoad(dev int, dig string, image []byte) (uint64, error) {
	c := calls.Call{Dev: uint32(dev), Text: dig, N: uint64(len(image))}
	if len(image) <= calls.InlineMax {
		c.Data = image
		v1, _, err := s.call(calls.OpModuleLoad, &c)
		return v1, err
	}
	w := getWaiter()
	id := s.reqID.Add(1)
	c.Aux = id
	if err := s.register(id, w); err != nil {
		putWaiter(w)
		return 0, err
	}
	if err := s.write(calls.OpModuleLoad, 0, id, &c, true); err != nil {
		if s.unregister(id) {
			putWaiter(w)
			return 0, err
		}
	}
	sent := make(chan error, 1) // buffered: the sender never waits on the caller
	s.wg.Go(func() { sent <- s.conn.SendBulk(s.ctx, id, image) })
	<-w.done
	v1, err := w.v1, w.result()
	putWaiter(w)
	serr := <-sent
	switch {
	case serr == nil:
		s.stats.payloadSent.Add(uint64(len(image)))
		s.stats.bulkTransfersSent.Add(1)
	case err == nil:
		if _, refused := errors.AsType[*peers.BulkError](serr); !refused {
			if lerr := s.lost(); lerr != nil {
				serr = lerr
			}
			err = fmt.Errorf("runtime: sending a module image of %d bytes: %w", len(image), serr)
		}
	}
	return v1, err
}

// UnloadModule drops one load of m; the last one unloads it, once the work
// queued on its device has completed. Its functions are invalid then.
func (c *Client) UnloadModule(m Module) error {
	const op = "cuModuleUnload"
	d, err := c.device(op, m.dev)
	if err != nil {
		return err
	}
	if m.id == 0 {
		return opErr(op, m.dev, &detailError{code: cudaerr.InvalidResourceHandle, msg: "zero module"})
	}
	if _, _, err := d.s.roundTrip(calls.OpModuleUnload, &calls.Call{Dev: uint32(m.dev), Aux: m.id}); err != nil {
		return opErr(op, m.dev, err)
	}
	kc := c.kernels()
	kc.mu.Lock()
	for k := range kc.funcs {
		if k.mod == m {
			delete(kc.funcs, k)
		}
	}
	kept := kc.globals[:0]
	for _, g := range kc.globals {
		if g.mod != m {
			kept = append(kept, g)
		}
	}
	kc.globals = kept
	kc.mu.Unlock()
	return nil
}

// GetFunction returns the kernel name of m with its parameter layout,
// asking m's worker the first time only.
func (c *Client) GetFunction(m Module, name string) (*Function, error) {
	const op = "cuModuleGetFunction"
	d, err := c.device(op, m.dev)
	if err != nil {
		return nil, err
	}
	if name == "" {
		return nil, opErr(op, m.dev, invalid("empty kernel name"))
	}
	key := funcKey{mod: m, name: name}
	kc := c.kernels()
	kc.mu.Lock()
	f := kc.funcs[key]
	kc.mu.Unlock()
	if f != nil {
		return f, nil
	}
	id, n, err := d.s.roundTrip(calls.OpModuleGetFunction, &calls.Call{Dev: uint32(m.dev), Aux: m.id, Text: name})
	if err != nil {
		return nil, opErr(op, m.dev, err)
	}
	if id == 0 || n > calls.MaxKernelArgs {
		return nil, opErr(op, m.dev, fmt.Errorf("%w (worker returned function %#x with %d parameters)", cudaerr.Unknown, id, n))
	}
	var params []Param
	if n > 0 {
		// The layout, of a length now known.
		buf := make([]byte, n*calls.ParamSize)
		fid, fn, err := d.s.callInto(calls.OpFuncGetParams, &calls.Call{Dev: uint32(m.dev), Aux: id}, buf)
		if err != nil {
			return nil, opErr(op, m.dev, err)
		}
		if fid != id || fn != n {
			return nil, opErr(op, m.dev, fmt.Errorf("%w (worker described function %#x with %d parameters, asked for %#x with %d)", cudaerr.Unknown, fid, fn, id, n))
		}
		if params, err = calls.DecodeParams(buf); err != nil {
			return nil, opErr(op, m.dev, fmt.Errorf("%w (%v)", cudaerr.Unknown, err))
		}
	}
	f = &Function{mod: m, name: name, id: id, params: params, argsSize: calls.ArgsSize(params)}
	kc.mu.Lock()
	if old := kc.funcs[key]; old != nil {
		f = old
	} else {
		kc.funcs[key] = f
	}
	kc.mu.Unlock()
	return f, nil
}

// callInto is call for a reply whose data has exactly len(dst) bytes,
// copied into dst.
func (s *session) callInto(op wire.Op, c *calls.Call, dst []byte) (v1, v2 uint64, err error) {
	if err := s.takeDeferred(); err != nil {
		return 0, 0, err
	}
	w := getWaiter()
	w.dst = dst
	id := s.reqID.Add(1)
	if err := s.register(id, w); err != nil {
		putWaiter(w)
		return 0, 0, err
	}
	if err := s.write(op, 0, id, c, true); err != nil {
		if s.unregister(id) {
			putWaiter(w)
			return 0, 0, err
		}
	}
	<-w.done
	v1, v2, err = w.v1, w.v2, w.result()
	putWaiter(w)
	return v1, v2, err
}

// FuncGetAttribute returns one attribute of f.
func (c *Client) FuncGetAttribute(f *Function, attr FuncAttribute) (int, error) {
	const op = "cuFuncGetAttribute"
	d, err := c.funcDevice(op, f)
	if err != nil {
		return 0, err
	}
	v, _, err := d.s.roundTrip(calls.OpFuncGetAttribute, &calls.Call{Dev: uint32(f.mod.dev), Aux: f.id, Aux2: uint64(uint32(attr))})
	if err != nil {
		return 0, opErr(op, f.mod.dev, err)
	}
	return int(int64(v)), nil
}

// FuncSetAttribute sets one attribute of f, such as
// FuncAttrMaxDynamicSharedSizeBytes.
func (c *Client) FuncSetAttribute(f *Function, attr FuncAttribute, v int) error {
	const op = "cuFuncSetAttribute"
	d, err := c.funcDevice(op, f)
	if err != nil {
		return err
	}
	if v < math.MinInt32 || v > math.MaxInt32 {
		return opErr(op, f.mod.dev, invalid("attribute value %d out of range", v))
	}
	_, _, err = d.s.roundTrip(calls.OpFuncSetAttribute, &calls.Call{Dev: uint32(f.mod.dev), Aux: f.id, Aux2: uint64(uint32(attr)), N: uint64(int64(v))})
	return opErr(op, f.mod.dev, err)
}

// ModuleGetGlobal returns the device address and size of the global
// variable name of m.
func (c *Client) ModuleGetGlobal(m Module, name string) (ptr, size uint64, err error) {
	const op = "cuModuleGetGlobal"
	d, err := c.device(op, m.dev)
	if err != nil {
		return 0, 0, err
	}
	if name == "" {
		return 0, 0, opErr(op, m.dev, invalid("empty symbol name"))
	}
	ptr, size, err = d.s.roundTrip(calls.OpModuleGetGlobal, &calls.Call{Dev: uint32(m.dev), Aux: m.id, Text: name})
	if err != nil {
		return 0, 0, opErr(op, m.dev, err)
	}
	if size > 0 && !d.allocs.contains(ptr, size) {
		kc := c.kernels()
		kc.mu.Lock()
		known := false
		for _, g := range kc.globals {
			known = known || (g.mod == m && g.base == ptr)
		}
		if !known {
			kc.globals = append(kc.globals, globalRange{mod: m, base: ptr, size: size})
		}
		kc.mu.Unlock()
	}
	return ptr, size, nil
}

func (c *Client) funcDevice(op string, f *Function) (*device, error) {
	if f == nil {
		return nil, opErr(op, -1, &detailError{code: cudaerr.InvalidResourceHandle, msg: "nil function"})
	}
	return c.device(op, f.mod.dev)
}

// LaunchKernel queues f on stream s with grid blocks of block threads and
// sharedMem bytes of dynamic shared memory per block. args holds each
// parameter's bytes, in order, each exactly as long as the parameter (a
// pointer: its 8 bytes; a struct: its bytes as the device lays it out);
// they are packed at the layout's offsets. Like every asynchronous call it
// returns without waiting: a launch the worker refuses, and a kernel that
// faults, are reported by the next synchronising call.
func (c *Client) LaunchKernel(f *Function, grid, block Dim3, sharedMem uint32, s Stream, args [][]byte) error {
	return c.launchArgs("cudaLaunchKernel", calls.OpLaunchKernel, f, grid, block, sharedMem, s, args)
}

// LaunchKernelPacked is LaunchKernel with the arguments already packed:
// args is exactly f.ArgsSize() bytes, each parameter at its offset.
func (c *Client) LaunchKernelPacked(f *Function, grid, block Dim3, sharedMem uint32, s Stream, args []byte) error {
	return c.launchPacked("cudaLaunchKernel", calls.OpLaunchKernel, f, grid, block, sharedMem, s, args)
}

// LaunchCooperativeKernel is LaunchKernel for a kernel whose blocks
// synchronize grid-wide (cooperative_groups::this_grid().sync()): the
// device runs every block of the grid at once
// (cudaLaunchCooperativeKernel). A grid of more blocks than the device
// holds at once for f with this block size and shared memory is refused
// with cudaErrorCooperativeLaunchTooLarge, and a device that cannot launch
// cooperatively refuses with cudaErrorNotSupported; as for every launch,
// the refusal is reported by the next synchronising call.
func (c *Client) LaunchCooperativeKernel(f *Function, grid, block Dim3, sharedMem uint32, s Stream, args [][]byte) error {
	return c.launchArgs("cudaLaunchCooperativeKernel", calls.OpLaunchCooperativeKernel, f, grid, block, sharedMem, s, args)
}

// LaunchCooperativeKernelPacked is LaunchCooperativeKernel with the
// arguments already packed: args is exactly f.ArgsSize() bytes, each
// parameter at its offset.
func (c *Client) LaunchCooperativeKernelPacked(f *Function, grid, block Dim3, sharedMem uint32, s Stream, args []byte) error {
	return c.launchPacked("cudaLaunchCooperativeKernel", calls.OpLaunchCooperativeKernel, f, grid, block, sharedMem, s, args)
}

// launchArgs packs args by f's layout and sends the launch as opc.
func (c *Client) launchArgs(op string, opc wire.Op, f *Function, grid, block Dim3, sharedMem uint32, s Stream, args [][]byte) error {
	if f == nil {
		return opErr(op, -1, &detailError{code: cudaerr.InvalidResourceHandle, msg: "nil function"})
	}
	if len(args) != len(f.params) {
		return opErr(op, f.mod.dev, invalid("%d arguments for %s, which takes %d", len(args), f.name, len(f.params)))
	}
	var stack [256]byte
	packed := stack[:0]
	if f.argsSize > len(stack) {
		packed = make([]byte, f.argsSize)
	} else {
		packed = stack[:f.argsSize]
	}
	clear(packed)
	for i, p := range f.params {
		if len(args[i]) != int(p.Size) {
			return opErr(op, f.mod.dev, invalid("argument %d of %s has %d bytes, its parameter %d", i, f.name, len(args[i]), p.Size))
		}
		copy(packed[p.Offset:], args[i])
	}
	return c.launch(op, opc, f, grid, block, sharedMem, s, packed)
}

// launchPacked checks packed arguments and sends the launch as opc.
func (c *Client) launchPacked(op string, opc wire.Op, f *Function, grid, block Dim3, sharedMem uint32, s Stream, args []byte) error {
	if f == nil {
		return opErr(op, -1, &detailError{code: cudaerr.InvalidResourceHandle, msg: "nil function"})
	}
	if len(args) != f.argsSize {
		return opErr(op, f.mod.dev, invalid("%d bytes of packed arguments for %s, which takes %d", len(args), f.name, f.argsSize))
	}
	return c.launch(op, opc, f, grid, block, sharedMem, s, args)
}

func (c *Client) launch(op string, opc wire.Op, f *Function, grid, block Dim3, sharedMem uint32, s Stream, args []byte) error {
	d, err := c.device(op, f.mod.dev)
	if err != nil {
		return err
	}
	if grid.X == 0 || grid.Y == 0 || grid.Z == 0 || block.X == 0 || block.Y == 0 || block.Z == 0 {
		return opErr(op, d.idx, &detailError{code: cudaerr.InvalidConfiguration, msg: fmt.Sprintf("grid %v or block %v has a zero dimension", grid, block)})
	}
	st, err := c.streamFor(op, d, s)
	if err != nil {
		return err
	}
	call := calls.Call{Dev: uint32(d.idx), Stream: st.id, Aux: f.id,
		Grid: [3]uint32{grid.X, grid.Y, grid.Z}, Block: [3]uint32{block.X, block.Y, block.Z}, SharedMem: sharedMem, Data: args}
	return opErr(op, d.idx, d.s.async(opc, &call))
}
