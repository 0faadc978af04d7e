package bench

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/xgpu/xgpu/internal/certs"
	"github.com/xgpu/xgpu/internal/wire"
	"github.com/xgpu/xgpu/peers"
)

// DefaultPeerMaxBytes bounds one transfer to or from a baseline peer when
// PeerConfig.MaxBytes is zero.
const DefaultPeerMaxBytes = 1 << 30

// Opcodes of the baseline peer's call stream. They are the peer's own
// protocol, not xgpu's call protocol: the peer does nothing but move bytes.
const (
	opEcho   wire.Op = 1 // reply with the request's body
	opSink   wire.Op = 2 // id u64, n u64: receive a striped transfer of n bytes with id, then reply
	opSource wire.Op = 3 // id u64, n u64: send a striped transfer of n bytes with id, then reply
	opPush   wire.Op = 4 // n u64, addr string, pin string: sink n bytes on the peer at addr, then reply
	// opOfferLane has no body: offer a local lane on this connection
	// (peers.Conn.OfferLocal); reply: token bytes, name string, which the
	// client passes to JoinLocal. From then on the connection's striped
	// transfers (sink, source) go through shared memory.
	opOfferLane wire.Op = 5
	// opPushLane is opPush over a connection to the peer at addr with a
	// local lane joined (opOfferLane, then JoinLocal).
	opPushLane wire.Op = 6
)

// unsupportedReply is the body of the error reply to opOfferLane and
// opPushLane where the peer's platform has no local lanes; the client
// turns it back into peers.ErrLocalUnsupported.
const unsupportedReply = "bench peer: no local lanes on this platform"

// Operations of the TCP baseline; every message starts with tcpHeaderSize
// bytes: op u8, 7 bytes of zero, n u64 (little endian).
const (
	tcpEcho   = 1 // n bytes follow (at most maxEchoBody); the peer sends header and body back
	tcpSink   = 2 // n bytes follow; the peer answers with a header of op tcpAck
	tcpSource = 3 // the peer sends n bytes
	tcpAck    = 4

	tcpHeaderSize = 16
	maxEchoBody   = 64 << 10
)

// transferTimeout bounds one bulk transfer of the peer: 1 GiB at 10 MB/s.
const transferTimeout = 2 * time.Minute

// PeerConfig configures a baseline peer. The zero value serves on
// 127.0.0.1 with the transport's defaults.
type PeerConfig struct {
	// Host is the host or IP both listeners bind to. Zero: 127.0.0.1.
	Host string
	// MaxBytes is the largest transfer the peer accepts; it also bounds
	// the buffers it allocates per connection. Zero: DefaultPeerMaxBytes.
	MaxBytes int64
	// Transport tunes the QUIC listener and the connections the peer
	// dials to push data to another peer. Zero (nil): the peers
	// package's defaults, the same as xgpu's workers use.
	Transport *peers.Config
	// Logger receives the peer's log lines. Zero: nothing is logged.
	Logger *slog.Logger

	// noLocal makes the peer act as on a platform without local lanes
	// (tests of the fallback to QUIC).
	noLocal bool
}

// PeerInfo is how to reach a baseline peer.
type PeerInfo struct {
	QUIC string `json:"quic"`        // the QUIC listener, host:port
	Pin  string `json:"cert_sha256"` // hex SHA-256 of its certificate, which dialers pin
	TCP  string `json:"tcp"`         // the TCP listener, host:port
}

// Peer is the baseline process of a benchmark run: it serves a raw echo
// and a bulk sink and source over the same QUIC transport xgpu uses
// (package peers) and over plain TCP, and pushes bulk data to another peer
// on request. A connection may ask it for a local lane (shared memory, on
// Linux when both ends share a host), as xgpu's sessions and worker links
// do; its sink and source then go through the lane. It does no work
// besides moving bytes, so what a case measures against it is the
// transport alone.
//
// Its methods are safe for concurrent use.
type Peer struct {
	cfg  PeerConfig
	log  *slog.Logger
	info PeerInfo
	ql   *peers.Listener
	tl   net.Listener
	ctx  context.Context // cancelled by Close
	stop context.CancelFunc
	wg   sync.WaitGroup // accept loops and connection handlers

	mu     sync.Mutex // guards the fields below
	closed bool
	conns  map[io.Closer]struct{} // live connections, closed by Close
}

