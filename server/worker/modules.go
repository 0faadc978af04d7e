package worker

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"math"
	"sync"

	"github.com/xgpu/xgpu/internal/calls"
	"github.com/xgpu/xgpu/internal/cudaerr"
	"github.com/xgpu/xgpu/server/backend"
)

// Modules and kernels. Each device keeps the modules loaded on it by image
// digest, with a count of the loads the client made of each (a module is
// unloaded when the count drops to zero), and the parameter layout of each
// function it gave out, against which every launch's arguments are
// checked. Loading (from the client, or from the server's module store)
// runs off the reader goroutine: turning PTX into machine code may take a
// while, and other threads' calls must not wait for it.

// devKernels is the module state of one device.
type devKernels struct {
	k    backend.Kernels
	coop backend.CooperativeLauncher // nil when the device has no cooperative launches

	mu       sync.RWMutex // guards the fields below; launches hold it for reading
	byDigest map[digest]*loadedModule
	modules  map[backend.Module]*loadedModule
	funcs    map[backend.Function]*kernelFunc
}

// loadedModule is a module of one device, loaded or being loaded.
type loadedModule struct {
	dig   digest
	ready chan struct{} // closed once mod or err is set
	mod   backend.Module
	err   error
	refs  int // loads the client made; guarded by devKernels.mu
}

// kernelFunc is a function handle given out, with its layout.
type kernelFunc struct {
	mod      backend.Module
	params   []backend.Param
	argsSize int
}

func newDevKernels(dev backend.Device) *devKernels {
	k, ok := dev.(backend.Kernels)
	if !ok {
		return nil
	}
	coop, _ := dev.(backend.CooperativeLauncher)
	return &devKernels{
		k:        k,
		coop:     coop,
		byDigest: make(map[digest]*loadedModule),
		modules:  make(map[backend.Module]*loadedModule),
		funcs:    make(map[backend.Function]*kernelFunc),
	}
}

// answer finishes a call that may reply with data; asynchronous calls
// keep their failure for the next synchronizing call.
func (c *conn) answer(r req, err error, v1, v2 uint64, data []byte, flush bool) {
	if r.noReply {
		if err != nil {
			c.w.deferErr(err)
		}
		return
	}
	c.reply(r, statusOf(err), v1, v2, data, flush)
}

// kernelsOf returns the device a module call names and its module state,
// or answers the call with the error.
func (c *conn) kernelsOf(r req, dev uint32) (*device, *devKernels) {
	d := c.devOf(dev)
	switch {
	case d == nil:
		c.answer(r, cudaerr.InvalidDevice, 0, 0, nil, false)
		return nil, nil
	case d.kern == nil:
		c.answer(r, cudaerr.NotSupported, 0, 0, nil, false)
		return nil, nil
	}
	return d, d.kern
}

// moduleHave answers whether the device holds the image the call names:
// loaded already (the load counts), or in the server's module store (it
// is loaded from there). V1 is the module, or 0.
func (c *conn) moduleHave(r req, call *calls.Call) {
	dig, ok := parseDigest(call.Text)
	if !ok {
		c.answer(r, cudaerr.InvalidValue, 0, 0, nil, false)
		return
	}
	_, dk := c.kernelsOf(r, call.Dev)
	if dk == nil {
		return
	}
	dk.mu.Lock()
	lm := dk.byDigest[dig]
	if lm != nil {
		select {
		case <-lm.ready:
			if lm.err == nil {
				lm.refs++
				m := lm.mod
				dk.mu.Unlock()
				c.answer(r, nil, uint64(m), 0, nil, false)
				return
			}
		default:
		}
	}
	dk.mu.Unlock()
	store := c.w.store
	if lm == nil && store == nil {
		c.answer(r, nil, 0, 0, nil, false)
		return
	}
	c.w.spawn(func() {
		m, err := c.w.loadModule(dk, dig, func() ([]byte, error) {
			if store == nil {
				return nil, errNotStored
			}
			return store.get(dig)
		})
		if err != nil {
			// Not held, or held damaged, or not loadable from the store:
			// the client sends the image.
			c.answer(r, nil, 0, 0, nil, true)
			return
		}
		c.answer(r, nil, uint64(m), 0, nil, true)
	})
}

