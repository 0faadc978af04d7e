//go:build tools

// Package jaeger pins the Jaeger all-in-one binary used by the tracing tests
// in a module of its own, so that its dependency graph never moves the
// versions of xgpu's modules. Build it with hack/jaeger.sh.
package jaeger

import _ "github.com/jaegertracing/jaeger/cmd/jaeger"
