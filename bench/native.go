package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Native is the native side of a run on the cuda backend: it measures
// what a CUDA program gets without xgpu, one measurement per call, so
// that the rounds of a case alternate it with xgpu's method.
// NativeProgram is the implementation; tests use fakes.
type Native interface {
	// Measure runs one command and returns its figures.
	Measure(ctx context.Context, cmd NativeCommand) ([]Figure, error)
}

// Operations of the native program (examples/bench/cudabench.cu). Each
// answers figures named after the operation; NativeUnit gives their unit.
const (
	// NativeInfo reports the program's devices: "devices N count".
	NativeInfo = "info"
	// NativeD2H4 times Count synchronous 4-byte cudaMemcpy device to
	// pageable host on device Dev: one figure per call, in µs.
	NativeD2H4 = "d2h-4B"
	// NativeStreamSync times Count cudaStreamSynchronize of an idle
	// non-blocking stream of device Dev: one figure per call, in µs.
	NativeStreamSync = "stream-sync"
	// NativeMemset queues Count cudaMemsetAsync of 256 bytes on a stream
	// of device Dev, then synchronizes it: calls per second.
	NativeMemset = "memset-256B"
	// NativeLaunch launches an empty kernel Count times (<<<1, 1>>>) on
	// a stream of device Dev, then synchronizes it: launches per second.
	NativeLaunch = "launch-empty"
	// NativeH2DPageable, NativeH2DPinned, NativeD2HPageable and
	// NativeD2HPinned run Count cudaMemcpy of Bytes between device Dev
	// and pageable (malloc) or pinned (cudaMallocHost) host memory, then
	// synchronize the device: GB/s over the whole.
	NativeH2DPageable = "h2d-pageable"
	NativeH2DPinned   = "h2d-pinned"
	NativeD2HPageable = "d2h-pageable"
	NativeD2HPinned   = "d2h-pinned"
	// NativePeer runs Count cudaMemcpyPeer of Bytes from device Dev to
	// device Peer, each followed by a synchronize of Dev (as xgpu's
	// MemcpyPeer returns once the copy is done): GB/s over the whole.
	NativePeer = "peer"
	// NativeAllReduce is an operation of the NCCL baseline
	// (examples/bench/nccl_allreduce.py, StartNCCL), not of the native
	// program: Count in-place float32 sum all-reduces of Bytes on every
	// rank, back to back, until every rank has synchronized. Its figure
	// is the bus bandwidth, Count*Bytes/time * 2(n-1)/n over n ranks, in
	// GB/s. Dev and Peer are unused.
	NativeAllReduce = "allreduce"
)

// nativeOps maps each operation to the unit of its figures.
var nativeOps = map[string]string{
	NativeInfo:        "count",
	NativeD2H4:        UnitMicros,
	NativeStreamSync:  UnitMicros,
	NativeMemset:      UnitRate,
	NativeLaunch:      UnitRate,
	NativeH2DPageable: UnitGBps,
	NativeH2DPinned:   UnitGBps,
	NativeD2HPageable: UnitGBps,
	NativeD2HPinned:   UnitGBps,
	NativePeer:        UnitGBps,
	NativeAllReduce:   UnitGBps,
}

// NativeUnit returns the unit of op's figures, or "" for an unknown
// operation.
func NativeUnit(op string) string { return nativeOps[op] }

// NativeCommand is one measurement of the native program. On the wire
// (the program's standard input, or its arguments) it is one line of five
// fields: "op count bytes dev peer".
type NativeCommand struct {
	Op    string // one of the Native* operations
	Count int    // calls or copies
	Bytes int64  // bytes per copy (copy operations)
	Dev   int    // the device, or the source of a peer copy
	Peer  int    // the destination device of a peer copy
}

// String returns the command as the program reads it.
func (c NativeCommand) String() string {
	return fmt.Sprintf("%s %d %d %d %d", c.Op, c.Count, c.Bytes, c.Dev, c.Peer)
}

// Validate reports whether the program can take c.
func (c NativeCommand) Validate() error {
	switch {
	case NativeUnit(c.Op) == "":
		return fmt.Errorf("bench: native: unknown operation %q", c.Op)
	case c.Count < 0 || (c.Op != NativeInfo && c.Count == 0):
		return fmt.Errorf("bench: native: %s: count %d", c.Op, c.Count)
	case c.Bytes < 0 || c.Bytes > MaxSize:
		return fmt.Errorf("bench: native: %s: %d bytes outside 0..%d", c.Op, c.Bytes, int64(MaxSize))
	case NativeUnit(c.Op) == UnitGBps && c.Bytes == 0:
		return fmt.Errorf("bench: native: %s needs a size", c.Op)
	case c.Dev < 0 || c.Peer < 0:
		return fmt.Errorf("bench: native: %s: negative device", c.Op)
	}
	return nil
}

