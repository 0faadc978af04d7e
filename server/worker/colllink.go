package worker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/xgpu/xgpu/collective"
	"github.com/xgpu/xgpu/internal/calls"
	"github.com/xgpu/xgpu/internal/wire"
	"github.com/xgpu/xgpu/peers"
)

// Collective links and the transport of communicators between workers.
//
// Two workers of a communicator share one QUIC connection, whichever
// communicators they have in common: the worker whose key
// (calls.CommWorker.Key) is the smaller dials the other, says Hello with
// "peer|" and its token, then OpCommLink with its own key, and both ends
// then use the connection alike. Every message is a rendezvous: the
// receiver posts its buffer and sends OpCollReady with the length it
// expects; the sender then sends the bytes inline (OpCollData, up to
// collInlineMax) or as a bulk transfer whose id the receiver chose (ids are
// unique per direction of a connection), which lands straight in the
// receiver's buffer. A sender therefore never runs into the transport's
// orphan timeout however late its receiver is, and a receiver never
// buffers a message nobody asked for. Ranks on the same worker exchange
// messages in memory (collective.LocalNetwork).

// collInlineMax is the largest message sent inside a frame.
const collInlineMax = calls.InlineMax

// collLink is a connection to another worker, shared by every
// communicator the two have in common.
type collLink struct {
	key    string          // the other worker's key
	pc     transport       // bulk transfers
	ctx    context.Context // done once the connection is dead
	dialed bool

	// The call stream's writer and its lock: the link's own for a dialed
	// connection, the conn's for an accepted one.
	wmu *sync.Mutex
	cw  *wire.Writer
	enc *wire.Enc

	nextID atomic.Uint64 // ids of the bulk transfers this end receives

	own struct { // writer state of a dialed link
		mu  sync.Mutex
		enc wire.Enc
	}
}

// send writes one frame and flushes it.
func (l *collLink) send(op wire.Op, call *calls.Call) error {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	l.enc.Reset()
	if err := call.Encode(op, l.enc); err != nil {
		return err
	}
	h := wire.Header{Op: op, Flags: wire.FlagNoReply}
	if err := l.cw.WriteFrame(&h, l.enc.B); err != nil {
		return err
	}
	return l.cw.Flush()
}

// lost is the error of calls with ranks behind a dead link.
func (l *collLink) lost() error {
	return fmt.Errorf("%w: link to worker %s: %v", collective.ErrPeerLost, l.key, context.Cause(l.ctx))
}

// linkTo returns the link to the worker remote, from worker self (both
// keys of one table): dialed by this worker if its key is the smaller,
// else accepted from the other, waiting for it until ctx ends.
func (cw *collWorker) linkTo(ctx context.Context, w *Worker, self, remote *calls.CommWorker) (*collLink, error) {
	key := remote.Key()
	dial := self.Key() < key
	cw.mu.Lock()
	for {
		if l := cw.links[key]; l != nil && l.ctx.Err() == nil {
			cw.mu.Unlock()
			return l, nil
		}
		if dial && !cw.dialing[key] {
			cw.dialing[key] = true
			cw.mu.Unlock()
			l, err := cw.dial(ctx, w, self.Key(), remote)
			cw.mu.Lock()
			delete(cw.dialing, key)
			if err == nil {
				cw.addLocked(l)
			}
			cw.notifyLocked()
			if err != nil {
				cw.mu.Unlock()
				return nil, err
			}
			continue
		}
		changed := cw.changed
		cw.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			if dial {
				return nil, fmt.Errorf("worker: link to %s: %w", remote.Addr, context.Cause(ctx))
			}
			return nil, fmt.Errorf("worker: no link from %s: %w", remote.Addr, context.Cause(ctx))
		}
		cw.mu.Lock()
	}
}

