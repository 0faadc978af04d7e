package peers

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/xgpu/xgpu/internal/wire"
)

// BulkStream is a raw bidirectional bulk stream from OpenBulk or
// AcceptBulk. It runs on a bulk lane, beside the call stream, so its
// traffic never delays calls. Read and Write may be used by two
// goroutines at once, one each.
type BulkStream struct {
	c *Conn
	s *quic.Stream
}

// Read reads from the stream; io.EOF after the peer's Close.
func (b *BulkStream) Read(p []byte) (int, error) {
	n, err := b.s.Read(p)
	return n, b.c.streamErr(err)
}

// Write writes to the stream. It blocks while flow control is exhausted.
func (b *BulkStream) Write(p []byte) (int, error) {
	n, err := b.s.Write(p)
	return n, b.c.streamErr(err)
}

// Close ends the write side (the peer reads io.EOF once it has read
// everything); reading continues until the peer closes its side.
func (b *BulkStream) Close() error { return b.c.streamErr(b.s.Close()) }

// Abort cancels both directions at once, discarding unsent data.
func (b *BulkStream) Abort() {
	b.s.CancelWrite(streamCanceled)
	b.s.CancelRead(streamCanceled)
}

// SetDeadline sets the read and write deadlines.
func (b *BulkStream) SetDeadline(t time.Time) error { return b.s.SetDeadline(t) }

// OpenBulk opens a raw bulk stream on the next bulk lane. It blocks while
// the peer's stream limit (Config.MaxBulkStreams) is reached.
func (c *Conn) OpenBulk(ctx context.Context) (*BulkStream, error) {
	if err := c.Err(); err != nil {
		return nil, err
	}
	s, err := c.bulkLane(c.next.Add(1)).OpenStreamSync(ctx)
	if err != nil {
		return nil, c.streamErr(err)
	}
	// The kind byte also makes the stream visible to the peer now.
	if _, err := s.Write([]byte{kindRaw}); err != nil {
		s.CancelWrite(streamCanceled)
		s.CancelRead(streamCanceled)
		return nil, c.streamErr(err)
	}
	s.SetReliableBoundary()
	return &BulkStream{c: c, s: s}, nil
}

// AcceptBulk returns the next raw bulk stream the peer opened.
func (c *Conn) AcceptBulk(ctx context.Context) (*BulkStream, error) {
	select {
	case b := <-c.rawBulk:
		return b, nil
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	case <-c.ctx.Done():
		return nil, c.Err()
	}
}

// Striped transfers.
//
// SendBulk cuts a payload into chunks of Config.ChunkSize and sends them
// over up to one stream per bulk lane; each stream takes the next unsent
// chunk when it is ready for one, so faster lanes carry more. A stream
// starts with
//
//	kind u8 (kindStriped) | id u64 | total u64 | chunk u32 | streams u16
//
// followed by chunks, each a wire.ChunkHeader and its payload, and ends
// with FIN. The receiver answers each stream with
//
//	status u8 | message length u16 | message
//
// once every chunk of that stream is verified and placed. The receiver
// reads each payload straight into the destination at its offset.

const stripedHeaderSize = 8 + 8 + 4 + 2

// BulkCode classifies why a receiver refused a striped transfer.
type BulkCode uint8

const (
	bulkOK BulkCode = iota
	// BulkChecksum: a chunk's bytes did not match its xxhash64.
	BulkChecksum
	// BulkProtocol: the stream broke the transfer format.
	BulkProtocol
	// BulkRefused: the receiver did not take the transfer (size
	// mismatch, id in use, no RecvBulk within OrphanTimeout, or the
	// receiver gave up).
	BulkRefused
)

func (c BulkCode) String() string {
	switch c {
	case bulkOK:
		return "ok"
	case BulkChecksum:
		return "checksum mismatch"
	case BulkProtocol:
		return "protocol error"
	case BulkRefused:
		return "refused"
	}
	return fmt.Sprintf("BulkCode(%d)", uint8(c))
}

// BulkError is returned by SendBulk when the receiver refused the
// transfer.
type BulkError struct {
	ID   uint64
	Code BulkCode
	Msg  string // the receiver's explanation
}

func (e *BulkError) Error() string {
	return fmt.Sprintf("peers: bulk transfer %d: peer reports %v: %s", e.ID, e.Code, e.Msg)
}

// ErrBulkIDInUse is returned by RecvBulk for an id that another RecvBulk
// is receiving (or that failed less than OrphanTimeout ago).
var ErrBulkIDInUse = errors.New("peers: bulk transfer id in use")

