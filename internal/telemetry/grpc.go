package telemetry

import (
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"google.golang.org/grpc"
)

// GRPCServerOptions returns the options that trace a gRPC server's calls
// and record its RPC metrics. The server span of each RPC is a child of
// the client's span when the request carries a W3C traceparent. While
// tracing is off the spans are no-ops that still pass the caller's trace
// context on. The metrics go to the OpenTelemetry global meter provider:
// metrics.Default installs the Prometheus one there, so they appear as
// rpc_server_* on /metrics; without it they are not recorded.
//
//	srv := grpc.NewServer(append(opts, telemetry.GRPCServerOptions()...)...)
func GRPCServerOptions() []grpc.ServerOption {
	installGlobals()
	return []grpc.ServerOption{grpc.StatsHandler(otelgrpc.NewServerHandler(
		otelgrpc.WithTracerProvider(TracerProvider()),
	))}
}

// GRPCDialOptions returns the options that trace a gRPC client's calls and
// send the trace context with each request, so that the server's span is a
// child of the client's. Its RPC metrics go to the OpenTelemetry global
// meter provider, as GRPCServerOptions' do.
//
//	conn, err := grpc.NewClient(target, append(opts, telemetry.GRPCDialOptions()...)...)
func GRPCDialOptions() []grpc.DialOption {
	installGlobals()
	return []grpc.DialOption{grpc.WithStatsHandler(otelgrpc.NewClientHandler(
		otelgrpc.WithTracerProvider(TracerProvider()),
	))}
}
