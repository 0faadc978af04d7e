//go:build cgo

package cuda

import (
	"github.com/xgpu/xgpu/internal/cudaerr"
	"github.com/xgpu/xgpu/server/backend"
)

// Module and kernel calls of a Device: its backend.Kernels. Modules are
// loaded into the GPU's primary context (which every Device on the GPU
// shares), but a Device accepts only the module and function handles it
// gave out, and unloads its modules when it closes. Handles are the
// driver's CUmodule and CUfunction values.

var _ backend.Kernels = (*DeviceContext)(nil)

// LoadModule loads a cubin, fatbin or PTX image (cuModuleLoadData).
func (d *DeviceContext) LoadModule(image []byte) (backend.Module, error) {
	const op = "LoadModule"
	if err := d.enter(op); err != nil {
		return 0, err
	}
	defer d.mu.RUnlock()
	if len(image) == 0 {
		return 0, backend.Errorf(name, op, cudaerr.InvalidValue, "empty image")
	}
	var m Module
	err := d.do(op, func() error {
		var err error
		m, err = d.drv.ModuleLoadData(image)
		return err
	})
	if err != nil {
		return 0, err
	}
	d.kernMu.Lock()
	d.modules[m] = struct{}{}
	d.kernMu.Unlock()
	return backend.Module(m), nil
}

// UnloadModule unloads m once the work queued on the context has
// completed (as cudaFree, it waits for the device, on another thread); its
// functions are invalid at once.
func (d *DeviceContext) UnloadModule(bm backend.Module) error {
	const op = "UnloadModule"
	if err := d.enter(op); err != nil {
		return err
	}
	defer d.mu.RUnlock()
	m := Module(bm)
	d.kernMu.Lock()
	if _, ok := d.modules[m]; !ok {
		d.kernMu.Unlock()
		return backend.Errorf(name, op, cudaerr.InvalidResourceHandle, "module %#x is not loaded on this device", uint64(m))
	}
	delete(d.modules, m)
	for f, fm := range d.functions {
		if fm == m {
			delete(d.functions, f)
		}
	}
	if gl := d.globals.Load(); gl != nil {
		var kept []moduleGlobal
		for _, g := range *gl {
			if g.mod != m {
				kept = append(kept, g)
			}
		}
		d.globals.Store(&kept)
	}
	d.kernMu.Unlock()
	err := d.barrier(op)
	if err == nil {
		err = <-d.startWait(d.drv.CtxSynchronize)
		d.g.poison(err)
	}
	if uerr := d.do(op, func() error { return d.drv.ModuleUnload(m) }); err == nil {
		err = uerr
	}
	if err != nil {
		if se := d.stickyErr(op); se != nil {
			return se
		}
		return opErr(op, err)
	}
	return nil
}

// moduleLoaded reports whether m is a module of this Device.
func (d *DeviceContext) moduleLoaded(op string, m Module) error {
	d.kernMu.RLock()
	_, ok := d.modules[m]
	d.kernMu.RUnlock()
	if !ok {
		return backend.Errorf(name, op, cudaerr.InvalidResourceHandle, "module %#x is not loaded on this device", uint64(m))
	}
	return nil
}

// Function returns the kernel fname (mangled) of module m.
func (d *DeviceContext) Function(bm backend.Module, fname string) (backend.Function, error) {
	const op = "Function"
	if err := d.enter(op); err != nil {
		return 0, err
	}
	defer d.mu.RUnlock()
	m := Module(bm)
	if err := d.moduleLoaded(op, m); err != nil {
		return 0, err
	}
	var f Function
	err := d.do(op, func() error {
		var err error
		f, err = d.drv.ModuleGetFunction(m, fname)
		return err
	})
	if err != nil {
		return 0, err
	}
	d.kernMu.Lock()
	defer d.kernMu.Unlock()
	if _, ok := d.modules[m]; !ok {
		// Unloaded meanwhile.
		return 0, backend.Errorf(name, op, cudaerr.InvalidResourceHandle, "module %#x is not loaded on this device", uint64(m))
	}
	d.functions[f] = m
	return backend.Function(f), nil
}

func (d *DeviceContext) checkFunction(op string, f Function) error {
	d.kernMu.RLock()
	_, ok := d.functions[f]
	d.kernMu.RUnlock()
	if !ok {
		return backend.Errorf(name, op, cudaerr.InvalidResourceHandle, "function %#x is not a function of a module of this device", uint64(f))
	}
	return nil
}

// FuncParams returns the layout of f's parameters (cuFuncGetParamInfo):
// where each lies in the packed argument buffer LaunchKernel takes. It
// fails with cudaErrorNotSupported on a driver older than CUDA 12.4.
func (d *DeviceContext) FuncParams(bf backend.Function) ([]backend.Param, error) {
	const op = "FuncParams"
	if err := d.enter(op); err != nil {
		return nil, err
	}
	defer d.mu.RUnlock()
	f := Function(bf)
	if err := d.checkFunction(op, f); err != nil {
		return nil, err
	}
	var params []ParamInfo
	err := d.do(op, func() error {
		var err error
		params, err = d.drv.FuncParams(f)
		return err
	})
	if err != nil {
		return nil, err
	}
	out := make([]backend.Param, len(params))
	for i, p := range params {
		if p.Offset+p.Size > backend.MaxKernelArgs || p.Size == 0 {
			return nil, backend.Errorf(name, op, cudaerr.InvalidKernelImage, "parameter %d at [%d, +%d) is outside the parameter space", i, p.Offset, p.Size)
		}
		out[i] = backend.Param{Offset: uint32(p.Offset), Size: uint32(p.Size)}
	}
	return out, nil
}

