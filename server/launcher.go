package server

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xgpu/xgpu/server/backend"
	"github.com/xgpu/xgpu/server/worker"
)

// DefaultWorkerStartTimeout bounds how long a worker process may take to
// report its address.
const DefaultWorkerStartTimeout = 30 * time.Second

// WorkerLauncher starts the worker of a session.
type WorkerLauncher interface {
	// Launch starts a worker for cfg and returns once it listens (its
	// Ready line is known) or failed to. ctx bounds the start only: the
	// worker outlives it.
	Launch(ctx context.Context, cfg worker.Config) (WorkerHandle, error)
}

// WorkerHandle is a running worker.
type WorkerHandle interface {
	// Ready is what the worker reported: its data address and pin.
	Ready() worker.Ready
	// PID is the worker's process id; 0 for a worker in this process.
	PID() int
	// Done is closed once the worker has exited and freed its devices.
	Done() <-chan struct{}
	// Err is why the worker exited (nil: cleanly); valid after Done.
	Err() error
	// Stop asks the worker to end its session and waits until it has
	// exited; when ctx ends first it kills the worker (a process) and
	// still waits. It is idempotent.
	Stop(ctx context.Context) error
}

// ExecLauncher runs each worker as a child process: by default this
// binary again, as `xgpu worker`, with the worker's Config as one JSON line
// on its standard input. The child gets SIGKILL if the supervisor's
// thread dies (Linux), and ends its session when its standard input closes,
// so no worker outlives the supervisor. Stop closes that input, then kills
// the child if it has not exited when Stop's ctx ends. The zero value is
// ready to use.
type ExecLauncher struct {
	// Command returns the command to run; its standard input and output
	// are set by Launch. Zero: os.Executable() with the argument
	// "worker".
	Command func() (*exec.Cmd, error)
	// StartTimeout bounds the wait for the worker's Ready line. Zero:
	// DefaultWorkerStartTimeout.
	StartTimeout time.Duration
	// Stderr receives the worker's log. Zero: os.Stderr.
	Stderr io.Writer
}

var (
	_ WorkerLauncher = (*ExecLauncher)(nil)
	_ WorkerLauncher = (*InProcessLauncher)(nil)
)

// stderrTail keeps the last bytes a worker wrote to stderr, for the error
// of a worker that died before it was ready.
type stderrTail struct {
	w   io.Writer
	mu  sync.Mutex // guards buf
	buf []byte
}

const stderrTailSize = 2 << 10

func (s *stderrTail) Write(p []byte) (int, error) {
	s.mu.Lock()
	s.buf = append(s.buf, p...)
	if len(s.buf) > stderrTailSize {
		s.buf = append(s.buf[:0], s.buf[len(s.buf)-stderrTailSize:]...)
	}
	s.mu.Unlock()
	if s.w != nil {
		_, _ = s.w.Write(p)
	}
	return len(p), nil
}

func (s *stderrTail) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.TrimSpace(string(s.buf))
}

// Launch starts the worker process and waits for its Ready line.
func (l *ExecLauncher) Launch(ctx context.Context, cfg worker.Config) (WorkerHandle, error) {
	var cmd *exec.Cmd
	if l.Command != nil {
		var err error
		if cmd, err = l.Command(); err != nil {
			return nil, fmt.Errorf("server: worker command: %w", err)
		}
	} else {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("server: find own executable: %w", err)
		}
		cmd = exec.Command(exe, "worker")
	}
	line, err := json.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("server: worker config: %w", err)
	}
	// Plain pipes rather than cmd.StdinPipe/StdoutPipe: Wait runs in its
	// own goroutine while the supervisor still reads and writes them.
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("server: worker stdin: %w", err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return nil, fmt.Errorf("server: worker stdout: %w", err)
	}
	stderr := l.Stderr
	if stderr == nil {
		stderr = os.Stderr
	}
	tail := &stderrTail{w: stderr}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = inR, outW, tail
	cmd.SysProcAttr = workerSysProcAttr(cmd.SysProcAttr)
	err = cmd.Start()
	inR.Close()
	outW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		return nil, fmt.Errorf("server: start worker %s: %w", cmd.Path, err)
	}
	h := &procHandle{cmd: cmd, stdin: inW, done: make(chan struct{}), read: make(chan struct{})}
	type result struct {
		ready worker.Ready
		err   error
	}
	got := make(chan result, 1) // buffered: the reader never waits on it
	go func() {
		defer close(h.read)
		br := bufio.NewReader(outR)
		s, err := br.ReadString('\n')
		var r result
		if err != nil {
			r.err = fmt.Errorf("worker wrote no address: %w", err)
		} else if err := json.Unmarshal([]byte(s), &r.ready); err != nil {
			r.err = fmt.Errorf("worker wrote %q, not its address: %w", strings.TrimSpace(s), err)
		} else if r.ready.Address == "" || r.ready.CertSHA256 == "" {
			r.err = fmt.Errorf("worker wrote an incomplete address line %q", strings.TrimSpace(s))
		}
		got <- r
		if r.err == nil {
			h.readReports(br) // until the worker exits
		}
		_, _ = io.Copy(io.Discard, br)
	}()
	go func() {
		h.err = cmd.Wait()
		// The worker's last report is still in the pipe: read it, unless
		// a process the worker started holds the pipe open.
		select {
		case <-h.read:
		case <-time.After(reportGrace):
		}
		outR.Close()
		<-h.read
		close(h.done)
	}()

	// The config, then keep stdin open: its end tells the worker to stop.
	if _, err := inW.Write(append(line, '\n')); err != nil {
		// The worker is gone or stopped reading. What it wrote, if it
		// wrote anything before, says more than the broken pipe.
		select {
		case r := <-got:
			if r.err != nil {
				h.kill()
				return nil, fmt.Errorf("server: worker pid %d: %w (%s)", cmd.Process.Pid, r.err, tailOf(tail))
			}
		case <-time.After(reportGrace):
		}
		h.kill()
		return nil, fmt.Errorf("server: send config to worker: %w (%s)", err, tailOf(tail))
	}
	timeout := l.StartTimeout
	if timeout <= 0 {
		timeout = DefaultWorkerStartTimeout
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case r := <-got:
		if r.err != nil {
			h.kill()
			return nil, fmt.Errorf("server: worker pid %d: %w (%s)", cmd.Process.Pid, r.err, tailOf(tail))
		}
		h.ready = r.ready
		return h, nil
	case <-timer.C:
		h.kill()
		return nil, fmt.Errorf("server: worker pid %d said nothing within %v (%s)", cmd.Process.Pid, timeout, tailOf(tail))
	case <-ctx.Done():
		h.kill()
		return nil, fmt.Errorf("server: start worker: %w", context.Cause(ctx))
	}
}

