package runtime

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/xgpu/xgpu/devicemap"
	"github.com/xgpu/xgpu/internal/calls"
	"github.com/xgpu/xgpu/internal/pb"
	"github.com/xgpu/xgpu/internal/telemetry"
	"github.com/xgpu/xgpu/peers"
)

// Client is an open set of sessions on the servers of a device map: the
// logical devices 0..n-1 of one application. Create it with Open or
// OpenLease; its methods are safe for concurrent use.
type Client struct {
	cfg      Config
	m        *devicemap.Map
	log      *slog.Logger
	devs     []device
	sessions []*session

	closing   atomic.Bool
	closeOnce sync.Once
	closeErr  error
	windows   []window // address windows reserved for the devices

	evMu   sync.Mutex             // guards evPend
	evPend map[eventKey][]*waiter // async D2H pieces an event's last record waits for

	// traceParent holds the context whose span the client spans of
	// calls are children of (SetTraceParent); nil: each call's span is
	// the root of a trace of its own. Read only while tracing is on.
	traceParent atomic.Pointer[context.Context]
}

// device is one logical device of the client.
type device struct {
	idx    int
	s      *session
	lo, hi uint64 // address window
	allocs allocTable
	attrs  attrCache // the GPU's attributes, once asked (DeviceAttributes)
}

// Open opens a session on every server of cfg.Map for the devices it
// holds there, and connects to each session's worker. It fails, leaving
// nothing open, if any server refuses or any worker cannot be reached
// within cfg.DialTimeout.
func Open(ctx context.Context, cfg Config) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	c := &Client{
		cfg:    cfg,
		m:      cfg.Map,
		log:    cfg.Logger,
		devs:   make([]device, cfg.Map.Len()),
		evPend: make(map[eventKey][]*waiter),
	}
	held, err := reserveWindows(cfg.Map)
	if err != nil {
		// Host memory may then land in a window and be taken for device
		// memory; everything else works.
		c.log.Warn(err.Error())
	}
	c.windows = held
	// Devices grouped by server, servers in order of first appearance.
	var order []string
	byServer := make(map[string][]int)
	for i, d := range cfg.Map.Devices {
		if _, ok := byServer[d.Address]; !ok {
			order = append(order, d.Address)
		}
		byServer[d.Address] = append(byServer[d.Address], i)
		lo, hi := cfg.Map.WindowOf(i)
		c.devs[i] = device{idx: i, lo: lo, hi: hi}
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.DialTimeout)
	defer cancel()
	sessions := make([]*session, len(order))
	errs := make([]error, len(order))
	var wg sync.WaitGroup
	for k, addr := range order {
		wg.Go(func() { sessions[k], errs[k] = c.openSession(ctx, addr, byServer[addr]) })
	}
	wg.Wait()
	for _, s := range sessions {
		if s != nil {
			c.sessions = append(c.sessions, s)
		}
	}
	if err := errors.Join(errs...); err != nil {
		c.closing.Store(true)
		cctx, ccancel := context.WithTimeout(context.Background(), cfg.CloseTimeout)
		defer ccancel()
		for _, s := range c.sessions {
			_ = s.close(cctx)
		}
		releaseWindows(c.windows)
		return nil, err
	}
	for _, s := range c.sessions {
		for _, i := range s.devs {
			c.devs[i].s = s
		}
	}
	return c, nil
}