// FuncAttribute returns one attribute of f.
func (d *DeviceContext) FuncAttribute(bf backend.Function, attr backend.FuncAttribute) (int, error) {
	const op = "FuncAttribute"
	if err := d.enter(op); err != nil {
		return 0, err
	}
	defer d.mu.RUnlock()
	f := Function(bf)
	if err := d.checkFunction(op, f); err != nil {
		return 0, err
	}
	var v int
	err := d.do(op, func() error {
		var err error
		v, err = d.drv.FuncGetAttribute(f, attr)
		return err
	})
	return v, err
}

// SetFuncAttribute sets one attribute of f, such as
// FuncAttrMaxDynamicSharedSizeBytes.
func (d *DeviceContext) SetFuncAttribute(bf backend.Function, attr backend.FuncAttribute, v int) error {
	const op = "SetFuncAttribute"
	if err := d.enter(op); err != nil {
		return err
	}
	defer d.mu.RUnlock()
	f := Function(bf)
	if err := d.checkFunction(op, f); err != nil {
		return err
	}
	return d.do(op, func() error { return d.drv.FuncSetAttribute(f, attr, v) })
}

// ModuleGlobal returns the address and size of the global variable gname
// of module m (cuModuleGetGlobal). The variable lives in memory the driver
// allocated for the module, outside the Device's window and allocations.
func (d *DeviceContext) ModuleGlobal(bm backend.Module, gname string) (backend.DevicePtr, uint64, error) {
	const op = "ModuleGlobal"
	if err := d.enter(op); err != nil {
		return 0, 0, err
	}
	defer d.mu.RUnlock()
	m := Module(bm)
	if err := d.moduleLoaded(op, m); err != nil {
		return 0, 0, err
	}
	var p DevicePtr
	var size uint64
	err := d.do(op, func() error {
		var err error
		p, size, err = d.drv.ModuleGetGlobal(m, gname)
		return err
	})
	if err == nil && size > 0 {
		d.kernMu.Lock()
		var list []moduleGlobal
		if gl := d.globals.Load(); gl != nil {
			list = *gl
		}
		known := false
		for _, g := range list {
			known = known || (g.mod == m && g.base == uint64(p))
		}
		if !known {
			next := append(append([]moduleGlobal(nil), list...), moduleGlobal{mod: m, base: uint64(p), size: size})
			d.globals.Store(&next)
		}
		d.kernMu.Unlock()
	}
	return backend.DevicePtr(p), size, err
}

// LaunchKernel queues f on s with the packed argument buffer args (each
// argument at its FuncParams offset). args is copied: the caller may reuse
// it at once. Launch errors the driver reports when the launch is issued
// (a bad configuration, too many resources) come back from the Device's
// next synchronizing call, as CUDA reports them.
func (d *DeviceContext) LaunchKernel(bf backend.Function, grid, block backend.Dim3, sharedMem uint32, s backend.Stream, args []byte) error {
	const op = "LaunchKernel"
	if err := d.enter(op); err != nil {
		return err
	}
	defer d.mu.RUnlock()
	st, err := d.checkLaunch(op, bf, grid, block, s, args)
	if err != nil {
		return err
	}
	f, buf, cu := Function(bf), append([]byte(nil), args...), st.cu
	return d.submit(op, func() error {
		return d.drv.LaunchKernel(f, grid, block, sharedMem, cu, buf)
	})
}

// checkLaunch checks a launch of bf on s: the stream, the function, the
// configuration and the argument buffer's size. d.mu is held.
func (d *DeviceContext) checkLaunch(op string, bf backend.Function, grid, block backend.Dim3, s backend.Stream, args []byte) (*stream, error) {
	st, err := d.streamLocked(op, s)
	if err != nil {
		return nil, err
	}
	if err := d.checkFunction(op, Function(bf)); err != nil {
		return nil, err
	}
	if grid.X == 0 || grid.Y == 0 || grid.Z == 0 || block.X == 0 || block.Y == 0 || block.Z == 0 {
		return nil, backend.Errorf(name, op, cudaerr.InvalidConfiguration, "grid %v or block %v has a zero dimension", grid, block)
	}
	if len(args) > backend.MaxKernelArgs {
		return nil, backend.Errorf(name, op, cudaerr.InvalidValue, "%d bytes of arguments exceed %d", len(args), backend.MaxKernelArgs)
	}
	return st, nil
}

var _ backend.CooperativeLauncher = (*DeviceContext)(nil)

// LaunchCooperativeKernel queues f on s with cuLaunchCooperativeKernel:
// every block of grid is resident at once. It is checked at once as
// LaunchKernel is, and fails with cudaErrorNotSupported when the driver
// lacks the entry points (Driver.CanLaunchCooperative). The driver's
// refusals (cudaErrorCooperativeLaunchTooLarge for a grid the GPU cannot
// hold at once, cudaErrorNotSupported on a GPU without cooperative
// launches) come back from the Device's next synchronizing call and leave
// the context usable.
func (d *DeviceContext) LaunchCooperativeKernel(bf backend.Function, grid, block backend.Dim3, sharedMem uint32, s backend.Stream, args []byte) error {
	const op = "LaunchCooperativeKernel"
	if err := d.enter(op); err != nil {
		return err
	}
	defer d.mu.RUnlock()
	st, err := d.checkLaunch(op, bf, grid, block, s, args)
	if err != nil {
		return err
	}
	if !d.drv.CanLaunchCooperative() {
		return backend.Errorf(name, op, cudaerr.NotSupported, "the driver lacks cuLaunchCooperativeKernel or cuFuncGetParamInfo")
	}
	f, buf, cu := Function(bf), append([]byte(nil), args...), st.cu
	return d.submit(op, func() error {
		return d.drv.LaunchCooperativeKernel(f, grid, block, sharedMem, cu, buf)
	})
}
