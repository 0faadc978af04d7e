package runtime

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"

	"github.com/xgpu/xgpu/internal/calls"
	"github.com/xgpu/xgpu/internal/cudaerr"
	"github.com/xgpu/xgpu/internal/pb"
	"github.com/xgpu/xgpu/internal/telemetry"
	"github.com/xgpu/xgpu/internal/wire"
	"github.com/xgpu/xgpu/peers"
)

// session is the client's end of one worker: the session a server opened
// for the devices of this client it holds, and the QUIC connection to the
// session's worker. Calls of every device of the worker share its ordered
// call stream.
type session struct {
	c      *Client
	server string // control (gRPC) address of the server
	addr   string // the worker's data address, as the server reported it
	id     string // session id
	token  []byte
	pin    []byte
	pid    int32
	devs   []int // logical devices of the session, ascending

	rpc  *grpc.ClientConn
	ctl  pb.ServerClient
	conn *peers.Conn

	ctx    context.Context // cancelled when the session is torn down; bounds bulk transfers
	cancel context.CancelFunc

	reqID atomic.Uint64 // last request id; ids also name bulk transfers

	wmu   sync.Mutex // guards w, enc and dirty
	w     *wire.Writer
	enc   wire.Enc
	dirty bool          // frames wait in w for the flusher
	kick  chan struct{} // wakes the flusher; capacity 1, as one pending wake-up covers every frame queued before it runs

	pmu     sync.Mutex // guards waiters and lostErr
	waiters map[uint64]*waiter
	lostErr error // set once when the session is gone; every call fails with it

	dead atomic.Bool // lostErr is set; read without pmu on the hot path

	// deferred is the first failure of an asynchronous call that the
	// client saw (a failed asynchronous D2H copy) and has not yet
	// reported; the next synchronising call of the session reports it.
	deferred atomic.Pointer[error]

	inflight chan struct{} // one token per bulk chunk in flight; capacity Config.MaxInflight

	pendMu sync.Mutex // guards pend
	pend   []*waiter  // asynchronous D2H pieces not yet seen complete
	npend  atomic.Int32

	peerMu sync.Mutex    // guards peered
	peered map[int]error // destination devices this worker was told how to reach, with the outcome

	wg sync.WaitGroup // reader, flusher and bulk transfers

	stats sessionCounters
}

type sessionCounters struct {
	calls, asyncCalls, flushes           atomic.Uint64
	frameBytesSent, frameBytesReceived   atomic.Uint64
	payloadSent, payloadReceived         atomic.Uint64
	bulkTransfersSent, bulkTransfersRecv atomic.Uint64
}

// waiter receives the reply to one request. Waiters of synchronous calls
// come from a pool; those of asynchronous D2H pieces are kept in the
// pending list and by events, so they are never reused.
type waiter struct {
	done chan struct{} // capacity 1: the completion never blocks; closed instead for async waiters
	// parts counts the completions still due: the reply, plus the bulk
	// transfer when the data comes by bulk.
	parts atomic.Int32

	status int32
	v1, v2 uint64
	err    error // reply part: a transport or protocol failure

	dst     []byte // where D2H data goes
	upTo    bool   // dst bounds the reply's data rather than fixing its length; n says how much came
	n       int    // bytes of reply data copied into dst
	bulk    bool   // the data comes by a bulk transfer named by the request id
	bulkErr error  // bulk part
	cancel  context.CancelFunc

	async       bool     // an asynchronous D2H piece
	s           *session // set for async and bulk waiters
	dev         int
	stream      uint64
	nonBlocking bool        // stream is a non-blocking stream
	token       bool        // holds an inflight token
	fin         atomic.Bool // complete

	// span is the client span of the request while tracing is on (nil
	// otherwise); finish ends it with the request's result. Set under
	// pmu before the request is written, so deliver and fail see it.
	span trace.Span
}

