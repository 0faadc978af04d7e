package worker

import (
	"context"

	"github.com/xgpu/xgpu/internal/calls"
	"github.com/xgpu/xgpu/internal/cudaerr"
)

// localLane answers OpLocalLane: the connection offers a local lane
// (peers.Conn.OfferLocal) and the reply tells the client how to join it.
// Once joined, the connection's bulk transfers (copies above the inline
// size, both ways) go through shared memory; the calls stay on QUIC. A
// client on another host cannot reach the lane's socket and keeps QUIC;
// the offer then expires unused. Like the Hello, the call neither reports
// nor clears a failure of earlier asynchronous work.
func (c *conn) localLane(r req, call *calls.Call) {
	lo, ok := c.pc.(localOfferer)
	if !ok {
		c.answer(r, cudaerr.NotSupported, 0, 0, nil, false)
		return
	}
	name, token, err := lo.OfferLocal(c.w.ctx)
	if err != nil {
		c.w.log.Debug("worker: no local lane", "err", err)
		c.answer(r, cudaerr.NotSupported, 0, 0, nil, false)
		return
	}
	if r.noReply {
		return
	}
	var buf [calls.MaxLocalLaneReply]byte
	c.reply(r, 0, 0, 0, calls.AppendLocalLane(buf[:0], token, name), true)
}

// localOfferer is a transport that can offer a local lane (peers.Conn).
type localOfferer interface {
	OfferLocal(ctx context.Context) (name string, token []byte, err error)
}
