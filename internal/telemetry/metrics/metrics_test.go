package metrics

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"go.opentelemetry.io/otel"

	"github.com/xgpu/xgpu/internal/calls"
	"github.com/xgpu/xgpu/internal/wire"
)

// gather returns the value of every sample of m as "name{labels}" -> value,
// labels as k="v" joined by commas in the registry's (sorted) order.
func gather(t *testing.T, m *Metrics) map[string]float64 {
	t.Helper()
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, s := range mf.GetMetric() {
			var labels []string
			for _, l := range s.GetLabel() {
				labels = append(labels, l.GetName()+`="`+l.GetValue()+`"`)
			}
			key := mf.GetName()
			if len(labels) > 0 {
				key += "{" + strings.Join(labels, ",") + "}"
			}
			out[key] = value(mf.GetType(), s)
		}
	}
	return out
}

func value(t dto.MetricType, m *dto.Metric) float64 {
	switch t {
	case dto.MetricType_COUNTER:
		return m.GetCounter().GetValue()
	case dto.MetricType_GAUGE:
		return m.GetGauge().GetValue()
	case dto.MetricType_HISTOGRAM:
		return float64(m.GetHistogram().GetSampleCount())
	}
	return m.GetUntyped().GetValue()
}

func TestMetrics(t *testing.T) {
	m := New()
	for range 3 {
		m.Call(calls.OpMalloc)
	}
	m.Call(calls.OpMemcpyHtoD)
	m.CallError(calls.OpMemcpyHtoD)
	m.Call(wire.Op(300))   // undefined, with a slot of its own
	m.Call(wire.Op(40000)) // beyond the slots
	m.Bytes(HostToDevice, 1<<20)
	m.Bytes(HostToDevice, 1<<20)
	m.Bytes(PeerSend, 5)
	m.Bytes(DeviceToHost, -7)         // ignored
	m.Bytes(Direction(200), 1)        // ignored
	m.VGPUMemory("GPU-1/0").Set(4096) //
	m.VGPUMemory("GPU-1/1").Add(10)
	m.QueueDepth("0").Inc()
	m.QueueDepth("0").Inc()
	m.QueueDepth("1").Set(5)
	m.ForgetQueue("1")
	m.Sessions().Inc()
	m.Leases().Add(3)
	m.Heartbeat(true)
	m.Heartbeat(true)
	m.Heartbeat(false)

	got := gather(t, m)
	tests := []struct {
		name string
		key  string
		want float64
	}{
		{"calls of one API", `xgpu_calls_total{api="Malloc"}`, 3},
		{"known API never called is exported as zero", `xgpu_calls_total{api="EventQuery"}`, 0},
		{"errors", `xgpu_call_errors_total{api="MemcpyHtoD"}`, 1},
		{"errors of an API without any", `xgpu_call_errors_total{api="Malloc"}`, 0},
		{"undefined opcode in range", `xgpu_calls_total{api="Op(300)"}`, 1},
		{"opcode beyond the slots", `xgpu_calls_total{api="other"}`, 1},
		{"bytes h2d", `xgpu_bytes_total{direction="h2d"}`, 2 << 20},
		{"bytes peer_send", `xgpu_bytes_total{direction="peer_send"}`, 5},
		{"negative bytes ignored", `xgpu_bytes_total{direction="d2h"}`, 0},
		{"vgpu memory", `xgpu_vgpu_memory_allocated_bytes{vgpu="GPU-1/0"}`, 4096},
		{"vgpu memory add", `xgpu_vgpu_memory_allocated_bytes{vgpu="GPU-1/1"}`, 10},
		{"queue depth", `xgpu_queue_depth{device="0"}`, 2},
		{"sessions", `xgpu_sessions`, 1},
		{"leases", `xgpu_leases`, 3},
		{"heartbeats ok", `xgpu_heartbeats_total{result="ok"}`, 2},
		{"heartbeats failed", `xgpu_heartbeats_total{result="failed"}`, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, ok := got[tt.key]
			if !ok {
				t.Fatalf("%s not exported", tt.key)
			}
			if v != tt.want {
				t.Errorf("%s = %v, want %v", tt.key, v, tt.want)
			}
		})
	}
	for _, absent := range []string{`xgpu_queue_depth{device="1"}`, `xgpu_calls_total{api="Op(301)"}`} {
		if _, ok := got[absent]; ok {
			t.Errorf("%s exported, want it absent", absent)
		}
	}
	if _, ok := got["go_goroutines"]; !ok {
		t.Error("Go runtime metrics missing")
	}
	m.ForgetVGPU("GPU-1/0")
	if _, ok := gather(t, m)[`xgpu_vgpu_memory_allocated_bytes{vgpu="GPU-1/0"}`]; ok {
		t.Error("ForgetVGPU left the gauge")
	}
}