var waiterPool = sync.Pool{New: func() any { return &waiter{done: make(chan struct{}, 1)} }}

func getWaiter() *waiter {
	w := waiterPool.Get().(*waiter)
	w.parts.Store(1)
	return w
}

func putWaiter(w *waiter) {
	*w = waiter{done: w.done}
	waiterPool.Put(w)
}

// finish completes one part of w; the last one signals it.
func (w *waiter) finish() {
	if w.parts.Add(-1) != 0 {
		return
	}
	if w.token {
		<-w.s.inflight
	}
	if w.span != nil {
		telemetry.End(w.span, w.result())
		w.span = nil
	}
	w.fin.Store(true)
	if w.async {
		if err := w.result(); err != nil {
			w.s.defer_(err)
		}
		close(w.done)
		return
	}
	w.done <- struct{}{}
}

// result is the outcome of a completed waiter.
func (w *waiter) result() error {
	if w.err != nil {
		return w.err
	}
	if err := replyStatus(w.status); err != nil {
		return err
	}
	return w.bulkErr
}

// lost returns the session's failure, or nil while it is alive.
func (s *session) lost() error {
	if !s.dead.Load() {
		return nil
	}
	s.pmu.Lock()
	defer s.pmu.Unlock()
	return s.lostErr
}

// fail ends the session with cause: every waiting call and every later
// call gets the LostError (ErrClosed when the client is closing). Only
// the first cause counts.
func (s *session) fail(cause error) {
	s.pmu.Lock()
	if s.lostErr != nil {
		s.pmu.Unlock()
		return
	}
	var err error = &LostError{Server: s.server, Addr: s.addr, Err: cause}
	if s.c.closing.Load() {
		err = ErrClosed
	} else {
		s.c.log.Error("runtime: session lost", "server", s.server, "worker", s.addr, "session", s.id, "devices", s.devs, "err", cause)
	}
	s.lostErr = err
	s.dead.Store(true)
	ws := s.waiters
	s.waiters = nil
	s.pmu.Unlock()
	for _, w := range ws {
		w.err = err
		if w.cancel != nil {
			w.cancel()
		}
		w.finish()
	}
	// The closer goroutine closes the connection, which ends the reader
	// and the bulk transfers; fail runs on those goroutines too, so it
	// does not wait here.
	s.cancel()
}

// closer closes the connection once the session has failed.
func (s *session) closer() {
	<-s.ctx.Done()
	_ = s.conn.Close()
}

// defer_ keeps err as the session's deferred error unless one is kept.
func (s *session) defer_(err error) {
	s.deferred.CompareAndSwap(nil, &err)
}

// takeDeferred returns and clears the deferred error.
func (s *session) takeDeferred() error {
	if s.deferred.Load() == nil {
		return nil
	}
	if p := s.deferred.Swap(nil); p != nil {
		return *p
	}
	return nil
}

// register adds w as the waiter for request id.
func (s *session) register(id uint64, w *waiter) error {
	s.pmu.Lock()
	defer s.pmu.Unlock()
	if s.lostErr != nil {
		return s.lostErr
	}
	s.waiters[id] = w
	return nil
}

// unregister removes the waiter of id, if still there, and reports
// whether it was.
func (s *session) unregister(id uint64) bool {
	s.pmu.Lock()
	defer s.pmu.Unlock()
	if _, ok := s.waiters[id]; !ok {
		return false
	}
	delete(s.waiters, id)
	return true
}

// write queues one call frame. With flush set it sends the frame and all
// queued before it at once; otherwise the flusher sends them within
// FlushDelay (or a full buffer sends them earlier). While tracing is on
// the call becomes a client span (see writeTraced); while it is off this
// costs one atomic load.
func (s *session) write(op wire.Op, flags wire.Flags, id uint64, c *calls.Call, flush bool) error {
	h := wire.Header{Op: op, Flags: flags, ReqID: id}
	if telemetry.Enabled() {
		return s.writeTraced(&h, c, flush)
	}
	return s.writeFrame(&h, c, flush)
}

