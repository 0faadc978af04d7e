package server

import (
	"bufio"
	"encoding/json"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/proto"

	"github.com/xgpu/xgpu/internal/telemetry/metrics"
	"github.com/xgpu/xgpu/server/worker"
)

// Metrics. The supervisor's process counts into metrics.Default(): its
// gRPC calls (rpc_server_*), heartbeats and sessions, and the calls of
// workers that run inside it (InProcessLauncher). A worker process counts
// into its own, and reports the values on its stdout about once a second
// (worker.Report); the supervisor keeps the latest report of each live
// worker and, once a worker has exited, adds its final counters to totals
// of its own, so that counters never go down. Gather merges all of it.

const (
	// reportGrace bounds how long the supervisor reads a worker's stdout
	// after the worker exited, for its last report.
	reportGrace = 2 * time.Second
	// maxReportLine bounds one report line.
	maxReportLine = 4 << 20
)

// readReports keeps the latest Report the worker prints, until its stdout
// ends. A line that is not a report is skipped.
func (h *procHandle) readReports(br *bufio.Reader) {
	sc := bufio.NewScanner(br)
	sc.Buffer(make([]byte, 0, 64<<10), maxReportLine)
	for sc.Scan() {
		var r worker.Report
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			continue
		}
		h.report.Store(&r)
	}
}

// Report returns the worker's latest metrics report; nil before the first.
func (h *procHandle) Report() *worker.Report { return h.report.Load() }

// reportingHandle is a WorkerHandle whose worker reports its metrics.
type reportingHandle interface {
	Report() *worker.Report
}

// workerMetrics keeps what worker processes reported.
type workerMetrics struct {
	mu      sync.Mutex // guards the fields below
	live    map[reportingHandle]struct{}
	retired map[string]*series // counters of exited workers, by seriesKey
}

// series is one summed series.
type series struct {
	name    string
	labels  []*dto.LabelPair // sorted by name
	value   float64
	counter bool
}

func newWorkerMetrics() *workerMetrics {
	return &workerMetrics{live: make(map[reportingHandle]struct{}), retired: make(map[string]*series)}
}

// add starts following the reports of h's worker, if it reports.
func (m *workerMetrics) add(h WorkerHandle) {
	r, ok := h.(reportingHandle)
	if !ok {
		return
	}
	m.mu.Lock()
	m.live[r] = struct{}{}
	m.mu.Unlock()
}

// retire moves the counters of h's exited worker into the totals.
func (m *workerMetrics) retire(h WorkerHandle) {
	r, ok := h.(reportingHandle)
	if !ok {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.live[r]; !ok {
		return
	}
	delete(m.live, r)
	if rep := r.Report(); rep != nil {
		for _, s := range rep.Metrics {
			if s.Counter {
				addSample(m.retired, s)
			}
		}
	}
}

// sum returns the series of the live workers' reports plus the retired
// counters.
func (m *workerMetrics) sum() map[string]*series {
	out := make(map[string]*series)
	m.mu.Lock()
	defer m.mu.Unlock()
	for k, s := range m.retired {
		c := *s
		out[k] = &c
	}
	for r := range m.live {
		if rep := r.Report(); rep != nil {
			for _, s := range rep.Metrics {
				addSample(out, s)
			}
		}
	}
	return out
}

func addSample(into map[string]*series, s worker.Sample) {
	labels := make([]*dto.LabelPair, 0, len(s.Labels))
	for k, v := range s.Labels {
		labels = append(labels, &dto.LabelPair{Name: &k, Value: &v})
	}
	sortLabels(labels)
	key := seriesKey(s.Name, labels)
	if e := into[key]; e != nil {
		e.value += s.Value
		return
	}
	into[key] = &series{name: s.Name, labels: labels, value: s.Value, counter: s.Counter}
}

func sortLabels(l []*dto.LabelPair) {
	sort.Slice(l, func(i, j int) bool { return l[i].GetName() < l[j].GetName() })
}

// seriesKey names a series by its metric name and sorted labels.
func seriesKey(name string, labels []*dto.LabelPair) string {
	var b strings.Builder
	b.WriteString(name)
	for _, l := range labels {
		b.WriteByte(0xff)
		b.WriteString(l.GetName())
		b.WriteByte(0xfe)
		b.WriteString(l.GetValue())
	}
	return b.String()
}

// Gather implements prometheus.Gatherer: the metrics of this process
// (metrics.Default(): the supervisor's gRPC and heartbeat metrics,
// xgpu_sessions, and the counts of in-process workers) with those of its
// worker processes added in. A series both have is summed.
func (s *Server) Gather() ([]*dto.MetricFamily, error) {
	m := metrics.Default()
	m.Sessions().Set(float64(s.sessions.count()))
	fams, err := m.Registry().Gather()
	byName := make(map[string]*dto.MetricFamily, len(fams))
	for _, f := range fams {
		byName[f.GetName()] = f
	}
	for _, sr := range s.workers.sum() {
		f := byName[sr.name]
		if f == nil {
			typ := dto.MetricType_GAUGE
			if sr.counter {
				typ = dto.MetricType_COUNTER
			}
			f = &dto.MetricFamily{Name: &sr.name, Help: proto.String(helpOf(sr.name)), Type: &typ}
			byName[sr.name] = f
			fams = append(fams, f)
		}
		counter := f.GetType() == dto.MetricType_COUNTER
		if counter != sr.counter && f.GetType() != dto.MetricType_UNTYPED {
			continue // a worker of another version; never mix types
		}
		key := seriesKey(sr.name, sr.labels)
		var hit *dto.Metric
		for _, mt := range f.Metric {
			ls := slices.Clone(mt.GetLabel())
			sortLabels(ls)
			if seriesKey(sr.name, ls) == key {
				hit = mt
				break
			}
		}
		if hit == nil {
			hit = &dto.Metric{Label: sr.labels}
			if counter {
				hit.Counter = &dto.Counter{Value: new(float64)}
			} else {
				hit.Gauge = &dto.Gauge{Value: new(float64)}
			}
			f.Metric = append(f.Metric, hit)
		}
		if counter {
			*hit.Counter.Value += sr.value
		} else {
			*hit.Gauge.Value += sr.value
		}
	}
	sort.Slice(fams, func(i, j int) bool { return fams[i].GetName() < fams[j].GetName() })
	return fams, err
}

var _ prometheus.Gatherer = (*Server)(nil)

// MetricsHandler returns the HTTP handler of Gather in the Prometheus
// exposition formats, for the server's /metrics.
func (s *Server) MetricsHandler() http.Handler {
	return promhttp.HandlerFor(s, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// helpOf is the help text of a metric a worker reports that this process
// has no family of.
func helpOf(name string) string {
	switch name {
	case metrics.MetricCalls:
		return "Forwarded calls handled, by API."
	case metrics.MetricCallErrors:
		return "Forwarded calls that failed, by API."
	case metrics.MetricBytes:
		return "Payload bytes moved, by direction: h2d, d2h, d2d, peer_send, peer_recv."
	case metrics.MetricVGPUMemory:
		return "Device memory allocated, by vGPU."
	case metrics.MetricQueueDepth:
		return "Calls received and not yet executed, by device."
	}
	return name
}