func TestMetricsConcurrent(t *testing.T) {
	m := New()
	const workers, each = 8, 1000
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				m.Call(calls.OpMemset)
				m.Bytes(Direction(w%int(numDirections)), 2)
			}
		}()
	}
	// Scrape while counting.
	_ = gather(t, m)
	wg.Wait()
	got := gather(t, m)
	if v := got[`xgpu_calls_total{api="Memset"}`]; v != workers*each {
		t.Errorf("calls = %v, want %d", v, workers*each)
	}
	total := 0.0
	for _, d := range directionNames {
		total += got[`xgpu_bytes_total{direction="`+d+`"}`]
	}
	if total != 2*workers*each {
		t.Errorf("bytes = %v, want %d", total, 2*workers*each)
	}
}

func TestDirectionString(t *testing.T) {
	tests := []struct {
		d    Direction
		want string
	}{
		{HostToDevice, "h2d"}, {DeviceToHost, "d2h"}, {DeviceToDevice, "d2d"},
		{PeerSend, "peer_send"}, {PeerReceive, "peer_recv"}, {Direction(9), "Direction(9)"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			if got := tt.d.String(); got != tt.want {
				t.Errorf("String() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestServeMetrics(t *testing.T) {
	m := New()
	m.Call(calls.OpMalloc)
	srv, err := m.Serve("127.0.0.1:0")
	if err != nil {
		t.Fatalf("Serve: %v", err)
	}
	get := func(url string) (int, string, error) {
		resp, err := http.Get(url)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), err
	}
	tests := []struct {
		name     string
		url      string
		wantCode int
		wantBody string
	}{
		{"metrics", srv.URL(), http.StatusOK, `xgpu_calls_total{api="Malloc"} 1`},
		{"help text", srv.URL(), http.StatusOK, "# HELP xgpu_calls_total Forwarded calls handled, by API."},
		{"other path", "http://" + srv.Addr().String() + "/", http.StatusNotFound, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body, err := get(tt.url)
			if err != nil {
				t.Fatalf("GET %s: %v", tt.url, err)
			}
			if code != tt.wantCode || !strings.Contains(body, tt.wantBody) {
				t.Errorf("GET %s = %d, body lacks %q:\n%.400s", tt.url, code, tt.wantBody, body)
			}
		})
	}
	http.DefaultClient.CloseIdleConnections()
	if err := srv.Shutdown(context.Background()); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if _, _, err := get(srv.URL()); err == nil {
		t.Error("GET after Shutdown succeeded")
	}
	if _, err := m.Serve(srv.Addr().String() + "x"); err == nil {
		t.Error("Serve on a bad address succeeded")
	}
}

func TestDefaultMetrics(t *testing.T) {
	if Default() != Default() {
		t.Fatal("Default() returned two Metrics")
	}
	if Handler() == nil {
		t.Fatal("Handler() = nil")
	}
	if otel.GetMeterProvider() != Default().MeterProvider() {
		t.Error("Default() did not install its meter provider as the global one")
	}
	srv, err := Serve("127.0.0.1:0")
	if err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if err := srv.Shutdown(context.Background()); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}
