package collective

import (
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

// Defaults for the zero values of Options.
const (
	// DefaultChunkSize is the size of one pipelined message.
	DefaultChunkSize = 1 << 20
	// DefaultPipeline is the number of chunks a rank works on at once.
	DefaultPipeline = 4
	// DefaultTreeThreshold is the message size below which Auto picks Tree.
	DefaultTreeThreshold = 256 << 10
	// DefaultTimeout bounds how long an operation waits without progress.
	DefaultTimeout = 5 * time.Minute
)

// maxElemSize is the size of the largest element type.
const maxElemSize = 8

// maxChunks bounds the messages one phase of an operation sends to one
// peer: the index field of a tag has 28 bits.
const maxChunks = 1 << 28

// Options tunes a Comm. The zero value is ready to use. Every rank of a
// communicator must use the same Algo, ChunkSize and TreeThreshold (they
// decide the message pattern); Pipeline and Timeout may differ.
type Options struct {
	// Algo forces an algorithm for every operation it applies to. Zero
	// (Auto) reads the XGPU_ALGO environment variable, and if that is unset
	// or "auto" chooses per call (see Auto).
	Algo Algo
	// ChunkSize is the size in bytes of one pipelined message, rounded down
	// to whole elements; values below 8 mean 8. Zero means
	// DefaultChunkSize (1 MiB).
	ChunkSize int
	// Pipeline is how many chunks one rank works on at once, so that the
	// sends, receives and reductions of different chunks overlap. Zero means
	// DefaultPipeline (4). Each pipeline unit in use holds 2*ChunkSize
	// bytes of scratch memory, kept until Close.
	Pipeline int
	// TreeThreshold is the message size in bytes below which Auto picks
	// Tree. Zero means DefaultTreeThreshold (256 KiB); negative turns Tree
	// off under Auto.
	TreeThreshold int
	// Timeout bounds how long an operation waits without completing any
	// message; it then fails with ErrTimeout (and the failure spreads to the
	// other ranks, see Comm). Zero means DefaultTimeout (5 minutes);
	// negative means no bound beyond the transport's own dead-peer bound.
	Timeout time.Duration
}

// Comm is one rank's handle on a communicator: size ranks that run
// collectives together over a Transport, reducing with a Reducer.
//
// Every rank must call the same collective operations, with the same
// counts, types, operators and roots, in the same order (as with NCCL).
// A Comm runs one operation at a time: calls from several goroutines are
// serialised, so a caller that needs a fixed order issues them from one
// goroutine (the worker runs them from the stream they were enqueued on).
//
// Failures: an operation that fails part-way (a lost peer, a timeout, a
// cancelled context) closes the Transport, so that every other rank's
// operation fails too instead of waiting, and leaves the Comm aborted: later
// operations fail at once with ErrAborted. A surviving rank's operation
// returns within the transport's dead-peer bound plus one close per hop of
// the algorithm after a peer dies, and never later than Options.Timeout
// after its last completed message. Bad arguments (ErrInvalidArgument) are
// reported before any message moves and change nothing.
type Comm struct {
	rank, size int
	t          Transport
	r          Reducer
	alloc      ScratchAllocator // nil: the Go heap
	opts       Options
	algo       Algo // Options.Algo, or XGPU_ALGO when that is Auto
	topo       topology

	closed atomic.Bool
	once   sync.Once

	mu      sync.Mutex // serialises operations; guards the fields below
	seq     uint32     // collective operations issued
	sendSeq []uint64   // point-to-point messages sent, per peer
	recvSeq []uint64   // point-to-point messages received, per peer
	err     error      // sticky failure, an *abortedError
	scratch [][]byte   // per pipeline worker: 2*ChunkSize bytes, allocated on first use
}

// topology is how the ranks sit on hosts.
type topology struct {
	hosts  [][]int // ranks of each host, ascending; hosts in order of their lowest rank
	hostOf []int   // host index of each rank
	local  []int   // index of each rank inside its host
	ring   []int   // ranks with the ranks of each host together
	pos    []int   // position of each rank in ring
	leader []int   // lowest rank of each host
}

func newTopology(t Transport, size int) topology {
	var tp topology
	idx := make(map[string]int)
	tp.hostOf = make([]int, size)
	tp.local = make([]int, size)
	for r := range size {
		h := t.Host(r)
		i, ok := idx[h]
		if !ok {
			i = len(tp.hosts)
			idx[h] = i
			tp.hosts = append(tp.hosts, nil)
			tp.leader = append(tp.leader, r)
		}
		tp.hostOf[r] = i
		tp.local[r] = len(tp.hosts[i])
		tp.hosts[i] = append(tp.hosts[i], r)
	}
	tp.pos = make([]int, size)
	for _, rs := range tp.hosts {
		for _, r := range rs {
			tp.pos[r] = len(tp.ring)
			tp.ring = append(tp.ring, r)
		}
	}
	return tp
}

// maxLocal returns the most ranks any host holds.
func (tp *topology) maxLocal() int {
	m := 0
	for _, rs := range tp.hosts {
		m = max(m, len(rs))
	}
	return m
}

// New returns rank's handle on a communicator of size ranks. It takes
// ownership of t (Close closes it). r == nil means CPUReducer. No message
// moves: every rank calls New with its own rank and Transport, and the
// first operation meets the others.
func New(rank, size int, t Transport, r Reducer, opts Options) (*Comm, error) {
	if size < 1 || rank < 0 || rank >= size {
		return nil, fmt.Errorf("%w: rank %d of %d", ErrInvalidArgument, rank, size)
	}
	if t == nil {
		return nil, fmt.Errorf("%w: nil transport", ErrInvalidArgument)
	}
	if r == nil {
		r = CPUReducer{}
	}
	if opts.ChunkSize < 0 || opts.Pipeline < 0 {
		return nil, fmt.Errorf("%w: negative ChunkSize %d or Pipeline %d", ErrInvalidArgument, opts.ChunkSize, opts.Pipeline)
	}
	if opts.Algo < Auto || opts.Algo > Hierarchical {
		return nil, fmt.Errorf("%w: algorithm %v", ErrInvalidArgument, opts.Algo)
	}
	if opts.ChunkSize == 0 {
		opts.ChunkSize = DefaultChunkSize
	}
	opts.ChunkSize = max(opts.ChunkSize, maxElemSize)
	if opts.Pipeline == 0 {
		opts.Pipeline = DefaultPipeline
	}
	if opts.TreeThreshold == 0 {
		opts.TreeThreshold = DefaultTreeThreshold
	}
	if opts.Timeout == 0 {
		opts.Timeout = DefaultTimeout
	}
	algo := opts.Algo
	if algo == Auto {
		a, err := ParseAlgo(os.Getenv(EnvAlgo))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", EnvAlgo, err)
		}
		algo = a
	}
	tp := newTopology(t, size)
	c := &Comm{
		rank: rank, size: size, t: t, r: r, opts: opts, algo: algo, topo: tp,
		sendSeq: make([]uint64, size), recvSeq: make([]uint64, size),
	}
	c.alloc, _ = r.(ScratchAllocator)
	return c, nil
}

