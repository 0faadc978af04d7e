package calls

import (
	"encoding/binary"
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

	// Modules and kernels. Module and function handles belong to one
	// device of one worker. A module image is named by its SHA-256 (Text,
	// 64 hex digits), under which every worker of a server keeps it.
	OpModuleHave        wire.Op = 27 // Dev, Text: image SHA-256 -> V1: module, or 0 when the server does not hold the image
	OpModuleLoad        wire.Op = 28 // Dev, Text: image SHA-256, N: image bytes, Data inline or Aux: bulk id -> V1: module
	OpModuleUnload      wire.Op = 29 // Dev, Aux: module
	OpModuleGetFunction wire.Op = 30 // Dev, Aux: module, Text: kernel name -> V1: function, V2: parameters, Data: layout (AppendParams)
	OpFuncGetParams     wire.Op = 31 // Dev, Aux: function -> V1: function, V2: parameters, Data: layout (AppendParams)
	OpFuncGetAttribute  wire.Op = 32 // Dev, Aux: function, Aux2: attribute (CUfunction_attribute) -> V1: value (int64 bits)
	OpFuncSetAttribute  wire.Op = 33 // Dev, Aux: function, Aux2: attribute, N: value (int64 bits)
	OpModuleGetGlobal   wire.Op = 34 // Dev, Aux: module, Text: symbol -> V1: address, V2: size
	OpLaunchKernel      wire.Op = 35 // Dev, Stream, Aux: function, Grid, Block, SharedMem, Data: packed arguments

	// Devices.
	OpDeviceGetAttributes wire.Op = 36 // Dev -> V1: attributes answered, Data: the attribute set (AppendAttrs)

	// Opcodes 64 and up (collectives) and opLimit are in collective.go;
	// opcodes up to 63 go here.
)

var opNames = [opLimit]string{
	OpHello: "Hello", OpPing: "Ping", OpMalloc: "Malloc", OpFree: "Free", OpMemGetInfo: "MemGetInfo",
	OpMemset: "Memset", OpMemcpyHtoD: "MemcpyHtoD", OpMemcpyDtoH: "MemcpyDtoH", OpMemcpyDtoD: "MemcpyDtoD",
	OpMemcpyPeer: "MemcpyPeer", OpPeerConnect: "PeerConnect", OpPeerSend: "PeerSend", OpPeerWrite: "PeerWrite",
	OpStreamCreate: "StreamCreate", OpStreamDestroy: "StreamDestroy", OpStreamSynchronize: "StreamSynchronize",
	OpStreamQuery: "StreamQuery", OpStreamWaitEvent: "StreamWaitEvent", OpEventCreate: "EventCreate",
	OpEventRecord: "EventRecord", OpEventQuery: "EventQuery", OpEventSynchronize: "EventSynchronize",
	OpEventElapsedTime: "EventElapsedTime", OpEventDestroy: "EventDestroy", OpDeviceSynchronize: "DeviceSynchronize",
	OpCloseSession: "CloseSession", OpModuleHave: "ModuleHave", OpModuleLoad: "ModuleLoad", OpModuleUnload: "ModuleUnload",
	OpModuleGetFunction: "ModuleGetFunction", OpFuncGetParams: "FuncGetParams", OpFuncGetAttribute: "FuncGetAttribute",
	OpFuncSetAttribute: "FuncSetAttribute", OpModuleGetGlobal: "ModuleGetGlobal", OpLaunchKernel: "LaunchKernel",
	OpDeviceGetAttributes: "DeviceGetAttributes",
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
	fLaunch // Grid, Block, SharedMem
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
	OpModuleHave:        fDev | fText,
	OpModuleLoad:        fDev | fN | fAux | fText | fData,
	OpModuleUnload:      fDev | fAux,
	OpModuleGetFunction: fDev | fAux | fText,
	OpFuncGetParams:     fDev | fAux,
	OpFuncGetAttribute:  fDev | fAux | fAux2,
	OpFuncSetAttribute:  fDev | fN | fAux | fAux2,
	OpModuleGetGlobal:   fDev | fAux | fText,
	OpLaunchKernel:      fDev | fStream | fAux | fLaunch | fData,

	OpDeviceGetAttributes: fDev,
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
	Text   string // opcode-specific: token, peer address, image digest, kernel name
	Data   []byte // inline payload; aliases the frame buffer after Decode

	// Launch configuration (OpLaunchKernel).
	Grid      [3]uint32 // blocks in x, y, z
	Block     [3]uint32 // threads per block in x, y, z
	SharedMem uint32    // dynamic shared memory per block, bytes
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
	if m&fLaunch != 0 {
		for _, v := range c.Grid {
			e.U32(v)
		}
		for _, v := range c.Block {
			e.U32(v)
		}
		e.U32(c.SharedMem)
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
	if m&fLaunch != 0 {
		for i := range c.Grid {
			c.Grid[i] = d.U32()
		}
		for i := range c.Block {
			c.Block[i] = d.U32()
		}
		c.SharedMem = d.U32()
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

// MaxKernelArgs is the largest packed argument buffer a kernel launch
// takes: the parameter space of a CUDA kernel (32764 bytes since CUDA
// 12.1).
const MaxKernelArgs = 32764

// ParamSize is the size of one parameter in an encoded layout.
const ParamSize = 8

// Param is where one kernel parameter lies in the packed argument buffer
// of OpLaunchKernel: Size bytes at Offset, as cuFuncGetParamInfo reports.
type Param struct {
	Offset, Size uint32
}

// ErrBadLayout is wrapped by the error DecodeParams returns for a layout
// that is not one a kernel can have.
var ErrBadLayout = errors.New("calls: bad parameter layout")

// AppendParams appends the encoded layout ps to b: each parameter as its
// offset and size, both u32 little endian, in parameter order.
func AppendParams(b []byte, ps []Param) []byte {
	for _, p := range ps {
		b = binary.LittleEndian.AppendUint32(b, p.Offset)
		b = binary.LittleEndian.AppendUint32(b, p.Size)
	}
	return b
}

// DecodeParams decodes a layout AppendParams encoded. It checks that the
// parameters have non-zero sizes, follow each other without overlapping
// and end within MaxKernelArgs; it never panics.
func DecodeParams(b []byte) ([]Param, error) {
	if len(b)%ParamSize != 0 {
		return nil, fmt.Errorf("%w: %d bytes is not a whole number of parameters", ErrBadLayout, len(b))
	}
	ps := make([]Param, len(b)/ParamSize)
	end := uint64(0)
	for i := range ps {
		p := Param{Offset: binary.LittleEndian.Uint32(b[i*ParamSize:]), Size: binary.LittleEndian.Uint32(b[i*ParamSize+4:])}
		switch {
		case p.Size == 0:
			return nil, fmt.Errorf("%w: parameter %d has size 0", ErrBadLayout, i)
		case uint64(p.Offset) < end:
			return nil, fmt.Errorf("%w: parameter %d at offset %d overlaps the one before", ErrBadLayout, i, p.Offset)
		case uint64(p.Offset)+uint64(p.Size) > MaxKernelArgs:
			return nil, fmt.Errorf("%w: parameter %d ends past %d bytes", ErrBadLayout, i, MaxKernelArgs)
		}
		end = uint64(p.Offset) + uint64(p.Size)
		ps[i] = p
	}
	return ps, nil
}

// ArgsSize returns the length of the packed argument buffer of a kernel
// whose parameters are ps (in order): the end of the last one.
func ArgsSize(ps []Param) int {
	if len(ps) == 0 {
		return 0
	}
	last := ps[len(ps)-1]
	return int(last.Offset) + int(last.Size)
}