// ServePeer starts a baseline peer: a QUIC listener (dev-mode TLS: a
// throw-away certificate that dialers pin, PeerInfo.Pin) and a TCP
// listener, both on cfg.Host with ports chosen by the kernel.
func ServePeer(cfg PeerConfig) (*Peer, error) {
	if cfg.MaxBytes < 0 {
		return nil, fmt.Errorf("bench: peer: MaxBytes %d is negative", cfg.MaxBytes)
	}
	if cfg.MaxBytes == 0 {
		cfg.MaxBytes = DefaultPeerMaxBytes
	}
	if cfg.Host == "" {
		cfg.Host = "127.0.0.1"
	}
	if err := cfg.Transport.Validate(); err != nil {
		return nil, fmt.Errorf("bench: peer: %w", err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	srvTLS, _, err := certs.DevConfig(cfg.Host)
	if err != nil {
		return nil, fmt.Errorf("bench: peer: dev certificate: %w", err)
	}
	// Dialers authenticate the peer by its pin; the peer serves anyone
	// who can reach it (it holds nothing but scratch buffers).
	srvTLS = srvTLS.Clone()
	srvTLS.ClientAuth = tls.NoClientCert
	srvTLS.ClientCAs = nil
	sum := sha256.Sum256(srvTLS.Certificates[0].Certificate[0])
	ql, err := peers.Listen(net.JoinHostPort(cfg.Host, "0"), srvTLS, cfg.Transport)
	if err != nil {
		return nil, fmt.Errorf("bench: peer: %w", err)
	}
	tl, err := net.Listen("tcp", net.JoinHostPort(cfg.Host, "0"))
	if err != nil {
		_ = ql.Close()
		return nil, fmt.Errorf("bench: peer: %w", err)
	}
	ctx, stop := context.WithCancel(context.Background())
	p := &Peer{
		cfg: cfg, log: log, ql: ql, tl: tl, ctx: ctx, stop: stop,
		info:  PeerInfo{QUIC: ql.Addr().String(), Pin: hex.EncodeToString(sum[:]), TCP: tl.Addr().String()},
		conns: make(map[io.Closer]struct{}),
	}
	p.wg.Go(p.acceptQUIC)
	p.wg.Go(p.acceptTCP)
	return p, nil
}

// Info returns the peer's addresses and certificate pin.
func (p *Peer) Info() PeerInfo { return p.info }

// Close stops the listeners, closes every connection and waits for the
// peer's goroutines. It is idempotent.
func (p *Peer) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	conns := make([]io.Closer, 0, len(p.conns))
	for c := range p.conns {
		conns = append(conns, c)
	}
	p.mu.Unlock()
	p.stop()
	err := errors.Join(p.ql.Close(), p.tl.Close())
	for _, c := range conns {
		_ = c.Close()
	}
	p.wg.Wait()
	if err != nil {
		return fmt.Errorf("bench: peer: close: %w", err)
	}
	return nil
}

// track registers c to be closed by Close; false if the peer is closed.
func (p *Peer) track(c io.Closer) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Peer) untrack(c io.Closer) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	_ = c.Close()
}

func (p *Peer) acceptQUIC() {
	for {
		c, err := p.ql.Accept(p.ctx)
		if err != nil {
			if p.ctx.Err() == nil {
				p.log.Warn("bench peer: accept", "err", err)
			}
			return
		}
		if !p.track(c) {
			_ = c.Close()
			return
		}
		s := &quicSession{p: p, c: c}
		p.wg.Go(func() {
			defer p.untrack(c)
			s.serveCalls()
		})
		p.wg.Go(s.serveRaw)
	}
}

func (p *Peer) acceptTCP() {
	for {
		c, err := p.tl.Accept()
		if err != nil {
			if p.ctx.Err() == nil {
				p.log.Warn("bench peer: accept tcp", "err", err)
			}
			return
		}
		if !p.track(c) {
			_ = c.Close()
			return
		}
		p.wg.Go(func() {
			defer p.untrack(c)
			if err := p.serveTCP(c); err != nil && p.ctx.Err() == nil && !errors.Is(err, io.EOF) {
				p.log.Warn("bench peer: tcp connection", "remote", c.RemoteAddr().String(), "err", err)
			}
		})
	}
}

