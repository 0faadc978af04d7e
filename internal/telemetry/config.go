package telemetry

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// Defaults for the zero fields of Config.
const (
	// DefaultSampler is the sampler used when neither Config.Sampler nor
	// OTEL_TRACES_SAMPLER names one: follow the caller's decision when a
	// call has a parent, otherwise sample DefaultRatio of new traces.
	DefaultSampler = SamplerParentBasedTraceIDRatio
	// DefaultRatio is the fraction of new traces the ratio samplers keep
	// when neither Config.Ratio nor OTEL_TRACES_SAMPLER_ARG sets one: low,
	// so that tracing that is on costs little on the call path.
	DefaultRatio = 0.01
	// DefaultServiceName is the service name when nothing else sets one and
	// Config.Component is empty.
	DefaultServiceName = "xgpu"
)

// Samplers, named as OTEL_TRACES_SAMPLER names them.
const (
	SamplerAlwaysOn                = "always_on"
	SamplerAlwaysOff               = "always_off"
	SamplerTraceIDRatio            = "traceidratio"
	SamplerParentBasedAlwaysOn     = "parentbased_always_on"
	SamplerParentBasedAlwaysOff    = "parentbased_always_off"
	SamplerParentBasedTraceIDRatio = "parentbased_traceidratio"
)

// OTLP transport protocols, named as OTEL_EXPORTER_OTLP_PROTOCOL names them.
const (
	ProtocolGRPC         = "grpc"
	ProtocolHTTPProtobuf = "http/protobuf"
)

// Environment variables Resolve reads. They follow the OpenTelemetry SDK
// specification; the exporter itself also reads the other
// OTEL_EXPORTER_OTLP_* variables (headers, certificates, timeout,
// compression) and the batch span processor reads OTEL_BSP_*.
const (
	EnvSDKDisabled            = "OTEL_SDK_DISABLED"
	EnvTracesExporter         = "OTEL_TRACES_EXPORTER"
	EnvEndpoint               = "OTEL_EXPORTER_OTLP_ENDPOINT"
	EnvTracesEndpoint         = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
	EnvProtocol               = "OTEL_EXPORTER_OTLP_PROTOCOL"
	EnvTracesProtocol         = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
	EnvInsecure               = "OTEL_EXPORTER_OTLP_INSECURE"
	EnvTracesInsecure         = "OTEL_EXPORTER_OTLP_TRACES_INSECURE"
	EnvSampler                = "OTEL_TRACES_SAMPLER"
	EnvSamplerArg             = "OTEL_TRACES_SAMPLER_ARG"
	EnvServiceName            = "OTEL_SERVICE_NAME"
	EnvResourceAttributes     = "OTEL_RESOURCE_ATTRIBUTES"
	tracesPath                = "/v1/traces"
	resourceServiceNameAttrib = "service.name"
)

// Config configures Setup. Every field has a usable zero value.
//
// Each setting is taken from the first of these that sets it: the Config
// field (which command-line flags fill), then the environment variable the
// OpenTelemetry specification names for it, then the default. Tracing is on
// only when an OTLP endpoint is configured (or Exporter is set), so a
// process exports nothing anywhere unless told where to.
type Config struct {
	// Endpoint is the OTLP collector to export spans to: a URL
	// ("http://127.0.0.1:4318", "https://collector:4317") or a bare
	// host:port, whose scheme Insecure decides. For http/protobuf a URL
	// without a path gets /v1/traces appended. Zero:
	// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT (used as given), then
	// OTEL_EXPORTER_OTLP_ENDPOINT (a base URL, /v1/traces appended for
	// http/protobuf), then none: tracing stays off.
	Endpoint string

	// Protocol is ProtocolGRPC or ProtocolHTTPProtobuf. Zero:
	// OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, then OTEL_EXPORTER_OTLP_PROTOCOL,
	// then ProtocolHTTPProtobuf, the specification's default (Jaeger and
	// the OpenTelemetry Collector take it on port 4318, gRPC on 4317).
	Protocol string

	// Insecure makes a bare host:port Endpoint plain text instead of TLS.
	// It does not apply to a URL, whose scheme says. False:
	// OTEL_EXPORTER_OTLP_TRACES_INSECURE, then OTEL_EXPORTER_OTLP_INSECURE,
	// then TLS.
	Insecure bool

	// Sampler is one of the Sampler* names. Zero: OTEL_TRACES_SAMPLER, then
	// DefaultSampler (parentbased_traceidratio).
	Sampler string

	// Ratio is the fraction of traces, in (0, 1], that the ratio samplers
	// (traceidratio, parentbased_traceidratio) keep; other samplers ignore
	// it. Zero: OTEL_TRACES_SAMPLER_ARG, then DefaultRatio (0.01), also
	// when OTEL_TRACES_SAMPLER names a ratio sampler without an argument.
	// To keep no new trace at all, use the always_off samplers.
	Ratio float64

	// ServiceName is the service.name of this process's spans. Zero:
	// OTEL_SERVICE_NAME, then service.name in OTEL_RESOURCE_ATTRIBUTES,
	// then "xgpu-" + Component, or DefaultServiceName when Component is
	// empty too.
	ServiceName string

	// Component is this process's part of xgpu ("server", "worker",
	// "aggregator", "runtime"): it becomes the resource attribute
	// xgpu.component and the default service name. Zero: neither.
	Component string

	// Disabled turns tracing off whatever else says. False: tracing is off
	// when OTEL_SDK_DISABLED is "true" or OTEL_TRACES_EXPORTER is "none",
	// and otherwise on when an endpoint is configured.
	Disabled bool

	// Exporter, when set, receives the spans instead of an OTLP exporter
	// and turns tracing on without an endpoint (tests, custom pipelines).
	// Setup's shutdown shuts it down. Zero: OTLP as configured above.
	Exporter sdktrace.SpanExporter

	// Logger receives export errors. Zero: slog.Default().
	Logger *slog.Logger
}

