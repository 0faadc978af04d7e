package wire

import (
	"bytes"
	"errors"
	"io"
	"math"
	"strings"
	"testing"
	"testing/iotest"
)

var testTrace = TraceContext{
	TraceID: [16]byte{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36},
	SpanID:  [8]byte{0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7},
	Flags:   1,
}

func TestFrameRoundTrip(t *testing.T) {
	tests := []struct {
		name    string
		h       Header
		body    []byte
		wantLen int
	}{
		{name: "empty body", h: Header{Op: 1, ReqID: 7}, wantLen: HeaderSize},
		{name: "small body", h: Header{Op: 0x1234, Flags: FlagNoReply, ReqID: math.MaxUint64}, body: []byte("hello"), wantLen: HeaderSize + 5},
		{name: "trace", h: Header{Op: 2, Flags: FlagTrace | FlagReply, ReqID: 1, Trace: testTrace}, body: []byte{1, 2, 3}, wantLen: TraceHeaderSize + 3},
		{name: "error reply", h: Header{Op: OpTransportBase, Flags: FlagReply | FlagError, ReqID: 99}, body: []byte("boom"), wantLen: HeaderSize + 4},
		{name: "max frame", h: Header{Op: 3}, body: make([]byte, MaxFrameSize-HeaderSize), wantLen: MaxFrameSize},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := tt.h
			b, err := AppendFrame([]byte{0xAA}, &h, tt.body)
			if err != nil {
				t.Fatalf("AppendFrame: %v", err)
			}
			if got := len(b) - 1; got != tt.wantLen || int(h.Len) != tt.wantLen {
				t.Fatalf("frame length %d, h.Len %d, want %d", got, h.Len, tt.wantLen)
			}
			got, n, err := ParseHeader(b[1:])
			if err != nil {
				t.Fatalf("ParseHeader: %v", err)
			}
			if n != HeaderLen(h.Flags) {
				t.Errorf("header size %d, want %d", n, HeaderLen(h.Flags))
			}
			if got != h {
				t.Errorf("header %+v, want %+v", got, h)
			}
			if got.BodyLen() != len(tt.body) {
				t.Errorf("BodyLen %d, want %d", got.BodyLen(), len(tt.body))
			}
			if !bytes.Equal(b[1+n:], tt.body) {
				t.Errorf("body differs")
			}

			// The same frame through Writer and Reader.
			var buf bytes.Buffer
			w := NewWriter(&buf, 0)
			h2 := tt.h
			if err := w.WriteFrame(&h2, tt.body); err != nil {
				t.Fatalf("WriteFrame: %v", err)
			}
			if err := w.Flush(); err != nil {
				t.Fatalf("Flush: %v", err)
			}
			if !bytes.Equal(buf.Bytes(), b[1:]) {
				t.Fatalf("Writer output differs from AppendFrame")
			}
			r := NewReader(&buf, 0)
			rh, body, err := r.Next()
			if err != nil {
				t.Fatalf("Next: %v", err)
			}
			if rh != h || !bytes.Equal(body, tt.body) {
				t.Errorf("Reader gave %+v and %d bytes", rh, len(body))
			}
			if _, _, err := r.Next(); err != io.EOF {
				t.Errorf("Next after last frame: %v, want io.EOF", err)
			}
		})
	}
}

func le32(v uint32) []byte { return []byte{byte(v), byte(v >> 8), byte(v >> 16), byte(v >> 24)} }

// rawHeader builds a header by hand, bypassing validation.
func rawHeader(length uint32, op uint16, flags uint16) []byte {
	b := le32(length)
	b = append(b, byte(op), byte(op>>8), byte(flags), byte(flags>>8))
	return append(b, 1, 0, 0, 0, 0, 0, 0, 0)
}