// grow returns buf with length n, reallocating when it is too small. A
// new buffer is filled, so that sending from it reads real memory rather
// than the kernel's shared zero page, which would always be in cache.
func grow(buf []byte, n int) []byte {
	if cap(buf) < n {
		buf = make([]byte, n)
		fill(buf)
	}
	return buf[:n]
}

// serveTCP runs the TCP baseline protocol on one connection until it
// fails or the client closes it.
func (p *Peer) serveTCP(c net.Conn) error {
	var hdr [tcpHeaderSize]byte
	var buf []byte
	for {
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			return err
		}
		op, n := hdr[0], binary.LittleEndian.Uint64(hdr[8:])
		switch {
		case op == tcpEcho && n > maxEchoBody:
			return fmt.Errorf("echo of %d bytes, at most %d", n, maxEchoBody)
		case (op == tcpSink || op == tcpSource) && n > uint64(p.cfg.MaxBytes):
			return fmt.Errorf("transfer of %d bytes, at most %d", n, p.cfg.MaxBytes)
		}
		switch op {
		case tcpEcho:
			buf = grow(buf, tcpHeaderSize+int(n))
			copy(buf, hdr[:])
			if _, err := io.ReadFull(c, buf[tcpHeaderSize:]); err != nil {
				return err
			}
			if _, err := c.Write(buf); err != nil {
				return err
			}
		case tcpSink:
			buf = grow(buf, int(n))
			if _, err := io.ReadFull(c, buf); err != nil {
				return err
			}
			var ack [tcpHeaderSize]byte
			ack[0] = tcpAck
			if _, err := c.Write(ack[:]); err != nil {
				return err
			}
		case tcpSource:
			buf = grow(buf, int(n))
			if _, err := c.Write(buf); err != nil {
				return err
			}
		default:
			return fmt.Errorf("unknown operation %d", op)
		}
	}
}

// quicSession serves one QUIC connection of the peer.
type quicSession struct {
	p *Peer
	c *peers.Conn

	buf  []byte                 // bulk buffer of the call loop (sink, source, push)
	push map[string]*peerClient // connections to other peers by address, pin and path
}

// serveCalls runs the call stream until the connection ends. Calls are
// handled one at a time, in order; a bulk call holds the stream until its
// transfer is done, which is what the client waits for anyway.
func (s *quicSession) serveCalls() {
	defer func() {
		for _, pc := range s.push {
			_ = pc.close()
		}
	}()
	r, w := s.c.CallReader(), s.c.CallWriter()
	for {
		h, body, err := r.Next()
		if err != nil {
			return
		}
		if h.Flags&wire.FlagNoReply != 0 {
			continue // a raw asynchronous frame: read and dropped
		}
		reply := wire.Header{Op: h.Op, Flags: wire.FlagReply, ReqID: h.ReqID}
		out, err := s.handle(h.Op, body)
		switch {
		case errors.Is(err, peers.ErrLocalUnsupported):
			reply.Flags |= wire.FlagError
			out = []byte(unsupportedReply)
		case err != nil:
			reply.Flags |= wire.FlagError
			out = []byte("bench peer: " + err.Error())
		}
		if w.WriteFrame(&reply, out) != nil || w.Flush() != nil {
			return
		}
	}
}

