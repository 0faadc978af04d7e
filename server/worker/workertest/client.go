// Package workertest is a minimal data-plane client for tests of the
// worker and the supervisor: it speaks the call protocol (internal/calls)
// over a peers connection, one call at a time or asynchronously, and counts
// the bytes it moves so that tests can prove where payloads travel. It is
// not the client runtime (package runtime): it keeps no allocation table,
// batches nothing and checks little.
//
//	tlsConf, err := worker.PinnedClientTLS(ready.CertSHA256, nil)
//	c, err := workertest.Dial(ctx, ready.Address, tlsConf, nil)
//	err = c.Hello(ctx, token)
//	rep, err := c.Call(ctx, calls.OpMalloc, calls.Call{Dev: 0, N: 1 << 20})
//	err = c.MemcpyHtoD(ctx, 0, rep.V1, data, 0)
//	err = c.MemcpyDtoH(ctx, 0, rep.V1, out, 0)
//
// A Client is safe for concurrent use.
package workertest

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/xgpu/xgpu/internal/calls"
	"github.com/xgpu/xgpu/internal/cudaerr"
	"github.com/xgpu/xgpu/internal/wire"
	"github.com/xgpu/xgpu/peers"
)

// Stats counts what a Client moved. Frame bytes include headers.
type Stats struct {
	FramesSent, FramesReceived         uint64
	FrameBytesSent, FrameBytesReceived uint64
	BulkBytesSent, BulkBytesReceived   uint64
}

// Client is a test client of one worker.
type Client struct {
	pc *peers.Conn

	mu     sync.Mutex // guards the call writer, enc and nextID
	enc    wire.Enc
	nextID uint64

	pmu     sync.Mutex // guards waiting and err
	waiting map[uint64]chan calls.Reply
	err     error // why the reader stopped

	nextBulk atomic.Uint64
	done     chan struct{} // closed when the reader stops

	framesSent, framesRecv, bytesSent, bytesRecv, bulkSent, bulkRecv atomic.Uint64
}

// Dial connects to the worker at addr. tlsConf is the client side, such
// as worker.PinnedClientTLS(ready.CertSHA256, nil); cfg tunes the
// transport (nil: defaults).
func Dial(ctx context.Context, addr string, tlsConf *tls.Config, cfg *peers.Config) (*Client, error) {
	pc, err := peers.Dial(ctx, addr, tlsConf, cfg)
	if err != nil {
		return nil, err
	}
	c := &Client{pc: pc, waiting: make(map[uint64]chan calls.Reply), done: make(chan struct{})}
	go c.read()
	return c, nil
}

// Close closes the connection and waits for the reader.
func (c *Client) Close() error {
	err := c.pc.Close()
	<-c.done
	return err
}

// Done is closed once the connection is dead.
func (c *Client) Done() <-chan struct{} { return c.done }

// Err returns why the connection died, or nil while it lives.
func (c *Client) Err() error {
	c.pmu.Lock()
	defer c.pmu.Unlock()
	return c.err
}

// Stats returns the byte counters.
func (c *Client) Stats() Stats {
	return Stats{
		FramesSent: c.framesSent.Load(), FramesReceived: c.framesRecv.Load(),
		FrameBytesSent: c.bytesSent.Load(), FrameBytesReceived: c.bytesRecv.Load(),
		BulkBytesSent: c.bulkSent.Load(), BulkBytesReceived: c.bulkRecv.Load(),
	}
}

func (c *Client) read() {
	defer close(c.done)
	r := c.pc.CallReader()
	var err error
	for {
		var h wire.Header
		var body []byte
		h, body, err = r.Next()
		if err != nil {
			break
		}
		c.framesRecv.Add(1)
		c.bytesRecv.Add(uint64(h.Len))
		var rep calls.Reply
		if derr := rep.Decode(body); derr != nil {
			err = fmt.Errorf("workertest: undecodable reply to request %d: %w", h.ReqID, derr)
			break
		}
		rep.Data = append([]byte(nil), rep.Data...)
		c.pmu.Lock()
		ch := c.waiting[h.ReqID]
		delete(c.waiting, h.ReqID)
		c.pmu.Unlock()
		if ch != nil {
			ch <- rep
		}
	}
	c.pmu.Lock()
	c.err = err
	for id, ch := range c.waiting {
		close(ch)
		delete(c.waiting, id)
	}
	c.pmu.Unlock()
	_ = c.pc.Close()
}