// OpenLease fetches the device map of lease leaseID from the aggregator at
// aggregator (host:port) and opens it as Open does. cfg.Map must be nil;
// cfg.GRPCDialOptions apply to the aggregator too. Renewing the lease is
// the caller's business (the aggregator client's KeepAlive does it).
func OpenLease(ctx context.Context, aggregator, leaseID string, cfg Config) (*Client, error) {
	if cfg.Map != nil {
		return nil, errors.New("runtime: OpenLease: cfg.Map must be nil; the lease gives the map")
	}
	if leaseID == "" {
		return nil, errors.New("runtime: OpenLease: empty lease id")
	}
	opts := cfg.GRPCDialOptions
	if opts == nil {
		opts = defaultDialOptions()
	}
	conn, err := grpc.NewClient(aggregator, append(slices.Clip(opts), telemetry.GRPCDialOptions()...)...)
	if err != nil {
		return nil, fmt.Errorf("runtime: aggregator %s: %w", aggregator, err)
	}
	defer conn.Close()
	timeout := cfg.DialTimeout
	if timeout <= 0 {
		timeout = DefaultDialTimeout
	}
	gctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	lease, err := pb.NewAggregatorClient(conn).GetLease(gctx, &pb.GetLeaseRequest{LeaseId: leaseID})
	if err != nil {
		return nil, fmt.Errorf("runtime: get lease %s from %s: %w", leaseID, aggregator, err)
	}
	if lease.GetState() != pb.Lease_ACTIVE {
		return nil, fmt.Errorf("runtime: lease %s is %v", leaseID, lease.GetState())
	}
	m, err := devicemap.Parse(lease.GetDeviceMap())
	if err != nil {
		return nil, fmt.Errorf("runtime: lease %s: device map: %w", leaseID, err)
	}
	cfg.Map = m
	if cfg.LeaseID == "" {
		cfg.LeaseID = leaseID
	}
	return Open(ctx, cfg)
}

// openSession opens the session for devs on the server at addr and
// connects to its worker.
func (c *Client) openSession(ctx context.Context, addr string, devs []int) (_ *session, err error) {
	conn, err := grpc.NewClient(addr, append(slices.Clip(c.cfg.GRPCDialOptions), telemetry.GRPCDialOptions()...)...)
	if err != nil {
		return nil, fmt.Errorf("runtime: server %s: %w", addr, err)
	}
	ctl := pb.NewServerClient(conn)
	req := &pb.OpenSessionRequest{LeaseId: c.cfg.LeaseID, Client: c.cfg.Client}
	for _, i := range devs {
		d := &c.m.Devices[i]
		lo, hi := c.m.WindowOf(i)
		req.Devices = append(req.Devices, &pb.SessionDevice{LogicalIndex: int32(i), Vgpu: d.VGPU, WindowBase: lo, WindowSize: hi - lo})
	}
	resp, err := ctl.OpenSession(ctx, req)
	if err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("runtime: open session on server %s for devices %v: %w", addr, devs, err)
	}
	sctx, scancel := context.WithCancel(context.Background())
	s := &session{
		c:        c,
		server:   addr,
		addr:     resp.GetDataAddress(),
		id:       resp.GetSessionId(),
		token:    resp.GetToken(),
		pin:      resp.GetCertSha256(),
		pid:      resp.GetWorkerPid(),
		devs:     slices.Clone(devs),
		rpc:      conn,
		ctl:      ctl,
		ctx:      sctx,
		cancel:   scancel,
		kick:     make(chan struct{}, 1),
		waiters:  make(map[uint64]*waiter),
		inflight: make(chan struct{}, c.cfg.MaxInflight),
		peered:   make(map[int]error),
	}
	defer func() {
		if err != nil {
			scancel()
			cctx, cancel := context.WithTimeout(context.Background(), c.cfg.CloseTimeout)
			defer cancel()
			_, _ = ctl.CloseSession(cctx, &pb.CloseSessionRequest{SessionId: s.id, Token: s.token})
			_ = conn.Close()
		}
	}()
	tlsConf, err := workerTLS(c.cfg.TLS, s.pin)
	if err != nil {
		return nil, err
	}
	dial := s.addr
	if c.cfg.dataAddr != nil {
		dial = c.cfg.dataAddr(dial)
	}
	pc, err := peers.Dial(ctx, dial, tlsConf, c.cfg.Transport)
	if err != nil {
		return nil, fmt.Errorf("runtime: connect to worker %s of server %s: %w", s.addr, addr, err)
	}
	s.conn = pc
	s.w = pc.CallWriter()
	s.wg.Go(s.readLoop)
	s.wg.Go(s.flushLoop)
	s.wg.Go(s.closer)
	if _, _, err := s.roundTrip(calls.OpHello, &calls.Call{Text: string(s.token)}); err != nil {
		s.fail(err)
		s.wg.Wait()
		return nil, fmt.Errorf("runtime: hello to worker %s of server %s: %w", s.addr, addr, err)
	}
	if c.localLaneWanted() {
		s.joinLocal(ctx)
	}
	return s, nil
}