// Figure is one line of the native program's output: "name value unit".
// A latency operation prints one figure per call, all with its name.
type Figure struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
	Unit  string  `json:"unit"`
}

// NativeError is a command the native program refused ("error message"
// instead of figures). The program stays usable.
type NativeError struct {
	Cmd NativeCommand
	Msg string
}

func (e *NativeError) Error() string {
	return fmt.Sprintf("bench: native program refused %q: %s", e.Cmd.String(), e.Msg)
}

// maxFigureLine bounds one output line of the native program.
const maxFigureLine = 4 << 10

// parseFigure parses "name value unit".
func parseFigure(line string) (Figure, error) {
	f := strings.Fields(line)
	if len(f) != 3 {
		return Figure{}, fmt.Errorf("want \"name value unit\", got %d fields", len(f))
	}
	v, err := strconv.ParseFloat(f[1], 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
		return Figure{}, fmt.Errorf("value %q is not a finite number >= 0", f[1])
	}
	return Figure{Name: f[0], Value: v, Unit: f[2]}, nil
}

// ParseFigures reads the output of one run of the native program with
// a command in its arguments (or of its default run, with none): one
// "name value unit" figure per line; blank lines and lines that start
// with # are skipped.
func ParseFigures(r io.Reader) ([]Figure, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 256), maxFigureLine)
	var out []Figure
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		f, err := parseFigure(line)
		if err != nil {
			return nil, fmt.Errorf("bench: native output line %d %q: %w", n, clip(line), err)
		}
		out = append(out, f)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("bench: native output: %w", err)
	}
	return out, nil
}

// readResponse reads the answer to cmd in serve mode: figures until a
// line "ok", or a line "error message".
func readResponse(r *bufio.Reader, cmd NativeCommand) ([]Figure, error) {
	var out []Figure
	for {
		raw, err := r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			return nil, fmt.Errorf("bench: native output line longer than %d bytes", r.Size())
		}
		if err != nil {
			if len(raw) > 0 && errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		line := strings.TrimSpace(string(raw))
		switch {
		case line == "" || line[0] == '#':
			continue
		case line == "ok":
			return out, nil
		case line == "error" || strings.HasPrefix(line, "error "):
			return nil, &NativeError{Cmd: cmd, Msg: strings.TrimSpace(strings.TrimPrefix(line, "error"))}
		}
		f, err := parseFigure(line)
		if err != nil {
			return nil, fmt.Errorf("bench: native answer to %q, line %q: %w", cmd.String(), clip(line), err)
		}
		if f.Name != cmd.Op && cmd.Op != NativeInfo {
			return nil, fmt.Errorf("bench: native answer to %q names %q", cmd.String(), f.Name)
		}
		out = append(out, f)
	}
}

func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

// values returns the values of the figures named name, checking their
// unit and, when want > 0, their number.
func values(figs []Figure, name, unit string, want int) ([]float64, error) {
	var vs []float64
	for _, f := range figs {
		if f.Name != name {
			continue
		}
		if f.Unit != unit {
			return nil, fmt.Errorf("bench: native figure %s in %q, want %q", name, f.Unit, unit)
		}
		vs = append(vs, f.Value)
	}
	switch {
	case len(vs) == 0:
		return nil, fmt.Errorf("bench: native program gave no figure %s", name)
	case want > 0 && len(vs) != want:
		return nil, fmt.Errorf("bench: native program gave %d figures %s, want %d", len(vs), name, want)
	}
	return vs, nil
}

// Defaults of NativeConfig.
const (
	DefaultNativeTimeout = 5 * time.Minute
	nativeCloseGrace     = 10 * time.Second
)

// NativeConfig starts the native program.
type NativeConfig struct {
	// Path is the native program: examples/bench/cudabench.cu built with
	// `nvcc -O2 -arch=sm_90 -cudart=shared` (or, for StartNCCL, the
	// Python interpreter). Required.
	Path string
	// Args are the program's arguments before "serve" (StartNCCL: the
	// script and its options). Zero: none.
	Args []string
	// Env is added to this process's environment for the program (e.g.
	// CUDA_VISIBLE_DEVICES, so that its devices are the servers' GPUs).
	// Zero: this process's environment.
	Env []string
	// Stderr receives the program's standard error. Zero: discarded
	// (its last lines still go into the error of a failed command).
	Stderr io.Writer
	// Timeout bounds one command. Zero: DefaultNativeTimeout.
	Timeout time.Duration
}