// Settings is a Config resolved against the environment: what Setup will
// do. Its String form suits a log line.
type Settings struct {
	// Enabled reports whether Setup starts tracing; when it is false,
	// Reason says why.
	Enabled bool
	Reason  string
	// Endpoint is the URL spans are exported to ("" with Config.Exporter).
	Endpoint string
	// Protocol is ProtocolGRPC or ProtocolHTTPProtobuf.
	Protocol string
	// Sampler is one of the Sampler* names and Ratio the fraction the
	// ratio samplers keep.
	Sampler string
	Ratio   float64
	// ServiceName is the service.name of the spans.
	ServiceName string
}

// String describes s in one line, for logs.
func (s Settings) String() string {
	if !s.Enabled {
		return "tracing off (" + s.Reason + ")"
	}
	sampler := s.Sampler
	if ratioSampler(s.Sampler) {
		sampler += "(" + strconv.FormatFloat(s.Ratio, 'g', -1, 64) + ")"
	}
	dest := s.Endpoint
	if dest == "" {
		dest = "custom exporter"
	} else {
		dest = s.Protocol + " " + dest
	}
	return fmt.Sprintf("tracing on: service %s, sampler %s, export to %s", s.ServiceName, sampler, dest)
}

// ErrInvalidConfig is wrapped by every ConfigError.
var ErrInvalidConfig = errors.New("telemetry: invalid configuration")

// ConfigError reports a setting that cannot be used. Source names where it
// came from: a Config field ("Config.Sampler") or an environment variable.
type ConfigError struct {
	Source string
	Value  string
	Reason string
}

func (e *ConfigError) Error() string {
	return fmt.Sprintf("telemetry: %s %q: %s", e.Source, e.Value, e.Reason)
}

// Unwrap returns ErrInvalidConfig, so errors.Is(err, ErrInvalidConfig)
// holds for every ConfigError.
func (e *ConfigError) Unwrap() error { return ErrInvalidConfig }

// setting is one value and where it came from.
type setting struct {
	source, value string
}

// first returns the first non-empty (after trimming) of the config value and
// the named environment variables.
func first(field, value string, envs ...string) (setting, bool) {
	if v := strings.TrimSpace(value); v != "" {
		return setting{"Config." + field, v}, true
	}
	for _, name := range envs {
		if v := strings.TrimSpace(os.Getenv(name)); v != "" {
			return setting{name, v}, true
		}
	}
	return setting{}, false
}

// Resolve applies the environment and the defaults to c, and checks the
// result. It reads the environment only; it starts nothing. Every error
// it returns is a *ConfigError.
func (c Config) Resolve() (Settings, error) {
	s := Settings{}

	proto := ProtocolHTTPProtobuf
	if p, ok := first("Protocol", c.Protocol, EnvTracesProtocol, EnvProtocol); ok {
		switch v := strings.ToLower(p.value); v {
		case ProtocolGRPC, ProtocolHTTPProtobuf:
			proto = v
		default:
			return Settings{}, &ConfigError{p.source, p.value, `unsupported protocol (want "grpc" or "http/protobuf")`}
		}
	}
	s.Protocol = proto

	sampler := DefaultSampler
	if p, ok := first("Sampler", c.Sampler, EnvSampler); ok {
		v := strings.ToLower(p.value)
		switch v {
		case SamplerAlwaysOn, SamplerAlwaysOff, SamplerTraceIDRatio,
			SamplerParentBasedAlwaysOn, SamplerParentBasedAlwaysOff, SamplerParentBasedTraceIDRatio:
			sampler = v
		default:
			return Settings{}, &ConfigError{p.source, p.value, "unsupported sampler (want always_on, always_off, traceidratio, " +
				"parentbased_always_on, parentbased_always_off or parentbased_traceidratio)"}
		}
	}
	s.Sampler = sampler

	s.Ratio = DefaultRatio
	switch {
	case c.Ratio != 0:
		if !(c.Ratio > 0 && c.Ratio <= 1) { // also rejects NaN
			return Settings{}, &ConfigError{"Config.Ratio", strconv.FormatFloat(c.Ratio, 'g', -1, 64), "ratio must be in (0, 1]"}
		}
		s.Ratio = c.Ratio
	case ratioSampler(sampler):
		if v := strings.TrimSpace(os.Getenv(EnvSamplerArg)); v != "" {
			r, err := strconv.ParseFloat(v, 64)
			if err != nil || !(r >= 0 && r <= 1) {
				return Settings{}, &ConfigError{EnvSamplerArg, v, "ratio must be a number in [0, 1]"}
			}
			s.Ratio = r
		}
	}

	s.ServiceName = c.serviceName()

	endpoint, err := c.endpoint(proto)
	if err != nil {
		return Settings{}, err
	}
	s.Endpoint = endpoint

	disabled := ""
	switch v := strings.ToLower(strings.TrimSpace(os.Getenv(EnvTracesExporter))); v {
	case "", "otlp":
	case "none":
		disabled = EnvTracesExporter + "=none"
	default:
		return Settings{}, &ConfigError{EnvTracesExporter, v, `unsupported exporter (want "otlp" or "none")`}
	}
	switch {
	case c.Disabled:
		disabled = "Config.Disabled"
	case strings.EqualFold(strings.TrimSpace(os.Getenv(EnvSDKDisabled)), "true"):
		disabled = EnvSDKDisabled + "=true"
	}
	switch {
	case disabled != "":
		s.Reason = disabled
	case c.Exporter != nil:
		s.Enabled = true
		s.Endpoint = ""
	case s.Endpoint == "":
		s.Reason = "no OTLP endpoint configured"
	default:
		s.Enabled = true
	}
	return s, nil
}