// moduleLoad receives an image (inline, or the bulk transfer Aux names),
// checks it against its digest, keeps it in the server's module store and
// loads it. V1 is the module.
func (c *conn) moduleLoad(r req, call *calls.Call) {
	n, inline := call.N, len(call.Data) > 0
	fail := func(err error) {
		if !inline && call.Aux != 0 {
			c.refuseBulk(call.Aux)
		}
		c.answer(r, err, 0, 0, nil, false)
	}
	dig, ok := parseDigest(call.Text)
	switch {
	case !ok, n == 0, n > MaxModuleImage:
		fail(cudaerr.InvalidValue)
		return
	case inline && (uint64(len(call.Data)) != n || call.Aux != 0):
		fail(cudaerr.InvalidValue)
		return
	case !inline && call.Aux == 0:
		fail(cudaerr.InvalidValue)
		return
	}
	d := c.devOf(call.Dev)
	switch {
	case d == nil:
		fail(cudaerr.InvalidDevice)
		return
	case d.kern == nil:
		fail(cudaerr.NotSupported)
		return
	}
	dk := d.kern
	var img []byte
	if inline {
		img = append([]byte(nil), call.Data...) // the frame buffer is reused
	}
	id := call.Aux
	c.w.spawn(func() {
		var buf *buffer
		if !inline {
			var err error
			if buf, err = c.w.staging.get(c.w.ctx, n); err != nil {
				c.refuseBulk(id)
				c.answer(r, cudaerr.ContextIsDestroyed, 0, 0, nil, true)
				return
			}
			img = buf.b[:n]
			if err := c.pc.RecvBulk(c.w.ctx, id, img); err != nil {
				c.w.staging.drop(buf)
				c.w.log.Debug("worker: module image lost", "err", err)
				c.answer(r, cudaerr.Unknown, 0, 0, nil, true)
				return
			}
		}
		m, err := c.w.loadModule(dk, dig, func() ([]byte, error) {
			if sha256.Sum256(img) != dig {
				return nil, errBadDigest
			}
			if c.w.store != nil {
				if err := c.w.store.put(dig, img); err != nil {
					c.w.log.Warn("worker: module image not kept for other sessions", "digest", dig.String(), "err", err)
				}
			}
			return img, nil
		})
		c.w.staging.put(buf)
		if errors.Is(err, errBadDigest) {
			err = cudaerr.InvalidValue
		}
		c.answer(r, err, uint64(m), 0, nil, true)
	})
}

// errBadDigest reports an image that does not match the digest it came
// with.
var errBadDigest = errors.New("worker: module image does not match its digest")

// loadModule returns the module of image dig on dk, loading it from the
// image fetch returns unless it is loaded or being loaded (then it waits
// for that load). A successful return counts one load.
func (w *Worker) loadModule(dk *devKernels, dig digest, fetch func() ([]byte, error)) (backend.Module, error) {
	for {
		dk.mu.Lock()
		lm := dk.byDigest[dig]
		if lm == nil {
			lm = &loadedModule{dig: dig, ready: make(chan struct{})}
			dk.byDigest[dig] = lm
			dk.mu.Unlock()
			return w.finishLoad(dk, lm, fetch)
		}
		dk.mu.Unlock()
		select {
		case <-lm.ready:
		case <-w.ctx.Done():
			return 0, cudaerr.ContextIsDestroyed
		}
		dk.mu.Lock()
		if lm.err == nil && dk.byDigest[dig] == lm {
			lm.refs++
			dk.mu.Unlock()
			return lm.mod, nil
		}
		dk.mu.Unlock()
		if lm.err != nil {
			// That load failed (another image, or a store miss): try
			// with this caller's image.
			continue
		}
		// Unloaded meanwhile: load again.
	}
}

