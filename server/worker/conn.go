package worker

import (
	"context"
	"crypto/subtle"
	"errors"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/xgpu/xgpu/internal/calls"
	"github.com/xgpu/xgpu/internal/cudaerr"
	"github.com/xgpu/xgpu/internal/telemetry"
	"github.com/xgpu/xgpu/internal/wire"
	"github.com/xgpu/xgpu/peers"
)

// peerHelloPrefix starts the OpHello text of a worker that connects to
// another worker of the same session owner (a peer link for cross-server
// copies): "peer|" and the session token. A plain token is the client.
const peerHelloPrefix = "peer|"

// Connection roles, fixed by the first call.
const (
	roleNone   = iota
	roleClient // the session's client: every call
	rolePeer   // another worker: PeerWrite, Ping
)

// transport is what a conn needs of its data-plane connection; a
// *peers.Conn in production, a fake in the fuzz test.
type transport interface {
	RecvBulk(ctx context.Context, id uint64, dst []byte) error
	SendBulk(ctx context.Context, id uint64, p []byte) error
	Context() context.Context
	Close() error
}

var _ transport = (*peers.Conn)(nil)

// conn is one authenticated data-plane connection.
type conn struct {
	w    *Worker
	pc   transport
	cr   *wire.Reader
	role int
	call calls.Call // decode target, owned by the reader goroutine

	wmu   sync.Mutex // guards the fields below
	cw    *wire.Writer
	enc   wire.Enc
	dirty bool // frames queued in cw and not flushed
}

func newConn(w *Worker, pc *peers.Conn) *conn {
	return &conn{w: w, pc: pc, cr: pc.CallReader(), cw: pc.CallWriter()}
}

// req is what a reply needs of the call it answers.
type req struct {
	op      wire.Op
	id      uint64
	noReply bool
	// span is the call's server span when its frame carried a trace
	// context and tracing is on; nil otherwise. The reply, or done for a
	// call without one, ends it.
	span trace.Span
}

// serve authenticates the connection, then reads and dispatches calls
// until the connection fails or the session ends.
func (c *conn) serve() {
	err := c.loop()
	_ = c.pc.Close()
	c.w.forget(c, err)
}

func (c *conn) loop() error {
	if err := c.handshake(); err != nil {
		return err
	}
	for {
		h, body, err := c.cr.Next()
		if err != nil {
			return err
		}
		if !c.dispatch(&h, body) {
			return errSessionClosed
		}
		if c.cr.Buffered() == 0 {
			c.flush()
		}
	}
}

// handshake reads the first call, which must be OpHello with the token
// (the client) or "peer|" and the token (a peer worker), within the
// transport's handshake timeout.
func (c *conn) handshake() error {
	timeout := c.w.cfg.Transport.HandshakeTimeout
	if timeout <= 0 {
		timeout = peers.DefaultHandshakeTimeout
	}
	t := time.AfterFunc(timeout, func() { _ = c.pc.Close() })
	h, body, err := c.cr.Next()
	if !t.Stop() {
		return errors.New("worker: no hello within the handshake timeout")
	}
	if err != nil {
		return err
	}
	r := req{op: h.Op, id: h.ReqID}
	if h.Op != calls.OpHello || h.Flags&(wire.FlagReply|wire.FlagError) != 0 {
		return c.refuse(r, "first call is not Hello")
	}
	if err := c.call.Decode(calls.OpHello, body); err != nil {
		return c.refuse(r, "malformed Hello")
	}
	text, role := c.call.Text, roleClient
	if strings.HasPrefix(text, peerHelloPrefix) {
		text, role = text[len(peerHelloPrefix):], rolePeer
	}
	if subtle.ConstantTimeCompare([]byte(text), []byte(c.w.cfg.Token)) != 1 {
		return c.refuse(r, "wrong session token")
	}
	if role == roleClient && !c.w.claimClient(c) {
		return c.refuse(r, "the session already has a client")
	}
	c.role = role
	c.reply(r, 0, 0, 0, nil, true)
	return nil
}

// refuse answers r with cudaErrorNotPermitted, gives the reply a moment
// to reach the peer, and fails the handshake.
func (c *conn) refuse(r req, why string) error {
	c.w.log.Warn("worker: connection refused", "reason", why)
	c.reply(r, int32(cudaerr.NotPermitted), 0, 0, nil, true)
	c.linger(c.w.ctx.Done())
	return errors.New("worker: refused: " + why)
}

// linger waits up to refuseLinger for the peer to close the connection,
// so that a last reply reaches it before the connection is torn down
// (closing a QUIC connection discards data not yet sent), or until stop
// is closed.
func (c *conn) linger(stop <-chan struct{}) {
	t := time.NewTimer(refuseLinger)
	defer t.Stop()
	select {
	case <-c.pc.Context().Done():
	case <-stop:
	case <-t.C:
	}
}

// reply queues a reply to r; flush sends it (and everything queued) now.
// Write errors are ignored: they mean the connection is dead, which its
// reader reports. It ends r's span, before the reply leaves, so that a
// caller that goes on when it has the reply finds the span ended, and
// counts a failure.
func (c *conn) reply(r req, status int32, v1, v2 uint64, data []byte, flush bool) {
	if r.span != nil {
		telemetry.EndStatus(r.span, cudaerr.Error(status))
	}
	if status != 0 && status != int32(cudaerr.NotReady) { // NotReady answers a query; it is no failure
		c.w.m.CallError(r.op)
	}
	c.writeReply(r, status, v1, v2, data, flush)
}

