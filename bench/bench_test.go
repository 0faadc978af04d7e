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
	goruntime "runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/xgpu/xgpu/peers"
	"github.com/xgpu/xgpu/runtime"
	"github.com/xgpu/xgpu/server"
	"github.com/xgpu/xgpu/server/host"
)

// startServer runs a standalone host-backend server with devices devices
// (one if not given) on loopback whose workers are processes of this test
// binary, and returns its control address.
func startServer(t *testing.T, name string, devices ...int) string {
	t.Helper()
	hc := host.Config{Devices: append(devices, 1)[0], Memory: 256 << 20, HostID: name}
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

// startPeer runs a baseline peer that takes transfers of up to 4 MiB;
// noLocal makes it act as on a platform without local lanes.
func startPeer(t *testing.T, noLocal ...bool) PeerInfo {
	t.Helper()
	p, err := ServePeer(PeerConfig{MaxBytes: 4 << 20, noLocal: len(noLocal) > 0 && noLocal[0]})
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
		"allreduce/2x1/128KiB", "allreduce/2x1/1MiB", "tracing/default", "tracing/full",
		"transport/quic-1-stream/256KiB", "transport/striped-1-lane/256KiB", "transport/striped-2-lanes/256KiB",
		"transport/striped-4-lanes/256KiB", "transport/striped-8-lanes/256KiB",
	}
	// With local lanes (Linux) the client's sessions and the workers'
	// link use them, and so do the references; elsewhere all is QUIC.
	lanes := goruntime.GOOS == "linux"
	if lanes {
		want = append(want, "transport/local-lane/256KiB")
	}
	for _, s := range c.Stats().Sessions {
		if s.LocalLane != lanes {
			t.Errorf("session with %s: local lane %v, want %v", s.Server, s.LocalLane, lanes)
		}
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
				if want := wantPeerBaseline(lanes); r.BaselineName != want {
					t.Errorf("peer baseline %q, want %q", r.BaselineName, want)
				}
			case GroupAllReduce:
				if r.ClientPayloadBytes == nil || *r.ClientPayloadBytes != 0 {
					t.Errorf("client payload bytes %v, want 0", r.ClientPayloadBytes)
				}
				if want := wantLinkBound(lanes); r.BaselineName != want {
					t.Errorf("allreduce baseline %q, want %q", r.BaselineName, want)
				}
			case GroupH2D, GroupD2H:
				if r.Unit != UnitGBps || r.Bytes == 0 || r.BaselineName != "one TCP connection" {
					t.Errorf("copy case: %+v", r)
				}
				if want := wantHostReference(lanes); r.ReferenceName != want {
					t.Errorf("reference %q, want %q", r.ReferenceName, want)
				}
			case GroupTransport:
				if strings.Contains(r.Name, "local-lane") != strings.Contains(r.XGPUName, "local lane") {
					t.Errorf("transport case named %q measures %q", r.Name, r.XGPUName)
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
	for _, s := range []string{"h2d/1MiB", "client payload 0 B", "one TCP connection", "2 cores", fmt.Sprintf("%d cases", len(want)),
		"reference: " + wantHostReference(lanes), "baseline: " + wantPeerBaseline(lanes)} {
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

// wantHostReference is the name of the h2d and d2h reference of a session
// on a local lane (lane) or on QUIC.
func wantHostReference(lane bool) string {
	if lane {
		return "raw local lane (shared memory)"
	}
	return "raw striped QUIC bulk, 8 lanes"
}

// wantPeerBaseline is the name of the peer group's baseline for workers
// linked by a local lane (lane) or by QUIC.
func wantPeerBaseline(lane bool) string {
	if lane {
		return "raw local lane (shared memory) between two processes"
	}
	return "raw striped QUIC bulk between two processes, 8 lanes"
}

// TestRunPaths: the references follow the path the bytes of xgpu take,
// decided separately for the client's session (h2d, d2h) and for the
// workers' link (peer); the transport group measures a local lane
// whatever the setting, where there are local lanes. Baseline peers
// without local lanes (as on a platform other than Linux) fall back to
// QUIC, named so.
func TestRunPaths(t *testing.T) {
	lanes := goruntime.GOOS == "linux"
	tests := []struct {
		name        string
		env         string // XGPU_LOCAL_LANE for the client and the workers ("": unset)
		noLocalLane bool   // runtime.Config.NoLocalLane
		workers     Path
		peersLocal  bool // the baseline peers have local lanes
		session     bool // want: the session on a local lane
		lane        bool // want: the h2d/d2h reference on a local lane
		peerLane    bool // want: the peer baseline through a local lane
	}{
		{"XGPU_LOCAL_LANE=0", "0", false, PathAuto, true, false, false, false},
		{"client on QUIC, workers on a lane", "", true, PathLocalLane, true, false, false, lanes},
		{"peers without local lanes", "", false, PathAuto, false, lanes, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.env != "" {
				t.Setenv(runtime.EnvLocalLane, tt.env)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			servers := []string{startServer(t, "bench-paths-a"), startServer(t, "bench-paths-b")}
			peerA, peerB := startPeer(t, !tt.peersLocal), startPeer(t, !tt.peersLocal)
			m, err := DeviceMap(ctx, servers)
			if err != nil {
				t.Fatal(err)
			}
			c, err := runtime.Open(ctx, runtime.Config{Map: m, Client: "bench paths test", NoLocalLane: tt.noLocalLane})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			for _, s := range c.Stats().Sessions {
				if s.LocalLane != tt.session {
					t.Fatalf("session with %s: local lane %v, want %v", s.Server, s.LocalLane, tt.session)
				}
			}
			opt := Options{
				Sizes: []int64{1 << 20}, Groups: []string{GroupH2D, GroupD2H, GroupPeer, GroupTransport},
				Rounds: 1, RoundBytes: 1, TransportSize: 256 << 10,
			}
			env := Env{Client: c, DevA: 0, DevB: 1, PeerA: peerA, PeerB: peerB, WorkerPath: tt.workers}
			rep, err := Run(ctx, env, opt)
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, r := range rep.Cases {
				names = append(names, r.Name)
				switch r.Group {
				case GroupH2D, GroupD2H:
					if want := wantHostReference(tt.lane); r.ReferenceName != want || r.Reference <= 0 {
						t.Errorf("%s: reference %q (%v), want %q", r.Name, r.ReferenceName, r.Reference, want)
					}
				case GroupPeer:
					if want := wantPeerBaseline(tt.peerLane); r.BaselineName != want || r.Baseline <= 0 {
						t.Errorf("%s: baseline %q (%v), want %q", r.Name, r.BaselineName, r.Baseline, want)
					}
					if r.ClientPayloadBytes == nil || *r.ClientPayloadBytes != 0 {
						t.Errorf("%s: client payload bytes %v, want 0", r.Name, r.ClientPayloadBytes)
					}
				}
			}
			row := lanes && tt.peersLocal
			if got := slices.Contains(names, "transport/local-lane/256KiB"); got != row {
				t.Errorf("cases %v: local-lane transport row %v, want %v", names, got, row)
			}
			if row && len(rep.Skipped) != 0 || !row && (len(rep.Skipped) != 1 || rep.Skipped[0].Group != "transport/local-lane" ||
				!strings.Contains(rep.Skipped[0].Reason, peers.ErrLocalUnsupported.Error())) {
				t.Errorf("skipped %+v", rep.Skipped)
			}
		})
	}
}

// TestRunNative runs the cases of a cuda run (native baselines from a
// fake native program) against host-backend servers: server A with two
// devices (peer-local), server B with one (peer). The host backend runs
// no PTX, so the launch group is skipped, as a cuda run with one GPU skips
// the peer groups.
func TestRunNative(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	a, b := startServer(t, "bench-native-a", 2), startServer(t, "bench-native-b")
	peerA, peerB := startPeer(t), startPeer(t)
	m, err := DeviceMapOf(ctx, []DeviceRef{{Server: a}, {Server: b}, {Server: a, GPU: 1}})
	if err != nil {
		t.Fatal(err)
	}
	if m.Devices[0].Address != m.Devices[2].Address || m.Devices[2].GPUIndex != 1 {
		t.Fatalf("device map: %+v", m.Devices)
	}
	c, err := runtime.Open(ctx, runtime.Config{Map: m, Client: "bench native test"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	nat := &fakeNative{}
	var progress bytes.Buffer
	const rounds = 2
	opt := Options{
		Sizes: []int64{128 << 10, 1 << 20}, Rounds: rounds, SyncCalls: 5, AsyncCalls: 50,
		RoundBytes: 1, TransportSize: 256 << 10, Progress: &progress,
	}
	env := Env{
		Client: c, DevA: 0, DevB: 1, DevA2: 2, PeerA: peerA, PeerB: peerB, Backend: "host", GPU: "test GPUs",
		Native: nat, NativeDevs: NativeDevices{A: 0, A2: 1, B: 1},
		Skip: map[string]string{GroupLaunch: "the host backend runs no PTX"},
	}
	rep, err := Run(ctx, env, opt)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range rep.Cases {
		got = append(got, r.Name)
	}
	want := "sync/d2h-4B sync/stream-synchronize async/memset-256B h2d/128KiB h2d/1MiB d2h/128KiB d2h/1MiB " +
		"peer-local/128KiB peer-local/1MiB peer/128KiB peer/1MiB"
	if !strings.HasPrefix(strings.Join(got, " "), want) {
		t.Fatalf("cases:\n got %v\nwant %s, then transport", got, want)
	}
	if len(rep.Skipped) != 1 || rep.Skipped[0].Group != GroupLaunch || slices.Contains(rep.Settings.Groups, GroupLaunch) {
		t.Errorf("skipped %+v, groups %v", rep.Skipped, rep.Settings.Groups)
	}
	for _, r := range rep.Cases {
		t.Run(r.Name, func(t *testing.T) {
			if r.XGPU <= 0 || r.Baseline <= 0 {
				t.Errorf("figures missing: %+v", r)
			}
			native := strings.HasPrefix(r.BaselineName, "native")
			switch r.Group {
			case GroupSync:
				// The fake's samples are 1.5..7.5 µs.
				if !native || r.Baseline < 1.5 || r.BaselineP99 > 7.5 || !strings.Contains(r.ReferenceName, "QUIC") || r.Samples != rounds*5 {
					t.Errorf("sync case: %+v", r)
				}
			case GroupAsync:
				if !native || r.Baseline != 250000 || r.Reference <= 0 {
					t.Errorf("async case: %+v", r)
				}
			case GroupH2D, GroupD2H:
				// The staging overlap's transport is the raw reference
				// on the session's path: a local lane here (on Linux).
				if !native || len(r.Extra) != 1 || r.Extra[0].Name != "native pinned cudaMemcpy" || r.Overlap == nil ||
					r.Overlap.Transport != r.Reference || r.Overlap.DMA != r.Extra[0].Value ||
					r.ReferenceName != wantHostReference(goruntime.GOOS == "linux") {
					t.Errorf("host copy case: %+v", r)
				}
			case GroupPeerLocal:
				if !native || r.ClientPayloadBytes != nil {
					t.Errorf("peer-local case: %+v", r)
				}
			case GroupPeer:
				if native || !strings.HasPrefix(r.ReferenceName, "native") || r.ClientPayloadBytes == nil || *r.ClientPayloadBytes != 0 {
					t.Errorf("peer case: %+v", r)
				}
			}
		})
	}
	// Each native method ran once to warm up, then once per round (per
	// size for copies), between xgpu's rounds.
	sizes := len(opt.Sizes)
	for _, tc := range []struct {
		op   string
		want int
	}{
		{NativeD2H4, 1 + rounds}, {NativeStreamSync, 1 + rounds}, {NativeMemset, 1 + rounds}, {NativeLaunch, 0},
		{NativeH2DPageable, 1 + rounds*sizes}, {NativeH2DPinned, 1 + rounds*sizes},
		{NativeD2HPageable, 1 + rounds*sizes}, {NativeD2HPinned, 1 + rounds*sizes},
		{NativePeer, 2 * (1 + rounds*sizes)},
	} {
		if got := nat.count(tc.op); got != tc.want {
			t.Errorf("%d native %s commands, want %d", got, tc.op, tc.want)
		}
	}
	for _, cmd := range nat.cmds {
		if cmd.Op == NativePeer && (cmd.Dev != 0 || cmd.Peer != 1) {
			t.Errorf("peer command %v, want device 0 to 1", cmd)
		}
	}
	var tab bytes.Buffer
	if err := rep.WriteTable(&tab); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"staging overlap", "skipped: launch", "GPUs: test GPUs", "native pinned cudaMemcpy"} {
		if !strings.Contains(tab.String(), s) {
			t.Errorf("table lacks %q:\n%s", s, tab.String())
		}
	}
	// A failing native measurement fails the run, naming the group.
	nat2 := &fakeNative{fail: NativeStreamSync}
	env.Native = nat2
	if _, err := Run(ctx, env, Options{Groups: []string{GroupSync}, Rounds: 1, SyncCalls: 2}); err == nil ||
		!strings.Contains(err.Error(), "sync: ") || !strings.Contains(err.Error(), "injected failure") {
		t.Errorf("Run with a failing native program = %v", err)
	}
}