// finishLoad fetches and loads the image of lm, which this caller added.
func (w *Worker) finishLoad(dk *devKernels, lm *loadedModule, fetch func() ([]byte, error)) (backend.Module, error) {
	img, err := fetch()
	var m backend.Module
	if err == nil {
		m, err = dk.k.LoadModule(img)
		if err != nil {
			w.log.Debug("worker: module load failed", "digest", lm.dig.String(), "bytes", len(img), "err", err)
		}
	}
	dk.mu.Lock()
	lm.mod, lm.err = m, err
	if err != nil {
		delete(dk.byDigest, lm.dig)
	} else {
		lm.refs = 1
		dk.modules[m] = lm
	}
	close(lm.ready)
	dk.mu.Unlock()
	return m, err
}

// moduleUnload drops one load of a module; the last one unloads it (off
// the reader: the backend waits for queued work first).
func (c *conn) moduleUnload(r req, call *calls.Call) {
	_, dk := c.kernelsOf(r, call.Dev)
	if dk == nil {
		return
	}
	m := backend.Module(call.Aux)
	dk.mu.Lock()
	lm := dk.modules[m]
	if lm == nil {
		dk.mu.Unlock()
		c.answer(r, cudaerr.InvalidResourceHandle, 0, 0, nil, false)
		return
	}
	lm.refs--
	if lm.refs > 0 {
		dk.mu.Unlock()
		c.answer(r, nil, 0, 0, nil, false)
		return
	}
	delete(dk.modules, m)
	delete(dk.byDigest, lm.dig)
	for f, kf := range dk.funcs {
		if kf.mod == m {
			delete(dk.funcs, f)
		}
	}
	dk.mu.Unlock()
	if r.noReply {
		c.w.spawn(func() { c.w.deferErr(dk.k.UnloadModule(m)) })
		return
	}
	c.w.spawn(func() { c.answer(r, dk.k.UnloadModule(m), 0, 0, nil, true) })
}

// moduleGetFunction finds a kernel and learns its parameter layout
// (once per function): V1 the function, V2 the number of parameters,
// Data the layout (calls.AppendParams).
func (c *conn) moduleGetFunction(r req, call *calls.Call) {
	_, dk := c.kernelsOf(r, call.Dev)
	if dk == nil {
		return
	}
	m := backend.Module(call.Aux)
	dk.mu.RLock()
	_, ok := dk.modules[m]
	dk.mu.RUnlock()
	if !ok || call.Text == "" {
		c.answer(r, cudaerr.InvalidResourceHandle, 0, 0, nil, false)
		return
	}
	f, err := dk.k.Function(m, call.Text)
	if err != nil {
		c.answer(r, err, 0, 0, nil, false)
		return
	}
	kf, err := c.w.learnFunction(dk, m, f)
	if err != nil {
		c.answer(r, err, 0, 0, nil, false)
		return
	}
	c.answerLayout(r, uint64(f), kf)
}

// learnFunction returns the recorded layout of f, asking the backend the
// first time.
func (w *Worker) learnFunction(dk *devKernels, m backend.Module, f backend.Function) (*kernelFunc, error) {
	dk.mu.RLock()
	kf := dk.funcs[f]
	dk.mu.RUnlock()
	if kf != nil {
		return kf, nil
	}
	params, err := dk.k.FuncParams(f)
	if err != nil {
		return nil, err
	}
	if len(params)*calls.ParamSize > calls.InlineMax {
		return nil, cudaerr.NotSupported
	}
	kf = &kernelFunc{mod: m, params: params, argsSize: backend.ArgsSize(params)}
	dk.mu.Lock()
	defer dk.mu.Unlock()
	if _, ok := dk.modules[m]; !ok {
		return nil, cudaerr.InvalidResourceHandle // unloaded meanwhile
	}
	dk.funcs[f] = kf
	return kf, nil
}

func (c *conn) answerLayout(r req, f uint64, kf *kernelFunc) {
	if r.noReply {
		return
	}
	var buf [64 * calls.ParamSize]byte
	data := buf[:0]
	for _, p := range kf.params { // the layout of calls.AppendParams
		data = binary.LittleEndian.AppendUint32(data, p.Offset)
		data = binary.LittleEndian.AppendUint32(data, p.Size)
	}
	c.reply(r, 0, f, uint64(len(kf.params)), data, false)
}

// funcOf returns a function given out on dk, or nil.
func (dk *devKernels) funcOf(f backend.Function) *kernelFunc {
	dk.mu.RLock()
	kf := dk.funcs[f]
	dk.mu.RUnlock()
	return kf
}

