package server

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/proto"

	"github.com/xgpu/xgpu/internal/pb"
	"github.com/xgpu/xgpu/internal/telemetry"
)

var (
	// ErrServerClosed is returned by Serve after Shutdown or Close.
	ErrServerClosed = errors.New("server: closed")

	// ErrNoGPUs is returned by New when the GPU source lists no GPU.
	ErrNoGPUs = errors.New("server: no GPUs found")

	// ErrServing is returned by a second call to Serve.
	ErrServing = errors.New("server: already serving")
)

const (
	// registerTimeout and deregisterTimeout bound one Register or Deregister
	// call to the aggregator.
	registerTimeout   = 10 * time.Second
	deregisterTimeout = 5 * time.Second

	// Bounds of the backoff between failed registrations.
	defaultBackoffMin = 250 * time.Millisecond
	defaultBackoffMax = 30 * time.Second
)

// Server is the supervisor of one GPU host: it serves the xgpu Server gRPC
// service and the standard gRPC health service, and keeps the host
// registered with the aggregator. Create it with New.
type Server struct {
	cfg      Config // defaults applied, except those that need the listener
	log      *slog.Logger
	instance string    // random per process, sent with Register
	started  time.Time // for Health's uptime
	gpus     []*pb.GPU
	vgpus    []*pb.VGPU

	grpc    *grpc.Server
	health  *health.Server
	aggConn *grpc.ClientConn    // nil when standalone
	agg     pb.AggregatorClient // nil when standalone

	// Backoff bounds of the registration loop; tests shorten them.
	backoffMin, backoffMax time.Duration

	sessions *sessions // client sessions and their workers
	workers  *workerMetrics

	inv        atomic.Pointer[pb.Inventory] // immutable once stored
	status     atomic.Int32                 // pb.HealthResponse_Status of the Server service
	registered atomic.Bool                  // a Register call succeeded at least once

	leaveOnce sync.Once // runs leave's teardown once
	connOnce  sync.Once // closes aggConn once

	mu       sync.Mutex // guards the fields below
	serving  bool       // Serve was called
	closed   bool       // Shutdown, Close or a failed Serve began
	stopLoop context.CancelFunc
	loopDone chan struct{} // closed when the registration loop returns; nil if none runs
}

// New lists the GPUs of cfg.Source, splits them into vGPUs and prepares the
// gRPC services. It starts no goroutine and opens no connection; Serve does.
func New(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	listed, err := cfg.Source.GPUs(context.Background())
	if err != nil {
		return nil, fmt.Errorf("server: list GPUs: %w", err)
	}
	if len(listed) == 0 {
		return nil, ErrNoGPUs
	}
	gpus := make([]*pb.GPU, len(listed))
	for i, g := range listed {
		if g == nil {
			return nil, fmt.Errorf("server: list GPUs: GPU %d is nil", i)
		}
		gpus[i] = proto.CloneOf(g)
	}
	vgpus, err := Partition(gpus, cfg.VGPUsPerGPU, cfg.VGPUMemory)
	if err != nil {
		return nil, err
	}

	s := &Server{
		cfg:        cfg,
		log:        cfg.Logger,
		instance:   rand.Text(),
		started:    time.Now(),
		gpus:       gpus,
		vgpus:      vgpus,
		grpc:       grpc.NewServer(append(slices.Clip(cfg.GRPCOptions), telemetry.GRPCServerOptions()...)...),
		workers:    newWorkerMetrics(),
		health:     health.NewServer(),
		backoffMin: defaultBackoffMin,
		backoffMax: defaultBackoffMax,
	}
	if cfg.Aggregator != "" {
		conn, err := grpc.NewClient(cfg.Aggregator, append(slices.Clip(cfg.AggregatorDialOptions), telemetry.GRPCDialOptions()...)...)
		if err != nil {
			return nil, fmt.Errorf("server: aggregator %s: %w", cfg.Aggregator, err)
		}
		s.aggConn = conn
		s.agg = pb.NewAggregatorClient(conn)
	}
	s.sessions = newSessions(s)
	s.inv.Store(s.inventory(cfg.ID, cfg.Advertise))
	s.status.Store(int32(pb.HealthResponse_UNKNOWN))
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	s.health.SetServingStatus(pb.Server_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_NOT_SERVING)
	pb.RegisterServerServer(s.grpc, &service{srv: s})
	healthpb.RegisterHealthServer(s.grpc, s.health)
	return s, nil
}

// inventory builds the inventory message for the given id and address.
func (s *Server) inventory(id, address string) *pb.Inventory {
	return &pb.Inventory{
		ServerId: id,
		Host:     s.cfg.Host,
		Address:  address,
		Backend:  s.cfg.Backend,
		Version:  s.cfg.Version,
		Gpus:     s.gpus,
		Vgpus:    s.vgpus,
	}
}

// Inventory returns a copy of what the server offers. Its server id and
// address are those of Config until Serve resolves their defaults.
func (s *Server) Inventory() *pb.Inventory { return proto.CloneOf(s.inv.Load()) }

// Instance returns the random id of this server process, sent with Register.
func (s *Server) Instance() string { return s.instance }

