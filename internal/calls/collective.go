package calls

import (
	"errors"
	"fmt"
	"math"

	"github.com/xgpu/xgpu/internal/wire"
)

// Collective opcodes. A communicator is a group of ranks, each a logical
// device of some worker; the client creates it on every worker that holds
// one of its ranks (OpCommInit), enqueues operations on the streams of the
// ranks' devices (OpCollective) and destroys it (OpCommDestroy). The data
// moves worker to worker over links of their own (OpCommLink and the
// frames after it), never through the client.
const (
	// OpCommInit creates communicator Aux on this worker for the ranks
	// that the table in Data (an encoded CommInit) places here; Aux2 is
	// this worker's index in the table. Synchronous: the reply comes once
	// this worker has a link to every other worker of the table.
	OpCommInit wire.Op = 64
	// OpCollective enqueues one operation of rank Dev2 (on logical device
	// Dev) of communicator Aux on Stream: Aux2 packs the kind, element
	// type, operator and root or peer (PackColl); Src is the send buffer,
	// Dst the receive buffer, N the count in elements (NCCL's count of
	// each operation). Asynchronous.
	OpCollective wire.Op = 65
	// OpCommDestroy destroys communicator Aux on this worker once the
	// operations already enqueued have run; Aux2 = 1 aborts them instead
	// (ncclCommAbort). Asynchronous.
	OpCommDestroy wire.Op = 66

	// Worker to worker, on a collective link. The dialer's first call
	// after Hello is OpCommLink with its key (CommWorker.Key) in Text.
	OpCommLink wire.Op = 67
	// OpCollReady tells the sender of a message that its receiver has
	// posted the receive: communicator Aux, tag Aux2, from rank Dev to
	// rank Dev2, N bytes expected; Src is the bulk transfer id to send the
	// bytes with, or 0 for an OpCollData frame.
	OpCollReady wire.Op = 68
	// OpCollData carries a small message inline: communicator Aux, tag
	// Aux2, from rank Dev to rank Dev2, Data.
	OpCollData wire.Op = 69
	// OpCollNack refuses a ready message whose length differs from the
	// sender's: communicator Aux, tag Aux2, from rank Dev to rank Dev2, N:
	// the bytes the sender has.
	OpCollNack wire.Op = 70
	// OpCommPeerDown says that rank Dev of communicator Aux is gone: N = 0
	// it left (its communicator was destroyed), N = 1 it failed and the
	// communicator is aborted on every rank.
	OpCommPeerDown wire.Op = 71
	// OpCollGroup enqueues the sends and receives of rank Dev2 (on logical
	// device Dev) of communicator Aux as one operation on Stream, as NCCL
	// runs the ncclSend/ncclRecv calls between ncclGroupStart and
	// ncclGroupEnd: they progress together, so two ranks may send to each
	// other in one group. Data is an encoded CollGroup of N operations.
	// Asynchronous.
	OpCollGroup wire.Op = 72

	// opLimit is one more than the largest opcode. The collective opcodes
	// are the last of the protocol; opcodes below 64 are numbered in
	// calls.go.
	opLimit = 73 // OpCollGroup + 1, untyped
)

// The collective opcodes join the tables of calls.go here, so that the two
// files can grow independently.
func init() {
	for op, e := range map[wire.Op]struct {
		name   string
		fields uint32
	}{
		OpCommInit:     {"CommInit", fAux | fAux2 | fData},
		OpCollective:   {"Collective", fDev | fDev2 | fStream | fDst | fSrc | fN | fAux | fAux2},
		OpCommDestroy:  {"CommDestroy", fAux | fAux2},
		OpCommLink:     {"CommLink", fText},
		OpCollReady:    {"CollReady", fDev | fDev2 | fSrc | fN | fAux | fAux2},
		OpCollData:     {"CollData", fDev | fDev2 | fAux | fAux2 | fData},
		OpCollNack:     {"CollNack", fDev | fDev2 | fN | fAux | fAux2},
		OpCommPeerDown: {"CommPeerDown", fDev | fN | fAux},
		OpCollGroup:    {"CollGroup", fDev | fDev2 | fStream | fN | fAux | fData},
	} {
		opNames[op], opFields[op] = e.name, e.fields
	}
}

// CollKind is the operation of an OpCollective.
type CollKind uint8

