package host

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/xgpu/xgpu/internal/cudaerr"
	"github.com/xgpu/xgpu/server/backend"
	"github.com/xgpu/xgpu/server/backend/backendtest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestConformance(t *testing.T) {
	for _, devices := range []int{1, 2} {
		t.Run(map[int]string{1: "one device", 2: "two devices"}[devices], func(t *testing.T) {
			backendtest.Run(t, func(t *testing.T) backend.Backend {
				b, err := New(Config{Devices: devices, Memory: 256 << 20, HostID: "conformance", NVLinks: devices - 1})
				if err != nil {
					t.Fatal(err)
				}
				return b
			})
		})
	}
}

func newBackend(t *testing.T, cfg Config) *Backend {
	t.Helper()
	b, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil && !cudaerr.Is(err, cudaerr.CudartUnloading) {
			t.Errorf("Close: %v", err)
		}
	})
	return b
}

func openDevice(t *testing.T, b *Backend, index, slot int, quota uint64) *Device {
	t.Helper()
	d, err := b.Open(backend.DeviceSpec{
		Index:       index,
		WindowBase:  0x1000_0000_0000 + uint64(slot)<<30,
		WindowSize:  1 << 30,
		MemoryQuota: quota,
	})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return d.(*Device)
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{"zero value", Config{}, ""},
		{"full", Config{Devices: 8, Memory: 141 << 30, Name: "x", HostID: "h", NVLinks: 18, ComputeMajor: 9, ComputeMinor: 0, Multiprocessors: 132}, ""},
		{"negative devices", Config{Devices: -1}, "devices"},
		{"too many devices", Config{Devices: maxDevices + 1}, "devices"},
		{"tiny memory", Config{Memory: 4096}, "memory"},
		{"negative nvlinks", Config{NVLinks: -2}, "nvlinks"},
		{"absurd nvlinks", Config{NVLinks: maxNVLinks + 1}, "nvlinks"},
		{"negative compute", Config{ComputeMajor: -1}, "compute"},
		{"minor without major", Config{ComputeMinor: 5}, "compute"},
		{"negative sms", Config{Multiprocessors: -1}, "multiprocessors"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.HasPrefix(err.Error(), "host: ") {
				t.Fatalf("Validate = %v, want a host: error about %s", err, tt.wantErr)
			}
			if _, err := New(tt.cfg); err == nil {
				t.Fatal("New accepted an invalid config")
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	b := newBackend(t, Config{HostID: "h"})
	cfg := b.Config()
	if cfg.Devices != 1 || cfg.Memory != DefaultMemory || cfg.Name != DefaultName ||
		cfg.ComputeMajor != DefaultComputeMajor || cfg.ComputeMinor != DefaultComputeMinor || cfg.Multiprocessors != DefaultMultiprocessors {
		t.Fatalf("defaults not applied: %+v", cfg)
	}
	if b.Name() != "host" {
		t.Fatalf("Name = %q", b.Name())
	}
	infos, err := b.Devices()
	if err != nil {
		t.Fatal(err)
	}
	if len(infos) != 1 || len(infos[0].Peers) != 0 || infos[0].ComputeMajor != 9 || infos[0].TotalMemory != DefaultMemory {
		t.Fatalf("Devices = %+v", infos)
	}
	if h := newBackend(t, Config{}).Config().HostID; h == "" {
		t.Fatal("HostID not defaulted")
	}
}

func TestDeviceInfo(t *testing.T) {
	tests := []struct {
		name     string
		nvlinks  int
		wantPath string
	}{
		{"pcie only", 0, "PHB"},
		{"hgx", 18, "PHB"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBackend(t, Config{Devices: 4, HostID: "node-1", NVLinks: tt.nvlinks, Name: "emu", ComputeMajor: 8, ComputeMinor: 6})
			infos, err := b.Devices()
			if err != nil {
				t.Fatal(err)
			}
			same := newBackend(t, Config{Devices: 4, HostID: "node-1"})
			other := newBackend(t, Config{Devices: 4, HostID: "node-2"})
			sameInfos, _ := same.Devices()
			otherInfos, _ := other.Devices()
			bus := map[string]bool{}
			for i, info := range infos {
				if info.Name != "emu" || info.ComputeMajor != 8 || info.ComputeMinor != 6 {
					t.Errorf("device %d: %+v", i, info)
				}
				if info.UUID != sameInfos[i].UUID {
					t.Errorf("device %d: UUID not stable for one host id: %s vs %s", i, info.UUID, sameInfos[i].UUID)
				}
				if info.UUID == otherInfos[i].UUID {
					t.Errorf("device %d: two hosts share UUID %s", i, info.UUID)
				}
				// Name-based UUID: version 5, RFC variant.
				if info.UUID[4+14] != '5' || !strings.ContainsRune("89ab", rune(info.UUID[4+19])) {
					t.Errorf("device %d: %s is not a version-5 RFC UUID", i, info.UUID)
				}
				if bus[info.PCIBusID] || len(info.PCIBusID) != len("00000000:10:00.0") {
					t.Errorf("device %d: bad or repeated PCI bus id %q", i, info.PCIBusID)
				}
				bus[info.PCIBusID] = true
				if len(info.Peers) != 3 {
					t.Fatalf("device %d: %d peers", i, len(info.Peers))
				}
				for _, p := range info.Peers {
					if p.NVLinks != tt.nvlinks || p.PCIePath != tt.wantPath {
						t.Errorf("device %d: peer %+v", i, p)
					}
				}
			}
		})
	}
}

// TestSharedPhysicalMemory checks that contexts on one device share its
// memory, each within its own quota.
func TestSharedPhysicalMemory(t *testing.T) {
	const mem = 16 << 20
	b := newBackend(t, Config{Devices: 2, Memory: mem, HostID: "h"})
	a := openDevice(t, b, 0, 0, 12<<20)
	c := openDevice(t, b, 0, 1, 12<<20)
	other := openDevice(t, b, 1, 2, 0)
	if _, total, _ := other.MemGetInfo(); total != mem {
		t.Fatalf("quota 0 gave total %d, want the device's %d", total, mem)
	}
	if _, err := a.Malloc(10 << 20); err != nil {
		t.Fatal(err)
	}
	free, total, err := c.MemGetInfo()
	if err != nil || total != 12<<20 || free != 6<<20 {
		t.Fatalf("MemGetInfo of the second context = (%d, %d, %v), want (%d, %d)", free, total, err, 6<<20, 12<<20)
	}
	_, err = c.Malloc(8 << 20)
	if !cudaerr.Is(err, cudaerr.MemoryAllocation) || !strings.Contains(err.Error(), "exhausted") {
		t.Fatalf("Malloc beyond the device's memory = %v", err)
	}
	if _, err := c.Malloc(6 << 20); err != nil {
		t.Fatalf("Malloc of what is left: %v", err)
	}
	// The other device is untouched.
	if _, err := other.Malloc(mem); err != nil {
		t.Fatalf("Malloc on device 1: %v", err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	// Closing the first context gave its memory back to the device; the
	// second context is now bounded by its quota alone.
	if _, err := c.Malloc(4 << 20); err != nil {
		t.Fatalf("Malloc after the first context closed: %v", err)
	}
	if _, err := c.Malloc(4 << 20); !cudaerr.Is(err, cudaerr.MemoryAllocation) || !strings.Contains(err.Error(), "quota") {
		t.Fatalf("Malloc beyond the quota = %v", err)
	}
}

func TestFreeKeepsQueuedWork(t *testing.T) {
	b := newBackend(t, Config{HostID: "h", Memory: 64 << 20})
	d := openDevice(t, b, 0, 0, 0)
	s, err := d.StreamCreate(backend.StreamNonBlocking, 0)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := d.Malloc(4096)
	data := []byte(strings.Repeat("xgpu", 1024))
	if err := d.MemcpyHtoDAsync(p, data, backend.LegacyStream); err != nil {
		t.Fatal(err)
	}
	if err := d.Synchronize(ctx(t)); err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	if err := d.LaunchHostFunc(s, func() { <-release }); err != nil {
		t.Fatal(err)
	}
	out := make([]byte, 4096)
	if err := d.MemcpyDtoHAsync(out, p, s); err != nil {
		t.Fatal(err)
	}
	if err := d.Free(p); err != nil {
		t.Fatal(err)
	}
	// The address is handed out again, with memory of its own.
	q, err := d.Malloc(4096)
	if err != nil || q != p {
		t.Fatalf("Malloc after Free = %#x, %v; want the freed address %#x", q, err, p)
	}
	if err := d.MemsetD8Async(q, 0, 4096, backend.LegacyStream); err != nil {
		t.Fatal(err)
	}
	close(release)
	if err := d.Synchronize(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if string(out) != string(data) {
		t.Fatal("a copy queued before Free did not read the memory as it was")
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestInjectFault(t *testing.T) {
	b := newBackend(t, Config{HostID: "h", Memory: 64 << 20})
	d := openDevice(t, b, 0, 0, 0)
	p, _ := d.Malloc(4096)
	s, _ := d.StreamCreate(backend.StreamNonBlocking, 0)
	if err := d.InjectFault(cudaerr.InvalidValue); !cudaerr.Is(err, cudaerr.InvalidValue) {
		t.Fatalf("InjectFault of a non-sticky code = %v", err)
	}

	release := make(chan struct{})
	ran := make(chan struct{}, 1) // buffered: the host function never blocks
	if err := d.LaunchHostFunc(s, func() { <-release }); err != nil {
		t.Fatal(err)
	}
	out := []byte{7}
	if err := d.MemcpyDtoHAsync(out, p, s); err != nil {
		t.Fatal(err)
	}
	if err := d.LaunchHostFunc(s, func() { ran <- struct{}{} }); err != nil {
		t.Fatal(err)
	}
	if err := d.InjectFault(cudaerr.IllegalAddress); err != nil {
		t.Fatal(err)
	}
	if err := d.InjectFault(cudaerr.LaunchFailure); err != nil {
		t.Fatal(err)
	}
	close(release)
	err := d.StreamSynchronize(ctx(t), s)
	if !cudaerr.Is(err, cudaerr.IllegalAddress) {
		t.Fatalf("StreamSynchronize after the fault = %v, want cudaErrorIllegalAddress", err)
	}
	select {
	case <-ran:
		t.Fatal("a host function queued before the fault ran after it")
	default:
	}
	if out[0] != 7 {
		t.Fatal("a copy queued before the fault ran after it")
	}
	calls := map[string]error{
		"Malloc":          func() error { _, err := d.Malloc(1); return err }(),
		"Free":            d.Free(p),
		"MemsetD8Async":   d.MemsetD8Async(p, 0, 1, backend.LegacyStream),
		"StreamQuery":     d.StreamQuery(s),
		"Synchronize":     d.Synchronize(ctx(t)),
		"EventCreate":     func() error { _, err := d.EventCreate(0); return err }(),
		"StreamCreate":    func() error { _, err := d.StreamCreate(0, 0); return err }(),
		"LaunchHostFunc":  d.LaunchHostFunc(s, func() {}),
		"MemcpyPeerAsync": openDevice(t, b, 0, 1, 0).MemcpyPeerAsync(0x1000_0000_0000+1<<30, d, 0, 1, backend.LegacyStream),
	}
	for op, err := range calls {
		if op == "MemcpyPeerAsync" {
			// The healthy source device rejects the faulted destination.
			if !cudaerr.Is(err, cudaerr.IllegalAddress) {
				t.Errorf("%s to a faulted device = %v", op, err)
			}
			continue
		}
		var oe *backend.OpError
		if !errors.As(err, &oe) || oe.Op != op || !cudaerr.Is(err, cudaerr.IllegalAddress) {
			t.Errorf("%s after the fault = %v, want %s: cudaErrorIllegalAddress", op, err, op)
		}
	}
	if !d.Owns(p, 1) {
		t.Error("Owns stopped working after the fault")
	}
	if err := d.Close(); err != nil {
		t.Fatalf("Close after the fault: %v", err)
	}
	if err := d.InjectFault(cudaerr.IllegalAddress); !cudaerr.Is(err, cudaerr.ContextIsDestroyed) {
		t.Fatalf("InjectFault after Close = %v", err)
	}
}

func TestHandles(t *testing.T) {
	b := newBackend(t, Config{HostID: "h", Memory: 64 << 20})
	d1 := openDevice(t, b, 0, 0, 0)
	d2 := openDevice(t, b, 0, 1, 0)
	s1, _ := d1.StreamCreate(0, 0)
	s2, _ := d2.StreamCreate(0, 0)
	e1, _ := d1.EventCreate(0)
	e2, _ := d2.EventCreate(0)
	seen := map[uint64]bool{}
	for _, h := range []uint64{uint64(s1), uint64(s2), uint64(e1), uint64(e2)} {
		if h == 0 || seen[h] {
			t.Fatalf("handle %#x is zero or repeats", h)
		}
		seen[h] = true
	}
	if uint32(uint64(s1)>>handleShift) != d1.id || uint32(uint64(e2)>>handleShift) != d2.id {
		t.Fatal("handles do not name their device")
	}
	// After a device closes, its event handles are unknown to the others.
	if err := d1.Close(); err != nil {
		t.Fatal(err)
	}
	if err := d2.StreamWaitEvent(s2, e1); !cudaerr.Is(err, cudaerr.InvalidResourceHandle) {
		t.Fatalf("StreamWaitEvent on a closed device's event = %v", err)
	}
	if got := d2.Spec().WindowBase; got != 0x1000_0000_0000+1<<30 {
		t.Fatalf("Spec().WindowBase = %#x", got)
	}
}

func TestFill(t *testing.T) {
	tests := []struct {
		name string
		n    int
		elem int
		v    uint32
	}{
		{"empty", 0, 1, 9},
		{"one byte", 1, 1, 0xab},
		{"bytes not a power of two", 1000, 1, 0x5a},
		{"halves", 2 * 333, 2, 0xbeef},
		{"words", 4 * 1025, 4, 0x01020304},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := make([]byte, tt.n)
			fill(b, tt.v, tt.elem)
			for i := range b {
				if want := byte(tt.v >> (8 * (i % tt.elem))); b[i] != want {
					t.Fatalf("byte %d = %#x, want %#x", i, b[i], want)
				}
			}
		})
	}
}

func TestFind(t *testing.T) {
	list := []*allocation{
		{base: 0x1000, size: 10, reserved: 256},
		{base: 0x1100, size: 256, reserved: 256},
		{base: 0x2000, size: 1, reserved: 256},
	}
	tests := []struct {
		name string
		p    uint64
		want int // index, -1 for none
	}{
		{"below all", 0xfff, -1},
		{"first start", 0x1000, 0},
		{"first last byte", 0x1009, 0},
		{"first padding", 0x100a, -1},
		{"second start", 0x1100, 1},
		{"second end", 0x11ff, 1},
		{"gap", 0x1200, -1},
		{"third", 0x2000, 2},
		{"past all", 0x2001, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := find(list, tt.p)
			if (tt.want < 0 && got != nil) || (tt.want >= 0 && got != list[tt.want]) {
				t.Fatalf("find(%#x) = %+v, want index %d", tt.p, got, tt.want)
			}
		})
	}
}

// TestWindowExhaustion checks that the window, not only the quota, bounds
// allocations, and that first fit reuses a freed gap.
func TestWindowExhaustion(t *testing.T) {
	b := newBackend(t, Config{HostID: "h", Memory: 64 << 20})
	d, err := b.Open(backend.DeviceSpec{WindowBase: 1 << 40, WindowSize: 4 << 20})
	if err != nil {
		t.Fatal(err)
	}
	p1, _ := d.Malloc(1 << 20)
	p2, _ := d.Malloc(1 << 20)
	p3, _ := d.Malloc(2 << 20)
	if p1 != 1<<40 || p2 != p1+1<<20 || p3 != p2+1<<20 {
		t.Fatalf("first fit placed %#x %#x %#x", p1, p2, p3)
	}
	if _, err := d.Malloc(1); !cudaerr.Is(err, cudaerr.MemoryAllocation) {
		t.Fatalf("Malloc in a full window = %v", err)
	}
	if err := d.Free(p2); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Malloc(1<<20 + 1); !cudaerr.Is(err, cudaerr.MemoryAllocation) {
		t.Fatalf("Malloc larger than the only gap = %v", err)
	}
	if p, err := d.Malloc(1 << 19); err != nil || p != p2 {
		t.Fatalf("Malloc into the gap = %#x, %v; want %#x", p, err, p2)
	}
}

// BenchmarkEnqueue measures the cost of an asynchronous call: pointer
// resolution, enqueue and execution of a small copy.
func BenchmarkEnqueue(b *testing.B) {
	be, err := New(Config{HostID: "bench", Memory: 64 << 20})
	if err != nil {
		b.Fatal(err)
	}
	defer be.Close()
	d, _ := be.Open(backend.DeviceSpec{WindowBase: 1 << 40, WindowSize: 1 << 30})
	s, _ := d.StreamCreate(backend.StreamNonBlocking, 0)
	p, _ := d.Malloc(4096)
	src := make([]byte, 64)
	b.ReportAllocs()
	for b.Loop() {
		if err := d.MemcpyHtoDAsync(p, src, s); err != nil {
			b.Fatal(err)
		}
	}
	if err := d.StreamSynchronize(context.Background(), s); err != nil {
		b.Fatal(err)
	}
}
