package runtime

import (
	"encoding/hex"
	"fmt"

	"github.com/xgpu/xgpu/internal/calls"
	"github.com/xgpu/xgpu/internal/cudaerr"
)

// Malloc allocates size bytes on device dev and returns the device
// pointer, aligned to at least 256 bytes, inside the device's window.
// Malloc(dev, 0) returns 0 and no error, as cudaMalloc does.
func (c *Client) Malloc(dev int, size uint64) (uint64, error) {
	const op = "cudaMalloc"
	d, err := c.device(op, dev)
	if err != nil {
		return 0, err
	}
	if size == 0 {
		return 0, nil
	}
	p, _, err := d.s.roundTrip(calls.OpMalloc, &calls.Call{Dev: uint32(dev), N: size})
	if err != nil {
		return 0, opErr(op, dev, err)
	}
	if p < d.lo || p >= d.hi || size > d.hi-p || !d.allocs.add(p, size) {
		// The worker holds memory the client cannot account for: give it
		// back and refuse.
		_ = d.s.async(calls.OpFree, &calls.Call{Dev: uint32(dev), Dst: p})
		return 0, opErr(op, dev, fmt.Errorf("%w (worker returned %#x for %d bytes, outside the device's window [%#x, %#x) or over a live allocation)",
			cudaerr.Unknown, p, size, d.lo, d.hi))
	}
	return p, nil
}

// Free releases the allocation that starts at ptr. Free(0) does nothing. A
// pointer that is not the start of a live allocation made by this client
// fails with cudaErrorInvalidValue at once. The memory is released on the
// worker asynchronously, after the work already enqueued that uses it.
func (c *Client) Free(ptr uint64) error {
	const op = "cudaFree"
	if ptr == 0 {
		if c.closing.Load() {
			return opErr(op, -1, ErrClosed)
		}
		return nil
	}
	i, ok := c.m.DeviceOf(ptr)
	if !ok {
		return opErr(op, -1, invalid("%#x is not a device pointer", ptr))
	}
	d, err := c.device(op, i)
	if err != nil {
		return err
	}
	if _, ok := d.allocs.remove(ptr); !ok {
		return opErr(op, i, invalid("%#x is not the start of a live allocation", ptr))
	}
	return opErr(op, i, d.s.async(calls.OpFree, &calls.Call{Dev: uint32(i), Dst: ptr}))
}

// MemGetInfo returns the bytes device dev can still allocate and its total
// (the vGPU's memory quota).
func (c *Client) MemGetInfo(dev int) (free, total uint64, err error) {
	const op = "cudaMemGetInfo"
	d, err := c.device(op, dev)
	if err != nil {
		return 0, 0, err
	}
	free, total, err = d.s.roundTrip(calls.OpMemGetInfo, &calls.Call{Dev: uint32(dev)})
	return free, total, opErr(op, dev, err)
}

// resolve returns the device holding [p, p+n), which must lie inside one
// live allocation of this client or one module global it asked for.
func (c *Client) resolve(op string, p, n uint64) (*device, error) {
	i, ok := c.m.DeviceOf(p)
	if !ok {
		if gi, _, _, gok := c.globalOf(p, n); gok {
			return c.device(op, gi)
		}
		return nil, opErr(op, -1, invalid("%#x is not a device pointer", p))
	}
	d, err := c.device(op, i)
	if err != nil {
		return nil, err
	}
	if !d.allocs.contains(p, n) {
		if gi, _, _, gok := c.globalOf(p, n); gok && gi == i {
			return d, nil
		}
		return nil, opErr(op, i, invalid("[%#x, +%d) is not inside one live allocation", p, n))
	}
	return d, nil
}

// streamFor returns the stream to use on device d for work the caller put
// on s. A stream orders work on its own device only; a legacy stream
// stands for d's legacy stream (ownLegacy too).
func (c *Client) streamFor(op string, d *device, s Stream) (Stream, error) {
	if s.dev == d.idx {
		return s, nil
	}
	if s.id == 0 && s.dev < len(c.devs) {
		return Stream{dev: d.idx}, nil
	}
	return Stream{}, opErr(op, d.idx, &detailError{code: cudaerr.InvalidResourceHandle,
		msg: fmt.Sprintf("stream of device %d cannot order work on device %d", s.dev, d.idx)})
}