// Rank returns this handle's rank.
func (c *Comm) Rank() int { return c.rank }

// Size returns the number of ranks.
func (c *Comm) Size() int { return c.size }

// Hosts returns the number of hosts the ranks span.
func (c *Comm) Hosts() int { return len(c.topo.hosts) }

// Algo returns the algorithm forced by Options.Algo or XGPU_ALGO, or Auto.
func (c *Comm) Algo() Algo { return c.algo }

// Close closes the Transport, failing any operation in progress, and
// releases the scratch memory. Later operations fail with ErrClosed. Close
// is idempotent.
func (c *Comm) Close() error {
	var err error
	c.once.Do(func() {
		c.closed.Store(true)
		err = c.t.Close()
	})
	c.mu.Lock()
	c.freeScratchLocked()
	c.mu.Unlock()
	return err
}

func (c *Comm) freeScratchLocked() {
	for _, b := range c.scratch {
		c.free(b)
	}
	c.scratch = nil
}

func (c *Comm) allocBuf(n int) ([]byte, error) {
	if c.alloc != nil {
		b, err := c.alloc.AllocScratch(n)
		if err != nil {
			return nil, fmt.Errorf("collective: scratch of %d bytes: %w", n, err)
		}
		if len(b) != n {
			return nil, fmt.Errorf("collective: scratch allocator returned %d bytes, want %d", len(b), n)
		}
		return b, nil
	}
	return make([]byte, n), nil
}

func (c *Comm) free(b []byte) {
	if c.alloc != nil {
		c.alloc.FreeScratch(b)
	}
}

// chunkElems returns the elements in one pipelined message.
func (c *Comm) chunkElems(es int) int { return max(1, c.opts.ChunkSize/es) }

// tmpLocked returns worker w's two scratch chunks of chunk bytes each
// (chunk <= ChunkSize).
func (c *Comm) tmpLocked(w, chunk int) (*[2][]byte, error) {
	for len(c.scratch) <= w {
		b, err := c.allocBuf(2 * c.opts.ChunkSize)
		if err != nil {
			return nil, err
		}
		c.scratch = append(c.scratch, b)
	}
	b, cs := c.scratch[w], c.opts.ChunkSize
	return &[2][]byte{b[:chunk:chunk], b[cs : cs+chunk : cs+chunk]}, nil
}

