package worker

import (
	"context"
	"math"
	"sync/atomic"

	"go.opentelemetry.io/otel/trace"

	"github.com/xgpu/xgpu/internal/calls"
	"github.com/xgpu/xgpu/internal/cudaerr"
	"github.com/xgpu/xgpu/internal/telemetry/metrics"
	"github.com/xgpu/xgpu/server/backend"
)

// op is a copy in flight: its staging buffer and what completes it. Ops
// are pooled, and their host functions are method values made once per
// op, so that enqueuing a copy allocates nothing once warm.
type op struct {
	w     *Worker
	c     *conn
	r     req
	dev   *device
	buf   *buffer
	n     uint64
	ready chan error // bulk host-to-device: the transfer's result; cap 1

	// Peer copies.
	link   *link
	dstDev uint32
	dst    uint64
	span   trace.Span // a PeerSend's server span, ended when the peer has the bytes; nil untraced

	// state is gen<<1 | claimed: the completion of a device-to-host copy
	// is claimed once, by its host function or by the watchdog; gen
	// changes on every reuse so that a stale claim fails.
	state atomic.Uint64

	awaitFn, releaseFn, d2hFn, sendFn, peerFn func()
}

func newOp(w *Worker) *op {
	o := &op{w: w, ready: make(chan error, 1)}
	o.awaitFn = o.await
	o.releaseFn = o.release
	o.d2hFn = o.d2h
	o.sendFn = o.sendBulk
	o.peerFn = o.peerSend
	return o
}

// getOp returns an op with a staging buffer of n bytes, waiting for the
// staging budget.
func (w *Worker) getOp(n uint64) (*op, error) {
	buf, err := w.staging.get(w.ctx, n)
	if err != nil {
		return nil, cudaerr.ContextIsDestroyed
	}
	o := w.ops.Get().(*op)
	o.buf, o.n = buf, n
	return o, nil
}

// queue counts the op in d's queue depth until it is released or
// dropped.
func (o *op) queue(d *device) {
	o.dev = d
	d.queue.Inc()
}

// unqueue ends what queue counted.
func (o *op) unqueue() {
	if o.dev != nil {
		o.dev.queue.Dec()
	}
}

// release returns the buffer and the op for reuse.
func (o *op) release() {
	w := o.w
	o.unqueue()
	w.staging.put(o.buf)
	o.reset()
	w.ops.Put(o)
}

// drop gives up the op and its buffer for good: something may still use
// them.
func (o *op) drop() {
	o.unqueue()
	o.w.staging.drop(o.buf)
}

func (o *op) reset() {
	o.c, o.r, o.dev, o.buf, o.n = nil, req{}, nil, nil, 0
	o.link, o.dstDev, o.dst, o.span = nil, 0, 0, nil
	o.state.Store((o.state.Load()>>1 + 1) << 1)
}

// claim takes the right to complete the op at generation gen.
func (o *op) claim(gen uint64) bool { return o.state.CompareAndSwap(gen<<1, gen<<1|1) }

func (o *op) gen() uint64 { return o.state.Load() >> 1 }

// await is the stream's wait for a bulk host-to-device payload.
func (o *op) await() {
	if err := <-o.ready; err != nil {
		o.w.log.Debug("worker: host-to-device payload lost", "err", err)
		o.w.deferErr(cudaerr.Unknown)
	}
}

// d2h completes a device-to-host copy once the stream reached it: the data
// goes inline in the reply, or by a bulk transfer whose id is the call's
// request id.
func (o *op) d2h() {
	if !o.claim(o.gen()) {
		return // the watchdog answered for it
	}
	o.w.unpend(o)
	if o.n <= calls.InlineMax {
		o.c.reply(o.r, 0, 0, 0, o.buf.b[:o.n], true)
		o.w.stats.d2h.Add(o.n)
		o.w.m.Bytes(metrics.DeviceToHost, int64(o.n))
		o.release()
		return
	}
	o.w.spawn(o.sendFn)
}

func (o *op) sendBulk() {
	var status int32
	if err := o.c.pc.SendBulk(o.w.ctx, o.r.id, o.buf.b[:o.n]); err != nil {
		o.w.log.Debug("worker: device-to-host payload not delivered", "err", err)
		status = int32(cudaerr.Unknown)
	} else {
		o.w.stats.d2h.Add(o.n)
		o.w.m.Bytes(metrics.DeviceToHost, int64(o.n))
	}
	o.c.reply(o.r, status, o.r.id, 0, nil, true)
	o.release()
}