// Collective operations.
const (
	CollAllReduce     CollKind = 1 // count: elements of send and recv
	CollReduceScatter CollKind = 2 // count: elements of recv; send holds size*count
	CollAllGather     CollKind = 3 // count: elements of send; recv holds size*count
	CollBroadcast     CollKind = 4 // count: elements; root reads send, every rank writes recv
	CollReduce        CollKind = 5 // count: elements; root writes recv
	CollAllToAll      CollKind = 6 // count: elements per rank; send and recv hold size*count
	CollSend          CollKind = 7 // count: elements of Src sent to rank peer
	CollRecv          CollKind = 8 // count: elements received from rank peer into Dst
)

var collNames = [...]string{
	CollAllReduce: "all-reduce", CollReduceScatter: "reduce-scatter", CollAllGather: "all-gather",
	CollBroadcast: "broadcast", CollReduce: "reduce", CollAllToAll: "all-to-all", CollSend: "send", CollRecv: "recv",
}

// Valid reports whether k is a known operation.
func (k CollKind) Valid() bool { return k >= CollAllReduce && k <= CollRecv }

func (k CollKind) String() string {
	if !k.Valid() {
		return fmt.Sprintf("CollKind(%d)", uint8(k))
	}
	return collNames[k]
}

// PackColl packs the kind, element type (ncclDataType_t), reduction
// operator (ncclRedOp_t) and root or peer rank of an OpCollective into
// its Aux2.
func PackColl(kind CollKind, dtype, op uint8, peer uint32) uint64 {
	return uint64(kind) | uint64(dtype)<<8 | uint64(op)<<16 | uint64(peer)<<32
}

// UnpackColl is the inverse of PackColl. Bits 24..31 must be zero.
func UnpackColl(v uint64) (kind CollKind, dtype, op uint8, peer uint32, ok bool) {
	return CollKind(v), uint8(v >> 8), uint8(v >> 16), uint32(v >> 32), v>>24&0xff == 0
}

// ErrBadCollective is wrapped by the errors of CollBuffers and of decoding
// a CommInit.
var ErrBadCollective = errors.New("calls: bad collective arguments")

// CollBuffers checks the buffers of one rank's collective operation and
// returns the bytes of send and recv it uses (0 for a buffer the rank does
// not use): kind on rank of size ranks, count elements of elem bytes, peer
// the root (broadcast, reduce) or the other rank (send, recv). The buffers
// follow NCCL's conventions, and must not overlap unless the operation is
// in place as NCCL defines it for kind: send == recv for all-reduce,
// broadcast and reduce (on the root) and all-to-all; recv == send +
// rank*count elements for reduce-scatter; send == recv + rank*count
// elements for all-gather.
func CollBuffers(kind CollKind, rank, size, peer int, count, elem, send, recv uint64) (sendBytes, recvBytes uint64, err error) {
	switch {
	case !kind.Valid():
		return 0, 0, fmt.Errorf("%w: operation %d", ErrBadCollective, kind)
	case size < 1 || rank < 0 || rank >= size:
		return 0, 0, fmt.Errorf("%w: rank %d of %d", ErrBadCollective, rank, size)
	case elem == 0:
		return 0, 0, fmt.Errorf("%w: element size 0", ErrBadCollective)
	}
	switch kind {
	case CollBroadcast, CollReduce, CollSend, CollRecv:
		if peer < 0 || peer >= size {
			return 0, 0, fmt.Errorf("%w: %s with rank %d of %d", ErrBadCollective, kind, peer, size)
		}
		if (kind == CollSend || kind == CollRecv) && peer == rank {
			return 0, 0, fmt.Errorf("%w: %s with its own rank", ErrBadCollective, kind)
		}
	}
	if count > math.MaxInt64/elem/uint64(size) {
		return 0, 0, fmt.Errorf("%w: %d elements of %d bytes on %d ranks", ErrBadCollective, count, elem, size)
	}
	nb, all := count*elem, count*elem*uint64(size)
	inPlace := send == recv
	switch kind {
	case CollAllReduce:
		sendBytes, recvBytes = nb, nb
	case CollReduceScatter:
		sendBytes, recvBytes = all, nb
		inPlace = recv == send+uint64(rank)*nb
	case CollAllGather:
		sendBytes, recvBytes = nb, all
		inPlace = send == recv+uint64(rank)*nb
	case CollBroadcast:
		recvBytes = nb
		if rank == peer {
			sendBytes = nb
		}
	case CollReduce:
		sendBytes = nb
		if rank == peer {
			recvBytes = nb
		}
	case CollAllToAll:
		sendBytes, recvBytes = all, all
	case CollSend:
		sendBytes = nb
	case CollRecv:
		recvBytes = nb
	}
	if sendBytes > 0 && recvBytes > 0 && !inPlace && send < recv+recvBytes && recv < send+sendBytes {
		return 0, 0, fmt.Errorf("%w: %s buffers overlap without being in place", ErrBadCollective, kind)
	}
	return sendBytes, recvBytes, nil
}