func TestParseHeaderErrors(t *testing.T) {
	zeroTrace := append(rawHeader(TraceHeaderSize, 1, uint16(FlagTrace)), make([]byte, TraceSize)...)
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{name: "empty", in: nil, want: ErrShortBuffer},
		{name: "15 bytes", in: make([]byte, 15), want: ErrShortBuffer},
		{name: "trace cut short", in: rawHeader(TraceHeaderSize, 1, uint16(FlagTrace)), want: ErrShortBuffer},
		{name: "too large", in: rawHeader(MaxFrameSize+1, 1, 0), want: ErrFrameTooLarge},
		{name: "max uint32", in: rawHeader(math.MaxUint32, 1, 0), want: ErrFrameTooLarge},
		{name: "length below header", in: rawHeader(HeaderSize-1, 1, 0), want: ErrMalformed},
		{name: "zero length", in: rawHeader(0, 1, 0), want: ErrMalformed},
		{name: "length below trace header", in: append(rawHeader(HeaderSize, 1, uint16(FlagTrace)), testTrace.TraceID[:]...), want: ErrShortBuffer},
		{name: "opcode zero", in: rawHeader(HeaderSize, 0, 0), want: ErrMalformed},
		{name: "undefined flag", in: rawHeader(HeaderSize, 1, 0x8000), want: ErrMalformed},
		{name: "zero trace context", in: zeroTrace, want: ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, n, err := ParseHeader(tt.in)
			if !errors.Is(err, tt.want) {
				t.Fatalf("ParseHeader err = %v, want %v", err, tt.want)
			}
			if n != 0 || h != (Header{}) {
				t.Errorf("ParseHeader returned %+v, %d on error", h, n)
			}
		})
	}
}