// SendBulk sends p to the peer's RecvBulk call with the same id, striped
// over the bulk lanes, and returns once the peer has verified and placed
// every byte. On error the receiver may hold part of p. p must not change
// until SendBulk returns. Ids must be unique among transfers in flight in
// one direction of a Conn.
func (c *Conn) SendBulk(ctx context.Context, id uint64, p []byte) error {
	if err := c.Err(); err != nil {
		return err
	}
	if l := c.localLane(); l != nil {
		return l.send(ctx, id, p)
	}
	chunk := c.cfg.ChunkSize
	nchunks := (len(p) + chunk - 1) / chunk
	nstreams := max(1, min(nchunks, max(1, len(c.lanes))))
	xctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	x := &sendXfer{c: c, ctx: xctx, cancel: cancel, id: id, p: p, chunk: chunk, nchunks: int64(nchunks), nstreams: nstreams}
	start := c.next.Add(uint32(nstreams))
	var wg sync.WaitGroup
	for i := 1; i < nstreams; i++ {
		wg.Go(func() { x.run(c.bulkLane(start + uint32(i))) })
	}
	x.run(c.bulkLane(start))
	wg.Wait()
	err := x.result()
	if _, refused := errors.AsType[*BulkError](err); err != nil && !refused && ctx.Err() != nil {
		// Our own cancellation of the streams, not a transport failure.
		return context.Cause(ctx)
	}
	return err
}

// sendXfer is one SendBulk call.
type sendXfer struct {
	c        *Conn
	ctx      context.Context
	cancel   context.CancelCauseFunc
	id       uint64
	p        []byte
	chunk    int
	nchunks  int64
	nstreams int
	next     atomic.Int64 // next chunk to send

	mu  sync.Mutex // guards err
	err error
}

// setErr records the transfer's error; a refusal by the peer beats the
// cancellations it causes on sibling streams.
func (x *sendXfer) setErr(err error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	_, isBulk := errors.AsType[*BulkError](err)
	_, hadBulk := errors.AsType[*BulkError](x.err)
	if x.err == nil || (isBulk && !hadBulk) {
		x.err = err
	}
	x.cancel(err)
}

func (x *sendXfer) result() error {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.err == nil {
		return nil
	}
	if cerr := x.c.Err(); cerr != nil {
		if _, isBulk := errors.AsType[*BulkError](x.err); !isBulk {
			return cerr
		}
	}
	return x.err
}

// run sends one stream of the transfer on qc.
func (x *sendXfer) run(qc *quic.Conn) {
	if err := x.send(qc); err != nil {
		x.setErr(err)
	}
}

func (x *sendXfer) send(qc *quic.Conn) error {
	s, err := qc.OpenStreamSync(x.ctx)
	if err != nil {
		return x.c.streamErr(err)
	}
	stop := context.AfterFunc(x.ctx, func() {
		s.CancelWrite(streamCanceled)
		s.CancelRead(streamCanceled)
	})
	defer stop()

	// One buffer per stream holds the stream header, then each chunk
	// header in turn; the payload goes from p untouched.
	buf := make([]byte, 1+stripedHeaderSize)
	buf[0] = kindStriped
	binary.LittleEndian.PutUint64(buf[1:], x.id)
	binary.LittleEndian.PutUint64(buf[9:], uint64(len(x.p)))
	binary.LittleEndian.PutUint32(buf[17:], uint32(x.chunk))
	binary.LittleEndian.PutUint16(buf[21:], uint16(x.nstreams))
	_, werr := s.Write(buf)
	// Even if this stream is cancelled, the header reaches the receiver,
	// which then fails the transfer instead of waiting for the stream.
	s.SetReliableBoundary()
	hdr := buf[:wire.ChunkHeaderSize]
	for werr == nil {
		i := x.next.Add(1) - 1
		if i >= x.nchunks {
			break
		}
		off := int(i) * x.chunk
		payload := x.p[off:min(off+x.chunk, len(x.p))]
		ch := wire.ChunkHeader{Offset: uint64(off), Len: uint32(len(payload)), Sum: wire.ChunkSum(payload)}
		wire.PutChunkHeader(hdr, &ch)
		if _, werr = s.Write(hdr); werr == nil {
			_, werr = s.Write(payload)
		}
	}
	if werr == nil {
		werr = s.Close()
	}
	// Read the verdict even after a write error: a receiver that refuses
	// a stream says why before it stops reading.
	status, rerr := readStatus(s)
	switch {
	case rerr == nil && status.Code == bulkOK:
		if werr != nil {
			return x.c.streamErr(werr)
		}
		return nil
	case rerr == nil:
		status.ID = x.id
		return status
	case werr != nil:
		return x.c.streamErr(werr)
	default:
		return x.c.streamErr(rerr)
	}
}