// Tags. Bit 63 set: point-to-point, the rest a per-pair sequence number.
// Bit 63 clear: a collective, seq(31) | phase(4) | index(28).
const p2pBit = 1 << 63

// Phases: every phase of every algorithm has its own code, so no two
// messages of one operation between one pair of ranks share a tag.
const (
	phRingRS uint64 = iota + 1
	phRingAG
	phTreeUp
	phTreeDown
	phChainUp
	phChainDown
	phLocalUp
	phLocalDown
	phLeaderRS
	phLeaderAG
	phAllToAll
)

func collTag(seq uint32, phase uint64, idx int) uint64 {
	return uint64(seq&0x7fffffff)<<32 | phase<<28 | uint64(idx)&(maxChunks-1)
}

// task is one operation in progress: its context, watchdog and first error.
type task struct {
	c      *Comm
	ctx    context.Context
	cancel context.CancelCauseFunc
	seq    uint32
	es     int
	dt     DType
	redOp  Op
	last   atomic.Int64 // nanoseconds from start to the last progress
	start  time.Time

	tmu     sync.Mutex  // guards timer and stopped
	timer   *time.Timer // the watchdog; nil without Options.Timeout
	stopped bool
}

// beginLocked checks the Comm's state and starts an operation. It returns an
// error that the caller wraps in an *OpError. c.mu is held.
// A collective (coll) takes the next sequence number.
func (c *Comm) beginLocked(ctx context.Context, dt DType, redOp Op, coll bool) (*task, error) {
	if err := c.stateLocked(); err != nil {
		return nil, err
	}
	if err := context.Cause(ctx); err != nil {
		return nil, err
	}
	o := &task{c: c, seq: c.seq, es: dt.Size(), dt: dt, redOp: redOp, start: time.Now()}
	if coll {
		c.seq++
	}
	o.ctx, o.cancel = context.WithCancelCause(ctx)
	if d := c.opts.Timeout; d > 0 {
		o.tmu.Lock()
		o.timer = time.AfterFunc(d, o.watch)
		o.tmu.Unlock()
	}
	return o, nil
}

// watch fails the operation if it made no progress for Options.Timeout,
// else sleeps until it could have.
func (o *task) watch() {
	d := o.c.opts.Timeout
	idle := time.Duration(int64(time.Since(o.start)) - o.last.Load())
	if idle >= d {
		o.cancel(fmt.Errorf("%w: no message completed for %v", ErrTimeout, d))
		return
	}
	o.tmu.Lock()
	defer o.tmu.Unlock()
	if !o.stopped {
		o.timer.Reset(d - idle)
	}
}

func (o *task) progress() { o.last.Store(int64(time.Since(o.start))) }

// fail ends the operation with err (the first failure wins).
func (o *task) fail(err error) { o.cancel(err) }

// endLocked finishes the operation: on failure it aborts the Comm. It returns the
// operation's error, or nil.
func (o *task) endLocked(err error) error {
	o.tmu.Lock()
	o.stopped = true
	if o.timer != nil {
		o.timer.Stop()
	}
	o.tmu.Unlock()
	if err == nil {
		o.cancel(nil)
		return nil
	}
	// The first failure is the cause; later ones are mostly its echo
	// (a goroutine that saw the operation's context end).
	o.cancel(err)
	err = context.Cause(o.ctx)
	o.c.err = &abortedError{cause: err}
	_ = o.c.t.Close()
	return err
}

func (o *task) send(peer int, tag uint64, p []byte) error {
	if len(p) == 0 {
		return nil
	}
	if err := o.c.t.Send(o.ctx, peer, tag, p); err != nil {
		return fmt.Errorf("send to rank %d: %w", peer, err)
	}
	o.progress()
	return nil
}

func (o *task) recv(peer int, tag uint64, p []byte) error {
	if len(p) == 0 {
		return nil
	}
	if err := o.c.t.Recv(o.ctx, peer, tag, p); err != nil {
		return fmt.Errorf("recv from rank %d: %w", peer, err)
	}
	o.progress()
	return nil
}

// pending is a send running on its own goroutine.
type pending chan error

// goSend starts a send; wait for it with join. A zero-length send is
// skipped (nil).
func (o *task) goSend(peer int, tag uint64, p []byte) pending {
	if len(p) == 0 {
		return nil
	}
	ch := make(pending, 1) // buffered: the goroutine never waits for join
	go func() { ch <- o.send(peer, tag, p) }()
	return ch
}

// join waits for s. If err (the caller's own step) is not nil the operation
// fails first, so that s stops; s's buffer is free once join returns.
func (o *task) join(s pending, err error) error {
	if err != nil {
		o.fail(err)
	}
	if s != nil {
		if serr := <-s; err == nil {
			err = serr
		}
	}
	return err
}

