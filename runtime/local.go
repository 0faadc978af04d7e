package runtime

import (
	"context"
	"os"

	"github.com/xgpu/xgpu/internal/calls"
)

// EnvLocalLane, set to "0", turns the local lane off for every client of
// the process (Config.NoLocalLane), e.g. for an application run through
// the CUDA shim.
const EnvLocalLane = "XGPU_LOCAL_LANE"

// joinLocal asks the session's worker for a local lane and joins it when
// the worker runs on this host: the session's bulk data (copies above the
// inline size, both ways) then moves through shared memory instead of
// QUIC. Any failure leaves the session on QUIC; it is logged, not
// returned. Called once, right after the Hello, before any call that moves
// bulk data.
func (s *session) joinLocal(ctx context.Context) {
	var buf [calls.MaxLocalLaneReply]byte
	n, _, err := s.callUpTo(calls.OpLocalLane, &calls.Call{}, buf[:])
	if err != nil {
		s.c.log.Debug("runtime: the worker offers no local lane", "worker", s.addr, "err", err)
		return
	}
	token, name, err := calls.DecodeLocalLane(buf[:n])
	if err != nil {
		s.c.log.Debug("runtime: local lane offer", "worker", s.addr, "err", err)
		return
	}
	if err := s.conn.JoinLocal(ctx, name, token); err != nil {
		// Another host (or network namespace): QUIC it is.
		s.c.log.Debug("runtime: local lane not joined", "worker", s.addr, "err", err)
		return
	}
	s.c.log.Debug("runtime: bulk data through a local lane", "worker", s.addr)
}

// localLaneWanted reports whether the client tries local lanes.
func (c *Client) localLaneWanted() bool {
	return !c.cfg.NoLocalLane && c.cfg.dataAddr == nil && os.Getenv(EnvLocalLane) != "0"
}
