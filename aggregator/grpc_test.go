package aggregator

import (
	"context"
	"errors"
	"math"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/xgpu/xgpu/internal/clock"
	"github.com/xgpu/xgpu/internal/pb"
)

// served starts an aggregator on a memory store and a fake clock, serving
// on a loopback port, and a Client to it.
func served(t *testing.T) (*Aggregator, *Client, *clock.Fake, *MemoryStore) {
	t.Helper()
	s := NewMemoryStore()
	clk := clock.NewFake(time.Time{})
	a := newTestAggregator(t, s, clk)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1) // Serve's result, read at cleanup
	go func() { served <- a.Serve(l) }()
	t.Cleanup(func() {
		a.Close()
		if err := <-served; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve = %v, want ErrServerClosed", err)
		}
	})
	c, err := Dial(ctxT(t), l.Addr().String(), WithClock(clk))
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return a, c, clk, s
}

func TestGRPCCodes(t *testing.T) {
	_, c, _, s := served(t)
	rpc := pb.NewAggregatorClient(c.conn)
	ctx := ctxT(t)
	resp, err := rpc.Register(ctx, &pb.RegisterRequest{Inventory: testInventory("s1", "h1", gpuSpec{gpus: 2}), Instance: "i1"})
	if err != nil {
		t.Fatalf("Register: %v", err)
	}
	if resp.GetHeartbeatIntervalMs() != 1000 || resp.GetHeartbeatTimeoutMs() != 5000 {
		t.Errorf("Register response = %v", resp)
	}
	tests := []struct {
		name string
		call func() error
		code codes.Code
		msg  string
	}{
		{"register twice, same instance", func() error {
			_, err := rpc.Register(ctx, &pb.RegisterRequest{Inventory: testInventory("s1", "h1", gpuSpec{gpus: 2}), Instance: "i1"})
			return err
		}, codes.OK, ""},
		{"register, another live instance", func() error {
			_, err := rpc.Register(ctx, &pb.RegisterRequest{Inventory: testInventory("s1", "h1", gpuSpec{gpus: 2}), Instance: "i2"})
			return err
		}, codes.AlreadyExists, `held by live instance "i1"`},
		{"register, bad inventory", func() error {
			inv := testInventory("s2", "h2", gpuSpec{gpus: 1})
			inv.Vgpus[0].GpuUuid = "GPU-other"
			_, err := rpc.Register(ctx, &pb.RegisterRequest{Inventory: inv, Instance: "i1"})
			return err
		}, codes.InvalidArgument, `unknown GPU "GPU-other"`},
		{"register, no inventory", func() error {
			_, err := rpc.Register(ctx, &pb.RegisterRequest{Instance: "i1"})
			return err
		}, codes.InvalidArgument, "inventory missing"},
		{"heartbeat", func() error {
			_, err := rpc.Heartbeat(ctx, &pb.HeartbeatRequest{ServerId: "s1", Instance: "i1"})
			return err
		}, codes.OK, ""},
		{"heartbeat, unknown server", func() error {
			_, err := rpc.Heartbeat(ctx, &pb.HeartbeatRequest{ServerId: "s9", Instance: "i1"})
			return err
		}, codes.NotFound, "not registered"},
		{"heartbeat, unknown instance", func() error {
			_, err := rpc.Heartbeat(ctx, &pb.HeartbeatRequest{ServerId: "s1", Instance: "i7"})
			return err
		}, codes.NotFound, `not "i7"`},
		{"deregister, unknown server", func() error {
			_, err := rpc.Deregister(ctx, &pb.DeregisterRequest{ServerId: "s9", Instance: "i1"})
			return err
		}, codes.NotFound, "not registered"},
		{"allocate, zero", func() error {
			_, err := rpc.Allocate(ctx, &pb.AllocateRequest{Count: 0})
			return err
		}, codes.InvalidArgument, "count 0"},
		{"allocate, absurd ttl", func() error {
			_, err := rpc.Allocate(ctx, &pb.AllocateRequest{Count: 1, TtlMs: math.MaxInt64})
			return err
		}, codes.InvalidArgument, "ttl"},
		{"allocate, ttl over the maximum", func() error {
			_, err := rpc.Allocate(ctx, &pb.AllocateRequest{Count: 1, TtlMs: (48 * time.Hour).Milliseconds()})
			return err
		}, codes.InvalidArgument, "exceeds the maximum"},
		{"allocate, unknown placement", func() error {
			_, err := rpc.Allocate(ctx, &pb.AllocateRequest{Count: 1, Placement: 5})
			return err
		}, codes.InvalidArgument, "placement"},
		{"allocate, too many", func() error {
			_, err := rpc.Allocate(ctx, &pb.AllocateRequest{Count: 100})
			return err
		}, codes.ResourceExhausted, "2 free, 100 asked"},
		{"get, unknown lease", func() error {
			_, err := rpc.GetLease(ctx, &pb.GetLeaseRequest{LeaseId: "lease-none"})
			return err
		}, codes.NotFound, `no lease "lease-none"`},
		{"renew, unknown lease", func() error {
			_, err := rpc.Renew(ctx, &pb.RenewRequest{LeaseId: "lease-none"})
			return err
		}, codes.NotFound, "no lease"},
		{"release, unknown lease", func() error {
			_, err := rpc.Release(ctx, &pb.ReleaseRequest{LeaseId: "lease-none"})
			return err
		}, codes.NotFound, "no lease"},
		{"release, empty id", func() error {
			_, err := rpc.Release(ctx, &pb.ReleaseRequest{})
			return err
		}, codes.InvalidArgument, "lease_id missing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var before map[string]string
			if tt.code != codes.OK {
				before = dump(t, s)
			}
			err := tt.call()
			st := status.Convert(err)
			if st.Code() != tt.code || !strings.Contains(st.Message(), tt.msg) {
				t.Errorf("got %v %q, want %v mentioning %q", st.Code(), st.Message(), tt.code, tt.msg)
			}
			if tt.code != codes.OK && !strings.HasPrefix(st.Message(), "aggregator: ") {
				t.Errorf("message %q lacks the package prefix", st.Message())
			}
			if before != nil {
				assertUnchanged(t, s, before)
			}
		})
	}
}