func (o *task) reduce(dst, src []byte) error {
	if len(dst) == 0 {
		return nil
	}
	if err := o.c.r.Reduce(dst, src, o.dt, o.redOp); err != nil {
		return fmt.Errorf("reduce: %w", err)
	}
	return nil
}

func (o *task) copy(dst, src []byte) error {
	if len(dst) == 0 || same(dst, src) {
		return nil
	}
	if err := o.c.r.Copy(dst, src); err != nil {
		return fmt.Errorf("copy: %w", err)
	}
	return nil
}

func (o *task) divide(buf []byte, n int) error {
	if len(buf) == 0 || n <= 1 {
		return nil
	}
	if err := o.c.r.Divide(buf, o.dt, n); err != nil {
		return fmt.Errorf("divide: %w", err)
	}
	return nil
}

// recvReduce receives from peer into r and leaves r = received op mine.
// When r is mine (in place) the message lands in tmp first.
func (o *task) recvReduce(peer int, tag uint64, r, mine, tmp []byte) error {
	if len(r) == 0 {
		return nil
	}
	if same(r, mine) {
		tmp = tmp[:len(r)]
		if err := o.recv(peer, tag, tmp); err != nil {
			return err
		}
		return o.reduce(r, tmp)
	}
	if err := o.recv(peer, tag, r); err != nil {
		return err
	}
	return o.reduce(r, mine)
}

// columns runs fn for every column (pipelined chunk) in [0, ncols): worker
// w of min(Pipeline, ncols) runs columns w, w+W, w+2W, ... in order, the
// same on every rank, with its own two scratch chunks of chunk bytes (none
// when chunk is 0).
func (o *task) columns(ncols, chunk int, fn func(col int, tmp *[2][]byte) error) error {
	return o.workers(ncols, min(o.c.opts.Pipeline, ncols), chunk, fn)
}

// all runs fn(i) for every i in [0, n) at once.
func (o *task) all(n int, fn func(i int) error) error {
	return o.workers(n, n, 0, func(i int, _ *[2][]byte) error { return fn(i) })
}

func (o *task) workers(ncols, w, chunk int, fn func(col int, tmp *[2][]byte) error) error {
	if ncols <= 0 {
		return nil
	}
	if ncols >= maxChunks {
		return fmt.Errorf("%w: %d chunks in one phase; raise ChunkSize", ErrInvalidArgument, ncols)
	}
	var tmps []*[2][]byte
	if chunk > 0 {
		tmps = make([]*[2][]byte, w)
		for k := range tmps {
			t, err := o.c.tmpLocked(k, chunk)
			if err != nil {
				return err
			}
			tmps[k] = t
		}
	}
	// A worker that stops before its last column reports why; the
	// operation succeeded only if every worker finished.
	run := func(k int) error {
		var tmp *[2][]byte
		if tmps != nil {
			tmp = tmps[k]
		}
		for col := k; col < ncols; col += w {
			if o.ctx.Err() != nil {
				return context.Cause(o.ctx)
			}
			if err := fn(col, tmp); err != nil {
				o.fail(err)
				return err
			}
		}
		return nil
	}
	if w == 1 {
		return run(0)
	}
	errs := make([]error, w)
	var wg sync.WaitGroup
	for k := range w {
		wg.Go(func() { errs[k] = run(k) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err // endLocked reports the first failure, the context's cause
		}
	}
	return nil
}

// same reports whether a and b start at the same address.
func same(a, b []byte) bool { return unsafe.SliceData(a) == unsafe.SliceData(b) }

// addr returns the address of b's first byte.
func addr(b []byte) uintptr { return uintptr(unsafe.Pointer(unsafe.SliceData(b))) }

// overlap reports whether the byte ranges of a and b intersect.
func overlap(a, b []byte) bool {
	if len(a) == 0 || len(b) == 0 {
		return false
	}
	pa, pb := addr(a), addr(b)
	return pa < pb+uintptr(len(b)) && pb < pa+uintptr(len(a))
}

func mod(a, n int) int { return ((a % n) + n) % n }

// span is the element range [off, off+n) of one part of a buffer.
type span struct{ off, n int }

// split cuts count elements into parts nearly equal parts (the first
// count%parts one larger) and returns part i.
func split(count, parts, i int) span {
	base, rem := count/parts, count%parts
	return span{off: i*base + min(i, rem), n: base + b2i(i < rem)}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// colOf returns column col of s, chunk elements wide (possibly empty).
func colOf(s span, col, chunk int) span {
	lo := min(col*chunk, s.n)
	hi := min(lo+chunk, s.n)
	return span{off: s.off + lo, n: hi - lo}
}

// bytesOf returns the bytes of span s in b.
func (o *task) bytesOf(b []byte, s span) []byte {
	return b[s.off*o.es : (s.off+s.n)*o.es : (s.off+s.n)*o.es]
}
