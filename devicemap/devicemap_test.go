package devicemap

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
)

func TestWindowFor(t *testing.T) {
	tests := []struct {
		name string
		mem  uint64
		want uint64
	}{
		{"zero", 0, MinWindow},
		{"tiny", 1, MinWindow},
		{"exactly 1 GiB", gib, gib},
		{"just above 1 GiB", gib + 1, 2 * gib},
		{"16 GiB", 16 * gib, 16 * gib},
		{"24 GiB", 24 * gib, 32 * gib},
		{"H200 141 GiB", h200, 256 * gib},
		{"H100 80 GiB", 80 * gib, 128 * gib},
		{"2^63", 1 << 63, 1 << 63},
		{"above 2^63", 1<<63 + 1, 0},
		{"max", ^uint64(0), 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := WindowFor(tt.mem); got != tt.want {
				t.Errorf("WindowFor(%#x) = %#x, want %#x", tt.mem, got, tt.want)
			}
		})
	}
}

// pool returns n single-vGPU devices of mem bytes, 8 GPUs a host.
func pool(n int, mem uint64) []Device {
	devs := make([]Device, n)
	for i := range devs {
		host := fmt.Sprintf("h%03d", i/8)
		d := gpu(host, host+"-s", i%8, 0, mem)
		d.Properties.TotalMemory = mem
		devs[i] = d
	}
	return devs
}

func TestWindowsFit(t *testing.T) {
	tests := []struct {
		name       string
		n          int
		mem        uint64
		wantWindow uint64
		wantErr    string
	}{
		{"64 devices of 16 GiB", 64, 16 * gib, 16 * gib, ""},
		{"448 H200", 448, h200, 256 * gib, ""},
		{"449 H200", 449, h200, 0, "at most 448 fit"},
		{"empty", 0, 0, MinWindow, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := New(pool(tt.n, tt.mem))
			if tt.wantErr != "" {
				var pe *ParseError
				if !errors.As(err, &pe) || pe.Field != "devices" || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("New: err = %v, want *ParseError on devices containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			if m.Window != tt.wantWindow || m.Base != DefaultBase {
				t.Fatalf("base, window = %#x, %#x, want %#x, %#x", m.Base, m.Window, DefaultBase, tt.wantWindow)
			}
			if tt.n == 0 {
				return
			}
			lo, hi := m.WindowOf(tt.n - 1)
			if hi > UserSpaceTop || hi-lo != tt.wantWindow {
				t.Fatalf("last window [%#x, %#x) is wrong or past %#x", lo, hi, UserSpaceTop)
			}
			if lo0, _ := m.WindowOf(0); lo0 != DefaultBase {
				t.Fatalf("first window at %#x, want %#x", lo0, DefaultBase)
			}
		})
	}
}

func TestNew(t *testing.T) {
	m := twoHostMap(t)
	if m.Version != Version || m.LeaseID != "lease-7" || m.Base != DefaultBase || m.Window != 256*gib {
		t.Fatalf("map header = %d %q %#x %#x", m.Version, m.LeaseID, m.Base, m.Window)
	}
	for i, d := range m.Devices {
		if d.Index != i {
			t.Errorf("device %d has index %d", i, d.Index)
		}
		if d.VGPU != VGPUID(d.GPUUUID, d.Slot) {
			t.Errorf("device %d: vgpu %q not filled in", i, d.VGPU)
		}
	}

	t.Run("copies its input", func(t *testing.T) {
		devs := twoHostDevices()
		m, err := New(devs)
		if err != nil {
			t.Fatal(err)
		}
		devs[0].Host = "changed"
		devs[0].Peers[0].NVLinks = 1
		if m.Devices[0].Host != "alpha" || m.Devices[0].Peers[0].NVLinks != 18 {
			t.Fatal("map shares memory with the slice given to New")
		}
	})

	t.Run("options", func(t *testing.T) {
		devs := twoHostDevices()
		slices.Reverse(devs)
		m, err := New(devs, WithBase(0x2000_0000_0000), WithWindow(512*gib), KeepOrder(), nil)
		if err != nil {
			t.Fatal(err)
		}
		if m.Base != 0x2000_0000_0000 || m.Window != 512*gib {
			t.Fatalf("base, window = %#x, %#x", m.Base, m.Window)
		}
		if m.Devices[0].GPUUUID != "GPU-beta-0-1" {
			t.Fatalf("KeepOrder: first device %s", m.Devices[0].VGPU)
		}
	})

	tests := []struct {
		name      string
		devs      []Device
		opts      []Option
		wantDev   int
		wantField string
	}{
		{"zero quota", []Device{gpu("a", "a-0", 0, 0, 0)}, nil, 0, "memoryQuota"},
		{"window too small for quota", []Device{gpu("a", "a-0", 0, 0, 2*gib)}, []Option{WithWindow(gib)}, 0, "memoryQuota"},
		{"window not power of two", []Device{gpu("a", "a-0", 0, 0, gib)}, []Option{WithWindow(3 * gib)}, -1, "window"},
		{"base not aligned", []Device{gpu("a", "a-0", 0, 0, gib)}, []Option{WithBase(DefaultBase + gib)}, -1, "base"},
		{"duplicate vGPU", []Device{gpu("a", "a-0", 0, 0, gib), gpu("a", "a-0", 0, 0, gib)}, nil, 1, "vgpu"},
		{"huge device", []Device{func() Device { d := gpu("a", "a-0", 0, 0, gib); d.Properties.TotalMemory = 1<<63 + 1; return d }()}, nil, -1, "window"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.devs, tt.opts...)
			var pe *ParseError
			if !errors.As(err, &pe) || pe.Device != tt.wantDev || pe.Field != tt.wantField {
				t.Fatalf("err = %v (%#v), want device %d field %q", err, pe, tt.wantDev, tt.wantField)
			}
		})
	}
}

