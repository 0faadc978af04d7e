package wire

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

// The corpus under testdata/fuzz is replayed by every plain `go test`; run
// `go test -fuzz=FuzzReader ./internal/wire` to extend it.

func seedFrames(f *testing.F) {
	for _, h := range []Header{
		{Op: 1},
		{Op: 0x2a, Flags: FlagReply | FlagError, ReqID: 1 << 63},
		{Op: 3, Flags: FlagTrace | FlagNoReply, ReqID: 5, Trace: testTrace},
	} {
		var e Enc
		e.U64(0x1000_0000_0000)
		e.String("cudaMemcpy")
		e.Bytes([]byte{1, 2, 3})
		b, err := AppendFrame(nil, &h, e.B)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		f.Add(b[:len(b)-1])
		f.Add(append(append([]byte{}, b...), b...))
	}
	f.Add(rawHeader(MaxFrameSize+1, 1, 0))
	f.Add(rawHeader(3, 1, 0))
	f.Add(rawHeader(HeaderSize, 0, 0xffff))
	f.Add([]byte{})
}

func FuzzParseHeader(f *testing.F) {
	seedFrames(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		h, n, err := ParseHeader(b)
		if err != nil {
			if n != 0 || h != (Header{}) {
				t.Fatalf("error %v with header %+v, size %d", err, h, n)
			}
			if !errors.Is(err, ErrShortBuffer) && !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrFrameTooLarge) {
				t.Fatalf("unclassified error %v", err)
			}
			return
		}
		if n != HeaderLen(h.Flags) || n > len(b) || int(h.Len) < n || h.Len > MaxFrameSize {
			t.Fatalf("accepted inconsistent header %+v, size %d, input %d bytes", h, n, len(b))
		}
		// An accepted header re-encodes to the same bytes.
		if enc := AppendHeader(nil, &h); !bytes.Equal(enc, b[:n]) {
			t.Fatalf("re-encoding differs: %x vs %x", enc, b[:n])
		}
	})
}

func FuzzReader(f *testing.F) {
	seedFrames(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		r := NewReader(bytes.NewReader(b), 32)
		r.SetLimit(1 << 20)
		consumed := 0
		for {
			h, body, err := r.Next()
			if err != nil {
				if err == io.EOF && consumed != len(b) {
					t.Fatalf("io.EOF after %d of %d bytes", consumed, len(b))
				}
				return
			}
			consumed += int(h.Len)
			if len(body) != h.BodyLen() || consumed > len(b) {
				t.Fatalf("frame %+v with %d body bytes, %d consumed of %d", h, len(body), consumed, len(b))
			}
			// Decode the body as a call might; it must not panic.
			d := NewDec(body)
			_ = d.U64()
			_ = d.String()
			_ = d.Bytes()
			_ = d.Bool()
			_ = d.Raw(int(d.U8()))
			_ = d.Done()
			// A chunk header in the body must parse or say it is short.
			if ch, err := ParseChunkHeader(body); err == nil {
				_ = ch.Verify(body[ChunkHeaderSize:])
			}
		}
	})
}
