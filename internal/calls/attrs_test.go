package calls

import (
	"errors"
	"math"
	"testing"

	"github.com/xgpu/xgpu/internal/wire"
)

func attrsOf(m map[int]int32) *Attrs {
	var a Attrs
	for k, v := range m {
		a.Valid[k], a.Value[k] = true, v
	}
	return &a
}

func TestAttrsRoundTrip(t *testing.T) {
	every := map[int]int32{}
	for i := 1; i < MaxAttr; i++ {
		every[i] = int32(i*7919 - 1000000)
	}
	tests := []struct {
		name string
		in   map[int]int32
		len  int
	}{
		{name: "empty", in: nil, len: AttrBitmapLen},
		{name: "one", in: map[int]int32{16: 132}, len: AttrBitmapLen + 4},
		{name: "edges and signs", in: map[int]int32{1: 1024, 7: 0, 8: -1, 131: -1, 255: math.MinInt32, 254: math.MaxInt32}, len: AttrBitmapLen + 6*4},
		{name: "every attribute", in: every, len: MaxAttrsLen},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := attrsOf(tt.in)
			b := AppendAttrs([]byte("prefix"), in)
			if string(b[:6]) != "prefix" {
				t.Fatal("AppendAttrs overwrote what b held")
			}
			b = b[6:]
			if len(b) != tt.len {
				t.Fatalf("encoded %d attributes into %d bytes, want %d", len(tt.in), len(b), tt.len)
			}
			var out Attrs
			if err := DecodeAttrs(b, &out); err != nil {
				t.Fatal(err)
			}
			if out != *in {
				t.Fatalf("round trip differs: got %d attributes, want %d", out.Len(), in.Len())
			}
			if out.Len() != len(tt.in) {
				t.Fatalf("Len = %d, want %d", out.Len(), len(tt.in))
			}
		})
	}
}

func TestAttrsIgnoresAttributeZero(t *testing.T) {
	in := attrsOf(map[int]int32{0: 5, 3: 1024})
	var out Attrs
	if err := DecodeAttrs(AppendAttrs(nil, in), &out); err != nil {
		t.Fatal(err)
	}
	if out.Valid[0] || out.Value[0] != 0 || !out.Valid[3] || out.Value[3] != 1024 || out.Len() != 1 {
		t.Fatalf("attribute 0 travelled or 3 was lost: %v %v", out.Valid[:4], out.Value[:4])
	}
}

func TestDecodeAttrsRejects(t *testing.T) {
	good := AppendAttrs(nil, attrsOf(map[int]int32{1: 1, 2: 2}))
	zero := append([]byte(nil), good...)
	zero[0] |= 1
	tests := []struct {
		name string
		b    []byte
	}{
		{name: "nothing", b: nil},
		{name: "short bitmap", b: good[:AttrBitmapLen-1]},
		{name: "missing value", b: good[:len(good)-4]},
		{name: "partial value", b: good[:len(good)-1]},
		{name: "extra value", b: append(append([]byte(nil), good...), 0, 0, 0, 0)},
		{name: "attribute zero", b: append(zero, 0, 0, 0, 0)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := *attrsOf(map[int]int32{9: 9})
			if err := DecodeAttrs(tt.b, &out); !errors.Is(err, ErrBadAttrs) {
				t.Fatalf("DecodeAttrs = %v, want ErrBadAttrs", err)
			}
			if out != (Attrs{}) {
				t.Fatal("a failed decode left attributes behind")
			}
		})
	}
}

func TestDeviceGetAttributesCall(t *testing.T) {
	// The request is the device alone; the set travels in the reply.
	var e wire.Enc
	if err := (&Call{Dev: 5, N: 9}).Encode(OpDeviceGetAttributes, &e); err != nil {
		t.Fatal(err)
	}
	if len(e.B) != 4 {
		t.Fatalf("request body is %d bytes, want 4", len(e.B))
	}
	if Name(OpDeviceGetAttributes) != "DeviceGetAttributes" {
		t.Fatalf("Name = %q", Name(OpDeviceGetAttributes))
	}
	set := attrsOf(map[int]int32{16: 132, 75: 9})
	rep := Reply{V1: 2, Data: AppendAttrs(nil, set)}
	e.Reset()
	if err := rep.Encode(&e); err != nil {
		t.Fatal(err)
	}
	var got Reply
	if err := got.Decode(e.B); err != nil {
		t.Fatal(err)
	}
	var out Attrs
	if err := DecodeAttrs(got.Data, &out); err != nil || out != *set || got.V1 != 2 {
		t.Fatalf("reply: %v, V1 %d, %d attributes", err, got.V1, out.Len())
	}
	if len(AppendAttrs(nil, &Attrs{})) > InlineMax || MaxAttrsLen > InlineMax {
		t.Fatal("an attribute set does not fit a reply frame")
	}
}

func FuzzDecodeAttrs(f *testing.F) {
	f.Add(AppendAttrs(nil, attrsOf(map[int]int32{1: 1024, 16: 132, 255: -1})))
	f.Add(make([]byte, AttrBitmapLen))
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		var a Attrs
		if err := DecodeAttrs(b, &a); err != nil {
			return
		}
		if string(AppendAttrs(nil, &a)) != string(b) {
			t.Fatal("re-encoding differs")
		}
	})
}