// writeFrame encodes c under h and queues the frame, as write says.
func (s *session) writeFrame(h *wire.Header, c *calls.Call, flush bool) error {
	op, flags := h.Op, h.Flags
	s.wmu.Lock()
	s.enc.Reset()
	if err := c.Encode(op, &s.enc); err != nil {
		s.wmu.Unlock()
		return fmt.Errorf("runtime: encode %s: %w", calls.Name(op), err)
	}
	err := s.w.WriteFrame(h, s.enc.B)
	if err == nil {
		if flush {
			err = s.w.Flush()
			s.dirty = false
			s.stats.flushes.Add(1)
		} else if !s.dirty {
			s.dirty = true
			select {
			case s.kick <- struct{}{}:
			default:
			}
		}
	}
	s.wmu.Unlock()
	if err != nil {
		s.fail(err)
		return s.lost()
	}
	s.stats.frameBytesSent.Add(uint64(h.Len))
	s.stats.payloadSent.Add(uint64(len(c.Data)))
	if flags&wire.FlagNoReply != 0 {
		s.stats.asyncCalls.Add(1)
	} else {
		s.stats.calls.Add(1)
	}
	return nil
}

// async sends a call that gets no reply.
func (s *session) async(op wire.Op, c *calls.Call) error {
	if s.dead.Load() {
		return s.lost()
	}
	return s.write(op, wire.FlagNoReply, s.reqID.Add(1), c, false)
}

// roundTrip sends a synchronous call and waits for its reply. A failure
// of an earlier asynchronous call that the client saw is returned instead,
// without sending anything, as the worker does with the failures it saw.
func (s *session) roundTrip(op wire.Op, c *calls.Call) (v1, v2 uint64, err error) {
	if err := s.takeDeferred(); err != nil {
		return 0, 0, err
	}
	return s.call(op, c)
}

// call sends a synchronous call and waits for its reply.
func (s *session) call(op wire.Op, c *calls.Call) (v1, v2 uint64, err error) {
	v1, v2, _, err = s.exchange(op, c, nil, false)
	return v1, v2, err
}

// exchange sends a synchronous call and waits for its reply, whose data
// goes to dst: exactly len(dst) bytes, or at most that many with upTo (n
// says how many came). It is the one path of every synchronous call that
// is not a bulk transfer.
func (s *session) exchange(op wire.Op, c *calls.Call, dst []byte, upTo bool) (v1, v2 uint64, n int, err error) {
	w := getWaiter()
	w.dst, w.upTo = dst, upTo
	id := s.reqID.Add(1)
	if err := s.register(id, w); err != nil {
		putWaiter(w)
		return 0, 0, 0, err
	}
	if err := s.write(op, 0, id, c, true); err != nil {
		if s.unregister(id) {
			putWaiter(w)
			return 0, 0, 0, err
		}
		// fail completed the waiter: fall through to collect it.
	}
	<-w.done
	v1, v2, n, err = w.v1, w.v2, w.n, w.result()
	putWaiter(w)
	return v1, v2, n, err
}

// flushLoop sends queued asynchronous calls FlushDelay after the first of
// them was queued.
func (s *session) flushLoop() {
	var t *time.Timer
	delay := s.c.cfg.FlushDelay
	if delay > 0 {
		t = time.NewTimer(time.Hour)
		t.Stop()
	}
	for {
		select {
		case <-s.kick:
		case <-s.ctx.Done():
			return
		}
		if t != nil {
			t.Reset(delay)
			select {
			case <-t.C:
			case <-s.ctx.Done():
				return
			}
		}
		s.wmu.Lock()
		var err error
		if s.dirty {
			err = s.w.Flush()
			s.dirty = false
			s.stats.flushes.Add(1)
		}
		s.wmu.Unlock()
		if err != nil {
			s.fail(err)
			return
		}
	}
}

