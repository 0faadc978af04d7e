package peers

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/xgpu/xgpu/internal/wire"
)

var (
	// ErrClosed is the cause of a Conn's failure after Close.
	ErrClosed = errors.New("peers: connection closed")
	// ErrListenerClosed is returned by Accept after the Listener closed.
	ErrListenerClosed = errors.New("peers: listener closed")
)

// ConnError reports that a Conn is gone: closed locally (Err is ErrClosed),
// closed by the peer, or lost (Err is quic-go's *quic.IdleTimeoutError when
// the peer went silent). Every operation on a dead Conn returns one.
type ConnError struct {
	Remote net.Addr
	Err    error
}

func (e *ConnError) Error() string {
	return fmt.Sprintf("peers: connection to %v: %v", e.Remote, e.Err)
}

func (e *ConnError) Unwrap() error { return e.Err }

// Transport opcodes on the call stream and lane join streams.
const (
	// dialer → listener: version u16, lanes u16; reply: token [16],
	// lanes u16, n u16, n lane ports u16
	opHello = wire.OpTransportBase + 1
	opJoin  = wire.OpTransportBase + 2 // dialer → listener on a lane: token [16], index u16
)

// protocolVersion is the version of the exchange in opHello.
const protocolVersion = 1

// QUIC application error codes used when closing connections.
const (
	codeNoError  quic.ApplicationErrorCode = 0
	codeProtocol quic.ApplicationErrorCode = 1
)

type token [16]byte

// close closes the QUIC connection (telling the peer) and what l owns.
func (l *lane) close(code quic.ApplicationErrorCode, msg string) {
	_ = l.qc.CloseWithError(code, msg)
	if l.tr != nil {
		_ = l.tr.Close()
	}
	if l.udp != nil {
		_ = l.udp.Close()
	}
}

// lane is one QUIC connection of a Conn, with the UDP socket and transport
// it owns (dialer side) or borrows from the Listener (nil).
type lane struct {
	qc  *quic.Conn
	tr  *quic.Transport
	udp *net.UDPConn
}

// Conn is a data-plane connection to one peer: one QUIC connection that
// carries the ordered call stream, plus bulk lanes (further QUIC
// connections to the same peer) over which bulk streams and striped
// transfers run, so that a large copy never blocks small calls.
//
// CallReader and CallWriter give the call stream's frame codec; each must
// be used by one goroutine at a time. OpenBulk, AcceptBulk, SendBulk,
// RecvBulk and Close are safe for concurrent use.
type Conn struct {
	cfg     Config
	primary *lane
	lanes   []*lane // bulk lanes; empty means bulk shares primary

	cr *wire.Reader // call stream
	cw *wire.Writer

	ctx    context.Context // done when the Conn is dead; its cause is a *ConnError
	cancel context.CancelCauseFunc

	wg        sync.WaitGroup // goroutines serving the lanes
	closeOnce sync.Once
	onClose   func(*Conn) // set by the Listener to forget the Conn; may be nil

	rawBulk chan *BulkStream // incoming raw bulk streams not yet accepted
	reg     registry
	next    atomic.Uint32 // round-robin lane choice

	local atomic.Pointer[localLane] // the local lane, once attached (local.go)
}

func newConn(cfg Config, primary *lane) *Conn {
	ctx, cancel := context.WithCancelCause(context.Background())
	c := &Conn{
		cfg:     cfg,
		primary: primary,
		ctx:     ctx,
		cancel:  cancel,
		// Buffered so that the lane goroutines hand over a stream without
		// waiting for AcceptBulk; the peer cannot open more than this many
		// streams per lane anyway.
		rawBulk: make(chan *BulkStream, cfg.MaxBulkStreams),
	}
	c.reg.init(c)
	return c
}

// setCall installs the codec of the call stream.
func (c *Conn) setCall(r *wire.Reader, cs *callStream) {
	cs.c = c
	c.cr = r
	c.cw = wire.NewWriter(cs, 0)
}

// start launches the goroutines that watch and serve every lane.
func (c *Conn) start() {
	all := append([]*lane{c.primary}, c.lanes...)
	for _, l := range all {
		c.wg.Go(func() { c.watch(l.qc) })
		c.wg.Go(func() { c.acceptStreams(l.qc) })
	}
}

// watch fails the whole Conn when one of its QUIC connections dies.
func (c *Conn) watch(qc *quic.Conn) {
	select {
	case <-qc.Context().Done():
		c.fail(context.Cause(qc.Context()))
	case <-c.ctx.Done():
	}
}

