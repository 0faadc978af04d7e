package aggregator

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/xgpu/xgpu/devicemap"
	"github.com/xgpu/xgpu/internal/clock"
	"github.com/xgpu/xgpu/internal/pb"
	"github.com/xgpu/xgpu/internal/telemetry"
)

// DefaultDialTimeout bounds Dial's first contact with the aggregator when
// the context has no earlier deadline.
const DefaultDialTimeout = 5 * time.Second

// maxRecvMsgSize lets a Pool answer of a large pool through.
const maxRecvMsgSize = 64 << 20

// Client calls an aggregator over gRPC. It is safe for concurrent use.
type Client struct {
	addr string
	conn *grpc.ClientConn
	rpc  pb.AggregatorClient
	clk  clock.Clock
}

// DialOption configures Dial.
type DialOption func(*dialOptions)

type dialOptions struct {
	timeout time.Duration
	clk     clock.Clock
}

// WithDialTimeout bounds Dial's first contact; 0 means DefaultDialTimeout.
func WithDialTimeout(d time.Duration) DialOption { return func(o *dialOptions) { o.timeout = d } }

// WithClock sets the clock KeepAlive waits on; nil means clock.Real().
func WithClock(c clock.Clock) DialOption { return func(o *dialOptions) { o.clk = c } }

// Dial connects to the aggregator at addr (host:port) and checks that it
// answers, so that a wrong or dead address fails here, within the dial
// timeout, with an error wrapping ErrUnavailable, rather than at the first
// call. The connection is not encrypted.
func Dial(ctx context.Context, addr string, opts ...DialOption) (*Client, error) {
	o := dialOptions{timeout: DefaultDialTimeout, clk: clock.Real()}
	for _, opt := range opts {
		if opt != nil {
			opt(&o)
		}
	}
	if o.timeout <= 0 {
		o.timeout = DefaultDialTimeout
	}
	if o.clk == nil {
		o.clk = clock.Real()
	}
	if addr == "" {
		return nil, errorf(ErrInvalid, "dial: empty address")
	}
	conn, err := grpc.NewClient(addr, append([]grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxRecvMsgSize)),
	}, telemetry.GRPCDialOptions()...)...)
	if err != nil {
		return nil, errorf(ErrInvalid, "dial %s: %v", addr, err)
	}
	cctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	// Fail fast: a refused connection fails at once, a silent address when
	// the timeout ends.
	resp, err := healthpb.NewHealthClient(conn).Check(cctx,
		&healthpb.HealthCheckRequest{Service: pb.Aggregator_ServiceDesc.ServiceName})
	switch status.Code(err) {
	case codes.OK:
		if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			conn.Close()
			return nil, errorf(ErrUnavailable, "%s is not serving (%s)", addr, resp.GetStatus())
		}
	case codes.Unimplemented, codes.NotFound:
		// Reachable, without the health service or this entry in it.
	default:
		conn.Close()
		if ctx.Err() != nil {
			return nil, fmt.Errorf("aggregator: dial %s: %w", addr, context.Cause(ctx))
		}
		return nil, errorf(ErrUnavailable, "%s unreachable: %s", addr, status.Convert(err).Message())
	}
	return &Client{addr: addr, conn: conn, rpc: pb.NewAggregatorClient(conn), clk: o.clk}, nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// AllocateOptions describe an allocation.
type AllocateOptions struct {
	// Count is the number of vGPUs, at least 1.
	Count int
	// MemoryBytes is the minimum memory of each vGPU; 0 means any.
	MemoryBytes uint64
	// Placement is PlacementPack (the zero value) or PlacementSpread.
	Placement Placement
	// TTL is the lease's time to live, renewed by Renew or KeepAlive. 0
	// means the aggregator's default; it is sent in whole milliseconds,
	// rounded up.
	TTL time.Duration
	// Owner names the client (user@host, job id), for people.
	Owner string
}

// LeaseState is the state of a lease.
type LeaseState int

const (
	// LeaseActive: every device is in service.
	LeaseActive LeaseState = 1
	// LeaseDegraded: some devices were lost with their server; Lease.Lost
	// lists them.
	LeaseDegraded LeaseState = 2
)

// String returns "active", "degraded" or "unknown".
func (s LeaseState) String() string {
	switch s {
	case LeaseActive:
		return "active"
	case LeaseDegraded:
		return "degraded"
	}
	return "unknown"
}

// Lease is a lease as the Client sees it.
type Lease struct {
	ID    string
	State LeaseState
	// Map is the lease's device map; logical device i is Map.Devices[i].
	Map *devicemap.Map
	// Lost are the logical indices of devices lost with their server.
	Lost    []int
	Owner   string
	TTL     time.Duration
	Created time.Time
	Expires time.Time
}

// Pool describes the pool.
type Pool struct {
	Servers []PoolServer
	// Leased maps the id of every leased vGPU to its lease id.
	Leased map[string]string
	// Map is the device map of every live vGPU; nil when the aggregator
	// could not draw one (a pool too large for one address space).
	Map *devicemap.Map
}

// PoolServer is one registered server.
type PoolServer struct {
	Inventory *pb.Inventory
	Alive     bool
	// LastHeartbeat is the last sign of life the aggregator knows of.
	LastHeartbeat time.Time
}