// readLoop matches replies to their waiters until the connection ends.
func (s *session) readLoop() {
	r := s.conn.CallReader()
	for {
		h, body, err := r.Next()
		if err != nil {
			s.fail(err)
			return
		}
		s.stats.frameBytesReceived.Add(uint64(h.Len))
		if err := s.deliver(&h, body); err != nil {
			s.fail(fmt.Errorf("runtime: worker broke the protocol: %w", err))
			return
		}
	}
}

// deliver hands one frame from the worker to the waiter of its request.
func (s *session) deliver(h *wire.Header, body []byte) error {
	if h.Flags&wire.FlagReply == 0 {
		// The worker sends nothing but replies today; a newer worker's
		// notification is skipped.
		s.c.log.Debug("runtime: ignoring frame from worker", "op", calls.Name(h.Op), "flags", h.Flags, "worker", s.addr)
		return nil
	}
	s.pmu.Lock()
	w := s.waiters[h.ReqID]
	delete(s.waiters, h.ReqID)
	s.pmu.Unlock()
	if w == nil {
		return fmt.Errorf("reply %s to request %d that is not waiting", calls.Name(h.Op), h.ReqID)
	}
	var rep calls.Reply
	if err := rep.Decode(body); err != nil {
		if h.Flags&wire.FlagError == 0 {
			w.err = fmt.Errorf("runtime: undecodable %s reply: %w", calls.Name(h.Op), err)
			s.abort(w)
			return err
		}
		// An error reply may carry a bare message instead of a Reply.
		d := wire.NewDec(body)
		msg := d.String()
		if d.Done() != nil {
			msg = "(unreadable reason)"
		}
		w.err = &detailError{code: cudaerr.Unknown, msg: "worker refused " + calls.Name(h.Op) + ": " + msg}
		s.abort(w)
		return nil
	}
	w.status, w.v1, w.v2 = rep.Status, rep.V1, rep.V2
	if h.Flags&wire.FlagError != 0 && rep.Status == 0 {
		w.status = int32(cudaerr.Unknown)
	}
	if w.dst != nil && w.status == 0 {
		switch {
		case w.bulk:
			if len(rep.Data) != 0 || rep.V1 != h.ReqID {
				w.err = fmt.Errorf("runtime: %s reply names bulk transfer %d with %d inline bytes, want transfer %d",
					calls.Name(h.Op), rep.V1, len(rep.Data), h.ReqID)
			}
		case len(rep.Data) != len(w.dst) && !(w.upTo && len(rep.Data) < len(w.dst)):
			w.err = fmt.Errorf("runtime: %s reply carries %d bytes, want %d", calls.Name(h.Op), len(rep.Data), len(w.dst))
		default:
			w.n = copy(w.dst, rep.Data)
			if !w.upTo { // upTo replies carry metadata (attributes, lane offers), not copies
				s.stats.payloadReceived.Add(uint64(len(rep.Data)))
			}
		}
	}
	if w.cancel != nil && (w.status != 0 || w.err != nil) {
		// No data will come, or none that is wanted.
		w.cancel()
	}
	w.finish()
	return nil
}

// abort completes w after a failed reply.
func (s *session) abort(w *waiter) {
	if w.cancel != nil {
		w.cancel()
	}
	w.finish()
}

// acquire takes an inflight token, waiting while MaxInflight chunks are in
// flight.
func (s *session) acquire() error {
	select {
	case s.inflight <- struct{}{}:
		return nil
	default:
	}
	select {
	case s.inflight <- struct{}{}:
		return nil
	case <-s.ctx.Done():
		if err := s.lost(); err != nil {
			return err
		}
		return ErrClosed
	}
}