// NativeProgram is the native program running in serve mode: it reads
// one command per line on its standard input and answers each with its
// figures and a line "ok". One process serves the whole run, so its CUDA
// context, streams and buffers are made once, not once per round. It is
// safe for concurrent use; commands run one at a time.
type NativeProgram struct {
	cfg  NativeConfig
	cmd  *exec.Cmd
	tail *tailWriter
	done chan struct{} // closed when the process has exited

	mu  sync.Mutex // guards the fields below; held for a whole command
	in  io.WriteCloser
	out *bufio.Reader
	err error // set once the program is unusable
}

// StartNative starts the native program in serve mode. ctx bounds the
// start only; Close stops the program.
func StartNative(ctx context.Context, cfg NativeConfig) (*NativeProgram, error) {
	if cfg.Path == "" {
		return nil, errors.New("bench: native: no program path")
	}
	if cfg.Timeout < 0 {
		return nil, fmt.Errorf("bench: native: negative timeout %v", cfg.Timeout)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultNativeTimeout
	}
	if err := ctx.Err(); err != nil {
		return nil, context.Cause(ctx)
	}
	cmd := exec.Command(cfg.Path, append(slices.Clone(cfg.Args), "serve")...)
	if len(cfg.Env) > 0 {
		cmd.Env = append(os.Environ(), cfg.Env...)
	}
	tail := &tailWriter{max: 2 << 10}
	cmd.Stderr = tail
	if cfg.Stderr != nil {
		cmd.Stderr = io.MultiWriter(cfg.Stderr, tail)
	}
	cmd.SysProcAttr = nativeProcAttr()
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("bench: native: %w", err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("bench: native: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("bench: native: start %s: %w", cfg.Path, err)
	}
	p := &NativeProgram{cfg: cfg, cmd: cmd, tail: tail, done: make(chan struct{}), in: in,
		out: bufio.NewReaderSize(out, maxFigureLine)}
	go func() {
		_ = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// Measure sends cmd and reads its figures. A command the program refuses
// returns a *NativeError and leaves the program usable; any other failure
// (the program exited, its answer is malformed, the command timed out or
// ctx ended) stops the program, and every later Measure fails.
func (p *NativeProgram) Measure(ctx context.Context, cmd NativeCommand) ([]Figure, error) {
	if err := cmd.Validate(); err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		return nil, p.err
	}
	ctx, cancel := context.WithTimeoutCause(ctx, p.cfg.Timeout,
		fmt.Errorf("bench: native: %q took longer than %v", cmd.String(), p.cfg.Timeout))
	defer cancel()
	stop := context.AfterFunc(ctx, func() { _ = p.cmd.Process.Kill() })
	figs, err := p.exchange(cmd)
	killed := !stop() // the answer may have come just as the kill went out
	var ne *NativeError
	switch {
	case killed:
		err = context.Cause(ctx)
	case err == nil:
		return figs, nil
	case errors.As(err, &ne):
		return nil, err
	}
	_ = p.cmd.Process.Kill()
	if killed {
		<-p.done
	} else {
		<-p.done // the program's last words are in the tail once it has exited
		err = fmt.Errorf("bench: native program %s, command %q: %w%s", p.cfg.Path, cmd.String(), err, p.tail.note())
	}
	p.err = fmt.Errorf("bench: native program stopped after an earlier failure: %w", err)
	return nil, err
}

func (p *NativeProgram) exchange(cmd NativeCommand) ([]Figure, error) {
	if _, err := io.WriteString(p.in, cmd.String()+"\n"); err != nil {
		return nil, err
	}
	return readResponse(p.out, cmd)
}

// Close ends the program (end of input, then a kill after a grace
// period) and waits for it. It is idempotent.
func (p *NativeProgram) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err == nil {
		p.err = errors.New("bench: native program closed")
	}
	_ = p.in.Close()
	t := time.NewTimer(nativeCloseGrace)
	defer t.Stop()
	select {
	case <-p.done:
	case <-t.C:
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	return nil
}

// tailWriter keeps the last max bytes written to it.
type tailWriter struct {
	max int

	mu  sync.Mutex // guards buf
	buf []byte
}

func (w *tailWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	if over := len(w.buf) - w.max; over > 0 {
		w.buf = append(w.buf[:0], w.buf[over:]...)
	}
	return len(p), nil
}

// note returns the kept bytes as the end of an error message.
func (w *tailWriter) note() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := string(bytes.TrimSpace(w.buf))
	if s == "" {
		return ""
	}
	return "; its standard error ends with:\n" + s
}