// readStatus reads a receiver's verdict on one stream.
func readStatus(s *quic.Stream) (*BulkError, error) {
	var b [3]byte
	if _, err := io.ReadFull(s, b[:]); err != nil {
		return nil, err
	}
	st := &BulkError{Code: BulkCode(b[0])}
	n := binary.LittleEndian.Uint16(b[1:])
	if n > 0 {
		msg := make([]byte, n)
		if _, err := io.ReadFull(s, msg); err != nil {
			return nil, err
		}
		st.Msg = string(msg)
	}
	return st, nil
}

// writeStatus sends a verdict and closes the stream's write side.
func writeStatus(s *quic.Stream, code BulkCode, msg string) {
	if len(msg) > 1024 {
		msg = msg[:1024]
	}
	b := make([]byte, 3, 3+len(msg))
	b[0] = byte(code)
	binary.LittleEndian.PutUint16(b[1:], uint16(len(msg)))
	b = append(b, msg...)
	_, _ = s.Write(b)
	_ = s.Close()
}

// RecvBulk receives the transfer the peer sends with SendBulk and the same
// id into dst, whose length must equal the payload's, and returns once
// every chunk is verified and in place. Chunks may arrive before RecvBulk
// is called; they wait up to Config.OrphanTimeout. A corrupted chunk fails
// the transfer with an error wrapping *wire.ChecksumError; dst then holds
// partial data. dst must not be touched until RecvBulk returns. A sender
// that gives up after opening its streams fails the transfer here too; one
// that gives up before opening any is never heard of, so ctx must bound
// the wait.
func (c *Conn) RecvBulk(ctx context.Context, id uint64, dst []byte) error {
	if err := c.Err(); err != nil {
		return err
	}
	if l := c.localLane(); l != nil {
		return l.recv(ctx, id, dst)
	}
	t, err := c.reg.register(id, dst)
	if err != nil {
		return err
	}
	select {
	case <-t.done:
	case <-ctx.Done():
		c.reg.fail(t, BulkRefused, fmt.Errorf("peers: bulk transfer %d: receiver gave up: %w", id, context.Cause(ctx)))
		<-t.done
	case <-c.ctx.Done():
		c.reg.fail(t, BulkRefused, c.Err())
		<-t.done
	}
	// A failure ends the transfer while streams may still be writing into
	// dst; their reads were cancelled, so this wait is short.
	t.readers.Wait()
	c.reg.mu.Lock()
	err = t.err
	c.reg.mu.Unlock()
	if err != nil {
		if cerr := c.Err(); cerr != nil {
			return cerr
		}
	}
	return err
}

// registry tracks incoming striped transfers by id.
type registry struct {
	c  *Conn
	mu sync.Mutex // guards m and the fields of transfers marked "mu"
	m  map[uint64]*transfer
}

func (r *registry) init(c *Conn) {
	r.c = c
	r.m = make(map[uint64]*transfer)
}

// transfer is one incoming striped transfer.
type transfer struct {
	id uint64

	// mu
	dst        []byte
	registered bool // RecvBulk has supplied dst
	haveHdr    bool // a stream header has fixed total, chunk and streams
	total      uint64
	chunk      uint32
	streams    int
	arrived    int // streams seen
	finished   int // streams that ended cleanly
	err        error
	code       BulkCode       // what err is, for the sender
	ended      bool           // done is closed
	open       []*quic.Stream // streams to cancel if the transfer fails
	timer      *time.Timer    // orphan or tombstone timer

	// readers counts streams that may write into dst; RecvBulk waits
	// for them so that dst is quiet when it returns. Added to under mu
	// while !ended only.
	readers sync.WaitGroup

	ready chan struct{} // closed once dst is set and the bitmap exists, or on failure
	done  chan struct{} // closed once the transfer succeeded or failed

	// Lock-free, used per chunk once ready is closed.
	bits      []atomic.Uint64 // chunks received
	remaining atomic.Int64    // bytes still expected
	failed    atomic.Bool
}

