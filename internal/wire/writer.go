package wire

import "io"

// Writer batches frames in a buffer and writes them to the destination only
// when the buffer is full or Flush is called, so that a run of asynchronous
// calls leaves in few writes. A body larger than the buffer is written
// straight from the caller's slice, without a copy.
//
// After a write error every later call returns that error. The zero Writer is
// not usable; call NewWriter.
type Writer struct {
	dst io.Writer
	buf []byte
	err error // sticky
}

// NewWriter returns a Writer over dst with a buffer of size bytes (zero:
// DefaultBufferSize).
func NewWriter(dst io.Writer, size int) *Writer {
	if size <= 0 {
		size = DefaultBufferSize
	}
	size = max(size, TraceHeaderSize)
	return &Writer{dst: dst, buf: make([]byte, 0, size)}
}

// Buffered returns the number of bytes waiting for Flush.
func (w *Writer) Buffered() int { return len(w.buf) }

// Available returns the free space in the buffer.
func (w *Writer) Available() int { return cap(w.buf) - len(w.buf) }

// WriteFrame sets h.Len from len(body), validates h and queues the frame. An
// invalid header or a frame over MaxFrameSize is rejected with nothing
// queued. WriteFrame writes to the destination only if the buffer overflows;
// call Flush to send what is queued.
func (w *Writer) WriteFrame(h *Header, body []byte) error {
	if w.err != nil {
		return w.err
	}
	if err := setLen(h, len(body)); err != nil {
		return err
	}
	total := int(h.Len)
	if len(w.buf)+total > cap(w.buf) && len(w.buf) > 0 {
		if err := w.Flush(); err != nil {
			return err
		}
	}
	w.buf = AppendHeader(w.buf, h)
	if len(w.buf)+len(body) <= cap(w.buf) {
		w.buf = append(w.buf, body...)
		return nil
	}
	// The body does not fit: send the header, then the body from the
	// caller's memory.
	if err := w.Flush(); err != nil {
		return err
	}
	return w.write(body)
}

// Flush writes all queued frames to the destination.
func (w *Writer) Flush() error {
	if w.err != nil {
		return w.err
	}
	if len(w.buf) == 0 {
		return nil
	}
	err := w.write(w.buf)
	w.buf = w.buf[:0]
	return err
}

func (w *Writer) write(p []byte) error {
	n, err := w.dst.Write(p)
	if err == nil && n != len(p) {
		err = io.ErrShortWrite
	}
	if err != nil {
		w.err = err
	}
	return err
}