// dial connects to the worker remote and introduces this one by its key.
func (cw *collWorker) dial(ctx context.Context, w *Worker, selfKey string, remote *calls.CommWorker) (*collLink, error) {
	tlsConf, err := PinnedClientTLS(remote.Pin, w.clientTLS)
	if err != nil {
		return nil, err
	}
	pc, err := peers.Dial(ctx, remote.Addr, tlsConf, &w.cfg.Transport)
	if err != nil {
		return nil, fmt.Errorf("worker: link to %s: %w", remote.Addr, err)
	}
	if err := peerHandshake(w, pc, remote.Token); err != nil {
		pc.Close()
		return nil, fmt.Errorf("worker: link to %s: %w", remote.Addr, err)
	}
	l := &collLink{key: remote.Key(), pc: pc, ctx: pc.Context(), dialed: true, cw: pc.CallWriter()}
	l.wmu, l.enc = &l.own.mu, &l.own.enc
	if err := l.send(calls.OpCommLink, &calls.Call{Text: selfKey}); err != nil {
		pc.Close()
		return nil, fmt.Errorf("worker: link to %s: %w", remote.Addr, err)
	}
	// The session's end closes the link; its reader then returns.
	stop := context.AfterFunc(w.ctx, func() { _ = pc.Close() })
	w.spawn(func() {
		defer stop()
		cw.readLink(w, l, pc.CallReader())
		_ = pc.Close()
	})
	return l, nil
}

// readLink handles the frames of a dialed link until it dies.
func (cw *collWorker) readLink(w *Worker, l *collLink, r *wire.Reader) {
	var call calls.Call
	for {
		h, body, err := r.Next()
		if err != nil {
			return
		}
		if h.Flags&(wire.FlagReply|wire.FlagError) != 0 {
			continue
		}
		if err := call.Decode(h.Op, body); err != nil {
			w.log.Debug("worker: bad frame on a collective link", "peer", l.key, "err", err)
			continue
		}
		cw.frame(w, l, h.Op, &call)
	}
}

// accept makes the peer connection c a collective link of the worker
// whose key it announced (OpCommLink).
func (cw *collWorker) accept(w *Worker, c *conn, key string) {
	l := &collLink{key: key, pc: c.pc, ctx: c.pc.Context(), wmu: &c.wmu, cw: c.cw, enc: &c.enc}
	cw.mu.Lock()
	cw.init()
	if old := cw.byConn[c]; old != nil {
		cw.mu.Unlock()
		w.log.Debug("worker: second CommLink on one connection", "peer", key)
		return
	}
	cw.byConn[c] = l
	cw.addLocked(l)
	cw.notifyLocked()
	cw.mu.Unlock()
}

// addLocked records l as the link to its worker; a link it replaces is
// closed (the other worker dialed again, so it sees that one as dead).
func (cw *collWorker) addLocked(l *collLink) {
	if old := cw.links[l.key]; old != nil && old != l {
		_ = old.pc.Close()
	}
	cw.links[l.key] = l
	context.AfterFunc(l.ctx, func() {
		cw.mu.Lock()
		if cw.links[l.key] == l {
			delete(cw.links, l.key)
		}
		for c, x := range cw.byConn {
			if x == l {
				delete(cw.byConn, c)
			}
		}
		cw.notifyLocked()
		cw.mu.Unlock()
	})
}

// notifyLocked wakes everyone waiting for a link.
func (cw *collWorker) notifyLocked() {
	close(cw.changed)
	cw.changed = make(chan struct{})
}

// peerFrame handles a collective frame that arrived on the accepted peer
// connection c (on its reader goroutine).
func (c *conn) peerFrame(r req, call *calls.Call) {
	defer c.done(r, nil, 0, 0) // the frames carry FlagNoReply: this only ends a trace span
	cw := &c.w.coll
	if r.op == calls.OpCommLink {
		cw.accept(c.w, c, call.Text)
		return
	}
	cw.mu.Lock()
	l := cw.byConn[c]
	cw.mu.Unlock()
	if l == nil {
		c.w.log.Debug("worker: collective frame before CommLink", "op", calls.Name(r.op))
		return
	}
	cw.frame(c.w, l, r.op, call)
}

// msgKey names a message of one communicator.
type msgKey struct {
	src, dst int32
	tag      uint64
}

// readyMsg is a receiver's OpCollReady for a message this worker sends,
// or a sender waiting for it.
type readyMsg struct {
	have    bool          // the receiver is ready; n and bulk are set
	n, bulk uint64        // bytes it expects, bulk id (0: inline)
	ch      chan struct{} // closed when it arrives, for a waiting sender
}

// recvMsg is a posted receive from a rank of another worker.
type recvMsg struct {
	buf     []byte
	done    chan struct{}           // closed once claimed and finished
	err     error                   // set before done is closed
	claimed bool                    // guarded by commState.mu
	cancel  context.CancelCauseFunc // cancels the bulk transfer; nil inline
}

