package core

import (
	"bytes"
	"errors"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"unsafe"

	"github.com/xgpu/xgpu/devicemap"
	"github.com/xgpu/xgpu/internal/cudaerr"
	"github.com/xgpu/xgpu/runtime"
)

// devPtr is a device address as the C side passes it: a pointer to no Go
// memory.
func devPtr(p uint64) unsafe.Pointer { return unsafe.Add(unsafe.Pointer(nil), p) }

func runtimeConfig() runtime.Config { return runtime.Config{CloseTimeout: DefaultCloseTimeout} }

func wantCode(t *testing.T, what string, err error, code cudaerr.Error) {
	t.Helper()
	if got := cudaerr.Code(err); got != code {
		t.Fatalf("%s: %v (%v), want %v", what, err, got, code)
	}
}

func TestConfigFromEnv(t *testing.T) {
	m := startServer(t, 2)
	path := writeMap(t, m)
	tests := []struct {
		name    string
		env     map[string]string
		devices int // -1: error expected
		lease   bool
		want    string // in the error
	}{
		{"nothing", nil, -1, false, EnvDeviceMap},
		{"map", map[string]string{EnvDeviceMap: path}, 2, false, ""},
		{"visible 1", map[string]string{EnvDeviceMap: path, EnvVisible: "1"}, 1, false, ""},
		{"visible none", map[string]string{EnvDeviceMap: path, EnvVisible: ""}, 0, false, ""},
		{"visible bad entry hides the rest", map[string]string{EnvDeviceMap: path, EnvVisible: "1,7,0"}, 1, false, ""},
		{"visible twice", map[string]string{EnvDeviceMap: path, EnvVisible: "0,0"}, -1, false, EnvVisible},
		{"missing file", map[string]string{EnvDeviceMap: path + ".nope"}, -1, false, EnvDeviceMap},
		{"lease", map[string]string{EnvLease: "l-1", EnvAggregator: "127.0.0.1:7700"}, 0, true, ""},
		{"lease without aggregator", map[string]string{EnvLease: "l-1"}, -1, false, EnvAggregator},
		{"map and lease", map[string]string{EnvDeviceMap: path, EnvLease: "l-1"}, -1, false, "set one"},
		{"cert dir without name", map[string]string{EnvDeviceMap: path, EnvCertDir: "/nonexistent"}, -1, false, EnvCertName},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := ConfigFromEnv(func(k string) (string, bool) { v, ok := tt.env[k]; return v, ok })
			if tt.devices < 0 {
				if err == nil || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("ConfigFromEnv = %+v, %v; want an error naming %s", cfg, err, tt.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case tt.lease && (cfg.Lease != "l-1" || cfg.Aggregator != "127.0.0.1:7700" || cfg.Map != nil):
				t.Fatalf("lease config %+v", cfg)
			case !tt.lease && cfg.Map.Len() != tt.devices:
				t.Fatalf("%d devices, want %d", cfg.Map.Len(), tt.devices)
			case cfg.Runtime.CloseTimeout != DefaultCloseTimeout || cfg.Logger == nil:
				t.Fatalf("defaults not set: %+v", cfg.Runtime)
			}
		})
	}
	if _, err := ConfigFromEnv(func(string) (string, bool) { return "", false }); !errors.Is(err, ErrNoConfig) {
		t.Fatalf("empty environment: %v, want ErrNoConfig", err)
	}
}