// fail kills the Conn with cause (only the first cause counts) and
// releases its connections and sockets. It does not wait for goroutines.
func (c *Conn) fail(cause error) {
	c.closeOnce.Do(func() {
		c.cancel(&ConnError{Remote: c.RemoteAddr(), Err: cause})
		code, msg := codeNoError, ""
		if !errors.Is(cause, ErrClosed) {
			code, msg = codeProtocol, cause.Error()
		}
		for _, l := range c.allLanes() {
			if l != nil {
				l.close(code, msg)
			}
		}
		c.reg.closeAll(context.Cause(c.ctx))
		if c.onClose != nil {
			c.onClose(c)
		}
	})
}

func (c *Conn) allLanes() []*lane { return append([]*lane{c.primary}, c.lanes...) }

// Close closes every QUIC connection of c (the peer is told) and waits
// for c's goroutines. Operations in progress and later ones fail with a
// *ConnError wrapping ErrClosed. Close is idempotent.
func (c *Conn) Close() error {
	c.fail(ErrClosed)
	c.wg.Wait()
	// Raw bulk streams nobody accepted.
	for {
		select {
		case b := <-c.rawBulk:
			b.Abort()
		default:
			return nil
		}
	}
}

// Context returns a context that is done once c is dead; context.Cause
// returns the *ConnError.
func (c *Conn) Context() context.Context { return c.ctx }

// Err returns nil while c is alive, then its *ConnError.
func (c *Conn) Err() error {
	if c.ctx.Err() == nil {
		return nil
	}
	return context.Cause(c.ctx)
}

// RemoteAddr returns the peer's address of the call connection.
func (c *Conn) RemoteAddr() net.Addr { return c.primary.qc.RemoteAddr() }

// LocalAddr returns the local address of the call connection.
func (c *Conn) LocalAddr() net.Addr { return c.primary.qc.LocalAddr() }

// PeerCertificates returns the certificate chain the peer presented (the
// leaf first); empty when the peer presented none.
func (c *Conn) PeerCertificates() []*x509.Certificate {
	return c.primary.qc.ConnectionState().TLS.PeerCertificates
}

// BulkLanes returns the number of bulk lanes (0: bulk shares the call
// connection).
func (c *Conn) BulkLanes() int { return len(c.lanes) }

// CallReader returns the reader of the call stream. Use it from one
// goroutine at a time. Once c dies, Next returns a *ConnError.
func (c *Conn) CallReader() *wire.Reader { return c.cr }

// CallWriter returns the writer of the call stream: frames queue in its
// buffer until Flush. Use it from one goroutine at a time.
func (c *Conn) CallWriter() *wire.Writer { return c.cw }

// streamErr turns an error from a stream of c into what callers see: once
// the connection is dead, its *ConnError; otherwise the error unchanged
// (a stream reset, a deadline, a write after Close).
func (c *Conn) streamErr(err error) error {
	if err == nil || err == io.EOF {
		return err
	}
	if cerr := c.Err(); cerr != nil {
		return cerr
	}
	if connLevel(err) {
		// watch may not have seen the connection die yet.
		c.fail(err)
		return c.Err()
	}
	for _, l := range c.allLanes() {
		if l != nil && l.qc.Context().Err() != nil {
			c.fail(context.Cause(l.qc.Context()))
			return c.Err()
		}
	}
	return err
}

// connLevel reports whether err ends a whole QUIC connection.
func connLevel(err error) bool {
	if _, ok := errors.AsType[*quic.IdleTimeoutError](err); ok {
		return true
	}
	if _, ok := errors.AsType[*quic.ApplicationError](err); ok {
		return true
	}
	if _, ok := errors.AsType[*quic.TransportError](err); ok {
		return true
	}
	if _, ok := errors.AsType[*quic.StatelessResetError](err); ok {
		return true
	}
	return false
}

// callStream adapts the call stream to the codec, mapping errors.
type callStream struct {
	c *Conn
	s *quic.Stream
}

func (cs *callStream) Read(p []byte) (int, error) {
	n, err := cs.s.Read(p)
	if err != nil && cs.c != nil {
		err = cs.c.streamErr(err)
	}
	return n, err
}

func (cs *callStream) Write(p []byte) (int, error) {
	n, err := cs.s.Write(p)
	if err != nil && cs.c != nil {
		err = cs.c.streamErr(err)
	}
	return n, err
}

