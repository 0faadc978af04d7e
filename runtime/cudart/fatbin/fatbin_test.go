package fatbin

import (
	"encoding/binary"
	"errors"
	"os"
	"testing"
)

func read(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The testdata containers are nvcc 13.0 output (nvcc --keep): vector_add.cu
// for sm_90 by default and with -Xfatbin -compress-all, and symbols.cu for
// the default architecture (sm_75).
func TestParseNvccOutput(t *testing.T) {
	type ent struct {
		kind               Kind
		arch, major, minor int
		flags              Flags
		payload, full      int
		magic              string // first payload bytes
	}
	const elf, zstd = "\x7fELF", "\x28\xb5\x2f\xfd"
	tests := []struct {
		name string
		file string
		size int
		ents []ent
	}{
		{"sm_90 default", "vector_add.fatbin", 5152, []ent{
			{KindELF, 90, 1, 8, Flag64Bit | FlagLinux, 4392, 4392, elf},
			{KindPTX, 90, 9, 0, Flag64Bit | FlagLinux | FlagCompressedZstd, 596, 1728, zstd},
		}},
		{"sm_90 compress-all", "vector_add_compressed.fatbin", 2008, []ent{
			{KindELF, 90, 1, 8, Flag64Bit | FlagLinux | FlagCompressedZstd, 1245, 4392, zstd},
			{KindPTX, 90, 9, 0, Flag64Bit | FlagLinux | FlagCompressedZstd, 596, 1728, zstd},
		}},
		{"default arch", "symbols_sm75.fatbin", 4592, []ent{
			{KindELF, 75, 1, 8, Flag64Bit | FlagLinux, 3936, 3936, elf},
			{KindPTX, 75, 9, 0, Flag64Bit | FlagLinux | FlagCompressedZstd, 495, 959, zstd},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := read(t, tt.file)
			n, err := Size(b[:HeaderSize])
			if err != nil || n != tt.size || n != len(b) {
				t.Fatalf("Size = %d, %v; want %d (file %d)", n, err, tt.size, len(b))
			}
			// Trailing bytes after the container are not part of it.
			c, err := Parse(append(b, 0xde, 0xad))
			if err != nil {
				t.Fatal(err)
			}
			if c.Size != tt.size || c.Version != 1 || len(c.Entries) != len(tt.ents) {
				t.Fatalf("container %+v", c)
			}
			for i, want := range tt.ents {
				e := &c.Entries[i]
				got := ent{e.Kind, e.Arch, e.Major, e.Minor, e.Flags, e.PayloadSize, e.UncompressedSize, string(e.Payload(b)[:4])}
				if got != want {
					t.Errorf("entry %d (%v) = %+v, want %+v", i, e, got, want)
				}
				if e.Compressed() != (want.flags&FlagCompressedZstd != 0) {
					t.Errorf("entry %d: Compressed = %v", i, e.Compressed())
				}
			}
		})
	}
}

func TestEntryString(t *testing.T) {
	c, err := Parse(read(t, "vector_add.fatbin"))
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{"elf sm_90, 4392 bytes", "ptx compute_90, 1728 bytes (596 compressed)"} {
		if got := c.Entries[i].String(); got != want {
			t.Errorf("entry %d: %q, want %q", i, got, want)
		}
	}
}

func TestParseRejects(t *testing.T) {
	good := read(t, "vector_add.fatbin")
	mut := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	le := binary.LittleEndian
	tests := []struct {
		name string
		in   []byte
	}{
		{"empty", nil},
		{"short header", good[:10]},
		{"bad magic", mut(func(b []byte) []byte { b[0] ^= 1; return b })},
		{"header size too small", mut(func(b []byte) []byte { le.PutUint16(b[6:], 8); return b })},
		{"truncated container", good[:len(good)-1]},
		{"huge size", mut(func(b []byte) []byte { le.PutUint64(b[8:], 1<<62); return b })},
		{"unknown kind", mut(func(b []byte) []byte { le.PutUint16(b[16:], 7); return b })},
		{"entry header too small", mut(func(b []byte) []byte { le.PutUint32(b[16+4:], 8); return b })},
		{"payload past end", mut(func(b []byte) []byte { le.PutUint64(b[16+8:], 1<<40); return b })},
		{"stored above padded", mut(func(b []byte) []byte { le.PutUint32(b[16+16:], 5000); return b })},
		{"compressed without stored size", mut(func(b []byte) []byte { le.PutUint64(b[16+40:], 0x8011); return b })},
		{"compressed without size", mut(func(b []byte) []byte {
			le.PutUint32(b[16+16:], 16)
			le.PutUint64(b[16+40:], 0x8011)
			return b
		})},
		{"trailing partial entry", mut(func(b []byte) []byte {
			le.PutUint64(b[8:], le.Uint64(b[8:])+8)
			return append(b, make([]byte, 8)...)
		})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse(tt.in)
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("Parse = %+v, %v; want ErrFormat", c, err)
			}
			var fe *FormatError
			if !errors.As(err, &fe) {
				t.Fatalf("%v is not a *FormatError", err)
			}
		})
	}
}

func TestParseWrapper(t *testing.T) {
	w := func(magic, version uint32, data uint64) []byte {
		b := make([]byte, WrapperSize)
		binary.LittleEndian.PutUint32(b, magic)
		binary.LittleEndian.PutUint32(b[4:], version)
		binary.LittleEndian.PutUint64(b[8:], data)
		return b
	}
	tests := []struct {
		name string
		in   []byte
		ok   bool
	}{
		{"version 1", w(WrapperMagic, 1, 0x1000), true},
		{"version 2", w(WrapperMagic, 2, 0x1000), true},
		{"short", w(WrapperMagic, 1, 0x1000)[:16], false},
		{"bad magic", w(0x466243b2, 1, 0x1000), false},
		{"bad version", w(WrapperMagic, 3, 0x1000), false},
		{"no data", w(WrapperMagic, 1, 0), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseWrapper(tt.in)
			if (err == nil) != tt.ok {
				t.Fatalf("ParseWrapper = %+v, %v; ok %v", got, err, tt.ok)
			}
			if tt.ok && got.Data != 0x1000 {
				t.Fatalf("data %#x", got.Data)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	for _, name := range []string{"vector_add.fatbin", "vector_add_compressed.fatbin", "symbols_sm75.fatbin"} {
		f.Add(read(f, name))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := Parse(b)
		if err != nil {
			return
		}
		if c.Size > len(b) {
			t.Fatalf("size %d > input %d", c.Size, len(b))
		}
		for i := range c.Entries {
			e := &c.Entries[i]
			_ = e.Payload(b) // must not panic
		}
	})
}
