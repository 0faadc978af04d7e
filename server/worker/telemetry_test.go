package worker

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/xgpu/xgpu/internal/calls"
	"github.com/xgpu/xgpu/internal/telemetry"
	"github.com/xgpu/xgpu/internal/telemetry/metrics"
	"github.com/xgpu/xgpu/internal/wire"
	"github.com/xgpu/xgpu/server/host"
	"github.com/xgpu/xgpu/server/worker/workertest"
)

// memExporter keeps every span exported to it, also after Shutdown.
type memExporter struct {
	mu    sync.Mutex // guards spans
	spans []sdktrace.ReadOnlySpan
}

func (e *memExporter) ExportSpans(_ context.Context, spans []sdktrace.ReadOnlySpan) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.spans = append(e.spans, spans...)
	return nil
}

func (e *memExporter) Shutdown(context.Context) error { return nil }

func (e *memExporter) Spans() []sdktrace.ReadOnlySpan {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]sdktrace.ReadOnlySpan(nil), e.spans...)
}

// traceAll starts this process's tracing at full sampling into an
// exporter; stop flushes every span into it.
func traceAll(t *testing.T) (*memExporter, func()) {
	t.Helper()
	for _, k := range []string{telemetry.EnvEndpoint, telemetry.EnvTracesEndpoint, telemetry.EnvSampler,
		telemetry.EnvSamplerArg, telemetry.EnvSDKDisabled, telemetry.EnvTracesExporter} {
		t.Setenv(k, "")
	}
	exp := &memExporter{}
	shutdown, err := telemetry.Setup(context.Background(), telemetry.Config{Exporter: exp, Sampler: telemetry.SamplerAlwaysOn})
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	stop := func() { once.Do(func() { _ = shutdown(context.Background()) }) }
	t.Cleanup(stop)
	return exp, stop
}

// tracedCall sends call with the trace context of a new client span and
// returns that span's context.
func tracedCall(t *testing.T, c *workertest.Client, op wire.Op, call calls.Call, wantReply bool) trace.SpanContext {
	t.Helper()
	ctx, span := telemetry.StartCall(context.Background(), calls.Name(op), int(call.Dev), "", int64(call.N), call.Stream)
	defer span.End()
	tc, ok := telemetry.ToWire(ctx)
	if !ok {
		t.Fatal("no trace context")
	}
	var e wire.Enc
	if err := call.Encode(op, &e); err != nil {
		t.Fatal(err)
	}
	h := wire.Header{Op: op, Flags: wire.FlagTrace, Trace: tc}
	if !wantReply {
		h.Flags |= wire.FlagNoReply
	}
	if _, err := c.Raw(testCtx(t), h, e.B, wantReply); err != nil {
		t.Fatalf("%s: %v", calls.Name(op), err)
	}
	return span.SpanContext()
}

// TestWorkerSpans: a frame with a trace context gets a server span, its
// child; a cross-worker peer copy is a PeerSend span on the source worker
// that lasts until the destination has the bytes, with a PeerWrite client
// span whose context reaches the destination, whose PeerWrite span is its
// child; a frame without a trace context gets none.
func TestWorkerSpans(t *testing.T) {
	exp, stop := traceAll(t)
	a := start(t, testConfig(devCfg(0, 0)), newHost(t, 1))
	cfgB := testConfig(devCfg(1, 0))
	cfgB.Token = "fedcba9876543210fedcba9876543210"
	b := start(t, cfgB, newHost(t, 1))
	ca := dial(t, a, testToken)
	cb := dial(t, b, cfgB.Token)
	ctx := testCtx(t)

	const n = 100 << 10 // a bulk peer write
	src := mustMalloc(t, ca, 0, n)
	dst := mustMalloc(t, cb, 1, n)
	text := b.ready.Address + "|" + cfgB.Token + "|" + b.ready.CertSHA256
	if _, err := ca.Call(ctx, calls.OpPeerConnect, calls.Call{Dev2: 1, Text: text}); err != nil {
		t.Fatal(err)
	}
	malloc := tracedCall(t, ca, calls.OpMalloc, calls.Call{Dev: 0, N: 4096}, true)
	peer := tracedCall(t, ca, calls.OpPeerSend, calls.Call{Dev: 0, Dev2: 1, Dst: dst, Src: src, N: n}, false)
	mustSync(t, ca, 0) // the peer copy is done; its spans have ended
	stop()

	spans := exp.Spans()
	child := func(parent trace.SpanID, name string, kind trace.SpanKind) sdktrace.ReadOnlySpan {
		for _, s := range spans {
			if s.Parent().SpanID() == parent && s.Name() == name && s.SpanKind() == kind {
				return s
			}
		}
		return nil
	}
	result := func(s sdktrace.ReadOnlySpan) string {
		for _, kv := range s.Attributes() {
			if kv.Key == telemetry.KeyResult {
				return kv.Value.AsString()
			}
		}
		return ""
	}
	ms := child(malloc.SpanID(), "Malloc", trace.SpanKindServer)
	if ms == nil || result(ms) != "cudaSuccess" {
		t.Fatalf("Malloc server span %v (result %q), want a child of the client span with cudaSuccess", ms, result(ms))
	}
	src1 := child(peer.SpanID(), "PeerSend", trace.SpanKindServer)
	if src1 == nil {
		t.Fatal("no PeerSend server span")
	}
	pw := child(src1.SpanContext().SpanID(), "PeerWrite", trace.SpanKindClient)
	if pw == nil {
		t.Fatal("no PeerWrite client span under PeerSend")
	}
	dw := child(pw.SpanContext().SpanID(), "PeerWrite", trace.SpanKindServer)
	if dw == nil {
		t.Fatal("no PeerWrite server span under the PeerWrite client span")
	}
	for _, s := range []sdktrace.ReadOnlySpan{src1, pw, dw} {
		if s.SpanContext().TraceID() != peer.TraceID() {
			t.Errorf("%s %v in another trace", s.Name(), s.SpanKind())
		}
		if result(s) != "cudaSuccess" {
			t.Errorf("%s %v result %q", s.Name(), s.SpanKind(), result(s))
		}
	}
	if src1.EndTime().Before(dw.EndTime()) {
		t.Error("PeerSend ended before the destination wrote the bytes")
	}
	for _, s := range spans {
		if s.SpanKind() == trace.SpanKindServer && (s.Name() == "PeerConnect" || (s.Name() == "Malloc" && s.Parent().SpanID() != malloc.SpanID())) {
			t.Errorf("span %s for a frame without trace context", s.Name())
		}
	}
}