// prepareTLS returns a copy of conf that insists on TLS 1.3 and ALPN.
func prepareTLS(conf *tls.Config) (*tls.Config, error) {
	if conf == nil {
		return nil, errors.New("peers: nil TLS config")
	}
	conf = conf.Clone()
	if conf.MinVersion < tls.VersionTLS13 {
		conf.MinVersion = tls.VersionTLS13
	}
	if len(conf.NextProtos) == 0 {
		conf.NextProtos = []string{ALPN}
	}
	for _, p := range conf.NextProtos {
		if p == ALPN {
			return conf, nil
		}
	}
	return nil, fmt.Errorf("peers: TLS config offers %q, not ALPN %q", conf.NextProtos, ALPN)
}

// Dial connects to the Listener at addr: it sets up the call stream, then
// the configured number of bulk lanes, each a QUIC connection with its own
// UDP socket. The whole setup is bounded by cfg.HandshakeTimeout and ctx.
// tlsConf is the client side of mutual TLS (certs.LoadTLS, RoleClient);
// its ServerName defaults to the host of addr.
func Dial(ctx context.Context, addr string, tlsConf *tls.Config, cfg *Config) (*Conn, error) {
	conf, err := populate(cfg)
	if err != nil {
		return nil, err
	}
	tlsConf, err = prepareTLS(tlsConf)
	if err != nil {
		return nil, err
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("peers: dial %s: %w", addr, err)
	}
	if tlsConf.ServerName == "" {
		tlsConf.ServerName = host
	}
	raddr, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("peers: dial %s: %w", addr, err)
	}
	c, err := dial(ctx, raddr, tlsConf, &conf)
	if err != nil {
		return nil, fmt.Errorf("peers: dial %s: %w", addr, err)
	}
	return c, nil
}

func dial(ctx context.Context, raddr *net.UDPAddr, tlsConf *tls.Config, conf *Config) (_ *Conn, err error) {
	ctx, cancel := context.WithTimeout(ctx, conf.HandshakeTimeout)
	defer cancel()
	primary, err := dialLane(ctx, raddr, tlsConf, conf)
	if err != nil {
		return nil, err
	}
	c := newConn(*conf, primary)
	defer func() {
		if err != nil {
			if ctx.Err() != nil {
				err = context.Cause(ctx)
			}
			c.fail(err)
		}
	}()
	// Reads below must not outlive ctx: closing the call connection ends
	// them (the lanes' own dials watch ctx).
	stop := context.AfterFunc(ctx, func() { _ = primary.qc.CloseWithError(codeProtocol, "dial cancelled") })
	defer stop()

	s, err := primary.qc.OpenStreamSync(ctx)
	if err != nil {
		return nil, err
	}
	cs := &callStream{s: s}
	c.setCall(wire.NewReader(cs, 0), cs)
	var e wire.Enc
	e.U16(protocolVersion)
	e.U16(uint16(conf.BulkLanes))
	h := wire.Header{Op: opHello}
	if err := c.cw.WriteFrame(&h, e.B); err != nil {
		return nil, err
	}
	if err := c.cw.Flush(); err != nil {
		return nil, err
	}
	rh, body, err := c.cr.Next()
	if err != nil {
		return nil, fmt.Errorf("hello: %w", err)
	}
	if err := replyErr(rh, body, opHello); err != nil {
		return nil, err
	}
	d := wire.NewDec(body)
	var tok token
	copy(tok[:], d.Raw(len(tok)))
	n := int(d.U16())
	ports := make([]int, d.U16())
	for i := range ports {
		ports[i] = int(d.U16())
	}
	if err := d.Done(); err != nil {
		return nil, fmt.Errorf("hello reply: %w", err)
	}
	if n != conf.BulkLanes {
		return nil, fmt.Errorf("listener granted %d bulk lanes, asked for %d", n, conf.BulkLanes)
	}

	lanes := make([]*lane, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		// Lane i goes to the listener's lane socket i (mod their number),
		// at the address this Conn dialed.
		laddr := raddr
		if len(ports) > 0 {
			laddr = &net.UDPAddr{IP: raddr.IP, Port: ports[i%len(ports)], Zone: raddr.Zone}
		}
		wg.Go(func() { lanes[i], errs[i] = joinLane(ctx, laddr, tlsConf, conf, tok, i) })
	}
	wg.Wait()
	c.lanes = lanes
	if err := errors.Join(errs...); err != nil {
		for _, l := range lanes {
			if l != nil {
				l.close(codeProtocol, "dial failed")
			}
		}
		return nil, err
	}
	if !stop() {
		return nil, context.Cause(ctx)
	}
	c.start()
	return c, nil
}