// abandon answers a pending device-to-host copy of generation gen with
// status, when the device dropped its completion.
func (o *op) abandon(gen uint64, status int32) {
	if !o.claim(gen) {
		return
	}
	o.w.unpend(o)
	o.c.reply(o.r, status, 0, 0, nil, true)
	o.drop()
}

func (w *Worker) pend(o *op) {
	w.pmu.Lock()
	w.pending[o] = o.gen()
	w.pmu.Unlock()
}

func (w *Worker) unpend(o *op) {
	w.pmu.Lock()
	delete(w.pending, o)
	w.pmu.Unlock()
}

// devOf returns the device a call names, or nil.
func (c *conn) devOf(i uint32) *device { return c.w.dev(i) }

// owns reports whether [p, p+n) lies in one allocation of d; empty ranges
// are not checked, as CUDA does not check them.
func owns(d *device, p, n uint64) bool {
	return n == 0 || d.dev.Owns(backend.DevicePtr(p), n)
}

func (c *conn) memory(r req, call *calls.Call) {
	d := c.devOf(call.Dev)
	if d == nil {
		c.done(r, cudaerr.InvalidDevice, 0, 0)
		return
	}
	switch r.op {
	case calls.OpMalloc:
		p, err := d.dev.Malloc(call.N)
		if err == nil {
			d.updateMemory()
		}
		c.done(r, err, uint64(p), 0)
	case calls.OpFree:
		err := d.dev.Free(backend.DevicePtr(call.Dst))
		if err == nil {
			d.updateMemory()
		}
		c.done(r, err, 0, 0)
	case calls.OpMemGetInfo:
		free, total, err := d.dev.MemGetInfo()
		c.done(r, err, free, total)
	}
}

func (c *conn) memset(r req, call *calls.Call) {
	d := c.devOf(call.Dev)
	if d == nil {
		c.done(r, cudaerr.InvalidDevice, 0, 0)
		return
	}
	dst, s, n, width := backend.DevicePtr(call.Dst), backend.Stream(call.Stream), call.N, call.Aux2
	var err error
	switch {
	case width != 1 && width != 2 && width != 4:
		err = cudaerr.InvalidValue
	case n > math.MaxUint64/width || !owns(d, call.Dst, n*width):
		err = cudaerr.InvalidValue
	case width == 1:
		err = d.dev.MemsetD8Async(dst, uint8(call.Aux), n, s)
	case width == 2:
		err = d.dev.MemsetD16Async(dst, uint16(call.Aux), n, s)
	default:
		err = d.dev.MemsetD32Async(dst, uint32(call.Aux), n, s)
	}
	c.done(r, err, 0, 0)
}

// memcpyHtoD copies the call's inline data, or the bulk transfer Aux
// names, to the device in stream order. The payload lands in a staging
// buffer; the stream waits for a bulk payload through a host function, so
// the reader never blocks on the network.
func (c *conn) memcpyHtoD(r req, call *calls.Call) {
	n, s := call.N, backend.Stream(call.Stream)
	d, inline, ok := c.checkWrite(r, call)
	if !ok {
		return
	}
	if n == 0 {
		c.done(r, d.dev.MemcpyHtoDAsync(backend.DevicePtr(call.Dst), nil, s), 0, 0)
		return
	}
	o, err := c.w.getOp(n)
	if err != nil {
		c.failWrite(r, call, inline, err)
		return
	}
	o.queue(d)
	c.w.stats.h2d.Add(n)
	c.w.m.Bytes(metrics.HostToDevice, int64(n))
	payload := o.buf.b[:n]
	if inline {
		copy(payload, call.Data)
		if err := d.dev.MemcpyHtoDAsync(backend.DevicePtr(call.Dst), payload, s); err != nil {
			o.release()
			c.done(r, err, 0, 0)
			return
		}
		if err := d.dev.LaunchHostFunc(s, o.releaseFn); err != nil {
			o.drop()
		}
		c.done(r, nil, 0, 0)
		return
	}
	if err := d.dev.LaunchHostFunc(s, o.awaitFn); err != nil {
		o.release()
		c.failWrite(r, call, inline, err)
		return
	}
	id, pc, ready := call.Aux, c.pc, o.ready
	c.w.spawn(func() { ready <- pc.RecvBulk(c.w.ctx, id, payload) })
	err = d.dev.MemcpyHtoDAsync(backend.DevicePtr(call.Dst), payload, s)
	if d.dev.LaunchHostFunc(s, o.releaseFn) != nil {
		o.drop()
	}
	c.done(r, err, 0, 0)
}