func TestInitFailureIsFinal(t *testing.T) {
	tests := []struct {
		name string
		load func() (Config, error)
		code cudaerr.Error
	}{
		{"no configuration", func() (Config, error) { return Config{}, ErrNoConfig }, cudaerr.NoDevice},
		{"bad configuration", func() (Config, error) { return Config{}, errors.New("bad") }, cudaerr.InitializationError},
		{"no devices", func() (Config, error) { return Config{Map: &devicemap.Map{}}, nil }, cudaerr.NoDevice},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var calls atomic.Int32
			s := New(func() (Config, error) { calls.Add(1); return tt.load() })
			for range 3 {
				n, err := s.DeviceCount()
				wantCode(t, "DeviceCount", err, tt.code)
				if n != 0 {
					t.Fatalf("%d devices", n)
				}
				_, err = s.Malloc(0, 16)
				wantCode(t, "Malloc", err, tt.code)
			}
			if calls.Load() != 1 {
				t.Fatalf("configuration loaded %d times", calls.Load())
			}
			var ie *InitError
			if _, err := s.Client(); !errors.As(err, &ie) {
				t.Fatalf("%v is not an *InitError", err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestCloseBeforeOpen(t *testing.T) {
	s := New(func() (Config, error) { t.Fatal("configuration loaded"); return Config{}, nil })
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	_, err := s.DeviceCount()
	wantCode(t, "after Close", err, cudaerr.CudartUnloading)
}

func TestDevices(t *testing.T) {
	s := newShim(t)
	n, err := s.DeviceCount()
	if err != nil || n != 2 {
		t.Fatalf("DeviceCount = %d, %v", n, err)
	}
	d, err := s.Device(1)
	if err != nil {
		t.Fatal(err)
	}
	if d.Name != "xgpu host device" || d.TotalMem != testMemory || d.PCIBusID == "" || d.UUID == [16]byte{} {
		t.Fatalf("device %+v", d)
	}
	for a, want := range map[int]int{attrComputeMajor: 9, attrComputeMinor: 0, attrMaxSharedMemoryPerBlock: 49152, 10: 32, 38: 62914560} {
		if !d.Valid[a] || d.Attrs[a] != want {
			t.Errorf("attribute %d = %d (valid %v), want %d", a, d.Attrs[a], d.Valid[a], want)
		}
	}
	if d.Valid[200] || d.Valid[0] {
		t.Error("attributes 0 and 200 valid")
	}
	if i, err := s.DeviceByPCIBusID(strings.ToUpper(d.PCIBusID)); err != nil || i != 1 {
		t.Fatalf("DeviceByPCIBusID(%s) = %d, %v", d.PCIBusID, i, err)
	}
	_, err = s.DeviceByPCIBusID("0000:ff:1f.0")
	wantCode(t, "unknown bus id", err, cudaerr.InvalidDevice)
	_, err = s.DeviceByPCIBusID("bogus")
	wantCode(t, "bad bus id", err, cudaerr.InvalidValue)
	_, err = s.Device(2)
	wantCode(t, "device 2", err, cudaerr.InvalidDevice)
	for _, tt := range []struct {
		a, b int
		want bool
	}{{0, 1, true}, {1, 0, true}, {0, 0, false}} {
		if ok, err := s.CanAccessPeer(tt.a, tt.b); err != nil || ok != tt.want {
			t.Errorf("CanAccessPeer(%d, %d) = %v, %v", tt.a, tt.b, ok, err)
		}
	}
	_, err = s.CanAccessPeer(0, 5)
	wantCode(t, "peer 5", err, cudaerr.InvalidDevice)
}

func TestMemcpy(t *testing.T) {
	s := newShim(t)
	const n = 200 << 10 // above calls.InlineMax: a bulk transfer
	src := bytes.Repeat([]byte("xgpu-cudart!"), n/12+1)[:n]
	dst := make([]byte, n)
	p0, err := s.Malloc(0, n)
	if err != nil {
		t.Fatal(err)
	}
	p1, err := s.Malloc(1, n)
	if err != nil {
		t.Fatal(err)
	}
	dev := devPtr
	host := func(b []byte) unsafe.Pointer { return unsafe.Pointer(&b[0]) }
	steps := []struct {
		name     string
		dst, src unsafe.Pointer
		kind     int
		async    bool
		wantCode cudaerr.Error
	}{
		{"H2D", dev(p0), host(src), HostToDevice, false, cudaerr.Success},
		{"D2D default across devices", dev(p1), dev(p0), Default, false, cudaerr.Success},
		{"D2H async", host(dst), dev(p1), DeviceToHost, true, cudaerr.Success},
		{"wrong direction", dev(p0), host(src), DeviceToHost, false, cudaerr.InvalidValue},
		{"bad kind", dev(p0), host(src), 7, false, cudaerr.InvalidMemcpyDirection},
	}
	for _, st := range steps {
		err := s.Memcpy(st.dst, st.src, n, st.kind, 0, 0, st.async)
		wantCode(t, st.name, err, st.wantCode)
	}
	if err := s.StreamSynchronize(1, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(dst, src) {
		t.Fatal("data differs after H2D, D2D and D2H")
	}
	// Host to host by the pointers.
	other := make([]byte, n)
	if err := s.Memcpy(host(other), host(src), n, Default, 0, 0, false); err != nil || !bytes.Equal(other, src) {
		t.Fatalf("H2H: %v", err)
	}
	// Memset, and a peer copy back.
	if err := s.Memset(p1, 0x5a, 100, 1, 0, false); err != nil {
		t.Fatal(err)
	}
	if err := s.MemcpyPeer(p0, 0, p1, 1, n, 0, false); err != nil {
		t.Fatal(err)
	}
	if err := s.Memcpy(host(dst), dev(p0), n, DeviceToHost, 0, 0, false); err != nil {
		t.Fatal(err)
	}
	if dst[0] != 0x5a || dst[99] != 0x5a || dst[100] != src[100] {
		t.Fatalf("memset + peer copy: % x", dst[98:102])
	}
	err = s.Memcpy(host(dst), dev(p0), n, DeviceToHost, 0, 0xdead, true)
	wantCode(t, "unknown stream", err, cudaerr.InvalidResourceHandle)
	for _, p := range []uint64{p0, p1} {
		if err := s.Free(p); err != nil {
			t.Fatal(err)
		}
	}
}

func TestStreamsAndEvents(t *testing.T) {
	s := newShim(t)
	st, err := s.StreamCreate(1, runtime.StreamNonBlocking, -9)
	if err != nil {
		t.Fatal(err)
	}
	if st < firstHandle {
		t.Fatalf("stream handle %#x collides with CUDA's special streams", st)
	}
	dev, flags, prio, err := s.StreamInfo(st)
	if err != nil || dev != 1 || flags != runtime.StreamNonBlocking || prio != runtime.StreamPriorityGreatest {
		t.Fatalf("StreamInfo = %d %d %d %v", dev, flags, prio, err)
	}
	_, err = s.StreamCreate(0, 0x10, 0)
	wantCode(t, "bad flags", err, cudaerr.InvalidValue)
	e1, err := s.EventCreate(1, 0)
	if err != nil {
		t.Fatal(err)
	}
	e2, err := s.EventCreate(1, runtime.EventBlockingSync)
	if err != nil {
		t.Fatal(err)
	}
	for _, step := range []func() error{
		func() error { return s.EventRecord(e1, 1, st) },
		func() error { return s.StreamWaitEvent(1, 0, e1) },
		func() error { return s.EventRecord(e2, 0, 0) }, // the legacy stream of the event's device
		func() error { return s.EventSynchronize(e2) },
		func() error { return s.EventQuery(e2) },
		func() error { return s.StreamQuery(1, st) },
		func() error { return s.StreamSynchronize(1, st) },
		func() error { return s.DeviceSynchronize(1) },
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	if ms, err := s.EventElapsedTime(e1, e2); err != nil || ms < 0 {
		t.Fatalf("elapsed %v, %v", ms, err)
	}
	if err := s.StreamDestroy(st); err != nil {
		t.Fatal(err)
	}
	wantCode(t, "destroyed stream", s.StreamSynchronize(1, st), cudaerr.InvalidResourceHandle)
	wantCode(t, "destroy twice", s.StreamDestroy(st), cudaerr.InvalidResourceHandle)
	_, _, _, err = s.StreamInfo(st)
	wantCode(t, "info of destroyed stream", err, cudaerr.InvalidResourceHandle)
	for _, e := range []uint64{e1, e2} {
		if err := s.EventDestroy(e); err != nil {
			t.Fatal(err)
		}
	}
	wantCode(t, "destroyed event", s.EventQuery(e1), cudaerr.InvalidResourceHandle)
	wantCode(t, "wait on destroyed event", s.StreamWaitEvent(0, 0, e1), cudaerr.InvalidResourceHandle)
}

func TestHostMemoryAndPointers(t *testing.T) {
	s := newShim(t)
	buf := make([]byte, 8192)
	base := unsafe.Pointer(&buf[0])
	if err := s.HostRegister(base, 4096); err != nil {
		t.Fatal(err)
	}
	wantCode(t, "overlap", s.HostRegister(unsafe.Add(base, 100), 10), cudaerr.HostMemoryAlreadyRegistered)
	wantCode(t, "empty", s.HostRegister(base, 0), cudaerr.InvalidValue)
	a, err := s.PointerAttributes(unsafe.Add(base, 4000), 1)
	if err != nil || a.Type != runtime.MemoryTypeHost || a.Device != 1 {
		t.Fatalf("pinned: %+v, %v", a, err)
	}
	a, err = s.PointerAttributes(unsafe.Add(base, 4096), 1)
	if err != nil || a.Type != runtime.MemoryTypeUnregistered || a.Device != runtime.UnregisteredDevice {
		t.Fatalf("past the pinned range: %+v, %v", a, err)
	}
	p, err := s.Malloc(1, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	a, err = s.PointerAttributes(devPtr(p+10), 0)
	if err != nil || a.Type != runtime.MemoryTypeDevice || a.Device != 1 || a.Base != p {
		t.Fatalf("device: %+v, %v", a, err)
	}
	if err := s.HostUnregister(base); err != nil {
		t.Fatal(err)
	}
	wantCode(t, "unregister twice", s.HostUnregister(base), cudaerr.HostMemoryNotRegistered)
	if err := s.Free(p); err != nil {
		t.Fatal(err)
	}
}

func TestUnsupportedLogsOnce(t *testing.T) {
	var logs bytes.Buffer
	m := startServer(t, 1)
	s := New(func() (Config, error) {
		return Config{Map: m, Runtime: runtimeConfig(), Logger: newTestLogger(&logs)}, nil
	})
	defer s.Close()
	for range 3 {
		wantCode(t, "cudaGraphCreate", s.Unsupported("cudaGraphCreate"), cudaerr.NotSupported)
	}
	wantCode(t, "cudaGraphLaunch", s.Unsupported("cudaGraphLaunch"), cudaerr.NotSupported)
	if n := strings.Count(logs.String(), "function=cudaGraphCreate"); n != 1 {
		t.Fatalf("cudaGraphCreate logged %d times:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), "function=cudaGraphLaunch") {
		t.Fatalf("cudaGraphLaunch not logged:\n%s", logs.String())
	}
}

func TestNewLogger(t *testing.T) {
	for _, level := range []string{"debug", "INFO", "warn", "error", "", "bogus"} {
		if NewLogger(level) == nil {
			t.Fatalf("NewLogger(%q) = nil", level)
		}
	}
	_ = os.Stderr
}
