package runtime

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xgpu/xgpu/collective"
	"github.com/xgpu/xgpu/internal/calls"
	"github.com/xgpu/xgpu/internal/cudaerr"
	"github.com/xgpu/xgpu/internal/wire"
)

// Collectives: communicators over any set of the client's logical
// devices, on any servers (NCCL's ncclCommInitAll over a device list).
// Every operation is one small asynchronous call per rank, ordered on a
// stream of the rank's device like any other; the workers move the data
// between each other and reduce it, so no payload byte passes the client.
//
//	comm, err := c.CommInit([]int{0, 1, 2, 3}, runtime.CommOptions{})
//	for r := range comm.Size() {                    // one call per rank, as with NCCL
//		err = comm.AllReduce(r, buf[r], buf[r], n, collective.F32, collective.Sum, streams[r])
//	}
//	err = c.StreamSynchronize(streams[0])            // the result is in buf[0]; failures surface here
//	err = comm.Destroy()
//
// The operations' arguments follow NCCL's: counts in elements, in place
// when the buffers alias as NCCL defines it for the operation (see
// calls.CollBuffers). Every rank must issue the same operations in the same
// order. A failure (a rank that died, ranks that disagree, no progress
// within CommOptions.Timeout) is returned by the next synchronizing call
// of the rank's session, like any asynchronous error: with
// cudaErrorDevicesUnavailable for a lost or failed rank, cudaErrorTimeout,
// or cudaErrorInvalidValue; the communicator is then aborted on every rank
// and later operations on it fail the same way. docs/collectives.md has
// the algorithms and the failure bound.

// CommOptions tunes a communicator. The zero value is ready to use; every
// rank gets the same options.
type CommOptions struct {
	// Algo forces an algorithm. Zero (collective.Auto) reads the
	// XGPU_ALGO environment variable of this process ("ring", "tree",
	// "hierarchical", "auto"), and if that is unset or "auto" the workers
	// choose per operation from its size and the topology.
	Algo collective.Algo
	// ChunkSize is the size of one pipelined message in bytes. Zero:
	// collective.DefaultChunkSize (1 MiB).
	ChunkSize int
	// Pipeline is the number of chunks each rank works on at once. Zero:
	// collective.DefaultPipeline (4).
	Pipeline int
	// TreeThreshold is the operation size in bytes below which Auto picks
	// the tree algorithm. Zero: collective.DefaultTreeThreshold (256 KiB);
	// negative: never.
	TreeThreshold int
	// Timeout fails an operation that makes no progress for this long.
	// Zero: collective.DefaultTimeout (5 minutes); negative: no bound but
	// the dead-peer bound of the links.
	Timeout time.Duration
	// InitTimeout bounds how long CommInit waits for the workers to link
	// up. Zero: the workers' default (30 s).
	InitTimeout time.Duration
}

// Comm is a communicator: ranks 0..Size()-1, rank r on logical device
// Device(r). Its methods are safe for concurrent use; each rank's
// operations reach its worker in the order they are called.
type Comm struct {
	c         *Client
	id        uint64
	devs      []*device // device of each rank
	sessions  []*session
	destroyed atomic.Bool
}