func tailOf(t *stderrTail) string {
	if s := t.String(); s != "" {
		return "its log ends: " + s
	}
	return "it logged nothing"
}

// procHandle is a worker process.
type procHandle struct {
	cmd   *exec.Cmd
	stdin *os.File
	ready worker.Ready
	done  chan struct{} // closed after Wait returned and its stdout was read
	read  chan struct{} // closed when the reader of its stdout returned
	err   error         // Wait's result, valid after done

	report atomic.Pointer[worker.Report] // the latest metrics report

	stopOnce sync.Once
}

func (h *procHandle) Ready() worker.Ready   { return h.ready }
func (h *procHandle) PID() int              { return h.cmd.Process.Pid }
func (h *procHandle) Done() <-chan struct{} { return h.done }
func (h *procHandle) Err() error {
	select {
	case <-h.done:
		return h.err
	default:
		return nil
	}
}

// Stop closes the worker's stdin (it ends its session), then kills it if
// ctx ends before it exits.
func (h *procHandle) Stop(ctx context.Context) error {
	h.stopOnce.Do(func() { h.stdin.Close() })
	select {
	case <-h.done:
		return nil
	case <-ctx.Done():
	}
	_ = h.cmd.Process.Kill()
	<-h.done
	return fmt.Errorf("server: worker pid %d killed: %w", h.PID(), context.Cause(ctx))
}

// kill ends a worker that failed to start and waits for it.
func (h *procHandle) kill() {
	h.stopOnce.Do(func() { h.stdin.Close() })
	_ = h.cmd.Process.Kill()
	<-h.done
}

// InProcessLauncher runs each worker inside the supervisor's process
// (worker.New and Serve on goroutines): for tests, demos and hosts where a
// separate process per session is not wanted. A fault of one session's
// device then reaches the whole process, so production servers use
// ExecLauncher. The zero value is ready to use.
type InProcessLauncher struct {
	// Backend is the backend every worker opens its devices on. Zero:
	// each worker opens its own with worker.OpenBackend and closes it
	// when it exits.
	Backend backend.Backend
	// Logger receives the workers' logs. Zero: slog.Default().
	Logger *slog.Logger
}

// Launch starts a worker on goroutines of this process.
func (l *InProcessLauncher) Launch(ctx context.Context, cfg worker.Config) (WorkerHandle, error) {
	if err := ctx.Err(); err != nil {
		return nil, context.Cause(ctx)
	}
	b, own := l.Backend, false
	if b == nil {
		var err error
		if b, err = worker.OpenBackend(cfg); err != nil {
			return nil, err
		}
		own = true
	}
	w, err := worker.New(cfg, b)
	if err != nil {
		if own {
			b.Close()
		}
		return nil, err
	}
	lis, ready, err := w.Listen()
	if err != nil {
		w.Close()
		if own {
			b.Close()
		}
		return nil, err
	}
	h := &goHandle{w: w, ready: ready, done: make(chan struct{})}
	go func() {
		err := w.Serve(lis)
		if own {
			if cerr := b.Close(); cerr != nil && err == nil {
				err = cerr
			}
		}
		if errors.Is(err, worker.ErrClosed) {
			err = nil
		}
		h.err = err
		close(h.done)
	}()
	return h, nil
}

// goHandle is a worker running in this process.
type goHandle struct {
	w     *worker.Worker
	ready worker.Ready
	done  chan struct{}
	err   error // valid after done
}

func (h *goHandle) Ready() worker.Ready   { return h.ready }
func (h *goHandle) PID() int              { return 0 }
func (h *goHandle) Done() <-chan struct{} { return h.done }
func (h *goHandle) Err() error {
	select {
	case <-h.done:
		return h.err
	default:
		return nil
	}
}

// Stop ends the session and waits for the worker's teardown; ctx cannot
// cut it short (the teardown drains queued work and does not block on
// the network).
func (h *goHandle) Stop(ctx context.Context) error {
	h.w.Close()
	<-h.done
	return nil
}