func leaseFromPB(l *pb.Lease) (*Lease, error) {
	m, err := devicemap.Parse(l.GetDeviceMap())
	if err != nil {
		return nil, fmt.Errorf("aggregator: lease %q: %w", l.GetId(), err)
	}
	out := &Lease{
		ID:      l.GetId(),
		State:   LeaseState(l.GetState()),
		Map:     m,
		Owner:   l.GetOwner(),
		TTL:     time.Duration(l.GetTtlMs()) * time.Millisecond,
		Created: time.UnixMilli(l.GetCreatedUnixMs()),
		Expires: time.UnixMilli(l.GetExpiresUnixMs()),
	}
	for _, i := range l.GetLostDevices() {
		out.Lost = append(out.Lost, int(i))
	}
	return out, nil
}

// Allocate leases vGPUs. Errors wrap ErrExhausted (not enough free vGPUs),
// ErrInvalid or ErrUnavailable.
func (c *Client) Allocate(ctx context.Context, o AllocateOptions) (*Lease, error) {
	if o.Count > math.MaxInt32 || o.Count < math.MinInt32 {
		return nil, errorf(ErrInvalid, "allocate: count %d out of range", o.Count)
	}
	ttlMs := int64(o.TTL / time.Millisecond)
	if o.TTL%time.Millisecond > 0 {
		ttlMs++
	}
	l, err := c.rpc.Allocate(ctx, &pb.AllocateRequest{
		Count:       int32(o.Count),
		MemoryBytes: o.MemoryBytes,
		Placement:   pb.Placement(o.Placement),
		TtlMs:       ttlMs,
		Owner:       o.Owner,
	})
	if err != nil {
		return nil, fromStatus("allocate", err)
	}
	return leaseFromPB(l)
}

// Renew extends a lease by its TTL. An expired or unknown lease gives an
// error wrapping ErrNotFound.
func (c *Client) Renew(ctx context.Context, leaseID string) (*Lease, error) {
	l, err := c.rpc.Renew(ctx, &pb.RenewRequest{LeaseId: leaseID})
	if err != nil {
		return nil, fromStatus("renew", err)
	}
	return leaseFromPB(l)
}

// Release ends a lease and frees its vGPUs.
func (c *Client) Release(ctx context.Context, leaseID string) error {
	if _, err := c.rpc.Release(ctx, &pb.ReleaseRequest{LeaseId: leaseID}); err != nil {
		return fromStatus("release", err)
	}
	return nil
}

// Get returns a lease.
func (c *Client) Get(ctx context.Context, leaseID string) (*Lease, error) {
	l, err := c.rpc.GetLease(ctx, &pb.GetLeaseRequest{LeaseId: leaseID})
	if err != nil {
		return nil, fromStatus("get lease", err)
	}
	return leaseFromPB(l)
}

// List returns every lease, oldest first.
func (c *Client) List(ctx context.Context) ([]*Lease, error) {
	resp, err := c.rpc.ListLeases(ctx, &pb.ListLeasesRequest{})
	if err != nil {
		return nil, fromStatus("list leases", err)
	}
	out := make([]*Lease, 0, len(resp.GetLeases()))
	for _, l := range resp.GetLeases() {
		lease, err := leaseFromPB(l)
		if err != nil {
			return nil, err
		}
		out = append(out, lease)
	}
	return out, nil
}

// Pool describes the pool: servers, liveness, leased vGPUs and the device
// map of every live vGPU.
func (c *Client) Pool(ctx context.Context) (*Pool, error) {
	resp, err := c.rpc.Pool(ctx, &pb.PoolRequest{})
	if err != nil {
		return nil, fromStatus("pool", err)
	}
	p := &Pool{Leased: resp.GetLeased()}
	if p.Leased == nil {
		p.Leased = make(map[string]string)
	}
	for _, s := range resp.GetServers() {
		p.Servers = append(p.Servers, PoolServer{
			Inventory:     s.GetInventory(),
			Alive:         s.GetAlive(),
			LastHeartbeat: time.UnixMilli(s.GetLastHeartbeatUnixMs()),
		})
	}
	if len(resp.GetDeviceMap()) > 0 {
		if p.Map, err = devicemap.Parse(resp.GetDeviceMap()); err != nil {
			return nil, fmt.Errorf("aggregator: pool: %w", err)
		}
	}
	return p, nil
}

// KeepAlive renews the lease now and then every third of its TTL until ctx
// ends, and then returns context.Cause(ctx). A renewal that fails for a
// passing reason (the aggregator unreachable, a conflict) is retried sooner,
// at a tenth of the TTL; one that fails for good (the lease expired or was
// released: ErrNotFound) ends KeepAlive with that error.
func (c *Client) KeepAlive(ctx context.Context, leaseID string) error {
	l, err := c.Renew(ctx, leaseID)
	if err != nil {
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		return err
	}
	// The aggregator grants at least MinLeaseTTL; the floor only guards
	// against a nonsensical answer.
	const floor = 100 * time.Millisecond
	ttl := max(l.TTL, floor)
	wait := ttl / 3
	for {
		t := c.clk.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return context.Cause(ctx)
		case <-t.C():
		}
		// One renewal may take at most a third of the TTL, so that a hung
		// call leaves time for a retry before the lease runs out.
		rctx, cancel := context.WithTimeout(ctx, ttl/3)
		l, err = c.Renew(rctx, leaseID)
		cancel()
		switch {
		case ctx.Err() != nil:
			return context.Cause(ctx)
		case err == nil:
			ttl = max(l.TTL, floor)
			wait = ttl / 3
		case errors.Is(err, ErrNotFound), errors.Is(err, ErrInvalid):
			return err
		default:
			wait = ttl / 10
		}
	}
}
