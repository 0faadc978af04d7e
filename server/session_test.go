package server

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/xgpu/xgpu/internal/calls"
	"github.com/xgpu/xgpu/internal/pb"
	"github.com/xgpu/xgpu/peers"
	"github.com/xgpu/xgpu/server/host"
	"github.com/xgpu/xgpu/server/worker"
	"github.com/xgpu/xgpu/server/worker/workertest"
)

const (
	sessBase   = 0x1000_0000_0000
	sessWindow = 1 << 30
)

// sessTransport notices a vanished peer within about two seconds.
var sessTransport = peers.Config{MaxIdleTimeout: 2 * time.Second, KeepAlivePeriod: 200 * time.Millisecond, BulkLanes: 2}

// recorder wraps a launcher and keeps the handles it returned.
type recorder struct {
	WorkerLauncher
	mu      sync.Mutex
	handles []WorkerHandle
	configs []worker.Config
}

func (r *recorder) Launch(ctx context.Context, cfg worker.Config) (WorkerHandle, error) {
	h, err := r.WorkerLauncher.Launch(ctx, cfg)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.configs = append(r.configs, cfg)
	if err == nil {
		r.handles = append(r.handles, h)
	}
	return h, err
}

// execWorker is an ExecLauncher running this test binary as the worker.
func execWorker(stderr *logBuffer) *ExecLauncher {
	return &ExecLauncher{
		Command: func() (*exec.Cmd, error) {
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), workerEnv+"=1")
			return cmd, nil
		},
		Stderr: stderr,
	}
}

// sessionServer serves a host-backend server of two emulated GPUs, two
// vGPUs each (512 MiB), with the given launcher.
func sessionServer(t *testing.T, l WorkerLauncher) (*Server, pb.ServerClient, *logBuffer) {
	t.Helper()
	hc := host.Config{Devices: 2, Memory: 1 << 30, HostID: "session-test"}
	b, err := host.New(hc)
	if err != nil {
		t.Fatal(err)
	}
	gpus, err := BackendGPUs(b)
	b.Close()
	if err != nil {
		t.Fatal(err)
	}
	var logs logBuffer
	s, err := New(Config{
		Host: "gpu1", Backend: BackendHost, Source: StaticGPUs(gpus), VGPUsPerGPU: 2,
		Logger: logs.logger(), Worker: l, HostBackend: &hc,
		WorkerListenHost: "127.0.0.1", WorkerTransport: sessTransport,
	})
	if err != nil {
		t.Fatal(err)
	}
	r := startServer(t, s)
	return s, pb.NewServerClient(dial(t, r.addr)), &logs
}

func vgpuID(s *Server, gpu, slot int) string {
	for _, v := range s.vgpus {
		if int(v.GetGpuIndex()) == gpu && int(v.GetSlot()) == slot {
			return v.GetId()
		}
	}
	panic("no such vGPU")
}

func sessDev(logical int32, vgpu string) *pb.SessionDevice {
	return &pb.SessionDevice{LogicalIndex: logical, Vgpu: vgpu, WindowBase: sessBase + uint64(logical)*sessWindow, WindowSize: sessWindow}
}

func wantStatus(t *testing.T, what string, err error, code codes.Code, contains string) {
	t.Helper()
	st, _ := status.FromError(err)
	if st.Code() != code || !strings.Contains(st.Message(), contains) {
		t.Fatalf("%s: %v, want %v containing %q", what, err, code, contains)
	}
}

