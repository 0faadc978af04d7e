// Package wire is the compact binary frame codec of the xgpu data plane.
//
// Every call, reply and notification on a call stream is one frame: a fixed
// little-endian header (total length, opcode, flags, request id and, when
// FlagTrace is set, a W3C trace context) followed by an opcode-specific body.
// Bodies are built with Enc and read with Dec, whose error is sticky so that
// a decoder checks it once at the end. Bulk payloads travel as chunks, each
// behind a ChunkHeader carrying its offset, length and xxhash64.
//
// Usage:
//
//	w := wire.NewWriter(stream, 0)
//	var e wire.Enc
//	e.U64(devPtr)
//	e.U32(size)
//	h := wire.Header{Op: opMemset, Flags: wire.FlagNoReply, ReqID: id}
//	if err := w.WriteFrame(&h, e.B); err != nil { ... }
//	if err := w.Flush(); err != nil { ... } // one write for many frames
//
//	r := wire.NewReader(stream, 0)
//	for {
//		h, body, err := r.Next() // body is valid until the next call
//		if err != nil { ... }
//		d := wire.NewDec(body)
//		ptr, size := d.U64(), d.U32()
//		if err := d.Done(); err != nil { ... }
//	}
//
// Parsing never panics on any input: malformed input yields an error that
// wraps ErrMalformed, ErrFrameTooLarge or ErrShortBuffer.
//
// Concurrency: the functions of this package are safe for concurrent use. A
// Reader, Writer, Enc or Dec is not; give each one a single owner.
package wire
