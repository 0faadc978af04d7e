package wire

import (
	"encoding/binary"
	"fmt"

	"github.com/cespare/xxhash/v2"
)

// ChunkHeaderSize is the encoded size of a ChunkHeader.
const ChunkHeaderSize = 8 + 4 + 8

// ChunkHeader precedes each chunk of a bulk payload: where the chunk lands
// in the destination, how long it is and the xxhash64 of its bytes.
//
// Layout, little endian: offset u64, length u32, xxhash64 u64.
type ChunkHeader struct {
	Offset uint64
	Len    uint32
	Sum    uint64
}

// ChecksumError reports a chunk whose bytes do not match its xxhash64.
type ChecksumError struct {
	Offset uint64 // the chunk's offset in its payload
	Len    uint32 // the chunk's length
	Want   uint64 // checksum in the chunk header
	Got    uint64 // checksum of the bytes received
}

func (e *ChecksumError) Error() string {
	return fmt.Sprintf("wire: checksum mismatch in chunk at offset %d (%d bytes): header says %#016x, payload hashes to %#016x",
		e.Offset, e.Len, e.Want, e.Got)
}

// ChunkSum returns the checksum a ChunkHeader carries for p.
func ChunkSum(p []byte) uint64 { return xxhash.Sum64(p) }

// AppendChunkHeader appends the encoding of h to dst.
func AppendChunkHeader(dst []byte, h *ChunkHeader) []byte {
	dst = binary.LittleEndian.AppendUint64(dst, h.Offset)
	dst = binary.LittleEndian.AppendUint32(dst, h.Len)
	return binary.LittleEndian.AppendUint64(dst, h.Sum)
}

// PutChunkHeader encodes h into b, which must hold ChunkHeaderSize bytes.
func PutChunkHeader(b []byte, h *ChunkHeader) {
	_ = b[ChunkHeaderSize-1]
	binary.LittleEndian.PutUint64(b, h.Offset)
	binary.LittleEndian.PutUint32(b[8:], h.Len)
	binary.LittleEndian.PutUint64(b[12:], h.Sum)
}

// ParseChunkHeader decodes the chunk header at the start of b. It returns
// ErrShortBuffer when b is shorter than ChunkHeaderSize.
func ParseChunkHeader(b []byte) (ChunkHeader, error) {
	if len(b) < ChunkHeaderSize {
		return ChunkHeader{}, ErrShortBuffer
	}
	return ChunkHeader{
		Offset: binary.LittleEndian.Uint64(b),
		Len:    binary.LittleEndian.Uint32(b[8:]),
		Sum:    binary.LittleEndian.Uint64(b[12:]),
	}, nil
}

// Verify checks that payload is as long as h says and hashes to h.Sum. A
// length mismatch wraps ErrMalformed; a checksum mismatch is a
// *ChecksumError.
func (h *ChunkHeader) Verify(payload []byte) error {
	if uint64(len(payload)) != uint64(h.Len) {
		return fmt.Errorf("%w: chunk at offset %d has %d bytes, header says %d", ErrMalformed, h.Offset, len(payload), h.Len)
	}
	if got := ChunkSum(payload); got != h.Sum {
		return &ChecksumError{Offset: h.Offset, Len: h.Len, Want: h.Sum, Got: got}
	}
	return nil
}
