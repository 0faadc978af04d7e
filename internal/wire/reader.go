package wire

import (
	"errors"
	"io"
)

// DefaultBufferSize is the buffer size NewReader and NewWriter use when
// given zero.
const DefaultBufferSize = 64 << 10

// maxEmptyReads bounds how many (0, nil) reads in a row Reader accepts
// before giving up with io.ErrNoProgress.
const maxEmptyReads = 100

// Reader reads whole frames from an io.Reader into one reusable buffer. It
// reads as much as the source has ready per call, so a batch of small frames
// costs one read, and it allocates only when a frame larger than any before
// it arrives. The buffer grows up to the frame size limit.
//
// After any error other than a short read, the stream is out of step and
// every later Next returns the same error. The zero Reader is not usable;
// call NewReader.
type Reader struct {
	src   io.Reader
	buf   []byte // buffered input is buf[start:end]
	start int
	end   int
	limit int   // largest frame accepted
	err   error // sticky
}

// NewReader returns a Reader over src whose buffer starts at size bytes
// (zero: DefaultBufferSize) and whose frame limit is MaxFrameSize.
func NewReader(src io.Reader, size int) *Reader {
	if size <= 0 {
		size = DefaultBufferSize
	}
	if size < TraceHeaderSize {
		size = TraceHeaderSize
	}
	if size > MaxFrameSize {
		size = MaxFrameSize
	}
	return &Reader{src: src, buf: make([]byte, size), limit: MaxFrameSize}
}

// SetLimit lowers the largest frame this Reader accepts to n bytes (at
// least TraceHeaderSize, at most MaxFrameSize). A longer frame makes Next
// fail with an error wrapping ErrFrameTooLarge.
func (r *Reader) SetLimit(n int) {
	r.limit = min(max(n, TraceHeaderSize), MaxFrameSize)
}

// Buffered returns the number of bytes read from the source but not yet
// returned as frames.
func (r *Reader) Buffered() int { return r.end - r.start }

// Next reads the next frame and returns its header and body. The body
// aliases the Reader's buffer and is valid only until the next call to Next.
// At a clean end of input between frames it returns io.EOF; input that ends
// inside a frame gives io.ErrUnexpectedEOF.
func (r *Reader) Next() (Header, []byte, error) {
	if r.err != nil {
		return Header{}, nil, r.err
	}
	if err := r.fill(HeaderSize); err != nil {
		return Header{}, nil, r.fail(err)
	}
	// The flags, at bytes 6 and 7, decide the header size.
	hlen := HeaderLen(Flags(uint16(r.buf[r.start+6]) | uint16(r.buf[r.start+7])<<8))
	if err := r.fill(hlen); err != nil {
		return Header{}, nil, r.fail(err)
	}
	h, n, err := parseHeader(r.buf[r.start:r.end], r.limit)
	if err != nil {
		return Header{}, nil, r.fail(err)
	}
	if err := r.fill(int(h.Len)); err != nil {
		return Header{}, nil, r.fail(err)
	}
	body := r.buf[r.start+n : r.start+int(h.Len) : r.start+int(h.Len)]
	r.start += int(h.Len)
	if r.start == r.end {
		r.start, r.end = 0, 0
	}
	return h, body, nil
}

func (r *Reader) fail(err error) error {
	if errors.Is(err, io.EOF) && r.end > r.start {
		err = io.ErrUnexpectedEOF
	}
	r.err = err
	return err
}

// fill makes sure at least n bytes are buffered from r.start on.
func (r *Reader) fill(n int) error {
	if r.end-r.start >= n {
		return nil
	}
	if len(r.buf)-r.start < n {
		// Not enough room after start: move the partial frame to the
		// front, growing the buffer if the frame needs it.
		buf := r.buf
		if len(buf) < n {
			size := max(n, min(2*len(buf), r.limit))
			buf = make([]byte, size)
		}
		r.end = copy(buf, r.buf[r.start:r.end])
		r.start = 0
		r.buf = buf
	}
	empty := 0
	for r.end-r.start < n {
		m, err := r.src.Read(r.buf[r.end:])
		if m < 0 || m > len(r.buf)-r.end {
			return errors.New("wire: source returned an invalid count")
		}
		r.end += m
		if r.end-r.start >= n {
			return nil
		}
		if err != nil {
			return err
		}
		if m == 0 {
			if empty++; empty >= maxEmptyReads {
				return io.ErrNoProgress
			}
		} else {
			empty = 0
		}
	}
	return nil
}
