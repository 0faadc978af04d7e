// Package jaegerbin finds the Jaeger v2 all-in-one binary that
// hack/jaeger.sh builds and writes the configuration xgpu runs it with:
// OTLP receivers into an in-memory store that the query service reads, on
// loopback ports, without Jaeger's own telemetry. `xgpu demo --jaeger` and
// the tests' jaegertest package share it. Safe for concurrent use.
package jaegerbin

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// Where Find looks.
const (
	// EnvBin names the Jaeger binary; when it is set, nothing else is tried.
	EnvBin = "XGPU_JAEGER_BIN"
	// EnvCache is the cache directory hack/jaeger.sh builds into (bin/jaeger
	// under it). Zero: .cache in the root of the xgpu checkout.
	EnvCache = "XGPU_CACHE"
)

const module = "module github.com/xgpu/xgpu\n"

// Find returns the path of the Jaeger binary: $XGPU_JAEGER_BIN when set,
// else bin/jaeger in $XGPU_CACHE, else .cache/bin/jaeger in the root of the
// xgpu checkout that holds the working directory. On failure it returns the
// paths it tried and why none is usable.
func Find() (string, []string, error) {
	if p := os.Getenv(EnvBin); p != "" {
		if err := executable(p); err != nil {
			return "", []string{p}, fmt.Errorf("%s=%s: %w", EnvBin, p, err)
		}
		return p, nil, nil
	}
	var tried []string
	if c := os.Getenv(EnvCache); c != "" {
		tried = append(tried, filepath.Join(c, "bin", "jaeger"))
	}
	if root, err := moduleRoot(); err == nil {
		tried = append(tried, filepath.Join(root, ".cache", "bin", "jaeger"))
	}
	for _, p := range tried {
		if executable(p) == nil {
			return p, nil, nil
		}
	}
	return "", tried, errors.New("no Jaeger binary: run hack/jaeger.sh in the xgpu checkout to build one, or set " + EnvBin)
}

func executable(p string) error {
	fi, err := os.Stat(p)
	if err != nil {
		return err
	}
	if fi.IsDir() || fi.Mode()&0o111 == 0 {
		return errors.New("not an executable file")
	}
	return nil
}

// moduleRoot returns the directory of the xgpu go.mod at or above the
// working directory.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && bytes.HasPrefix(b, []byte(module)) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("jaegerbin: not inside the xgpu checkout")
		}
		dir = parent
	}
}

// Config returns Jaeger's configuration (pass it with --config) with the
// query service's HTTP and gRPC ports and the OTLP gRPC and HTTP receivers'
// ports, all on 127.0.0.1.
func Config(queryHTTP, queryGRPC, otlpGRPC, otlpHTTP int) []byte {
	return fmt.Appendf(nil, config, queryHTTP, queryGRPC, otlpGRPC, otlpHTTP)
}

const config = `service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: warn
extensions:
  jaeger_query:
    enable_tracing: false
    storage:
      traces: mem
    http:
      endpoint: 127.0.0.1:%d
    grpc:
      endpoint: 127.0.0.1:%d
  jaeger_storage:
    backends:
      mem:
        memory:
          max_traces: 100000
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:%d
      http:
        endpoint: 127.0.0.1:%d
exporters:
  jaeger_storage_exporter:
    trace_storage: mem
`