// dtoh sends one D2H piece: len(dst) bytes from src on dev, in stream. An
// async piece joins the pending list, a synchronous one is flushed at
// once; either way the caller waits on the returned waiter (or lets a
// synchronising call do it).
func (s *session) dtoh(dev int, dst []byte, src uint64, st Stream, async bool) (*waiter, error) {
	bulk := len(dst) > calls.InlineMax
	stream := st.id
	var w *waiter
	if async || bulk {
		w = &waiter{done: make(chan struct{}, 1), s: s, dev: dev, stream: stream, nonBlocking: st.nonBlocking, async: async}
		w.parts.Store(1)
		if err := s.acquire(); err != nil {
			return nil, err
		}
		w.token = true
	} else {
		w = getWaiter()
	}
	w.dst = dst
	release := func() {
		if w.token {
			<-s.inflight
		}
		if !w.async && !bulk {
			putWaiter(w)
		}
	}
	id := s.reqID.Add(1)
	var ctx context.Context
	if bulk {
		w.bulk = true
		w.parts.Store(2)
		ctx, w.cancel = context.WithCancel(s.ctx)
	}
	if err := s.register(id, w); err != nil {
		if w.cancel != nil {
			w.cancel()
		}
		release()
		return nil, err
	}
	if bulk {
		s.wg.Go(func() { s.recvBulk(ctx, id, w) })
	}
	if async {
		s.addPending(w)
	}
	c := calls.Call{Dev: uint32(dev), Src: src, N: uint64(len(dst)), Stream: stream}
	if err := s.write(calls.OpMemcpyDtoH, 0, id, &c, !async); err != nil {
		if s.unregister(id) {
			w.err = err
			s.abort(w)
		}
		// Otherwise fail has completed w with the session's error. Either
		// way nobody waits for it but the pending list.
		return nil, err
	}
	return w, nil
}

// recvBulk receives the data of D2H request id into w.dst.
func (s *session) recvBulk(ctx context.Context, id uint64, w *waiter) {
	err := s.conn.RecvBulk(ctx, id, w.dst)
	switch {
	case err == nil:
		s.stats.payloadReceived.Add(uint64(len(w.dst)))
		s.stats.bulkTransfersRecv.Add(1)
	case ctx.Err() != nil:
		// Cancelled because the reply reported a failure or the session
		// ended; the reply part carries the reason.
	default:
		if lerr := s.lost(); lerr != nil {
			err = lerr
		}
		w.bulkErr = fmt.Errorf("runtime: receiving %d bytes: %w", len(w.dst), err)
	}
	w.cancel()
	w.finish()
}

// htod sends len(src) bytes to dst on dev in stream. Payloads up to
// calls.InlineMax travel inside the call; larger ones are cut into
// chunks, each a call plus a bulk transfer, with up to MaxInflight chunks
// in flight. It returns once every byte has left src: the worker holds
// them, so the caller may reuse src.
func (s *session) htod(dev int, dst uint64, src []byte, stream uint64) error {
	if len(src) <= calls.InlineMax {
		c := calls.Call{Dev: uint32(dev), Dst: dst, N: uint64(len(src)), Stream: stream, Data: src}
		return s.async(calls.OpMemcpyHtoD, &c)
	}
	chunk := s.c.cfg.ChunkSize
	var (
		wg    sync.WaitGroup
		errMu sync.Mutex
		first error
	)
	setErr := func(err error) {
		errMu.Lock()
		if first == nil {
			first = err
		}
		errMu.Unlock()
	}
	for off := 0; off < len(src); off += chunk {
		piece := src[off:min(off+chunk, len(src))]
		if err := s.acquire(); err != nil {
			setErr(err)
			break
		}
		id := s.reqID.Add(1)
		c := calls.Call{Dev: uint32(dev), Dst: dst + uint64(off), N: uint64(len(piece)), Stream: stream, Aux: id}
		if err := s.write(calls.OpMemcpyHtoD, wire.FlagNoReply, id, &c, true); err != nil {
			<-s.inflight
			setErr(err)
			break
		}
		wg.Go(func() {
			defer func() { <-s.inflight }()
			err := s.conn.SendBulk(s.ctx, id, piece)
			if err == nil {
				s.stats.payloadSent.Add(uint64(len(piece)))
				s.stats.bulkTransfersSent.Add(1)
				return
			}
			if _, refused := errors.AsType[*peers.BulkError](err); refused {
				// The worker refused the data because it refused the
				// call; it reports why at the next synchronising call.
				return
			}
			if lerr := s.lost(); lerr != nil {
				err = lerr
			}
			setErr(err)
		})
	}
	wg.Wait()
	return first
}

