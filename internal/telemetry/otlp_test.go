package telemetry

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

// collector is a minimal OTLP trace receiver, over HTTP and gRPC, that keeps
// what it receives.
type collector struct {
	coltracepb.UnimplementedTraceServiceServer

	mu    sync.Mutex // guards the fields below
	spans []*tracepb.ResourceSpans
	paths []string
}

func (c *collector) keep(path string, req *coltracepb.ExportTraceServiceRequest) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.paths = append(c.paths, path)
	c.spans = append(c.spans, req.GetResourceSpans()...)
}

func (c *collector) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	c.keep("grpc", req)
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

func (c *collector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil || r.Header.Get("Content-Type") != "application/x-protobuf" {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	req := &coltracepb.ExportTraceServiceRequest{}
	if err := proto.Unmarshal(body, req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	c.keep(r.URL.Path, req)
	out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

// startCollector serves c over proto on loopback and returns the endpoint
// URL to give Config.Endpoint.
func startCollector(t *testing.T, c *collector, proto string) string {
	t.Helper()
	if proto == ProtocolHTTPProtobuf {
		srv := httptest.NewServer(c)
		t.Cleanup(srv.Close)
		return srv.URL
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	coltracepb.RegisterTraceServiceServer(srv, c)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-done
	})
	return "http://" + ln.Addr().String()
}

func TestOTLPExport(t *testing.T) {
	tests := []struct {
		name     string
		protocol string
		wantPath string
	}{
		{"http/protobuf", ProtocolHTTPProtobuf, "/v1/traces"},
		{"grpc", ProtocolGRPC, "grpc"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clearEnv(t, nil)
			c := &collector{}
			endpoint := startCollector(t, c, tt.protocol)
			shutdown, err := Setup(context.Background(), Config{
				Endpoint: endpoint, Protocol: tt.protocol, Sampler: SamplerAlwaysOn, ServiceName: "otlp-test",
			})
			if err != nil {
				t.Fatalf("Setup: %v", err)
			}
			ctx, span := StartCall(context.Background(), "Malloc", 1, "h:1", 4096, 0)
			tc, _ := ToWire(ctx)
			End(span, nil)
			if err := shutdown(context.Background()); err != nil {
				t.Fatalf("shutdown: %v", err)
			}

			c.mu.Lock()
			defer c.mu.Unlock()
			if len(c.paths) == 0 || c.paths[0] != tt.wantPath {
				t.Fatalf("collector got requests %v, want one on %s", c.paths, tt.wantPath)
			}
			var got []*tracepb.Span
			service := ""
			for _, rs := range c.spans {
				for _, kv := range rs.GetResource().GetAttributes() {
					if kv.GetKey() == "service.name" {
						service = kv.GetValue().GetStringValue()
					}
				}
				for _, ss := range rs.GetScopeSpans() {
					got = append(got, ss.GetSpans()...)
				}
			}
			if len(got) != 1 || got[0].GetName() != "Malloc" || got[0].GetKind() != tracepb.Span_SPAN_KIND_CLIENT {
				t.Fatalf("collector got spans %v, want one client span Malloc", got)
			}
			if string(got[0].GetTraceId()) != string(tc.TraceID[:]) || string(got[0].GetSpanId()) != string(tc.SpanID[:]) {
				t.Error("exported ids differ from ToWire's")
			}
			if service != "otlp-test" {
				t.Errorf("service.name %q, want otlp-test", service)
			}
			want := map[string]bool{"xgpu.api": true, "xgpu.device": true, "xgpu.host": true, "xgpu.bytes": true, "xgpu.stream": true, "xgpu.result": true}
			for _, kv := range got[0].GetAttributes() {
				delete(want, kv.GetKey())
			}
			if len(want) != 0 {
				t.Errorf("attributes missing: %v", want)
			}
		})
	}
}

func TestShutdownWithUnreachableCollector(t *testing.T) {
	// A port nothing listens on.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	endpoint := "http://" + ln.Addr().String()
	ln.Close()

	for _, proto := range []string{ProtocolHTTPProtobuf, ProtocolGRPC} {
		t.Run(proto, func(t *testing.T) {
			clearEnv(t, nil)
			logs := &lockedBuffer{}
			shutdown, err := Setup(context.Background(), Config{
				Endpoint: endpoint, Protocol: proto, Sampler: SamplerAlwaysOn,
				Logger: slog.New(slog.NewTextHandler(logs, nil)),
			})
			if err != nil {
				t.Fatalf("Setup: %v (an unreachable collector must not fail Setup)", err)
			}
			_, span := StartCall(context.Background(), "Ping", 0, "", 0, 0)
			End(span, nil)
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			start := time.Now()
			err = shutdown(ctx)
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("shutdown took %v with a 300ms context", d)
			}
			logs.mu.Lock()
			logged := string(logs.b)
			logs.mu.Unlock()
			if err == nil && !strings.Contains(logged, "export") {
				t.Errorf("the lost span was reported neither by shutdown nor in the log %q", logged)
			}
			if Enabled() {
				t.Error("tracing still on after a failed shutdown")
			}
		})
	}
}

// lockedBuffer is an io.Writer safe for concurrent use.
type lockedBuffer struct {
	mu sync.Mutex // guards b
	b  []byte
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b = append(l.b, p...)
	return len(p), nil
}
