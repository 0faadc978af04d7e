package peers

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"

	"github.com/quic-go/quic-go"

	"github.com/xgpu/xgpu/internal/wire"
)

// Listener accepts data-plane connections. Accept returns a Conn once its
// call stream and all the bulk lanes its dialer asked for are set up. All
// its methods are safe for concurrent use; Close is idempotent.
type Listener struct {
	cfg   Config
	socks []*listenSocket // the first one's port is the listening port

	ctx    context.Context // done once Close is called
	cancel context.CancelCauseFunc
	// accepted holds Conns ready for Accept; buffered so that handshakes
	// complete while the application is busy.
	accepted chan *Conn
	wg       sync.WaitGroup // accept loop and handshakes

	mu      sync.Mutex // guards the fields below
	pending map[token]*pendingConn
	conns   map[*Conn]struct{} // accepted, not yet closed
}

// listenSocket is one UDP socket of a Listener with its QUIC listener.
type listenSocket struct {
	udp *net.UDPConn
	tr  *quic.Transport
	ql  *quic.Listener
}

func (ls *listenSocket) close() error {
	_ = ls.ql.Close()
	err := ls.tr.Close()
	if uerr := ls.udp.Close(); err == nil && uerr != nil && !errors.Is(uerr, net.ErrClosed) {
		err = uerr
	}
	return err
}

// pendingConn is a Conn whose bulk lanes are still joining.
type pendingConn struct {
	c      *Conn
	lanes  []*lane
	joined int
	all    chan struct{} // closed when the last lane joined
}

// acceptBacklog is how many set-up Conns may wait for Accept.
const acceptBacklog = 64

// Listen opens cfg.ListenSockets UDP sockets, the first on addr and the
// others on the ports after it (9 by default: port to port+8), and accepts
// data-plane connections on them; dialers put their call connection on the
// first and spread their bulk lanes over the others. tlsConf is the server
// side of mutual TLS (certs.LoadTLS, RoleServer); Listen insists on TLS 1.3
// and ALPN "xgpu/1".
func Listen(addr string, tlsConf *tls.Config, cfg *Config) (*Listener, error) {
	conf, err := populate(cfg)
	if err != nil {
		return nil, err
	}
	tlsConf, err = prepareTLS(tlsConf)
	if err != nil {
		return nil, err
	}
	laddr, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("peers: listen %s: %w", addr, err)
	}
	udps, err := listenUDPPorts(laddr, conf.ListenSockets, conf.SocketBuffer)
	if err != nil {
		return nil, fmt.Errorf("peers: listen %s: %w", addr, err)
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	l := &Listener{
		cfg:      conf,
		ctx:      ctx,
		cancel:   cancel,
		accepted: make(chan *Conn, acceptBacklog),
		pending:  make(map[token]*pendingConn),
		conns:    make(map[*Conn]struct{}),
	}
	for i, udp := range udps {
		tr := &quic.Transport{Conn: udp}
		ql, err := tr.Listen(tlsConf, conf.quicConfig())
		if err != nil {
			_ = tr.Close()
			for _, u := range udps[i:] {
				_ = u.Close()
			}
			for _, ls := range l.socks {
				_ = ls.close()
			}
			cancel(nil)
			return nil, fmt.Errorf("peers: listen %s: %w", addr, err)
		}
		l.socks = append(l.socks, &listenSocket{udp: udp, tr: tr, ql: ql})
	}
	for _, ls := range l.socks {
		l.wg.Go(func() { l.acceptLoop(ls.ql) })
	}
	return l, nil
}

// Addr returns the listening address.
func (l *Listener) Addr() net.Addr { return l.socks[0].udp.LocalAddr() }

// Accept returns the next set-up Conn. It fails with ErrListenerClosed
// after Close.
func (l *Listener) Accept(ctx context.Context) (*Conn, error) {
	select {
	case c := <-l.accepted:
		return c, nil
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	case <-l.ctx.Done():
		return nil, ErrListenerClosed
	}
}