// checkWrite validates a call that writes N bytes to Dst on device Dev,
// the payload inline in the call or coming by bulk transfer Aux: the device
// exists, an inline payload has N bytes, and [Dst, Dst+N) lies inside one
// live allocation. On failure it answers the call (failWrite) and returns
// ok false.
func (c *conn) checkWrite(r req, call *calls.Call) (d *device, inline, ok bool) {
	d = c.devOf(call.Dev)
	inline = len(call.Data) > 0 || call.N == 0
	switch {
	case d == nil:
		c.failWrite(r, call, inline, cudaerr.InvalidDevice)
	case inline && uint64(len(call.Data)) != call.N:
		c.failWrite(r, call, inline, cudaerr.InvalidValue)
	case !owns(d, call.Dst, call.N):
		c.failWrite(r, call, inline, cudaerr.InvalidValue)
	default:
		return d, inline, true
	}
	return nil, inline, false
}

// failWrite answers a write call with err, turning its bulk transfer away
// when the payload was not inline.
func (c *conn) failWrite(r req, call *calls.Call, inline bool, err error) {
	if !inline {
		c.refuseBulk(call.Aux)
	}
	c.done(r, err, 0, 0)
}

// refuseBulk turns away the bulk transfer id that the client is sending
// for a call that failed, so that its sender hears at once rather than
// after the transport's orphan timeout.
func (c *conn) refuseBulk(id uint64) {
	ctx, cancel := context.WithCancel(c.w.ctx)
	cancel()
	_ = c.pc.RecvBulk(ctx, id, nil)
}

