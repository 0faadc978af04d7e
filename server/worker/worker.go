package worker

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xgpu/xgpu/internal/cudaerr"
	"github.com/xgpu/xgpu/internal/telemetry/metrics"
	"github.com/xgpu/xgpu/peers"
	"github.com/xgpu/xgpu/server/backend"
)

var (
	// ErrClosed is returned by Serve after Close, and by Serve called on a
	// closed Worker.
	ErrClosed = errors.New("worker: closed")
	// ErrNoClient is returned by Serve when no client presented the token
	// within Config.ClientTimeout.
	ErrNoClient = errors.New("worker: no client connected in time")
	// ErrClientLost is wrapped by the error Serve returns when the
	// client's connection failed (closed without CloseSession, or silent
	// past the transport's idle timeout).
	ErrClientLost = errors.New("worker: client connection lost")
	// ErrServing is returned by a second call to Serve.
	ErrServing = errors.New("worker: already serving")

	// errSessionClosed ends the session after the client's CloseSession.
	errSessionClosed = errors.New("worker: session closed by the client")
)

// Tuning of the background goroutines.
const (
	// numWaiters is the number of goroutines that run synchronizing calls
	// (StreamSynchronize and friends) off the call-stream reader, so that
	// one thread's wait does not hold up another thread's calls.
	numWaiters = 8
	// waitBacklog is how many synchronizing calls may queue for a
	// waiter; past it each gets a goroutine of its own.
	waitBacklog = 64
	// watchdogPeriod is how often the worker checks devices with
	// device-to-host copies in flight for a fault that dropped their
	// completion.
	watchdogPeriod = 250 * time.Millisecond
	// refuseLinger is how long a refused connection stays open for its
	// error reply to reach the peer.
	refuseLinger = time.Second
)

// device is one of the session's devices.
type device struct {
	cfg  DeviceConfig
	dev  backend.Device
	kern *devKernels // modules and kernels; nil when the backend runs none

	// Gauges of the device (labelled with metricName): its calls queued
	// and not yet complete (staged copies and synchronizing calls
	// waiting), and the memory allocated on it.
	metricName string
	queue, mem prometheus.Gauge

	psMu       sync.Mutex // guards the fields below
	peerStream backend.Stream
	havePS     bool

	events chan backend.Event // idle events for small device-to-host copies (takeEvent)
}

// testEventD2H makes every worker created after it is set answer small
// device-to-host copies through events, whatever its backend (tests).
var testEventD2H bool

// maxIdleEvents bounds the idle events a device keeps.
const maxIdleEvents = 64

// takeEvent returns an idle event of the device, or a new one; ok false
// when none can be made.
func (d *device) takeEvent() (backend.Event, bool) {
	select {
	case ev := <-d.events:
		return ev, true
	default:
	}
	ev, err := d.dev.EventCreate(backend.EventDisableTiming)
	return ev, err == nil
}

// putEvent keeps ev for reuse, or destroys it.
func (d *device) putEvent(ev backend.Event) {
	select {
	case d.events <- ev:
	default:
		_ = d.dev.EventDestroy(ev)
	}
}

// Stats counts a worker's traffic. Every field only grows.
type Stats struct {
	Calls             uint64 // call frames dispatched, all connections
	HostToDeviceBytes uint64 // payload of MemcpyHtoD calls received from the client
	DeviceToHostBytes uint64 // payload of MemcpyDtoH replies sent to the client
	PeerSentBytes     uint64 // payload sent to other workers (PeerSend)
	PeerReceivedBytes uint64 // payload received from other workers (PeerWrite)
}

type counters struct {
	calls, h2d, d2h, peerOut, peerIn atomic.Uint64
}

