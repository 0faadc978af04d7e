package fatbin

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Magic numbers and sizes of the formats.
const (
	// WrapperMagic starts the __fatBinC_Wrapper_t that nvcc passes to
	// __cudaRegisterFatBinary.
	WrapperMagic = 0x466243b1
	// WrapperVersion is the wrapper of an ordinary (whole-program) object;
	// WrapperLinkVersion the one of a device-linked object, whose fourth
	// field lists prelinked fatbins instead of naming a file.
	WrapperVersion     = 1
	WrapperLinkVersion = 2
	// WrapperSize is the size of the wrapper on a 64-bit host.
	WrapperSize = 24

	// Magic starts a fatbin container.
	Magic = 0xba55ed50
	// HeaderSize is the size of the container header.
	HeaderSize = 16
	// MinEntryHeaderSize is the smallest entry header (ELF entries use 64
	// bytes, PTX entries 80).
	MinEntryHeaderSize = 64

	// MaxSize bounds the containers Parse accepts (4 GiB): far above any
	// real one (PyTorch's largest are hundreds of MiB), low enough that a
	// corrupt size field cannot make a reader walk off into memory.
	MaxSize = 4 << 30
)

// Kind is what an entry holds.
type Kind uint16

// Entry kinds.
const (
	KindPTX Kind = 1 // PTX text (often compressed), compiled by the driver at load
	KindELF Kind = 2 // a cubin: machine code for one SM architecture
)

func (k Kind) String() string {
	switch k {
	case KindPTX:
		return "ptx"
	case KindELF:
		return "elf"
	}
	return fmt.Sprintf("kind(%d)", uint16(k))
}

// Flags are an entry's flag bits.
type Flags uint64

// Entry flags seen in nvcc 13 output (and documented by earlier toolkits'
// behaviour).
const (
	Flag64Bit          Flags = 0x0001 // 64-bit device addresses
	FlagDebug          Flags = 0x0002 // built with -G
	FlagLinux          Flags = 0x0010 // host is Linux
	FlagCompressedLZ4  Flags = 0x2000 // payload compressed with NVIDIA's LZ4 variant (toolkits before 13)
	FlagCompressedZstd Flags = 0x8000 // payload is one zstd frame (nvcc 13: PTX always, ELF with -Xfatbin -compress-all)

	compressedMask = FlagCompressedLZ4 | FlagCompressedZstd
)

// ErrFormat is wrapped by every error about malformed input.
var ErrFormat = errors.New("fatbin: malformed")

// FormatError says what is wrong with a container and where.
type FormatError struct {
	Offset int // byte offset in the container where the problem lies
	Msg    string
}

func (e *FormatError) Error() string {
	return fmt.Sprintf("fatbin: malformed at offset %d: %s", e.Offset, e.Msg)
}

func (e *FormatError) Unwrap() error { return ErrFormat }

func bad(off int, format string, args ...any) error {
	return &FormatError{Offset: off, Msg: fmt.Sprintf(format, args...)}
}

// Entry is one image of a container.
type Entry struct {
	Kind Kind
	// Arch is the SM architecture, such as 90 for sm_90 (an ELF's machine
	// code) or compute_90 (a PTX's virtual architecture).
	Arch int
	// Major and Minor are the code version: the PTX ISA version of a PTX
	// entry (9.0 for nvcc 13).
	Major, Minor int
	Flags        Flags
	// Offset is where the entry's header starts in the container;
	// HeaderSize its length. The payload follows the header.
	Offset, HeaderSize int
	// PaddedSize is the space the payload takes (a multiple of 8);
	// PayloadSize the bytes of the payload as stored (compressed when
	// Compressed), at most PaddedSize.
	PaddedSize, PayloadSize int
	// UncompressedSize is the payload's size once decompressed; equal to
	// PayloadSize for an uncompressed entry.
	UncompressedSize int
}

// Compressed reports whether the payload is compressed.
func (e *Entry) Compressed() bool { return e.Flags&compressedMask != 0 }

// Payload returns the entry's payload inside container, which must be the
// slice Parse read the entry from.
func (e *Entry) Payload(container []byte) []byte {
	start := e.Offset + e.HeaderSize
	return container[start : start+e.PayloadSize]
}

func (e *Entry) String() string {
	prefix := "sm"
	if e.Kind == KindPTX {
		prefix = "compute"
	}
	s := fmt.Sprintf("%v %s_%d, %d bytes", e.Kind, prefix, e.Arch, e.UncompressedSize)
	if e.Compressed() {
		s += fmt.Sprintf(" (%d compressed)", e.PayloadSize)
	}
	return s
}

// Container is a parsed fatbin container.
type Container struct {
	Version uint16
	// Size is the container's length in bytes: its header and entries.
	Size    int
	Entries []Entry
}

