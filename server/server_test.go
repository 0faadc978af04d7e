package server

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/proto"

	"github.com/xgpu/xgpu/internal/pb"
)

// logBuffer collects log output for assertions; slog handlers write from the
// server's goroutines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// testConfig is a valid config over two GPUs joined by NVLink.
func testConfig(logs *logBuffer) Config {
	a, b := testGPU(0, "GPU-a", 8*gib), testGPU(1, "GPU-b", 8*gib)
	a.Peers = []*pb.PeerLink{{PeerUuid: "GPU-b", Kind: "NV", Nvlinks: 18}}
	b.Peers = []*pb.PeerLink{{PeerUuid: "GPU-a", Kind: "NV", Nvlinks: 18}}
	return Config{
		Host:    "gpu1",
		Backend: BackendHost,
		Source:  StaticGPUs{a, b},
		Version: "v0.0.0-test",
		Logger:  logs.logger(),
	}
}

// running is a Server serving on a loopback listener.
type running struct {
	srv   *Server
	addr  string
	serve chan error // receives Serve's result; buffered so Serve never blocks on it
}

// startServer serves s on 127.0.0.1:0 and closes it when the test ends.
func startServer(t *testing.T, s *Server) *running {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &running{srv: s, addr: lis.Addr().String(), serve: make(chan error, 1)}
	go func() { r.serve <- s.Serve(lis) }()
	t.Cleanup(func() {
		s.Close()
		if err := r.wait(t); !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve() = %v, want ErrServerClosed", err)
		}
	})
	return r
}

// wait returns Serve's result, once; later calls return ErrServerClosed.
func (r *running) wait(t *testing.T) error {
	t.Helper()
	select {
	case err, ok := <-r.serve:
		if !ok {
			return ErrServerClosed
		}
		close(r.serve)
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return")
		return nil
	}
}

func dial(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestNewErrors(t *testing.T) {
	boom := errors.New("nvml: boom")
	tests := []struct {
		name    string
		edit    func(*Config)
		wantIs  error
		wantErr string
	}{
		{name: "invalid config", edit: func(c *Config) { c.Backend = "" }, wantErr: "server: config: Backend: required"},
		{name: "source fails", edit: func(c *Config) {
			c.Source = GPUSourceFunc(func(context.Context) ([]*pb.GPU, error) { return nil, boom })
		}, wantIs: boom, wantErr: "server: list GPUs: nvml: boom"},
		{name: "no GPUs", edit: func(c *Config) { c.Source = StaticGPUs{} }, wantIs: ErrNoGPUs},
		{name: "nil GPU from source", edit: func(c *Config) {
			c.Source = GPUSourceFunc(func(context.Context) ([]*pb.GPU, error) { return []*pb.GPU{nil}, nil })
		}, wantErr: "server: list GPUs: GPU 0 is nil"},
		{name: "vGPU memory too large", edit: func(c *Config) { c.VGPUsPerGPU, c.VGPUMemory = 2, 5*gib }, wantErr: "server: partition: GPU GPU-a: 2 vGPUs of"},
		{name: "aggregator target rejected", edit: func(c *Config) {
			c.Aggregator = "agg:7100"
			c.AggregatorDialOptions = []grpc.DialOption{} // no credentials
		}, wantErr: "server: aggregator agg:7100:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs logBuffer
			c := testConfig(&logs)
			tt.edit(&c)
			s, err := New(c)
			if err == nil {
				t.Fatalf("New() = %v, nil; want an error", s)
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("New() = %v, want errors.Is %v", err, tt.wantIs)
			}
			if tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("New() = %q, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestServeStandalone(t *testing.T) {
	var logs logBuffer
	cfg := testConfig(&logs)
	cfg.VGPUsPerGPU = 2
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Inventory(); got.ServerId != "" || len(got.Vgpus) != 4 {
		t.Errorf("Inventory() before Serve = %v, want no id yet and 4 vGPUs", got)
	}
	r := startServer(t, s)
	ctx := testContext(t)
	conn := dial(t, r.addr)
	client := pb.NewServerClient(conn)

	inv, err := client.Inventory(ctx, &pb.InventoryRequest{})
	if err != nil {
		t.Fatalf("Inventory: %v", err)
	}
	_, port, _ := net.SplitHostPort(r.addr)
	want := &pb.Inventory{
		ServerId: "gpu1:" + port,
		Host:     "gpu1",
		Address:  r.addr,
		Backend:  BackendHost,
		Version:  "v0.0.0-test",
		Gpus:     s.gpus,
	}
	want.Vgpus, _ = Partition(s.gpus, 2, 0)
	if !proto.Equal(inv, want) {
		t.Errorf("Inventory = %v\nwant %v", inv, want)
	}
	if got := inv.Gpus[0].Peers; len(got) != 1 || got[0].Kind != "NV" || got[0].Nvlinks != 18 {
		t.Errorf("GPU 0 peers = %v, want one NV18 link", got)
	}
	if local := s.Inventory(); !proto.Equal(local, inv) {
		t.Errorf("Inventory() = %v, want what the RPC answered", local)
	}

	h, err := client.Health(ctx, &pb.HealthRequest{})
	if err != nil {
		t.Fatalf("Health: %v", err)
	}
	if h.Status != pb.HealthResponse_SERVING || h.UptimeMs < 0 || h.Sessions != 0 {
		t.Errorf("Health = %v, want SERVING", h)
	}
	std := healthpb.NewHealthClient(conn)
	for _, svc := range []string{"", pb.Server_ServiceDesc.ServiceName} {
		resp, err := std.Check(ctx, &healthpb.HealthCheckRequest{Service: svc})
		if err != nil || resp.Status != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("grpc health %q = %v, %v; want SERVING", svc, resp, err)
		}
	}

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Serve(lis); !errors.Is(err, ErrServing) {
		t.Errorf("second Serve() = %v, want ErrServing", err)
	}
	lis.Close()

	if err := s.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown() = %v", err)
	}
	if err := r.wait(t); !errors.Is(err, ErrServerClosed) {
		t.Errorf("Serve() after Shutdown = %v, want ErrServerClosed", err)
	}
	if err := s.Shutdown(ctx); err != nil {
		t.Errorf("second Shutdown() = %v", err)
	}
	lis, err = net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Serve(lis); !errors.Is(err, ErrServerClosed) {
		t.Errorf("Serve() after Shutdown = %v, want ErrServerClosed", err)
	}
	if _, err := lis.Accept(); err == nil {
		t.Errorf("Serve after Shutdown left its listener open")
	}
	if !strings.Contains(logs.String(), "server: serving") {
		t.Errorf("log lacks the serving line:\n%s", logs.String())
	}
}

func TestCloseBeforeServe(t *testing.T) {
	var logs logBuffer
	s, err := New(testConfig(&logs))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Serve(lis); !errors.Is(err, ErrServerClosed) {
		t.Errorf("Serve() after Close = %v, want ErrServerClosed", err)
	}
}

func TestInstanceIsRandom(t *testing.T) {
	var logs logBuffer
	seen := map[string]bool{}
	for range 3 {
		s, err := New(testConfig(&logs))
		if err != nil {
			t.Fatal(err)
		}
		if len(s.Instance()) < 16 || seen[s.Instance()] {
			t.Errorf("Instance() = %q, want a fresh random id", s.Instance())
		}
		seen[s.Instance()] = true
		s.Close()
	}
}