// CommInit creates a communicator whose rank r is logical device devs[r]
// (NCCL's ncclCommInitAll). A device may appear once. It returns once
// every worker holding a rank has it and is linked to the others.
func (c *Client) CommInit(devs []int, opts CommOptions) (*Comm, error) {
	const op = "ncclCommInitAll"
	if len(devs) == 0 || len(devs) > calls.MaxCommRanks {
		return nil, opErr(op, -1, invalid("%d devices", len(devs)))
	}
	if opts.ChunkSize < 0 || opts.ChunkSize > math.MaxUint32 || opts.Pipeline < 0 || opts.Pipeline > 1024 || opts.InitTimeout < 0 {
		return nil, opErr(op, -1, invalid("options %+v out of range", opts))
	}
	algo := opts.Algo
	if algo == collective.Auto {
		a, err := collective.ParseAlgo(os.Getenv(collective.EnvAlgo))
		if err != nil {
			return nil, opErr(op, -1, invalid("%s: %v", collective.EnvAlgo, err))
		}
		algo = a
	}
	if algo < collective.Auto || algo > collective.Hierarchical {
		return nil, opErr(op, -1, invalid("algorithm %v", opts.Algo))
	}
	m := &Comm{c: c, devs: make([]*device, len(devs))}
	ci := calls.CommInit{Options: calls.CommOptions{
		Algo: uint8(algo), ChunkSize: uint32(opts.ChunkSize), Pipeline: uint32(opts.Pipeline),
		TreeThreshold: int64(opts.TreeThreshold), Timeout: int64(opts.Timeout), InitTimeout: int64(opts.InitTimeout),
	}}
	index := make(map[*session]int)
	seen := make(map[int]bool, len(devs))
	for r, dev := range devs {
		d, err := c.device(op, dev)
		if err != nil {
			return nil, err
		}
		if seen[dev] {
			return nil, opErr(op, dev, invalid("device %d is in the list twice", dev))
		}
		seen[dev] = true
		m.devs[r] = d
		w, ok := index[d.s]
		if !ok {
			w = len(ci.Workers)
			index[d.s] = w
			m.sessions = append(m.sessions, d.s)
			host := c.m.Devices[dev].Server
			if host == "" {
				host = d.s.server
			}
			ci.Workers = append(ci.Workers, calls.CommWorker{Addr: d.s.addr, Token: string(d.s.token), Pin: hex.EncodeToString(d.s.pin), Host: host})
		}
		ci.Ranks = append(ci.Ranks, calls.CommRank{Dev: uint32(dev), Worker: uint32(w)})
	}
	var e wire.Enc
	if err := ci.Encode(&e); err != nil {
		return nil, opErr(op, -1, invalid("%v", err))
	}
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, opErr(op, -1, err)
	}
	m.id = binary.LittleEndian.Uint64(b[:]) | 1
	// Every worker at once: each waits for its links to the others. The
	// first failure aborts the communicator everywhere, so that the others
	// stop waiting for a link from a worker that will not come.
	var (
		wg    sync.WaitGroup
		abort sync.Once
		first error // the failure that aborted the others
	)
	for w, s := range m.sessions {
		wg.Go(func() {
			_, _, err := s.roundTrip(calls.OpCommInit, &calls.Call{Aux: m.id, Aux2: uint64(w), Data: e.B})
			if err != nil {
				abort.Do(func() {
					first = opErr(op, s.devs[0], fmt.Errorf("worker %s: %w", s.addr, err))
					_ = m.end(op, 1)
				})
			}
		})
	}
	wg.Wait()
	if first != nil {
		return nil, first
	}
	return m, nil
}

// Size returns the number of ranks.
func (m *Comm) Size() int { return len(m.devs) }

// Device returns the logical device of rank, which must be in
// [0, Size()).
func (m *Comm) Device(rank int) int { return m.devs[rank].idx }

// Destroy destroys the communicator (ncclCommDestroy): each worker frees
// it once the operations already enqueued have run. Destroy does not
// wait; later operations on the communicator fail.
func (m *Comm) Destroy() error { return m.end("ncclCommDestroy", 0) }

// Abort destroys the communicator at once (ncclCommAbort): operations
// still pending fail, on every rank.
func (m *Comm) Abort() error { return m.end("ncclCommAbort", 1) }

func (m *Comm) end(op string, abort uint64) error {
	if m.destroyed.Swap(true) {
		return nil
	}
	var errs []error
	for _, s := range m.sessions {
		if err := s.async(calls.OpCommDestroy, &calls.Call{Aux: m.id, Aux2: abort}); err != nil {
			errs = append(errs, err)
		}
	}
	return opErr(op, m.devs[0].idx, errors.Join(errs...))
}

// AllReduce reduces count elements of send across the ranks with op into
// recv of every rank (ncclAllReduce), in stream s of rank's device.
func (m *Comm) AllReduce(rank int, send, recv uint64, count int, dt collective.DType, op collective.Op, s Stream) error {
	return m.issue("ncclAllReduce", rank, calls.CollAllReduce, send, recv, count, dt, op, 0, s)
}

// ReduceScatter reduces Size()*recvCount elements of send across the
// ranks with op; rank r gets block r of the result in recv
// (ncclReduceScatter).
func (m *Comm) ReduceScatter(rank int, send, recv uint64, recvCount int, dt collective.DType, op collective.Op, s Stream) error {
	return m.issue("ncclReduceScatter", rank, calls.CollReduceScatter, send, recv, recvCount, dt, op, 0, s)
}