// Memset sets n bytes at dst to v, ordered on the legacy default stream of
// dst's device. Like cudaMemset on device memory it does not wait for the
// work.
func (c *Client) Memset(dst uint64, v byte, n uint64) error {
	return c.memset("cudaMemset", dst, uint64(v), 1, n, ownLegacy)
}

// MemsetAsync sets n bytes at dst to v in stream s.
func (c *Client) MemsetAsync(dst uint64, v byte, n uint64, s Stream) error {
	return c.memset("cudaMemsetAsync", dst, uint64(v), 1, n, s)
}

// MemsetD16Async sets count 16-bit values at dst, which must be 2-byte
// aligned, to v in stream s.
func (c *Client) MemsetD16Async(dst uint64, v uint16, count uint64, s Stream) error {
	return c.memset("cuMemsetD16Async", dst, uint64(v), 2, count, s)
}

// MemsetD32Async sets count 32-bit values at dst, which must be 4-byte
// aligned, to v in stream s.
func (c *Client) MemsetD32Async(dst uint64, v uint32, count uint64, s Stream) error {
	return c.memset("cuMemsetD32Async", dst, uint64(v), 4, count, s)
}

// memset sends one memset; s.dev < 0 means the legacy stream of dst's
// device.
func (c *Client) memset(op string, dst, v, width, count uint64, s Stream) error {
	if count == 0 {
		return c.closedErr(op)
	}
	if count > (1<<64-1)/width {
		return opErr(op, -1, invalid("%d elements of %d bytes overflow", count, width))
	}
	if dst%width != 0 {
		return opErr(op, -1, invalid("%#x is not aligned to %d bytes", dst, width))
	}
	d, err := c.resolve(op, dst, count*width)
	if err != nil {
		return err
	}
	st, err := c.streamFor(op, d, s)
	if err != nil {
		return err
	}
	return opErr(op, d.idx, d.s.async(calls.OpMemset, &calls.Call{Dev: uint32(d.idx), Dst: dst, Aux: v, Aux2: width, N: count, Stream: st.id}))
}

// closedErr is the result of a call that has nothing to do: ErrClosed
// after Close, nil before.
func (c *Client) closedErr(op string) error {
	if c.closing.Load() {
		return opErr(op, -1, ErrClosed)
	}
	return nil
}

// MemcpyHtoD copies src to dst and returns once the copy is done (errors
// of earlier asynchronous work of the device's session included), as
// cudaMemcpy does.
func (c *Client) MemcpyHtoD(dst uint64, src []byte) error {
	const op = "cudaMemcpy"
	d, err := c.htod(op, dst, src, ownLegacy)
	if err != nil || d == nil {
		return err
	}
	return opErr(op, d.idx, c.syncStream(d, 0))
}

// MemcpyHtoDAsync copies src to dst in stream s. It returns once src may
// be reused: every byte has reached the worker (like cudaMemcpyAsync from
// pageable memory); the copy into device memory happens in stream order.
func (c *Client) MemcpyHtoDAsync(dst uint64, src []byte, s Stream) error {
	_, err := c.htod("cudaMemcpyAsync", dst, src, s)
	return err
}

func (c *Client) htod(op string, dst uint64, src []byte, s Stream) (*device, error) {
	if len(src) == 0 {
		return nil, c.closedErr(op)
	}
	d, err := c.resolve(op, dst, uint64(len(src)))
	if err != nil {
		return nil, err
	}
	st, err := c.streamFor(op, d, s)
	if err != nil {
		return nil, err
	}
	return d, opErr(op, d.idx, d.s.htod(d.idx, dst, src, st.id))
}