func TestWindowOfDeviceOf(t *testing.T) {
	m := twoHostMap(t)
	w := m.Window
	tests := []struct {
		name   string
		ptr    uint64
		want   int
		wantOK bool
	}{
		{"null", 0, 0, false},
		{"below base", DefaultBase - 1, 0, false},
		{"base", DefaultBase, 0, true},
		{"end of window 0", DefaultBase + w - 1, 0, true},
		{"start of window 1", DefaultBase + w, 1, true},
		{"inside window 4", DefaultBase + 4*w + 12345, 4, true},
		{"past the last window", DefaultBase + 5*w, 0, false},
		{"max", ^uint64(0), 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := m.DeviceOf(tt.ptr)
			if got != tt.want || ok != tt.wantOK {
				t.Fatalf("DeviceOf(%#x) = %d, %v, want %d, %v", tt.ptr, got, ok, tt.want, tt.wantOK)
			}
		})
	}
	for i := range m.Len() {
		lo, hi := m.WindowOf(i)
		if lo != DefaultBase+uint64(i)*w || hi != lo+w {
			t.Errorf("WindowOf(%d) = %#x, %#x", i, lo, hi)
		}
		for _, p := range []uint64{lo, hi - 1} {
			if j, ok := m.DeviceOf(p); !ok || j != i {
				t.Errorf("DeviceOf(%#x) = %d, %v, want %d", p, j, ok, i)
			}
		}
	}
	for _, i := range []int{-1, 5} {
		if lo, hi := m.WindowOf(i); lo != 0 || hi != 0 {
			t.Errorf("WindowOf(%d) = %#x, %#x, want 0, 0", i, lo, hi)
		}
	}
	if _, ok := (&Map{}).DeviceOf(DefaultBase); ok {
		t.Error("DeviceOf on a zero Map found a device")
	}
}

func TestDeviceOfDoesNotAllocate(t *testing.T) {
	m := twoHostMap(t)
	allocs := testing.AllocsPerRun(100, func() {
		m.DeviceOf(DefaultBase + 3*m.Window)
		m.WindowOf(2)
		m.Len()
	})
	if allocs != 0 {
		t.Fatalf("DeviceOf/WindowOf allocate %v times", allocs)
	}
}

func TestDevice(t *testing.T) {
	m := twoHostMap(t)
	d, err := m.Device(3)
	if err != nil || d.VGPU != "GPU-beta-0-0/0" || d.Index != 3 {
		t.Fatalf("Device(3) = %+v, %v", d, err)
	}
	d.Peers[0].Kind = LinkSys
	if m.Devices[3].Peers[0].Kind != LinkPIX {
		t.Fatal("Device returned a slice shared with the map")
	}
	for _, i := range []int{-1, 5, 1 << 40} {
		_, err := m.Device(i)
		if !errors.Is(err, ErrNoSuchDevice) || !strings.Contains(err.Error(), fmt.Sprint(i)) {
			t.Errorf("Device(%d) err = %v, want ErrNoSuchDevice naming the index", i, err)
		}
	}
}

func BenchmarkDeviceOf(b *testing.B) {
	m, err := New(pool(64, 16*gib))
	if err != nil {
		b.Fatal(err)
	}
	ptr := DefaultBase + 37*m.Window + 4096
	for b.Loop() {
		m.DeviceOf(ptr)
	}
}