// Close closes every session: each worker frees the client's memory,
// streams and events and exits, and the servers release the devices. Calls
// in progress fail with ErrClosed, as do later ones. Close is idempotent;
// it returns the first call's result.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		c.closing.Store(true)
		ctx, cancel := context.WithTimeout(context.Background(), c.cfg.CloseTimeout)
		defer cancel()
		errs := make([]error, len(c.sessions))
		var wg sync.WaitGroup
		for k, s := range c.sessions {
			wg.Go(func() { errs[k] = s.close(ctx) })
		}
		wg.Wait()
		releaseWindows(c.windows)
		if err := errors.Join(errs...); err != nil {
			c.closeErr = fmt.Errorf("runtime: close: %w", err)
		}
	})
	return c.closeErr
}

// Map returns the client's device map. It must not be modified.
func (c *Client) Map() *devicemap.Map { return c.m }

// DeviceCount returns the number of logical devices.
func (c *Client) DeviceCount() int { return len(c.devs) }

// device returns logical device i, or an error naming op.
func (c *Client) device(op string, i int) (*device, error) {
	if c.closing.Load() {
		return nil, opErr(op, i, ErrClosed)
	}
	if i < 0 || i >= len(c.devs) {
		return nil, opErr(op, i, errDevice(i, len(c.devs)))
	}
	return &c.devs[i], nil
}

// isNotFound reports whether a gRPC error says the session is already
// gone.
func isNotFound(err error) bool {
	return status.Code(err) == codes.NotFound
}

// SessionStats are the counters of one session.
type SessionStats struct {
	Server      string // control address of the server
	DataAddress string // the worker's data address
	SessionID   string
	WorkerPID   int32
	Devices     []int // logical devices of the session
	Lost        error // nil while the session is alive

	Calls      uint64 // synchronous calls sent (each waits for a reply)
	AsyncCalls uint64 // asynchronous calls sent
	Flushes    uint64 // writes of the send buffer to the connection

	FrameBytesSent     uint64 // call stream bytes sent: frames with their headers and inline payloads
	FrameBytesReceived uint64 // call stream bytes received

	// Copy payload: inline bytes in calls and replies plus bulk
	// transfers. A peer copy between two servers adds nothing here.
	PayloadSent     uint64
	PayloadReceived uint64

	BulkTransfersSent     uint64
	BulkTransfersReceived uint64

	// LocalLane: the session's bulk transfers go through shared memory
	// (the worker is on this host; see Config.NoLocalLane).
	LocalLane bool
}

// Stats are the client's counters, one entry per session in the order of
// first appearance of their servers in the map.
type Stats struct {
	Sessions []SessionStats
}

// PayloadSent is the sum of the sessions' PayloadSent.
func (s Stats) PayloadSent() uint64 {
	var n uint64
	for _, x := range s.Sessions {
		n += x.PayloadSent
	}
	return n
}

// PayloadReceived is the sum of the sessions' PayloadReceived.
func (s Stats) PayloadReceived() uint64 {
	var n uint64
	for _, x := range s.Sessions {
		n += x.PayloadReceived
	}
	return n
}

// Stats returns the client's counters.
func (c *Client) Stats() Stats {
	out := Stats{Sessions: make([]SessionStats, len(c.sessions))}
	for k, s := range c.sessions {
		st := &s.stats
		out.Sessions[k] = SessionStats{
			Server:                s.server,
			DataAddress:           s.addr,
			SessionID:             s.id,
			WorkerPID:             s.pid,
			Devices:               slices.Clone(s.devs),
			Lost:                  s.lost(),
			Calls:                 st.calls.Load(),
			AsyncCalls:            st.asyncCalls.Load(),
			Flushes:               st.flushes.Load(),
			FrameBytesSent:        st.frameBytesSent.Load(),
			FrameBytesReceived:    st.frameBytesReceived.Load(),
			PayloadSent:           st.payloadSent.Load(),
			PayloadReceived:       st.payloadReceived.Load(),
			BulkTransfersSent:     st.bulkTransfersSent.Load(),
			BulkTransfersReceived: st.bulkTransfersRecv.Load(),
			LocalLane:             s.conn.HasLocal(),
		}
	}
	return out
}