func (c *conn) writeReply(r req, status int32, v1, v2 uint64, data []byte, flush bool) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.enc.Reset()
	rep := calls.Reply{Status: status, V1: v1, V2: v2, Data: data}
	if rep.Encode(&c.enc) != nil {
		return
	}
	h := wire.Header{Op: r.op, Flags: wire.FlagReply, ReqID: r.id}
	if c.cw.WriteFrame(&h, c.enc.B) != nil {
		return
	}
	if flush {
		_ = c.cw.Flush()
		c.dirty = false
	} else {
		c.dirty = true
	}
}

// flush sends queued replies.
func (c *conn) flush() {
	c.wmu.Lock()
	if c.dirty {
		_ = c.cw.Flush()
		c.dirty = false
	}
	c.wmu.Unlock()
}

// done finishes a call: a reply, or for an asynchronous call (no reply)
// the session keeps a failure for the next synchronizing call.
func (c *conn) done(r req, err error, v1, v2 uint64) {
	if r.noReply {
		if err != nil {
			c.w.deferErr(err)
			c.w.m.CallError(r.op)
		}
		if r.span != nil {
			telemetry.EndStatus(r.span, cudaerr.Error(statusOf(err)))
		}
		return
	}
	c.reply(r, statusOf(err), v1, v2, nil, false)
}

// dispatch executes one call. It returns false when the session ended
// (CloseSession). It never panics on any frame.
func (c *conn) dispatch(h *wire.Header, body []byte) bool {
	c.w.stats.calls.Add(1)
	if h.Flags&(wire.FlagReply|wire.FlagError) != 0 {
		// Nothing here awaits replies from this peer.
		return true
	}
	c.w.m.Call(h.Op)
	r := req{op: h.Op, id: h.ReqID, noReply: h.Flags&wire.FlagNoReply != 0}
	call := &c.call
	if err := call.Decode(h.Op, body); err != nil {
		code := cudaerr.InvalidValue
		if errors.Is(err, calls.ErrUnknownOp) {
			code = cudaerr.NotSupported
		}
		c.done(r, code, 0, 0)
		return true
	}
	if h.Flags&wire.FlagTrace != 0 {
		r.span = c.startSpan(h, call)
	}
	if c.role == rolePeer {
		switch r.op {
		case calls.OpHello, calls.OpPing:
			c.done(r, nil, 0, 0)
		case calls.OpLocalLane:
			c.localLane(r, call)
		case calls.OpPeerWrite:
			c.peerWrite(r, call)
		case calls.OpCommLink, calls.OpCollReady, calls.OpCollData, calls.OpCollNack, calls.OpCommPeerDown:
			c.peerFrame(r, call)
		default:
			c.done(r, cudaerr.NotPermitted, 0, 0)
		}
		return true
	}
	if !r.noReply && r.op != calls.OpCloseSession && r.op != calls.OpHello && r.op != calls.OpDeviceGetAttributes && r.op != calls.OpLocalLane {
		// A failure of earlier asynchronous work is this call's result;
		// the call itself does not run.
		if code := c.w.takeDeferred(); code != 0 {
			c.reply(r, code, 0, 0, nil, false)
			return true
		}
	}
	switch r.op {
	case calls.OpHello, calls.OpPing:
		c.done(r, nil, 0, 0)
	case calls.OpCloseSession:
		c.reply(r, 0, 0, 0, nil, true)
		c.linger(nil)
		c.w.end(errSessionClosed)
		return false
	case calls.OpMalloc, calls.OpFree, calls.OpMemGetInfo:
		c.memory(r, call)
	case calls.OpMemset:
		c.memset(r, call)
	case calls.OpMemcpyHtoD:
		c.memcpyHtoD(r, call)
	case calls.OpMemcpyDtoH:
		c.memcpyDtoH(r, call)
	case calls.OpMemcpyDtoD, calls.OpMemcpyPeer:
		c.memcpyDevice(r, call)
	case calls.OpPeerConnect:
		c.peerConnect(r, call)
	case calls.OpPeerSend:
		c.peerSend(r, call)
	case calls.OpStreamCreate, calls.OpStreamDestroy, calls.OpStreamQuery, calls.OpStreamWaitEvent:
		c.stream(r, call)
	case calls.OpEventCreate, calls.OpEventRecord, calls.OpEventQuery, calls.OpEventElapsedTime, calls.OpEventDestroy:
		c.event(r, call)
	case calls.OpStreamSynchronize, calls.OpEventSynchronize, calls.OpDeviceSynchronize:
		c.synchronize(r, call)
	case calls.OpLaunchKernel, calls.OpLaunchCooperativeKernel:
		c.launchKernel(r, call)
	case calls.OpModuleHave:
		c.moduleHave(r, call)
	case calls.OpModuleLoad:
		c.moduleLoad(r, call)
	case calls.OpModuleUnload:
		c.moduleUnload(r, call)
	case calls.OpModuleGetFunction:
		c.moduleGetFunction(r, call)
	case calls.OpFuncGetParams:
		c.funcGetParams(r, call)
	case calls.OpFuncGetAttribute, calls.OpFuncSetAttribute:
		c.funcAttribute(r, call)
	case calls.OpModuleGetGlobal:
		c.moduleGetGlobal(r, call)
	case calls.OpDeviceGetAttributes:
		c.deviceAttributes(r, call)
	case calls.OpCommInit:
		c.commInit(r, call)
	case calls.OpCollective:
		c.collective(r, call)
	case calls.OpCollGroup:
		c.collGroup(r, call)
	case calls.OpLocalLane:
		c.localLane(r, call)
	case calls.OpCommDestroy:
		c.commDestroy(r, call)
	default:
		// PeerWrite comes from peer workers only.
		c.done(r, cudaerr.NotPermitted, 0, 0)
	}
	return true
}