// Limits of a CommInit.
const (
	// MaxCommRanks is the most ranks a communicator may have.
	MaxCommRanks = 1 << 16
	// commInitVersion is the first byte of an encoded CommInit.
	commInitVersion = 1
)

// CommInit is the Data of OpCommInit: the communicator's ranks, the
// workers that hold them and its options. Every worker of the
// communicator gets the same table.
type CommInit struct {
	Options CommOptions
	Workers []CommWorker
	Ranks   []CommRank // index: rank
}

// CommWorker is one worker of a communicator.
type CommWorker struct {
	Addr  string // data-plane address, host:port
	Token string // its session token, presented as "peer|" + Token in Hello
	Pin   string // hex SHA-256 of its certificate; empty: the cluster CA vouches for it
	Host  string // topology: ranks whose workers have equal Host share a server
}

// Key names the worker among the links of another: its address and pin.
// The worker with the smaller key of a pair dials the other.
func (w *CommWorker) Key() string { return w.Addr + "|" + w.Pin }

// CommRank is where one rank lives.
type CommRank struct {
	Dev    uint32 // logical device
	Worker uint32 // index in CommInit.Workers
}

// CommOptions are the tuning of collective.Options, which every rank must
// share, plus the bound on setting up links. Zero fields take the
// collective package's defaults.
type CommOptions struct {
	Algo          uint8  // collective.Algo: 0 auto, 1 ring, 2 tree, 3 hierarchical
	ChunkSize     uint32 // bytes per pipelined message
	Pipeline      uint32 // chunks in flight per rank
	TreeThreshold int64  // bytes below which Auto picks Tree; negative: never
	Timeout       int64  // nanoseconds without progress before an operation fails; negative: none
	InitTimeout   int64  // nanoseconds OpCommInit waits for links; 0: the worker's default
}

// Encode appends the encoded table to e.
func (ci *CommInit) Encode(e *wire.Enc) error {
	if len(ci.Ranks) == 0 || len(ci.Ranks) > MaxCommRanks || len(ci.Workers) == 0 || len(ci.Workers) > len(ci.Ranks) {
		return fmt.Errorf("%w: %d ranks on %d workers", ErrBadCollective, len(ci.Ranks), len(ci.Workers))
	}
	e.U8(commInitVersion)
	o := &ci.Options
	e.U8(o.Algo)
	e.U32(o.ChunkSize)
	e.U32(o.Pipeline)
	e.I64(o.TreeThreshold)
	e.I64(o.Timeout)
	e.I64(o.InitTimeout)
	e.U32(uint32(len(ci.Workers)))
	for i := range ci.Workers {
		w := &ci.Workers[i]
		for _, s := range [...]string{w.Addr, w.Token, w.Pin, w.Host} {
			if !e.String(s) {
				return fmt.Errorf("%w: worker %d: string too long", ErrBadCollective, i)
			}
		}
	}
	e.U32(uint32(len(ci.Ranks)))
	for _, r := range ci.Ranks {
		if int(r.Worker) >= len(ci.Workers) {
			return fmt.Errorf("%w: rank on worker %d of %d", ErrBadCollective, r.Worker, len(ci.Workers))
		}
		e.U32(r.Dev)
		e.U32(r.Worker)
	}
	return nil
}

