package core

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/xgpu/xgpu/devicemap"
	"github.com/xgpu/xgpu/internal/cudaerr"
	"github.com/xgpu/xgpu/runtime"
)

// DefaultOpenTimeout bounds the opening of the sessions at the first CUDA
// call.
const DefaultOpenTimeout = 60 * time.Second

// Shim is the state of the CUDA runtime API of one process: the client
// (opened at the first call that needs a device), the handle tables of
// streams, events, modules and kernels, and the registered fat binaries.
// Its methods are safe for concurrent use.
type Shim struct {
	load func() (Config, error)
	open func(ctx context.Context, cfg Config) (*runtime.Client, error)

	client atomic.Pointer[runtime.Client] // set once open; read on every call

	mu      sync.Mutex // guards the fields below
	done    bool       // open was tried
	openErr error      // why open failed; returned by every later call
	cfg     Config
	devs    []Device // per logical device, from the map
	m       *devicemap.Map

	log atomic.Pointer[slog.Logger]

	streams table[streamEntry]
	events  table[runtime.Event]
	host    rangeTable // page-locked host memory
	symbols rangeTable // device variables whose address was asked
	kern    kernels
	dmods   table[*driverModule]   // modules loaded through the driver API
	dfuncs  table[*driverFunction] // their functions
	kapi    kernelAPI              // tests replace the runtime's kernel calls; nil: the client's
	attrs   attrState              // the devices' attributes, asked at first need (devices.go)

	graphs   graphState                                   // graphs, executable graphs, stream captures
	pools    poolState                                    // stream-ordered memory pools
	hostCall atomic.Pointer[func(fn, arg unsafe.Pointer)] // calls the application's host functions

	unsupported sync.Map // name -> struct{}: names already logged
}

// New returns a Shim that calls load, then opens the client, at the first
// call that needs a device; a process that never uses CUDA reads no
// configuration and opens nothing.
func New(load func() (Config, error)) *Shim {
	s := &Shim{load: load, open: openClient}
	s.log.Store(slog.New(slog.DiscardHandler))
	s.kern.init()
	return s
}

// openClient opens cfg's client.
func openClient(ctx context.Context, cfg Config) (*runtime.Client, error) {
	rc := cfg.Runtime
	if cfg.Map != nil {
		rc.Map = cfg.Map
		return runtime.Open(ctx, rc)
	}
	return runtime.OpenLease(ctx, cfg.Aggregator, cfg.Lease, rc)
}

// Logger returns the shim's logger (a discarding one before the
// configuration is loaded).
func (s *Shim) Logger() *slog.Logger { return s.log.Load() }

// Client returns the open client, opening it on first use. A failure is
// final: every later call returns the same error, as a CUDA runtime that
// failed to initialize does.
func (s *Shim) Client() (*runtime.Client, error) {
	if c := s.client.Load(); c != nil {
		return c, nil
	}
	return s.openSlow()
}

func (s *Shim) openSlow() (*runtime.Client, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.client.Load(); c != nil {
		return c, nil
	}
	if s.done {
		return nil, s.openErr
	}
	s.done = true
	c, err := s.openLocked()
	if err != nil {
		s.openErr = err
		s.Logger().Error("no CUDA devices", "err", err)
		return nil, err
	}
	s.client.Store(c)
	return c, nil
}

// InitError is the error of every call after the client failed to open.
// Code is the cudaError_t the application gets.
type InitError struct {
	Code cudaerr.Error
	Err  error
}

func (e *InitError) Error() string { return "core: CUDA initialization failed: " + e.Err.Error() }

// Unwrap gives both the status and the cause.
func (e *InitError) Unwrap() []error { return []error{e.Code, e.Err} }

func (s *Shim) openLocked() (*runtime.Client, error) {
	cfg, err := s.load()
	if err != nil {
		// No configuration, no logger: the failure is still worth a
		// line on stderr, at the level the environment asks for.
		s.log.Store(NewLogger(os.Getenv(EnvLogLevel)))
		if errors.Is(err, ErrNoConfig) {
			return nil, &InitError{Code: cudaerr.NoDevice, Err: err}
		}
		return nil, &InitError{Code: cudaerr.InitializationError, Err: err}
	}
	if cfg.Logger != nil {
		s.log.Store(cfg.Logger)
	}
	s.cfg = cfg
	if cfg.Map != nil && cfg.Map.Len() == 0 {
		return nil, &InitError{Code: cudaerr.NoDevice, Err: errors.New("the device map (after " + EnvVisible + ") has no devices")}
	}
	startTracing(s.Logger())
	ctx, cancel := context.WithTimeout(context.Background(), DefaultOpenTimeout)
	defer cancel()
	c, err := s.open(ctx, cfg)
	if err != nil {
		code := cudaerr.Code(err)
		if code == cudaerr.Unknown {
			code = cudaerr.DevicesUnavailable
		}
		return nil, &InitError{Code: code, Err: err}
	}
	s.m = c.Map()
	s.devs = make([]Device, s.m.Len())
	for i := range s.devs {
		s.devs[i] = newDevice(s.m, i)
	}
	return c, nil
}

// Close closes the client, if open: the servers free everything the
// process held. Later calls fail with cudaErrorCudartUnloading.
func (s *Shim) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.done {
		s.done = true
		s.openErr = &InitError{Code: cudaerr.CudartUnloading, Err: errors.New("the shim is shut down")}
		return nil
	}
	c := s.client.Load()
	if c == nil {
		return nil
	}
	defer stopTracing(s.Logger()) // after the sessions: their last spans too
	return c.Close()
}

// Code returns the cudaError_t of err (0 for nil), as the C ABI returns
// it.
func Code(err error) int32 { return int32(cudaerr.Code(err)) }

// Unsupported logs, once per name, that the application called a CUDA
// runtime or driver API function the shim does not serve, and returns
// cudaErrorNotSupported (801, CUDA_ERROR_NOT_SUPPORTED in the driver API).
func (s *Shim) Unsupported(name string) error {
	if _, seen := s.unsupported.LoadOrStore(name, struct{}{}); !seen {
		// The configuration may not be loaded yet (the first call of
		// the process); loading it here gives the log its level.
		_, _ = s.Client()
		s.Logger().Warn("CUDA function not supported by xgpu; it returns 801 (not supported)", "function", name)
	}
	return cudaerr.NotSupported
}

// device checks a logical device index and returns the client.
func (s *Shim) device(dev int) (*runtime.Client, error) {
	c, err := s.Client()
	if err != nil {
		return nil, err
	}
	if dev < 0 || dev >= len(s.devs) {
		return nil, fmt.Errorf("core: device %d outside 0..%d: %w", dev, len(s.devs)-1, cudaerr.InvalidDevice)
	}
	return c, nil
}

// table maps the integer handles the C side holds to values.
type table[T comparable] struct {
	mu   sync.RWMutex // guards next and m
	next uint64
	m    map[uint64]T
}

// firstHandle keeps handles clear of the special stream values of the
// CUDA API (0: NULL, 1: cudaStreamLegacy, 2: cudaStreamPerThread) and of
// small integers a buggy caller might pass.
const firstHandle = 0x1000

func (t *table[T]) add(v T) uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m == nil {
		t.m = make(map[uint64]T)
		t.next = firstHandle
	}
	h := t.next
	t.next++
	t.m[h] = v
	return h
}

func (t *table[T]) get(h uint64) (T, bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	v, ok := t.m[h]
	return v, ok
}

func (t *table[T]) remove(h uint64) (T, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	v, ok := t.m[h]
	delete(t.m, h)
	return v, ok
}