// Close stops accepting and closes every Conn accepted through l (they
// share its sockets), telling their peers. It waits for l's goroutines.
func (l *Listener) Close() error {
	l.cancel(ErrListenerClosed)
	for _, ls := range l.socks {
		_ = ls.ql.Close()
	}
	l.wg.Wait()
	l.mu.Lock()
	conns := make([]*Conn, 0, len(l.conns))
	for c := range l.conns {
		conns = append(conns, c)
	}
	l.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
	}
	for drained := false; !drained; {
		select {
		case c := <-l.accepted: // set up, never accepted
			_ = c.Close()
		default:
			drained = true
		}
	}
	var err error
	for _, ls := range l.socks {
		if cerr := ls.close(); err == nil {
			err = cerr
		}
	}
	return err
}

// abort closes the listener's sockets without telling any peer, as a
// crash would (tests).
func (l *Listener) abort() {
	l.mu.Lock()
	conns := make([]*Conn, 0, len(l.conns))
	for c := range l.conns {
		c.closeOnce.Do(func() {}) // no CONNECTION_CLOSE, no stream resets
		conns = append(conns, c)
	}
	l.mu.Unlock()
	for _, ls := range l.socks {
		_ = ls.udp.Close()
	}
	// Only now stop the Conns' goroutines: nothing can reach the peers.
	for _, c := range conns {
		c.cancel(&ConnError{Remote: c.RemoteAddr(), Err: ErrClosed})
		l.forget(c)
	}
}

func (l *Listener) acceptLoop(ql *quic.Listener) {
	for {
		qc, err := ql.Accept(l.ctx)
		if err != nil {
			return
		}
		l.wg.Go(func() { l.handshake(qc) })
	}
}

// handshake reads the first frame of a new QUIC connection: a hello makes
// it the call connection of a new Conn, a join makes it a bulk lane of a
// pending one.
func (l *Listener) handshake(qc *quic.Conn) {
	ctx, cancel := context.WithTimeout(l.ctx, l.cfg.HandshakeTimeout)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { _ = qc.CloseWithError(codeProtocol, "handshake timed out") })
	c := l.setup(ctx, qc)
	if !stop() || c == nil {
		if c != nil {
			c.fail(fmt.Errorf("peers: handshake: %w", context.Cause(ctx)))
			_ = c.Close()
		}
		return
	}
	c.start()
	select {
	case l.accepted <- c:
	case <-l.ctx.Done():
		_ = c.Close()
	}
}

// setup runs the handshake of qc and returns the new Conn if qc carries a
// hello and all its lanes joined, or nil.
func (l *Listener) setup(ctx context.Context, qc *quic.Conn) *Conn {
	s, err := qc.AcceptStream(ctx)
	if err != nil {
		_ = qc.CloseWithError(codeProtocol, "no call stream")
		return nil
	}
	cs := &callStream{s: s}
	r := wire.NewReader(cs, 0)
	r.SetLimit(4 << 10) // handshake frames are tiny
	h, body, err := r.Next()
	if err != nil {
		_ = qc.CloseWithError(codeProtocol, "bad hello")
		return nil
	}
	r.SetLimit(wire.MaxFrameSize)
	switch h.Op {
	case opHello:
		return l.hello(ctx, qc, cs, r, body)
	case opJoin:
		l.join(qc, s, body)
	default:
		_ = qc.CloseWithError(codeProtocol, "expected hello")
	}
	return nil
}

// refuse answers a handshake frame with an error and closes the
// connection.
func refuse(qc *quic.Conn, w *wire.Writer, op wire.Op, msg string) {
	var e wire.Enc
	e.String(msg)
	h := wire.Header{Op: op, Flags: wire.FlagReply | wire.FlagError}
	if w.WriteFrame(&h, e.B) == nil {
		_ = w.Flush()
	}
	_ = qc.CloseWithError(codeProtocol, msg)
}

