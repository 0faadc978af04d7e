package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Frame layout, little endian:
//
//	offset  size  field
//	0       4     Len: total frame length in bytes, header included
//	4       2     Op
//	6       2     Flags
//	8       8     ReqID
//	16      16    trace id     } only when FlagTrace is set
//	32      8     span id      }
//	40      1     trace flags  }
//	HeaderLen(Flags) ...       body
const (
	// HeaderSize is the size of a frame header without a trace context.
	HeaderSize = 16
	// TraceSize is the size of the trace context that FlagTrace adds.
	TraceSize = 16 + 8 + 1
	// TraceHeaderSize is the size of a frame header with a trace context.
	TraceHeaderSize = HeaderSize + TraceSize
	// MaxFrameSize bounds the total length of one frame. Larger payloads go
	// over bulk streams in chunks, never as one frame.
	MaxFrameSize = 16 << 20
)

var (
	// ErrShortBuffer means the input ends before the frame header does. It is
	// the only error after which more input can make parsing succeed.
	ErrShortBuffer = errors.New("wire: short buffer")
	// ErrFrameTooLarge is wrapped by every error about a frame whose length
	// exceeds MaxFrameSize (or a Reader's own smaller limit).
	ErrFrameTooLarge = errors.New("wire: frame too large")
	// ErrMalformed is wrapped by every error about a frame that breaks the
	// format: a length shorter than its header, opcode zero, undefined flag
	// bits or an all-zero trace context.
	ErrMalformed = errors.New("wire: malformed frame")
)

// Op is a frame's opcode. Zero is invalid. Opcodes from OpTransportBase up
// are reserved for the transport itself (handshakes between peers); every
// other value is free for the call protocol built on top.
type Op uint16

// OpTransportBase is the first opcode reserved for the transport.
const OpTransportBase Op = 0xFF00

// Flags are a frame's flag bits. Bits not defined below must be zero.
type Flags uint16

const (
	// FlagTrace says a W3C trace context follows the fixed header.
	FlagTrace Flags = 1 << iota
	// FlagReply marks a reply to the request with the same ReqID.
	FlagReply
	// FlagError marks a reply whose body is an error instead of a result.
	FlagError
	// FlagNoReply marks a request the sender expects no reply to (an
	// asynchronous call); errors are kept and reported at the next
	// synchronising call.
	FlagNoReply

	knownFlags = FlagTrace | FlagReply | FlagError | FlagNoReply
)

// TraceContext is a W3C trace context (traceparent without its version):
// it links the receiver's span to the sender's.
type TraceContext struct {
	TraceID [16]byte
	SpanID  [8]byte
	Flags   uint8 // W3C trace flags; bit 0 is "sampled"
}

// Valid reports whether both ids are non-zero, as W3C requires.
func (t *TraceContext) Valid() bool {
	return t.TraceID != [16]byte{} && t.SpanID != [8]byte{}
}

// Header is a decoded frame header. Trace is meaningful only when Flags
// has FlagTrace.
type Header struct {
	Len   uint32 // total frame length, header included
	Op    Op
	Flags Flags
	ReqID uint64
	Trace TraceContext
}

// HeaderLen returns the size of a header with the given flags.
func HeaderLen(f Flags) int {
	if f&FlagTrace != 0 {
		return TraceHeaderSize
	}
	return HeaderSize
}

// BodyLen returns the length of the body that follows h. It is zero for a
// header whose Len is shorter than the header itself.
func (h *Header) BodyLen() int {
	n := int(h.Len) - HeaderLen(h.Flags)
	if n < 0 {
		return 0
	}
	return n
}

// check validates everything in h except Len.
func (h *Header) check() error {
	if h.Op == 0 {
		return fmt.Errorf("%w: opcode 0", ErrMalformed)
	}
	if h.Flags&^knownFlags != 0 {
		return fmt.Errorf("%w: undefined flags %#04x", ErrMalformed, uint16(h.Flags&^knownFlags))
	}
	if h.Flags&FlagTrace != 0 && !h.Trace.Valid() {
		return fmt.Errorf("%w: all-zero trace or span id", ErrMalformed)
	}
	return nil
}

// checkLen validates h.Len against the header size and max.
func (h *Header) checkLen(max int) error {
	if int64(h.Len) > int64(max) {
		return fmt.Errorf("%w: %d bytes (max %d)", ErrFrameTooLarge, h.Len, max)
	}
	if int(h.Len) < HeaderLen(h.Flags) {
		return fmt.Errorf("%w: length %d shorter than its %d-byte header", ErrMalformed, h.Len, HeaderLen(h.Flags))
	}
	return nil
}

// AppendHeader appends the encoding of h to dst and returns the extended
// slice. It writes h.Len as given; AppendFrame and Writer.WriteFrame fill it
// in. It does not validate h (Writer.WriteFrame does).
func AppendHeader(dst []byte, h *Header) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, h.Len)
	dst = binary.LittleEndian.AppendUint16(dst, uint16(h.Op))
	dst = binary.LittleEndian.AppendUint16(dst, uint16(h.Flags))
	dst = binary.LittleEndian.AppendUint64(dst, h.ReqID)
	if h.Flags&FlagTrace != 0 {
		dst = append(dst, h.Trace.TraceID[:]...)
		dst = append(dst, h.Trace.SpanID[:]...)
		dst = append(dst, h.Trace.Flags)
	}
	return dst
}

// AppendFrame sets h.Len from len(body), validates h and appends header
// and body to dst. On error dst is returned unchanged.
func AppendFrame(dst []byte, h *Header, body []byte) ([]byte, error) {
	if err := setLen(h, len(body)); err != nil {
		return dst, err
	}
	dst = AppendHeader(dst, h)
	return append(dst, body...), nil
}

// setLen validates h and sets its Len for a body of n bytes.
func setLen(h *Header, n int) error {
	if err := h.check(); err != nil {
		return err
	}
	total := int64(HeaderLen(h.Flags)) + int64(n)
	if total > MaxFrameSize {
		return fmt.Errorf("%w: %d bytes (max %d)", ErrFrameTooLarge, total, MaxFrameSize)
	}
	h.Len = uint32(total)
	return nil
}

// ParseHeader decodes the frame header at the start of b and returns it
// with its size in bytes. b need not hold the body. It returns
// ErrShortBuffer when b ends inside the header, and an error wrapping
// ErrMalformed or ErrFrameTooLarge for an invalid header.
func ParseHeader(b []byte) (Header, int, error) {
	return parseHeader(b, MaxFrameSize)
}

func parseHeader(b []byte, max int) (Header, int, error) {
	var h Header
	if len(b) < HeaderSize {
		return h, 0, ErrShortBuffer
	}
	h.Len = binary.LittleEndian.Uint32(b)
	h.Op = Op(binary.LittleEndian.Uint16(b[4:]))
	h.Flags = Flags(binary.LittleEndian.Uint16(b[6:]))
	h.ReqID = binary.LittleEndian.Uint64(b[8:])
	n := HeaderSize
	if h.Flags&FlagTrace != 0 {
		if len(b) < TraceHeaderSize {
			return Header{}, 0, ErrShortBuffer
		}
		copy(h.Trace.TraceID[:], b[16:32])
		copy(h.Trace.SpanID[:], b[32:40])
		h.Trace.Flags = b[40]
		n = TraceHeaderSize
	}
	if err := h.check(); err != nil {
		return Header{}, 0, err
	}
	if err := h.checkLen(max); err != nil {
		return Header{}, 0, err
	}
	return h, n, nil
}
