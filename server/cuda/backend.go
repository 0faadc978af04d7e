//go:build cgo

package cuda

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/xgpu/xgpu/internal/cudaerr"
	"github.com/xgpu/xgpu/server/backend"
)

// name is the backend's Name and the prefix of its OpErrors.
const name = "cuda"

// Backend is the cuda implementation of backend.Backend: the host's CUDA
// devices through the driver API. New creates it.
type Backend struct {
	drv     *Driver
	cfg     Config
	devs    []Device // CUDA device of each index
	infos   []backend.Info
	attrs   []attrSlot    // attributes of each index, read once (attrs.go)
	nextDev atomic.Uint64 // Device ids, the top bits of stream handles
	nextEv  atomic.Uint64 // event handles

	mu      sync.Mutex // guards the fields below
	closed  bool
	gpus    []*gpu // running gpu of each index; nil while no Device is open on it
	devices map[*DeviceContext]struct{}

	eventsMu sync.RWMutex // guards events; held for reading while an event is used
	events   map[backend.Event]*event

	mapped mappedSet // HostAlloc buffers of every Device (mapped.go)
}

var _ backend.Backend = (*Backend)(nil)

// New loads the CUDA driver (cfg.Library), initializes it and describes its
// devices. It fails with a *LoadError when the driver cannot be loaded, and
// with the driver's Result when cuInit fails (ErrNoDevice on a machine
// without GPUs).
func New(cfg Config) (backend.Backend, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	drv, err := Open(cfg.Library)
	if err != nil {
		return nil, err
	}
	if err := drv.Init(); err != nil {
		return nil, fmt.Errorf("cuda: cuInit: %w", err)
	}
	n, err := drv.DeviceCount()
	if err != nil {
		return nil, fmt.Errorf("cuda: cuDeviceGetCount: %w", err)
	}
	b := &Backend{
		drv:     drv,
		cfg:     cfg,
		devs:    make([]Device, n),
		infos:   make([]backend.Info, n),
		attrs:   make([]attrSlot, n),
		gpus:    make([]*gpu, n),
		devices: make(map[*DeviceContext]struct{}),
		events:  make(map[backend.Event]*event),
	}
	for i := range n {
		if b.devs[i], err = drv.DeviceGet(i); err != nil {
			return nil, fmt.Errorf("cuda: cuDeviceGet(%d): %w", i, err)
		}
		if b.infos[i], err = describe(drv, b.devs[i]); err != nil {
			return nil, fmt.Errorf("cuda: device %d: %w", i, err)
		}
	}
	for i := range b.infos {
		b.infos[i].Peers = peersOf(b.infos, i, cfg.Links)
	}
	return b, nil
}

func describe(drv *Driver, dev Device) (backend.Info, error) {
	var info backend.Info
	var err error
	if info.Name, err = drv.DeviceName(dev); err != nil {
		return info, err
	}
	uuid, err := drv.DeviceUUID(dev)
	if err != nil {
		return info, err
	}
	info.UUID = uuid.String()
	bus, err := drv.DevicePCIBusID(dev)
	if err != nil {
		return info, err
	}
	info.PCIBusID = nvmlBusID(bus)
	if info.ComputeMajor, err = drv.DeviceAttribute(dev, AttrComputeCapabilityMajor); err != nil {
		return info, err
	}
	if info.ComputeMinor, err = drv.DeviceAttribute(dev, AttrComputeCapabilityMinor); err != nil {
		return info, err
	}
	if info.Multiprocessors, err = drv.DeviceAttribute(dev, AttrMultiprocessorCount); err != nil {
		return info, err
	}
	if info.TotalMemory, err = drv.DeviceTotalMem(dev); err != nil {
		return info, err
	}
	return info, nil
}

// peersOf lists the links of device i to every other device, from links
// where it knows them.
func peersOf(infos []backend.Info, i int, links map[string][]backend.PeerInfo) []backend.PeerInfo {
	known := map[string]backend.PeerInfo{}
	for _, p := range links[infos[i].UUID] {
		known[p.UUID] = p
	}
	peers := make([]backend.PeerInfo, 0, len(infos)-1)
	for j, o := range infos {
		if j == i {
			continue
		}
		p, ok := known[o.UUID]
		if !ok {
			p = backend.PeerInfo{UUID: o.UUID, PCIePath: "SYS"}
		}
		peers = append(peers, p)
	}
	return peers
}

