package host

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xgpu/xgpu/internal/cudaerr"
	"github.com/xgpu/xgpu/server/backend"
)

// name is the Backend's Name and the prefix of its errors.
const name = "host"

// maxDeviceID bounds the number of Opens over a Backend's life: a Device's
// id fills the top 24 bits of its stream and event handles.
const (
	handleShift = 40
	maxDeviceID = 1<<(64-handleShift) - 1
)

// Backend emulates a host's GPUs in host memory. Create it with New.
type Backend struct {
	cfg   Config
	infos []backend.Info
	phys  []*physical
	epoch time.Time // event timestamps count from here (monotonic clock)

	// devs maps device ids to open Devices, for StreamWaitEvent on another
	// Device's event. Copy-on-write under mu, so lookups take no lock.
	devs atomic.Pointer[map[uint32]*Device]

	mu     sync.Mutex // guards the fields below and writes of devs
	open   map[uint32]*Device
	nextID uint32
	closed bool
}

var _ backend.Backend = (*Backend)(nil)

// physical is the memory account of one emulated physical device, shared by
// every Device opened on it.
type physical struct {
	total uint64
	used  atomic.Uint64
}

// reserve takes n bytes from the device, or reports that they are not there.
func (p *physical) reserve(n uint64) bool {
	for {
		u := p.used.Load()
		if u+n < u || u+n > p.total {
			return false
		}
		if p.used.CompareAndSwap(u, u+n) {
			return true
		}
	}
}

func (p *physical) release(n uint64) { p.used.Add(-n) }

// New returns a Backend with the devices cfg describes.
func New(cfg Config) (*Backend, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	b := &Backend{
		cfg:   cfg,
		epoch: time.Now(),
		open:  make(map[uint32]*Device),
	}
	uuids := make([]string, cfg.Devices)
	for i := range uuids {
		uuids[i] = deviceUUID(cfg.HostID, i)
	}
	for i := range cfg.Devices {
		info := backend.Info{
			Name:            cfg.Name,
			UUID:            uuids[i],
			PCIBusID:        fmt.Sprintf("%08X:%02X:00.0", i/240, 0x10+i%240),
			ComputeMajor:    cfg.ComputeMajor,
			ComputeMinor:    cfg.ComputeMinor,
			Multiprocessors: cfg.Multiprocessors,
			TotalMemory:     cfg.Memory,
		}
		for j := range cfg.Devices {
			if j != i {
				info.Peers = append(info.Peers, backend.PeerInfo{UUID: uuids[j], NVLinks: cfg.NVLinks, PCIePath: "PHB"})
			}
		}
		b.infos = append(b.infos, info)
		b.phys = append(b.phys, &physical{total: cfg.Memory})
	}
	b.devs.Store(&map[uint32]*Device{})
	return b, nil
}

// deviceUUID derives a stable "GPU-" UUID from the host id and device index:
// the first 16 bytes of a SHA-256, marked as a name-based RFC 9562 UUID.
func deviceUUID(hostID string, index int) string {
	sum := sha256.Sum256(fmt.Appendf(nil, "xgpu host device\x00%s\x00%d", hostID, index))
	u := sum[:16]
	u[6] = u[6]&0x0f | 0x50 // version 5: name-based
	u[8] = u[8]&0x3f | 0x80 // RFC 9562 variant
	return fmt.Sprintf("GPU-%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}

// Name returns "host".
func (b *Backend) Name() string { return name }

// Config returns the configuration in effect, defaults applied.
func (b *Backend) Config() Config { return b.cfg }

// Devices describes the emulated devices.
func (b *Backend) Devices() ([]backend.Info, error) {
	b.mu.Lock()
	closed := b.closed
	b.mu.Unlock()
	if closed {
		return nil, backend.Errorf(name, "Devices", cudaerr.CudartUnloading, "backend closed")
	}
	out := make([]backend.Info, len(b.infos))
	for i, info := range b.infos {
		info.Peers = append([]backend.PeerInfo(nil), info.Peers...)
		out[i] = info
	}
	return out, nil
}

// Open creates a Device on emulated device spec.Index.
func (b *Backend) Open(spec backend.DeviceSpec) (backend.Device, error) {
	const op = "Open"
	if err := spec.Validate(); err != nil {
		return nil, &backend.OpError{Backend: name, Op: op, Err: err}
	}
	if spec.Index >= len(b.infos) {
		return nil, backend.Errorf(name, op, cudaerr.InvalidDevice, "device %d does not exist (%d devices)", spec.Index, len(b.infos))
	}
	phys := b.phys[spec.Index]
	if spec.MemoryQuota == 0 {
		spec.MemoryQuota = min(phys.total, spec.WindowSize)
	}
	if spec.MemoryQuota > phys.total {
		return nil, backend.Errorf(name, op, cudaerr.InvalidValue, "memory quota %d exceeds device %d's memory %d", spec.MemoryQuota, spec.Index, phys.total)
	}

	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, backend.Errorf(name, op, cudaerr.CudartUnloading, "backend closed")
	}
	for _, o := range b.open {
		if o.spec.Overlaps(spec) {
			return nil, backend.Errorf(name, op, cudaerr.InvalidValue, "window [%#x, %#x) overlaps the window [%#x, %#x) of an open device",
				spec.WindowBase, spec.WindowEnd(), o.spec.WindowBase, o.spec.WindowEnd())
		}
	}
	if b.nextID == maxDeviceID {
		return nil, backend.Errorf(name, op, cudaerr.MemoryAllocation, "device handles exhausted after %d opens", maxDeviceID)
	}
	b.nextID++
	d := newDevice(b, b.nextID, spec, phys)
	b.open[d.id] = d
	b.publishLocked()
	return d, nil
}

// publishLocked stores a fresh copy of open in devs. b.mu must be held.
func (b *Backend) publishLocked() {
	m := make(map[uint32]*Device, len(b.open))
	for id, d := range b.open {
		m[id] = d
	}
	b.devs.Store(&m)
}

// device returns the open Device with the given id, or nil.
func (b *Backend) device(id uint32) *Device {
	return (*b.devs.Load())[id]
}

// forget drops a closed Device from the open set.
func (b *Backend) forget(d *Device) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.open, d.id)
	b.publishLocked()
}

// Close closes every open Device and the Backend.
func (b *Backend) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return backend.Errorf(name, "Close", cudaerr.CudartUnloading, "backend already closed")
	}
	b.closed = true
	devs := make([]*Device, 0, len(b.open))
	for _, d := range b.open {
		devs = append(devs, d)
	}
	b.mu.Unlock()

	var errs []error
	for _, d := range devs {
		// A Device closed concurrently by its user reports
		// cudaErrorContextIsDestroyed: that is no failure of Close.
		if err := d.Close(); err != nil && !cudaerr.Is(err, cudaerr.ContextIsDestroyed) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// now returns the nanoseconds since the Backend's epoch.
func (b *Backend) now() int64 { return int64(time.Since(b.epoch)) }
