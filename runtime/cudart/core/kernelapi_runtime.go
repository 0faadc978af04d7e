package core

import (
	"github.com/xgpu/xgpu/runtime"
)

// runtimeKernels is kernelAPI over the runtime client.
type runtimeKernels struct{ c *runtime.Client }

var _ kernelAPI = runtimeKernels{}

func (r runtimeKernels) LoadModule(dev int, image []byte) (moduleRef, error) {
	return r.c.LoadModule(dev, image)
}

func (r runtimeKernels) UnloadModule(dev int, m moduleRef) error {
	return r.c.UnloadModule(m.(runtime.Module))
}

func (r runtimeKernels) Function(dev int, m moduleRef, name string) (functionRef, []Param, error) {
	f, err := r.c.GetFunction(m.(runtime.Module), name)
	if err != nil {
		return nil, nil, err
	}
	ps := f.Params()
	out := make([]Param, len(ps))
	for i, p := range ps {
		out[i] = Param{Offset: p.Offset, Size: p.Size}
	}
	return f, out, nil
}

func (r runtimeKernels) Launch(dev int, f functionRef, grid, block [3]uint32, sharedMem uint32, coop bool, st runtime.Stream, args []byte) error {
	if coop {
		return r.c.LaunchCooperativeKernelPacked(f.(*runtime.Function), runtime.Dim3{X: grid[0], Y: grid[1], Z: grid[2]},
			runtime.Dim3{X: block[0], Y: block[1], Z: block[2]}, sharedMem, st, args)
	}
	return r.c.LaunchKernelPacked(f.(*runtime.Function), runtime.Dim3{X: grid[0], Y: grid[1], Z: grid[2]},
		runtime.Dim3{X: block[0], Y: block[1], Z: block[2]}, sharedMem, st, args)
}

func (r runtimeKernels) FuncAttribute(dev int, f functionRef, attr int) (int, error) {
	return r.c.FuncGetAttribute(f.(*runtime.Function), runtime.FuncAttribute(attr))
}

func (r runtimeKernels) SetFuncAttribute(dev int, f functionRef, attr, value int) error {
	return r.c.FuncSetAttribute(f.(*runtime.Function), runtime.FuncAttribute(attr), value)
}

func (r runtimeKernels) Global(dev int, m moduleRef, name string) (uint64, uint64, error) {
	return r.c.ModuleGetGlobal(m.(runtime.Module), name)
}
