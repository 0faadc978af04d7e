package calls

import (
	"errors"
	"fmt"
	"math"

	"github.com/xgpu/xgpu/internal/wire"
)

// Opcodes of the call protocol. Values are part of the wire format: append,
// never renumber.
const (
	OpHello             wire.Op = 1  // client or peer worker introduces itself (Text: token)
	OpPing              wire.Op = 2  // no-op round trip
	OpMalloc            wire.Op = 3  // Dev, N -> V1: pointer
	OpFree              wire.Op = 4  // Dev, Dst
	OpMemGetInfo        wire.Op = 5  // Dev -> V1: free, V2: total
	OpMemset            wire.Op = 6  // Dev, Dst, Aux: value, Aux2: element width (1, 2, 4), N: elements, Stream
	OpMemcpyHtoD        wire.Op = 7  // Dev, Dst, N, Stream, Data inline or Aux: bulk id
	OpMemcpyDtoH        wire.Op = 8  // Dev, Src, N, Stream -> Data inline or V1: bulk id
	OpMemcpyDtoD        wire.Op = 9  // Dev, Dst, Src, N, Stream (one device)
	OpMemcpyPeer        wire.Op = 10 // Dev (source device, owns Stream), Dev2 (destination), Dst, Src, N, Stream; both on this worker
	OpPeerConnect       wire.Op = 11 // Dev2: remote device, Text: "addr|token|pin"; tells a worker how to reach the worker of Dev2
	OpPeerSend          wire.Op = 12 // Dev (source, owns Stream), Dev2 (remote destination), Dst, Src, N, Stream
	OpPeerWrite         wire.Op = 13 // worker to worker: Dev (local destination), Dst, N, Aux: bulk id or Data inline
	OpStreamCreate      wire.Op = 14 // Dev, Aux: flags, Aux2: priority (int32) -> V1: stream
	OpStreamDestroy     wire.Op = 15 // Dev, Stream
	OpStreamSynchronize wire.Op = 16 // Dev, Stream
	OpStreamQuery       wire.Op = 17 // Dev, Stream -> Status NotReady or Success
	OpStreamWaitEvent   wire.Op = 18 // Dev, Stream, Event (Dev2: device of the event)
	OpEventCreate       wire.Op = 19 // Dev, Aux: flags -> V1: event
	OpEventRecord       wire.Op = 20 // Dev, Event, Stream
	OpEventQuery        wire.Op = 21 // Dev, Event
	OpEventSynchronize  wire.Op = 22 // Dev, Event
	OpEventElapsedTime  wire.Op = 23 // Dev, Event (start), Event2 (end) -> V1: float32 bits of milliseconds
	OpEventDestroy      wire.Op = 24 // Dev, Event
	OpDeviceSynchronize wire.Op = 25 // Dev
	OpCloseSession      wire.Op = 26 // frees everything; the worker exits after replying

	opLimit = 27
)

var opNames = [opLimit]string{
	OpHello: "Hello", OpPing: "Ping", OpMalloc: "Malloc", OpFree: "Free", OpMemGetInfo: "MemGetInfo",
	OpMemset: "Memset", OpMemcpyHtoD: "MemcpyHtoD", OpMemcpyDtoH: "MemcpyDtoH", OpMemcpyDtoD: "MemcpyDtoD",
	OpMemcpyPeer: "MemcpyPeer", OpPeerConnect: "PeerConnect", OpPeerSend: "PeerSend", OpPeerWrite: "PeerWrite",
	OpStreamCreate: "StreamCreate", OpStreamDestroy: "StreamDestroy", OpStreamSynchronize: "StreamSynchronize",
	OpStreamQuery: "StreamQuery", OpStreamWaitEvent: "StreamWaitEvent", OpEventCreate: "EventCreate",
	OpEventRecord: "EventRecord", OpEventQuery: "EventQuery", OpEventSynchronize: "EventSynchronize",
	OpEventElapsedTime: "EventElapsedTime", OpEventDestroy: "EventDestroy", OpDeviceSynchronize: "DeviceSynchronize",
	OpCloseSession: "CloseSession",
}

// Name returns the API name of op, or "Op(n)" for an unknown one.
func Name(op wire.Op) string {
	if int(op) < opLimit && opNames[op] != "" {
		return opNames[op]
	}
	return fmt.Sprintf("Op(%d)", uint16(op))
}

// Known reports whether op is an opcode of this protocol.
func Known(op wire.Op) bool { return int(op) < opLimit && opNames[op] != "" }

// Fields of a Call, as bits of a per-opcode mask: a request carries exactly
// the fields its opcode names, in this order.
const (
	fDev uint32 = 1 << iota
	fDev2
	fStream
	fEvent
	fEvent2
	fDst
	fSrc
	fN
	fAux
	fAux2
	fText
	fData
)

