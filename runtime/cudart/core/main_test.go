package core

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/xgpu/xgpu/devicemap"
	"github.com/xgpu/xgpu/server"
	"github.com/xgpu/xgpu/server/host"
)

func TestMain(m *testing.M) {
	// The in-process workers log through the default logger.
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	goleak.VerifyTestMain(m)
}

const testMemory = 1 << 30

// startServer serves n emulated devices (host backend, NVLink between
// them) from this process and returns the device map of all of them.
func startServer(t *testing.T, n int) *devicemap.Map {
	t.Helper()
	hc := host.Config{Devices: n, Memory: testMemory, HostID: "core-test", NVLinks: 4}
	b, err := host.New(hc)
	if err != nil {
		t.Fatal(err)
	}
	gpus, err := server.BackendGPUs(b)
	b.Close()
	if err != nil {
		t.Fatal(err)
	}
	s, err := server.New(server.Config{
		ID: "core-test", Host: "core-test", Backend: server.BackendHost, Source: server.StaticGPUs(gpus),
		Logger: slog.New(slog.DiscardHandler), Worker: &server.InProcessLauncher{}, HostBackend: &hc,
		WorkerListenHost: "127.0.0.1",
	})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1) // Serve's result, read in cleanup
	go func() { done <- s.Serve(lis) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-done; !errors.Is(err, server.ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
	})
	inv := s.Inventory()
	var devs []devicemap.Device
	for _, v := range inv.GetVgpus() {
		g := inv.GetGpus()[v.GetGpuIndex()]
		devs = append(devs, devicemap.Device{
			Host: inv.GetHost(), Server: inv.GetServerId(), Address: lis.Addr().String(),
			GPUUUID: v.GetGpuUuid(), GPUIndex: int(v.GetGpuIndex()), VGPU: v.GetId(), Slot: int(v.GetSlot()),
			MemoryQuota: v.GetMemoryBytes(),
			Properties: devicemap.Properties{Name: g.GetName(), TotalMemory: g.GetMemoryBytes(), PCIBusID: g.GetPciBusId(),
				ComputeCapability: fmt.Sprintf("%d.%d", g.GetCcMajor(), g.GetCcMinor()), MultiprocessorCount: int(g.GetMultiprocessors())},
		})
	}
	m, err := devicemap.New(devs, devicemap.WithLeaseID("core-test"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// newShim returns a Shim over a fresh two-device server, closed at the
// end of the test.
func newShim(t *testing.T) *Shim {
	t.Helper()
	m := startServer(t, 2)
	s := New(func() (Config, error) { return Config{Map: m, Runtime: runtimeConfig()}, nil })
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return s
}

func writeMap(t *testing.T, m *devicemap.Map) string {
	t.Helper()
	data, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "map.json")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// newTestLogger logs text lines into w.
func newTestLogger(w *bytes.Buffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(&lockedWriter{w: w}, nil))
}

// lockedWriter serializes writes to a buffer shared with the test.
type lockedWriter struct {
	mu sync.Mutex // guards w
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