func TestClientLeaseFlow(t *testing.T) {
	a, c, clk, _ := served(t)
	twoHosts(t, a, 2)
	ctx := ctxT(t)

	l, err := c.Allocate(ctx, AllocateOptions{Count: 3, Placement: PlacementSpread, TTL: 90*time.Second + time.Microsecond, Owner: "bob"})
	if err != nil {
		t.Fatalf("Allocate: %v", err)
	}
	if l.Map == nil || l.Map.Len() != 3 || l.Map.LeaseID != l.ID || l.State != LeaseActive || l.Owner != "bob" {
		t.Fatalf("lease = %+v", l)
	}
	if l.TTL != 90*time.Second+time.Millisecond {
		t.Errorf("TTL = %v, want the request rounded up to a millisecond", l.TTL)
	}
	if !l.Created.Equal(clk.Now()) || !l.Expires.Equal(clk.Now().Add(l.TTL)) {
		t.Errorf("created %v expires %v, now %v", l.Created, l.Expires, clk.Now())
	}
	hosts := map[string]int{}
	for _, d := range l.Map.Devices {
		hosts[d.Host]++
	}
	if len(hosts) != 2 {
		t.Errorf("spread lease on hosts %v", hosts)
	}

	got, err := c.Get(ctx, l.ID)
	if err != nil || got.ID != l.ID || got.Map.Len() != 3 {
		t.Errorf("Get = %+v, %v", got, err)
	}
	list, err := c.List(ctx)
	if err != nil || len(list) != 1 || list[0].ID != l.ID {
		t.Errorf("List = %v, %v", list, err)
	}
	p, err := c.Pool(ctx)
	if err != nil {
		t.Fatalf("Pool: %v", err)
	}
	if len(p.Servers) != 2 || !p.Servers[0].Alive || len(p.Leased) != 3 || p.Map == nil || p.Map.Len() != 4 {
		t.Errorf("Pool = %+v", p)
	}
	if !p.Servers[0].LastHeartbeat.Equal(clk.Now()) {
		t.Errorf("last heartbeat %v, want %v", p.Servers[0].LastHeartbeat, clk.Now())
	}

	clk.Advance(time.Second)
	r, err := c.Renew(ctx, l.ID)
	if err != nil || !r.Expires.Equal(clk.Now().Add(l.TTL)) {
		t.Errorf("Renew = %+v, %v", r, err)
	}
	if _, err := c.Allocate(ctx, AllocateOptions{Count: 2}); !errors.Is(err, ErrExhausted) || !strings.Contains(err.Error(), "1 free, 2 asked") {
		t.Errorf("Allocate beyond the pool = %v, want ErrExhausted", err)
	}
	if err := c.Release(ctx, l.ID); err != nil {
		t.Fatalf("Release: %v", err)
	}
	for name, err := range map[string]error{
		"get":     func() error { _, err := c.Get(ctx, l.ID); return err }(),
		"renew":   func() error { _, err := c.Renew(ctx, l.ID); return err }(),
		"release": c.Release(ctx, l.ID),
	} {
		if !errors.Is(err, ErrNotFound) {
			t.Errorf("%s after release = %v, want ErrNotFound", name, err)
		}
	}
	if _, err := c.Allocate(ctx, AllocateOptions{Count: 0}); !errors.Is(err, ErrInvalid) {
		t.Errorf("Allocate of 0 = %v, want ErrInvalid", err)
	}
}

