package devicemap

import (
	"errors"
	"io"
	"reflect"
	"testing"
)

// FuzzParse checks that Parse never panics, that it returns either a valid
// map or a *ParseError, and that every accepted map survives an encoding
// round trip and the read-only methods. Seeds are in testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	f.Add([]byte(`{"version":1,"devices":[]}`))
	f.Add([]byte(`{"version":1,"window":1073741824,"devices":[{"index":0,"host":"h","server":"s","address":"h:1","gpuUuid":"GPU-1","gpuIndex":0,"vgpu":"GPU-1/0","slot":0,"memoryQuota":1}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Parse(data)
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("error %v is %T, want *ParseError", err, err)
			}
			if m != nil {
				t.Fatal("Parse returned a map and an error")
			}
			return
		}
		enc, err := m.Encode()
		if err != nil {
			t.Fatalf("Encode of a parsed map: %v", err)
		}
		back, err := Parse(enc)
		if err != nil {
			t.Fatalf("Parse(Encode()): %v\n%s", err, enc)
		}
		if !reflect.DeepEqual(back, m) {
			t.Fatalf("round trip changed the map\n%s", enc)
		}
		if err := m.Matrix(io.Discard); err != nil {
			t.Fatal(err)
		}
		if _, err := m.MatrixJSON(); err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, g := range m.Islands() {
			n += len(g)
		}
		if n != m.Len() {
			t.Fatalf("islands hold %d of %d devices", n, m.Len())
		}
		for i := range m.Len() {
			lo, hi := m.WindowOf(i)
			if j, ok := m.DeviceOf(lo); !ok || j != i || hi > UserSpaceTop {
				t.Fatalf("window %d [%#x, %#x) maps back to %d, %v", i, lo, hi, j, ok)
			}
		}
		for _, spec := range []string{"0,1", "GPU-", "1,0,1"} {
			if s, err := m.Select(spec); err == nil || s != nil {
				if err := s.Validate(); err != nil {
					t.Fatalf("Select(%q) result invalid: %v", spec, err)
				}
			}
		}
	})
}
