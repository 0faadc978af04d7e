package telemetry

import (
	"errors"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// allEnv lists every variable Resolve reads.
var allEnv = []string{
	EnvSDKDisabled, EnvTracesExporter, EnvEndpoint, EnvTracesEndpoint, EnvProtocol, EnvTracesProtocol,
	EnvInsecure, EnvTracesInsecure, EnvSampler, EnvSamplerArg, EnvServiceName, EnvResourceAttributes,
}

// clearEnv empties every variable Resolve reads for the rest of t, then sets
// env.
func clearEnv(t *testing.T, env map[string]string) {
	t.Helper()
	for _, k := range allEnv {
		t.Setenv(k, "")
	}
	for k, v := range env {
		t.Setenv(k, v)
	}
}

func TestResolve(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		env  map[string]string
		want Settings
	}{
		{
			name: "zero is off with the defaults",
			want: Settings{Reason: "no OTLP endpoint configured", Protocol: ProtocolHTTPProtobuf,
				Sampler: SamplerParentBasedTraceIDRatio, Ratio: 0.01, ServiceName: "xgpu"},
		},
		{
			name: "config endpoint URL gets the traces path",
			cfg:  Config{Endpoint: "http://127.0.0.1:4318"},
			want: Settings{Enabled: true, Endpoint: "http://127.0.0.1:4318/v1/traces", Protocol: ProtocolHTTPProtobuf,
				Sampler: SamplerParentBasedTraceIDRatio, Ratio: 0.01, ServiceName: "xgpu"},
		},
		{
			name: "config endpoint with a path is kept",
			cfg:  Config{Endpoint: "https://collector.example:443/otlp/traces"},
			want: Settings{Enabled: true, Endpoint: "https://collector.example:443/otlp/traces", Protocol: ProtocolHTTPProtobuf,
				Sampler: SamplerParentBasedTraceIDRatio, Ratio: 0.01, ServiceName: "xgpu"},
		},
		{
			name: "bare host:port over grpc, insecure flag",
			cfg:  Config{Endpoint: "127.0.0.1:4317", Protocol: "GRPC", Insecure: true},
			want: Settings{Enabled: true, Endpoint: "http://127.0.0.1:4317", Protocol: ProtocolGRPC,
				Sampler: SamplerParentBasedTraceIDRatio, Ratio: 0.01, ServiceName: "xgpu"},
		},
		{
			name: "bare host:port defaults to TLS",
			cfg:  Config{Endpoint: "collector:4317", Protocol: ProtocolGRPC},
			want: Settings{Enabled: true, Endpoint: "https://collector:4317", Protocol: ProtocolGRPC,
				Sampler: SamplerParentBasedTraceIDRatio, Ratio: 0.01, ServiceName: "xgpu"},
		},
		{
			name: "insecure from the traces variable over the general one",
			env:  map[string]string{EnvEndpoint: "collector:4318", EnvTracesInsecure: "true", EnvInsecure: "false"},
			want: Settings{Enabled: true, Endpoint: "http://collector:4318/v1/traces", Protocol: ProtocolHTTPProtobuf,
				Sampler: SamplerParentBasedTraceIDRatio, Ratio: 0.01, ServiceName: "xgpu"},
		},
		{
			name: "grpc drops the path",
			env:  map[string]string{EnvEndpoint: "http://collector:4317/ignored", EnvProtocol: "grpc"},
			want: Settings{Enabled: true, Endpoint: "http://collector:4317", Protocol: ProtocolGRPC,
				Sampler: SamplerParentBasedTraceIDRatio, Ratio: 0.01, ServiceName: "xgpu"},
		},
		{
			name: "general endpoint is a base URL",
			env:  map[string]string{EnvEndpoint: "http://collector:4318/base/"},
			want: Settings{Enabled: true, Endpoint: "http://collector:4318/base/v1/traces", Protocol: ProtocolHTTPProtobuf,
				Sampler: SamplerParentBasedTraceIDRatio, Ratio: 0.01, ServiceName: "xgpu"},
		},
		{
			name: "traces endpoint is used as given and wins over the general one",
			env: map[string]string{EnvEndpoint: "http://general:4318", EnvTracesEndpoint: "http://traces:4318",
				EnvTracesProtocol: "http/protobuf", EnvProtocol: "grpc"},
			want: Settings{Enabled: true, Endpoint: "http://traces:4318/", Protocol: ProtocolHTTPProtobuf,
				Sampler: SamplerParentBasedTraceIDRatio, Ratio: 0.01, ServiceName: "xgpu"},
		},
		{
			name: "config endpoint wins over the environment",
			cfg:  Config{Endpoint: "http://flag:4318"},
			env:  map[string]string{EnvTracesEndpoint: "http://env:4318/v1/traces"},
			want: Settings{Enabled: true, Endpoint: "http://flag:4318/v1/traces", Protocol: ProtocolHTTPProtobuf,
				Sampler: SamplerParentBasedTraceIDRatio, Ratio: 0.01, ServiceName: "xgpu"},
		},
		{
			name: "OTEL_SDK_DISABLED turns off even a configured endpoint",
			cfg:  Config{Endpoint: "http://flag:4318"},
			env:  map[string]string{EnvSDKDisabled: "TRUE"},
			want: Settings{Reason: "OTEL_SDK_DISABLED=true", Endpoint: "http://flag:4318/v1/traces", Protocol: ProtocolHTTPProtobuf,
				Sampler: SamplerParentBasedTraceIDRatio, Ratio: 0.01, ServiceName: "xgpu"},
		},
		{
			name: "OTEL_SDK_DISABLED other than true does nothing",
			cfg:  Config{Endpoint: "http://flag:4318"},
			env:  map[string]string{EnvSDKDisabled: "no"},
			want: Settings{Enabled: true, Endpoint: "http://flag:4318/v1/traces", Protocol: ProtocolHTTPProtobuf,
				Sampler: SamplerParentBasedTraceIDRatio, Ratio: 0.01, ServiceName: "xgpu"},
		},
		{
			name: "Config.Disabled",
			cfg:  Config{Endpoint: "http://flag:4318", Disabled: true},
			want: Settings{Reason: "Config.Disabled", Endpoint: "http://flag:4318/v1/traces", Protocol: ProtocolHTTPProtobuf,
				Sampler: SamplerParentBasedTraceIDRatio, Ratio: 0.01, ServiceName: "xgpu"},
		},
		{
			name: "traces exporter none",
			env:  map[string]string{EnvTracesExporter: "none", EnvEndpoint: "http://c:4318"},
			want: Settings{Reason: "OTEL_TRACES_EXPORTER=none", Endpoint: "http://c:4318/v1/traces", Protocol: ProtocolHTTPProtobuf,
				Sampler: SamplerParentBasedTraceIDRatio, Ratio: 0.01, ServiceName: "xgpu"},
		},
		{
			name: "sampler and argument from the environment",
			env:  map[string]string{EnvSampler: "traceidratio", EnvSamplerArg: "0.25"},
			want: Settings{Reason: "no OTLP endpoint configured", Protocol: ProtocolHTTPProtobuf,
				Sampler: SamplerTraceIDRatio, Ratio: 0.25, ServiceName: "xgpu"},
		},
		{
			name: "ratio sampler without argument keeps the default ratio",
			env:  map[string]string{EnvSampler: "parentbased_traceidratio"},
			want: Settings{Reason: "no OTLP endpoint configured", Protocol: ProtocolHTTPProtobuf,
				Sampler: SamplerParentBasedTraceIDRatio, Ratio: 0.01, ServiceName: "xgpu"},
		},
		{
			name: "argument of a non-ratio sampler is ignored",
			env:  map[string]string{EnvSampler: "always_on", EnvSamplerArg: "junk"},
			want: Settings{Reason: "no OTLP endpoint configured", Protocol: ProtocolHTTPProtobuf,
				Sampler: SamplerAlwaysOn, Ratio: 0.01, ServiceName: "xgpu"},
		},
		{
			name: "config sampler and ratio win over the environment",
			cfg:  Config{Sampler: "TraceIdRatio", Ratio: 0.5},
			env:  map[string]string{EnvSampler: "always_off", EnvSamplerArg: "0.1"},
			want: Settings{Reason: "no OTLP endpoint configured", Protocol: ProtocolHTTPProtobuf,
				Sampler: SamplerTraceIDRatio, Ratio: 0.5, ServiceName: "xgpu"},
		},
		{
			name: "service name from the config",
			cfg:  Config{ServiceName: "flagged", Component: "worker"},
			env:  map[string]string{EnvServiceName: "env"},
			want: Settings{Reason: "no OTLP endpoint configured", Protocol: ProtocolHTTPProtobuf,
				Sampler: SamplerParentBasedTraceIDRatio, Ratio: 0.01, ServiceName: "flagged"},
		},
		{
			name: "OTEL_SERVICE_NAME over resource attributes",
			env:  map[string]string{EnvServiceName: "env", EnvResourceAttributes: "service.name=attr"},
			want: Settings{Reason: "no OTLP endpoint configured", Protocol: ProtocolHTTPProtobuf,
				Sampler: SamplerParentBasedTraceIDRatio, Ratio: 0.01, ServiceName: "env"},
		},
		{
			name: "service name from resource attributes, decoded",
			env:  map[string]string{EnvResourceAttributes: "team=gpu, service.name=my%20svc"},
			want: Settings{Reason: "no OTLP endpoint configured", Protocol: ProtocolHTTPProtobuf,
				Sampler: SamplerParentBasedTraceIDRatio, Ratio: 0.01, ServiceName: "my svc"},
		},
		{
			name: "service name from the component",
			cfg:  Config{Component: "worker"},
			want: Settings{Reason: "no OTLP endpoint configured", Protocol: ProtocolHTTPProtobuf,
				Sampler: SamplerParentBasedTraceIDRatio, Ratio: 0.01, ServiceName: "xgpu-worker"},
		},
		{
			name: "custom exporter turns tracing on without an endpoint",
			cfg:  Config{Exporter: tracetest.NewInMemoryExporter()},
			want: Settings{Enabled: true, Protocol: ProtocolHTTPProtobuf,
				Sampler: SamplerParentBasedTraceIDRatio, Ratio: 0.01, ServiceName: "xgpu"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clearEnv(t, tt.env)
			got, err := tt.cfg.Resolve()
			if err != nil {
				t.Fatalf("Resolve: %v", err)
			}
			if got != tt.want {
				t.Errorf("Resolve:\n got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestResolveErrors(t *testing.T) {
	tests := []struct {
		name       string
		cfg        Config
		env        map[string]string
		wantSource string
	}{
		{name: "unknown sampler", cfg: Config{Sampler: "jaeger_remote"}, wantSource: "Config.Sampler"},
		{name: "unknown sampler in env", env: map[string]string{EnvSampler: "xray"}, wantSource: EnvSampler},
		{name: "ratio above one", cfg: Config{Ratio: 1.5}, wantSource: "Config.Ratio"},
		{name: "negative ratio", cfg: Config{Ratio: -0.1}, wantSource: "Config.Ratio"},
		{name: "sampler argument not a number", env: map[string]string{EnvSamplerArg: "lots"}, wantSource: EnvSamplerArg},
		{name: "sampler argument above one", env: map[string]string{EnvSampler: "traceidratio", EnvSamplerArg: "2"}, wantSource: EnvSamplerArg},
		{name: "protocol", cfg: Config{Protocol: "http/json"}, wantSource: "Config.Protocol"},
		{name: "protocol in env", env: map[string]string{EnvProtocol: "udp"}, wantSource: EnvProtocol},
		{name: "scheme", cfg: Config{Endpoint: "ftp://collector:21"}, wantSource: "Config.Endpoint"},
		{name: "no port", cfg: Config{Endpoint: "collector"}, wantSource: "Config.Endpoint"},
		{name: "no host", env: map[string]string{EnvEndpoint: "http://:4318"}, wantSource: EnvEndpoint},
		{name: "query", env: map[string]string{EnvTracesEndpoint: "http://c:4318/v1/traces?x=1"}, wantSource: EnvTracesEndpoint},
		{name: "unparsable URL", cfg: Config{Endpoint: "http://c:43 18"}, wantSource: "Config.Endpoint"},
		{name: "insecure not a bool", env: map[string]string{EnvEndpoint: "c:4318", EnvInsecure: "maybe"}, wantSource: EnvInsecure},
		{name: "exporter", env: map[string]string{EnvTracesExporter: "zipkin"}, wantSource: EnvTracesExporter},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clearEnv(t, tt.env)
			_, err := tt.cfg.Resolve()
			if !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("Resolve error = %v, want one wrapping ErrInvalidConfig", err)
			}
			var ce *ConfigError
			if !errors.As(err, &ce) || ce.Source != tt.wantSource {
				t.Fatalf("Resolve error = %#v, want a *ConfigError from %s", err, tt.wantSource)
			}
			if !strings.HasPrefix(err.Error(), "telemetry: "+tt.wantSource) {
				t.Errorf("message %q lacks the package prefix and source", err)
			}
		})
	}
}

func TestSettingsString(t *testing.T) {
	tests := []struct {
		name string
		s    Settings
		want string
	}{
		{"off", Settings{Reason: "no OTLP endpoint configured"}, "tracing off (no OTLP endpoint configured)"},
		{"ratio", Settings{Enabled: true, Endpoint: "http://c:4318/v1/traces", Protocol: ProtocolHTTPProtobuf,
			Sampler: SamplerParentBasedTraceIDRatio, Ratio: 0.01, ServiceName: "xgpu"},
			"tracing on: service xgpu, sampler parentbased_traceidratio(0.01), export to http/protobuf http://c:4318/v1/traces"},
		{"custom exporter", Settings{Enabled: true, Sampler: SamplerAlwaysOn, Ratio: 0.01, ServiceName: "s"},
			"tracing on: service s, sampler always_on, export to custom exporter"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.s.String(); got != tt.want {
				t.Errorf("String() = %q, want %q", got, tt.want)
			}
		})
	}
}
