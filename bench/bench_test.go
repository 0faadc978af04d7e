package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/xgpu/xgpu/runtime"
	"github.com/xgpu/xgpu/server"
	"github.com/xgpu/xgpu/server/host"
)

// startServer runs a standalone host-backend server with one device on
// loopback whose workers are processes of this test binary, and returns
// its control address.
func startServer(t *testing.T, name string) string {
	t.Helper()
	hc := host.Config{Devices: 1, Memory: 256 << 20, HostID: name}
	b, err := host.New(hc)
	if err != nil {
		t.Fatal(err)
	}
	gpus, err := server.BackendGPUs(b)
	b.Close()
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(server.Config{
		Host: name, Backend: server.BackendHost, Source: server.StaticGPUs(gpus), HostBackend: &hc,
		Logger:           slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		WorkerListenHost: "127.0.0.1",
		Worker: &server.ExecLauncher{Command: func() (*exec.Cmd, error) {
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), workerEnv+"=1")
			return cmd, nil
		}, Stderr: io.Discard},
	})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		srv.Close()
		t.Fatal(err)
	}
	served := make(chan error, 1) // buffered: read once, in cleanup
	go func() { served <- srv.Serve(lis) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Logf("shutdown %s: %v", name, err)
		}
		<-served
	})
	return lis.Addr().String()
}

func startPeer(t *testing.T) PeerInfo {
	t.Helper()
	p, err := ServePeer(PeerConfig{MaxBytes: 4 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Error(err)
		}
	})
	return p.Info()
}

// TestRunTiny runs every case group once on small sizes against real
// servers, workers and peers: it checks that the run works and reports
// what it should, not how fast anything is.
func TestRunTiny(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	servers := []string{startServer(t, "bench-test-a"), startServer(t, "bench-test-b")}
	peerA, peerB := startPeer(t), startPeer(t)
	m, err := DeviceMap(ctx, servers)
	if err != nil {
		t.Fatal(err)
	}
	if m.Len() != 2 || m.Devices[0].Address != servers[0] || m.Devices[1].Address != servers[1] {
		t.Fatalf("device map: %+v", m.Devices)
	}
	c, err := runtime.Open(ctx, runtime.Config{Map: m, Client: "bench test"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var progress bytes.Buffer
	opt := Options{
		Sizes: []int64{128 << 10, 1 << 20}, Rounds: 1, SyncCalls: 5, AsyncCalls: 50,
		RoundBytes: 1, TransportSize: 256 << 10, Progress: &progress,
	}
	env := Env{Client: c, DevA: 0, DevB: 1, PeerA: peerA, PeerB: peerB, Backend: "host", Setup: "test"}
	rep, err := Run(ctx, env, opt)
	if err != nil {
		t.Fatal(err)
	}

	want := []string{
		"sync/d2h-4B", "sync/stream-synchronize", "async/memset-256B",
		"h2d/128KiB", "h2d/1MiB", "d2h/128KiB", "d2h/1MiB", "peer/128KiB", "peer/1MiB",
		"transport/quic-1-stream/256KiB", "transport/striped-1-lane/256KiB", "transport/striped-2-lanes/256KiB",
		"transport/striped-4-lanes/256KiB", "transport/striped-8-lanes/256KiB",
	}
	var got []string
	for _, r := range rep.Cases {
		got = append(got, r.Name)
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("cases:\n got %v\nwant %v", got, want)
	}
	for _, r := range rep.Cases {
		t.Run(r.Name, func(t *testing.T) {
			if r.XGPU <= 0 || r.Baseline <= 0 || r.BaselineName == "" {
				t.Errorf("figures missing: %+v", r)
			}
			if d := r.Ratio - r.XGPU/r.Baseline; d > 1e-9 || d < -1e-9 {
				t.Errorf("ratio %v, want %v", r.Ratio, r.XGPU/r.Baseline)
			}
			if r.ReferenceName != "" && (r.Reference <= 0 || r.ReferenceRatio <= 0) {
				t.Errorf("reference missing: %+v", r)
			}
			if r.Rounds != 1 || r.Samples < 1 {
				t.Errorf("rounds %d samples %d", r.Rounds, r.Samples)
			}
			switch r.Group {
			case GroupSync:
				if r.Unit != UnitMicros || r.Better != "lower" || r.XGPUP99 < r.XGPU || r.Samples != 5 {
					t.Errorf("latency case: %+v", r)
				}
			case GroupPeer:
				if r.ClientPayloadBytes == nil || *r.ClientPayloadBytes != 0 {
					t.Errorf("client payload bytes %v, want 0", r.ClientPayloadBytes)
				}
			case GroupH2D, GroupD2H:
				if r.Unit != UnitGBps || r.Bytes == 0 || r.ReferenceName == "" {
					t.Errorf("copy case: %+v", r)
				}
			}
		})
	}
	if !strings.Contains(progress.String(), "peer/1MiB") {
		t.Errorf("progress lacks the peer case:\n%s", progress.String())
	}
	if rep.Machine.Cores < 1 || rep.Machine.Go == "" || rep.Date == "" || rep.Backend != "host" {
		t.Errorf("report header: %+v", rep)
	}

	var js bytes.Buffer
	if err := rep.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(js.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if len(back.Cases) != len(rep.Cases) || back.Cases[0].Name != rep.Cases[0].Name || back.Settings.Rounds != 1 {
		t.Errorf("JSON round trip lost data:\n%s", js.String())
	}
	var doc map[string]any
	if err := json.Unmarshal(js.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"machine", "date", "cases"} {
		if _, ok := doc[k]; !ok {
			t.Errorf("JSON lacks %q", k)
		}
	}
	var tab bytes.Buffer
	if err := rep.WriteTable(&tab); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"h2d/1MiB", "client payload 0 B", "one TCP connection", "2 cores", fmt.Sprintf("%d cases", len(want))} {
		if s == "2 cores" {
			s = fmt.Sprintf("%d cores", rep.Machine.Cores)
		}
		if !strings.Contains(tab.String(), s) {
			t.Errorf("table lacks %q:\n%s", s, tab.String())
		}
	}
	// Run freed what it allocated.
	free, total, err := c.MemGetInfo(0)
	if err != nil {
		t.Fatal(err)
	}
	if free != total {
		t.Errorf("device 0: %d of %d bytes free after Run", free, total)
	}
}