// send writes one frame and flushes; a non-nil wait registers for its
// reply first. It returns the request id.
func (c *Client) send(op wire.Op, flags wire.Flags, call *calls.Call, wait chan calls.Reply, id uint64) (uint64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if id == 0 {
		c.nextID++
		id = c.nextID
	}
	c.enc.Reset()
	if err := call.Encode(op, &c.enc); err != nil {
		return 0, err
	}
	if wait != nil {
		c.pmu.Lock()
		if c.err != nil || isClosed(c.done) {
			c.pmu.Unlock()
			return 0, c.deadErr()
		}
		c.waiting[id] = wait
		c.pmu.Unlock()
	}
	h := wire.Header{Op: op, Flags: flags, ReqID: id}
	err := c.pc.CallWriter().WriteFrame(&h, c.enc.B)
	if err == nil {
		err = c.pc.CallWriter().Flush()
	}
	if err != nil {
		return 0, err
	}
	c.framesSent.Add(1)
	c.bytesSent.Add(uint64(h.Len))
	return id, nil
}

// newID reserves a request id (for calls whose id must be known before
// they are sent).
func (c *Client) newID() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.nextID++
	return c.nextID
}

func isClosed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func (c *Client) deadErr() error {
	if err := c.Err(); err != nil {
		return fmt.Errorf("workertest: connection lost: %w", err)
	}
	return errors.New("workertest: connection lost")
}

func (c *Client) wait(ctx context.Context, ch chan calls.Reply) (calls.Reply, error) {
	select {
	case rep, ok := <-ch:
		if !ok {
			return calls.Reply{}, c.deadErr()
		}
		return rep, nil
	case <-ctx.Done():
		return calls.Reply{}, context.Cause(ctx)
	}
}

// Call sends a call that expects a reply and waits for it. A reply with a
// non-zero status is returned together with that status as a
// cudaerr.Error.
func (c *Client) Call(ctx context.Context, op wire.Op, call calls.Call) (calls.Reply, error) {
	ch := make(chan calls.Reply, 1)
	if _, err := c.send(op, 0, &call, ch, 0); err != nil {
		return calls.Reply{}, err
	}
	rep, err := c.wait(ctx, ch)
	if err == nil && rep.Status != 0 {
		err = cudaerr.Error(rep.Status)
	}
	return rep, err
}

// Send sends an asynchronous call (wire.FlagNoReply).
func (c *Client) Send(op wire.Op, call calls.Call) error {
	_, err := c.send(op, wire.FlagNoReply, &call, nil, 0)
	return err
}

// Raw sends a frame as given (flags included) and, when wantReply, waits
// for the reply to its request id.
func (c *Client) Raw(ctx context.Context, h wire.Header, body []byte, wantReply bool) (calls.Reply, error) {
	var ch chan calls.Reply
	c.mu.Lock()
	c.nextID++
	h.ReqID = c.nextID
	if wantReply {
		ch = make(chan calls.Reply, 1)
		c.pmu.Lock()
		c.waiting[h.ReqID] = ch
		c.pmu.Unlock()
	}
	err := c.pc.CallWriter().WriteFrame(&h, body)
	if err == nil {
		err = c.pc.CallWriter().Flush()
	}
	c.mu.Unlock()
	if err != nil || !wantReply {
		return calls.Reply{}, err
	}
	return c.wait(ctx, ch)
}

// Hello authenticates with the session token.
func (c *Client) Hello(ctx context.Context, token string) error {
	_, err := c.Call(ctx, calls.OpHello, calls.Call{Text: token})
	return err
}