// Size reads the container header at the start of b (at least HeaderSize
// bytes) and returns the container's total length, without looking at the
// entries. It lets a caller that holds only a pointer to a container (the
// CUDA registration path) learn how many bytes it spans.
func Size(b []byte) (int, error) {
	if len(b) < HeaderSize {
		return 0, bad(0, "%d bytes, shorter than the %d-byte header", len(b), HeaderSize)
	}
	if m := binary.LittleEndian.Uint32(b); m != Magic {
		return 0, bad(0, "magic %#x, want %#x", m, uint32(Magic))
	}
	hs := int(binary.LittleEndian.Uint16(b[6:]))
	if hs < HeaderSize {
		return 0, bad(6, "header size %d, want at least %d", hs, HeaderSize)
	}
	fat := binary.LittleEndian.Uint64(b[8:])
	if fat > MaxSize-uint64(hs) {
		return 0, bad(8, "entries of %d bytes exceed %d", fat, uint64(MaxSize))
	}
	return hs + int(fat), nil
}

// Parse reads the container at the start of b; b may extend past it. It
// never panics and checks every size against b, so it is safe on
// untrusted input.
func Parse(b []byte) (*Container, error) {
	size, err := Size(b)
	if err != nil {
		return nil, err
	}
	if size > len(b) {
		return nil, bad(8, "container of %d bytes, only %d given", size, len(b))
	}
	c := &Container{Version: binary.LittleEndian.Uint16(b[4:]), Size: size}
	off := int(binary.LittleEndian.Uint16(b[6:]))
	for off < size {
		e, err := parseEntry(b[:size], off)
		if err != nil {
			return nil, err
		}
		c.Entries = append(c.Entries, e)
		off += e.HeaderSize + e.PaddedSize
	}
	return c, nil
}

func parseEntry(b []byte, off int) (Entry, error) {
	if len(b)-off < MinEntryHeaderSize {
		return Entry{}, bad(off, "%d bytes left, shorter than an entry header", len(b)-off)
	}
	h := b[off:]
	le := binary.LittleEndian
	e := Entry{
		Kind:       Kind(le.Uint16(h[0:])),
		Offset:     off,
		HeaderSize: int(le.Uint32(h[4:])),
		Minor:      int(le.Uint16(h[24:])),
		Major:      int(le.Uint16(h[26:])),
		Arch:       int(le.Uint32(h[28:])),
		Flags:      Flags(le.Uint64(h[40:])),
	}
	padded := le.Uint64(h[8:])
	stored := uint64(le.Uint32(h[16:]))
	uncompressed := le.Uint64(h[56:])
	switch {
	case e.Kind != KindPTX && e.Kind != KindELF:
		return Entry{}, bad(off, "entry kind %d is neither PTX (1) nor ELF (2)", uint16(e.Kind))
	case e.HeaderSize < MinEntryHeaderSize || e.HeaderSize > len(h):
		return Entry{}, bad(off+4, "entry header size %d outside [%d, %d]", e.HeaderSize, MinEntryHeaderSize, len(h))
	case padded > uint64(len(h)-e.HeaderSize):
		return Entry{}, bad(off+8, "payload of %d bytes runs past the container's end (%d bytes left)", padded, len(h)-e.HeaderSize)
	}
	e.PaddedSize = int(padded)
	// The stored size is zero in uncompressed entries, whose payload
	// fills the padded space (cubins are 8-byte multiples).
	switch {
	case stored == 0 && e.Compressed():
		return Entry{}, bad(off+16, "compressed entry with no stored size")
	case stored == 0:
		e.PayloadSize = e.PaddedSize
	case stored > padded:
		return Entry{}, bad(off+16, "stored size %d exceeds padded size %d", stored, padded)
	default:
		e.PayloadSize = int(stored)
	}
	if e.Compressed() {
		if uncompressed == 0 || uncompressed > MaxSize {
			return Entry{}, bad(off+56, "compressed entry with uncompressed size %d", uncompressed)
		}
		e.UncompressedSize = int(uncompressed)
	} else {
		e.UncompressedSize = e.PayloadSize
	}
	return e, nil
}

// Wrapper is the __fatBinC_Wrapper_t nvcc emits for each object:
// {int magic; int version; const unsigned long long *data; void *filename_or_fatbins}.
type Wrapper struct {
	Magic   uint32
	Version uint32
	Data    uint64 // address of the container
	Extra   uint64 // version 1: offline file name (usually 0); version 2: prelinked fatbins
}

// ParseWrapper reads a wrapper from its WrapperSize bytes.
func ParseWrapper(b []byte) (Wrapper, error) {
	if len(b) < WrapperSize {
		return Wrapper{}, bad(0, "wrapper of %d bytes, want %d", len(b), WrapperSize)
	}
	le := binary.LittleEndian
	w := Wrapper{Magic: le.Uint32(b), Version: le.Uint32(b[4:]), Data: le.Uint64(b[8:]), Extra: le.Uint64(b[16:])}
	switch {
	case w.Magic != WrapperMagic:
		return Wrapper{}, bad(0, "wrapper magic %#x, want %#x", w.Magic, uint32(WrapperMagic))
	case w.Version != WrapperVersion && w.Version != WrapperLinkVersion:
		return Wrapper{}, bad(4, "wrapper version %d, want %d or %d", w.Version, WrapperVersion, WrapperLinkVersion)
	case w.Data == 0:
		return Wrapper{}, bad(8, "wrapper has no data pointer")
	}
	return w, nil
}