// addPending records an asynchronous D2H piece.
func (s *session) addPending(w *waiter) {
	s.pendMu.Lock()
	s.pend = append(s.pend, w)
	s.pendMu.Unlock()
	s.npend.Add(1)
}

// Which asynchronous D2H pieces a synchronising call covers.
type coverage int

const (
	coverStream coverage = iota // the pieces of one stream
	coverLegacy                 // the legacy stream's and those of blocking streams, which it synchronizes with
	coverDevice                 // every piece of the device
)

// pending returns the asynchronous D2H pieces of dev not yet complete that
// a synchronising call on stream (with coverage cov) covers, dropping the
// complete ones from the list. It returns nil, without allocating, when
// there are none.
func (s *session) pending(dev int, stream uint64, cov coverage) []*waiter {
	if s.npend.Load() == 0 {
		return nil
	}
	s.pendMu.Lock()
	defer s.pendMu.Unlock()
	var out []*waiter
	kept := s.pend[:0]
	for _, w := range s.pend {
		if w.fin.Load() {
			continue
		}
		kept = append(kept, w)
		if w.dev != dev {
			continue
		}
		if cov == coverDevice || w.stream == stream || (cov == coverLegacy && !w.nonBlocking) {
			out = append(out, w)
		}
	}
	clear(s.pend[len(kept):])
	s.pend = kept
	s.npend.Store(int32(len(kept)))
	return out
}

// coverageOf is what a synchronising call on stream id covers.
func coverageOf(id uint64) coverage {
	if id == 0 {
		return coverLegacy
	}
	return coverStream
}

// wait waits for ws to complete; their failures become the session's
// deferred error as they complete.
func wait(ws []*waiter) {
	for _, w := range ws {
		<-w.done
	}
}

// allDone reports whether every waiter of ws has completed.
func allDone(ws []*waiter) bool {
	for _, w := range ws {
		if !w.fin.Load() {
			return false
		}
	}
	return true
}

// close ends the session: the worker is told to free everything, the
// connection closed and the server told the session is over. It waits for
// the session's goroutines.
func (s *session) close(ctx context.Context) error {
	var errs []error
	if s.lost() == nil {
		// The worker replies, then frees everything and exits.
		done := make(chan error, 1) // buffered: the call may outlive ctx
		go func() {
			_, _, err := s.call(calls.OpCloseSession, &calls.Call{})
			done <- err
		}()
		select {
		case err := <-done:
			if err != nil && !errors.Is(err, ErrClosed) {
				errs = append(errs, fmt.Errorf("close session %s on %s: %w", s.id, s.addr, err))
			}
		case <-ctx.Done():
		}
	}
	wasLost := s.lost() != nil
	s.fail(peers.ErrClosed)
	_ = s.conn.Close()
	s.wg.Wait()
	// The server frees the devices when the worker exits; telling it is
	// the sure way, and a courtesy when the session was lost (the server
	// may be gone with it).
	if _, err := s.ctl.CloseSession(ctx, &pb.CloseSessionRequest{SessionId: s.id, Token: s.token}); err != nil && !wasLost && !isNotFound(err) {
		errs = append(errs, fmt.Errorf("close session %s on server %s: %w", s.id, s.server, err))
	}
	if err := s.rpc.Close(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
