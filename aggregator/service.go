package aggregator

import (
	"context"
	"math"
	"time"

	"github.com/xgpu/xgpu/internal/pb"
	"github.com/xgpu/xgpu/internal/telemetry/metrics"
)

// service implements pb.AggregatorServer over an Aggregator.
type service struct {
	pb.UnimplementedAggregatorServer
	a *Aggregator
}

func (s *service) Register(ctx context.Context, req *pb.RegisterRequest) (*pb.RegisterResponse, error) {
	if err := s.a.register(ctx, req.GetInventory(), req.GetInstance()); err != nil {
		return nil, toStatus(err)
	}
	return &pb.RegisterResponse{
		HeartbeatIntervalMs: s.a.cfg.HeartbeatInterval.Milliseconds(),
		HeartbeatTimeoutMs:  s.a.cfg.HeartbeatTimeout.Milliseconds(),
	}, nil
}

func (s *service) Heartbeat(ctx context.Context, req *pb.HeartbeatRequest) (*pb.HeartbeatResponse, error) {
	err := s.a.heartbeat(ctx, req.GetServerId(), req.GetInstance())
	metrics.Default().Heartbeat(err == nil)
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.HeartbeatResponse{}, nil
}

func (s *service) Deregister(ctx context.Context, req *pb.DeregisterRequest) (*pb.DeregisterResponse, error) {
	if err := s.a.deregister(ctx, req.GetServerId(), req.GetInstance()); err != nil {
		return nil, toStatus(err)
	}
	return &pb.DeregisterResponse{}, nil
}

func (s *service) Allocate(ctx context.Context, req *pb.AllocateRequest) (*pb.Lease, error) {
	ttl := req.GetTtlMs()
	if ttl < 0 || ttl > math.MaxInt64/int64(time.Millisecond) {
		return nil, toStatus(errorf(ErrInvalid, "allocate: ttl_ms %d is out of range", ttl))
	}
	rec, err := s.a.allocate(ctx, allocRequest{
		count:     int(req.GetCount()),
		memory:    req.GetMemoryBytes(),
		placement: Placement(req.GetPlacement()),
		ttl:       time.Duration(ttl) * time.Millisecond,
		owner:     req.GetOwner(),
	})
	if err != nil {
		return nil, toStatus(err)
	}
	return leaseToPB(rec), nil
}

func (s *service) Renew(ctx context.Context, req *pb.RenewRequest) (*pb.Lease, error) {
	rec, err := s.a.renew(ctx, req.GetLeaseId())
	if err != nil {
		return nil, toStatus(err)
	}
	return leaseToPB(rec), nil
}

func (s *service) Release(ctx context.Context, req *pb.ReleaseRequest) (*pb.ReleaseResponse, error) {
	if err := s.a.release(ctx, req.GetLeaseId()); err != nil {
		return nil, toStatus(err)
	}
	return &pb.ReleaseResponse{}, nil
}

func (s *service) GetLease(ctx context.Context, req *pb.GetLeaseRequest) (*pb.Lease, error) {
	rec, err := s.a.lease(ctx, req.GetLeaseId())
	if err != nil {
		return nil, toStatus(err)
	}
	return leaseToPB(rec), nil
}

func (s *service) ListLeases(ctx context.Context, _ *pb.ListLeasesRequest) (*pb.ListLeasesResponse, error) {
	recs, err := s.a.leases(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &pb.ListLeasesResponse{Leases: make([]*pb.Lease, len(recs))}
	for i, r := range recs {
		resp.Leases[i] = leaseToPB(r)
	}
	return resp, nil
}

func (s *service) Pool(ctx context.Context, _ *pb.PoolRequest) (*pb.PoolResponse, error) {
	resp, err := s.a.pool(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	return resp, nil
}
