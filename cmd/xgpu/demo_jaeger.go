package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/xgpu/xgpu/aggregator"
	"github.com/xgpu/xgpu/internal/telemetry"
	"github.com/xgpu/xgpu/internal/telemetry/jaegerbin"
	"github.com/xgpu/xgpu/runtime"
)

// `xgpu demo --jaeger`: a Jaeger (v2 all-in-one, in-memory storage) as one
// more child of the demo, every process of the cluster exporting its spans
// to it at full sampling, and a small traced workload whose trace id the
// demo prints.

// jaegerQueryPort is the query port a newcomer expects; a free port is
// taken when it is in use.
const jaegerQueryPort = 16686

// jaegerBinary finds the Jaeger binary that hack/jaeger.sh builds (see
// jaegerbin.Find for where it looks).
func jaegerBinary() (string, error) {
	p, tried, err := jaegerbin.Find()
	if err != nil && len(tried) > 0 {
		return "", fmt.Errorf("%w (tried %s)", err, strings.Join(tried, ", "))
	}
	return p, err
}

// jaeger is the demo's Jaeger.
type jaeger struct {
	*child
	queryURL string // base URL of the query service (API and UI)
	otlpHTTP string // base URL of the OTLP/HTTP receiver
	client   *http.Client
}

// startJaeger runs Jaeger with its config and log in dir and waits until
// it answers queries and takes spans.
func startJaeger(ctx context.Context, bin, dir string) (*jaeger, error) {
	ports, err := loopbackPorts(jaegerQueryPort)
	if err != nil {
		return nil, err
	}
	cfgPath := filepath.Join(dir, "jaeger.yaml")
	if err := os.WriteFile(cfgPath, jaegerbin.Config(ports[0], ports[1], ports[2], ports[3]), 0o644); err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(dir, "jaeger.log"))
	if err != nil {
		return nil, err
	}
	defer logf.Close() // the child has its own descriptor
	cmd := exec.Command(bin, "--config", cfgPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "OTEL_") { // they would configure Jaeger's own telemetry
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start jaeger %s: %w", bin, err)
	}
	c := &child{name: "jaeger", cmd: cmd, done: make(chan struct{})}
	go func() {
		c.err = cmd.Wait()
		close(c.done)
	}()
	j := &jaeger{
		child:    c,
		queryURL: fmt.Sprintf("http://127.0.0.1:%d", ports[0]),
		otlpHTTP: fmt.Sprintf("http://127.0.0.1:%d", ports[3]),
		client:   &http.Client{Timeout: 10 * time.Second},
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		var services []string
		if err := j.get(ctx, "/api/services", nil, &services); err == nil && dialable(ports[2]) && dialable(ports[3]) {
			return j, nil
		}
		select {
		case <-ctx.Done():
			_ = c.stop(5 * time.Second)
			return nil, context.Cause(ctx)
		case <-c.done:
			return nil, fmt.Errorf("jaeger exited at start (%v); see %s", c.err, filepath.Join(dir, "jaeger.log"))
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = c.stop(5 * time.Second)
			return nil, fmt.Errorf("jaeger not ready after a minute; see %s", filepath.Join(dir, "jaeger.log"))
		}
	}
}