// MemcpyDtoH copies len(dst) bytes from src into dst and returns once they
// are there, as cudaMemcpy does.
func (c *Client) MemcpyDtoH(dst []byte, src uint64) error {
	const op = "cudaMemcpy"
	d, stream, err := c.dtohArgs(op, dst, src, ownLegacy)
	if err != nil || d == nil {
		return err
	}
	if err := d.s.takeDeferred(); err != nil {
		return opErr(op, d.idx, err)
	}
	chunk := c.cfg.ChunkSize
	if len(dst) <= chunk {
		// One piece: no bookkeeping to allocate.
		w, err := d.s.dtoh(d.idx, dst, src, stream, false)
		if err != nil {
			return opErr(op, d.idx, err)
		}
		return opErr(op, d.idx, collect(w, nil))
	}
	ws := make([]*waiter, 0, (len(dst)+chunk-1)/chunk)
	var first error
	for off := 0; off < len(dst); off += chunk {
		w, err := d.s.dtoh(d.idx, dst[off:min(off+chunk, len(dst))], src+uint64(off), stream, false)
		if err != nil {
			first = err
			break
		}
		ws = append(ws, w)
	}
	// Pieces already sent complete on their own (or fail with the
	// session).
	for _, w := range ws {
		first = collect(w, first)
	}
	if first == nil {
		first = d.s.takeDeferred()
	}
	return opErr(op, d.idx, first)
}

// collect waits for the piece w, recycles it and returns first, or w's
// error if first is nil.
func collect(w *waiter, first error) error {
	<-w.done
	if err := w.result(); err != nil && first == nil {
		first = err
	}
	if w.s == nil {
		putWaiter(w)
	}
	return first
}

// MemcpyDtoHAsync copies len(dst) bytes from src into dst in stream s. It
// returns at once; dst holds the data once a synchronising call that
// covers s (StreamSynchronize, EventSynchronize of a later record,
// DeviceSynchronize) has returned, and must not be touched before. A
// failure of the copy surfaces at that call.
func (c *Client) MemcpyDtoHAsync(dst []byte, src uint64, s Stream) error {
	const op = "cudaMemcpyAsync"
	d, stream, err := c.dtohArgs(op, dst, src, s)
	if err != nil || d == nil {
		return err
	}
	chunk := c.cfg.ChunkSize
	for off := 0; off < len(dst); off += chunk {
		if _, err := d.s.dtoh(d.idx, dst[off:min(off+chunk, len(dst))], src+uint64(off), stream, true); err != nil {
			return opErr(op, d.idx, err)
		}
	}
	return nil
}

// dtohArgs checks a D2H copy's arguments; it returns a nil device when
// there is nothing to do.
func (c *Client) dtohArgs(op string, dst []byte, src uint64, s Stream) (*device, Stream, error) {
	if len(dst) == 0 {
		return nil, Stream{}, c.closedErr(op)
	}
	d, err := c.resolve(op, src, uint64(len(dst)))
	if err != nil {
		return nil, Stream{}, err
	}
	st, err := c.streamFor(op, d, s)
	if err != nil {
		return nil, Stream{}, err
	}
	return d, st, nil
}

// MemcpyDtoD copies n bytes from src to dst, ordered on the legacy default
// streams. On one device it does not wait for the copy, as cudaMemcpy
// between device pointers does not; between devices it behaves as
// MemcpyPeer.
func (c *Client) MemcpyDtoD(dst, src, n uint64) error {
	const op = "cudaMemcpy"
	if n == 0 {
		return c.closedErr(op)
	}
	dd, err := c.resolve(op, dst, n)
	if err != nil {
		return err
	}
	sd, err := c.resolve(op, src, n)
	if err != nil {
		return err
	}
	if dd == sd {
		return opErr(op, sd.idx, sd.s.async(calls.OpMemcpyDtoD, &calls.Call{Dev: uint32(sd.idx), Dst: dst, Src: src, N: n}))
	}
	return c.peerSync(op, dd, dst, sd, src, n)
}

// MemcpyDtoDAsync copies n bytes from src to dst in stream s. Between
// devices it behaves as MemcpyPeerAsync.
func (c *Client) MemcpyDtoDAsync(dst, src, n uint64, s Stream) error {
	const op = "cudaMemcpyAsync"
	if n == 0 {
		return c.closedErr(op)
	}
	dd, err := c.resolve(op, dst, n)
	if err != nil {
		return err
	}
	sd, err := c.resolve(op, src, n)
	if err != nil {
		return err
	}
	if dd == sd {
		st, err := c.streamFor(op, sd, s)
		if err != nil {
			return err
		}
		return opErr(op, sd.idx, sd.s.async(calls.OpMemcpyDtoD, &calls.Call{Dev: uint32(sd.idx), Dst: dst, Src: src, N: n, Stream: st.id}))
	}
	return c.peerAsync(op, dd, dst, sd, src, n, s)
}