// memcpyDtoH copies to a staging buffer in stream order; a host function
// then sends the reply with the data (see op.d2h). The call always gets a
// reply: its data has nowhere else to go.
func (c *conn) memcpyDtoH(r req, call *calls.Call) {
	if r.noReply {
		c.done(r, cudaerr.InvalidValue, 0, 0) // kept for the next synchronizing call
		return
	}
	d := c.devOf(call.Dev)
	n, s, src := call.N, backend.Stream(call.Stream), backend.DevicePtr(call.Src)
	switch {
	case d == nil:
		c.done(r, cudaerr.InvalidDevice, 0, 0)
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
	o.c, o.r = c, r
	o.queue(d)
	if err := d.dev.MemcpyDtoHAsync(o.buf.b[:n], src, s); err != nil {
		o.release()
		c.done(r, err, 0, 0)
		return
	}
	gen := o.gen()
	c.w.pend(o)
	if n <= calls.InlineMax && c.w.eventD2H {
		// A small copy is answered by a waiter that waits for an event
		// recorded after it: the driver wakes a waiting thread sooner
		// than it runs a host function, and the reply of a synchronous
		// copy is all its caller waits for.
		if ev, ok := d.takeEvent(); ok {
			if d.dev.EventRecord(ev, s) == nil {
				c.w.queueWait(waitJob{c: c, r: r, d: d, event: ev, o: o, gen: gen})
				return
			}
			d.putEvent(ev)
		}
	}
	if err := d.dev.LaunchHostFunc(s, o.d2hFn); err != nil && o.claim(gen) {
		c.w.unpend(o)
		o.drop()
		c.done(r, err, 0, 0)
	}
}

// memcpyDevice runs MemcpyDtoD (one device) and MemcpyPeer (two devices
// of this worker).
func (c *conn) memcpyDevice(r req, call *calls.Call) {
	d := c.devOf(call.Dev)
	to := d
	if r.op == calls.OpMemcpyPeer {
		to = c.devOf(call.Dev2)
	}
	dst, src, n, s := backend.DevicePtr(call.Dst), backend.DevicePtr(call.Src), call.N, backend.Stream(call.Stream)
	var err error
	switch {
	case d == nil || to == nil:
		err = cudaerr.InvalidDevice
	case !owns(d, call.Src, n) || !owns(to, call.Dst, n):
		err = cudaerr.InvalidValue
	case r.op == calls.OpMemcpyDtoD:
		err = d.dev.MemcpyDtoDAsync(dst, src, n, s)
	default:
		err = d.dev.MemcpyPeerAsync(dst, to.dev, src, n, s)
	}
	if err == nil {
		c.w.m.Bytes(metrics.DeviceToDevice, int64(n))
	}
	c.done(r, err, 0, 0)
}

func (c *conn) stream(r req, call *calls.Call) {
	d := c.devOf(call.Dev)
	if d == nil {
		c.done(r, cudaerr.InvalidDevice, 0, 0)
		return
	}
	s := backend.Stream(call.Stream)
	switch r.op {
	case calls.OpStreamCreate:
		if call.Aux > math.MaxUint32 {
			c.done(r, cudaerr.InvalidValue, 0, 0)
			return
		}
		h, err := d.dev.StreamCreate(uint32(call.Aux), int(int32(uint32(call.Aux2))))
		c.done(r, err, uint64(h), 0)
	case calls.OpStreamDestroy:
		c.done(r, d.dev.StreamDestroy(s), 0, 0)
	case calls.OpStreamQuery:
		c.done(r, d.dev.StreamQuery(s), 0, 0)
	case calls.OpStreamWaitEvent:
		if c.devOf(call.Dev2) == nil {
			// An event of a device on another worker cannot be waited
			// for here.
			c.done(r, cudaerr.InvalidResourceHandle, 0, 0)
			return
		}
		c.done(r, d.dev.StreamWaitEvent(s, backend.Event(call.Event)), 0, 0)
	}
}

func (c *conn) event(r req, call *calls.Call) {
	d := c.devOf(call.Dev)
	if d == nil {
		c.done(r, cudaerr.InvalidDevice, 0, 0)
		return
	}
	e := backend.Event(call.Event)
	switch r.op {
	case calls.OpEventCreate:
		if call.Aux > math.MaxUint32 {
			c.done(r, cudaerr.InvalidValue, 0, 0)
			return
		}
		h, err := d.dev.EventCreate(uint32(call.Aux))
		c.done(r, err, uint64(h), 0)
	case calls.OpEventRecord:
		c.done(r, d.dev.EventRecord(e, backend.Stream(call.Stream)), 0, 0)
	case calls.OpEventQuery:
		c.done(r, d.dev.EventQuery(e), 0, 0)
	case calls.OpEventElapsedTime:
		ms, err := d.dev.EventElapsedTime(e, backend.Event(call.Event2))
		c.done(r, err, calls.F32Bits(ms), 0)
	case calls.OpEventDestroy:
		c.done(r, d.dev.EventDestroy(e), 0, 0)
	}
}

// waitJob is a synchronizing call handed to a waiter goroutine.
type waitJob struct {
	c      *conn
	r      req
	d      *device
	stream backend.Stream
	event  backend.Event
	o      *op    // a device-to-host copy whose event this waits for; nil for a synchronizing call
	gen    uint64 // o's generation
}

// synchronize answers StreamSynchronize, EventSynchronize and
// DeviceSynchronize. Work already complete is answered at once; otherwise
// a waiter goroutine waits, so that the reader goes on with other
// threads' calls.
func (c *conn) synchronize(r req, call *calls.Call) {
	d := c.devOf(call.Dev)
	if d == nil {
		c.done(r, cudaerr.InvalidDevice, 0, 0)
		return
	}
	if r.noReply {
		c.done(r, nil, 0, 0) // nothing to wait for nobody
		return
	}
	j := waitJob{c: c, r: r, d: d, stream: backend.Stream(call.Stream), event: backend.Event(call.Event)}
	var err error
	switch r.op {
	case calls.OpStreamSynchronize:
		err = d.dev.StreamQuery(j.stream)
	case calls.OpEventSynchronize:
		err = d.dev.EventQuery(j.event)
	default:
		err = cudaerr.NotReady
	}
	if !cudaerr.Is(err, cudaerr.NotReady) {
		c.done(r, err, 0, 0)
		return
	}
	d.queue.Inc() // until the waiter answers
	c.w.queueWait(j)
}

// queueWait hands j to a waiter goroutine.
func (w *Worker) queueWait(j waitJob) {
	select {
	case w.waitq <- j:
	default:
		// Every waiter is busy and the backlog is full: this wait gets a
		// goroutine of its own rather than hold up the reader.
		j.c.flush()
		w.spawn(func() { j.run(w) })
	}
}

func (w *Worker) waiter() {
	for {
		select {
		case j := <-w.waitq:
			j.run(w)
		case <-w.ctx.Done():
			return
		}
	}
}

func (j *waitJob) run(w *Worker) {
	if j.o != nil {
		err := j.d.dev.EventSynchronize(w.ctx, j.event)
		j.d.putEvent(j.event)
		if err != nil {
			j.o.abandon(j.gen, statusOf(err))
			return
		}
		j.o.d2h()
		return
	}
	var err error
	switch j.r.op {
	case calls.OpStreamSynchronize:
		err = j.d.dev.StreamSynchronize(w.ctx, j.stream)
	case calls.OpEventSynchronize:
		err = j.d.dev.EventSynchronize(w.ctx, j.event)
	default:
		err = j.d.dev.Synchronize(w.ctx)
	}
	status := statusOf(err)
	if status == 0 {
		// Asynchronous work that failed while this call waited (a lost
		// payload, a peer copy the other worker refused).
		status = w.takeDeferred()
	}
	j.d.queue.Dec()
	j.c.reply(j.r, status, 0, 0, nil, true)
}
