package main

import (
	"bytes"
	"context"
	"fmt"
	"github.com/xgpu/xgpu/internal/telemetry/jaegerbin"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xgpu/xgpu/aggregator"
	"github.com/xgpu/xgpu/internal/telemetry"
	"github.com/xgpu/xgpu/internal/telemetry/jaegertest"
	"github.com/xgpu/xgpu/runtime"
)

// TestTracingIntoJaeger runs an aggregator and two servers as processes
// that export their spans to a real Jaeger at full sampling, runs a
// workload through the runtime in this process (tracing too) with a peer
// copy from a device of one server to a device of the other, and checks
// through Jaeger's query API that the one trace of the workload holds the
// client span of every call, the worker's server span as its child, the
// peer-copy spans on both workers (the destination's a child of the
// source's), and the traced gRPC calls of the aggregator and a server.
func TestTracingIntoJaeger(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Jaeger, an aggregator, two servers and their workers")
	}
	j := jaegertest.Start(t) // skips when no Jaeger binary is built (hack/jaeger.sh)
	// Children inherit these: export within 200 ms rather than 5 s.
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "200")
	for _, k := range []string{telemetry.EnvEndpoint, telemetry.EnvTracesEndpoint, telemetry.EnvSampler,
		telemetry.EnvSamplerArg, telemetry.EnvServiceName, telemetry.EnvSDKDisabled, telemetry.EnvTracesExporter} {
		t.Setenv(k, "")
	}
	trace := []string{"--otlp-endpoint", j.OTLPHTTP, "--trace-sampler", "always_on"}
	aggAddr := freePort(t)
	startProc(t, "aggregator", append([]string{"aggregator", "--listen", aggAddr,
		"--heartbeat-interval", "250ms", "--heartbeat-timeout", "1500ms"}, trace...)...)
	for h := range 2 {
		name := fmt.Sprintf("host%02d", h)
		startProc(t, name, append([]string{"server", "--backend", "host", "--host", name, "--id", name,
			"--listen", "127.0.0.1:0", "--aggregator", aggAddr, "--devices", "1", "--memory", "256MiB"}, trace...)...)
	}

	service := fmt.Sprintf("xgpu-test-client-%d", time.Now().UnixNano())
	shutdown, err := telemetry.Setup(context.Background(), telemetry.Config{
		Endpoint: j.OTLPHTTP, Sampler: telemetry.SamplerAlwaysOn, ServiceName: service, Component: "client",
	})
	if err != nil {
		t.Fatal(err)
	}
	defer shutdown(context.Background())

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ac, err := aggregator.Dial(ctx, aggAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer ac.Close()
	if err := waitPool(ctx, ac, 2, 60*time.Second); err != nil {
		t.Fatal(err)
	}
	lease, err := ac.Allocate(ctx, aggregator.AllocateOptions{Count: 2, TTL: 5 * time.Minute, Owner: t.Name()})
	if err != nil {
		t.Fatal(err)
	}
	if lease.Map.Devices[0].Address == lease.Map.Devices[1].Address {
		t.Fatalf("both devices on server %s; the test needs two", lease.Map.Devices[0].Address)
	}

	wctx, root := telemetry.Start(ctx, "workload")
	traceID := root.SpanContext().TraceID().String()
	c, err := runtime.OpenLease(wctx, aggAddr, lease.ID, runtime.Config{})
	if err != nil {
		t.Fatal(err)
	}
	c.SetTraceParent(wctx)
	const n = 200 << 10 // a bulk copy: several frames, several spans
	src := bytes.Repeat([]byte("xgpu"), n/4)
	p0, err := c.Malloc(0, n)
	if err != nil {
		t.Fatal(err)
	}
	p1, err := c.Malloc(1, n)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.MemcpyHtoD(p0, src); err != nil {
		t.Fatal(err)
	}
	if err := c.MemcpyPeer(p1, 1, p0, 0, n); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, n)
	if err := c.MemcpyDtoH(got, p1); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, src) {
		t.Fatal("the peer copy's bytes differ")
	}
	if err := c.Close(); err != nil { // the workers end their sessions and flush their spans
		t.Fatal(err)
	}
	root.End()
	if err := shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := ac.Release(ctx, lease.ID); err != nil {
		t.Fatal(err)
	}

	var last string
	deadline := time.Now().Add(30 * time.Second)
	for {
		traces, err := j.Traces(ctx, service)
		last = fmt.Sprintf("query: %v", err)
		for _, tr := range traces {
			if tr.TraceID == traceID {
				last = checkTrace(tr, service, traceID)
			}
		}
		if last == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("trace %s: %s", traceID, last)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// checkTrace returns what the workload's trace lacks, "" when nothing.
func checkTrace(tr jaegertest.Trace, client, traceID string) string {
	byID := make(map[string]jaegertest.Span, len(tr.Spans))
	for _, s := range tr.Spans {
		byID[s.SpanID] = s
	}
	rootSpan, ok := tr.SpanNamed("workload", "")
	if !ok {
		return "no root span"
	}
	// children returns the spans of kind whose parent is parent.
	children := func(parent jaegertest.Span, name, kind string) []jaegertest.Span {
		var out []jaegertest.Span
		for _, s := range tr.Spans {
			if s.Parent() == parent.SpanID && s.OperationName == name && s.Kind() == kind {
				out = append(out, s)
			}
		}
		return out
	}
	pid := func(s jaegertest.Span) string {
		for _, kv := range tr.Processes[s.ProcessID].Tags {
			if kv.Key == "process.pid" {
				return fmt.Sprint(kv.Value)
			}
		}
		return ""
	}
	var problems []string
	for _, api := range []string{"Malloc", "MemcpyHtoD", "PeerConnect", "PeerSend", "MemcpyDtoH"} {
		cs := children(rootSpan, api, "client")
		if len(cs) == 0 {
			problems = append(problems, "no client span "+api)
			continue
		}
		for _, c := range cs {
			if tr.Service(c) != client {
				problems = append(problems, fmt.Sprintf("client span %s of service %s", api, tr.Service(c)))
			}
			if _, ok := c.Tag("xgpu.device"); !ok {
				problems = append(problems, "client span "+api+" without xgpu.device")
			}
			ss := children(c, api, "server")
			if len(ss) != 1 {
				problems = append(problems, fmt.Sprintf("client span %s %s has %d server children", api, c.SpanID, len(ss)))
				continue
			}
			if tr.Service(ss[0]) != "xgpu-worker" {
				problems = append(problems, fmt.Sprintf("server span %s of service %s", api, tr.Service(ss[0])))
			}
		}
	}
	// The peer copy: PeerSend on the source worker, its PeerWrite call to
	// the destination worker, and the destination's PeerWrite.
	peerWrites := 0
	for _, c := range children(rootSpan, "PeerSend", "client") {
		for _, src := range children(c, "PeerSend", "server") {
			for _, pw := range children(src, "PeerWrite", "client") {
				if pid(pw) != pid(src) {
					problems = append(problems, "PeerWrite client span not on the source worker")
				}
				dst := children(pw, "PeerWrite", "server")
				if len(dst) != 1 {
					problems = append(problems, fmt.Sprintf("PeerWrite %s has %d server children", pw.SpanID, len(dst)))
					continue
				}
				if tr.Service(dst[0]) != "xgpu-worker" || pid(dst[0]) == pid(src) || pid(dst[0]) == "" {
					problems = append(problems, fmt.Sprintf("destination PeerWrite in service %s pid %s, source pid %s",
						tr.Service(dst[0]), pid(dst[0]), pid(src)))
				}
				peerWrites++
			}
		}
	}
	if peerWrites == 0 {
		problems = append(problems, "no peer-copy spans on the workers")
	}
	// The control plane: the runtime's gRPC calls and the servers'.
	for _, rpc := range []struct{ name, service string }{
		{"xgpu.v1.Aggregator/GetLease", "xgpu-aggregator"},
		{"xgpu.v1.Server/OpenSession", "xgpu-server"},
	} {
		s, ok := tr.SpanNamed(rpc.name, "server")
		switch {
		case !ok:
			problems = append(problems, "no server span "+rpc.name)
		case tr.Service(s) != rpc.service:
			problems = append(problems, fmt.Sprintf("%s in service %s, want %s", rpc.name, tr.Service(s), rpc.service))
		case byID[s.Parent()].Kind() != "client":
			problems = append(problems, rpc.name+" is not the child of a client span")
		}
	}
	if len(problems) > 0 {
		return fmt.Sprintf("%d spans; %s", len(tr.Spans), strings.Join(problems, "; "))
	}
	return ""
}

// TestDemoJaeger runs `xgpu demo --jaeger --once` on a small cluster: it
// starts Jaeger, runs the traced workload and prints the trace id with
// the query API's address, where the trace is (checked by the demo before
// it prints).
func TestDemoJaeger(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Jaeger and a demo cluster")
	}
	bin, err := jaegertest.Binary()
	if err != nil {
		t.Skip(err)
	}
	cmd := exec.Command(xgpuBin, "demo", "--jaeger", "--once", "--hosts", "2", "--gpus-per-host", "1",
		"--memory", "256MiB", "--log-dir", t.TempDir())
	cmd.Env = append(os.Environ(), jaegerbin.EnvBin+"="+bin)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("xgpu demo --jaeger: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`trace ([0-9a-f]{32}): (\d+) spans from xgpu-client, xgpu-worker`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("no trace line in the output:\n%s", out)
	}
	if !bytes.Contains(out, []byte("/api/traces/"+string(m[1]))) || !bytes.Contains(out, []byte("jaeger: http://127.0.0.1:")) {
		t.Fatalf("no query URL of trace %s in the output:\n%s", m[1], out)
	}
}