// TestKeepAlive keeps a 3 s lease alive for 12 s of virtual time.
func TestKeepAlive(t *testing.T) {
	a, c, clk, _ := served(t)
	twoHosts(t, a, 1)
	l, err := c.Allocate(ctxT(t), AllocateOptions{Count: 2, TTL: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(ctxT(t))
	done := make(chan error, 1) // KeepAlive's result
	go func() { done <- c.KeepAlive(ctx, l.ID) }()

	// Two timers: the sweep loop's and KeepAlive's, each re-armed after
	// its work.
	for range 12 {
		if err := clk.BlockUntilWaiters(ctxT(t), 2); err != nil {
			t.Fatal(err)
		}
		elapse(t, a, clk, time.Second, "s1/i1", "s2/i2")
	}
	if err := clk.BlockUntilWaiters(ctxT(t), 2); err != nil {
		t.Fatal(err)
	}
	got, err := c.Get(ctxT(t), l.ID)
	if err != nil || got.State != LeaseActive {
		t.Fatalf("lease after 12 s = %+v, %v", got, err)
	}
	if left := got.Expires.Sub(clk.Now()); left < 2*time.Second {
		t.Errorf("lease expires in %v, want about 3 s", left)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("KeepAlive = %v, want context.Canceled", err)
	}
	elapse(t, a, clk, 3*time.Second, "s1/i1", "s2/i2")
	if _, err := c.Get(ctxT(t), l.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get after the keep-alive stopped = %v, want ErrNotFound", err)
	}
	// A lease that is gone ends KeepAlive with ErrNotFound.
	if err := c.KeepAlive(ctxT(t), l.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("KeepAlive of an expired lease = %v, want ErrNotFound", err)
	}
}

func TestDialUnreachable(t *testing.T) {
	ports, err := freeLoopbackPorts(1)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		addr string
		want error
	}{
		{"refused", "127.0.0.1:" + ports[0], ErrUnavailable},
		{"empty", "", ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			c, err := Dial(ctxT(t), tt.addr, WithDialTimeout(2*time.Second))
			if err == nil {
				c.Close()
			}
			if !errors.Is(err, tt.want) {
				t.Errorf("Dial(%q) = %v, want %v", tt.addr, err, tt.want)
			}
			if tt.addr != "" && !strings.Contains(err.Error(), tt.addr+" unreachable") {
				t.Errorf("error %q does not name the address", err)
			}
			if d := time.Since(start); d > 3*time.Second {
				t.Errorf("Dial took %v", d)
			}
		})
	}
}

func TestShutdown(t *testing.T) {
	a := newTestAggregator(t, NewMemoryStore(), clock.NewFake(time.Time{}))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1) // Serve's result
	go func() { served <- a.Serve(l) }()
	c, err := Dial(ctxT(t), l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := a.Shutdown(ctxT(t)); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if err := <-served; !errors.Is(err, ErrServerClosed) {
		t.Errorf("Serve = %v, want ErrServerClosed", err)
	}
	l2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Serve(l2); !errors.Is(err, ErrServerClosed) {
		t.Errorf("Serve after Shutdown = %v, want ErrServerClosed", err)
	}
	if _, err := c.List(ctxT(t)); !errors.Is(err, ErrUnavailable) {
		t.Errorf("List after Shutdown = %v, want ErrUnavailable", err)
	}
}
