package server

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/xgpu/xgpu/internal/pb"
	"github.com/xgpu/xgpu/internal/telemetry/metrics"
)

// registerLoop keeps the server registered with the aggregator until ctx
// ends: it registers (retrying with backoff), then heartbeats, and registers
// again whenever the aggregator no longer knows the server.
func (s *Server) registerLoop(ctx context.Context, inv *pb.Inventory) {
	log := s.log.With("aggregator", s.cfg.Aggregator, "server_id", inv.ServerId)
	bo := backoff{min: s.backoffMin, max: s.backoffMax}
	for {
		interval, ok := s.register(ctx, log, inv, &bo)
		if !ok {
			return
		}
		if !s.heartbeat(ctx, log, inv.ServerId, interval) {
			return
		}
	}
}

// register calls Register until it succeeds, waiting a growing backoff
// between attempts, and returns the heartbeat interval to use. It returns
// false when ctx ends first.
func (s *Server) register(ctx context.Context, log *slog.Logger, inv *pb.Inventory, bo *backoff) (time.Duration, bool) {
	req := &pb.RegisterRequest{Inventory: inv, Instance: s.instance}
	for attempt := 1; ; attempt++ {
		cctx, cancel := context.WithTimeout(ctx, registerTimeout)
		resp, err := s.agg.Register(cctx, req)
		cancel()
		if ctx.Err() != nil {
			return 0, false
		}
		if err == nil {
			bo.reset()
			s.registered.Store(true)
			interval := s.heartbeatInterval(log, resp)
			log.Info("server: registered with aggregator", "heartbeat_interval", interval, "attempts", attempt)
			return interval, true
		}
		wait := bo.next()
		if status.Code(err) == codes.AlreadyExists {
			log.Info("server: aggregator still holds a previous instance of this server; retrying until it times out",
				"retry_in", wait, "attempt", attempt, "err", err)
		} else {
			log.Warn("server: register with aggregator failed; retrying",
				"retry_in", wait, "attempt", attempt, "err", err)
		}
		if !sleep(ctx, wait) {
			return 0, false
		}
	}
}

// heartbeatInterval picks the heartbeat interval: Config's, else the
// aggregator's, else DefaultHeartbeatInterval.
func (s *Server) heartbeatInterval(log *slog.Logger, resp *pb.RegisterResponse) time.Duration {
	timeout := time.Duration(resp.GetHeartbeatTimeoutMs()) * time.Millisecond
	interval := s.cfg.HeartbeatInterval
	switch {
	case interval > 0:
		if timeout > 0 && interval >= timeout {
			log.Warn("server: configured heartbeat interval is not shorter than the aggregator's timeout; the aggregator will drop this server",
				"heartbeat_interval", interval, "heartbeat_timeout", timeout)
		}
	case resp.GetHeartbeatIntervalMs() > 0:
		interval = time.Duration(resp.GetHeartbeatIntervalMs()) * time.Millisecond
	default:
		interval = DefaultHeartbeatInterval
	}
	return interval
}

// heartbeat sends a heartbeat every interval until ctx ends (it returns
// false) or the aggregator answers NotFound (it returns true: register
// again). Other failures are logged once and the heartbeats go on, since the
// aggregator may be restarting.
func (s *Server) heartbeat(ctx context.Context, log *slog.Logger, id string, interval time.Duration) bool {
	req := &pb.HeartbeatRequest{ServerId: id, Instance: s.instance}
	// A hung call must not hold back the next beat for long, nor may a short
	// interval make every call time out.
	callTimeout := min(max(interval, time.Second), 10*time.Second)
	t := time.NewTicker(interval)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		_, err := s.agg.Heartbeat(cctx, req)
		cancel()
		if ctx.Err() == nil {
			metrics.Default().Heartbeat(err == nil)
		}
		switch {
		case ctx.Err() != nil:
			return false
		case err == nil:
			if failing {
				log.Info("server: heartbeats reach the aggregator again")
				failing = false
			}
		case status.Code(err) == codes.NotFound:
			log.Warn("server: aggregator does not know this server; registering again", "err", err)
			return true
		case !failing:
			log.Warn("server: heartbeat failed; retrying", "err", err)
			failing = true
		default:
			log.Debug("server: heartbeat failed", "err", err)
		}
	}
}

// sleep waits d or until ctx ends; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// backoff is a capped exponential backoff with ±20% jitter, so that the
// servers of a pool do not all retry at the same instant after an
// aggregator restart. The zero value of cur starts at min.
type backoff struct {
	min, max time.Duration
	cur      time.Duration // the last delay before jitter; 0 before the first
}

// next returns the delay before the next attempt: min, then twice the last
// one, capped at max, each within ±20%.
func (b *backoff) next() time.Duration {
	if b.cur == 0 {
		b.cur = b.min
	} else {
		b.cur = min(2*b.cur, b.max)
	}
	spread := b.cur * 2 / 5
	return b.cur - spread/2 + rand.N(spread+1)
}

// reset makes the next delay min again.
func (b *backoff) reset() { b.cur = 0 }
