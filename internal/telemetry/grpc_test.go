package telemetry

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/xgpu/xgpu/internal/telemetry/metrics"
)

// startHealth serves the gRPC health service with GRPCServerOptions and
// returns a client connection made with GRPCDialOptions.
func startHealth(t *testing.T) *grpc.ClientConn {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(GRPCServerOptions()...)
	healthpb.RegisterHealthServer(srv, health.NewServer())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	conn, err := grpc.NewClient(ln.Addr().String(),
		append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, GRPCDialOptions()...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		srv.Stop()
		<-done
	})
	return conn
}

func TestGRPCSpansAndMetrics(t *testing.T) {
	clearEnv(t, nil)
	// The handlers are made before Setup and before metrics.Default
	// installs the meter provider: they must follow both anyway.
	conn := startHealth(t)
	_ = metrics.Default()
	client := healthpb.NewHealthClient(conn)

	// Tracing off: calls work and nothing records.
	if _, err := client.Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("Check with tracing off: %v", err)
	}

	exp, stop := startMem(t, Config{Sampler: SamplerParentBasedAlwaysOn})
	ctx, parent := Start(context.Background(), "open-session")
	if _, err := client.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("Check: %v", err)
	}
	parent.End()
	// The server ends its span after the reply is sent: wait for it.
	deadline := time.Now().Add(5 * time.Second)
	for len(exp.Spans()) < 3 && time.Now().Before(deadline) {
		if err := cur.Load().tp.ForceFlush(context.Background()); err != nil {
			t.Fatalf("ForceFlush: %v", err)
		}
		time.Sleep(time.Millisecond)
	}
	stop()

	byKind := map[trace.SpanKind]sdktrace.ReadOnlySpan{}
	for _, s := range exp.Spans() {
		byKind[s.SpanKind()] = s
	}
	p, c, s := byKind[trace.SpanKindInternal], byKind[trace.SpanKindClient], byKind[trace.SpanKindServer]
	if p == nil || c == nil || s == nil {
		t.Fatalf("spans %v: want an internal, a client and a server span", exp.Spans())
	}
	tests := []struct {
		name         string
		child, owner sdktrace.ReadOnlySpan
	}{
		{"client RPC under the caller's span", c, p},
		{"server RPC under the client RPC", s, c},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.child.Parent().SpanID() != tt.owner.SpanContext().SpanID() ||
				tt.child.SpanContext().TraceID() != tt.owner.SpanContext().TraceID() {
				t.Errorf("%s: parent %v, want %v", tt.child.Name(), tt.child.Parent().SpanID(), tt.owner.SpanContext().SpanID())
			}
		})
	}
	if !strings.Contains(s.Name(), "grpc.health.v1.Health/Check") {
		t.Errorf("server span name %q", s.Name())
	}

	mfs, err := metrics.Default().Registry().Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	found := false
	for _, mf := range mfs {
		if strings.HasPrefix(mf.GetName(), "rpc_server_") {
			found = true
		}
	}
	if !found {
		t.Error("no rpc_server_* metric in metrics.Default()'s registry")
	}
}
