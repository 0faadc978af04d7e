package runtime

import (
	"context"
	"sync"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/xgpu/xgpu/collective"
	"github.com/xgpu/xgpu/internal/telemetry"
	"github.com/xgpu/xgpu/internal/wire"
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

// traceTo starts this process's tracing into an exporter of its own, with
// sampler; the returned stop flushes every span into it (and runs at
// cleanup too).
func traceTo(t testing.TB, exp sdktrace.SpanExporter, sampler string, ratio float64) (stop func()) {
	t.Helper()
	for _, k := range []string{telemetry.EnvEndpoint, telemetry.EnvTracesEndpoint, telemetry.EnvSampler, telemetry.EnvSamplerArg,
		telemetry.EnvSDKDisabled, telemetry.EnvTracesExporter} {
		t.Setenv(k, "")
	}
	shutdown, err := telemetry.Setup(context.Background(), telemetry.Config{
		Exporter: exp, Sampler: sampler, Ratio: ratio, Component: "client", Logger: quietLogger(),
	})
	if err != nil {
		t.Fatalf("telemetry.Setup: %v", err)
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			if err := shutdown(context.Background()); err != nil {
				t.Errorf("telemetry shutdown: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func spanAttrs(s sdktrace.ReadOnlySpan) map[attribute.Key]string {
	m := map[attribute.Key]string{}
	for _, kv := range s.Attributes() {
		m[kv.Key] = kv.Value.Emit()
	}
	return m
}

// TestCallSpans runs calls with tracing on at full sampling, the workers
// in this process: every call is a client span with its attributes and
// result, the worker's span of it is its child, and SetTraceParent puts
// them all under one span.
func TestCallSpans(t *testing.T) {
	cl := newCluster(t, 2, 1)
	exp := &memExporter{}
	stop := traceTo(t, exp, telemetry.SamplerAlwaysOn, 0)
	c := cl.open(t, cl.config())

	ctx, root := telemetry.Start(context.Background(), "step")
	c.SetTraceParent(ctx)
	p, err := c.Malloc(0, 1<<16)
	if err != nil {
		t.Fatal(err)
	}
	s := LegacyStream(0)
	if err := c.MemsetAsync(p, 7, 4096, s); err != nil {
		t.Fatal(err)
	}
	out := make([]byte, 512)
	if err := c.MemcpyDtoH(out, p); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Malloc(0, 1<<40); err == nil { // more than the device has
		t.Fatal("Malloc of 1 TiB succeeded")
	}
	c.SetTraceParent(context.Background())
	if err := c.StreamSynchronize(s); err != nil { // a root of its own
		t.Fatal(err)
	}
	root.End()
	stop()

	spans := exp.Spans()
	byID := map[trace.SpanID]sdktrace.ReadOnlySpan{}
	for _, s := range spans {
		byID[s.SpanContext().SpanID()] = s
	}
	find := func(name string, kind trace.SpanKind, pred func(sdktrace.ReadOnlySpan) bool) sdktrace.ReadOnlySpan {
		for _, s := range spans {
			if s.Name() == name && s.SpanKind() == kind && (pred == nil || pred(s)) {
				return s
			}
		}
		return nil
	}
	rootID := root.SpanContext().SpanID()
	tests := []struct {
		name, api string
		bytes     string
		result    string
		underRoot bool
	}{
		{"sync call", "Malloc", "65536", "cudaSuccess", true},
		{"async call ends when queued", "Memset", "4096", resultEnqueued, true},
		{"D2H ends at its reply", "MemcpyDtoH", "512", "cudaSuccess", true},
		{"failed call", "Malloc", "1099511627776", "cudaErrorMemoryAllocation", true},
		{"root without a parent", "StreamSynchronize", "0", "cudaSuccess", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cs := find(tt.api, trace.SpanKindClient, func(s sdktrace.ReadOnlySpan) bool {
				return spanAttrs(s)[telemetry.KeyBytes] == tt.bytes
			})
			if cs == nil {
				t.Fatalf("no client span %s with %s bytes among %d spans", tt.api, tt.bytes, len(spans))
			}
			a := spanAttrs(cs)
			want := map[attribute.Key]string{
				telemetry.KeyAPI: tt.api, telemetry.KeyDevice: "0", telemetry.KeyResult: tt.result,
				telemetry.KeyHost: cl.servers[0].addr,
			}
			for k, v := range want {
				if a[k] != v {
					t.Errorf("%s = %q, want %q", k, a[k], v)
				}
			}
			if got := cs.Parent().SpanID() == rootID; got != tt.underRoot {
				t.Errorf("child of the root span: %v, want %v", got, tt.underRoot)
			}
			ss := find(tt.api, trace.SpanKindServer, func(s sdktrace.ReadOnlySpan) bool {
				return s.Parent().SpanID() == cs.SpanContext().SpanID()
			})
			if ss == nil {
				t.Fatalf("no server span child of client span %s", tt.api)
			}
			if ss.SpanContext().TraceID() != cs.SpanContext().TraceID() {
				t.Error("server span in another trace")
			}
			if got := spanAttrs(ss)[telemetry.KeyResult]; tt.result != resultEnqueued && got != tt.result {
				t.Errorf("server span result %q, want %q", got, tt.result)
			}
		})
	}
}

// TestUnsampledCallsCarryNoContext: at a sampler that keeps nothing,
// calls are unsampled client spans, their frames are as long as with
// tracing off (no trace context) and nothing is exported.
func TestUnsampledCallsCarryNoContext(t *testing.T) {
	cl := newCluster(t, 1, 1)
	c := cl.open(t, cl.config())
	p, err := c.Malloc(0, 4096)
	if err != nil {
		t.Fatal(err)
	}
	calls := func() uint64 {
		before := c.Stats().Sessions[0].FrameBytesSent
		if err := c.MemsetAsync(p, 1, 64, LegacyStream(0)); err != nil {
			t.Fatal(err)
		}
		if err := c.MemcpyDtoH(make([]byte, 16), p); err != nil {
			t.Fatal(err)
		}
		return c.Stats().Sessions[0].FrameBytesSent - before
	}
	off := calls()
	exp := &memExporter{}
	stop := traceTo(t, exp, telemetry.SamplerParentBasedAlwaysOff, 0)
	unsampled := calls()
	stop()
	if unsampled != off {
		t.Errorf("unsampled calls sent %d frame bytes, %d with tracing off", unsampled, off)
	}
	if n := len(exp.Spans()); n != 0 {
		t.Fatalf("%d spans exported, want none", n)
	}
	// Sampled, the same calls carry a trace context each.
	stop = traceTo(t, &memExporter{}, telemetry.SamplerAlwaysOn, 0)
	sampled := calls()
	stop()
	if want := off + 2*wire.TraceSize; sampled != want {
		t.Errorf("sampled calls sent %d frame bytes, want %d", sampled, want)
	}
}

// TestAsyncCallAllocsTracingOff: with tracing off an asynchronous call
// allocates nothing.
func TestAsyncCallAllocsTracingOff(t *testing.T) {
	if raceOn {
		t.Skip("the race detector allocates")
	}
	if telemetry.Enabled() {
		t.Fatal("tracing is on")
	}
	cl := newCluster(t, 1, 1)
	c := cl.open(t, cl.config())
	p, err := c.Malloc(0, 4096)
	if err != nil {
		t.Fatal(err)
	}
	s := LegacyStream(0)
	for range 1000 { // warm the send buffer
		if err := c.MemsetAsync(p, 1, 4096, s); err != nil {
			t.Fatal(err)
		}
	}
	allocs := testing.AllocsPerRun(1000, func() {
		if err := c.MemsetAsync(p, 1, 4096, s); err != nil {
			t.Fatal(err)
		}
	})
	if err := c.StreamSynchronize(s); err != nil {
		t.Fatal(err)
	}
	if allocs >= 0.5 {
		t.Fatalf("%v allocations per asynchronous call", allocs)
	}
}

// TestCollectiveSpans: an all-reduce over devices of two servers is a
// Collective call span per rank, each with its worker's span as the child;
// the worker's span lasts until the operation ran and names it.
func TestCollectiveSpans(t *testing.T) {
	cl := newCluster(t, 2, 1)
	exp := &memExporter{}
	stop := traceTo(t, exp, telemetry.SamplerAlwaysOn, 0)
	c := cl.open(t, cl.config())
	comm, err := c.CommInit([]int{0, 1}, CommOptions{})
	if err != nil {
		t.Fatal(err)
	}
	const count = 1024
	bufs := make([]uint64, 2)
	for r := range bufs {
		if bufs[r], err = c.Malloc(r, count*4); err != nil {
			t.Fatal(err)
		}
	}
	for r := range bufs {
		if err := comm.AllReduce(r, bufs[r], bufs[r], count, collective.F32, collective.Sum, LegacyStream(r)); err != nil {
			t.Fatal(err)
		}
	}
	for r := range bufs {
		if err := c.StreamSynchronize(LegacyStream(r)); err != nil {
			t.Fatal(err)
		}
	}
	if err := comm.Destroy(); err != nil {
		t.Fatal(err)
	}
	stop()

	clients := map[trace.SpanID]sdktrace.ReadOnlySpan{}
	for _, s := range exp.Spans() {
		if s.Name() == "Collective" && s.SpanKind() == trace.SpanKindClient {
			clients[s.SpanContext().SpanID()] = s
		}
	}
	if len(clients) != 2 {
		t.Fatalf("%d Collective client spans, want one per rank", len(clients))
	}
	servers := 0
	for _, s := range exp.Spans() {
		if s.Name() != "Collective" || s.SpanKind() != trace.SpanKindServer {
			continue
		}
		// Its operation's attributes are set, and it is exported, only when
		// the executor ended it after running the job.
		if _, ok := clients[s.Parent().SpanID()]; !ok {
			t.Errorf("worker span %s is no child of a client span", s.SpanContext().SpanID())
			continue
		}
		servers++
		a := spanAttrs(s)
		want := map[attribute.Key]string{
			"xgpu.collective": "all-reduce", "xgpu.ranks": "2", telemetry.KeyBytes: "4096", telemetry.KeyResult: "cudaSuccess",
		}
		for k, v := range want {
			if a[k] != v {
				t.Errorf("worker span %s = %q, want %q", k, a[k], v)
			}
		}
	}
	if servers != 2 {
		t.Fatalf("%d Collective worker spans, want 2", servers)
	}
}
