package worker

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"

	"go.opentelemetry.io/otel/trace"

	"github.com/xgpu/xgpu/internal/calls"
	"github.com/xgpu/xgpu/internal/cudaerr"
	"github.com/xgpu/xgpu/internal/telemetry/metrics"
	"github.com/xgpu/xgpu/internal/wire"
	"github.com/xgpu/xgpu/peers"
	"github.com/xgpu/xgpu/server/backend"
)

// Cross-server peer copies. The client tells this worker (A) how to reach
// the worker (B) of a remote device with OpPeerConnect; A then dials B
// once, says Hello with "peer|" and B's token, and sends each OpPeerSend's
// bytes to B as OpPeerWrite calls (inline, or with a bulk transfer) that B
// writes into its device and acknowledges. The stream of the PeerSend
// waits for the acknowledgement, so a synchronize on it returns after the
// data is in B's device. No payload byte passes through the client.

// link is this worker's connection to a peer worker.
type link struct {
	w     *Worker
	key   string // "addr|token|pin"
	addr  string
	token string
	pin   string

	ready chan struct{} // closed once the dial finished
	err   error         // the dial's failure; valid after ready
	pc    *peers.Conn   // valid after ready when err is nil

	wmu     sync.Mutex // guards the fields below
	enc     wire.Enc
	nextReq uint64

	pmu     sync.Mutex // guards waiting and dead
	waiting map[uint64]chan int32
	dead    bool
}

// linkTable holds the session's peer links by remote logical device.
type linkTable struct {
	w      *Worker
	mu     sync.Mutex // guards the fields below
	byDev  map[uint32]*link
	byKey  map[string]*link
	closed bool
}

func (t *linkTable) init(w *Worker) {
	t.w = w
	t.byDev = make(map[uint32]*link)
	t.byKey = make(map[string]*link)
}

// get returns the link to the worker of remote device dev, or nil.
func (t *linkTable) get(dev uint32) *link {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.byDev[dev]
}

// connect records that remote device dev is reached through the worker at
// addr, dialing it unless a link to it exists.
func (t *linkTable) connect(dev uint32, addr, token, pin string) (*link, error) {
	key := addr + "|" + token + "|" + pin
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil, cudaerr.ContextIsDestroyed
	}
	l := t.byKey[key]
	if l == nil || l.broken() {
		l = &link{w: t.w, key: key, addr: addr, token: token, pin: pin, ready: make(chan struct{}), waiting: make(map[uint64]chan int32)}
		t.byKey[key] = l
		t.w.spawn(l.dial)
	}
	t.byDev[dev] = l
	return l, nil
}

// closeAll closes every link; later connects fail.
func (t *linkTable) closeAll() {
	t.mu.Lock()
	t.closed = true
	links := make([]*link, 0, len(t.byKey))
	for _, l := range t.byKey {
		links = append(links, l)
	}
	t.mu.Unlock()
	for _, l := range links {
		l.close()
	}
}

// broken reports whether the link's dial failed or its connection died.
func (l *link) broken() bool {
	select {
	case <-l.ready:
	default:
		return false
	}
	if l.err != nil {
		return true
	}
	l.pmu.Lock()
	defer l.pmu.Unlock()
	return l.dead
}

func (l *link) dial() {
	l.err = l.connect()
	if l.err != nil {
		l.w.log.Warn("worker: peer link failed", "peer", l.addr, "err", l.err)
	}
	close(l.ready)
	if l.err == nil {
		l.read()
	}
}

func (l *link) connect() error {
	tlsConf, err := PinnedClientTLS(l.pin, l.w.clientTLS)
	if err != nil {
		return err
	}
	pc, err := peers.Dial(l.w.ctx, l.addr, tlsConf, &l.w.cfg.Transport)
	if err != nil {
		return fmt.Errorf("worker: peer link to %s: %w", l.addr, err)
	}
	// Hello, then its reply, before anything else uses the connection.
	if err := peerHandshake(l.w, pc, l.token); err != nil {
		pc.Close()
		return fmt.Errorf("worker: peer link to %s: %w", l.addr, err)
	}
	l.w.links.mu.Lock()
	closed := l.w.links.closed
	if !closed {
		l.pc = pc
	}
	l.w.links.mu.Unlock()
	if closed {
		pc.Close()
		return cudaerr.ContextIsDestroyed
	}
	return nil
}

