package collective

import "context"

// Transport moves messages between the ranks of one communicator. Each rank
// has its own Transport value (its endpoint); New hands it to the Comm,
// which owns it from then on and closes it.
//
// # Messages and tags
//
// Send(ctx, peer, tag, p) delivers p to the Recv(ctx, from, tag, q) that the
// peer posts with the sender's rank as from and the same tag. A message is
// matched by (sender, receiver, tag) only: messages with different tags may
// be matched and delivered in any order, and the Comm assumes no order
// between them. The Comm keeps each (sender, receiver, tag) unique among the
// messages that may be in flight and reuses a tag only long after both
// calls with it returned, so an implementation needs no sequence numbers of
// its own. A tag is an opaque 64-bit number; an implementation that carries
// several communicators over one connection must add its own communicator
// id (the QUIC one: bulk id = hash(comm id, tag) or a per-comm id space).
//
// Lengths are exact: len(q) must equal len(p). A mismatch fails both calls
// with an error wrapping ErrMismatch. The Comm never sends a message of
// zero bytes and never sends to its own rank.
//
// Send may block until the peer posts the matching Recv and return only
// once the bytes are in the receiver's buffer (the in-memory transport and
// peers.Conn.SendBulk both do); the Comm therefore always has the matching
// Recv posted, or about to be, by a goroutine of its own and never waits for
// a Send before posting the Recv it pairs with. An implementation may also
// buffer and return early, but a message whose Send returned nil must then
// still be delivered if the sender closes its endpoint right after (a rank
// closes its Comm as soon as its own last operation returns).
//
// # Buffers
//
// Send reads p and Recv writes q only between the call and its return; once
// a call returns, on success or on error (including ctx's cancellation), the
// implementation holds no reference to the buffer. After an error q may
// hold part of the message. Slices may point at device memory (see
// Reducer); an implementation for the cuda backend copies with the device
// (a peer copy for a rank of the same host, D2H staging for the network).
//
// # Failures
//
// Every call must return, never hang:
//   - when ctx is done: an error wrapping context.Cause(ctx), promptly;
//   - when the peer is lost (its process died, the connection broke, or it
//     closed its endpoint): an error wrapping ErrPeerLost, for calls
//     pending then and every later call with that peer. The time from the
//     loss to these errors is the implementation's dead-peer bound D: a
//     peer that closes is seen at once (a QUIC CONNECTION_CLOSE), one that
//     dies silently within the keep-alive idle timeout (5 s by default for
//     the peers package);
//   - after Close of this endpoint: an error wrapping ErrClosed.
//
// The Comm closes its Transport when an operation fails part-way, so the
// failure reaches every rank as ErrPeerLost, hop by hop, within D plus
// the time to propagate a close per hop; Options.Timeout bounds the rest.
//
// # Topology
//
// Host(r) names the server that holds rank r (a server address or any
// other id); ranks with equal Host are on one server and talk through its
// local path (NVLink peer copies, shared memory). Host must return the same
// answers on every rank.
//
// All methods are safe for concurrent use by many goroutines.
type Transport interface {
	// Send delivers p to peer's Recv with the same tag (see above).
	Send(ctx context.Context, peer int, tag uint64, p []byte) error
	// Recv receives into p the message peer sends with tag (see above).
	Recv(ctx context.Context, peer int, tag uint64, p []byte) error
	// Host returns the id of the server that holds rank r.
	Host(r int) string
	// Close ends this endpoint: pending and later calls fail, and peers
	// see ErrPeerLost. Close is idempotent.
	Close() error
}
