package server

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/xgpu/xgpu/internal/pb"
)

// fakeAggregator counts the registration calls it gets and answers them
// from a script.
type fakeAggregator struct {
	pb.UnimplementedAggregatorServer

	mu           sync.Mutex // guards the fields below
	registerErrs []error    // answered to the first Register calls, in order
	hbErrs       map[int]error
	resp         *pb.RegisterResponse
	onDeregister func(*pb.DeregisterRequest) // called before answering Deregister

	registers   []*pb.RegisterRequest
	registerAt  []time.Time
	heartbeats  []*pb.HeartbeatRequest
	deregisters []*pb.DeregisterRequest
}

func (f *fakeAggregator) Register(_ context.Context, req *pb.RegisterRequest) (*pb.RegisterResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.registers = append(f.registers, req)
	f.registerAt = append(f.registerAt, time.Now())
	if n := len(f.registers); n <= len(f.registerErrs) {
		return nil, f.registerErrs[n-1]
	}
	return f.resp, nil
}

func (f *fakeAggregator) Heartbeat(_ context.Context, req *pb.HeartbeatRequest) (*pb.HeartbeatResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.heartbeats = append(f.heartbeats, req)
	if err := f.hbErrs[len(f.heartbeats)]; err != nil {
		return nil, err
	}
	return &pb.HeartbeatResponse{}, nil
}

func (f *fakeAggregator) Deregister(_ context.Context, req *pb.DeregisterRequest) (*pb.DeregisterResponse, error) {
	f.mu.Lock()
	hook := f.onDeregister
	f.mu.Unlock()
	if hook != nil {
		hook(req)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.deregisters = append(f.deregisters, req)
	return &pb.DeregisterResponse{}, nil
}

// counts returns the number of Register, Heartbeat and Deregister calls.
func (f *fakeAggregator) counts() (reg, hb, dereg int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.registers), len(f.heartbeats), len(f.deregisters)
}

// serveAggregator serves f on lis until the test ends.
func serveAggregator(t *testing.T, f *fakeAggregator, lis net.Listener) {
	t.Helper()
	g := grpc.NewServer()
	pb.RegisterAggregatorServer(g, f)
	done := make(chan struct{})
	go func() {
		defer close(done)
		g.Serve(lis)
	}()
	t.Cleanup(func() {
		g.Stop()
		<-done
	})
}

func startAggregator(t *testing.T, f *fakeAggregator) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serveAggregator(t, f, lis)
	return lis.Addr().String()
}