// connect dials a session's worker and says Hello.
func connect(t *testing.T, resp *pb.OpenSessionResponse) *workertest.Client {
	t.Helper()
	tlsConf, err := worker.PinnedClientTLS(hex.EncodeToString(resp.GetCertSha256()), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := testContext(t)
	tr := sessTransport
	c, err := workertest.Dial(ctx, resp.GetDataAddress(), tlsConf, &tr)
	if err != nil {
		t.Fatalf("dial worker at %s: %v", resp.GetDataAddress(), err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Hello(ctx, string(resp.GetToken())); err != nil {
		t.Fatalf("Hello: %v", err)
	}
	return c
}

// roundTrip copies n bytes to logical device dev and back.
func roundTrip(t *testing.T, c *workertest.Client, dev uint32, n int) {
	t.Helper()
	ctx := testContext(t)
	p, err := c.Malloc(ctx, dev, uint64(n))
	if err != nil {
		t.Fatalf("Malloc: %v", err)
	}
	want := make([]byte, n)
	for i := range want {
		want[i] = byte(i*31 + int(dev))
	}
	if err := c.MemcpyHtoD(ctx, dev, p, want, 0); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, n)
	if err := c.MemcpyDtoH(ctx, dev, p, got, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("device %d: %d bytes came back different", dev, n)
	}
}

func listed(t *testing.T, cl pb.ServerClient) []*pb.SessionInfo {
	t.Helper()
	resp, err := cl.ListSessions(testContext(t), &pb.ListSessionsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	return resp.GetSessions()
}

// waitListed waits until ListSessions shows n sessions.
func waitListed(t *testing.T, cl pb.ServerClient, n int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		got := listed(t, cl)
		if len(got) == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d sessions listed after %v, want %d", len(got), within, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestOpenSessionValidation(t *testing.T) {
	s, cl, _ := sessionServer(t, &InProcessLauncher{})
	v00 := vgpuID(s, 0, 0)
	misaligned := sessDev(0, v00)
	misaligned.WindowBase += 4096
	small := sessDev(0, v00)
	small.WindowSize = 256 << 20
	overlap := sessDev(1, vgpuID(s, 1, 0))
	overlap.WindowBase = sessBase + sessWindow/2
	tests := []struct {
		name     string
		devs     []*pb.SessionDevice
		contains string
	}{
		{name: "no devices", contains: "no devices"},
		{name: "unknown vGPU", devs: []*pb.SessionDevice{sessDev(0, "GPU-nope/0")}, contains: "GPU-nope/0"},
		{name: "vGPU twice", devs: []*pb.SessionDevice{sessDev(0, v00), sessDev(1, v00)}, contains: "listed twice"},
		{name: "negative index", devs: []*pb.SessionDevice{sessDev(-1, v00)}, contains: "logical index"},
		{name: "index twice", devs: []*pb.SessionDevice{sessDev(0, v00), {LogicalIndex: 0, Vgpu: vgpuID(s, 1, 0), WindowBase: sessBase + 4*sessWindow, WindowSize: sessWindow}}, contains: "logical index listed twice"},
		{name: "misaligned window", devs: []*pb.SessionDevice{misaligned}, contains: "not aligned"},
		{name: "empty window", devs: []*pb.SessionDevice{{LogicalIndex: 0, Vgpu: v00}}, contains: "empty window"},
		{name: "window smaller than the vGPU", devs: []*pb.SessionDevice{small}, contains: "smaller than"},
		{name: "overlapping windows", devs: []*pb.SessionDevice{sessDev(0, v00), overlap}, contains: "overlaps"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := cl.OpenSession(testContext(t), &pb.OpenSessionRequest{Devices: tt.devs})
			wantStatus(t, "OpenSession", err, codes.InvalidArgument, tt.contains)
		})
	}
	// Nothing was reserved by the refused requests.
	resp, err := cl.OpenSession(testContext(t), &pb.OpenSessionRequest{Devices: []*pb.SessionDevice{sessDev(0, v00)}})
	if err != nil {
		t.Fatalf("valid OpenSession after refused ones: %v", err)
	}
	if _, err := cl.CloseSession(testContext(t), &pb.CloseSessionRequest{SessionId: resp.GetSessionId(), Token: resp.GetToken()}); err != nil {
		t.Fatal(err)
	}
}

func TestSessionLifecycle(t *testing.T) {
	rec := &recorder{WorkerLauncher: &InProcessLauncher{}}
	s, cl, _ := sessionServer(t, rec)
	ctx := testContext(t)
	v00, v01, v10 := vgpuID(s, 0, 0), vgpuID(s, 0, 1), vgpuID(s, 1, 0)

	a, err := cl.OpenSession(ctx, &pb.OpenSessionRequest{LeaseId: "lease-1", Client: "test a",
		Devices: []*pb.SessionDevice{sessDev(0, v00), sessDev(1, v10)}})
	if err != nil {
		t.Fatalf("OpenSession: %v", err)
	}
	if len(a.GetCertSha256()) != 32 || len(a.GetToken()) < worker.TokenMinLen || a.GetDataAddress() == "" {
		t.Fatalf("OpenSession answered %+v", a)
	}
	ca := connect(t, a)
	roundTrip(t, ca, 0, 1000)
	roundTrip(t, ca, 1, 200_000)

	// The worker got the vGPUs' quotas and GPU identities.
	cfg := rec.configs[0]
	if len(cfg.Devices) != 2 || cfg.Devices[0].Quota != 512<<20 || cfg.Devices[1].Physical != 1 || cfg.Devices[1].GPUUUID == "" {
		t.Fatalf("worker config devices %+v", cfg.Devices)
	}

	// A vGPU of a live session is refused; another vGPU of the same GPU
	// is not.
	_, err = cl.OpenSession(ctx, &pb.OpenSessionRequest{Devices: []*pb.SessionDevice{sessDev(0, v10)}})
	wantStatus(t, "OpenSession of a busy vGPU", err, codes.FailedPrecondition, v10)
	b, err := cl.OpenSession(ctx, &pb.OpenSessionRequest{Client: "test b", Devices: []*pb.SessionDevice{sessDev(3, v01)}})
	if err != nil {
		t.Fatalf("OpenSession of the other slot: %v", err)
	}
	cb := connect(t, b)
	roundTrip(t, cb, 3, 4096)

	got := listed(t, cl)
	if len(got) != 2 || got[0].GetSessionId() != a.GetSessionId() || got[0].GetLeaseId() != "lease-1" ||
		got[0].GetClient() != "test a" || strings.Join(got[0].GetVgpus(), ",") != v00+","+v10 {
		t.Fatalf("ListSessions = %v", got)
	}
	h, err := cl.Health(ctx, &pb.HealthRequest{})
	if err != nil || h.GetSessions() != 2 {
		t.Fatalf("Health = %v, %v; want 2 sessions", h, err)
	}

	_, err = cl.CloseSession(ctx, &pb.CloseSessionRequest{SessionId: a.GetSessionId(), Token: []byte("wrong")})
	wantStatus(t, "CloseSession with a wrong token", err, codes.PermissionDenied, a.GetSessionId())
	_, err = cl.CloseSession(ctx, &pb.CloseSessionRequest{SessionId: "s-nope", Token: a.GetToken()})
	wantStatus(t, "CloseSession of an unknown session", err, codes.NotFound, "s-nope")
	if _, err := cl.CloseSession(ctx, &pb.CloseSessionRequest{SessionId: a.GetSessionId(), Token: a.GetToken()}); err != nil {
		t.Fatalf("CloseSession: %v", err)
	}
	select {
	case <-ca.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("client connection still up after CloseSession")
	}
	if got := listed(t, cl); len(got) != 1 || got[0].GetSessionId() != b.GetSessionId() {
		t.Fatalf("ListSessions after CloseSession = %v", got)
	}
	// The vGPUs are free at once.
	again, err := cl.OpenSession(ctx, &pb.OpenSessionRequest{Devices: []*pb.SessionDevice{sessDev(0, v10)}})
	if err != nil {
		t.Fatalf("OpenSession of a freed vGPU: %v", err)
	}
	roundTrip(t, connect(t, again), 0, 64)
}

func TestWorkerExitFreesVGPUs(t *testing.T) {
	s, cl, _ := sessionServer(t, &InProcessLauncher{})
	ctx := testContext(t)
	v := vgpuID(s, 1, 1)
	resp, err := cl.OpenSession(ctx, &pb.OpenSessionRequest{Devices: []*pb.SessionDevice{sessDev(0, v)}})
	if err != nil {
		t.Fatal(err)
	}
	c := connect(t, resp)
	// The client ends the session on the data plane; the worker exits.
	if _, err := c.Call(ctx, calls.OpCloseSession, calls.Call{}); err != nil {
		t.Fatal(err)
	}
	c.Close()
	waitListed(t, cl, 0, 5*time.Second)
	if _, err := cl.OpenSession(ctx, &pb.OpenSessionRequest{Devices: []*pb.SessionDevice{sessDev(0, v)}}); err != nil {
		t.Fatalf("vGPU not freed after the worker exited: %v", err)
	}
}

func TestShutdownStopsWorkers(t *testing.T) {
	rec := &recorder{WorkerLauncher: &InProcessLauncher{}}
	s, cl, _ := sessionServer(t, rec)
	ctx := testContext(t)
	for i, v := range []string{vgpuID(s, 0, 0), vgpuID(s, 1, 0)} {
		if _, err := cl.OpenSession(ctx, &pb.OpenSessionRequest{Devices: []*pb.SessionDevice{sessDev(int32(i), v)}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	for i, h := range rec.handles {
		select {
		case <-h.Done():
		default:
			t.Errorf("worker %d still running after Shutdown", i)
		}
	}
	if n := s.sessions.count(); n != 0 {
		t.Errorf("%d sessions after Shutdown", n)
	}
	_, err := (&service{srv: s}).OpenSession(ctx, &pb.OpenSessionRequest{Devices: []*pb.SessionDevice{sessDev(0, vgpuID(s, 0, 1))}})
	wantStatus(t, "OpenSession after Shutdown", err, codes.Unavailable, "shutting down")
}

// TestExecWorker runs real worker processes: this test binary re-executed
// as `xgpu worker`.
func TestExecWorker(t *testing.T) {
	var stderr logBuffer
	rec := &recorder{WorkerLauncher: execWorker(&stderr)}
	s, cl, _ := sessionServer(t, rec)
	ctx := testContext(t)
	v := vgpuID(s, 0, 1)
	resp, err := cl.OpenSession(ctx, &pb.OpenSessionRequest{Devices: []*pb.SessionDevice{sessDev(2, v)}})
	if err != nil {
		t.Fatalf("OpenSession: %v\nworker log:\n%s", err, stderr.String())
	}
	pid := int(resp.GetWorkerPid())
	if pid <= 0 || pid == os.Getpid() {
		t.Fatalf("worker pid %d (supervisor %d)", pid, os.Getpid())
	}
	c := connect(t, resp)
	roundTrip(t, c, 2, 3<<20+5)
	roundTrip(t, c, 2, 17)
	if got := listed(t, cl); len(got) != 1 || int(got[0].GetWorkerPid()) != pid {
		t.Fatalf("ListSessions = %v", got)
	}

	// Kill the worker: the client hears of it within the idle timeout,
	// and the supervisor reaps it and frees the vGPU.
	killed := time.Now()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	bound := sessTransport.MaxIdleTimeout + 2*time.Second
	go func() { _, _ = c.Call(ctx, calls.OpPing, calls.Call{}) }() // traffic toward the dead worker
	select {
	case <-c.Done():
		if took := time.Since(killed); took > bound {
			t.Fatalf("client noticed the dead worker after %v, bound %v", took, bound)
		}
		if c.Err() == nil {
			t.Fatal("client connection ended without an error")
		}
	case <-time.After(bound + 5*time.Second):
		t.Fatal("client never noticed the dead worker")
	}
	waitListed(t, cl, 0, 5*time.Second)
	resp2, err := cl.OpenSession(ctx, &pb.OpenSessionRequest{Devices: []*pb.SessionDevice{sessDev(0, v)}})
	if err != nil {
		t.Fatalf("vGPU not freed after the worker died: %v", err)
	}
	roundTrip(t, connect(t, resp2), 0, 100)
	// CloseSession stops the process gracefully.
	if _, err := cl.CloseSession(ctx, &pb.CloseSessionRequest{SessionId: resp2.GetSessionId(), Token: resp2.GetToken()}); err != nil {
		t.Fatal(err)
	}
	h := rec.handles[1]
	select {
	case <-h.Done():
		if h.Err() != nil {
			t.Fatalf("worker exited with %v after CloseSession", h.Err())
		}
	default:
		t.Fatal("worker process still running after CloseSession")
	}
}

func TestExecLauncherStartFailures(t *testing.T) {
	cfg := worker.Config{SessionID: "s", Token: strings.Repeat("t", 32)}
	tests := []struct {
		name     string
		script   string
		timeout  time.Duration
		contains string
	}{
		{name: "worker dies", script: "echo 'worker: no such GPU' >&2; exit 3", contains: "no such GPU"},
		{name: "worker stays silent", script: "exec sleep 30", timeout: 300 * time.Millisecond, contains: "said nothing within"},
		{name: "worker writes garbage", script: "echo hello", contains: "not its address"},
		{name: "worker reports no pin", script: `echo '{"address":"127.0.0.1:1"}'; exec sleep 30`, contains: "incomplete address"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := &ExecLauncher{
				Command:      func() (*exec.Cmd, error) { return exec.Command("/bin/sh", "-c", "cat >/dev/null & "+tt.script), nil },
				StartTimeout: tt.timeout,
				Stderr:       &logBuffer{},
			}
			start := time.Now()
			h, err := l.Launch(testContext(t), cfg)
			if err == nil {
				h.Stop(testContext(t))
				t.Fatal("Launch succeeded")
			}
			if !strings.Contains(err.Error(), tt.contains) {
				t.Fatalf("Launch error %q does not contain %q", err, tt.contains)
			}
			if time.Since(start) > 5*time.Second {
				t.Fatalf("Launch took %v to fail", time.Since(start))
			}
		})
	}
	t.Run("no such binary", func(t *testing.T) {
		l := &ExecLauncher{Command: func() (*exec.Cmd, error) { return exec.Command("/nonexistent/xgpu", "worker"), nil }}
		if _, err := l.Launch(testContext(t), cfg); err == nil || !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("Launch = %v, want a not-exist error", err)
		}
	})
}