// frame handles one collective frame from link l.
func (cw *collWorker) frame(w *Worker, l *collLink, op wire.Op, call *calls.Call) {
	cs := cw.comm(call.Aux)
	if cs == nil {
		// A communicator already destroyed here, or never created.
		w.log.Debug("worker: collective frame for an unknown communicator", "op", calls.Name(op), "comm", call.Aux)
		return
	}
	src, dst := int(call.Dev), int(call.Dev2)
	switch op {
	case calls.OpCollReady:
		// From the receiver dst (behind l) to the sender src (here).
		if cs.local(src) && cs.behind(dst, l) {
			cs.ready(msgKey{int32(src), int32(dst), call.Aux2}, call.N, call.Src)
			return
		}
	case calls.OpCollData, calls.OpCollNack:
		// From the sender src (behind l) to the receiver dst (here).
		if cs.local(dst) && cs.behind(src, l) {
			cs.arrived(msgKey{int32(src), int32(dst), call.Aux2}, op, call)
			return
		}
	case calls.OpCommPeerDown:
		if cs.behind(src, l) {
			cs.peerDown(src, call.N == 1)
			return
		}
	default:
		w.log.Debug("worker: unexpected frame on a collective link", "op", calls.Name(op))
		return
	}
	w.log.Debug("worker: collective frame names ranks of other workers", "op", calls.Name(op), "comm", cs.id, "src", src, "dst", dst)
}

// ready records the receiver's OpCollReady for message k.
func (cs *commState) ready(k msgKey, n, bulk uint64) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	m := cs.readies[k]
	switch {
	case m == nil:
		cs.readies[k] = &readyMsg{have: true, n: n, bulk: bulk}
	case m.have:
		cs.w.log.Debug("worker: duplicate CollReady", "comm", cs.id, "src", k.src, "dst", k.dst, "tag", k.tag)
	default:
		m.have, m.n, m.bulk = true, n, bulk
		close(m.ch)
	}
}

// arrived delivers an inline message, or a sender's refusal, to the
// posted receive of k.
func (cs *commState) arrived(k msgKey, op wire.Op, call *calls.Call) {
	cs.mu.Lock()
	m := cs.recvs[k]
	if m == nil || m.claimed {
		cs.mu.Unlock()
		cs.w.log.Debug("worker: collective message nobody waits for", "op", calls.Name(op), "comm", cs.id, "src", k.src, "dst", k.dst)
		return
	}
	m.claimed = true
	delete(cs.recvs, k)
	cs.mu.Unlock()
	switch {
	case op == calls.OpCollNack:
		m.err = fmt.Errorf("%w: rank %d sends %d bytes, rank %d expects %d", collective.ErrMismatch, k.src, call.N, k.dst, len(m.buf))
	case m.cancel != nil:
		m.err = fmt.Errorf("%w: rank %d sent inline data for a bulk message", collective.ErrMismatch, k.src)
	case len(call.Data) != len(m.buf):
		m.err = fmt.Errorf("%w: rank %d sent %d bytes, rank %d expects %d", collective.ErrMismatch, k.src, len(call.Data), k.dst, len(m.buf))
	default:
		copy(m.buf, call.Data)
		cs.w.coll.recvd.Add(uint64(len(m.buf)))
	}
	if m.cancel != nil {
		m.cancel(m.err)
	}
	close(m.done)
}

// endpoint is one local rank's end of the transport of a communicator.
type endpoint struct {
	cs   *commState
	rank int

	ctx     context.Context // done once the endpoint is closed
	cancel  context.CancelCauseFunc
	leaving atomic.Bool // Close is the communicator's destruction, not a failure
	once    sync.Once
}

var _ collective.Transport = (*endpoint)(nil)

// Host implements collective.Transport.
func (ep *endpoint) Host(r int) string {
	if r < 0 || r >= len(ep.cs.hosts) {
		return ""
	}
	return ep.cs.hosts[r]
}

// Close implements collective.Transport. When the communicator is being
// destroyed (leaving) the other ranks learn that this one left; otherwise
// the Comm closes its transport because an operation failed, and the
// communicator is aborted on every rank.
func (ep *endpoint) Close() error {
	ep.once.Do(func() {
		ep.cancel(collective.ErrClosed)
		cs := ep.cs
		if ep.leaving.Load() {
			_ = cs.localNet.Transport(ep.rank).Close()
			cs.broadcast(ep.rank, false)
			return
		}
		cs.abortAll(fmt.Errorf("%w: rank %d failed and aborted the communicator", collective.ErrPeerLost, ep.rank), ep.rank, true)
	})
	return nil
}

