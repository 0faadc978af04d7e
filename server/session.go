package server

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"net"
	"sort"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/xgpu/xgpu/internal/pb"
	"github.com/xgpu/xgpu/server/backend"
	"github.com/xgpu/xgpu/server/worker"
)

// stopTimeout bounds how long CloseSession and Shutdown wait for a worker
// to end its session before killing it.
const stopTimeout = 10 * time.Second

// session is a live client session and its worker.
type session struct {
	id      string
	leaseID string
	client  string
	token   []byte
	vgpus   []string
	started time.Time
	worker  WorkerHandle
}

// sessions tracks the server's sessions and which vGPUs they hold.
type sessions struct {
	srv   *Server
	vgpus map[string]*pb.VGPU // every vGPU of this server, by id

	mu     sync.Mutex // guards the fields below
	byID   map[string]*session
	busy   map[string]string // vGPU id -> id of the session holding it (or starting)
	closed bool
	reaped sync.WaitGroup // one per session: waits for its worker to exit
}

func newSessions(s *Server) *sessions {
	t := &sessions{srv: s, vgpus: make(map[string]*pb.VGPU, len(s.vgpus)), byID: make(map[string]*session), busy: make(map[string]string)}
	for _, v := range s.vgpus {
		t.vgpus[v.GetId()] = v
	}
	return t
}

// count returns the number of live sessions.
func (t *sessions) count() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.byID)
}

// validate checks an OpenSession request against this server's vGPUs and
// returns the workers' device list.
func (t *sessions) validate(req *pb.OpenSessionRequest) ([]worker.DeviceConfig, error) {
	devs := req.GetDevices()
	if len(devs) == 0 {
		return nil, status.Error(codes.InvalidArgument, "server: OpenSession: no devices")
	}
	out := make([]worker.DeviceConfig, 0, len(devs))
	seenVGPU := make(map[string]bool, len(devs))
	seenIndex := make(map[int32]bool, len(devs))
	for _, d := range devs {
		v := t.vgpus[d.GetVgpu()]
		spec := backend.DeviceSpec{WindowBase: d.GetWindowBase(), WindowSize: d.GetWindowSize()}
		bad := func(format string, args ...any) error {
			return status.Errorf(codes.InvalidArgument, "server: OpenSession: device %d (vGPU %q): %s",
				d.GetLogicalIndex(), d.GetVgpu(), fmt.Sprintf(format, args...))
		}
		switch {
		case v == nil:
			return nil, bad("no such vGPU on this server")
		case seenVGPU[d.GetVgpu()]:
			return nil, bad("vGPU listed twice")
		case d.GetLogicalIndex() < 0 || d.GetLogicalIndex() > worker.MaxLogicalIndex:
			return nil, bad("logical index outside 0..%d", worker.MaxLogicalIndex)
		case seenIndex[d.GetLogicalIndex()]:
			return nil, bad("logical index listed twice")
		case spec.WindowBase == 0 || spec.WindowSize == 0:
			return nil, bad("empty window or window at address 0")
		case spec.WindowBase%backend.WindowAlignment != 0 || spec.WindowSize%backend.WindowAlignment != 0:
			return nil, bad("window [%#x, +%#x) is not aligned to %#x", spec.WindowBase, spec.WindowSize, backend.WindowAlignment)
		case spec.WindowBase+spec.WindowSize < spec.WindowBase:
			return nil, bad("window wraps around the address space")
		case spec.WindowSize < v.GetMemoryBytes():
			return nil, bad("window of %d bytes is smaller than the vGPU's %d bytes of memory", spec.WindowSize, v.GetMemoryBytes())
		}
		for _, o := range out {
			if spec.Overlaps(backend.DeviceSpec{WindowBase: o.WindowBase, WindowSize: o.WindowSize}) {
				return nil, bad("window overlaps the window of device %d", o.Logical)
			}
		}
		seenVGPU[d.GetVgpu()] = true
		seenIndex[d.GetLogicalIndex()] = true
		out = append(out, worker.DeviceConfig{
			Logical:    uint32(d.GetLogicalIndex()),
			Physical:   int(v.GetGpuIndex()),
			GPUUUID:    v.GetGpuUuid(),
			VGPU:       v.GetId(),
			WindowBase: spec.WindowBase,
			WindowSize: spec.WindowSize,
			Quota:      v.GetMemoryBytes(),
		})
	}
	return out, nil
}

