package jaegertest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/xgpu/xgpu/internal/telemetry/jaegerbin"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Where Start looks for the Jaeger binary (see jaegerbin.Find).
const (
	EnvBin   = jaegerbin.EnvBin
	EnvCache = jaegerbin.EnvCache
)

const (
	startAttempts = 3                // a port taken between picking it and Jaeger's bind costs one attempt
	readyTimeout  = 60 * time.Second // Jaeger starts in about a second; CI machines are slow
	stopTimeout   = 10 * time.Second // from SIGTERM to SIGKILL
	pollEvery     = 50 * time.Millisecond
	waitTimeout   = 20 * time.Second // WaitTrace's bound
	requestLimit  = 10 * time.Second // one query request
)

// Binary returns the path of the Jaeger binary: $XGPU_JAEGER_BIN when set,
// else bin/jaeger in $XGPU_CACHE, else .cache/bin/jaeger in the root of the
// xgpu module that holds the working directory. The error says why none
// is usable.
func Binary() (string, error) {
	p, _, err := jaegerbin.Find()
	if err != nil {
		return "", fmt.Errorf("jaegertest: %w", err)
	}
	return p, nil
}

// Jaeger is a running Jaeger all-in-one process with in-memory storage.
type Jaeger struct {
	// OTLPHTTP is the base URL of the OTLP/HTTP receiver
	// ("http://127.0.0.1:port"), for telemetry.Config.Endpoint with the
	// http/protobuf protocol.
	OTLPHTTP string
	// OTLPGRPC is the URL of the OTLP/gRPC receiver, for
	// telemetry.Config.Endpoint with the grpc protocol.
	OTLPGRPC string
	// QueryURL is the base URL of the query service's HTTP API
	// (/api/services, /api/traces).
	QueryURL string
	// LogPath is the file Jaeger's output goes to.
	LogPath string

	cmd    *exec.Cmd
	exited chan struct{} // closed when the process has been waited for
	client *http.Client
}

// Start runs Jaeger for the rest of t and returns once it accepts spans and
// queries; t's cleanup stops it (and, if t failed, logs the tail of its
// output). It skips t when no Jaeger binary is found (see Binary) and
// fails t when Jaeger does not come up.
func Start(t testing.TB) *Jaeger {
	t.Helper()
	bin, err := Binary()
	if err != nil {
		t.Skip(err)
	}
	dir := t.TempDir()
	var last error
	for attempt := 1; attempt <= startAttempts; attempt++ {
		j, err := start(bin, dir, attempt)
		if err == nil {
			t.Cleanup(func() {
				if err := j.stop(); err != nil {
					t.Errorf("jaegertest: %v", err)
				}
				if t.Failed() {
					t.Logf("jaegertest: Jaeger output (%s):\n%s", j.LogPath, tail(j.LogPath, 4096))
				}
			})
			return j
		}
		last = err
		if !errors.Is(err, errPortTaken) {
			break
		}
	}
	t.Fatalf("jaegertest: %v", last)
	return nil
}

var errPortTaken = errors.New("port taken")

func start(bin, dir string, attempt int) (*Jaeger, error) {
	ports, err := freePorts(4)
	if err != nil {
		return nil, err
	}
	cfgPath := filepath.Join(dir, fmt.Sprintf("config-%d.yaml", attempt))
	if err := os.WriteFile(cfgPath, jaegerbin.Config(ports[0], ports[1], ports[2], ports[3]), 0o600); err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, fmt.Sprintf("jaeger-%d.log", attempt))
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close() // the child has its own descriptor

	cmd := exec.Command(bin, "--config", cfgPath)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = childEnv()
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	j := &Jaeger{
		QueryURL: fmt.Sprintf("http://127.0.0.1:%d", ports[0]),
		OTLPGRPC: fmt.Sprintf("http://127.0.0.1:%d", ports[2]),
		OTLPHTTP: fmt.Sprintf("http://127.0.0.1:%d", ports[3]),
		LogPath:  logPath,
		cmd:      cmd,
		exited:   make(chan struct{}),
		client:   &http.Client{Timeout: requestLimit},
	}
	go func() {
		defer close(j.exited)
		_ = cmd.Wait()
	}()
	if err := j.waitReady(ports); err != nil {
		_ = j.stop()
		out := tail(logPath, 2048)
		if strings.Contains(out, "address already in use") {
			return nil, fmt.Errorf("%w: %v", errPortTaken, err)
		}
		return nil, fmt.Errorf("%v; Jaeger output:\n%s", err, out)
	}
	return j, nil
}