// Worker serves one client session: it authenticates connections with the
// session token and executes their calls on the session's devices. Create
// it with New; serve it with Serve (or use Run, the process entry point).
type Worker struct {
	cfg       Config
	be        backend.Backend
	ownsBE    bool // Close closes be (Run)
	log       *slog.Logger
	devs      []*device // indexed by logical index; nil where the session has none
	open      []*device // in Config order
	serverTLS *tls.Config
	clientTLS *tls.Config // base of peer-link dials; nil in dev mode (pin only)
	pin       string      // hex SHA-256 of the listener's certificate
	addr      string      // the data address Listen reported; the xgpu.host of server spans
	m         *metrics.Metrics

	ctx    context.Context // done when the session ends; the cause says why
	cancel context.CancelCauseFunc

	store    *moduleStore // the server's module images; nil: none (Config.ModuleCacheDir)
	coll     collWorker   // communicators and their links (coll.go)
	deferred atomic.Int32 // first failure of an asynchronous call (cudaerr.Error); 0: none
	staging  *stagingPool
	eventD2H bool      // answer small device-to-host copies through events (ops.go)
	ops      sync.Pool // of *op
	waitq    chan waitJob
	links    linkTable
	stats    counters
	nextBulk atomic.Uint64 // ids of bulk transfers this worker sends to peers

	pmu     sync.Mutex     // guards pending
	pending map[*op]uint64 // device-to-host copies in flight, by generation

	wg       sync.WaitGroup // every goroutine the worker starts
	shutOnce sync.Once
	served   chan struct{} // closed when Serve returns

	mu       sync.Mutex // guards the fields below
	serving  bool
	spawnOff bool // shutting down: spawn runs functions inline
	conns    map[*conn]struct{}
	client   *conn
}

// New opens the session's devices on b and returns a Worker ready to
// Serve. The Worker does not close b; it closes the devices it opened.
func New(cfg Config, b backend.Backend) (*Worker, error) {
	return newWorker(cfg, b, nil)
}

