package aggregator

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/xgpu/xgpu/internal/clock"
	"github.com/xgpu/xgpu/internal/pb"
	"github.com/xgpu/xgpu/internal/telemetry"
)

// sweepTimeout bounds one sweep's store calls.
const sweepTimeout = 10 * time.Second

// Aggregator is the pool controller: the registry of servers, their
// liveness, and the leases of vGPUs, kept in a Store.
type Aggregator struct {
	cfg        Config // with defaults
	clk        clock.Clock
	log        *slog.Logger
	store      Store
	closeStore func() error // closes what New opened (etcd client, embedded etcd, temp dir)
	started    time.Time

	grpc   *grpc.Server
	health *health.Server

	ctx    context.Context // ends at Close or Shutdown
	cancel context.CancelFunc
	loop   sync.WaitGroup

	regMu   sync.Mutex // serialises registrations, so duplicate checks see each other
	allocMu sync.Mutex // serialises this aggregator's allocations; they conflict only with other aggregators'
	sweepMu sync.Mutex // one sweep at a time

	liveMu sync.Mutex // guards live
	live   map[string]*liveness

	closing   atomic.Bool // set when Shutdown or Close begins
	closeOnce sync.Once
	closeErr  error
}

// liveness is what this aggregator heard from one server registration.
type liveness struct {
	instance  string
	epoch     string
	lastHeard time.Time // zero: not heard since this aggregator started
	dead      bool      // declared dead by a sweep; heartbeats get NotFound
}

// New opens the store (Config.Store, the external etcd cluster or an
// embedded etcd), and starts the sweep loop that ends dead servers and
// expired leases. Serve the gRPC API with Serve, or Register it on a server
// of the caller's.
func New(ctx context.Context, cfg Config) (*Aggregator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	a := &Aggregator{
		cfg:  cfg,
		clk:  cfg.Clock,
		log:  cfg.Logger,
		live: make(map[string]*liveness),
	}
	switch {
	case cfg.Store != nil:
		a.store = cfg.Store
		a.closeStore = func() error { return nil }
	case len(cfg.EtcdEndpoints) > 0:
		cli, err := dialEtcd(ctx, cfg.EtcdEndpoints, cfg.EtcdTimeout, a.log)
		if err != nil {
			return nil, err
		}
		a.store = &etcdStore{cli: cli, onClose: func() error { return closeClient(cli) }}
		a.closeStore = a.store.Close
	default:
		dir, temp := cfg.DataDir, false
		if dir == "" {
			d, err := os.MkdirTemp("", "xgpu-aggregator-etcd-")
			if err != nil {
				return nil, errorf(ErrUnavailable, "temporary etcd directory: %v", err)
			}
			dir, temp = d, true
			a.log.Warn("aggregator: no data directory configured; state is kept in a temporary directory and lost at exit", "dir", dir)
		} else if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, errorf(ErrUnavailable, "etcd data directory: %v", err)
		}
		e, err := startEmbeddedEtcd(ctx, dir, cfg.EtcdTimeout, a.log)
		if err != nil {
			if temp {
				os.RemoveAll(dir)
			}
			return nil, err
		}
		a.log.Info("aggregator: embedded etcd ready", "dir", dir, "client_url", e.clientURL())
		a.store = &etcdStore{cli: e.cli, onClose: func() error {
			err := e.close()
			if temp {
				err = errors.Join(err, os.RemoveAll(dir))
			}
			return err
		}}
		a.closeStore = a.store.Close
	}
	// Every stored server gets one HeartbeatTimeout of grace from now.
	a.started = a.clk.Now()
	a.ctx, a.cancel = context.WithCancel(context.WithoutCancel(ctx))

	a.grpc = grpc.NewServer(telemetry.GRPCServerOptions()...)
	a.Register(a.grpc)
	a.health = health.NewServer()
	a.health.SetServingStatus(pb.Aggregator_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(a.grpc, a.health)

	a.loop.Add(1)
	go a.sweepLoop()
	return a, nil
}

// Register registers the Aggregator gRPC service on s, for callers that
// serve it on a grpc.Server of their own instead of with Serve.
func (a *Aggregator) Register(s grpc.ServiceRegistrar) {
	pb.RegisterAggregatorServer(s, &service{a: a})
}

// Serve serves the gRPC API (the Aggregator service and the standard health
// service) on l until Shutdown or Close, and then returns ErrServerClosed.
// It may be called for several listeners.
func (a *Aggregator) Serve(l net.Listener) error {
	if a.closing.Load() {
		l.Close()
		return ErrServerClosed
	}
	// grpc.Server.Serve returns nil only after Stop or GracefulStop.
	err := a.grpc.Serve(l)
	if err == nil || a.closing.Load() || errors.Is(err, grpc.ErrServerStopped) {
		return ErrServerClosed
	}
	return err
}

// Shutdown stops accepting RPCs, waits for those in flight to finish (or
// cancels them when ctx ends first), stops the sweep loop and closes the
// store New opened. It returns ctx's error if ctx ended first.
func (a *Aggregator) Shutdown(ctx context.Context) error {
	a.closing.Store(true)
	a.health.Shutdown()
	done := make(chan struct{})
	go func() {
		a.grpc.GracefulStop()
		close(done)
	}()
	var ctxErr error
	select {
	case <-done:
	case <-ctx.Done():
		ctxErr = context.Cause(ctx)
		a.grpc.Stop()
		<-done
	}
	return errors.Join(ctxErr, a.Close())
}

// Close stops serving at once, stops the sweep loop and closes the store
// New opened. Leases and registrations stay in the store.
func (a *Aggregator) Close() error {
	a.closeOnce.Do(func() {
		a.closing.Store(true)
		a.health.Shutdown()
		a.grpc.Stop()
		a.cancel()
		a.loop.Wait()
		a.closeErr = a.closeStore()
	})
	return a.closeErr
}

// sweepLoop sweeps every HeartbeatInterval until Close. It re-arms one timer
// after each sweep, so a test on a fake clock knows a sweep has finished
// when the timer is armed again.
func (a *Aggregator) sweepLoop() {
	defer a.loop.Done()
	t := a.clk.NewTimer(a.cfg.HeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-a.ctx.Done():
			return
		case <-t.C():
		}
		ctx, cancel := context.WithTimeout(a.ctx, sweepTimeout)
		if err := a.sweep(ctx); err != nil && a.ctx.Err() == nil {
			a.log.Warn("aggregator: sweep failed; retrying at the next interval", "err", err)
		}
		cancel()
		t.Reset(a.cfg.HeartbeatInterval)
	}
}