// reserve marks the vGPUs of devs as held by session id.
func (t *sessions) reserve(id string, devs []worker.DeviceConfig) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return status.Error(codes.Unavailable, "server: shutting down")
	}
	for _, d := range devs {
		if other, ok := t.busy[d.VGPU]; ok {
			return status.Errorf(codes.FailedPrecondition, "server: OpenSession: vGPU %s is in use by session %s", d.VGPU, other)
		}
	}
	for _, d := range devs {
		t.busy[d.VGPU] = id
	}
	return nil
}

// release frees the vGPUs of devs held by session id.
func (t *sessions) releaseLocked(id string, vgpus []string) {
	for _, v := range vgpus {
		if t.busy[v] == id {
			delete(t.busy, v)
		}
	}
}

// workerConfig is the worker configuration of a new session.
func (s *Server) workerConfig(id, token string, devs []worker.DeviceConfig) worker.Config {
	cfg := worker.Config{
		SessionID:  id,
		Token:      token,
		Devices:    devs,
		Backend:    s.cfg.Backend,
		Host:       s.cfg.HostBackend,
		CUDA:       s.cfg.CUDABackend,
		ListenHost: s.cfg.WorkerListenHost,
		TLS:        s.cfg.WorkerTLS,
		Transport:  s.cfg.WorkerTransport,
		Tracing:    s.cfg.Tracing,

		ModuleCacheDir: s.cfg.ModuleCacheDir,
	}
	// Clients reach the worker under the name they reach the server by.
	if host, _, err := net.SplitHostPort(s.inv.Load().GetAddress()); err == nil && host != "" {
		cfg.AdvertiseHost = host
	}
	if ip := net.ParseIP(s.cfg.WorkerListenHost); s.cfg.WorkerListenHost != "" && (ip == nil || !ip.IsUnspecified()) {
		cfg.AdvertiseHost = s.cfg.WorkerListenHost
	}
	return cfg
}

// OpenSession starts a worker for the requested devices.
func (v *service) OpenSession(ctx context.Context, req *pb.OpenSessionRequest) (*pb.OpenSessionResponse, error) {
	s, t := v.srv, v.srv.sessions
	devs, err := t.validate(req)
	if err != nil {
		return nil, err
	}
	id := "s-" + rand.Text()[:16]
	var tok [16]byte
	_, _ = rand.Read(tok[:]) // never fails (crypto/rand)
	token := hex.EncodeToString(tok[:])
	if err := t.reserve(id, devs); err != nil {
		return nil, err
	}
	vgpus := make([]string, len(devs))
	for i, d := range devs {
		vgpus[i] = d.VGPU
	}
	h, err := s.cfg.Worker.Launch(ctx, s.workerConfig(id, token, devs))
	if err != nil {
		t.mu.Lock()
		t.releaseLocked(id, vgpus)
		t.mu.Unlock()
		s.log.Error("server: worker failed to start", "session", id, "vgpus", vgpus, "err", err)
		return nil, status.Errorf(codes.Unavailable, "server: OpenSession: %v", err)
	}
	pin, err := hex.DecodeString(h.Ready().CertSHA256)
	if err != nil {
		ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
		_ = h.Stop(ctx)
		cancel()
		t.mu.Lock()
		t.releaseLocked(id, vgpus)
		t.mu.Unlock()
		return nil, status.Errorf(codes.Internal, "server: OpenSession: worker reported pin %q: %v", h.Ready().CertSHA256, err)
	}
	sess := &session{
		id: id, leaseID: req.GetLeaseId(), client: req.GetClient(), token: []byte(token),
		vgpus: vgpus, started: time.Now(), worker: h,
	}
	t.mu.Lock()
	if t.closed {
		t.releaseLocked(id, vgpus)
		t.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
		_ = h.Stop(ctx)
		cancel()
		return nil, status.Error(codes.Unavailable, "server: shutting down")
	}
	t.byID[id] = sess
	t.reaped.Add(1)
	t.mu.Unlock()
	s.workers.add(h)
	go t.reap(sess)

	s.log.Info("server: session opened", "session", id, "lease", sess.leaseID, "client", sess.client,
		"vgpus", vgpus, "worker_pid", h.PID(), "data_address", h.Ready().Address)
	return &pb.OpenSessionResponse{
		SessionId:   id,
		Token:       []byte(token),
		DataAddress: h.Ready().Address,
		WorkerPid:   int32(h.PID()),
		CertSha256:  pin,
	}, nil
}

