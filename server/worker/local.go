package worker

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/xgpu/xgpu/internal/calls"
	"github.com/xgpu/xgpu/internal/cudaerr"
	"github.com/xgpu/xgpu/internal/wire"
	"github.com/xgpu/xgpu/peers"
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

// envLocalLane, set to "0", keeps the links between workers of one host
// on QUIC (runtime.EnvLocalLane does the same for clients).
const envLocalLane = "XGPU_LOCAL_LANE"

// peerHandshake introduces this worker on a fresh connection to another
// (Hello with "peer|" and its token) and, when the other worker runs on
// this host, moves the link's bulk data (peer copies, collective
// messages) to a local lane. It runs before anything else uses the
// connection.
func peerHandshake(w *Worker, pc *peers.Conn, token string) error {
	if _, err := peerCall(pc, calls.OpHello, &calls.Call{Text: peerHelloPrefix + token}); err != nil {
		return fmt.Errorf("hello: %w", err)
	}
	if os.Getenv(envLocalLane) == "0" {
		return nil
	}
	rep, err := peerCall(pc, calls.OpLocalLane, &calls.Call{})
	if err != nil {
		// A worker that offers none: the link stays on QUIC.
		w.log.Debug("worker: no local lane to a peer", "err", err)
		return nil
	}
	token2, name, err := calls.DecodeLocalLane(rep.Data)
	if err == nil {
		err = pc.JoinLocal(w.ctx, name, token2)
	}
	if err != nil {
		// Another host: QUIC it is.
		w.log.Debug("worker: local lane to a peer not joined", "err", err)
	}
	return nil
}

// peerCall makes one synchronous call on a connection nobody reads yet
// and returns its reply; a status other than success is an error.
func peerCall(pc *peers.Conn, op wire.Op, call *calls.Call) (calls.Reply, error) {
	var e wire.Enc
	var rep calls.Reply
	if err := call.Encode(op, &e); err != nil {
		return rep, err
	}
	h := wire.Header{Op: op}
	err := pc.CallWriter().WriteFrame(&h, e.B)
	if err == nil {
		err = pc.CallWriter().Flush()
	}
	if err != nil {
		return rep, err
	}
	rh, body, err := pc.CallReader().Next()
	if err != nil {
		return rep, err
	}
	if rh.Op != op || rh.Flags&wire.FlagReply == 0 {
		return rep, errors.New("unexpected answer")
	}
	if err := rep.Decode(body); err != nil {
		return rep, err
	}
	// The reply's data aliases the reader's buffer: keep a copy.
	rep.Data = append([]byte(nil), rep.Data...)
	if rep.Status != 0 {
		return rep, fmt.Errorf("refused: %w", cudaerr.Error(rep.Status))
	}
	return rep, nil
}
