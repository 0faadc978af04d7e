package server

import (
	"context"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/xgpu/xgpu/internal/pb"
	"github.com/xgpu/xgpu/internal/telemetry/metrics"
	"github.com/xgpu/xgpu/server/worker"
)

// fakeReporting is a worker handle that reports what a test says.
type fakeReporting struct {
	WorkerHandle
	rep *worker.Report
}

func (f *fakeReporting) Report() *worker.Report { return f.rep }

// value returns the value of the series name{labels} in fams, and
// whether it is there.
func value(fams []*dto.MetricFamily, name string, labels map[string]string) (float64, bool) {
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
	next:
		for _, m := range f.GetMetric() {
			if len(m.GetLabel()) != len(labels) {
				continue
			}
			for _, l := range m.GetLabel() {
				if labels[l.GetName()] != l.GetValue() {
					continue next
				}
			}
			if f.GetType() == dto.MetricType_COUNTER {
				return m.GetCounter().GetValue(), true
			}
			return m.GetGauge().GetValue(), true
		}
	}
	return 0, false
}

func TestGatherMergesWorkerReports(t *testing.T) {
	s, _, _ := sessionServer(t, &InProcessLauncher{})
	api := map[string]string{"api": "MemGetInfo"}
	base, _ := value(mustGather(t, s), metrics.MetricCalls, api)

	a := &fakeReporting{rep: &worker.Report{Metrics: []worker.Sample{
		{Name: metrics.MetricCalls, Labels: api, Value: 3, Counter: true},
		{Name: metrics.MetricVGPUMemory, Labels: map[string]string{"vgpu": "a/0"}, Value: 100},
	}}}
	b := &fakeReporting{rep: &worker.Report{Metrics: []worker.Sample{
		{Name: metrics.MetricCalls, Labels: api, Value: 4, Counter: true},
		{Name: metrics.MetricVGPUMemory, Labels: map[string]string{"vgpu": "b/0"}, Value: 200},
		{Name: "xgpu_future_total", Labels: map[string]string{"k": "v"}, Value: 1, Counter: true},
	}}}
	s.workers.add(a)
	s.workers.add(b)
	steps := []struct {
		name   string
		do     func()
		calls  float64
		memA   float64 // -1: absent
		future bool
	}{
		{"two live workers", func() {}, 7, 100, true},
		{"a worker's counters grow", func() { a.rep.Metrics[0].Value = 5 }, 9, 100, true},
		{"an exited worker keeps its counters, not its gauges", func() { s.workers.retire(a) }, 9, -1, true},
		{"retiring twice counts once", func() { s.workers.retire(a) }, 9, -1, true},
		{"both exited", func() { s.workers.retire(b) }, 9, -1, true},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			st.do()
			fams := mustGather(t, s)
			if got, _ := value(fams, metrics.MetricCalls, api); got != base+st.calls {
				t.Errorf("calls = %v, want %v", got, base+st.calls)
			}
			got, ok := value(fams, metrics.MetricVGPUMemory, map[string]string{"vgpu": "a/0"})
			if (st.memA < 0) == ok || (ok && got != st.memA) {
				t.Errorf("memory of a/0 = %v (present %v), want %v", got, ok, st.memA)
			}
			if _, ok := value(fams, "xgpu_future_total", map[string]string{"k": "v"}); ok != st.future {
				t.Errorf("a family only workers have: present %v", ok)
			}
		})
	}
}

func mustGather(t *testing.T, s *Server) []*dto.MetricFamily {
	t.Helper()
	fams, err := s.Gather()
	if err != nil {
		t.Fatal(err)
	}
	return fams
}

// TestWorkerProcessMetrics: a worker process's calls reach the
// supervisor's /metrics, and stay counted after the worker exits.
func TestWorkerProcessMetrics(t *testing.T) {
	var stderr logBuffer
	s, cl, _ := sessionServer(t, execWorker(&stderr))
	ctx := testContext(t)
	v := vgpuID(s, 1, 0)
	api := map[string]string{"api": "MemcpyDtoH"}
	base, _ := value(mustGather(t, s), metrics.MetricCalls, api)
	resp, err := cl.OpenSession(ctx, &pb.OpenSessionRequest{Devices: []*pb.SessionDevice{sessDev(3, v)}})
	if err != nil {
		t.Fatalf("OpenSession: %v\n%s", err, stderr.String())
	}
	c := connect(t, resp)
	roundTrip(t, c, 3, 5000)

	waitUntil(t, func() string {
		fams := mustGather(t, s)
		if got, _ := value(fams, metrics.MetricCalls, api); got != base+1 {
			return "MemcpyDtoH calls not reported yet"
		}
		if got, _ := value(fams, metrics.MetricVGPUMemory, map[string]string{"vgpu": v}); got < 5000 {
			return "memory of the vGPU not reported yet"
		}
		if got, _ := value(fams, metrics.MetricSessions, nil); got != 1 {
			return "sessions gauge not 1"
		}
		return ""
	})
	if _, err := cl.CloseSession(ctx, &pb.CloseSessionRequest{SessionId: resp.GetSessionId(), Token: resp.GetToken()}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, func() string {
		fams := mustGather(t, s)
		if got, _ := value(fams, metrics.MetricCalls, api); got != base+1 {
			return "MemcpyDtoH calls lost when the worker exited"
		}
		if _, ok := value(fams, metrics.MetricVGPUMemory, map[string]string{"vgpu": v}); ok {
			return "memory gauge of an exited worker"
		}
		return ""
	})

	// The exposition the cmd serves at /metrics.
	rec := httptest.NewRecorder()
	s.MetricsHandler().ServeHTTP(rec, httptest.NewRequestWithContext(context.Background(), "GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	if !strings.Contains(string(body), metrics.MetricCalls+`{api="MemcpyDtoH"}`) {
		t.Fatalf("/metrics lacks the worker's calls:\n%.2000s", body)
	}
}

// waitUntil polls cond until it returns "", failing with its last answer
// after a while.
func waitUntil(t *testing.T, cond func() string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		why := cond()
		if why == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(why)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