func newWorker(cfg Config, b backend.Backend, log *slog.Logger) (*Worker, error) {
	if b == nil {
		return nil, errors.New("worker: nil backend")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if log == nil {
		log = slog.Default()
	}
	log = log.With("session", cfg.SessionID)
	serverTLS, clientTLS, pin, err := makeTLS(cfg)
	if err != nil {
		return nil, err
	}
	w := &Worker{
		cfg:       cfg,
		be:        b,
		log:       log,
		serverTLS: serverTLS,
		clientTLS: clientTLS,
		pin:       pin,
		staging:   newStagingPool(cfg.StagingLimit),
		waitq:     make(chan waitJob, waitBacklog),
		pending:   make(map[*op]uint64),
		served:    make(chan struct{}),
		conns:     make(map[*conn]struct{}),
		m:         metrics.Default(),
	}
	if cfg.ModuleCacheDir != "" {
		if w.store, err = openModuleStore(cfg.ModuleCacheDir); err != nil {
			// Modules still load, from the client each time.
			log.Warn("worker: no module cache", "err", err)
		}
	}
	w.ctx, w.cancel = context.WithCancelCause(context.Background())
	w.links.init(w)
	w.ops.New = func() any { return newOp(w) }
	if err := w.openDevices(); err != nil {
		w.cancel(err)
		return nil, err
	}
	// The cuda driver starts a host function tens of microseconds after
	// the stream reaches it, later than it wakes a thread waiting for an
	// event: small device-to-host copies are answered through events
	// there. The host backend runs host functions at once.
	w.eventD2H = b.Name() == "cuda" || testEventD2H
	if len(w.open) > 0 {
		// Staging in memory the devices reach by DMA: a host copy then
		// needs no second staging in the backend.
		if hm, ok := w.open[0].dev.(backend.HostMapper); ok {
			w.staging.setPinned(hm)
		}
	}
	return w, nil
}

// openDevices opens every configured device, closing them all on failure.
func (w *Worker) openDevices() error {
	var infos []backend.Info
	maxIdx := uint32(0)
	for _, d := range w.cfg.Devices {
		maxIdx = max(maxIdx, d.Logical)
	}
	w.devs = make([]*device, maxIdx+1)
	for _, dc := range w.cfg.Devices {
		if (dc.GPUUUID != "" || dc.Quota != 0) && infos == nil {
			var err error
			if infos, err = w.be.Devices(); err != nil {
				w.closeDevices()
				return fmt.Errorf("worker: list %s devices: %w", w.be.Name(), err)
			}
		}
		if dc.GPUUUID != "" {
			idx := -1
			if dc.Physical >= 0 && dc.Physical < len(infos) && infos[dc.Physical].UUID == dc.GPUUUID {
				idx = dc.Physical
			} else {
				for i, in := range infos {
					if in.UUID == dc.GPUUUID {
						idx = i
						break
					}
				}
			}
			if idx < 0 {
				w.closeDevices()
				return fmt.Errorf("worker: device %d: the %s backend has no GPU %s", dc.Logical, w.be.Name(), dc.GPUUUID)
			}
			dc.Physical = idx
		}
		if dc.Physical >= 0 && dc.Physical < len(infos) && dc.Quota > infos[dc.Physical].TotalMemory {
			// The supervisor sizes vGPUs from NVML's total, which counts
			// memory the driver keeps for itself: the device holds no more
			// than the driver reports.
			w.log.Info("worker: vGPU memory capped at the device's", "device", dc.Logical, "vgpu", dc.VGPU,
				"quota", dc.Quota, "device_memory", infos[dc.Physical].TotalMemory)
			dc.Quota = infos[dc.Physical].TotalMemory
		}
		dev, err := w.be.Open(dc.Spec())
		if err != nil {
			w.closeDevices()
			return fmt.Errorf("worker: open device %d (vGPU %q, physical %d): %w", dc.Logical, dc.VGPU, dc.Physical, err)
		}
		d := &device{cfg: dc, dev: dev, kern: newDevKernels(dev), metricName: dc.VGPU, events: make(chan backend.Event, maxIdleEvents)}
		if d.metricName == "" {
			d.metricName = w.cfg.SessionID + "/" + strconv.FormatUint(uint64(dc.Logical), 10)
		}
		d.queue, d.mem = w.m.QueueDepth(d.metricName), w.m.VGPUMemory(d.metricName)
		d.updateMemory()
		w.devs[dc.Logical] = d
		w.open = append(w.open, d)
	}
	return nil
}

// closeDevices closes every open device; queued work drains first.
func (w *Worker) closeDevices() {
	var wg sync.WaitGroup
	for _, d := range w.open {
		wg.Go(func() {
			if err := d.dev.Close(); err != nil && !cudaerr.Is(err, cudaerr.ContextIsDestroyed) {
				w.log.Warn("worker: close device", "device", d.cfg.Logical, "err", err)
			}
		})
	}
	wg.Wait()
	for _, d := range w.open {
		w.m.ForgetQueue(d.metricName)
		w.m.ForgetVGPU(d.metricName)
	}
	w.open = nil
}

// updateMemory sets the device's memory gauge: its quota less what it can
// still allocate.
func (d *device) updateMemory() {
	if free, total, err := d.dev.MemGetInfo(); err == nil && total >= free {
		d.mem.Set(float64(total - free))
	}
}

// TLSConfig returns the server side TLS configuration a listener for this
// Worker must use.
func (w *Worker) TLSConfig() *tls.Config { return w.serverTLS }

// CertSHA256 returns the hex SHA-256 of the certificate the listener
// presents (what clients pin).
func (w *Worker) CertSHA256() string { return w.pin }

// Listen opens the data-plane listener Config describes (ListenHost, a
// port the system picks, TLS, Transport) and returns it with the Ready
// line to report.
func (w *Worker) Listen() (*peers.Listener, Ready, error) {
	l, err := peers.Listen(net.JoinHostPort(w.cfg.ListenHost, "0"), w.serverTLS, &w.cfg.Transport)
	if err != nil {
		return nil, Ready{}, fmt.Errorf("worker: %w", err)
	}
	_, port, err := net.SplitHostPort(l.Addr().String())
	if err != nil {
		l.Close()
		return nil, Ready{}, fmt.Errorf("worker: listener address %v: %w", l.Addr(), err)
	}
	h := w.cfg.AdvertiseHost
	if h == "" {
		h = w.cfg.ListenHost
		if ip := net.ParseIP(h); h == "" || (ip != nil && ip.IsUnspecified()) {
			h = "localhost"
		}
	}
	w.addr = net.JoinHostPort(h, port)
	return l, Ready{Address: w.addr, CertSHA256: w.pin}, nil
}

// Stats returns the traffic counters.
func (w *Worker) Stats() Stats {
	return Stats{
		Calls:             w.stats.calls.Load(),
		HostToDeviceBytes: w.stats.h2d.Load(),
		DeviceToHostBytes: w.stats.d2h.Load(),
		PeerSentBytes:     w.stats.peerOut.Load(),
		PeerReceivedBytes: w.stats.peerIn.Load(),
	}
}

// Done returns a channel closed once the session has ended (Serve is
// then tearing down or done).
func (w *Worker) Done() <-chan struct{} { return w.ctx.Done() }

// Serve accepts connections on l and serves the session until it ends:
// the client sends CloseSession (Serve returns nil), its connection fails
// (an error wrapping ErrClientLost), no client comes within
// Config.ClientTimeout (ErrNoClient) or Close is called (ErrClosed). Before
// returning it closes l and every connection and frees everything the
// session held (devices closed after their queued work drained).
func (w *Worker) Serve(l *peers.Listener) error {
	w.mu.Lock()
	if w.serving {
		w.mu.Unlock()
		return ErrServing
	}
	if w.ctx.Err() != nil {
		w.mu.Unlock()
		l.Close()
		return ErrClosed
	}
	w.serving = true
	w.mu.Unlock()
	defer close(w.served)

	for range numWaiters {
		w.spawn(w.waiter)
	}
	w.spawn(w.watchdog)
	w.spawn(func() { w.acceptLoop(l) })
	noClient := time.AfterFunc(w.cfg.ClientTimeout, func() {
		w.mu.Lock()
		none := w.client == nil
		w.mu.Unlock()
		if none {
			w.end(ErrNoClient)
		}
	})
	w.log.Info("worker: serving", "address", l.Addr().String(), "devices", len(w.open), "backend", w.be.Name())

	<-w.ctx.Done()
	noClient.Stop()
	l.Close()
	w.shutdown()

	err := context.Cause(w.ctx)
	if errors.Is(err, errSessionClosed) {
		err = nil
	}
	w.log.Info("worker: session ended", "reason", context.Cause(w.ctx))
	return err
}

// Close ends the session and frees everything it holds; a running Serve
// returns ErrClosed. Close is idempotent and waits for the teardown.
func (w *Worker) Close() error {
	w.end(ErrClosed)
	w.mu.Lock()
	serving := w.serving
	w.mu.Unlock()
	if serving {
		<-w.served
	} else {
		w.shutdown()
	}
	return nil
}

// end ends the session with cause (the first cause counts).
func (w *Worker) end(cause error) { w.cancel(cause) }

// shutdown closes every connection and link, waits for the worker's
// goroutines, then closes the devices (draining their queued work) and,
// when the Worker owns it, the backend.
func (w *Worker) shutdown() {
	w.shutOnce.Do(func() {
		w.mu.Lock()
		conns := make([]*conn, 0, len(w.conns))
		for c := range w.conns {
			conns = append(conns, c)
		}
		w.mu.Unlock()
		for _, c := range conns {
			_ = c.pc.Close()
		}
		w.links.closeAll()
		w.mu.Lock()
		w.spawnOff = true
		w.mu.Unlock()
		w.wg.Wait()
		w.closeDevices()
		w.failPending(cudaerr.ContextIsDestroyed)
		if w.ownsBE {
			if err := w.be.Close(); err != nil {
				w.log.Warn("worker: close backend", "err", err)
			}
		}
	})
}

// spawn runs f on a goroutine the worker waits for at shutdown; once
// shutdown has begun it runs f inline instead (everything f could wait for
// is failing by then).
func (w *Worker) spawn(f func()) {
	w.mu.Lock()
	if w.spawnOff {
		w.mu.Unlock()
		f()
		return
	}
	w.wg.Add(1)
	w.mu.Unlock()
	go func() {
		defer w.wg.Done()
		f()
	}()
}

func (w *Worker) acceptLoop(l *peers.Listener) {
	for {
		pc, err := l.Accept(w.ctx)
		if err != nil {
			return
		}
		c := newConn(w, pc)
		w.mu.Lock()
		if w.ctx.Err() != nil {
			w.mu.Unlock()
			_ = pc.Close()
			return
		}
		w.conns[c] = struct{}{}
		w.mu.Unlock()
		w.spawn(c.serve)
	}
}

// forget drops a finished connection; losing the client ends the session.
func (w *Worker) forget(c *conn, err error) {
	w.mu.Lock()
	delete(w.conns, c)
	wasClient := w.client == c
	w.mu.Unlock()
	if wasClient {
		w.end(fmt.Errorf("%w: %w", ErrClientLost, err))
	}
}

// claimClient makes c the session's client, unless another has it.
func (w *Worker) claimClient(c *conn) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.client != nil || w.ctx.Err() != nil {
		return false
	}
	w.client = c
	return true
}