// Malloc allocates n bytes on dev.
func (c *Client) Malloc(ctx context.Context, dev uint32, n uint64) (uint64, error) {
	rep, err := c.Call(ctx, calls.OpMalloc, calls.Call{Dev: dev, N: n})
	return rep.V1, err
}

// MemcpyHtoD copies data to dst asynchronously: inline up to
// calls.InlineMax, otherwise as a bulk transfer that this call completes
// before returning.
func (c *Client) MemcpyHtoD(ctx context.Context, dev uint32, dst uint64, data []byte, stream uint64) error {
	call := calls.Call{Dev: dev, Dst: dst, N: uint64(len(data)), Stream: stream}
	if len(data) <= calls.InlineMax {
		call.Data = data
		return c.Send(calls.OpMemcpyHtoD, call)
	}
	call.Aux = c.nextBulk.Add(1)
	if err := c.Send(calls.OpMemcpyHtoD, call); err != nil {
		return err
	}
	if err := c.pc.SendBulk(ctx, call.Aux, data); err != nil {
		return err
	}
	c.bulkSent.Add(uint64(len(data)))
	return nil
}

// MemcpyDtoH copies len(dst) bytes from src into dst and waits for them.
func (c *Client) MemcpyDtoH(ctx context.Context, dev uint32, src uint64, dst []byte, stream uint64) error {
	call := calls.Call{Dev: dev, Src: src, N: uint64(len(dst)), Stream: stream}
	id := c.newID()
	ch := make(chan calls.Reply, 1)
	var bulk chan error
	if len(dst) > calls.InlineMax {
		bulk = make(chan error, 1)
		go func() { bulk <- c.pc.RecvBulk(ctx, id, dst) }()
	}
	if _, err := c.send(calls.OpMemcpyDtoH, 0, &call, ch, id); err != nil {
		return err
	}
	rep, err := c.wait(ctx, ch)
	if err == nil && rep.Status != 0 {
		err = cudaerr.Error(rep.Status)
	}
	if bulk != nil {
		if err != nil {
			// The worker sends nothing for a failed copy; stop waiting.
			return err
		}
		if berr := <-bulk; berr != nil {
			return berr
		}
		c.bulkRecv.Add(uint64(len(dst)))
		return nil
	}
	if err != nil {
		return err
	}
	if len(rep.Data) != len(dst) {
		return fmt.Errorf("workertest: reply has %d bytes, want %d", len(rep.Data), len(dst))
	}
	copy(dst, rep.Data)
	return nil
}

// Sync calls StreamSynchronize on stream of dev.
func (c *Client) Sync(ctx context.Context, dev uint32, stream uint64) error {
	_, err := c.Call(ctx, calls.OpStreamSynchronize, calls.Call{Dev: dev, Stream: stream})
	return err
}

// ModuleLoad sends a module image with its digest (hex SHA-256) and
// returns the module: inline up to calls.InlineMax, otherwise as a bulk
// transfer sent while the call waits for its reply.
func (c *Client) ModuleLoad(ctx context.Context, dev uint32, digest string, img []byte) (uint64, error) {
	call := calls.Call{Dev: dev, Text: digest, N: uint64(len(img))}
	if len(img) <= calls.InlineMax {
		call.Data = img
		rep, err := c.Call(ctx, calls.OpModuleLoad, call)
		return rep.V1, err
	}
	call.Aux = c.nextBulk.Add(1)
	ch := make(chan calls.Reply, 1)
	if _, err := c.send(calls.OpModuleLoad, 0, &call, ch, 0); err != nil {
		return 0, err
	}
	sent := make(chan error, 1)
	go func() { sent <- c.pc.SendBulk(ctx, call.Aux, img) }()
	rep, err := c.wait(ctx, ch)
	if err == nil && rep.Status != 0 {
		err = cudaerr.Error(rep.Status)
	}
	if serr := <-sent; serr == nil {
		c.bulkSent.Add(uint64(len(img)))
	} else if err == nil {
		err = serr
	}
	return rep.V1, err
}