// MemcpyPeer copies n bytes from src on device srcDev to dst on device
// dstDev. Like cudaMemcpyPeer it is ordered after all work enqueued before
// on the legacy streams of both devices, and work enqueued later on them
// sees the data. Between the devices of two servers the bytes go from
// worker to worker, never through the client.
func (c *Client) MemcpyPeer(dst uint64, dstDev int, src uint64, srcDev int, n uint64) error {
	const op = "cudaMemcpyPeer"
	dd, sd, err := c.peerArgs(op, dst, dstDev, src, srcDev, n)
	if err != nil || dd == nil {
		return err
	}
	if dd == sd {
		return opErr(op, sd.idx, sd.s.async(calls.OpMemcpyDtoD, &calls.Call{Dev: uint32(sd.idx), Dst: dst, Src: src, N: n}))
	}
	return c.peerSync(op, dd, dst, sd, src, n)
}

// MemcpyPeerAsync copies n bytes from src on device srcDev to dst on
// device dstDev in stream s, which must be a stream of srcDev (or a
// legacy stream, standing for srcDev's). Work on dstDev that reads dst must
// wait for the copy through an event recorded on s after it. Between the
// devices of two servers the bytes go from worker to worker, never through
// the client.
func (c *Client) MemcpyPeerAsync(dst uint64, dstDev int, src uint64, srcDev int, n uint64, s Stream) error {
	const op = "cudaMemcpyPeerAsync"
	dd, sd, err := c.peerArgs(op, dst, dstDev, src, srcDev, n)
	if err != nil || dd == nil {
		return err
	}
	return c.peerAsync(op, dd, dst, sd, src, n, s)
}

// peerArgs checks a peer copy's arguments; it returns nil devices when
// there is nothing to do.
func (c *Client) peerArgs(op string, dst uint64, dstDev int, src uint64, srcDev int, n uint64) (dd, sd *device, err error) {
	if _, err := c.device(op, dstDev); err != nil {
		return nil, nil, err
	}
	if _, err := c.device(op, srcDev); err != nil {
		return nil, nil, err
	}
	if n == 0 {
		return nil, nil, nil
	}
	if dd, err = c.resolve(op, dst, n); err != nil {
		return nil, nil, err
	}
	if sd, err = c.resolve(op, src, n); err != nil {
		return nil, nil, err
	}
	if dd.idx != dstDev || sd.idx != srcDev {
		return nil, nil, opErr(op, srcDev, invalid("destination %#x is on device %d, not %d, or source %#x on device %d, not %d",
			dst, dd.idx, dstDev, src, sd.idx, srcDev))
	}
	return dd, sd, nil
}

// peerSync is a peer copy serialized with the legacy streams of both
// devices: the destination's earlier work completes first, the copy runs
// on the source's legacy stream, and the call returns once it is done, so
// that later work on either device sees the data.
func (c *Client) peerSync(op string, dd *device, dst uint64, sd *device, src, n uint64) error {
	if err := c.syncDevice(dd); err != nil {
		return opErr(op, dd.idx, err)
	}
	if err := c.peerAsync(op, dd, dst, sd, src, n, Stream{dev: sd.idx}); err != nil {
		return err
	}
	return opErr(op, sd.idx, c.syncStream(sd, 0))
}