// Serve accepts gRPC connections on lis and, unless the server runs
// standalone, registers with the aggregator in the background: Serve never
// waits for the aggregator. It returns ErrServerClosed after Shutdown or
// Close, ErrServing if called a second time, or the error that stopped the
// listener (after leaving the pool). lis is closed when Serve returns.
func (s *Server) Serve(lis net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		lis.Close()
		return ErrServerClosed
	}
	if s.serving {
		s.mu.Unlock()
		return ErrServing
	}
	s.serving = true
	inv := s.inventory(s.cfg.addresses(lis.Addr()))
	s.inv.Store(inv)
	s.status.Store(int32(pb.HealthResponse_SERVING))
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	s.health.SetServingStatus(pb.Server_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	if s.agg != nil {
		ctx, cancel := context.WithCancel(context.Background())
		s.stopLoop = cancel
		s.loopDone = make(chan struct{})
		go func(done chan<- struct{}) {
			defer close(done)
			s.registerLoop(ctx, inv)
		}(s.loopDone)
	}
	s.mu.Unlock()
	s.log.Info("server: serving", "server_id", inv.ServerId, "address", inv.Address,
		"listen", lis.Addr().String(), "gpus", len(s.gpus), "vgpus", len(s.vgpus),
		"backend", s.cfg.Backend, "aggregator", s.cfg.Aggregator, "instance", s.instance)

	err := s.grpc.Serve(lis)

	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return ErrServerClosed
	}
	// The listener failed: no client can reach this server any more, so
	// leave the pool rather than keep heartbeating.
	s.log.Error("server: listener failed; leaving the pool", "err", err)
	ctx, cancel := context.WithTimeout(context.Background(), deregisterTimeout)
	s.leave(ctx)
	cancel()
	s.grpc.Stop()
	s.stopSessions(context.Background())
	s.closeConn()
	return fmt.Errorf("server: serve: %w", err)
}

// Shutdown stops the server gracefully: Health answers NOT_SERVING, the
// server deregisters from the aggregator, then the gRPC server stops taking
// new calls and waits for the running ones. If ctx ends first, Shutdown
// closes every connection and returns context.Cause(ctx). Shutdown may be
// called more than once and together with Close.
func (s *Server) Shutdown(ctx context.Context) error {
	s.leave(ctx)
	stopped := make(chan struct{})
	go func() {
		s.grpc.GracefulStop()
		close(stopped)
	}()
	var err error
	select {
	case <-stopped:
	case <-ctx.Done():
		s.grpc.Stop()
		<-stopped
		err = context.Cause(ctx)
	}
	s.stopSessions(ctx)
	s.closeConn()
	return err
}

// Close stops the server at once: it deregisters from the aggregator (for
// a few seconds at most) and closes every connection without waiting for
// running calls.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), deregisterTimeout)
	defer cancel()
	s.leave(ctx)
	s.grpc.Stop()
	s.stopSessions(context.Background())
	s.closeConn()
	return nil
}

// stopSessions stops every session's worker: gracefully within
// stopTimeout, or at once when ctx is already done, then by force.
func (s *Server) stopSessions(ctx context.Context) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), stopTimeout)
	defer cancel()
	s.sessions.closeAll(ctx)
}

// leave marks the server closed, turns Health to NOT_SERVING, stops the
// registration loop and deregisters from the aggregator. Only the first call
// does the work; later calls wait for it.
func (s *Server) leave(ctx context.Context) {
	s.leaveOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		stop, done := s.stopLoop, s.loopDone
		s.mu.Unlock()

		s.status.Store(int32(pb.HealthResponse_NOT_SERVING))
		s.health.Shutdown()
		if stop != nil {
			stop()
			<-done
		}
		if s.agg == nil || !s.registered.Load() {
			return
		}
		inv := s.inv.Load()
		ctx, cancel := context.WithTimeout(ctx, deregisterTimeout)
		defer cancel()
		_, err := s.agg.Deregister(ctx, &pb.DeregisterRequest{ServerId: inv.ServerId, Instance: s.instance})
		if err != nil {
			s.log.Warn("server: deregister from aggregator failed; it will time this server out",
				"aggregator", s.cfg.Aggregator, "server_id", inv.ServerId, "err", err)
			return
		}
		s.log.Info("server: deregistered from aggregator", "aggregator", s.cfg.Aggregator, "server_id", inv.ServerId)
	})
}

// closeConn closes the connection to the aggregator, once.
func (s *Server) closeConn() {
	s.connOnce.Do(func() {
		if s.aggConn != nil {
			s.aggConn.Close()
		}
	})
}

// service implements the xgpu Server gRPC service. Each RPC is a method
// here; the state they share lives in Server.
type service struct {
	pb.UnimplementedServerServer
	srv *Server
}

var _ pb.ServerServer = (*service)(nil)

// Inventory answers with what the server offers. The message is shared and
// immutable; gRPC only marshals it.
func (v *service) Inventory(context.Context, *pb.InventoryRequest) (*pb.Inventory, error) {
	return v.srv.inv.Load(), nil
}

// Health answers with the serving status and the uptime.
func (v *service) Health(context.Context, *pb.HealthRequest) (*pb.HealthResponse, error) {
	return &pb.HealthResponse{
		Status:   pb.HealthResponse_Status(v.srv.status.Load()),
		UptimeMs: time.Since(v.srv.started).Milliseconds(),
		Sessions: int32(v.srv.sessions.count()),
	}, nil
}