// AllGather gathers sendCount elements of send from every rank into recv,
// rank r's at block r (ncclAllGather).
func (m *Comm) AllGather(rank int, send, recv uint64, sendCount int, dt collective.DType, s Stream) error {
	return m.issue("ncclAllGather", rank, calls.CollAllGather, send, recv, sendCount, dt, collective.Sum, 0, s)
}

// Broadcast copies count elements of root's send into recv of every rank
// (ncclBroadcast); send matters on root only.
func (m *Comm) Broadcast(rank int, send, recv uint64, count int, dt collective.DType, root int, s Stream) error {
	return m.issue("ncclBroadcast", rank, calls.CollBroadcast, send, recv, count, dt, collective.Sum, root, s)
}

// Reduce reduces count elements of send across the ranks with op into
// root's recv (ncclReduce); recv matters on root only.
func (m *Comm) Reduce(rank int, send, recv uint64, count int, dt collective.DType, op collective.Op, root int, s Stream) error {
	return m.issue("ncclReduce", rank, calls.CollReduce, send, recv, count, dt, op, root, s)
}

// AllToAll sends block j (count elements) of send to rank j, which
// receives it as block rank of its recv (ncclAlltoAll).
func (m *Comm) AllToAll(rank int, send, recv uint64, count int, dt collective.DType, s Stream) error {
	return m.issue("ncclAlltoAll", rank, calls.CollAllToAll, send, recv, count, dt, collective.Sum, 0, s)
}

// Send sends count elements of buf to rank peer (ncclSend); the k-th Send
// from a rank to peer meets peer's k-th Recv from it. A send waits for
// its receive: two ranks that send to each other must order their sends
// and receives so that one receives first.
func (m *Comm) Send(rank int, buf uint64, count int, dt collective.DType, peer int, s Stream) error {
	return m.issue("ncclSend", rank, calls.CollSend, buf, 0, count, dt, collective.Sum, peer, s)
}

// Recv receives count elements from rank peer into buf (ncclRecv).
func (m *Comm) Recv(rank int, buf uint64, count int, dt collective.DType, peer int, s Stream) error {
	return m.issue("ncclRecv", rank, calls.CollRecv, 0, buf, count, dt, collective.Sum, peer, s)
}

// P2P is one send or receive of Comm.Group: Count elements of DType at
// Buf, a device pointer on the rank's device, sent to or received from
// rank Peer.
type P2P struct {
	Recv  bool // receive into Buf; false: send Buf
	Peer  int
	Buf   uint64
	Count int
	DType collective.DType
}

// Group enqueues the sends and receives of rank on s as one operation,
// as NCCL runs the ncclSend and ncclRecv calls made between
// ncclGroupStart and ncclGroupEnd: they progress together, so ranks may
// exchange with each other in any order inside a group (separate Send and
// Recv calls run one after another, and a Send may wait for its Recv).
// Inside a group a rank may send to itself; its k-th send to itself
// meets its k-th receive from itself, which must be of the same size.
// The k-th message from a to b, counting single Sends and sends in groups
// alike, meets the k-th receive on b from a. At most
// calls.MaxGroupOps operations; bad arguments fail here and enqueue
// nothing.
func (m *Comm) Group(rank int, ops []P2P, s Stream) error {
	const op = "ncclGroupEnd"
	d, err := m.rankDevice(op, rank)
	if err != nil {
		return err
	}
	switch {
	case len(ops) == 0:
		return nil
	case len(ops) > calls.MaxGroupOps:
		return opErr(op, d.idx, invalid("a group of %d operations (at most %d)", len(ops), calls.MaxGroupOps))
	}
	wops := make([]calls.GroupOp, len(ops))
	var selfSends, selfRecvs []uint64
	moves := false
	for i, o := range ops {
		if !o.DType.Valid() || o.Count < 0 {
			return opErr(op, d.idx, invalid("operation %d: data type %v, count %d", i, o.DType, o.Count))
		}
		if o.Peer < 0 || o.Peer >= len(m.devs) {
			return opErr(op, d.idx, invalid("operation %d: peer %d of %d ranks", i, o.Peer, len(m.devs)))
		}
		w := calls.GroupOp{Recv: o.Recv, DType: uint8(o.DType), Peer: uint32(o.Peer), Buf: o.Buf, Count: uint64(o.Count)}
		n, err := calls.GroupBytes(w, len(m.devs), uint64(o.DType.Size()))
		if err != nil {
			return opErr(op, d.idx, invalid("operation %d: %v", i, err))
		}
		if n > 0 {
			moves = true
			bd, err := m.c.resolve(op, o.Buf, n)
			if err != nil {
				return err
			}
			if bd != d {
				return opErr(op, d.idx, invalid("operation %d: buffer %#x is on device %d, not on rank %d's device %d", i, o.Buf, bd.idx, rank, d.idx))
			}
		}
		if o.Peer == rank {
			if o.Recv {
				selfRecvs = append(selfRecvs, n)
			} else {
				selfSends = append(selfSends, n)
			}
		}
		wops[i] = w
	}
	if len(selfSends) != len(selfRecvs) {
		return opErr(op, d.idx, invalid("%d sends to self but %d receives from self", len(selfSends), len(selfRecvs)))
	}
	for k := range selfSends {
		if selfSends[k] != selfRecvs[k] {
			return opErr(op, d.idx, invalid("send %d to self of %d bytes meets a receive of %d", k, selfSends[k], selfRecvs[k]))
		}
	}
	st, err := m.c.streamFor(op, d, s)
	if err != nil {
		return err
	}
	if !moves {
		return nil
	}
	var e wire.Enc
	if err := calls.EncodeGroup(&e, wops); err != nil {
		return opErr(op, d.idx, invalid("%v", err))
	}
	call := calls.Call{Dev: uint32(d.idx), Dev2: uint32(rank), Stream: st.id, N: uint64(len(wops)), Aux: m.id, Data: e.B}
	return opErr(op, d.idx, d.s.async(calls.OpCollGroup, &call))
}