// handle executes one call and returns the reply body.
func (s *quicSession) handle(op wire.Op, body []byte) ([]byte, error) {
	// A client that announces a transfer and never starts it must not hold
	// the session forever.
	ctx, cancel := context.WithTimeout(s.c.Context(), transferTimeout)
	defer cancel()
	switch op {
	case opEcho:
		return body, nil
	case opSink, opSource:
		d := wire.NewDec(body)
		id, n := d.U64(), d.U64()
		if err := d.Done(); err != nil {
			return nil, fmt.Errorf("malformed transfer call: %w", err)
		}
		if n > uint64(s.p.cfg.MaxBytes) {
			return nil, fmt.Errorf("transfer of %d bytes, at most %d", n, s.p.cfg.MaxBytes)
		}
		s.buf = grow(s.buf, int(n))
		if op == opSink {
			return nil, s.c.RecvBulk(ctx, id, s.buf)
		}
		return nil, s.c.SendBulk(ctx, id, s.buf)
	case opOfferLane:
		if len(body) != 0 {
			return nil, fmt.Errorf("malformed lane offer call: %d bytes of body, want none", len(body))
		}
		// The offer outlives this call: the client joins once it has the
		// reply. It ends with the connection, or unused after the
		// transport's HandshakeTimeout.
		if s.p.cfg.noLocal {
			return nil, peers.ErrLocalUnsupported
		}
		name, token, err := s.c.OfferLocal(s.c.Context())
		if err != nil {
			return nil, err
		}
		var e wire.Enc
		e.Bytes(token)
		e.String(name)
		return e.B, nil
	case opPush, opPushLane:
		d := wire.NewDec(body)
		n := d.U64()
		addr, pin := d.String(), d.String()
		if err := d.Done(); err != nil {
			return nil, fmt.Errorf("malformed push call: %w", err)
		}
		if n > uint64(s.p.cfg.MaxBytes) {
			return nil, fmt.Errorf("transfer of %d bytes, at most %d", n, s.p.cfg.MaxBytes)
		}
		pc, err := s.pushTo(ctx, PeerInfo{QUIC: addr, Pin: pin}, op == opPushLane)
		if err != nil {
			return nil, err
		}
		s.buf = grow(s.buf, int(n))
		return nil, pc.sinkBulk(ctx, s.buf)
	default:
		return nil, fmt.Errorf("unknown opcode %d", op)
	}
}

// pushTo returns the session's connection to the peer at info, with a
// local lane joined if lane, dialling it the first time.
func (s *quicSession) pushTo(ctx context.Context, info PeerInfo, lane bool) (*peerClient, error) {
	key := info.QUIC + "|" + info.Pin
	if lane {
		key += "|lane"
	}
	if pc, ok := s.push[key]; ok {
		return pc, nil
	}
	if lane && s.p.cfg.noLocal {
		return nil, peers.ErrLocalUnsupported
	}
	dial := dialPeerQUIC
	if lane {
		dial = dialPeerLocal
	}
	pc, err := dial(ctx, info, s.p.cfg.Transport)
	if err != nil {
		return nil, err
	}
	if s.push == nil {
		s.push = make(map[string]*peerClient)
	}
	s.push[key] = pc
	return pc, nil
}

// serveRaw sinks raw bulk streams: each carries n u64 and n bytes, and is
// answered with one byte once they are all read.
func (s *quicSession) serveRaw() {
	var buf []byte
	for {
		b, err := s.c.AcceptBulk(s.p.ctx)
		if err != nil {
			return
		}
		var hdr [8]byte
		if _, err := io.ReadFull(b, hdr[:]); err != nil {
			b.Abort()
			continue
		}
		n := binary.LittleEndian.Uint64(hdr[:])
		if n > uint64(s.p.cfg.MaxBytes) {
			b.Abort()
			continue
		}
		buf = grow(buf, int(n))
		if _, err := io.ReadFull(b, buf); err != nil {
			b.Abort()
			continue
		}
		if _, err := b.Write([]byte{1}); err != nil {
			b.Abort()
			continue
		}
		_ = b.Close()
	}
}

// pinnedTLS returns a client TLS configuration that accepts only the
// certificate whose SHA-256 is pin (hex).
func pinnedTLS(pin string) (*tls.Config, error) {
	want, err := hex.DecodeString(pin)
	if err != nil || len(want) != sha256.Size {
		return nil, fmt.Errorf("bench: certificate pin %q is not a hex SHA-256", pin)
	}
	return &tls.Config{
		InsecureSkipVerify: true, // the pin below replaces chain verification
		MinVersion:         tls.VersionTLS13,
		NextProtos:         []string{peers.ALPN},
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 {
				return errors.New("bench: peer presented no certificate")
			}
			got := sha256.Sum256(raw[0])
			if subtle.ConstantTimeCompare(got[:], want) != 1 {
				return fmt.Errorf("bench: peer certificate %x does not match the pin", got)
			}
			return nil
		},
	}, nil
}
