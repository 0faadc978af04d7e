package calls

import (
	"bytes"
	"errors"
	"testing"

	"github.com/xgpu/xgpu/internal/wire"
)

func full() Call {
	return Call{Dev: 3, Dev2: 7, Stream: 11, Event: 13, Event2: 17, Dst: 0x1000_0000_1000, Src: 0x1000_4000_0000,
		N: 1 << 20, Aux: 42, Aux2: 4, Text: "tok", Data: []byte{1, 2, 3},
		Grid: [3]uint32{1000, 2, 3}, Block: [3]uint32{256, 4, 1}, SharedMem: 48 << 10}
}

// masked returns c with only the fields op carries.
func masked(op wire.Op, c Call) Call {
	m := opFields[op]
	var r Call
	if m&fDev != 0 {
		r.Dev = c.Dev
	}
	if m&fDev2 != 0 {
		r.Dev2 = c.Dev2
	}
	if m&fStream != 0 {
		r.Stream = c.Stream
	}
	if m&fEvent != 0 {
		r.Event = c.Event
	}
	if m&fEvent2 != 0 {
		r.Event2 = c.Event2
	}
	if m&fDst != 0 {
		r.Dst = c.Dst
	}
	if m&fSrc != 0 {
		r.Src = c.Src
	}
	if m&fN != 0 {
		r.N = c.N
	}
	if m&fAux != 0 {
		r.Aux = c.Aux
	}
	if m&fAux2 != 0 {
		r.Aux2 = c.Aux2
	}
	if m&fText != 0 {
		r.Text = c.Text
	}
	if m&fData != 0 {
		r.Data = c.Data
	}
	if m&fLaunch != 0 {
		r.Grid, r.Block, r.SharedMem = c.Grid, c.Block, c.SharedMem
	}
	return r
}

func equal(a, b Call) bool {
	return a.Dev == b.Dev && a.Dev2 == b.Dev2 && a.Stream == b.Stream && a.Event == b.Event && a.Event2 == b.Event2 &&
		a.Dst == b.Dst && a.Src == b.Src && a.N == b.N && a.Aux == b.Aux && a.Aux2 == b.Aux2 && a.Text == b.Text &&
		string(a.Data) == string(b.Data) && a.Grid == b.Grid && a.Block == b.Block && a.SharedMem == b.SharedMem
}

func TestCallRoundTripEveryOp(t *testing.T) {
	for op := wire.Op(1); op < opLimit; op++ {
		if !Known(op) {
			continue // a gap between the ranges of opcodes
		}
		t.Run(Name(op), func(t *testing.T) {
			in := full()
			var e wire.Enc
			if err := in.Encode(op, &e); err != nil {
				t.Fatalf("Encode: %v", err)
			}
			var out Call
			if err := out.Decode(op, e.B); err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if want := masked(op, in); !equal(out, want) {
				t.Fatalf("round trip: got %+v, want %+v", out, want)
			}
			if len(e.B) > 0 {
				if err := out.Decode(op, e.B[:len(e.B)-1]); !errors.Is(err, wire.ErrTruncated) {
					t.Fatalf("truncated body: err = %v, want ErrTruncated", err)
				}
			}
			if err := out.Decode(op, append(e.B, 0)); !errors.Is(err, wire.ErrTrailing) {
				t.Fatalf("trailing byte: err = %v, want ErrTrailing", err)
			}
		})
	}
}

func TestUnknownOp(t *testing.T) {
	var c Call
	var e wire.Enc
	for _, op := range []wire.Op{0, opLimit, 0xFFFF} {
		if err := c.Encode(op, &e); !errors.Is(err, ErrUnknownOp) {
			t.Errorf("Encode(%d) = %v, want ErrUnknownOp", op, err)
		}
		if err := c.Decode(op, nil); !errors.Is(err, ErrUnknownOp) {
			t.Errorf("Decode(%d) = %v, want ErrUnknownOp", op, err)
		}
	}
	if got := Name(0xFFFF); got != "Op(65535)" {
		t.Errorf("Name(0xFFFF) = %q", got)
	}
}

func TestReplyRoundTrip(t *testing.T) {
	in := Reply{Status: 700, V1: 1 << 40, V2: F32Bits(1.5), Data: []byte("abc")}
	var e wire.Enc
	if err := in.Encode(&e); err != nil {
		t.Fatal(err)
	}
	var out Reply
	if err := out.Decode(e.B); err != nil {
		t.Fatal(err)
	}
	if out.Status != in.Status || out.V1 != in.V1 || F32From(out.V2) != 1.5 || string(out.Data) != "abc" {
		t.Fatalf("got %+v", out)
	}
	if err := out.Decode(e.B[:5]); err == nil {
		t.Fatal("short reply decoded without error")
	}
}

func FuzzCallDecode(f *testing.F) {
	for op := wire.Op(1); op < opLimit; op++ {
		c := full()
		var e wire.Enc
		_ = c.Encode(op, &e)
		f.Add(uint16(op), e.B)
	}
	f.Fuzz(func(t *testing.T, op uint16, body []byte) {
		var c Call
		if err := c.Decode(wire.Op(op), body); err == nil {
			var e wire.Enc
			if err := c.Encode(wire.Op(op), &e); err != nil {
				t.Fatalf("decoded call does not re-encode: %v", err)
			}
			if string(e.B) != string(body) {
				t.Fatalf("re-encoding differs")
			}
		}
		var r Reply
		_ = r.Decode(body)
	})
}

