package jaegertest

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestBinary(t *testing.T) {
	dir := t.TempDir()
	plain := filepath.Join(dir, "plain")
	if err := os.WriteFile(plain, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(dir, "jaeger")
	if err := os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	cache := t.TempDir()
	if err := os.MkdirAll(filepath.Join(cache, "bin"), 0o700); err != nil {
		t.Fatal(err)
	}
	cached := filepath.Join(cache, "bin", "jaeger")
	if err := os.WriteFile(cached, []byte("#!/bin/sh\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		bin     string
		cache   string
		want    string
		wantErr string
	}{
		{name: "explicit binary", bin: exe, want: exe},
		{name: "explicit binary wins over the cache", bin: exe, cache: cache, want: exe},
		{name: "explicit binary missing", bin: filepath.Join(dir, "nope"), cache: cache, wantErr: EnvBin},
		{name: "explicit binary not executable", bin: plain, wantErr: "not an executable"},
		{name: "explicit directory", bin: dir, wantErr: "not an executable"},
		{name: "cache directory", cache: cache, want: cached},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(EnvBin, tt.bin)
			t.Setenv(EnvCache, tt.cache)
			got, err := Binary()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.HasPrefix(err.Error(), "jaegertest: ") {
					t.Fatalf("Binary() = %q, %v; want an error about %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("Binary() = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

// queryFake answers the query API as Jaeger v2 does, with one trace whose
// high trace-id half is zero (Jaeger then prints 16 digits).
func queryFake(t *testing.T) *Jaeger {
	t.Helper()
	const traces = `{"data":[{"traceID":"00000000000000ab","spans":[
	 {"traceID":"ab","spanID":"1","operationName":"MemcpyHtoD","references":[],
	  "startTime":1,"duration":2,"processID":"p1",
	  "tags":[{"key":"span.kind","type":"string","value":"client"},
	          {"key":"xgpu.device","type":"int64","value":3},
	          {"key":"xgpu.bytes","type":"int64","value":9007199254740993}]},
	 {"traceID":"ab","spanID":"00000000000000c2","operationName":"MemcpyHtoD",
	  "references":[{"refType":"CHILD_OF","traceID":"ab","spanID":"1"}],
	  "processID":"p2","tags":[{"key":"span.kind","type":"string","value":"server"}]}],
	 "processes":{"p1":{"serviceName":"xgpu-runtime","tags":[]},"p2":{"serviceName":"xgpu-worker","tags":[]}}}],
	 "total":0,"limit":0,"offset":0,"errors":null}`
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/services", func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(`{"data":["xgpu-runtime","xgpu-worker"],"errors":null}`))
	})
	mux.HandleFunc("GET /api/traces", func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Query().Get("service") {
		case "xgpu-runtime":
			_, _ = w.Write([]byte(traces))
		case "broken":
			_, _ = w.Write([]byte(`{"data":null,"errors":[{"code":500,"msg":"storage down"}]}`))
		default:
			_, _ = w.Write([]byte(`{"data":[],"errors":null}`))
		}
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return &Jaeger{QueryURL: srv.URL, client: srv.Client()}
}

func TestQuery(t *testing.T) {
	j := queryFake(t)
	ctx := context.Background()

	services, err := j.Services(ctx)
	if err != nil || len(services) != 2 {
		t.Fatalf("Services() = %v, %v", services, err)
	}
	if _, err := j.Traces(ctx, "broken"); err == nil || !strings.Contains(err.Error(), "storage down") {
		t.Errorf("Traces(broken) error = %v, want the query's error", err)
	}
	none, err := j.Traces(ctx, "nobody")
	if err != nil || len(none) != 0 {
		t.Errorf("Traces(nobody) = %v, %v", none, err)
	}

	const id = "000000000000000000000000000000ab"
	tr := j.WaitTrace(t, "xgpu-runtime", id, 2)
	client, ok := tr.SpanNamed("MemcpyHtoD", "client")
	if !ok {
		t.Fatal("no client span")
	}
	server, ok := tr.SpanNamed("MemcpyHtoD", "server")
	if !ok {
		t.Fatal("no server span")
	}
	tests := []struct {
		name, got, want string
	}{
		{"trace id padded", tr.TraceID, id},
		{"span trace id padded", client.TraceID, id},
		{"span id padded", client.SpanID, "0000000000000001"},
		{"parent of the server span", server.Parent(), client.SpanID},
		{"parent of the root", client.Parent(), ""},
		{"client service", tr.Service(client), "xgpu-runtime"},
		{"server service", tr.Service(server), "xgpu-worker"},
		{"int tag", tag(client, "xgpu.device"), "3"},
		{"int tag beyond float64 precision", tag(client, "xgpu.bytes"), "9007199254740993"},
		{"missing tag", tag(server, "xgpu.device"), "<none>"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Errorf("got %q, want %q", tt.got, tt.want)
			}
		})
	}
	if _, ok := tr.SpanNamed("MemcpyHtoD", "producer"); ok {
		t.Error("SpanNamed found a span of a kind not in the trace")
	}
}

func tag(s Span, key string) string {
	v, ok := s.Tag(key)
	if !ok {
		return "<none>"
	}
	return v
}

func TestStart(t *testing.T) {
	j := Start(t) // skips without a binary
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := j.Services(ctx); err != nil {
		t.Fatalf("Services: %v", err)
	}
	for _, u := range []string{j.OTLPHTTP, j.OTLPGRPC, j.QueryURL} {
		if !strings.HasPrefix(u, "http://127.0.0.1:") {
			t.Errorf("endpoint %q is not on loopback", u)
		}
	}
	if err := j.stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if _, err := j.Services(ctx); err == nil {
		t.Error("query API answers after stop")
	}
}
