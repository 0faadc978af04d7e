// Package servertest starts an xgpu server with emulated devices inside a
// test process, for the tests of packages above the server (the runtime's
// C shims) that need a real server, real workers and real QUIC on
// loopback. Safe for concurrent use by parallel tests.
package servertest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/xgpu/xgpu/devicemap"
	"github.com/xgpu/xgpu/server"
	"github.com/xgpu/xgpu/server/host"
)

// StartHost serves n emulated devices of memory bytes each (host backend,
// NVLink between them, workers in this process) under server id id, for
// the rest of t, and returns the device map of all of them with lease id
// id. The server is shut down gracefully when t ends.
func StartHost(t testing.TB, id string, n int, memory uint64) *devicemap.Map {
	t.Helper()
	hc := host.Config{Devices: n, Memory: memory, HostID: id, NVLinks: 4}
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
		ID: id, Host: id, Backend: server.BackendHost, Source: server.StaticGPUs(gpus),
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
	m, err := devicemap.New(devs, devicemap.WithLeaseID(id))
	if err != nil {
		t.Fatal(err)
	}
	return m
}