var opFields = [opLimit]uint32{
	OpHello:             fText,
	OpPing:              0,
	OpMalloc:            fDev | fN,
	OpFree:              fDev | fDst,
	OpMemGetInfo:        fDev,
	OpMemset:            fDev | fDst | fAux | fAux2 | fN | fStream,
	OpMemcpyHtoD:        fDev | fDst | fN | fStream | fAux | fData,
	OpMemcpyDtoH:        fDev | fSrc | fN | fStream,
	OpMemcpyDtoD:        fDev | fDst | fSrc | fN | fStream,
	OpMemcpyPeer:        fDev | fDev2 | fDst | fSrc | fN | fStream,
	OpPeerConnect:       fDev2 | fText,
	OpPeerSend:          fDev | fDev2 | fDst | fSrc | fN | fStream,
	OpPeerWrite:         fDev | fDst | fN | fAux | fData,
	OpStreamCreate:      fDev | fAux | fAux2,
	OpStreamDestroy:     fDev | fStream,
	OpStreamSynchronize: fDev | fStream,
	OpStreamQuery:       fDev | fStream,
	OpStreamWaitEvent:   fDev | fDev2 | fStream | fEvent,
	OpEventCreate:       fDev | fAux,
	OpEventRecord:       fDev | fEvent | fStream,
	OpEventQuery:        fDev | fEvent,
	OpEventSynchronize:  fDev | fEvent,
	OpEventElapsedTime:  fDev | fEvent | fEvent2,
	OpEventDestroy:      fDev | fEvent,
	OpDeviceSynchronize: fDev,
	OpCloseSession:      0,
}

// Call is the body of a request frame. Which fields travel is fixed by the
// opcode (see the Op constants); the others are zero after Decode.
type Call struct {
	Dev    uint32 // logical device index in the client's device map
	Dev2   uint32 // second logical device (peer copies, events of another device)
	Stream uint64 // backend stream handle on Dev's worker; 0 = legacy default stream
	Event  uint64
	Event2 uint64
	Dst    uint64 // destination device pointer
	Src    uint64 // source device pointer
	N      uint64 // bytes, or elements for Memset
	Aux    uint64 // opcode-specific: flags, memset value, bulk transfer id
	Aux2   uint64 // opcode-specific: priority, memset element width
	Text   string // opcode-specific: token, peer address
	Data   []byte // inline payload; aliases the frame buffer after Decode
}

// ErrUnknownOp is returned for an opcode this protocol does not define.
var ErrUnknownOp = errors.New("calls: unknown opcode")

// Encode appends the fields of c that op carries to e.
func (c *Call) Encode(op wire.Op, e *wire.Enc) error {
	if !Known(op) {
		return fmt.Errorf("%w %d", ErrUnknownOp, op)
	}
	m := opFields[op]
	if m&fDev != 0 {
		e.U32(c.Dev)
	}
	if m&fDev2 != 0 {
		e.U32(c.Dev2)
	}
	for _, f := range [...]struct {
		bit uint32
		v   uint64
	}{{fStream, c.Stream}, {fEvent, c.Event}, {fEvent2, c.Event2}, {fDst, c.Dst}, {fSrc, c.Src}, {fN, c.N}, {fAux, c.Aux}, {fAux2, c.Aux2}} {
		if m&f.bit != 0 {
			e.U64(f.v)
		}
	}
	if m&fText != 0 && !e.String(c.Text) {
		return errors.New("calls: text field too long")
	}
	if m&fData != 0 && !e.Bytes(c.Data) {
		return errors.New("calls: inline data too long")
	}
	return nil
}

// Decode fills c from body for op. It never panics; a body that does not
// match op's layout gives an error wrapping wire.ErrTruncated or
// wire.ErrTrailing, and an unknown op gives ErrUnknownOp.
func (c *Call) Decode(op wire.Op, body []byte) error {
	if !Known(op) {
		return fmt.Errorf("%w %d", ErrUnknownOp, op)
	}
	*c = Call{}
	m := opFields[op]
	d := wire.NewDec(body)
	if m&fDev != 0 {
		c.Dev = d.U32()
	}
	if m&fDev2 != 0 {
		c.Dev2 = d.U32()
	}
	for _, f := range [...]struct {
		bit uint32
		p   *uint64
	}{{fStream, &c.Stream}, {fEvent, &c.Event}, {fEvent2, &c.Event2}, {fDst, &c.Dst}, {fSrc, &c.Src}, {fN, &c.N}, {fAux, &c.Aux}, {fAux2, &c.Aux2}} {
		if m&f.bit != 0 {
			*f.p = d.U64()
		}
	}
	if m&fText != 0 {
		c.Text = d.String()
	}
	if m&fData != 0 {
		c.Data = d.Bytes()
	}
	if err := d.Done(); err != nil {
		return fmt.Errorf("calls: %s: %w", Name(op), err)
	}
	return nil
}

// Reply is the body of a reply frame: the call's status (a cudaError_t
// value, 0 on success), two result values and optional inline data.
type Reply struct {
	Status int32
	V1, V2 uint64
	Data   []byte // aliases the frame buffer after Decode
}

// Encode appends r to e.
func (r *Reply) Encode(e *wire.Enc) error {
	e.U32(uint32(r.Status))
	e.U64(r.V1)
	e.U64(r.V2)
	if !e.Bytes(r.Data) {
		return errors.New("calls: reply data too long")
	}
	return nil
}

// Decode fills r from body; it never panics.
func (r *Reply) Decode(body []byte) error {
	d := wire.NewDec(body)
	r.Status = int32(d.U32())
	r.V1 = d.U64()
	r.V2 = d.U64()
	r.Data = d.Bytes()
	if err := d.Done(); err != nil {
		return fmt.Errorf("calls: reply: %w", err)
	}
	return nil
}

// Float32 helpers for EventElapsedTime's result.
func F32Bits(f float32) uint64 { return uint64(math.Float32bits(f)) }
func F32From(v uint64) float32 { return math.Float32frombits(uint32(v)) }

// InlineMax is the largest payload sent inside a call or reply frame; larger
// payloads go over bulk streams so that they never hold up small calls.
const InlineMax = 64 << 10