// read delivers the peer's replies to the writes waiting for them.
func (l *link) read() {
	r := l.pc.CallReader()
	var rep calls.Reply
	for {
		h, body, err := r.Next()
		if err != nil {
			break
		}
		if h.Flags&wire.FlagReply == 0 {
			continue
		}
		status := int32(cudaerr.Unknown)
		if rep.Decode(body) == nil {
			status = rep.Status
		}
		l.pmu.Lock()
		ch := l.waiting[h.ReqID]
		delete(l.waiting, h.ReqID)
		l.pmu.Unlock()
		if ch != nil {
			ch <- status
		}
	}
	l.pmu.Lock()
	l.dead = true
	for id, ch := range l.waiting {
		ch <- int32(cudaerr.Unknown)
		delete(l.waiting, id)
	}
	l.pmu.Unlock()
}

func (l *link) close() {
	l.w.links.mu.Lock()
	pc := l.pc
	l.w.links.mu.Unlock()
	if pc != nil {
		_ = pc.Close()
	}
}

// write copies data to dst on the peer's logical device dev and returns
// once the peer has it in device memory. parent is the span of the copy
// (nil: untraced); the write is its child span PeerWrite, whose trace
// context the peer's span continues.
func (l *link) write(ctx context.Context, parent trace.Span, dev uint32, dst uint64, data []byte) (err error) {
	select {
	case <-l.ready:
	case <-ctx.Done():
		return context.Cause(ctx)
	}
	if l.err != nil {
		return fmt.Errorf("%w: %w", cudaerr.DevicesUnavailable, l.err)
	}
	done := make(chan int32, 1) // buffered: read never waits on it
	l.pmu.Lock()
	if l.dead {
		l.pmu.Unlock()
		return fmt.Errorf("worker: peer link to %s is down: %w", l.addr, cudaerr.DevicesUnavailable)
	}
	l.wmu.Lock()
	l.nextReq++
	id := l.nextReq
	l.waiting[id] = done
	l.pmu.Unlock()
	call := calls.Call{Dev: dev, Dst: dst, N: uint64(len(data))}
	bulk := len(data) > calls.InlineMax
	if bulk {
		call.Aux = l.w.nextBulk.Add(1)
	} else {
		call.Data = data
	}
	h := wire.Header{Op: calls.OpPeerWrite, ReqID: id}
	if span := l.startPeerWrite(parent, &h, dev, len(data)); span != nil {
		defer func() { endSpan(span, err) }()
	}
	l.enc.Reset()
	err = call.Encode(calls.OpPeerWrite, &l.enc)
	if err == nil {
		err = l.pc.CallWriter().WriteFrame(&h, l.enc.B)
	}
	if err == nil {
		err = l.pc.CallWriter().Flush()
	}
	l.wmu.Unlock()
	if err == nil && bulk {
		err = l.pc.SendBulk(ctx, call.Aux, data)
	}
	if err == nil {
		select {
		case status := <-done:
			if status != 0 {
				return cudaerr.Error(status)
			}
			return nil
		case <-ctx.Done():
			err = context.Cause(ctx)
		}
	}
	l.pmu.Lock()
	delete(l.waiting, id)
	l.pmu.Unlock()
	return fmt.Errorf("worker: peer write to %s: %w: %w", l.addr, cudaerr.Unknown, err)
}

// peerConnect handles OpPeerConnect: Text is "addr|token|hex-pin" of the
// worker that holds remote device Dev2. A call that waits for a reply is
// answered once the link is up (or failed to come up).
func (c *conn) peerConnect(r req, call *calls.Call) {
	addr, token, pin, err := parsePeerText(call.Text)
	switch {
	case err != nil:
		c.w.log.Debug("worker: bad PeerConnect", "err", err)
		c.done(r, cudaerr.InvalidValue, 0, 0)
		return
	case c.devOf(call.Dev2) != nil:
		// A device of this worker: MemcpyPeer reaches it directly.
		c.done(r, cudaerr.InvalidValue, 0, 0)
		return
	}
	l, err := c.w.links.connect(call.Dev2, addr, token, pin)
	if err != nil || r.noReply {
		c.done(r, err, 0, 0)
		return
	}
	c.w.spawn(func() {
		select {
		case <-l.ready:
		case <-c.w.ctx.Done():
			return
		}
		var status int32
		if l.err != nil {
			status = int32(cudaerr.DevicesUnavailable)
		}
		c.reply(r, status, 0, 0, nil, true)
	})
}

// parsePeerText splits and checks "addr|token|hex-pin".
func parsePeerText(s string) (addr, token, pin string, err error) {
	parts := strings.Split(s, "|")
	if len(parts) != 3 {
		return "", "", "", errors.New("worker: peer text is not addr|token|pin")
	}
	addr, token, pin = parts[0], parts[1], parts[2]
	if host, port, err := net.SplitHostPort(addr); err != nil || host == "" || port == "" {
		return "", "", "", fmt.Errorf("worker: peer address %q is not host:port", addr)
	}
	if len(token) < TokenMinLen {
		return "", "", "", errors.New("worker: peer token too short")
	}
	if b, err := hex.DecodeString(pin); err != nil || len(b) != 32 {
		return "", "", "", errors.New("worker: peer pin is not a hex SHA-256")
	}
	return addr, token, pin, nil
}

