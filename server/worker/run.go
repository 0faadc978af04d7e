package worker

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"
	"sync"

	"github.com/xgpu/xgpu/server/backend"
	"github.com/xgpu/xgpu/server/host"
)

// BackendOpener opens the backend a worker Config names.
type BackendOpener func(cfg Config) (backend.Backend, error)

var (
	openersMu sync.Mutex // guards openers
	openers   = map[string]BackendOpener{BackendHost: openHost}
)

// RegisterBackend makes kind (such as BackendCUDA) openable by Run. A
// package that implements a backend with cgo registers it from an init
// function of a small glue package that the binary imports, so that this
// package never links cgo. Registering a kind again replaces its opener.
func RegisterBackend(kind string, open BackendOpener) {
	openersMu.Lock()
	defer openersMu.Unlock()
	openers[kind] = open
}

// OpenBackend opens the backend cfg.Backend names (zero: BackendHost).
func OpenBackend(cfg Config) (backend.Backend, error) {
	kind := cfg.Backend
	if kind == "" {
		kind = BackendHost
	}
	openersMu.Lock()
	open := openers[kind]
	known := make([]string, 0, len(openers))
	for k := range openers {
		known = append(known, k)
	}
	openersMu.Unlock()
	if open == nil {
		sort.Strings(known)
		return nil, fmt.Errorf("worker: backend %q is not available in this binary (have %s)", kind, strings.Join(known, ", "))
	}
	b, err := open(cfg)
	if err != nil {
		return nil, fmt.Errorf("worker: open %s backend: %w", kind, err)
	}
	return b, nil
}

func openHost(cfg Config) (backend.Backend, error) {
	var hc host.Config
	if cfg.Host != nil {
		hc = *cfg.Host
	}
	return host.New(hc)
}

// errStopped ends the session when Run's context ends.
var errStopped = errors.New("worker: stopped")

// Run is the body of a worker process: it opens the backend and the
// session's devices, listens, writes one Ready line as JSON to stdout and
// serves the session until it ends. It returns nil when the session ended
// normally (CloseSession, a lost client, ctx done) and an error when the
// worker could not start or no client came.
func Run(ctx context.Context, cfg Config, stdout io.Writer) error {
	return run(ctx, cfg, stdout, slog.Default())
}

func run(ctx context.Context, cfg Config, stdout io.Writer, log *slog.Logger) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	stopTracing, err := startTracing(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer stopTracing() // after the session: flushes its last spans
	b, err := OpenBackend(cfg)
	if err != nil {
		return err
	}
	w, err := newWorker(cfg, b, log)
	if err != nil {
		b.Close()
		return err
	}
	w.ownsBE = true
	l, ready, err := w.Listen()
	if err != nil {
		w.Close()
		return err
	}
	line, err := json.Marshal(ready)
	if err == nil {
		_, err = stdout.Write(append(line, '\n'))
	}
	if err != nil {
		l.Close()
		w.Close()
		return fmt.Errorf("worker: report address: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { w.end(errStopped) })
	defer stop()
	rep := &reporter{m: w.m, out: stdout, log: w.log}
	stopReports, reported := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(reported)
		rep.loop(stopReports)
	}()
	err = w.Serve(l)
	close(stopReports)
	<-reported // the last report counts the whole session
	switch {
	case err == nil, errors.Is(err, errStopped):
		return nil
	case errors.Is(err, ErrClientLost):
		w.log.Warn("worker: client lost; session freed", "err", err)
		return nil
	}
	return err
}

// maxConfigLine bounds the configuration line Main reads.
const maxConfigLine = 4 << 20

// Main is the entry point of the hidden `xgpu worker` command: it reads
// one Config as a JSON line from stdin, logs to stderr at Config.LogLevel
// and calls Run. It keeps reading stdin afterwards: end of input (the
// supervisor closed the pipe, or died) ends the session, like ctx.
func Main(ctx context.Context, stdin io.Reader, stdout, stderr io.Writer) error {
	br := bufio.NewReaderSize(stdin, 64<<10)
	line, err := readLine(br, maxConfigLine)
	if err != nil {
		return fmt.Errorf("worker: read config from stdin: %w", err)
	}
	var cfg Config
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cfg); err != nil {
		return fmt.Errorf("worker: parse config: %w", err)
	}
	level, err := parseLevel(cfg.LogLevel)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		// Returns at end of input; a process exits soon after Main.
		_, _ = io.Copy(io.Discard, br)
		cancel()
	}()
	return run(ctx, cfg, stdout, log)
}

// readLine reads one line of at most limit bytes (the newline excluded);
// a last line without newline counts.
func readLine(r *bufio.Reader, limit int) ([]byte, error) {
	var line []byte
	for {
		chunk, err := r.ReadSlice('\n')
		line = append(line, chunk...)
		if len(line) > limit+1 {
			return nil, fmt.Errorf("config line longer than %d bytes", limit)
		}
		switch {
		case err == nil:
			return line[:len(line)-1], nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF) && len(line) > 0:
			return line, nil
		default:
			return nil, err
		}
	}
}

// parseLevel parses Config.LogLevel.
func parseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "", "info":
		return slog.LevelInfo, nil
	case "debug":
		return slog.LevelDebug, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("worker: config: log level %q is none of debug, info, warn, error", s)
}