// TestSnapshot: a report holds the counters that moved and the gauges;
// the reporter prints a line only when it changed.
func TestSnapshot(t *testing.T) {
	m := metrics.New()
	m.Call(calls.OpMalloc)
	m.Call(calls.OpMalloc)
	m.CallError(calls.OpMalloc)
	m.Bytes(metrics.HostToDevice, 100)
	m.QueueDepth("v0").Set(2)
	m.VGPUMemory("v0").Set(4096)
	m.Sessions().Set(3) // not a worker's to report

	var out bytes.Buffer
	r := &reporter{m: m, out: &out, log: slog.New(slog.DiscardHandler)}
	r.report()
	r.report()
	m.Call(calls.OpFree)
	r.report()
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d report lines, want 2 (unchanged metrics print nothing):\n%s", len(lines), out.String())
	}
	var rep Report
	if err := json.Unmarshal([]byte(lines[1]), &rep); err != nil {
		t.Fatal(err)
	}
	got := map[string]Sample{}
	for _, s := range rep.Metrics {
		got[s.Name+"|"+s.Labels["api"]+s.Labels["direction"]+s.Labels["vgpu"]+s.Labels["device"]] = s
	}
	tests := []struct {
		name, key string
		value     float64
		counter   bool
	}{
		{"calls", metrics.MetricCalls + "|Malloc", 2, true},
		{"new calls", metrics.MetricCalls + "|Free", 1, true},
		{"errors", metrics.MetricCallErrors + "|Malloc", 1, true},
		{"bytes", metrics.MetricBytes + "|h2d", 100, true},
		{"queue", metrics.MetricQueueDepth + "|v0", 2, false},
		{"memory", metrics.MetricVGPUMemory + "|v0", 4096, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, ok := got[tt.key]
			if !ok || s.Value != tt.value || s.Counter != tt.counter {
				t.Fatalf("%s = %+v (present %v), want %v counter %v", tt.key, s, ok, tt.value, tt.counter)
			}
		})
	}
	for k, s := range got {
		switch {
		case s.Counter && s.Value == 0:
			t.Errorf("zero counter %s reported", k)
		case s.Name == metrics.MetricSessions:
			t.Errorf("%s reported", s.Name)
		}
	}
}

// TestMainReportsMetrics: the worker process prints Report lines after
// Ready; the last one, at the end of the session, counts its calls.
func TestMainReportsMetrics(t *testing.T) {
	cfg := testConfig(devCfg(0, 0))
	cfg.SessionID = "s-report"
	cfg.Host = &host.Config{Devices: 1, Memory: 1 << 30, HostID: "report-test"}
	line, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	stdinR, stdinW := io.Pipe()
	stdoutR, stdoutW := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- Main(context.Background(), stdinR, stdoutW, io.Discard) }()
	go func() { _, _ = stdinW.Write(append(line, '\n')) }()
	lines := make(chan string, 64) // buffered: the reader keeps up with the worker
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdoutR)
		sc.Buffer(nil, 4<<20)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	var ready Ready
	if err := json.Unmarshal([]byte(<-lines), &ready); err != nil {
		t.Fatal(err)
	}
	tr := testTransport
	c, err := workertest.Dial(testCtx(t), ready.Address, pinned(t, ready.CertSHA256), &tr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello(testCtx(t), testToken); err != nil {
		t.Fatal(err)
	}
	before := counter(metrics.Default(), metrics.MetricCalls, "Malloc")
	mustMalloc(t, c, 0, 1<<20)
	mustMalloc(t, c, 0, 1<<20)
	if _, err := c.Call(testCtx(t), calls.OpCloseSession, calls.Call{}); err != nil {
		t.Fatal(err)
	}
	c.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Main = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Main did not return after CloseSession")
	}
	stdinW.Close()
	stdoutW.Close()
	var last Report
	for l := range lines {
		if err := json.Unmarshal([]byte(l), &last); err != nil {
			t.Fatalf("line %q is not a report: %v", l, err)
		}
	}
	var mallocs float64
	for _, s := range last.Metrics {
		if s.Name == metrics.MetricCalls && s.Labels["api"] == "Malloc" {
			mallocs = s.Value
		}
		if s.Name == metrics.MetricVGPUMemory && s.Labels["vgpu"] == "s-report/0" {
			t.Errorf("memory gauge of a closed device reported: %+v", s)
		}
	}
	// This process counts every worker the tests ran in it.
	if mallocs < before+2 {
		t.Fatalf("last report counts %v Mallocs, want at least %v", mallocs, before+2)
	}
}

func counter(m *metrics.Metrics, name, api string) float64 {
	rep, _ := snapshot(m)
	for _, s := range rep.Metrics {
		if s.Name == name && s.Labels["api"] == api {
			return s.Value
		}
	}
	return 0
}
