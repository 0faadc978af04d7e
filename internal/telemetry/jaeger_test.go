package telemetry

import (
	"context"
	"encoding/hex"
	"fmt"
	"testing"
	"time"

	"github.com/xgpu/xgpu/internal/cudaerr"
	"github.com/xgpu/xgpu/internal/telemetry/jaegertest"
)

// TestJaeger exports a client call span and its worker-side child, linked
// through a wire.TraceContext, to a real Jaeger over each OTLP protocol, and
// reads the trace back through Jaeger's query API.
func TestJaeger(t *testing.T) {
	j := jaegertest.Start(t) // skips when no Jaeger binary is built

	tests := []struct {
		name     string
		protocol string
		endpoint string
	}{
		{"http/protobuf", ProtocolHTTPProtobuf, j.OTLPHTTP},
		{"grpc", ProtocolGRPC, j.OTLPGRPC},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clearEnv(t, nil)
			service := fmt.Sprintf("xgpu-test-%s-%d", tt.name[:4], time.Now().UnixNano())
			shutdown, err := Setup(context.Background(), Config{
				Endpoint: tt.endpoint, Protocol: tt.protocol, Sampler: SamplerAlwaysOn,
				ServiceName: service, Component: "test",
			})
			if err != nil {
				t.Fatalf("Setup: %v", err)
			}

			// Client side: the call's span and the frame's trace context.
			ctx, client := StartCall(context.Background(), "MemcpyHtoD", 2, "gpu7:7070", 8<<20, 5)
			tc, ok := ToWire(ctx)
			if !ok {
				t.Fatal("ToWire: no trace context")
			}
			// Worker side, from the frame alone.
			_, server := StartServerCall(context.Background(), tc, "MemcpyHtoD", 2, "", 8<<20, 5)
			EndStatus(server, cudaerr.Success)
			End(client, nil)
			if err := shutdown(context.Background()); err != nil {
				t.Fatalf("shutdown (flush to Jaeger): %v", err)
			}

			tr := j.WaitTrace(t, service, hex.EncodeToString(tc.TraceID[:]), 2)
			if len(tr.Spans) != 2 {
				t.Fatalf("trace has %d spans, want 2", len(tr.Spans))
			}
			cs, ok := tr.SpanNamed("MemcpyHtoD", "client")
			if !ok {
				t.Fatalf("no client span in %+v", tr.Spans)
			}
			ss, ok := tr.SpanNamed("MemcpyHtoD", "server")
			if !ok {
				t.Fatalf("no server span in %+v", tr.Spans)
			}
			if cs.SpanID != hex.EncodeToString(tc.SpanID[:]) {
				t.Errorf("client span id %s, want the wire's %x", cs.SpanID, tc.SpanID)
			}
			if ss.Parent() != cs.SpanID {
				t.Errorf("server span's parent %q, want the client span %s", ss.Parent(), cs.SpanID)
			}
			if cs.Parent() != "" {
				t.Errorf("client span has parent %s, want a root", cs.Parent())
			}
			if got := tr.Service(cs); got != service {
				t.Errorf("service %q, want %q", got, service)
			}
			checks := []struct {
				span       jaegertest.Span
				key, value string
			}{
				{cs, "xgpu.api", "MemcpyHtoD"},
				{cs, "xgpu.device", "2"},
				{cs, "xgpu.host", "gpu7:7070"},
				{cs, "xgpu.bytes", "8388608"},
				{cs, "xgpu.stream", "5"},
				{cs, "xgpu.result", "cudaSuccess"},
				{ss, "xgpu.api", "MemcpyHtoD"},
				{ss, "xgpu.device", "2"},
				{ss, "xgpu.result", "cudaSuccess"},
			}
			for _, c := range checks {
				if got, ok := c.span.Tag(c.key); !ok || got != c.value {
					t.Errorf("%s span: %s = %q (present %v), want %q", c.span.Kind(), c.key, got, ok, c.value)
				}
			}
		})
	}
}