func ratioSampler(name string) bool {
	return name == SamplerTraceIDRatio || name == SamplerParentBasedTraceIDRatio
}

// serviceName resolves the service name; see Config.ServiceName.
func (c Config) serviceName() string {
	if p, ok := first("ServiceName", c.ServiceName, EnvServiceName); ok {
		return p.value
	}
	for _, kv := range strings.Split(os.Getenv(EnvResourceAttributes), ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || strings.TrimSpace(k) != resourceServiceNameAttrib {
			continue
		}
		if u, err := url.PathUnescape(strings.TrimSpace(v)); err == nil && u != "" {
			return u
		}
	}
	if c.Component != "" {
		return DefaultServiceName + "-" + c.Component
	}
	return DefaultServiceName
}

// endpoint resolves the export URL for proto, "" when none is configured.
func (c Config) endpoint(proto string) (string, error) {
	var (
		p    setting
		base bool // a base URL: the signal path is appended for HTTP
	)
	switch {
	case strings.TrimSpace(c.Endpoint) != "":
		p = setting{"Config.Endpoint", strings.TrimSpace(c.Endpoint)}
	case strings.TrimSpace(os.Getenv(EnvTracesEndpoint)) != "":
		p = setting{EnvTracesEndpoint, strings.TrimSpace(os.Getenv(EnvTracesEndpoint))}
	case strings.TrimSpace(os.Getenv(EnvEndpoint)) != "":
		p = setting{EnvEndpoint, strings.TrimSpace(os.Getenv(EnvEndpoint))}
		base = true
	default:
		return "", nil
	}

	raw := p.value
	if !strings.Contains(raw, "://") {
		// A bare host:port; Insecure picks the scheme.
		host, port, err := net.SplitHostPort(raw)
		if err != nil || host == "" || port == "" {
			return "", &ConfigError{p.source, p.value, "want a URL (http://host:port) or host:port"}
		}
		insecure, err := c.insecure()
		if err != nil {
			return "", err
		}
		scheme := "https"
		if insecure {
			scheme = "http"
		}
		raw = scheme + "://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", &ConfigError{p.source, p.value, "not a URL: " + err.Error()}
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", &ConfigError{p.source, p.value, `scheme must be "http" or "https"`}
	}
	if u.Host == "" || u.Hostname() == "" {
		return "", &ConfigError{p.source, p.value, "no host"}
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return "", &ConfigError{p.source, p.value, "user info, query or fragment not allowed"}
	}
	if proto == ProtocolGRPC {
		// gRPC has no path: only the scheme and the authority matter.
		return u.Scheme + "://" + u.Host, nil
	}
	switch {
	case base:
		u.Path = strings.TrimSuffix(u.Path, "/") + tracesPath
	case p.source == "Config.Endpoint" && (u.Path == "" || u.Path == "/"):
		u.Path = tracesPath
	case u.Path == "":
		u.Path = "/"
	}
	u.RawPath = ""
	return u.String(), nil
}

// insecure resolves Config.Insecure.
func (c Config) insecure() (bool, error) {
	if c.Insecure {
		return true, nil
	}
	for _, name := range []string{EnvTracesInsecure, EnvInsecure} {
		v := strings.TrimSpace(os.Getenv(name))
		if v == "" {
			continue
		}
		b, err := strconv.ParseBool(v)
		if err != nil {
			return false, &ConfigError{name, v, `want "true" or "false"`}
		}
		return b, nil
	}
	return false, nil
}