// dev returns the device of logical index i, or nil.
func (w *Worker) dev(i uint32) *device {
	if uint64(i) < uint64(len(w.devs)) {
		return w.devs[i]
	}
	return nil
}

// deferErr keeps err as the session's asynchronous failure if it is the
// first, or if it is sticky (a lost context outranks everything).
func (w *Worker) deferErr(err error) {
	code := statusOf(err)
	if code == 0 {
		return
	}
	if cudaerr.Sticky(cudaerr.Error(code)) {
		w.deferred.Store(code)
		return
	}
	w.deferred.CompareAndSwap(0, code)
}

// takeDeferred returns the kept asynchronous failure, clearing it unless
// it is sticky; 0 when there is none.
func (w *Worker) takeDeferred() int32 {
	for {
		v := w.deferred.Load()
		if v == 0 || cudaerr.Sticky(cudaerr.Error(v)) {
			return v
		}
		if w.deferred.CompareAndSwap(v, 0) {
			return v
		}
	}
}

// statusOf turns an error into the cudaError_t a reply carries.
func statusOf(err error) int32 {
	if err == nil {
		return 0
	}
	return int32(cudaerr.Code(err))
}

// watchdog fails device-to-host copies whose completion a device fault
// dropped: a faulted context discards queued host functions, and the
// client would otherwise wait for a reply that never comes.
func (w *Worker) watchdog() {
	t := time.NewTicker(watchdogPeriod)
	defer t.Stop()
	for {
		select {
		case <-w.ctx.Done():
			return
		case <-t.C:
		}
		w.pmu.Lock()
		n := len(w.pending)
		w.pmu.Unlock()
		if n == 0 {
			continue
		}
		for _, d := range w.open {
			err := d.dev.StreamQuery(backend.LegacyStream)
			if code := cudaerr.Code(err); err != nil && cudaerr.Sticky(code) {
				w.failPendingOf(d, code)
			}
		}
	}
}

// failPendingOf answers every in-flight device-to-host copy of d (nil:
// of every device) with code.
func (w *Worker) failPendingOf(d *device, code cudaerr.Error) {
	type stale struct {
		o   *op
		gen uint64
	}
	w.pmu.Lock()
	var fail []stale
	for o, gen := range w.pending {
		if d == nil || o.dev == d {
			fail = append(fail, stale{o, gen})
		}
	}
	w.pmu.Unlock()
	for _, f := range fail {
		f.o.abandon(f.gen, int32(code))
	}
}

// failPending answers every in-flight device-to-host copy with code.
func (w *Worker) failPending(code cudaerr.Error) { w.failPendingOf(nil, code) }
