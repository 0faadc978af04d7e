package peers

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// A local lane carries the bulk transfers of a Conn through shared memory
// when both ends run on one host (DESIGN, "Local fast path"): a client on
// the machine of the server it uses, or two workers of one server. The
// call stream stays on QUIC; SendBulk and RecvBulk move the payload
// through the lane once one is attached, with one memory copy on each
// side instead of TLS, QUIC packets and checksums.
//
// Each end owns a ring of slots in a memfd it shares with the other (sent
// over a Unix socket with SCM_RIGHTS): a sender copies a piece of its
// payload into a free slot of its own ring and sends a short DATA message
// on the lane's Unix socket (SOCK_SEQPACKET, abstract name); the receiver
// copies the slot into the destination of the RecvBulk with the same id,
// gives the slot back (ACK), and once every byte is placed tells the
// sender (DONE), whose SendBulk then returns, as over QUIC. Each piece
// carries its xxhash64, checked once it is in the destination, as every
// bulk chunk is (a mismatch fails the transfer with *wire.ChecksumError),
// so that a peer writing its ring while the piece is copied out is caught
// like corruption on a wire. Pieces that
// arrive before their RecvBulk wait in their slots, up to
// Config.OrphanTimeout.
//
// The lane is set up by OfferLocal on one end and JoinLocal on the other,
// through a name and a one-time token the two ends exchange over the
// Conn's authenticated call stream; the abstract socket is reachable only
// from the same host and network namespace, which is what decides whether
// a lane is possible. A lane that breaks fails the Conn, like a lost QUIC
// connection.

// ErrLocalUnsupported is returned by OfferLocal and JoinLocal where local
// lanes cannot work (not Linux).
var ErrLocalUnsupported = errors.New("peers: local lanes need Linux")

// Geometry of a local lane's rings: LocalSlots slots of LocalSlotSize
// bytes per direction (64 MiB).
const (
	LocalSlotSize = 4 << 20
	LocalSlots    = 16
)

// localTokenSize is the length of the token that admits a JoinLocal.
const localTokenSize = 32

// Messages on the lane's socket: one fixed-size datagram each.
const (
	msgData   = 1 // slot, id, total, off, n, sum: a piece of transfer id is in slot, sum its xxhash64
	msgAck    = 2 // slot: the receiver is done with slot
	msgDone   = 3 // id, status: transfer id is placed (0) or refused (1)
	msgCancel = 4 // id: the sender gave up on transfer id
	msgSize   = 48
	noSlot    = ^uint32(0)
)

// localMsg is one message; its encoding is in local_linux.go.
type localMsg struct {
	typ    uint8
	slot   uint32
	id     uint64
	total  uint64
	off    uint64
	n      uint32
	status uint32
	sum    uint64 // DATA: xxhash64 of the piece
}

// localXfer is one incoming transfer on a lane.
type localXfer struct {
	id         uint64
	dst        []byte
	registered bool
	ended      bool
	remaining  atomic.Int64
	pending    []localMsg   // pieces that came before RecvBulk
	copying    sync.RWMutex // held for reading while a piece is copied into dst
	done       chan error   // buffered 1: the transfer's outcome
	timer      *time.Timer
}

// localWait is a SendBulk waiting for its DONE.
type localWait struct {
	done chan error // buffered 1
}

// errLocalRefused is a DONE with a refusal, from the receiver.
var errLocalRefused = errors.New("peers: local lane: the receiver refused the transfer (size mismatch, timeout or cancelled)")

// HasLocal reports whether a local lane carries the Conn's bulk transfers.
func (c *Conn) HasLocal() bool { return c.localLane() != nil }

func (c *Conn) localLane() *localLane { return c.local.Load() }

// attachLocal makes l the Conn's lane; there can be one.
func (c *Conn) attachLocal(l *localLane) error {
	if err := c.Err(); err != nil {
		return err
	}
	if !c.local.CompareAndSwap(nil, l) {
		return errors.New("peers: a local lane is already attached")
	}
	return nil
}