// loopbackPorts returns four free loopback ports, the first one want if it
// is free.
func loopbackPorts(want int) ([]int, error) {
	var lns []net.Listener
	defer func() {
		for _, l := range lns {
			l.Close()
		}
	}()
	ports := make([]int, 0, 4)
	if l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", want)); err == nil {
		lns = append(lns, l)
		ports = append(ports, want)
	}
	for len(ports) < 4 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("free port: %w", err)
		}
		lns = append(lns, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func dialable(port int) bool {
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// get reads a query API answer's data into out.
func (j *jaeger) get(ctx context.Context, path string, q url.Values, out any) error {
	u := j.queryURL + path
	if q != nil {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := j.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", path, resp.Status)
	}
	var env struct {
		Data json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(body, &env); err != nil {
		return err
	}
	return json.Unmarshal(env.Data, out)
}

// traceSummary waits until Jaeger holds trace id with spans from at least
// minServices services, and returns its span count and service names.
func (j *jaeger) traceSummary(ctx context.Context, id string, minServices int, wait time.Duration) (int, []string, error) {
	deadline := time.Now().Add(wait)
	var (
		n   int
		svc []string
		err error
	)
	for {
		var traces []struct {
			Spans     []json.RawMessage `json:"spans"`
			Processes map[string]struct {
				ServiceName string `json:"serviceName"`
			} `json:"processes"`
		}
		err = j.get(ctx, "/api/traces/"+id, nil, &traces)
		if err == nil && len(traces) == 1 {
			seen := map[string]bool{}
			for _, p := range traces[0].Processes {
				seen[p.ServiceName] = true
			}
			n, svc = len(traces[0].Spans), nil
			for s := range seen {
				svc = append(svc, s)
			}
			sort.Strings(svc)
			if len(svc) >= minServices {
				return n, svc, nil
			}
		}
		if time.Now().After(deadline) {
			if err == nil {
				err = fmt.Errorf("spans of %d services after %v, want %d", len(svc), wait, minServices)
			}
			return n, svc, err
		}
		select {
		case <-ctx.Done():
			return n, svc, context.Cause(ctx)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// demoWorkload leases two devices (on two servers when the pool has
// them) and runs a few copies and a peer copy between them through the
// runtime, as one trace. It returns the trace id.
func demoWorkload(ctx context.Context, client *aggregator.Client, aggAddr string, stdout io.Writer) (string, error) {
	lease, err := client.Allocate(ctx, aggregator.AllocateOptions{
		Count: 2, Placement: aggregator.PlacementSpread, TTL: time.Minute, Owner: "xgpu demo --jaeger",
	})
	if err != nil {
		return "", fmt.Errorf("lease two devices: %w", err)
	}
	defer func() { _ = client.Release(context.WithoutCancel(ctx), lease.ID) }()

	ctx, root := telemetry.Start(ctx, "xgpu demo workload")
	c, err := runtime.OpenLease(ctx, aggAddr, lease.ID, runtime.Config{Client: "xgpu demo --jaeger"})
	if err != nil {
		root.End()
		return "", err
	}
	c.SetTraceParent(ctx)
	id := root.SpanContext().TraceID().String()
	err = runWorkload(c)
	if cerr := c.Close(); err == nil {
		err = cerr
	}
	telemetry.End(root, err)
	if err != nil {
		return id, err
	}
	m := c.Map()
	fmt.Fprintf(stdout, "\nTraced workload on device 0 (%s) and device 1 (%s): Malloc, MemcpyHtoD, MemcpyDtoH, "+
		"a MemcpyPeer from device 0 to device 1 that goes server to server, Free.\n", m.Devices[0].Host, m.Devices[1].Host)
	return id, nil
}

// runWorkload is the demo's calls: 1 MiB to device 0, read back, copied to
// device 1 by a peer copy, read back there.
func runWorkload(c *runtime.Client) error {
	const n = 1 << 20
	src := make([]byte, n)
	for i := range src {
		src[i] = byte(i * 7)
	}
	p0, err := c.Malloc(0, n)
	if err != nil {
		return err
	}
	p1, err := c.Malloc(1, n)
	if err != nil {
		return err
	}
	if err := c.MemcpyHtoD(p0, src); err != nil {
		return err
	}
	got := make([]byte, n)
	if err := c.MemcpyDtoH(got[:4096], p0); err != nil {
		return err
	}
	if err := c.MemcpyPeer(p1, 1, p0, 0, n); err != nil {
		return err
	}
	if err := c.MemcpyDtoH(got, p1); err != nil {
		return err
	}
	if !bytes.Equal(got, src) {
		return errors.New("the peer copy's bytes differ")
	}
	if err := c.Free(p0); err != nil {
		return err
	}
	if err := c.Free(p1); err != nil {
		return err
	}
	return c.DeviceSynchronize(0)
}

// showTrace runs the traced workload, flushes this process's spans, waits
// for the workers' spans to reach Jaeger and says where to look.
func showTrace(ctx context.Context, j *jaeger, client *aggregator.Client, aggAddr string, flush func(), stdout io.Writer) error {
	id, err := demoWorkload(ctx, client, aggAddr, stdout)
	if err != nil {
		return fmt.Errorf("traced workload: %w", err)
	}
	flush() // this process's spans; the workers flushed theirs when their sessions closed
	n, services, err := j.traceSummary(ctx, id, 2, 20*time.Second)
	if err != nil {
		return fmt.Errorf("trace %s in Jaeger: %w", id, err)
	}
	fmt.Fprintf(stdout, "\ntrace %s: %d spans from %s\n", id, n, strings.Join(services, ", "))
	fmt.Fprintf(stdout, "  query API: %s/api/traces/%s\n", j.queryURL, id)
	fmt.Fprintf(stdout, "  UI:        %s/trace/%s\n", j.queryURL, id)
	fmt.Fprintf(stdout, "  (a Jaeger built by hack/jaeger.sh has no UI assets and shows a placeholder page there; "+
		"the query API is complete, and a Jaeger with its UI shows the trace at that address: see docs/observability.md)\n")
	return nil
}