// funcGetParams answers the layout of a function given out before.
func (c *conn) funcGetParams(r req, call *calls.Call) {
	_, dk := c.kernelsOf(r, call.Dev)
	if dk == nil {
		return
	}
	kf := dk.funcOf(backend.Function(call.Aux))
	if kf == nil {
		c.answer(r, cudaerr.InvalidResourceHandle, 0, 0, nil, false)
		return
	}
	c.answerLayout(r, call.Aux, kf)
}

// funcAttribute gets (V1: the value as int64 bits) or sets (N) one
// attribute.
func (c *conn) funcAttribute(r req, call *calls.Call) {
	_, dk := c.kernelsOf(r, call.Dev)
	if dk == nil {
		return
	}
	f := backend.Function(call.Aux)
	if dk.funcOf(f) == nil {
		c.answer(r, cudaerr.InvalidResourceHandle, 0, 0, nil, false)
		return
	}
	if call.Aux2 > math.MaxInt32 {
		c.answer(r, cudaerr.InvalidValue, 0, 0, nil, false)
		return
	}
	attr := backend.FuncAttribute(call.Aux2)
	if r.op == calls.OpFuncGetAttribute {
		v, err := dk.k.FuncAttribute(f, attr)
		c.answer(r, err, uint64(int64(v)), 0, nil, false)
		return
	}
	v := int64(call.N)
	if v < math.MinInt32 || v > math.MaxInt32 {
		c.answer(r, cudaerr.InvalidValue, 0, 0, nil, false)
		return
	}
	c.answer(r, dk.k.SetFuncAttribute(f, attr, int(v)), 0, 0, nil, false)
}

// moduleGetGlobal answers a global variable's address (V1) and size (V2).
func (c *conn) moduleGetGlobal(r req, call *calls.Call) {
	_, dk := c.kernelsOf(r, call.Dev)
	if dk == nil {
		return
	}
	m := backend.Module(call.Aux)
	dk.mu.RLock()
	_, ok := dk.modules[m]
	dk.mu.RUnlock()
	if !ok || call.Text == "" {
		c.answer(r, cudaerr.InvalidResourceHandle, 0, 0, nil, false)
		return
	}
	p, size, err := dk.k.ModuleGlobal(m, call.Text)
	c.answer(r, err, uint64(p), size, nil, false)
}

// launchKernel queues a kernel, ordinarily (OpLaunchKernel) or
// cooperatively (OpLaunchCooperativeKernel, on a device whose backend
// implements backend.CooperativeLauncher; otherwise
// cudaErrorNotSupported). The function must be one given out on the
// device and the arguments exactly as long as its layout: a kernel reads
// its parameters at their offsets, and a short buffer would hand it bytes
// the client never sent.
func (c *conn) launchKernel(r req, call *calls.Call) {
	d := c.devOf(call.Dev)
	if d == nil {
		c.done(r, cudaerr.InvalidDevice, 0, 0)
		return
	}
	dk := d.kern
	if dk == nil || (r.op == calls.OpLaunchCooperativeKernel && dk.coop == nil) {
		c.done(r, cudaerr.NotSupported, 0, 0)
		return
	}
	f := backend.Function(call.Aux)
	kf := dk.funcOf(f)
	switch {
	case kf == nil:
		c.done(r, cudaerr.InvalidResourceHandle, 0, 0)
		return
	case len(call.Data) != kf.argsSize:
		c.done(r, cudaerr.InvalidValue, 0, 0)
		return
	}
	grid := backend.Dim3{X: call.Grid[0], Y: call.Grid[1], Z: call.Grid[2]}
	block := backend.Dim3{X: call.Block[0], Y: call.Block[1], Z: call.Block[2]}
	if r.op == calls.OpLaunchCooperativeKernel {
		c.done(r, dk.coop.LaunchCooperativeKernel(f, grid, block, call.SharedMem, backend.Stream(call.Stream), call.Data), 0, 0)
		return
	}
	c.done(r, dk.k.LaunchKernel(f, grid, block, call.SharedMem, backend.Stream(call.Stream), call.Data), 0, 0)
}
