package backendtest

import (
	"context"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/xgpu/xgpu/internal/cudaerr"
	"github.com/xgpu/xgpu/server/backend"
)

// Requirements on the Backend under test.
const (
	// MinMemory is the memory the suite needs on device 0.
	MinMemory = 64 << 20
	// WindowBase is where the suite puts its first device window: the
	// default base of xgpu's cluster-wide address layout.
	WindowBase = 0x1000_0000_0000
	// WindowSize is the size of each window the suite opens.
	WindowSize = 1 << 30
	// quota is the memory quota of the Devices the suite opens unless a
	// test says otherwise.
	quota = 32 << 20
)

// waitLimit bounds every wait of the suite, so that a hang fails the test
// rather than the test binary.
const waitLimit = 20 * time.Second

// settle is how long the suite waits before it concludes that something
// that must not happen yet has not happened.
const settle = 30 * time.Millisecond

// env is one subtest's Backend.
type env struct {
	t     *testing.T
	b     backend.Backend
	infos []backend.Info
}

func newEnv(t *testing.T, newBackend func(t *testing.T) backend.Backend) *env {
	t.Helper()
	b := newBackend(t)
	if b == nil {
		t.Fatal("newBackend returned nil")
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil && !cudaerr.Is(err, cudaerr.CudartUnloading) {
			t.Errorf("Backend.Close: %v", err)
		}
	})
	infos, err := b.Devices()
	if err != nil {
		t.Fatalf("Devices: %v", err)
	}
	if len(infos) == 0 {
		t.Fatal("Devices: the backend has no device")
	}
	if infos[0].TotalMemory < MinMemory {
		t.Fatalf("device 0 has %d bytes; the suite needs %d", infos[0].TotalMemory, MinMemory)
	}
	return &env{t: t, b: b, infos: infos}
}

// spec returns the spec of the suite's window number slot on device index.
func spec(index, slot int, quota uint64) backend.DeviceSpec {
	return backend.DeviceSpec{
		Index:       index,
		WindowBase:  WindowBase + uint64(slot)*WindowSize,
		WindowSize:  WindowSize,
		MemoryQuota: quota,
	}
}

// open opens a Device in window slot of physical device 0 and closes it at
// the end of the test.
func (e *env) open(slot int, quota uint64) backend.Device {
	e.t.Helper()
	return e.openOn(0, slot, quota)
}

func (e *env) openOn(index, slot int, quota uint64) backend.Device {
	e.t.Helper()
	d, err := e.b.Open(spec(index, slot, quota))
	if err != nil {
		e.t.Fatalf("Open(device %d, window %d): %v", index, slot, err)
	}
	e.t.Cleanup(func() {
		if err := d.Close(); err != nil && !cudaerr.Is(err, cudaerr.ContextIsDestroyed) {
			e.t.Errorf("Device.Close: %v", err)
		}
	})
	return d
}

// ctx returns a context that bounds a wait of the test.
func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), waitLimit)
	t.Cleanup(cancel)
	return c
}

// must fails the test on err.
func must(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// wantErr checks that err is an *backend.OpError of operation op whose
// cause is code.
func wantErr(t *testing.T, err error, op string, code cudaerr.Error) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: got no error, want %s", op, code.Name())
	}
	var oe *backend.OpError
	if !errors.As(err, &oe) {
		t.Fatalf("%s: error %v (%T) is not a *backend.OpError", op, err, err)
	}
	if oe.Op != op {
		t.Errorf("%s: OpError.Op = %q", op, oe.Op)
	}
	if got := cudaerr.Code(err); got != code {
		t.Fatalf("%s: got %s (%v), want %s", op, got.Name(), err, code.Name())
	}
}

func malloc(t *testing.T, d backend.Device, n uint64) backend.DevicePtr {
	t.Helper()
	p, err := d.Malloc(n)
	must(t, "Malloc", err)
	return p
}

// pattern returns n bytes of a repeatable pseudo-random pattern.
func pattern(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n+8)
	for i := 0; i < n; i += 8 {
		binary.LittleEndian.PutUint64(b[i:], r.Uint64())
	}
	return b[:n:n]
}

// upload copies data to p and waits.
func upload(t *testing.T, d backend.Device, p backend.DevicePtr, data []byte) {
	t.Helper()
	must(t, "MemcpyHtoDAsync", d.MemcpyHtoDAsync(p, data, backend.LegacyStream))
	must(t, "StreamSynchronize", d.StreamSynchronize(ctx(t), backend.LegacyStream))
}

// download reads n bytes at p and waits.
func download(t *testing.T, d backend.Device, p backend.DevicePtr, n int) []byte {
	t.Helper()
	out := make([]byte, n)
	must(t, "MemcpyDtoHAsync", d.MemcpyDtoHAsync(out, p, backend.LegacyStream))
	must(t, "StreamSynchronize", d.StreamSynchronize(ctx(t), backend.LegacyStream))
	return out
}

// firstDiff returns the first index at which a and b differ, or -1.
func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	if len(a) != len(b) {
		return min(len(a), len(b))
	}
	return -1
}

func wantBytes(t *testing.T, what string, got, want []byte) {
	t.Helper()
	if i := firstDiff(got, want); i >= 0 {
		g, w := -1, -1
		if i < len(got) {
			g = int(got[i])
		}
		if i < len(want) {
			w = int(want[i])
		}
		t.Fatalf("%s: first difference at byte %d of %d: got %d, want %d", what, i, len(want), g, w)
	}
}

// gate is a host function that holds up its stream until released: the
// suite's stand-in for a long-running kernel.
type gate struct {
	entered chan struct{}
	release chan struct{}
	once    sync.Once
}

// block enqueues a gate on s. The gate is released at the end of the test
// at the latest, so that closing the Device does not hang.
func block(t *testing.T, d backend.Device, s backend.Stream) *gate {
	t.Helper()
	g := &gate{entered: make(chan struct{}), release: make(chan struct{})}
	must(t, "LaunchHostFunc(gate)", d.LaunchHostFunc(s, func() {
		close(g.entered)
		<-g.release
	}))
	t.Cleanup(g.open)
	return g
}

func (g *gate) open() { g.once.Do(func() { close(g.release) }) }

// waitEntered waits until the stream has reached the gate.
func (g *gate) waitEntered(t *testing.T) {
	t.Helper()
	select {
	case <-g.entered:
	case <-time.After(waitLimit):
		t.Fatal("the stream never reached the gate")
	}
}

// pending checks that f keeps returning cudaErrorNotReady for a while.
func pending(t *testing.T, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(settle)
	for {
		if err := f(); !cudaerr.Is(err, cudaerr.NotReady) {
			t.Fatalf("%s: got %v while the work is held up, want cudaErrorNotReady", what, err)
		}
		if time.Now().After(deadline) {
			return
		}
		time.Sleep(settle / 6)
	}
}