// waitFor polls cond until it holds, failing the test after a while.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// newRegisteringServer returns a server of testConfig that registers with
// the aggregator at agg, with short backoffs.
func newRegisteringServer(t *testing.T, logs *logBuffer, agg string, edit func(*Config)) *Server {
	t.Helper()
	cfg := testConfig(logs)
	cfg.Aggregator = agg
	if edit != nil {
		edit(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s.backoffMin, s.backoffMax = 40*time.Millisecond, 200*time.Millisecond
	return s
}

func TestRegistration(t *testing.T) {
	f := &fakeAggregator{
		registerErrs: []error{
			status.Error(codes.AlreadyExists, "server gpu1 is registered by another instance"),
			status.Error(codes.AlreadyExists, "server gpu1 is registered by another instance"),
		},
		hbErrs: map[int]error{
			2: status.Error(codes.NotFound, "unknown server"),
			4: status.Error(codes.Unavailable, "restarting"),
		},
		resp: &pb.RegisterResponse{HeartbeatIntervalMs: 10, HeartbeatTimeoutMs: 1000},
	}
	var logs logBuffer
	s := newRegisteringServer(t, &logs, startAggregator(t, f), nil)
	r := startServer(t, s)
	ctx := testContext(t)
	conn := dial(t, r.addr)

	// Serve answers while registration is still backing off.
	if _, err := pb.NewServerClient(conn).Inventory(ctx, &pb.InventoryRequest{}); err != nil {
		t.Fatalf("Inventory: %v", err)
	}

	// Two AlreadyExists, a success, heartbeat 2 answers NotFound, then a
	// second success; heartbeat 4 fails and the beats go on.
	waitFor(t, "re-registration and heartbeats", func() bool {
		reg, hb, _ := f.counts()
		return reg >= 4 && hb >= 6
	})

	var healthDuringDeregister pb.HealthResponse_Status
	var stdDuringDeregister healthpb.HealthCheckResponse_ServingStatus
	f.mu.Lock()
	f.onDeregister = func(*pb.DeregisterRequest) {
		// Still serving calls, but no longer serving clients.
		if h, err := pb.NewServerClient(conn).Health(ctx, &pb.HealthRequest{}); err == nil {
			healthDuringDeregister = h.Status
		}
		if h, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}); err == nil {
			stdDuringDeregister = h.Status
		}
	}
	f.mu.Unlock()

	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown() = %v", err)
	}
	if err := r.wait(t); !errors.Is(err, ErrServerClosed) {
		t.Errorf("Serve() = %v, want ErrServerClosed", err)
	}

	reg, hb, dereg := f.counts()
	if reg != 4 {
		t.Errorf("Register calls = %d, want 4 (two AlreadyExists, first success, after NotFound)", reg)
	}
	if dereg != 1 {
		t.Errorf("Deregister calls = %d, want 1", dereg)
	}
	// Once deregistered, the loop has stopped: no more calls come.
	time.Sleep(30 * time.Millisecond)
	if reg2, hb2, _ := f.counts(); reg2 != reg || hb2 != hb {
		t.Errorf("calls after Shutdown: register %d->%d heartbeat %d->%d", reg, reg2, hb, hb2)
	}
	if healthDuringDeregister != pb.HealthResponse_NOT_SERVING {
		t.Errorf("Health during Deregister = %v, want NOT_SERVING", healthDuringDeregister)
	}
	if stdDuringDeregister != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("grpc health during Deregister = %v, want NOT_SERVING", stdDuringDeregister)
	}

	f.mu.Lock()
	defer f.mu.Unlock()
	inv := s.Inventory()
	for i, req := range f.registers {
		if req.Instance != s.Instance() || req.Inventory.GetServerId() != inv.ServerId || len(req.Inventory.GetVgpus()) != 2 {
			t.Errorf("Register %d = %v, want instance %s and the inventory of %s", i, req, s.Instance(), inv.ServerId)
		}
	}
	for i, req := range f.heartbeats {
		if req.Instance != s.Instance() || req.ServerId != inv.ServerId {
			t.Errorf("Heartbeat %d = %v, want server %s instance %s", i, req, inv.ServerId, s.Instance())
		}
	}
	if d := f.deregisters[0]; d.Instance != s.Instance() || d.ServerId != inv.ServerId {
		t.Errorf("Deregister = %v, want server %s instance %s", d, inv.ServerId, s.Instance())
	}
	// Backoff: 40ms then 80ms, each at least 80% of that; sleeps never end early.
	if g1, g2 := f.registerAt[1].Sub(f.registerAt[0]), f.registerAt[2].Sub(f.registerAt[1]); g1 < 32*time.Millisecond || g2 < 64*time.Millisecond {
		t.Errorf("gaps between registrations = %v, %v; want at least 32ms, then 64ms", g1, g2)
	}
	// The backoff was reset by the success: re-registering after NotFound
	// does not wait.
	if g := f.registerAt[3].Sub(f.registerAt[2]); g > 5*time.Second {
		t.Errorf("re-registration took %v", g)
	}
	for _, want := range []string{"still holds a previous instance", "registering again", "heartbeat failed", "deregistered from aggregator"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logs.String())
		}
	}
}

func TestRegistrationAggregatorDown(t *testing.T) {
	// Reserve a port, then free it: nothing listens there until the
	// aggregator starts.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	aggAddr := lis.Addr().String()
	lis.Close()

	var logs logBuffer
	s := newRegisteringServer(t, &logs, aggAddr, nil)
	r := startServer(t, s)
	ctx := testContext(t)

	h, err := pb.NewServerClient(dial(t, r.addr)).Health(ctx, &pb.HealthRequest{})
	if err != nil || h.Status != pb.HealthResponse_SERVING {
		t.Fatalf("Health = %v, %v; want SERVING while the aggregator is down", h, err)
	}
	waitFor(t, "a retry log line", func() bool {
		return strings.Count(logs.String(), "register with aggregator failed; retrying") >= 2
	})

	f := &fakeAggregator{resp: &pb.RegisterResponse{HeartbeatIntervalMs: 10}}
	lis, err = net.Listen("tcp", aggAddr)
	if err != nil {
		t.Skipf("port %s taken meanwhile: %v", aggAddr, err)
	}
	serveAggregator(t, f, lis)
	waitFor(t, "registration once the aggregator is up", func() bool {
		reg, hb, _ := f.counts()
		return reg == 1 && hb >= 2
	})
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown() = %v", err)
	}
	if _, _, dereg := f.counts(); dereg != 1 {
		t.Errorf("Deregister calls = %d, want 1", dereg)
	}
}