// rankDevice returns rank's device, or the error of an operation on it
// (client closed, rank out of range, communicator destroyed).
func (m *Comm) rankDevice(op string, rank int) (*device, error) {
	if m.c.closing.Load() {
		return nil, opErr(op, -1, ErrClosed)
	}
	if rank < 0 || rank >= len(m.devs) {
		return nil, opErr(op, -1, invalid("rank %d of %d", rank, len(m.devs)))
	}
	d := m.devs[rank]
	if m.destroyed.Load() {
		return nil, opErr(op, d.idx, &detailError{code: cudaerr.InvalidResourceHandle, msg: "communicator destroyed"})
	}
	return d, nil
}

// issue checks one rank's operation and sends it to the rank's worker.
func (m *Comm) issue(op string, rank int, kind calls.CollKind, send, recv uint64, count int, dt collective.DType, redOp collective.Op, peer int, s Stream) error {
	d, err := m.rankDevice(op, rank)
	if err != nil {
		return err
	}
	switch {
	case !dt.Valid():
		return opErr(op, d.idx, invalid("data type %v", dt))
	case !redOp.Valid():
		return opErr(op, d.idx, invalid("operator %v", redOp))
	case count < 0:
		return opErr(op, d.idx, invalid("count %d", count))
	}
	sb, rb, err := calls.CollBuffers(kind, rank, len(m.devs), peer, uint64(count), uint64(dt.Size()), send, recv)
	if err != nil {
		return opErr(op, d.idx, invalid("%v", err))
	}
	for _, b := range [...]struct {
		p, n uint64
	}{{send, sb}, {recv, rb}} {
		if b.n == 0 {
			continue
		}
		bd, err := m.c.resolve(op, b.p, b.n)
		if err != nil {
			return err
		}
		if bd != d {
			return opErr(op, d.idx, invalid("buffer %#x is on device %d, not on rank %d's device %d", b.p, bd.idx, rank, d.idx))
		}
	}
	st, err := m.c.streamFor(op, d, s)
	if err != nil {
		return err
	}
	if count == 0 {
		return nil
	}
	call := calls.Call{
		Dev: uint32(d.idx), Dev2: uint32(rank), Stream: st.id, Src: send, Dst: recv, N: uint64(count), Aux: m.id,
		Aux2: calls.PackColl(kind, uint8(dt), uint8(redOp), uint32(peer)),
	}
	return opErr(op, d.idx, d.s.async(calls.OpCollective, &call))
}

// String describes the communicator.
func (m *Comm) String() string {
	return fmt.Sprintf("communicator %#x of %d ranks on %d workers", m.id, len(m.devs), len(m.sessions))
}