func TestLaunchCarriesConfiguration(t *testing.T) {
	in := Call{Dev: 1, Stream: 9, Aux: 0xfeed, Grid: [3]uint32{7, 1, 1}, Block: [3]uint32{128, 2, 1}, SharedMem: 1024, Data: []byte{1, 2, 3, 4}}
	var e wire.Enc
	if err := in.Encode(OpLaunchKernel, &e); err != nil {
		t.Fatal(err)
	}
	// Dev, Stream, Aux, 7 launch words, then the arguments with their length.
	if want := 4 + 8 + 8 + 7*4 + 4 + 4; len(e.B) != want {
		t.Fatalf("launch body is %d bytes, want %d", len(e.B), want)
	}
	var out Call
	if err := out.Decode(OpLaunchKernel, e.B); err != nil {
		t.Fatal(err)
	}
	if !equal(out, in) {
		t.Fatalf("got %+v, want %+v", out, in)
	}
}

func TestParams(t *testing.T) {
	tests := []struct {
		name    string
		in      []Param
		size    int
		wantErr bool
	}{
		{name: "none", in: nil, size: 0},
		{name: "pointer and int", in: []Param{{0, 8}, {8, 4}}, size: 12},
		{name: "padding", in: []Param{{0, 4}, {8, 8}, {16, 4}}, size: 20},
		{name: "largest", in: []Param{{0, MaxKernelArgs}}, size: MaxKernelArgs},
		{name: "zero size", in: []Param{{0, 0}}, wantErr: true},
		{name: "overlap", in: []Param{{0, 8}, {4, 4}}, wantErr: true},
		{name: "past the limit", in: []Param{{MaxKernelArgs - 2, 4}}, wantErr: true},
		{name: "offset overflows", in: []Param{{0xFFFFFFFF, 2}}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := AppendParams(nil, tt.in)
			if len(b) != ParamSize*len(tt.in) {
				t.Fatalf("encoded %d params into %d bytes", len(tt.in), len(b))
			}
			got, err := DecodeParams(b)
			if tt.wantErr {
				if !errors.Is(err, ErrBadLayout) {
					t.Fatalf("DecodeParams = %v, %v; want ErrBadLayout", got, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.in) {
				t.Fatalf("got %v, want %v", got, tt.in)
			}
			for i := range got {
				if got[i] != tt.in[i] {
					t.Fatalf("got %v, want %v", got, tt.in)
				}
			}
			if s := ArgsSize(got); s != tt.size {
				t.Fatalf("ArgsSize = %d, want %d", s, tt.size)
			}
		})
	}
	if _, err := DecodeParams(make([]byte, 7)); !errors.Is(err, ErrBadLayout) {
		t.Fatalf("7 bytes: %v, want ErrBadLayout", err)
	}
}

func FuzzDecodeParams(f *testing.F) {
	f.Add(AppendParams(nil, []Param{{0, 8}, {8, 4}}))
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		ps, err := DecodeParams(b)
		if err != nil {
			return
		}
		if string(AppendParams(nil, ps)) != string(b) {
			t.Fatal("re-encoding differs")
		}
		if s := ArgsSize(ps); s > MaxKernelArgs {
			t.Fatalf("ArgsSize %d past the limit", s)
		}
	})
}

func TestCooperativeLaunchRoundTrip(t *testing.T) {
	if Name(OpLaunchCooperativeKernel) != "LaunchCooperativeKernel" || !Known(OpLaunchCooperativeKernel) {
		t.Fatalf("OpLaunchCooperativeKernel is not in the tables")
	}
	tests := []struct {
		name string
		in   Call
	}{
		{"one block, no arguments", Call{Dev: 0, Aux: 1, Grid: [3]uint32{1, 1, 1}, Block: [3]uint32{1, 1, 1}}},
		{"full configuration", Call{Dev: 2, Stream: 0x1003, Aux: 0xbeef, Grid: [3]uint32{132, 2, 1}, Block: [3]uint32{256, 1, 1}, SharedMem: 4096, Data: []byte{9, 8, 7, 6, 5, 4, 3, 2}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var coop, plain wire.Enc
			if err := tt.in.Encode(OpLaunchCooperativeKernel, &coop); err != nil {
				t.Fatal(err)
			}
			if err := tt.in.Encode(OpLaunchKernel, &plain); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(coop.B, plain.B) {
				t.Fatalf("cooperative body %x differs from the ordinary launch's %x", coop.B, plain.B)
			}
			var out Call
			if err := out.Decode(OpLaunchCooperativeKernel, coop.B); err != nil {
				t.Fatal(err)
			}
			if !equal(out, tt.in) {
				t.Fatalf("got %+v, want %+v", out, tt.in)
			}
			if err := out.Decode(OpLaunchCooperativeKernel, coop.B[:len(coop.B)-1]); err == nil {
				t.Fatalf("a truncated body decoded")
			}
		})
	}
}