// dead returns why a call of this endpoint with peer cannot go on, or nil.
func (ep *endpoint) dead(peer int) error {
	cs := ep.cs
	switch {
	case ep.ctx.Err() != nil:
		return collective.ErrClosed
	case cs.abortCtx.Err() != nil:
		return context.Cause(cs.abortCtx)
	}
	if p := cs.peerCtx[peer]; p != nil && p.Err() != nil {
		return context.Cause(p)
	}
	return nil
}

func (ep *endpoint) check(verb string, peer int) error {
	if peer < 0 || peer >= ep.cs.size || peer == ep.rank {
		return fmt.Errorf("%w: %s rank %d of %d (self %d)", collective.ErrInvalidArgument, verb, peer, ep.cs.size, ep.rank)
	}
	return ep.dead(peer)
}

// localErr turns the error of an in-memory call into the endpoint's view:
// an abort or this endpoint's closing explains the failure better.
func (ep *endpoint) localErr(err error, peer int) error {
	if err == nil {
		return nil
	}
	if derr := ep.dead(peer); derr != nil {
		return derr
	}
	return err
}

// Send implements collective.Transport.
func (ep *endpoint) Send(ctx context.Context, peer int, tag uint64, p []byte) error {
	if err := ep.check("send to", peer); err != nil {
		return err
	}
	cs := ep.cs
	if cs.local(peer) {
		return ep.localErr(cs.localNet.Transport(ep.rank).Send(ctx, peer, tag, p), peer)
	}
	l := cs.linkOf(peer)
	k := msgKey{int32(ep.rank), int32(peer), tag}
	m, err := ep.awaitReady(ctx, peer, l, k)
	if err != nil {
		return err
	}
	call := calls.Call{Aux: cs.id, Aux2: tag, Dev: uint32(ep.rank), Dev2: uint32(peer)}
	if m.n != uint64(len(p)) {
		call.N = uint64(len(p))
		_ = l.send(calls.OpCollNack, &call)
		return fmt.Errorf("%w: %d bytes for rank %d, which expects %d", collective.ErrMismatch, len(p), peer, m.n)
	}
	if m.bulk == 0 {
		if len(p) > collInlineMax {
			return fmt.Errorf("%w: rank %d wants %d bytes inline", collective.ErrMismatch, peer, len(p))
		}
		call.Data = p
		if err := l.send(calls.OpCollData, &call); err != nil {
			return ep.linkErr(peer, l, err)
		}
		cs.w.coll.sent.Add(uint64(len(p)))
		return nil
	}
	bctx, stop := ep.watch(ctx, peer)
	defer stop()
	if err := l.pc.SendBulk(bctx, m.bulk, p); err != nil {
		if bctx.Err() != nil {
			return context.Cause(bctx)
		}
		if _, refused := errors.AsType[*peers.BulkError](err); refused {
			// The receiver gave up on the message: its operation failed.
			return fmt.Errorf("%w: rank %d refused the message: %v", collective.ErrPeerLost, peer, err)
		}
		return ep.linkErr(peer, l, err)
	}
	cs.w.coll.sent.Add(uint64(len(p)))
	return nil
}

// awaitReady waits for the receiver's OpCollReady of message k.
func (ep *endpoint) awaitReady(ctx context.Context, peer int, l *collLink, k msgKey) (readyMsg, error) {
	cs := ep.cs
	cs.mu.Lock()
	m := cs.readies[k]
	if m != nil && m.have {
		delete(cs.readies, k)
		cs.mu.Unlock()
		return *m, nil
	}
	if m != nil {
		cs.mu.Unlock()
		return readyMsg{}, fmt.Errorf("%w: two sends to rank %d with tag %#x", collective.ErrMismatch, peer, k.tag)
	}
	m = &readyMsg{ch: make(chan struct{})}
	cs.readies[k] = m
	cs.mu.Unlock()
	var err error
	select {
	case <-m.ch:
	case <-ctx.Done():
		err = context.Cause(ctx)
	case <-ep.ctx.Done():
	case <-cs.abortCtx.Done():
	case <-cs.peerDone(peer):
	case <-l.ctx.Done():
		err = l.lost()
	}
	cs.mu.Lock()
	delete(cs.readies, k)
	cs.mu.Unlock()
	if m.have {
		// The receiver is ready; m is no longer written.
		return *m, nil
	}
	if err == nil {
		err = ep.dead(peer)
	}
	return readyMsg{}, err
}