// Decode fills ci from b. It never panics; a malformed table gives an
// error wrapping ErrBadCollective.
func (ci *CommInit) Decode(b []byte) error {
	*ci = CommInit{}
	d := wire.NewDec(b)
	if v := d.U8(); d.Err() == nil && v != commInitVersion {
		return fmt.Errorf("%w: table version %d", ErrBadCollective, v)
	}
	o := &ci.Options
	o.Algo = d.U8()
	o.ChunkSize = d.U32()
	o.Pipeline = d.U32()
	o.TreeThreshold = d.I64()
	o.Timeout = d.I64()
	o.InitTimeout = d.I64()
	nw := d.U32()
	// Each worker takes at least 16 bytes and each rank 8: the counts are
	// checked against what is left before anything is allocated.
	if d.Err() == nil && (nw == 0 || uint64(nw) > uint64(d.Len())/16) {
		return fmt.Errorf("%w: %d workers", ErrBadCollective, nw)
	}
	ci.Workers = make([]CommWorker, nw)
	for i := range ci.Workers {
		w := &ci.Workers[i]
		w.Addr, w.Token, w.Pin, w.Host = d.String(), d.String(), d.String(), d.String()
	}
	nr := d.U32()
	if d.Err() == nil && (nr == 0 || nr > MaxCommRanks || uint64(nr) != uint64(d.Len())/8 || nw > nr) {
		return fmt.Errorf("%w: %d ranks on %d workers", ErrBadCollective, nr, nw)
	}
	ci.Ranks = make([]CommRank, nr)
	for i := range ci.Ranks {
		ci.Ranks[i] = CommRank{Dev: d.U32(), Worker: d.U32()}
		if d.Err() == nil && ci.Ranks[i].Worker >= nw {
			return fmt.Errorf("%w: rank %d on worker %d of %d", ErrBadCollective, i, ci.Ranks[i].Worker, nw)
		}
	}
	if err := d.Done(); err != nil {
		return fmt.Errorf("%w: %w", ErrBadCollective, err)
	}
	return nil
}

// MaxGroupOps bounds the operations of one CollGroup: a send and a receive
// for every peer of a communicator of 8192 ranks.
const MaxGroupOps = 1 << 14

// groupVersion is the first byte of an encoded CollGroup.
const groupVersion = 1

// GroupOp is one send or receive of a CollGroup: Count elements of type
// DType (ncclDataType_t) at Buf, a device pointer of the rank's device,
// sent to or received from rank Peer. Inside a group a rank may send to
// itself; each such send is matched with a receive from itself, in order.
type GroupOp struct {
	Recv  bool
	DType uint8
	Peer  uint32
	Buf   uint64
	Count uint64
}

// groupOpSize is the encoded size of one GroupOp.
const groupOpSize = 1 + 1 + 4 + 8 + 8

// EncodeGroup appends ops, encoded as the Data of OpCollGroup, to e.
func EncodeGroup(e *wire.Enc, ops []GroupOp) error {
	if len(ops) == 0 || len(ops) > MaxGroupOps {
		return fmt.Errorf("%w: a group of %d operations (1 to %d)", ErrBadCollective, len(ops), MaxGroupOps)
	}
	e.U8(groupVersion)
	e.U32(uint32(len(ops)))
	for _, o := range ops {
		var f uint8
		if o.Recv {
			f = 1
		}
		e.U8(f)
		e.U8(o.DType)
		e.U32(o.Peer)
		e.U64(o.Buf)
		e.U64(o.Count)
	}
	return nil
}

// DecodeGroup decodes the Data of OpCollGroup, which must hold n
// operations. It never panics; a malformed group gives an error wrapping
// ErrBadCollective. The operations' values are not checked against a
// communicator (see GroupBytes).
func DecodeGroup(b []byte, n uint64) ([]GroupOp, error) {
	d := wire.NewDec(b)
	if v := d.U8(); d.Err() == nil && v != groupVersion {
		return nil, fmt.Errorf("%w: group version %d", ErrBadCollective, v)
	}
	k := d.U32()
	if d.Err() != nil || k == 0 || k > MaxGroupOps || uint64(k) != n || uint64(d.Len()) != uint64(k)*groupOpSize {
		return nil, fmt.Errorf("%w: a group of %d operations in %d bytes, call says %d", ErrBadCollective, k, len(b), n)
	}
	ops := make([]GroupOp, k)
	for i := range ops {
		f := d.U8()
		if f > 1 {
			return nil, fmt.Errorf("%w: operation %d: flags %#x", ErrBadCollective, i, f)
		}
		ops[i] = GroupOp{Recv: f == 1, DType: d.U8(), Peer: d.U32(), Buf: d.U64(), Count: d.U64()}
	}
	if err := d.Done(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadCollective, err)
	}
	return ops, nil
}

// GroupBytes checks op of a group of a rank of a communicator of size
// ranks, with elements of elem bytes, and returns its bytes.
func GroupBytes(op GroupOp, size int, elem uint64) (uint64, error) {
	switch {
	case int64(op.Peer) >= int64(size):
		return 0, fmt.Errorf("%w: peer %d of %d ranks", ErrBadCollective, op.Peer, size)
	case elem == 0:
		return 0, fmt.Errorf("%w: element size 0", ErrBadCollective)
	case op.Count > math.MaxInt64/elem:
		return 0, fmt.Errorf("%w: %d elements of %d bytes", ErrBadCollective, op.Count, elem)
	}
	return op.Count * elem, nil
}