// getLocked returns the transfer for id, creating it.
func (r *registry) getLocked(id uint64) *transfer {
	t := r.m[id]
	if t == nil {
		t = &transfer{id: id, ready: make(chan struct{}), done: make(chan struct{})}
		r.m[id] = t
	}
	return t
}

func (r *registry) register(id uint64, dst []byte) (*transfer, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	t := r.getLocked(id)
	if t.registered || t.ended {
		return nil, fmt.Errorf("%w: %d", ErrBulkIDInUse, id)
	}
	t.registered = true
	t.dst = dst
	if t.timer != nil {
		t.timer.Stop()
		t.timer = nil
	}
	r.prepareLocked(t)
	return t, nil
}

// prepareLocked completes setup once both dst and the stream header are
// known, and opens the gate for the streams.
func (r *registry) prepareLocked(t *transfer) {
	if !t.registered || !t.haveHdr || t.ended {
		return
	}
	if t.total != uint64(len(t.dst)) {
		r.failLocked(t, BulkRefused, fmt.Errorf("peers: bulk transfer %d: sender has %d bytes, receiver expects %d", t.id, t.total, len(t.dst)))
		return
	}
	n := (t.total + uint64(t.chunk) - 1) / uint64(t.chunk)
	t.bits = make([]atomic.Uint64, (n+63)/64)
	t.remaining.Store(int64(t.total))
	close(t.ready)
	r.maybeDoneLocked(t)
}

// maybeDoneLocked ends the transfer once all streams ended cleanly.
func (r *registry) maybeDoneLocked(t *transfer) {
	if t.ended || !t.haveHdr || t.finished < t.streams {
		return
	}
	if rem := t.remaining.Load(); rem != 0 {
		r.failLocked(t, BulkProtocol, fmt.Errorf("peers: bulk transfer %d: streams ended with %d bytes missing", t.id, rem))
		return
	}
	t.ended = true
	close(t.done)
	delete(r.m, t.id)
}

// closeAll fails every transfer and stops every timer; the Conn is dead.
func (r *registry) closeAll(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, t := range r.m {
		r.failLocked(t, BulkRefused, err)
		if t.timer != nil {
			t.timer.Stop()
			t.timer = nil
		}
	}
	clear(r.m)
}

func (r *registry) fail(t *transfer, code BulkCode, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failLocked(t, code, err)
}

// failLocked ends the transfer with err and cancels its open streams. The
// entry stays as a tombstone until every announced stream has arrived (and
// been refused), or for OrphanTimeout, so that late streams of the failed
// transfer are refused rather than waiting.
func (r *registry) failLocked(t *transfer, code BulkCode, err error) {
	if t.ended {
		return
	}
	t.ended = true
	t.err = err
	t.code = code
	t.failed.Store(true)
	for _, s := range t.open {
		s.CancelRead(streamRefused)
	}
	t.open = nil
	select {
	case <-t.ready:
	default:
		close(t.ready)
	}
	close(t.done)
	r.retireLocked(t)
}

// retireLocked drops an ended transfer once no more of its streams can
// come, or arms the tombstone timer.
func (r *registry) retireLocked(t *transfer) {
	if t.haveHdr && t.arrived >= t.streams {
		if t.timer != nil {
			t.timer.Stop()
			t.timer = nil
		}
		if r.m[t.id] == t {
			delete(r.m, t.id)
		}
		return
	}
	if t.timer == nil {
		t.timer = r.afterLocked(t, func() {
			if r.m[t.id] == t {
				delete(r.m, t.id)
			}
		})
	}
}

// afterLocked runs f with r.mu held after OrphanTimeout, unless the Conn
// closes first.
func (r *registry) afterLocked(t *transfer, f func()) *time.Timer {
	return time.AfterFunc(r.c.cfg.OrphanTimeout, func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		if t.timer != nil {
			t.timer = nil
			f()
		}
	})
}