// Name returns "cuda".
func (b *Backend) Name() string { return name }

// Driver returns the loaded driver, for calls the Backend interface does
// not cover.
func (b *Backend) Driver() *Driver { return b.drv }

// Devices describes the CUDA devices, in ordinal order. It returns a copy.
func (b *Backend) Devices() ([]backend.Info, error) {
	b.mu.Lock()
	closed := b.closed
	b.mu.Unlock()
	if closed {
		return nil, backend.Errorf(name, "Devices", cudaerr.CudartUnloading, "backend closed")
	}
	out := make([]backend.Info, len(b.infos))
	for i, info := range b.infos {
		out[i] = info
		out[i].Peers = append([]backend.PeerInfo(nil), info.Peers...)
	}
	return out, nil
}

// Open creates a Device on spec.Index: it reserves the whole window at
// spec.WindowBase (cuMemAddressReserve) and fails if the driver cannot
// place it exactly there.
func (b *Backend) Open(spec backend.DeviceSpec) (backend.Device, error) {
	const op = "Open"
	if err := spec.Validate(); err != nil {
		return nil, &backend.OpError{Backend: name, Op: op, Err: err}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, backend.Errorf(name, op, cudaerr.CudartUnloading, "backend closed")
	}
	if spec.Index >= len(b.infos) {
		return nil, backend.Errorf(name, op, cudaerr.InvalidDevice, "device %d of %d", spec.Index, len(b.infos))
	}
	total := b.infos[spec.Index].TotalMemory
	if spec.MemoryQuota == 0 {
		spec.MemoryQuota = min(total, spec.WindowSize)
	}
	if spec.MemoryQuota > total {
		return nil, backend.Errorf(name, op, cudaerr.InvalidValue, "memory quota %d exceeds the device's %d bytes", spec.MemoryQuota, total)
	}
	for d := range b.devices {
		if d.spec.Overlaps(spec) {
			return nil, backend.Errorf(name, op, cudaerr.InvalidValue, "window [%#x, +%#x) overlaps an open device's [%#x, +%#x)",
				spec.WindowBase, spec.WindowSize, d.spec.WindowBase, d.spec.WindowSize)
		}
	}
	g := b.gpus[spec.Index]
	if g == nil {
		var peers []Device
		for j, dev := range b.devs {
			if j != spec.Index {
				peers = append(peers, dev)
			}
		}
		var err error
		if g, err = startGPU(b.drv, spec.Index, b.devs[spec.Index], peers, b.cfg); err != nil {
			return nil, &backend.OpError{Backend: name, Op: op, Err: err}
		}
		b.gpus[spec.Index] = g
	}
	d, err := openDevice(b, g, spec)
	if err != nil {
		if g.refs == 0 {
			b.gpus[spec.Index] = nil
			g.stop()
		}
		return nil, err
	}
	g.refs++
	b.devices[d] = struct{}{}
	return d, nil
}

// forget removes a closed Device and stops its gpu if it was the last one.
func (b *Backend) forget(d *DeviceContext) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.devices[d]; !ok {
		return
	}
	delete(b.devices, d)
	d.g.refs--
	if d.g.refs == 0 {
		b.gpus[d.g.index] = nil
		d.g.stop()
	}
}

// Close closes every open Device and releases the Backend; later calls
// fail with cudaErrorCudartUnloading. The driver stays loaded.
func (b *Backend) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return backend.Errorf(name, "Close", cudaerr.CudartUnloading, "backend already closed")
	}
	b.closed = true
	open := make([]*DeviceContext, 0, len(b.devices))
	for d := range b.devices {
		open = append(open, d)
	}
	b.mu.Unlock()
	var errs []error
	for _, d := range open {
		if err := d.Close(); err != nil && !cudaerr.Is(err, cudaerr.ContextIsDestroyed) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// event is one event handle: the CUDA event and the Device it belongs to.
type event struct {
	dev   *DeviceContext
	cu    Event
	flags uint32
}
