package metrics

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/xgpu/xgpu/internal/calls"
	"github.com/xgpu/xgpu/internal/wire"
)

// Names of the metrics a Metrics exports, besides the Go runtime's (go_*),
// the process's (process_*) and those of the gRPC stats handlers (rpc_*).
const (
	MetricCalls      = "xgpu_calls_total"                 // counter {api}: calls handled
	MetricCallErrors = "xgpu_call_errors_total"           // counter {api}: calls that failed
	MetricBytes      = "xgpu_bytes_total"                 // counter {direction}: payload bytes moved
	MetricVGPUMemory = "xgpu_vgpu_memory_allocated_bytes" // gauge {vgpu}: device memory allocated
	MetricQueueDepth = "xgpu_queue_depth"                 // gauge {device}: calls queued, not yet executed
	MetricSessions   = "xgpu_sessions"                    // gauge: open client sessions
	MetricLeases     = "xgpu_leases"                      // gauge: live leases
	MetricHeartbeats = "xgpu_heartbeats_total"            // counter {result}: heartbeats sent or received
)

const (
	// maxOps bounds the opcodes that get a counter of their own; the
	// others share the slot labelled "other".
	maxOps   = 512
	otherAPI = "other"

	metricsPath        = "/metrics"
	metricsReadTimeout = 10 * time.Second // bounds the header of a scrape request
)

// Direction is the way payload bytes move, the direction label of
// xgpu_bytes_total.
type Direction uint8

const (
	HostToDevice   Direction = iota // "h2d": from a client into device memory
	DeviceToHost                    // "d2h": from device memory to a client
	DeviceToDevice                  // "d2d": inside one worker (one device or two)
	PeerSend                        // "peer_send": to another worker
	PeerReceive                     // "peer_recv": from another worker
	numDirections
)

var directionNames = [numDirections]string{"h2d", "d2h", "d2d", "peer_send", "peer_recv"}

// String returns the direction's label value.
func (d Direction) String() string {
	if d < numDirections {
		return directionNames[d]
	}
	return fmt.Sprintf("Direction(%d)", uint8(d))
}

// Metrics holds the Prometheus instruments of one process: servers,
// workers and the aggregator each update the ones that concern them. The
// per-call counters are plain atomic counters indexed by opcode and
// direction, read only when Prometheus scrapes, so counting a call costs
// one atomic add and no label lookup. All methods are safe for concurrent
// use.
type Metrics struct {
	reg *prometheus.Registry
	mp  *sdkmetric.MeterProvider

	calls  [maxOps + 1]atomic.Uint64 // by opcode; [maxOps] counts the rest
	errs   [maxOps + 1]atomic.Uint64
	bytes  [numDirections]atomic.Uint64
	apiOf  [maxOps + 1]string // label value of each slot
	descs  [3]*prometheus.Desc
	memory *prometheus.GaugeVec
	queue  *prometheus.GaugeVec

	sessions, leases prometheus.Gauge
	hbOK, hbFailed   prometheus.Counter
}

var defaultMetrics = sync.OnceValue(func() *Metrics {
	m := New()
	otel.SetMeterProvider(m.mp)
	return m
})

// Default returns the process's Metrics, made on first use. Making it
// installs its MeterProvider as the OpenTelemetry global one, so that the
// RPC metrics of telemetry.GRPCServerOptions (rpc_server_*) are exported
// with the rest. Handler and Serve serve it.
func Default() *Metrics { return defaultMetrics() }

// Handler returns the /metrics handler of Default().
func Handler() http.Handler { return Default().Handler() }

// Serve serves Default() on addr; see Metrics.Serve.
func Serve(addr string) (*Server, error) { return Default().Serve(addr) }

// New returns a Metrics with its own registry, holding the xgpu
// instruments, the Go runtime and process collectors and the OpenTelemetry
// instruments of its MeterProvider. Processes use Default; tests make
// their own.
func New() *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	for op := range maxOps {
		if calls.Known(wire.Op(op)) {
			m.apiOf[op] = calls.Name(wire.Op(op))
		}
	}
	m.apiOf[maxOps] = otherAPI
	m.descs = [3]*prometheus.Desc{
		prometheus.NewDesc(MetricCalls, "Forwarded calls handled, by API.", []string{"api"}, nil),
		prometheus.NewDesc(MetricCallErrors, "Forwarded calls that failed, by API.", []string{"api"}, nil),
		prometheus.NewDesc(MetricBytes, "Payload bytes moved, by direction: h2d, d2h, d2d, peer_send, peer_recv.", []string{"direction"}, nil),
	}
	m.memory = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: MetricVGPUMemory, Help: "Device memory allocated, by vGPU.",
	}, []string{"vgpu"})
	m.queue = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: MetricQueueDepth, Help: "Calls received and not yet executed, by device.",
	}, []string{"device"})
	m.sessions = prometheus.NewGauge(prometheus.GaugeOpts{Name: MetricSessions, Help: "Open client sessions."})
	m.leases = prometheus.NewGauge(prometheus.GaugeOpts{Name: MetricLeases, Help: "Live leases."})
	hb := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: MetricHeartbeats, Help: "Heartbeats sent (server) or received (aggregator), by result.",
	}, []string{"result"})
	m.hbOK = hb.WithLabelValues("ok")
	m.hbFailed = hb.WithLabelValues("failed")

	m.reg.MustRegister(
		callCollector{m},
		m.memory, m.queue, m.sessions, m.leases, hb,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	exp, err := otelprom.New(otelprom.WithRegisterer(m.reg), otelprom.WithoutTargetInfo(), otelprom.WithoutScopeInfo())
	if err != nil {
		// Only a name clash with the collectors above can fail this.
		panic("metrics: internal error: prometheus exporter: " + err.Error())
	}
	m.mp = sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp))
	return m
}

