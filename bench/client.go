package bench

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"

	"github.com/xgpu/xgpu/internal/wire"
	"github.com/xgpu/xgpu/peers"
)

// peerClient is a QUIC connection to a baseline peer. It is used by one
// goroutine at a time.
type peerClient struct {
	info PeerInfo
	c    *peers.Conn
	r    *wire.Reader
	w    *wire.Writer
	next uint64 // last request and bulk transfer id used
	enc  wire.Enc
}

// dialPeerQUIC connects to the peer at info over the QUIC transport with
// cfg (nil: the transport's defaults).
func dialPeerQUIC(ctx context.Context, info PeerInfo, cfg *peers.Config) (*peerClient, error) {
	conf, err := pinnedTLS(info.Pin)
	if err != nil {
		return nil, err
	}
	c, err := peers.Dial(ctx, info.QUIC, conf, cfg)
	if err != nil {
		return nil, fmt.Errorf("bench: baseline peer: %w", err)
	}
	return &peerClient{info: info, c: c, r: c.CallReader(), w: c.CallWriter()}, nil
}

// dialPeerLocal connects to the peer at info as dialPeerQUIC does, then
// has it offer a local lane and joins it: the connection's striped
// transfers then go through shared memory. It fails where the peer is on
// another host; where either end has no local lanes the error wraps
// peers.ErrLocalUnsupported.
func dialPeerLocal(ctx context.Context, info PeerInfo, cfg *peers.Config) (*peerClient, error) {
	pc, err := dialPeerQUIC(ctx, info, cfg)
	if err != nil {
		return nil, err
	}
	if err := pc.joinLane(ctx); err != nil {
		_ = pc.close()
		return nil, err
	}
	return pc, nil
}

// joinLane asks the peer for a local lane on the connection and joins it.
func (pc *peerClient) joinLane(ctx context.Context) error {
	id, err := pc.send(opOfferLane, nil)
	if err != nil {
		return err
	}
	body, err := pc.awaitBody(id)
	if err != nil {
		return err
	}
	d := wire.NewDec(body)
	token := bytes.Clone(d.Bytes())
	name := d.String()
	if err := d.Done(); err != nil {
		return fmt.Errorf("bench: baseline peer %s: malformed lane offer: %w", pc.info.QUIC, err)
	}
	if err := pc.c.JoinLocal(ctx, name, token); err != nil {
		return fmt.Errorf("bench: baseline peer %s: %w", pc.info.QUIC, err)
	}
	return nil
}

// local reports whether a local lane carries the connection's striped
// transfers.
func (pc *peerClient) local() bool { return pc.c.HasLocal() }

func (pc *peerClient) close() error { return pc.c.Close() }

// id returns a fresh request and transfer id.
func (pc *peerClient) id() uint64 {
	pc.next++
	return pc.next
}

// send writes one request frame and flushes it; it returns its id.
func (pc *peerClient) send(op wire.Op, body []byte) (uint64, error) {
	h := wire.Header{Op: op, ReqID: pc.id()}
	if err := pc.w.WriteFrame(&h, body); err != nil {
		return 0, fmt.Errorf("bench: baseline peer: %w", err)
	}
	if err := pc.w.Flush(); err != nil {
		return 0, fmt.Errorf("bench: baseline peer: %w", err)
	}
	return h.ReqID, nil
}

// await reads frames until the reply to id and returns its error, if any.
func (pc *peerClient) await(id uint64) error {
	_, err := pc.awaitBody(id)
	return err
}

// awaitBody reads frames until the reply to id and returns its body,
// which is valid until the next read, or its error. A refusal for want of
// local lanes wraps peers.ErrLocalUnsupported.
func (pc *peerClient) awaitBody(id uint64) ([]byte, error) {
	for {
		h, body, err := pc.r.Next()
		if err != nil {
			return nil, fmt.Errorf("bench: baseline peer: %w", err)
		}
		if h.Flags&wire.FlagReply == 0 || h.ReqID != id {
			continue
		}
		if h.Flags&wire.FlagError != 0 {
			if string(body) == unsupportedReply {
				return nil, fmt.Errorf("bench: baseline peer %s: %w", pc.info.QUIC, peers.ErrLocalUnsupported)
			}
			return nil, fmt.Errorf("bench: baseline peer refused: %s", body)
		}
		return body, nil
	}
}

// echo is one request with body and its reply.
func (pc *peerClient) echo(body []byte) error {
	id, err := pc.send(opEcho, body)
	if err != nil {
		return err
	}
	return pc.await(id)
}

// frames writes n frames with body that expect no reply, as asynchronous
// calls are sent, then one echo, and returns once the echo's reply is
// back: by then the peer has read every frame.
func (pc *peerClient) frames(n int, body []byte) error {
	for range n {
		h := wire.Header{Op: opEcho, Flags: wire.FlagNoReply, ReqID: pc.id()}
		if err := pc.w.WriteFrame(&h, body); err != nil {
			return fmt.Errorf("bench: baseline peer: %w", err)
		}
	}
	return pc.echo(body)
}

func (pc *peerClient) transferBody(id uint64, n int) []byte {
	pc.enc.Reset()
	pc.enc.U64(id)
	pc.enc.U64(uint64(n))
	return pc.enc.B
}