func TestWriteFrameRejects(t *testing.T) {
	tests := []struct {
		name string
		h    Header
		body []byte
		want error
	}{
		{name: "opcode zero", h: Header{}, want: ErrMalformed},
		{name: "undefined flag", h: Header{Op: 1, Flags: 1 << 9}, want: ErrMalformed},
		{name: "trace without ids", h: Header{Op: 1, Flags: FlagTrace}, want: ErrMalformed},
		{name: "body too large", h: Header{Op: 1}, body: make([]byte, MaxFrameSize-HeaderSize+1), want: ErrFrameTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			w := NewWriter(&buf, 0)
			if err := w.WriteFrame(&tt.h, tt.body); !errors.Is(err, tt.want) {
				t.Fatalf("WriteFrame err = %v, want %v", err, tt.want)
			}
			if w.Buffered() != 0 {
				t.Errorf("rejected frame left %d bytes queued", w.Buffered())
			}
			// The Writer still works.
			ok := Header{Op: 5}
			if err := w.WriteFrame(&ok, []byte("x")); err != nil {
				t.Fatalf("WriteFrame after rejection: %v", err)
			}
			if err := w.Flush(); err != nil || buf.Len() != HeaderSize+1 {
				t.Fatalf("Flush: %v, %d bytes written", err, buf.Len())
			}
			if _, err := AppendFrame(nil, &tt.h, tt.body); !errors.Is(err, tt.want) {
				t.Errorf("AppendFrame err = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestReaderErrors(t *testing.T) {
	good, _ := AppendFrame(nil, &Header{Op: 1}, []byte("abcdef"))
	tests := []struct {
		name   string
		in     []byte
		limit  int
		frames int // good frames before the error
		want   error
	}{
		{name: "eof at boundary", in: good, frames: 1, want: io.EOF},
		{name: "eof in header", in: append(append([]byte{}, good...), good[:5]...), frames: 1, want: io.ErrUnexpectedEOF},
		{name: "eof in body", in: good[:len(good)-1], want: io.ErrUnexpectedEOF},
		{name: "too large", in: rawHeader(MaxFrameSize+1, 1, 0), want: ErrFrameTooLarge},
		{name: "over own limit", in: append(rawHeader(HeaderSize+100, 1, 0), make([]byte, 100)...), limit: 64, want: ErrFrameTooLarge},
		{name: "malformed after good", in: append(append([]byte{}, good...), rawHeader(HeaderSize, 0, 0)...), frames: 1, want: ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewReader(bytes.NewReader(tt.in), 0)
			if tt.limit > 0 {
				r.SetLimit(tt.limit)
			}
			for i := range tt.frames {
				if _, _, err := r.Next(); err != nil {
					t.Fatalf("frame %d: %v", i, err)
				}
			}
			_, _, err := r.Next()
			if !errors.Is(err, tt.want) {
				t.Fatalf("Next err = %v, want %v", err, tt.want)
			}
			if _, _, err2 := r.Next(); !errors.Is(err2, tt.want) {
				t.Errorf("error not sticky: second Next gave %v", err2)
			}
		})
	}
}

func TestReaderNoProgress(t *testing.T) {
	r := NewReader(zeroReader{}, 0)
	if _, _, err := r.Next(); !errors.Is(err, io.ErrNoProgress) {
		t.Fatalf("Next err = %v, want io.ErrNoProgress", err)
	}
}

type zeroReader struct{}

func (zeroReader) Read([]byte) (int, error) { return 0, nil }

// TestReaderStream sends many frames of mixed sizes through small reads and
// a small starting buffer, forcing compaction and growth.
func TestReaderStream(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf, 256)
	var want [][]byte
	for i := range 300 {
		n := (i * 7919) % 5000
		if i%50 == 0 {
			n = 100_000
		}
		body := bytes.Repeat([]byte{byte(i)}, n)
		h := Header{Op: Op(i%100 + 1), ReqID: uint64(i)}
		if i%3 == 0 {
			h.Flags = FlagTrace
			h.Trace = testTrace
		}
		if err := w.WriteFrame(&h, body); err != nil {
			t.Fatal(err)
		}
		want = append(want, body)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	for _, src := range []struct {
		name string
		r    io.Reader
	}{
		{name: "one byte reads", r: iotest.OneByteReader(bytes.NewReader(buf.Bytes()))},
		{name: "half reads", r: iotest.HalfReader(bytes.NewReader(buf.Bytes()))},
		{name: "data with eof", r: iotest.DataErrReader(bytes.NewReader(buf.Bytes()))},
	} {
		t.Run(src.name, func(t *testing.T) {
			r := NewReader(src.r, 64)
			for i, body := range want {
				h, got, err := r.Next()
				if err != nil {
					t.Fatalf("frame %d: %v", i, err)
				}
				if h.ReqID != uint64(i) || !bytes.Equal(got, body) {
					t.Fatalf("frame %d: ReqID %d, %d bytes; want %d bytes", i, h.ReqID, len(got), len(body))
				}
			}
			if _, _, err := r.Next(); err != io.EOF {
				t.Fatalf("final Next err = %v, want io.EOF", err)
			}
		})
	}
}

// countWriter counts Write calls.
type countWriter struct {
	bytes.Buffer
	writes int
}

func (c *countWriter) Write(p []byte) (int, error) {
	c.writes++
	return c.Buffer.Write(p)
}

func TestWriterBatches(t *testing.T) {
	var cw countWriter
	w := NewWriter(&cw, 4096)
	body := make([]byte, 40)
	for i := range 50 { // 50 * 56 bytes = 2800 bytes: fits
		h := Header{Op: 1, ReqID: uint64(i), Flags: FlagNoReply}
		if err := w.WriteFrame(&h, body); err != nil {
			t.Fatal(err)
		}
	}
	if cw.writes != 0 {
		t.Fatalf("%d writes before Flush, want 0", cw.writes)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if cw.writes != 1 || cw.Len() != 50*(HeaderSize+40) {
		t.Fatalf("%d writes of %d bytes, want 1 of %d", cw.writes, cw.Len(), 50*(HeaderSize+40))
	}
	// A body larger than the buffer goes out from the caller's slice.
	big := make([]byte, 10_000)
	h := Header{Op: 1}
	if err := w.WriteFrame(&h, big); err != nil {
		t.Fatal(err)
	}
	if cw.writes != 3 || w.Buffered() != 0 {
		t.Fatalf("after large frame: %d writes, %d buffered; want 3, 0", cw.writes, w.Buffered())
	}
}

type failWriter struct{ n int }

func (f *failWriter) Write(p []byte) (int, error) {
	if f.n == 0 {
		return 0, errors.New("link down")
	}
	f.n--
	return len(p), nil
}

func TestWriterStickyError(t *testing.T) {
	w := NewWriter(&failWriter{}, 0)
	h := Header{Op: 1}
	if err := w.WriteFrame(&h, nil); err != nil {
		t.Fatal(err)
	}
	err := w.Flush()
	if err == nil || !strings.Contains(err.Error(), "link down") {
		t.Fatalf("Flush err = %v", err)
	}
	if err2 := w.WriteFrame(&h, nil); err2 != err {
		t.Errorf("WriteFrame after failure: %v, want %v", err2, err)
	}
}

func TestReaderWriterNoAllocs(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf, 1<<20)
	body := make([]byte, 200)
	h := Header{Op: 9, Flags: FlagTrace, Trace: testTrace}
	frame, _ := AppendFrame(nil, &h, body)
	src := bytes.NewReader(nil)
	r := NewReader(src, 0)
	allocs := testing.AllocsPerRun(1000, func() {
		buf.Reset()
		h := Header{Op: 9, Flags: FlagTrace, Trace: testTrace}
		if err := w.WriteFrame(&h, body); err != nil {
			t.Fatal(err)
		}
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
		src.Reset(frame)
		if _, _, err := r.Next(); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per frame, want 0", allocs)
	}
}

func TestBodyRoundTrip(t *testing.T) {
	var e Enc
	e.U8(0xAB)
	e.U16(0xBEEF)
	e.U32(0xDEADBEEF)
	e.U64(math.MaxUint64 - 1)
	e.I64(-42)
	e.F64(3.5)
	e.Bool(true)
	e.Bytes([]byte{1, 2, 3})
	e.String("cudaMalloc")
	e.Bytes(nil)
	e.Raw([]byte{9, 9})

	d := NewDec(e.B)
	if v := d.U8(); v != 0xAB {
		t.Errorf("U8 %#x", v)
	}
	if v := d.U16(); v != 0xBEEF {
		t.Errorf("U16 %#x", v)
	}
	if v := d.U32(); v != 0xDEADBEEF {
		t.Errorf("U32 %#x", v)
	}
	if v := d.U64(); v != math.MaxUint64-1 {
		t.Errorf("U64 %#x", v)
	}
	if v := d.I64(); v != -42 {
		t.Errorf("I64 %d", v)
	}
	if v := d.F64(); v != 3.5 {
		t.Errorf("F64 %v", v)
	}
	if v := d.Bool(); !v {
		t.Errorf("Bool false")
	}
	if v := d.Bytes(); !bytes.Equal(v, []byte{1, 2, 3}) {
		t.Errorf("Bytes %v", v)
	}
	if v := d.String(); v != "cudaMalloc" {
		t.Errorf("String %q", v)
	}
	if v := d.Bytes(); len(v) != 0 {
		t.Errorf("empty Bytes %v", v)
	}
	if v := d.Raw(2); !bytes.Equal(v, []byte{9, 9}) {
		t.Errorf("Raw %v", v)
	}
	if err := d.Done(); err != nil {
		t.Fatalf("Done: %v", err)
	}
	e.Reset()
	if len(e.B) != 0 || cap(e.B) == 0 {
		t.Errorf("Reset: len %d cap %d", len(e.B), cap(e.B))
	}
}

func TestDecErrors(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		dec  func(d *Dec)
		want error
	}{
		{name: "u64 from 7 bytes", in: make([]byte, 7), dec: func(d *Dec) { d.U64() }, want: ErrTruncated},
		{name: "u8 from nothing", in: nil, dec: func(d *Dec) { d.U8() }, want: ErrTruncated},
		{name: "bytes longer than body", in: append(le32(100), 1, 2), dec: func(d *Dec) { d.Bytes() }, want: ErrTruncated},
		{name: "bytes length max", in: le32(math.MaxUint32), dec: func(d *Dec) { _ = d.String() }, want: ErrTruncated},
		{name: "negative raw", in: []byte{1}, dec: func(d *Dec) { d.Raw(-1) }, want: ErrTruncated},
		{name: "bad bool", in: []byte{2}, dec: func(d *Dec) { d.Bool() }, want: ErrMalformed},
		{name: "trailing", in: []byte{1, 2, 3}, dec: func(d *Dec) { d.U16() }, want: ErrTrailing},
		{name: "sticky", in: []byte{1, 2, 3, 4, 5, 6, 7, 8, 9}, dec: func(d *Dec) { d.U32(); d.U64(); d.U8() }, want: ErrTruncated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := NewDec(tt.in)
			tt.dec(&d)
			if err := d.Done(); !errors.Is(err, tt.want) {
				t.Fatalf("Done = %v, want %v", err, tt.want)
			}
			// Everything after a failure yields zero values.
			if tt.want != ErrTrailing {
				if d.U32() != 0 || d.Bytes() != nil || d.String() != "" {
					t.Errorf("decoder returned data after failure")
				}
			}
		})
	}
}

func TestChunkHeader(t *testing.T) {
	payload := bytes.Repeat([]byte("xgpu"), 1000)
	h := ChunkHeader{Offset: 1 << 40, Len: uint32(len(payload)), Sum: ChunkSum(payload)}
	b := AppendChunkHeader(nil, &h)
	if len(b) != ChunkHeaderSize {
		t.Fatalf("encoded %d bytes, want %d", len(b), ChunkHeaderSize)
	}
	var put [ChunkHeaderSize]byte
	PutChunkHeader(put[:], &h)
	if !bytes.Equal(put[:], b) {
		t.Fatalf("PutChunkHeader differs from AppendChunkHeader")
	}
	got, err := ParseChunkHeader(b)
	if err != nil || got != h {
		t.Fatalf("ParseChunkHeader = %+v, %v; want %+v", got, err, h)
	}
	if _, err := ParseChunkHeader(b[:ChunkHeaderSize-1]); !errors.Is(err, ErrShortBuffer) {
		t.Errorf("short chunk header: %v", err)
	}

	tests := []struct {
		name    string
		payload func() []byte
		want    error
	}{
		{name: "intact", payload: func() []byte { return payload }},
		{name: "one bit flipped", payload: func() []byte {
			p := bytes.Clone(payload)
			p[1234] ^= 0x10
			return p
		}, want: &ChecksumError{}},
		{name: "last byte changed", payload: func() []byte {
			p := bytes.Clone(payload)
			p[len(p)-1]++
			return p
		}, want: &ChecksumError{}},
		{name: "truncated", payload: func() []byte { return payload[:len(payload)-1] }, want: ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := got.Verify(tt.payload())
			switch want := tt.want.(type) {
			case nil:
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
			case *ChecksumError:
				var ce *ChecksumError
				if !errors.As(err, &ce) {
					t.Fatalf("Verify = %v, want *ChecksumError", err)
				}
				if ce.Offset != h.Offset || ce.Len != h.Len || ce.Want != h.Sum || ce.Got == h.Sum {
					t.Errorf("ChecksumError fields %+v", ce)
				}
				_ = want
			default:
				if !errors.Is(err, tt.want) {
					t.Fatalf("Verify = %v, want %v", err, tt.want)
				}
			}
		})
	}
}

func BenchmarkWriteReadFrame(b *testing.B) {
	var buf bytes.Buffer
	w := NewWriter(&buf, 1<<20)
	r := NewReader(&buf, 1<<20)
	var e Enc
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		e.Reset()
		e.U64(uint64(i))
		e.U32(64)
		h := Header{Op: 1, Flags: FlagNoReply, ReqID: uint64(i)}
		if err := w.WriteFrame(&h, e.B); err != nil {
			b.Fatal(err)
		}
		if i%64 == 63 {
			if err := w.Flush(); err != nil {
				b.Fatal(err)
			}
			for range 64 {
				if _, _, err := r.Next(); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
}