func TestShutdownWhileUnregistered(t *testing.T) {
	// An aggregator that never accepts: Shutdown must not wait on it and
	// must not deregister a server that never registered.
	f := &fakeAggregator{registerErrs: make([]error, 1000), resp: &pb.RegisterResponse{}}
	for i := range f.registerErrs {
		f.registerErrs[i] = status.Error(codes.AlreadyExists, "taken")
	}
	var logs logBuffer
	s := newRegisteringServer(t, &logs, startAggregator(t, f), nil)
	r := startServer(t, s)
	waitFor(t, "a registration attempt", func() bool { reg, _, _ := f.counts(); return reg >= 1 })
	start := time.Now()
	if err := s.Shutdown(testContext(t)); err != nil {
		t.Fatalf("Shutdown() = %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Shutdown took %v", d)
	}
	if err := r.wait(t); !errors.Is(err, ErrServerClosed) {
		t.Errorf("Serve() = %v, want ErrServerClosed", err)
	}
	if _, _, dereg := f.counts(); dereg != 0 {
		t.Errorf("Deregister calls = %d, want 0", dereg)
	}
}

func TestHeartbeatIntervalOverride(t *testing.T) {
	// The aggregator asks for an hour; the configured interval wins.
	f := &fakeAggregator{resp: &pb.RegisterResponse{HeartbeatIntervalMs: time.Hour.Milliseconds(), HeartbeatTimeoutMs: 5}}
	var logs logBuffer
	s := newRegisteringServer(t, &logs, startAggregator(t, f), func(c *Config) { c.HeartbeatInterval = 10 * time.Millisecond })
	startServer(t, s)
	waitFor(t, "heartbeats at the configured interval", func() bool { _, hb, _ := f.counts(); return hb >= 3 })
	if !strings.Contains(logs.String(), "not shorter than the aggregator's timeout") {
		t.Errorf("log lacks the interval warning:\n%s", logs.String())
	}
}

func TestHeartbeatInterval(t *testing.T) {
	tests := []struct {
		name string
		cfg  time.Duration
		resp *pb.RegisterResponse
		want time.Duration
	}{
		{name: "aggregator's", resp: &pb.RegisterResponse{HeartbeatIntervalMs: 1500}, want: 1500 * time.Millisecond},
		{name: "configured wins", cfg: time.Second, resp: &pb.RegisterResponse{HeartbeatIntervalMs: 1500}, want: time.Second},
		{name: "default", resp: &pb.RegisterResponse{}, want: DefaultHeartbeatInterval},
		{name: "negative answer means default", resp: &pb.RegisterResponse{HeartbeatIntervalMs: -5}, want: DefaultHeartbeatInterval},
	}
	var logs logBuffer
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &Server{cfg: Config{HeartbeatInterval: tt.cfg}}
			if got := s.heartbeatInterval(logs.logger(), tt.resp); got != tt.want {
				t.Errorf("heartbeatInterval() = %v, want %v", got, tt.want)
			}
		})
	}
}

// failingListener fails Accept with a permanent error once fail is closed.
type failingListener struct {
	net.Listener
	fail chan struct{}
}

func (l *failingListener) Accept() (net.Conn, error) {
	<-l.fail
	return nil, errors.New("accept: device gone")
}

func TestServeListenerFailureLeavesPool(t *testing.T) {
	f := &fakeAggregator{resp: &pb.RegisterResponse{HeartbeatIntervalMs: 10}}
	var logs logBuffer
	s := newRegisteringServer(t, &logs, startAggregator(t, f), nil)
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lis := &failingListener{Listener: inner, fail: make(chan struct{})}
	serveErr := make(chan error, 1) // buffered: Serve's goroutine never blocks
	go func() { serveErr <- s.Serve(lis) }()
	waitFor(t, "registration", func() bool { _, hb, _ := f.counts(); return hb >= 1 })
	close(lis.fail)
	select {
	case err := <-serveErr:
		if err == nil || errors.Is(err, ErrServerClosed) || !strings.Contains(err.Error(), "server: serve: accept: device gone") {
			t.Errorf("Serve() = %v, want the listener's error", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return")
	}
	if _, _, dereg := f.counts(); dereg != 1 {
		t.Errorf("Deregister calls = %d, want 1", dereg)
	}
	if err := s.Shutdown(testContext(t)); err != nil {
		t.Errorf("Shutdown() after a failed Serve = %v", err)
	}
}

func TestBackoff(t *testing.T) {
	b := backoff{min: 100 * time.Millisecond, max: time.Second}
	wantBase := []time.Duration{100, 200, 400, 800, 1000, 1000}
	for round := range 2 {
		for i, base := range wantBase {
			base *= time.Millisecond
			got := b.next()
			if lo, hi := base-base/5, base+base/5; got < lo || got > hi {
				t.Errorf("round %d delay %d = %v, want within %v..%v", round, i, got, lo, hi)
			}
		}
		b.reset()
	}
	zero := backoff{}
	if d := zero.next(); d != 0 {
		t.Errorf("zero backoff next() = %v, want 0", d)
	}
}