func (l *Listener) hello(ctx context.Context, qc *quic.Conn, cs *callStream, r *wire.Reader, body []byte) *Conn {
	d := wire.NewDec(body)
	version := d.U16()
	nlanes := int(d.U16())
	var msg string
	switch {
	case d.Done() != nil:
		msg = "malformed hello"
	case version != protocolVersion:
		msg = fmt.Sprintf("unsupported protocol version %d (want %d)", version, protocolVersion)
	case nlanes > MaxBulkLanes:
		msg = fmt.Sprintf("%d bulk lanes asked, at most %d", nlanes, MaxBulkLanes)
	}
	tok, err := newToken()
	if err != nil {
		msg = "internal error"
	}
	c := newConn(l.cfg, &lane{qc: qc})
	c.setCall(r, cs)
	if msg != "" {
		refuse(qc, c.cw, opHello, msg)
		c.fail(errors.New("peers: " + msg))
		return nil
	}
	p := &pendingConn{c: c, lanes: make([]*lane, nlanes), all: make(chan struct{})}
	if nlanes == 0 {
		close(p.all)
	} else {
		l.mu.Lock()
		l.pending[tok] = p
		l.mu.Unlock()
	}
	var e wire.Enc
	e.Raw(tok[:])
	e.U16(uint16(nlanes))
	// The ports the lanes should dial, spread over the lane sockets.
	lanePorts := l.lanePorts()
	e.U16(uint16(len(lanePorts)))
	for _, p := range lanePorts {
		e.U16(p)
	}
	h := wire.Header{Op: opHello, Flags: wire.FlagReply}
	err = c.cw.WriteFrame(&h, e.B)
	if err == nil {
		err = c.cw.Flush()
	}
	if err == nil {
		select {
		case <-p.all:
		case <-ctx.Done():
			err = fmt.Errorf("peers: bulk lanes did not join: %w", context.Cause(ctx))
		}
	}
	l.mu.Lock()
	delete(l.pending, tok)
	c.lanes = p.lanes // under l.mu: join writes p.lanes
	if err == nil && l.ctx.Err() != nil {
		err = ErrListenerClosed
	}
	if err == nil {
		l.conns[c] = struct{}{}
		c.onClose = l.forget
	}
	l.mu.Unlock()
	if err != nil {
		c.fail(err)
		return nil
	}
	return c
}

// lanePorts returns the ports of the sockets meant for bulk lanes (all
// but the first); none when there is only one socket.
func (l *Listener) lanePorts() []uint16 {
	var ports []uint16
	for _, ls := range l.socks[1:] {
		ports = append(ports, uint16(ls.udp.LocalAddr().(*net.UDPAddr).Port))
	}
	return ports
}

// forget drops a closed Conn.
func (l *Listener) forget(c *Conn) {
	l.mu.Lock()
	delete(l.conns, c)
	l.mu.Unlock()
}

// join attaches a lane to the pending Conn its token names. The lane must
// come from the same peer identity as the call connection.
func (l *Listener) join(qc *quic.Conn, s *quic.Stream, body []byte) {
	w := wire.NewWriter(s, 256)
	d := wire.NewDec(body)
	var tok token
	copy(tok[:], d.Raw(len(tok)))
	index := int(d.U16())
	if d.Done() != nil {
		refuse(qc, w, opJoin, "malformed join")
		return
	}
	// The dialer sends FIN right after the join; read it so the stream
	// completes on both sides.
	if _, err := io.Copy(io.Discard, io.LimitReader(s, 1)); err != nil {
		_ = qc.CloseWithError(codeProtocol, "join stream")
		return
	}
	l.mu.Lock()
	p := l.pending[tok]
	var msg string
	switch {
	case p == nil:
		msg = "unknown or expired token"
	case index >= len(p.lanes) || p.lanes[index] != nil:
		msg = fmt.Sprintf("bad lane index %d", index)
	case !samePeer(p.c.primary.qc, qc):
		msg = "lane presents a different certificate than the call connection"
	default:
		p.lanes[index] = &lane{qc: qc}
		p.joined++
		if p.joined == len(p.lanes) {
			close(p.all)
			delete(l.pending, tok)
		}
	}
	l.mu.Unlock()
	if msg != "" {
		refuse(qc, w, opJoin, msg)
		return
	}
	h := wire.Header{Op: opJoin, Flags: wire.FlagReply}
	if w.WriteFrame(&h, nil) == nil && w.Flush() == nil {
		_ = s.Close()
	}
}

// samePeer reports whether two connections authenticated the same leaf
// certificate (or both none).
func samePeer(a, b *quic.Conn) bool {
	ca := a.ConnectionState().TLS.PeerCertificates
	cb := b.ConnectionState().TLS.PeerCertificates
	if len(ca) == 0 || len(cb) == 0 {
		return len(ca) == len(cb)
	}
	return bytes.Equal(ca[0].Raw, cb[0].Raw)
}