// Registry returns m's registry, for a caller's own collectors.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// MeterProvider returns an OpenTelemetry meter provider whose instruments
// m's registry exports.
func (m *Metrics) MeterProvider() metric.MeterProvider { return m.mp }

// Call counts one call of op: one atomic add.
func (m *Metrics) Call(op wire.Op) { m.calls[opSlot(op)].Add(1) }

// CallError counts one failed call of op (counted by Call too).
func (m *Metrics) CallError(op wire.Op) { m.errs[opSlot(op)].Add(1) }

// Bytes counts n payload bytes moved in direction d. Negative n and
// unknown directions are ignored.
func (m *Metrics) Bytes(d Direction, n int64) {
	if d < numDirections && n > 0 {
		m.bytes[d].Add(uint64(n))
	}
}

func opSlot(op wire.Op) int {
	if int(op) < maxOps {
		return int(op)
	}
	return maxOps
}

// VGPUMemory returns the gauge of device memory allocated on vGPU id.
// Keep it rather than asking per allocation; ForgetVGPU removes it.
func (m *Metrics) VGPUMemory(id string) prometheus.Gauge { return m.memory.WithLabelValues(id) }

// ForgetVGPU removes the memory gauge of vGPU id (a vGPU that is gone).
func (m *Metrics) ForgetVGPU(id string) { m.memory.DeleteLabelValues(id) }

// QueueDepth returns the gauge of calls queued for device (as the caller
// names it: a logical index or a vGPU id). ForgetQueue removes it.
func (m *Metrics) QueueDepth(device string) prometheus.Gauge { return m.queue.WithLabelValues(device) }

// ForgetQueue removes the queue depth gauge of device.
func (m *Metrics) ForgetQueue(device string) { m.queue.DeleteLabelValues(device) }

// Sessions returns the gauge of open client sessions.
func (m *Metrics) Sessions() prometheus.Gauge { return m.sessions }

// Leases returns the gauge of live leases.
func (m *Metrics) Leases() prometheus.Gauge { return m.leases }

// Heartbeat counts one heartbeat, sent or received, that went through (ok)
// or failed.
func (m *Metrics) Heartbeat(ok bool) {
	if ok {
		m.hbOK.Inc()
	} else {
		m.hbFailed.Inc()
	}
}

// callCollector exports the atomic counters of m when Prometheus scrapes.
type callCollector struct{ m *Metrics }

func (c callCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.m.descs {
		ch <- d
	}
}

func (c callCollector) Collect(ch chan<- prometheus.Metric) {
	m := c.m
	for op := 1; op <= maxOps; op++ {
		n, e := m.calls[op].Load(), m.errs[op].Load()
		api := m.apiOf[op]
		if api == "" {
			if n == 0 && e == 0 {
				continue // an opcode the protocol does not define, never seen
			}
			api = calls.Name(wire.Op(op))
		}
		ch <- prometheus.MustNewConstMetric(m.descs[0], prometheus.CounterValue, float64(n), api)
		ch <- prometheus.MustNewConstMetric(m.descs[1], prometheus.CounterValue, float64(e), api)
	}
	for d := range numDirections {
		ch <- prometheus.MustNewConstMetric(m.descs[2], prometheus.CounterValue, float64(m.bytes[d].Load()), d.String())
	}
}

// Handler returns the HTTP handler of m's metrics in the Prometheus
// exposition formats.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// Server is an HTTP server answering GET /metrics, made by Serve.
type Server struct {
	srv  *http.Server
	ln   net.Listener
	done chan struct{} // closed when the serving goroutine returns
	err  error         // what Serve returned, other than ErrServerClosed; read after done
}

// Serve listens on addr ("127.0.0.1:9464", ":0" for any free port) and
// serves m's metrics at /metrics in a goroutine until Shutdown. A failure
// to listen is returned here.
func (m *Metrics) Serve(addr string) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: listen: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET "+metricsPath, m.Handler())
	s := &Server{
		srv:  &http.Server{Handler: mux, ReadHeaderTimeout: metricsReadTimeout},
		ln:   ln,
		done: make(chan struct{}),
	}
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			s.err = fmt.Errorf("metrics: serve: %w", err)
		}
	}()
	return s, nil
}

// Addr returns the address the server listens on.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// URL returns the http URL of the server's /metrics.
func (s *Server) URL() string { return "http://" + s.ln.Addr().String() + metricsPath }

// Shutdown stops the server: it stops listening, waits for the scrapes in
// progress until ctx ends, then closes what is left. It returns the error
// the server failed with, if any, or ctx's error when it had to cut
// scrapes short.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	if err != nil {
		_ = s.srv.Close()
	}
	<-s.done
	if s.err != nil {
		return s.err
	}
	if err != nil {
		return fmt.Errorf("metrics: shutdown: %w", err)
	}
	return nil
}