// Recv implements collective.Transport.
func (ep *endpoint) Recv(ctx context.Context, peer int, tag uint64, q []byte) error {
	if err := ep.check("recv from", peer); err != nil {
		return err
	}
	cs := ep.cs
	if cs.local(peer) {
		return ep.localErr(cs.localNet.Transport(ep.rank).Recv(ctx, peer, tag, q), peer)
	}
	l := cs.linkOf(peer)
	k := msgKey{int32(peer), int32(ep.rank), tag}
	m := &recvMsg{buf: q, done: make(chan struct{})}
	call := calls.Call{Aux: cs.id, Aux2: tag, Dev: uint32(peer), Dev2: uint32(ep.rank), N: uint64(len(q))}
	bctx := ctx
	if len(q) > collInlineMax {
		call.Src = l.nextID.Add(1)
		var stop func()
		bctx, stop = ep.watch(ctx, peer)
		defer stop()
		bctx, m.cancel = context.WithCancelCause(bctx)
		defer m.cancel(nil)
	}
	cs.mu.Lock()
	if cs.recvs[k] != nil {
		cs.mu.Unlock()
		return fmt.Errorf("%w: two receives from rank %d with tag %#x", collective.ErrMismatch, peer, tag)
	}
	cs.recvs[k] = m
	cs.mu.Unlock()
	if err := l.send(calls.OpCollReady, &call); err != nil {
		cs.unpost(k, m)
		return ep.linkErr(peer, l, err)
	}
	if m.cancel != nil {
		err := l.pc.RecvBulk(bctx, call.Src, q)
		if !cs.unpost(k, m) {
			// A refusal (or a stray inline frame) claimed the receive.
			<-m.done
			return m.err
		}
		switch {
		case err == nil:
			cs.w.coll.recvd.Add(uint64(len(q)))
			return nil
		case bctx.Err() != nil:
			return context.Cause(bctx)
		}
		return ep.linkErr(peer, l, err)
	}
	var err error
	select {
	case <-m.done:
		return m.err
	case <-ctx.Done():
		err = context.Cause(ctx)
	case <-ep.ctx.Done():
	case <-cs.abortCtx.Done():
	case <-cs.peerDone(peer):
	case <-l.ctx.Done():
		err = l.lost()
	}
	if !cs.unpost(k, m) {
		// The frame is being copied into q: wait for it.
		<-m.done
		return m.err
	}
	if err == nil {
		err = ep.dead(peer)
	}
	return err
}

// unpost withdraws the posted receive m of k unless a frame claimed it
// first; it reports whether it withdrew it.
func (cs *commState) unpost(k msgKey, m *recvMsg) bool {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if m.claimed {
		return false
	}
	m.claimed = true
	if cs.recvs[k] == m {
		delete(cs.recvs, k)
	}
	return true
}

// watch returns a context for a bulk transfer with peer that ends, with
// the reason as its cause, when ctx does, this endpoint closes, the
// communicator aborts or peer leaves.
func (ep *endpoint) watch(ctx context.Context, peer int) (context.Context, func()) {
	cs := ep.cs
	bctx, cancel := context.WithCancelCause(ctx)
	fail := func() { cancel(ep.dead(peer)) }
	s1 := context.AfterFunc(ep.ctx, fail)
	s2 := context.AfterFunc(cs.abortCtx, fail)
	var s3 func() bool
	if p := cs.peerCtx[peer]; p != nil {
		s3 = context.AfterFunc(p, fail)
	}
	return bctx, func() {
		s1()
		s2()
		if s3 != nil {
			s3()
		}
		cancel(nil)
	}
}

// linkErr explains a failed write or transfer with peer over l.
func (ep *endpoint) linkErr(peer int, l *collLink, err error) error {
	if derr := ep.dead(peer); derr != nil {
		return derr
	}
	if l.ctx.Err() != nil {
		return l.lost()
	}
	return fmt.Errorf("%w: rank %d: %v", collective.ErrPeerLost, peer, err)
}