// replyErr checks that a handshake reply answers op and is no error.
func replyErr(h wire.Header, body []byte, op wire.Op) error {
	if h.Op != op || h.Flags&wire.FlagReply == 0 {
		return fmt.Errorf("unexpected frame op %#x flags %#x in handshake", h.Op, h.Flags)
	}
	if h.Flags&wire.FlagError != 0 {
		d := wire.NewDec(body)
		msg := d.String()
		if d.Err() != nil {
			msg = "(unreadable reason)"
		}
		return fmt.Errorf("listener refused: %s", msg)
	}
	return nil
}

// dialLane opens a UDP socket and a QUIC connection to raddr over it.
func dialLane(ctx context.Context, raddr *net.UDPAddr, tlsConf *tls.Config, conf *Config) (*lane, error) {
	laddr := &net.UDPAddr{IP: net.IPv4zero}
	if raddr.IP.To4() == nil {
		laddr.IP = net.IPv6unspecified
	}
	udp, err := listenUDP(laddr, conf.SocketBuffer)
	if err != nil {
		return nil, err
	}
	tr := &quic.Transport{Conn: udp}
	qc, err := tr.Dial(ctx, raddr, tlsConf, conf.quicConfig())
	if err != nil {
		_ = tr.Close()
		_ = udp.Close()
		return nil, err
	}
	return &lane{qc: qc, tr: tr, udp: udp}, nil
}

// joinLane dials one bulk lane and attaches it to the Conn named by tok.
func joinLane(ctx context.Context, raddr *net.UDPAddr, tlsConf *tls.Config, conf *Config, tok token, index int) (_ *lane, err error) {
	l, err := dialLane(ctx, raddr, tlsConf, conf)
	if err != nil {
		return nil, fmt.Errorf("lane %d: %w", index, err)
	}
	defer func() {
		if err != nil {
			l.close(codeProtocol, "lane join failed")
			err = fmt.Errorf("lane %d: %w", index, err)
		}
	}()
	s, err := l.qc.OpenStreamSync(ctx)
	if err != nil {
		return nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = s.SetDeadline(dl)
	}
	w := wire.NewWriter(s, 64)
	var e wire.Enc
	e.Raw(tok[:])
	e.U16(uint16(index))
	h := wire.Header{Op: opJoin}
	if err := w.WriteFrame(&h, e.B); err != nil {
		return nil, err
	}
	if err := w.Flush(); err != nil {
		return nil, err
	}
	if err := s.Close(); err != nil {
		return nil, err
	}
	r := wire.NewReader(s, 256)
	rh, body, err := r.Next()
	if err != nil {
		return nil, err
	}
	if err := replyErr(rh, body, opJoin); err != nil {
		return nil, err
	}
	if _, _, err := r.Next(); err != io.EOF {
		return nil, fmt.Errorf("join stream not closed after reply: %v", err)
	}
	return l, nil
}

func newToken() (token, error) {
	var t token
	_, err := rand.Read(t[:])
	return t, err
}

// acceptStreams serves the bulk streams the peer opens on qc.
func (c *Conn) acceptStreams(qc *quic.Conn) {
	for {
		s, err := qc.AcceptStream(c.ctx)
		if err != nil {
			return
		}
		c.wg.Go(func() { c.serveStream(s) })
	}
}

// Stream kinds: the first byte of every bulk stream.
const (
	kindRaw     = 1
	kindStriped = 2
)

// Stream error codes.
const (
	streamCanceled quic.StreamErrorCode = 1
	streamProtocol quic.StreamErrorCode = 2
	streamRefused  quic.StreamErrorCode = 3
)

func (c *Conn) serveStream(s *quic.Stream) {
	var kind [1]byte
	_ = s.SetReadDeadline(time.Now().Add(c.cfg.HandshakeTimeout))
	if _, err := io.ReadFull(s, kind[:]); err != nil {
		s.CancelRead(streamProtocol)
		s.CancelWrite(streamProtocol)
		return
	}
	_ = s.SetReadDeadline(time.Time{})
	switch kind[0] {
	case kindRaw:
		b := &BulkStream{c: c, s: s}
		select {
		case c.rawBulk <- b:
		case <-c.ctx.Done():
			b.Abort()
		}
	case kindStriped:
		c.recvStriped(s)
	default:
		s.CancelRead(streamProtocol)
		s.CancelWrite(streamProtocol)
	}
}

// bulkLane returns the QUIC connection for the i-th bulk stream.
func (c *Conn) bulkLane(i uint32) *quic.Conn {
	if len(c.lanes) == 0 {
		return c.primary.qc
	}
	return c.lanes[i%uint32(len(c.lanes))].qc
}
