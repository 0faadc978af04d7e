package collective

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
)

// LocalNetwork connects the endpoints of n ranks in one process through
// memory. It behaves like the network transport: Send blocks until the
// matching Recv is posted and returns once the bytes are copied (one copy,
// made by whichever side arrives second), calls honour their context, and a
// rank that is closed or killed fails every pending and later call of its
// peers with ErrPeerLost at once (its dead-peer bound is zero). It is the
// transport of the tests and of the host-backend benchmarks, and it is safe
// for concurrent use.
type LocalNetwork struct {
	hosts []string
	eps   []*LocalTransport
	pairs []localPair // [src*n+dst]
	bytes atomic.Int64
}

// localPair holds the unmatched messages from one rank to another.
type localPair struct {
	mu sync.Mutex           // guards m and the claimed flags of its messages
	m  map[uint64]*localMsg // by tag
	_  [40]byte             // keep pairs on separate cache lines
}

// localMsg is one posted, unmatched Send or Recv.
type localMsg struct {
	send    bool // posted by Send; else by Recv
	buf     []byte
	claimed bool          // the other side took it; guarded by localPair.mu
	err     error         // set before done is closed
	done    chan struct{} // closed once the copy is made or failed
}

// NewLocalNetwork returns a network of len(hosts) ranks; rank r is on host
// hosts[r]. It panics if hosts is empty, a programming error.
func NewLocalNetwork(hosts []string) *LocalNetwork {
	n := len(hosts)
	if n == 0 {
		panic("collective: NewLocalNetwork with no ranks")
	}
	net := &LocalNetwork{hosts: append([]string(nil), hosts...), eps: make([]*LocalTransport, n), pairs: make([]localPair, n*n)}
	for i := range net.pairs {
		net.pairs[i].m = make(map[uint64]*localMsg)
	}
	for r := range net.eps {
		net.eps[r] = &LocalTransport{net: net, rank: r, down: make(chan struct{})}
	}
	return net
}

// Size returns the number of ranks.
func (n *LocalNetwork) Size() int { return len(n.eps) }

// Transport returns rank r's endpoint. It panics if r is out of range.
func (n *LocalNetwork) Transport(r int) *LocalTransport { return n.eps[r] }

// Kill makes rank r die as a crashed process would: every pending and later
// call of r fails, and its peers' calls with r fail with ErrPeerLost.
func (n *LocalNetwork) Kill(r int) {
	n.eps[r].shut(fmt.Errorf("%w: rank %d died", ErrPeerLost, r), fmt.Errorf("collective: rank %d was killed", r))
}

// BytesMoved returns the payload bytes copied so far.
func (n *LocalNetwork) BytesMoved() int64 { return n.bytes.Load() }

// LocalTransport is one rank's endpoint of a LocalNetwork.
type LocalTransport struct {
	net  *LocalNetwork
	rank int

	once sync.Once
	down chan struct{} // closed by Close or Kill
	// Set once, before down is closed.
	peerErr error // what peers see
	selfErr error // what this rank's own calls see
}

var _ Transport = (*LocalTransport)(nil)

// Rank returns the endpoint's rank.
func (t *LocalTransport) Rank() int { return t.rank }

// Host implements Transport.
func (t *LocalTransport) Host(r int) string {
	if r < 0 || r >= len(t.net.hosts) {
		return ""
	}
	return t.net.hosts[r]
}

// Close implements Transport.
func (t *LocalTransport) Close() error {
	t.shut(fmt.Errorf("%w: rank %d closed", ErrPeerLost, t.rank), ErrClosed)
	return nil
}

func (t *LocalTransport) shut(peerErr, selfErr error) {
	t.once.Do(func() {
		t.peerErr, t.selfErr = peerErr, selfErr
		close(t.down)
	})
}

// dead reports why a call of t with peer p cannot go on, or nil.
func (t *LocalTransport) dead(p *LocalTransport) error {
	select {
	case <-t.down:
		return t.selfErr
	default:
	}
	select {
	case <-p.down:
		return p.peerErr
	default:
	}
	return nil
}

// Send implements Transport.
func (t *LocalTransport) Send(ctx context.Context, peer int, tag uint64, p []byte) error {
	return t.post(ctx, true, peer, tag, p)
}

// Recv implements Transport.
func (t *LocalTransport) Recv(ctx context.Context, peer int, tag uint64, p []byte) error {
	return t.post(ctx, false, peer, tag, p)
}

func (t *LocalTransport) post(ctx context.Context, send bool, peer int, tag uint64, buf []byte) error {
	verb, dir := "recv", "from"
	if send {
		verb, dir = "send", "to"
	}
	n := len(t.net.eps)
	if peer < 0 || peer >= n || peer == t.rank {
		return fmt.Errorf("%w: %s %s rank %d of %d (self %d)", ErrInvalidArgument, verb, dir, peer, n, t.rank)
	}
	pe := t.net.eps[peer]
	if err := t.dead(pe); err != nil {
		return err
	}
	if err := context.Cause(ctx); err != nil {
		return err
	}
	src, dst := t.rank, peer
	if !send {
		src, dst = peer, t.rank
	}
	pr := &t.net.pairs[src*n+dst]

	pr.mu.Lock()
	if m := pr.m[tag]; m != nil {
		if m.send == send {
			pr.mu.Unlock()
			return fmt.Errorf("%w: two %ss %s rank %d with tag %#x", ErrMismatch, verb, dir, peer, tag)
		}
		delete(pr.m, tag)
		m.claimed = true
		pr.mu.Unlock()
		err := t.net.deliver(m, send, buf, tag)
		close(m.done)
		return err
	}
	m := &localMsg{send: send, buf: buf, done: make(chan struct{})}
	pr.m[tag] = m
	pr.mu.Unlock()

	var err error
	select {
	case <-m.done:
		return m.err
	case <-ctx.Done():
		err = context.Cause(ctx)
	case <-t.down:
		err = t.selfErr
	case <-pe.down:
		err = pe.peerErr
	}
	pr.mu.Lock()
	if !m.claimed {
		delete(pr.m, tag)
		pr.mu.Unlock()
		return err
	}
	pr.mu.Unlock()
	// The other side is copying: the buffer is in use until it is done.
	<-m.done
	return m.err
}

// deliver makes the copy between a waiting message m and the arriving
// call's buf, and records the outcome for m.
func (n *LocalNetwork) deliver(m *localMsg, arrivingSend bool, buf []byte, tag uint64) error {
	if len(m.buf) != len(buf) {
		sl, rl := len(buf), len(m.buf)
		if !arrivingSend {
			sl, rl = rl, sl
		}
		err := fmt.Errorf("%w: message %#x of %d bytes met a receive of %d", ErrMismatch, tag, sl, rl)
		m.err = err
		return err
	}
	if arrivingSend {
		copy(m.buf, buf)
	} else {
		copy(buf, m.buf)
	}
	n.bytes.Add(int64(len(buf)))
	return nil
}