// recvStriped serves one incoming stream of a striped transfer.
func (c *Conn) recvStriped(s *quic.Stream) {
	r := &c.reg
	buf := make([]byte, max(stripedHeaderSize, wire.ChunkHeaderSize))
	if _, err := io.ReadFull(s, buf[:stripedHeaderSize]); err != nil {
		s.CancelRead(streamProtocol)
		s.CancelWrite(streamProtocol)
		return
	}
	id := binary.LittleEndian.Uint64(buf)
	total := binary.LittleEndian.Uint64(buf[8:])
	chunk := binary.LittleEndian.Uint32(buf[16:])
	streams := int(binary.LittleEndian.Uint16(buf[20:]))
	var bad string
	switch {
	case chunk < MinChunkSize || chunk > MaxChunkSize:
		bad = fmt.Sprintf("chunk size %d outside [%d, %d]", chunk, MinChunkSize, MaxChunkSize)
	case streams < 1 || streams > MaxBulkLanes:
		bad = fmt.Sprintf("%d streams", streams)
	case uint64(streams) > max(1, (total+uint64(chunk)-1)/uint64(chunk)):
		bad = fmt.Sprintf("%d streams for %d bytes", streams, total)
	}
	if bad != "" {
		writeStatus(s, BulkProtocol, bad)
		s.CancelRead(streamProtocol)
		return
	}

	r.mu.Lock()
	t := r.getLocked(id)
	t.arrived++
	switch {
	case t.ended:
		// A late stream of a failed transfer: refused below.
	case !t.haveHdr:
		t.haveHdr, t.total, t.chunk, t.streams = true, total, chunk, streams
		if !t.registered && t.timer == nil {
			t.timer = r.afterLocked(t, func() {
				r.failLocked(t, BulkRefused, fmt.Errorf("peers: bulk transfer %d: no receiver within %v", t.id, r.c.cfg.OrphanTimeout))
			})
		}
		r.prepareLocked(t)
	case t.total != total || t.chunk != chunk || t.streams != streams || t.arrived > t.streams:
		r.failLocked(t, BulkProtocol, fmt.Errorf("peers: bulk transfer %d: streams disagree on the transfer", id))
	}
	if t.ended {
		code, msg := t.code, t.err.Error()
		r.retireLocked(t)
		r.mu.Unlock()
		writeStatus(s, code, msg)
		s.CancelRead(streamRefused)
		return
	}
	t.open = append(t.open, s)
	t.readers.Add(1)
	r.mu.Unlock()

	select {
	case <-t.ready:
	case <-c.ctx.Done():
		t.readers.Done()
		s.CancelRead(streamCanceled)
		s.CancelWrite(streamCanceled)
		return
	}
	code, err := c.readChunks(s, t, buf[:wire.ChunkHeaderSize])
	t.readers.Done()

	r.mu.Lock()
	if err != nil {
		r.failLocked(t, code, err)
	} else if !t.ended {
		t.finished++
		r.maybeDoneLocked(t)
	}
	status, msg := bulkOK, ""
	if t.err != nil {
		// This stream's failure, or a sibling's that ended the transfer.
		status, msg = t.code, t.err.Error()
	}
	r.mu.Unlock()
	writeStatus(s, status, msg)
	if status != bulkOK {
		s.CancelRead(streamRefused)
	}
}

// readChunks reads chunks into t.dst until the stream's FIN.
func (c *Conn) readChunks(s *quic.Stream, t *transfer, hdr []byte) (BulkCode, error) {
	for {
		if t.failed.Load() {
			return BulkRefused, errors.New("transfer failed")
		}
		if _, err := io.ReadFull(s, hdr); err != nil {
			if err == io.EOF {
				return bulkOK, nil
			}
			return BulkProtocol, fmt.Errorf("peers: bulk transfer %d: %w", t.id, c.streamErr(err))
		}
		ch, _ := wire.ParseChunkHeader(hdr)
		if ch.Offset >= t.total || ch.Offset%uint64(t.chunk) != 0 ||
			uint64(ch.Len) != min(uint64(t.chunk), t.total-ch.Offset) {
			return BulkProtocol, fmt.Errorf("peers: bulk transfer %d: bad chunk at offset %d, %d bytes", t.id, ch.Offset, ch.Len)
		}
		i := ch.Offset / uint64(t.chunk)
		mask := uint64(1) << (i % 64)
		if t.bits[i/64].Or(mask)&mask != 0 {
			return BulkProtocol, fmt.Errorf("peers: bulk transfer %d: chunk at offset %d sent twice", t.id, ch.Offset)
		}
		payload := t.dst[ch.Offset : ch.Offset+uint64(ch.Len)]
		if _, err := io.ReadFull(s, payload); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return BulkProtocol, fmt.Errorf("peers: bulk transfer %d: %w", t.id, c.streamErr(err))
		}
		if err := ch.Verify(payload); err != nil {
			return BulkChecksum, fmt.Errorf("peers: bulk transfer %d: %w", t.id, err)
		}
		t.remaining.Add(-int64(ch.Len))
	}
}
