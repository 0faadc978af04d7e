package wire_test

import (
	"bytes"
	"fmt"

	"github.com/xgpu/xgpu/internal/wire"
)

func Example() {
	var stream bytes.Buffer // a call stream

	// Sender: two asynchronous calls leave in one write.
	w := wire.NewWriter(&stream, 0)
	var e wire.Enc
	for i, size := range []uint32{256, 4096} {
		e.Reset()
		e.U64(0x1000_0000_0000) // device pointer
		e.U32(size)
		h := wire.Header{Op: 0x0101, Flags: wire.FlagNoReply, ReqID: uint64(i + 1)}
		if err := w.WriteFrame(&h, e.B); err != nil {
			panic(err)
		}
	}
	if err := w.Flush(); err != nil {
		panic(err)
	}

	// Receiver.
	r := wire.NewReader(&stream, 0)
	for range 2 {
		h, body, err := r.Next()
		if err != nil {
			panic(err)
		}
		d := wire.NewDec(body)
		ptr, size := d.U64(), d.U32()
		if err := d.Done(); err != nil {
			panic(err)
		}
		fmt.Printf("op %#04x req %d: ptr %#x size %d\n", uint16(h.Op), h.ReqID, ptr, size)
	}
	// Output:
	// op 0x0101 req 1: ptr 0x100000000000 size 256
	// op 0x0101 req 2: ptr 0x100000000000 size 4096
}