// reap waits for the session's worker to exit, then frees its vGPUs.
func (t *sessions) reap(sess *session) {
	defer t.reaped.Done()
	<-sess.worker.Done()
	t.srv.workers.retire(sess.worker)
	t.mu.Lock()
	delete(t.byID, sess.id)
	t.releaseLocked(sess.id, sess.vgpus)
	t.mu.Unlock()
	if err := sess.worker.Err(); err != nil {
		t.srv.log.Warn("server: session ended: worker failed", "session", sess.id, "worker_pid", sess.worker.PID(), "err", err)
		return
	}
	t.srv.log.Info("server: session ended", "session", sess.id, "worker_pid", sess.worker.PID())
}

// CloseSession stops a session's worker; its vGPUs are free when it
// returns.
func (v *service) CloseSession(ctx context.Context, req *pb.CloseSessionRequest) (*pb.CloseSessionResponse, error) {
	t := v.srv.sessions
	t.mu.Lock()
	sess := t.byID[req.GetSessionId()]
	t.mu.Unlock()
	if sess == nil {
		return nil, status.Errorf(codes.NotFound, "server: CloseSession: no session %q", req.GetSessionId())
	}
	if subtle.ConstantTimeCompare(sess.token, req.GetToken()) != 1 {
		return nil, status.Errorf(codes.PermissionDenied, "server: CloseSession: wrong token for session %q", sess.id)
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), stopTimeout)
	defer cancel()
	if err := sess.worker.Stop(sctx); err != nil {
		v.srv.log.Warn("server: worker did not stop in time", "session", sess.id, "err", err)
	}
	t.mu.Lock()
	delete(t.byID, sess.id)
	t.releaseLocked(sess.id, sess.vgpus)
	t.mu.Unlock()
	return &pb.CloseSessionResponse{}, nil
}

// ListSessions lists the live sessions, oldest first.
func (v *service) ListSessions(context.Context, *pb.ListSessionsRequest) (*pb.ListSessionsResponse, error) {
	t := v.srv.sessions
	t.mu.Lock()
	list := make([]*session, 0, len(t.byID))
	for _, s := range t.byID {
		list = append(list, s)
	}
	t.mu.Unlock()
	sort.Slice(list, func(i, j int) bool {
		if !list[i].started.Equal(list[j].started) {
			return list[i].started.Before(list[j].started)
		}
		return list[i].id < list[j].id
	})
	out := &pb.ListSessionsResponse{Sessions: make([]*pb.SessionInfo, len(list))}
	for i, s := range list {
		out.Sessions[i] = &pb.SessionInfo{
			SessionId:     s.id,
			LeaseId:       s.leaseID,
			Client:        s.client,
			Vgpus:         append([]string(nil), s.vgpus...),
			WorkerPid:     int32(s.worker.PID()),
			StartedUnixMs: s.started.UnixMilli(),
		}
	}
	return out, nil
}

// closeAll refuses new sessions, stops every worker (killing those that
// outlast ctx) and waits until all are reaped.
func (t *sessions) closeAll(ctx context.Context) {
	t.mu.Lock()
	t.closed = true
	list := make([]*session, 0, len(t.byID))
	for _, s := range t.byID {
		list = append(list, s)
	}
	t.mu.Unlock()
	var wg sync.WaitGroup
	for _, s := range list {
		wg.Go(func() {
			if err := s.worker.Stop(ctx); err != nil {
				t.srv.log.Warn("server: worker did not stop in time", "session", s.id, "err", err)
			}
		})
	}
	wg.Wait()
	t.reaped.Wait()
}