// peerSend handles OpPeerSend: copy N bytes from Src on local device Dev
// to Dst on remote device Dev2, in the order of Stream.
func (c *conn) peerSend(r req, call *calls.Call) {
	d := c.devOf(call.Dev)
	n, s, src := call.N, backend.Stream(call.Stream), backend.DevicePtr(call.Src)
	var l *link
	if d != nil {
		l = c.w.links.get(call.Dev2)
	}
	switch {
	case d == nil:
		c.done(r, cudaerr.InvalidDevice, 0, 0)
		return
	case l == nil:
		c.done(r, cudaerr.PeerAccessNotEnabled, 0, 0)
		return
	case n == 0:
		c.done(r, d.dev.MemcpyDtoHAsync(nil, src, s), 0, 0)
		return
	case !owns(d, call.Src, n):
		c.done(r, cudaerr.InvalidValue, 0, 0)
		return
	}
	o, err := c.w.getOp(n)
	if err != nil {
		c.done(r, err, 0, 0)
		return
	}
	o.link, o.dstDev, o.dst = l, call.Dev2, call.Dst
	o.queue(d)
	if err := d.dev.MemcpyDtoHAsync(o.buf.b[:n], src, s); err != nil {
		o.release()
		c.done(r, err, 0, 0)
		return
	}
	// The call's span lasts until the peer has the bytes.
	o.span, r.span = r.span, nil
	if err := d.dev.LaunchHostFunc(s, o.peerFn); err != nil {
		endSpan(o.span, err)
		o.drop()
		c.done(r, err, 0, 0)
		return
	}
	c.done(r, nil, 0, 0)
}

// peerSend runs on the source stream once the bytes are staged: it holds
// the stream until the peer has them.
func (o *op) peerSend() {
	err := o.link.write(o.w.ctx, o.span, o.dstDev, o.dst, o.buf.b[:o.n])
	if err != nil {
		o.w.log.Debug("worker: peer copy failed", "peer", o.link.addr, "err", err)
		o.w.deferErr(err)
	} else {
		o.w.stats.peerOut.Add(o.n)
		o.w.m.Bytes(metrics.PeerSend, int64(o.n))
	}
	endSpan(o.span, err)
	o.release()
}

// peerWrite handles OpPeerWrite from a peer worker: write the payload to
// Dst on local device Dev, wait until it is there, then reply.
func (c *conn) peerWrite(r req, call *calls.Call) {
	n := call.N
	d, inline, ok := c.checkWrite(r, call)
	if !ok {
		return
	}
	if n == 0 {
		c.done(r, nil, 0, 0)
		return
	}
	o, err := c.w.getOp(n)
	if err != nil {
		c.failWrite(r, call, inline, err)
		return
	}
	o.queue(d)
	payload := o.buf.b[:n]
	if inline {
		copy(payload, call.Data)
	}
	id, dst := call.Aux, backend.DevicePtr(call.Dst)
	c.w.spawn(func() {
		if !inline {
			if err := c.pc.RecvBulk(c.w.ctx, id, payload); err != nil {
				o.drop()
				c.reply(r, int32(cudaerr.Unknown), 0, 0, nil, true)
				return
			}
		}
		s, err := d.peerStreamOf()
		if err == nil {
			err = d.dev.MemcpyHtoDAsync(dst, payload, s)
			if err == nil {
				if err = d.dev.StreamSynchronize(c.w.ctx, s); err != nil {
					o.drop() // the copy may still read the buffer
					c.reply(r, statusOf(err), 0, 0, nil, true)
					return
				}
				c.w.stats.peerIn.Add(n)
				c.w.m.Bytes(metrics.PeerReceive, int64(n))
			}
		}
		o.release()
		c.reply(r, statusOf(err), 0, 0, nil, true)
	})
}

// peerStreamOf returns the device's stream for writes from peer workers,
// creating it on first use. It does not take part in the legacy stream's
// synchronization: the client orders peer copies with events and
// synchronizes on the source stream.
func (d *device) peerStreamOf() (backend.Stream, error) {
	d.psMu.Lock()
	defer d.psMu.Unlock()
	if d.havePS {
		return d.peerStream, nil
	}
	s, err := d.dev.StreamCreate(backend.StreamNonBlocking, backend.StreamPriorityLeast)
	if err != nil {
		return 0, err
	}
	d.peerStream, d.havePS = s, true
	return s, nil
}