// peerAsync enqueues a copy from sd to dd on stream s of sd.
func (c *Client) peerAsync(op string, dd *device, dst uint64, sd *device, src, n uint64, s Stream) error {
	st, err := c.streamFor(op, sd, s)
	if err != nil {
		return err
	}
	stream := st.id
	if dd.s == sd.s {
		return opErr(op, sd.idx, sd.s.async(calls.OpMemcpyPeer, &calls.Call{Dev: uint32(sd.idx), Dev2: uint32(dd.idx), Dst: dst, Src: src, N: n, Stream: stream}))
	}
	if err := c.peerConnect(sd, dd); err != nil {
		return opErr(op, sd.idx, err)
	}
	// Pieces let the source worker stage, send and the destination write
	// one piece while the next is read.
	chunk := uint64(c.cfg.ChunkSize)
	for off := uint64(0); off < n; off += chunk {
		k := min(chunk, n-off)
		if err := sd.s.async(calls.OpPeerSend, &calls.Call{Dev: uint32(sd.idx), Dev2: uint32(dd.idx), Dst: dst + off, Src: src + off, N: k, Stream: stream}); err != nil {
			return opErr(op, sd.idx, err)
		}
	}
	return nil
}

// peerConnect tells sd's worker, once, how to reach dd's worker.
func (c *Client) peerConnect(sd, dd *device) error {
	s := sd.s
	s.peerMu.Lock()
	defer s.peerMu.Unlock()
	if err, done := s.peered[dd.idx]; done {
		return err
	}
	if err := dd.s.lost(); err != nil {
		return err
	}
	text := dd.s.addr + "|" + string(dd.s.token) + "|" + hex.EncodeToString(dd.s.pin)
	_, _, err := s.roundTrip(calls.OpPeerConnect, &calls.Call{Dev2: uint32(dd.idx), Text: text})
	if err == nil || cudaerr.Code(err) != cudaerr.DevicesUnavailable {
		// A refusal is remembered; a lost session fails everything anyway.
		s.peered[dd.idx] = err
	}
	return err
}

// MemoryType is the kind of memory a pointer refers to (cudaMemoryType).
type MemoryType int

// Memory types, with cudaMemoryType's values.
const (
	MemoryTypeUnregistered MemoryType = 0 // host memory unknown to CUDA
	MemoryTypeHost         MemoryType = 1 // registered or pinned host memory
	MemoryTypeDevice       MemoryType = 2
	MemoryTypeManaged      MemoryType = 3
)

// PointerAttributes describes a pointer, as cudaPointerAttributes does,
// with the bounds of the allocation that holds it.
type PointerAttributes struct {
	Type          MemoryType
	Device        int    // the logical device for device memory; -2 for unregistered host memory
	DevicePointer uint64 // the pointer itself for device memory, else 0
	HostPointer   uint64 // the pointer itself for host memory, else 0
	Base, Size    uint64 // the allocation holding the pointer (device memory only)
}

// UnregisteredDevice is PointerAttributes.Device for host memory CUDA does
// not know, the value the CUDA runtime reports there.
const UnregisteredDevice = -2

// PointerGetAttributes describes ptr without any network traffic: a
// pointer inside a live allocation this client made is device memory of
// the device whose window holds it; any other pointer in a device's
// window fails with cudaErrorInvalidValue, as CUDA fails for unmapped
// device addresses; every other pointer is unregistered host memory (the
// windows are kept out of the host's address space).
func (c *Client) PointerGetAttributes(ptr uint64) (PointerAttributes, error) {
	const op = "cudaPointerGetAttributes"
	if c.closing.Load() {
		return PointerAttributes{}, opErr(op, -1, ErrClosed)
	}
	i, ok := c.m.DeviceOf(ptr)
	if !ok {
		if gi, base, size, gok := c.globalOf(ptr, 0); gok {
			return PointerAttributes{Type: MemoryTypeDevice, Device: gi, DevicePointer: ptr, Base: base, Size: size}, nil
		}
		return PointerAttributes{Type: MemoryTypeUnregistered, Device: UnregisteredDevice, HostPointer: ptr}, nil
	}
	base, size, ok := c.devs[i].allocs.find(ptr)
	if !ok {
		if gi, gbase, gsize, gok := c.globalOf(ptr, 0); gok && gi == i {
			return PointerAttributes{Type: MemoryTypeDevice, Device: i, DevicePointer: ptr, Base: gbase, Size: gsize}, nil
		}
		return PointerAttributes{}, opErr(op, i, invalid("%#x is in device %d's window but in no live allocation", ptr, i))
	}
	return PointerAttributes{Type: MemoryTypeDevice, Device: i, DevicePointer: ptr, Base: base, Size: size}, nil
}