// sinkBulk sends p to the peer as one striped transfer (SendBulk: over
// QUIC, or through the connection's local lane) and returns once the peer
// has all of it.
func (pc *peerClient) sinkBulk(ctx context.Context, p []byte) error {
	bulk := pc.id()
	id, err := pc.send(opSink, pc.transferBody(bulk, len(p)))
	if err != nil {
		return err
	}
	// The transfer runs while the reply is awaited, so that a refusal
	// (a transfer too large) ends it at once rather than after the
	// receiver's orphan timeout.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sent := make(chan error, 1) // buffered: read once, after await
	go func() { sent <- pc.c.SendBulk(ctx, bulk, p) }()
	if err := pc.await(id); err != nil {
		cancel()
		<-sent
		return err
	}
	if err := <-sent; err != nil {
		return fmt.Errorf("bench: baseline peer: %w", err)
	}
	return nil
}

// sourceBulk has the peer send len(dst) bytes as one striped transfer
// (over QUIC, or through the connection's local lane) into dst.
func (pc *peerClient) sourceBulk(ctx context.Context, dst []byte) error {
	bulk := pc.id()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1) // buffered: read once, after await
	go func() { done <- pc.c.RecvBulk(ctx, bulk, dst) }()
	id, err := pc.send(opSource, pc.transferBody(bulk, len(dst)))
	if err == nil {
		err = pc.await(id)
	}
	if err != nil {
		cancel()
		<-done
		return err
	}
	if err := <-done; err != nil {
		return fmt.Errorf("bench: baseline peer: %w", err)
	}
	return nil
}

// push has the peer send n bytes to the peer at to, over a connection of
// their own (with a local lane joined if lane), and returns once to has
// them all. Where lane is asked for and either peer has no local lanes,
// the error wraps peers.ErrLocalUnsupported.
func (pc *peerClient) push(n int, to PeerInfo, lane bool) error {
	pc.enc.Reset()
	pc.enc.U64(uint64(n))
	if !pc.enc.String(to.QUIC) || !pc.enc.String(to.Pin) {
		return errors.New("bench: peer address too long")
	}
	op := opPush
	if lane {
		op = opPushLane
	}
	id, err := pc.send(op, pc.enc.B)
	if err != nil {
		return err
	}
	return pc.await(id)
}

// sinkStream sends p on one raw bulk stream: one QUIC stream, no
// striping, no checksums.
func (pc *peerClient) sinkStream(ctx context.Context, p []byte) error {
	b, err := pc.c.OpenBulk(ctx)
	if err != nil {
		return fmt.Errorf("bench: baseline peer: %w", err)
	}
	var hdr [8]byte
	binary.LittleEndian.PutUint64(hdr[:], uint64(len(p)))
	if _, err := b.Write(hdr[:]); err != nil {
		b.Abort()
		return fmt.Errorf("bench: baseline peer: %w", err)
	}
	if _, err := b.Write(p); err != nil {
		b.Abort()
		return fmt.Errorf("bench: baseline peer: %w", err)
	}
	if err := b.Close(); err != nil {
		b.Abort()
		return fmt.Errorf("bench: baseline peer: %w", err)
	}
	var ack [1]byte
	if _, err := io.ReadFull(b, ack[:]); err != nil {
		b.Abort()
		return fmt.Errorf("bench: baseline peer: stream not acknowledged: %w", err)
	}
	return nil
}

// tcpClient is one TCP connection to a baseline peer.
type tcpClient struct {
	c   net.Conn
	buf []byte // echo request and reply
}

func dialTCP(ctx context.Context, addr string) (*tcpClient, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("bench: baseline peer: %w", err)
	}
	return &tcpClient{c: c}, nil
}

func (t *tcpClient) close() error { return t.c.Close() }

func tcpHeader(b []byte, op byte, n int) {
	clear(b[:tcpHeaderSize])
	b[0] = op
	binary.LittleEndian.PutUint64(b[8:], uint64(n))
}

// echo sends header and body in one write and reads them back.
func (t *tcpClient) echo(body []byte) error {
	if len(body) > maxEchoBody {
		return fmt.Errorf("bench: echo body of %d bytes, at most %d", len(body), maxEchoBody)
	}
	t.buf = grow(t.buf, tcpHeaderSize+len(body))
	tcpHeader(t.buf, tcpEcho, len(body))
	copy(t.buf[tcpHeaderSize:], body)
	if _, err := t.c.Write(t.buf); err != nil {
		return fmt.Errorf("bench: baseline peer: %w", err)
	}
	if _, err := io.ReadFull(t.c, t.buf); err != nil {
		return fmt.Errorf("bench: baseline peer: %w", err)
	}
	return nil
}

// sink sends p and waits for the peer's acknowledgement.
func (t *tcpClient) sink(p []byte) error {
	var hdr [tcpHeaderSize]byte
	tcpHeader(hdr[:], tcpSink, len(p))
	bufs := net.Buffers{hdr[:], p}
	if _, err := bufs.WriteTo(t.c); err != nil {
		return fmt.Errorf("bench: baseline peer: %w", err)
	}
	if _, err := io.ReadFull(t.c, hdr[:]); err != nil {
		return fmt.Errorf("bench: baseline peer: %w", err)
	}
	if hdr[0] != tcpAck {
		return fmt.Errorf("bench: baseline peer: unexpected answer %d to a sink", hdr[0])
	}
	return nil
}

// source has the peer send len(dst) bytes into dst.
func (t *tcpClient) source(dst []byte) error {
	var hdr [tcpHeaderSize]byte
	tcpHeader(hdr[:], tcpSource, len(dst))
	if _, err := t.c.Write(hdr[:]); err != nil {
		return fmt.Errorf("bench: baseline peer: %w", err)
	}
	if _, err := io.ReadFull(t.c, dst); err != nil {
		return fmt.Errorf("bench: baseline peer: %w", err)
	}
	return nil
}
