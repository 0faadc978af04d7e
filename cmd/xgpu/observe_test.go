package main

import (
	"bytes"
	"flag"
	"github.com/xgpu/xgpu/internal/telemetry/jaegerbin"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/xgpu/xgpu/internal/telemetry"
)

func TestTelemetryFlags(t *testing.T) {
	for _, k := range []string{telemetry.EnvEndpoint, telemetry.EnvTracesEndpoint, telemetry.EnvSampler, telemetry.EnvSamplerArg} {
		t.Setenv(k, "")
	}
	tests := []struct {
		name     string
		args     []string
		wantErr  string // "": parses and resolves
		wantArgs []string
		enabled  bool
	}{
		{name: "none", args: nil, wantArgs: nil},
		{name: "endpoint and sampler", args: []string{"--otlp-endpoint", "http://127.0.0.1:4318", "--trace-sampler", "always_on"},
			wantArgs: []string{"--otlp-endpoint", "http://127.0.0.1:4318", "--trace-sampler", "always_on"}, enabled: true},
		{name: "ratio", args: []string{"--otlp-endpoint", "127.0.0.1:4318", "--trace-ratio", "0.25"},
			wantArgs: []string{"--otlp-endpoint", "127.0.0.1:4318", "--trace-ratio", "0.25"}, enabled: true},
		{name: "bad sampler", args: []string{"--trace-sampler", "sometimes"}, wantErr: `--trace-sampler "sometimes": unsupported sampler`},
		{name: "bad ratio", args: []string{"--trace-ratio", "2"}, wantErr: `--trace-ratio "2": ratio must be in (0, 1]`},
		{name: "bad endpoint", args: []string{"--otlp-endpoint", "ftp://x:1"}, wantErr: `--otlp-endpoint "ftp://x:1"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := flag.NewFlagSet("t", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			f := addTelemetryFlags(fs, true)
			if err := fs.Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			s, err := f.config("server", nil).Resolve()
			err = flagError(err)
			switch {
			case tt.wantErr != "":
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				return
			case err != nil:
				t.Fatal(err)
			}
			if s.Enabled != tt.enabled {
				t.Errorf("enabled %v, want %v (%s)", s.Enabled, tt.enabled, s)
			}
			if got := f.args(); !slices.Equal(got, tt.wantArgs) {
				t.Errorf("args %q, want %q", got, tt.wantArgs)
			}
			if w := f.workers(); w.Endpoint != f.endpoint || w.Sampler != f.sampler || w.Ratio != f.ratio {
				t.Errorf("workers' tracing %+v differs from the flags", w)
			}
		})
	}
}

func TestBadTraceFlagFailsTheCommand(t *testing.T) {
	for _, cmd := range []string{"server", "aggregator"} {
		t.Run(cmd, func(t *testing.T) {
			var stderr bytes.Buffer
			code := run([]string{cmd, "--trace-sampler", "sometimes", "--listen", "127.0.0.1:0"}, io.Discard, &stderr)
			if code != 1 || !strings.Contains(stderr.String(), `--trace-sampler "sometimes"`) {
				t.Fatalf("exit %d, stderr %q", code, stderr.String())
			}
		})
	}
}

func TestDemoJaegerWithoutBinary(t *testing.T) {
	t.Setenv(jaegerbin.EnvBin, "/nonexistent/jaeger")
	var stderr bytes.Buffer
	code := run([]string{"demo", "--jaeger", "--hosts", "1"}, io.Discard, &stderr)
	if code != 1 || !strings.Contains(stderr.String(), jaegerbin.EnvBin) {
		t.Fatalf("exit %d, stderr %q", code, stderr.String())
	}
}