// childEnv is the test's environment without OTEL_* variables, which
// would configure Jaeger's own telemetry.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "OTEL_") {
			env = append(env, kv)
		}
	}
	return env
}

// freePorts returns n distinct free loopback TCP ports. They are free when
// picked; another process may take one before Jaeger binds it, which Start
// retries.
func freePorts(n int) ([]int, error) {
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("free port: %w", err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// waitReady polls until the query API answers and both OTLP ports accept
// connections, the process exits, or readyTimeout passes.
func (j *Jaeger) waitReady(ports []int) error {
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	for {
		select {
		case <-j.exited:
			return fmt.Errorf("jaeger exited at start: %v", j.cmd.ProcessState)
		case <-ctx.Done():
			return fmt.Errorf("jaeger not ready after %v", readyTimeout)
		case <-tick.C:
		}
		if _, err := j.Services(ctx); err != nil {
			continue
		}
		ok := true
		for _, p := range ports[2:] {
			c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", p), time.Second)
			if err != nil {
				ok = false
				break
			}
			c.Close()
		}
		if ok {
			return nil
		}
	}
}

// stop ends the process: SIGTERM, then SIGKILL after stopTimeout.
func (j *Jaeger) stop() error {
	j.client.CloseIdleConnections()
	select {
	case <-j.exited:
		return nil
	default:
	}
	_ = j.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-j.exited:
		return nil
	case <-time.After(stopTimeout):
	}
	_ = j.cmd.Process.Kill()
	<-j.exited
	return fmt.Errorf("jaeger did not stop within %v of SIGTERM; killed", stopTimeout)
}

// tail returns the last n bytes of the file at path.
func tail(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return "(" + err.Error() + ")"
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() > n {
		_, _ = f.Seek(fi.Size()-n, io.SeekStart)
	}
	b, _ := io.ReadAll(f)
	return string(b)
}

// Trace is one trace as the query API returns it. Ids are lower-case hex,
// 32 digits for trace ids and 16 for span ids, as trace.TraceID.String and
// trace.SpanID.String write them.
type Trace struct {
	TraceID   string             `json:"traceID"`
	Spans     []Span             `json:"spans"`
	Processes map[string]Process `json:"processes"`
}

// Span is one span of a Trace.
type Span struct {
	TraceID       string      `json:"traceID"`
	SpanID        string      `json:"spanID"`
	OperationName string      `json:"operationName"`
	References    []Reference `json:"references"`
	StartTime     int64       `json:"startTime"` // µs since the Unix epoch
	Duration      int64       `json:"duration"`  // µs
	Tags          []KeyValue  `json:"tags"`
	ProcessID     string      `json:"processID"`
}

// Reference links a span to another, e.g. its parent (RefType CHILD_OF).
type Reference struct {
	RefType string `json:"refType"`
	TraceID string `json:"traceID"`
	SpanID  string `json:"spanID"`
}

// KeyValue is a tag. Value is a string, bool, json.Number or, for binary
// tags, a base64 string, as Type says.
type KeyValue struct {
	Key   string `json:"key"`
	Type  string `json:"type"`
	Value any    `json:"value"`
}

// Process is the emitter of spans: its service name and resource tags.
type Process struct {
	ServiceName string     `json:"serviceName"`
	Tags        []KeyValue `json:"tags"`
}

// Tag returns the value of the span's tag key, formatted as text ("3",
// "true", "cudaSuccess").
func (s Span) Tag(key string) (string, bool) {
	for _, kv := range s.Tags {
		if kv.Key == key {
			return fmt.Sprint(kv.Value), true
		}
	}
	return "", false
}

// Kind returns the span's kind as Jaeger tags it ("client", "server",
// "internal", ...); "" when untagged.
func (s Span) Kind() string {
	k, _ := s.Tag("span.kind")
	return k
}

// Parent returns the span id of the span's CHILD_OF reference, "" for a
// root span.
func (s Span) Parent() string {
	for _, r := range s.References {
		if r.RefType == "CHILD_OF" {
			return r.SpanID
		}
	}
	return ""
}

// Service returns the service name of the process that emitted s.
func (t Trace) Service(s Span) string { return t.Processes[s.ProcessID].ServiceName }

// SpanNamed returns the first span named op whose kind is kind (any kind
// when kind is "").
func (t Trace) SpanNamed(op, kind string) (Span, bool) {
	for _, s := range t.Spans {
		if s.OperationName == op && (kind == "" || s.Kind() == kind) {
			return s, true
		}
	}
	return Span{}, false
}

// Services returns the services Jaeger has spans of.
func (j *Jaeger) Services(ctx context.Context) ([]string, error) {
	var out []string
	if err := j.get(ctx, "/api/services", nil, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// Traces returns up to 100 recent traces that have a span of service.
func (j *Jaeger) Traces(ctx context.Context, service string) ([]Trace, error) {
	var out []Trace
	q := url.Values{"service": {service}, "limit": {"100"}, "lookback": {"1h"}}
	if err := j.get(ctx, "/api/traces", q, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// WaitTrace polls Traces(service) until the trace traceID (32 hex digits)
// has at least minSpans spans, and returns it; it fails t after a while.
// Spans reach the store a moment after the exporter sent them.
func (j *Jaeger) WaitTrace(t testing.TB, service, traceID string, minSpans int) Trace {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	var (
		last    error
		lastLen int
	)
	for {
		traces, err := j.Traces(ctx, service)
		last = err
		for _, tr := range traces {
			if tr.TraceID == traceID {
				lastLen = len(tr.Spans)
				if lastLen >= minSpans {
					return tr
				}
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("jaegertest: trace %s of service %q: %d spans after %v, want %d (last error: %v)",
				traceID, service, lastLen, waitTimeout, minSpans, last)
			return Trace{}
		case <-time.After(pollEvery):
		}
	}
}

// envelope is the query API's answer.
type envelope struct {
	Data   json.RawMessage `json:"data"`
	Errors []struct {
		Code int    `json:"code"`
		Msg  string `json:"msg"`
	} `json:"errors"`
}

func (j *Jaeger) get(ctx context.Context, path string, q url.Values, out any) error {
	u := j.QueryURL + path
	if q != nil {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return fmt.Errorf("jaegertest: %w", err)
	}
	resp, err := j.client.Do(req)
	if err != nil {
		return fmt.Errorf("jaegertest: query: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("jaegertest: query %s: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("jaegertest: query %s: %s: %.200s", path, resp.Status, body)
	}
	var env envelope
	if err := json.Unmarshal(body, &env); err != nil {
		return fmt.Errorf("jaegertest: query %s: %w", path, err)
	}
	if len(env.Errors) > 0 {
		return fmt.Errorf("jaegertest: query %s: %d %s", path, env.Errors[0].Code, env.Errors[0].Msg)
	}
	if len(env.Data) == 0 || string(env.Data) == "null" {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(env.Data))
	dec.UseNumber()
	if err := dec.Decode(out); err != nil {
		return fmt.Errorf("jaegertest: query %s: %w", path, err)
	}
	if traces, ok := out.(*[]Trace); ok {
		for i := range *traces {
			normalize(&(*traces)[i])
		}
	}
	return nil
}

// normalize pads ids to their full width (Jaeger drops the high half of a
// trace id that is zero).
func normalize(t *Trace) {
	t.TraceID = pad(t.TraceID, 32)
	for i := range t.Spans {
		s := &t.Spans[i]
		s.TraceID, s.SpanID = pad(s.TraceID, 32), pad(s.SpanID, 16)
		for k := range s.References {
			r := &s.References[k]
			r.TraceID, r.SpanID = pad(r.TraceID, 32), pad(r.SpanID, 16)
		}
	}
}

func pad(id string, n int) string {
	id = strings.ToLower(id)
	if len(id) < n {
		id = strings.Repeat("0", n-len(id)) + id
	}
	return id
}
