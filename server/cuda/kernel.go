//go:build cgo

package cuda

import (
	"github.com/xgpu/xgpu/internal/cudaerr"
	"github.com/xgpu/xgpu/server/backend"
)

// Module and kernel calls of a Device. They are not part of
// backend.Device (the host backend cannot run device code); the worker
// reaches them through a type assertion to *cuda.Device. Modules are loaded
// into the GPU's primary context and unloaded when the Device closes.

// LoadModule loads a cubin, fatbin or PTX image (cuModuleLoadData).
func (d *DeviceContext) LoadModule(image []byte) (Module, error) {
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
	return m, nil
}

// UnloadModule unloads m; its functions become invalid.
func (d *DeviceContext) UnloadModule(m Module) error {
	const op = "UnloadModule"
	if err := d.enter(op); err != nil {
		return err
	}
	defer d.mu.RUnlock()
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
	d.kernMu.Unlock()
	return d.submit(op, func() error { return d.drv.ModuleUnload(m) })
}

// Function returns the kernel name (mangled) of module m.
func (d *DeviceContext) Function(m Module, fname string) (Function, error) {
	const op = "Function"
	if err := d.enter(op); err != nil {
		return 0, err
	}
	defer d.mu.RUnlock()
	d.kernMu.RLock()
	_, ok := d.modules[m]
	d.kernMu.RUnlock()
	if !ok {
		return 0, backend.Errorf(name, op, cudaerr.InvalidResourceHandle, "module %#x is not loaded on this device", uint64(m))
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
	d.functions[f] = m
	d.kernMu.Unlock()
	return f, nil
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
// where each lies in the packed argument buffer LaunchKernel takes.
func (d *DeviceContext) FuncParams(f Function) ([]ParamInfo, error) {
	const op = "FuncParams"
	if err := d.enter(op); err != nil {
		return nil, err
	}
	defer d.mu.RUnlock()
	if err := d.checkFunction(op, f); err != nil {
		return nil, err
	}
	var params []ParamInfo
	err := d.do(op, func() error {
		var err error
		params, err = d.drv.FuncParams(f)
		return err
	})
	return params, err
}

// FuncAttribute returns one attribute of f.
func (d *DeviceContext) FuncAttribute(f Function, attr FuncAttribute) (int, error) {
	const op = "FuncAttribute"
	if err := d.enter(op); err != nil {
		return 0, err
	}
	defer d.mu.RUnlock()
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
func (d *DeviceContext) SetFuncAttribute(f Function, attr FuncAttribute, v int) error {
	const op = "SetFuncAttribute"
	if err := d.enter(op); err != nil {
		return err
	}
	defer d.mu.RUnlock()
	if err := d.checkFunction(op, f); err != nil {
		return err
	}
	return d.do(op, func() error { return d.drv.FuncSetAttribute(f, attr, v) })
}

// maxArgs is the largest parameter buffer a launch takes (CUDA 12.1+).
const maxArgs = 32764

// LaunchKernel queues f on s with the packed argument buffer args (each
// argument at its FuncParams offset). args is copied: the caller may reuse
// it at once. Launch errors the driver reports when the launch is issued
// (a bad configuration, too many resources) come back from the Device's
// next synchronizing call, as CUDA reports them.
func (d *DeviceContext) LaunchKernel(f Function, grid, block Dim3, sharedMem uint32, s backend.Stream, args []byte) error {
	const op = "LaunchKernel"
	if err := d.enter(op); err != nil {
		return err
	}
	defer d.mu.RUnlock()
	st, err := d.streamLocked(op, s)
	if err != nil {
		return err
	}
	if err := d.checkFunction(op, f); err != nil {
		return err
	}
	if grid.X == 0 || grid.Y == 0 || grid.Z == 0 || block.X == 0 || block.Y == 0 || block.Z == 0 {
		return backend.Errorf(name, op, cudaerr.InvalidConfiguration, "grid %v or block %v has a zero dimension", grid, block)
	}
	if len(args) > maxArgs {
		return backend.Errorf(name, op, cudaerr.InvalidValue, "%d bytes of arguments exceed %d", len(args), maxArgs)
	}
	buf := append([]byte(nil), args...)
	cu := st.cu
	return d.submit(op, func() error {
		return d.drv.LaunchKernel(f, grid, block, sharedMem, cu, buf)
	})
}
