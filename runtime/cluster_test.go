package runtime

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/xgpu/xgpu/devicemap"
	"github.com/xgpu/xgpu/internal/pb"
	"github.com/xgpu/xgpu/peers"
	"github.com/xgpu/xgpu/server"
	"github.com/xgpu/xgpu/server/host"
	"github.com/xgpu/xgpu/server/worker"
)

// The cluster of these tests: real servers (package server) on loopback,
// each over the host backend, whose workers run in this process
// (server.InProcessLauncher) or as processes of this test binary
// (server.ExecLauncher, see TestMain). The client under test dials the
// workers through UDP relays that count every byte and can cut the path
// silently, so that tests see what crosses the client's connections and
// how a dead worker is noticed.

const testDeviceMemory = 1 << 30

type cluster struct {
	m       *devicemap.Map
	servers []*testServer

	mu     sync.Mutex // guards relays
	relays map[string]*relay
}

// testServer is one running server and what started its workers.
type testServer struct {
	idx   int
	srv   *server.Server
	addr  string
	ctl   pb.ServerClient
	conn  *grpc.ClientConn
	serve chan error // Serve's result; buffered
	rec   *recorder
}

// recorder wraps a launcher and keeps the handles of the workers it
// started.
type recorder struct {
	server.WorkerLauncher
	mu      sync.Mutex // guards handles
	handles []server.WorkerHandle
}

func (r *recorder) Launch(ctx context.Context, cfg worker.Config) (server.WorkerHandle, error) {
	h, err := r.WorkerLauncher.Launch(ctx, cfg)
	if err == nil {
		r.mu.Lock()
		r.handles = append(r.handles, h)
		r.mu.Unlock()
	}
	return h, err
}

// workers returns the handles of the workers still running.
func (r *recorder) workers() []server.WorkerHandle {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []server.WorkerHandle
	for _, h := range r.handles {
		select {
		case <-h.Done():
		default:
			out = append(out, h)
		}
	}
	return out
}

type clusterOptions struct {
	workerT peers.Config
	exec    bool // workers as processes
}

type clusterOpt func(*clusterOptions)

// withWorkerIdle sets the workers' idle timeout.
func withWorkerIdle(d time.Duration) clusterOpt {
	return func(o *clusterOptions) {
		o.workerT.MaxIdleTimeout = d
		o.workerT.KeepAlivePeriod = d / 4
	}
}

// withWorkerProcesses runs the workers as processes of this test binary.
// Tests that copy between servers use it: in one process the race
// detector would see two streams of a worker write the same device memory
// with the happens-before edge between them passing only through UDP
// sockets (client to worker to worker), which it does not model.
func withWorkerProcesses() clusterOpt { return func(o *clusterOptions) { o.exec = true } }

// newCluster starts servers servers with perServer emulated GPUs each and
// builds the device map of all their vGPUs from their inventories, as the
// aggregator would.
func newCluster(t testing.TB, servers, perServer int, opts ...clusterOpt) *cluster {
	t.Helper()
	var o clusterOptions
	for _, f := range opts {
		f(&o)
	}
	cl := &cluster{relays: make(map[string]*relay)}
	t.Cleanup(cl.stop)
	var devs []devicemap.Device
	for i := range servers {
		hc := host.Config{Devices: perServer, Memory: testDeviceMemory, HostID: fmt.Sprintf("runtime-test-%d", i), NVLinks: 4}
		b, err := host.New(hc)
		if err != nil {
			t.Fatal(err)
		}
		gpus, err := server.BackendGPUs(b)
		b.Close()
		if err != nil {
			t.Fatal(err)
		}
		var l server.WorkerLauncher = &server.InProcessLauncher{}
		if o.exec {
			l = &server.ExecLauncher{Command: func() (*exec.Cmd, error) {
				cmd := exec.Command(os.Args[0], "-test.run=^$")
				cmd.Env = append(os.Environ(), workerEnv+"=1")
				return cmd, nil
			}, Stderr: io.Discard}
		}
		ts := &testServer{idx: i, serve: make(chan error, 1), rec: &recorder{WorkerLauncher: l}}
		ts.srv, err = server.New(server.Config{
			Host: fmt.Sprintf("h%d", i), Backend: server.BackendHost, Source: server.StaticGPUs(gpus),
			Logger: quietLogger(), Worker: ts.rec, HostBackend: &hc,
			WorkerListenHost: "127.0.0.1", WorkerTransport: o.workerT,
		})
		if err != nil {
			t.Fatal(err)
		}
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ts.addr = lis.Addr().String()
		go func() { ts.serve <- ts.srv.Serve(lis) }()
		cl.servers = append(cl.servers, ts)
		ts.conn, err = grpc.NewClient(ts.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		ts.ctl = pb.NewServerClient(ts.conn)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		inv, err := ts.ctl.Inventory(ctx, &pb.InventoryRequest{})
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range inv.GetVgpus() {
			g := inv.GetGpus()[v.GetGpuIndex()]
			devs = append(devs, devicemap.Device{
				Host: inv.GetHost(), Server: inv.GetServerId(), Address: inv.GetAddress(),
				GPUUUID: v.GetGpuUuid(), GPUIndex: int(v.GetGpuIndex()), VGPU: v.GetId(), Slot: int(v.GetSlot()),
				MemoryQuota: v.GetMemoryBytes(),
				Properties:  devicemap.Properties{Name: g.GetName(), TotalMemory: g.GetMemoryBytes()},
			})
		}
	}
	m, err := devicemap.New(devs, devicemap.KeepOrder(), devicemap.WithLeaseID("lease-test"))
	if err != nil {
		t.Fatal(err)
	}
	cl.m = m
	return cl
}

// sessions returns the number of sessions s reports.
func (s *testServer) sessions(t testing.TB) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := s.ctl.ListSessions(ctx, &pb.ListSessionsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	return len(resp.GetSessions())
}

func (s *testServer) stop() {
	s.conn.Close()
	s.srv.Close()
	<-s.serve
}

func (cl *cluster) stop() {
	for _, s := range cl.servers {
		s.stop()
	}
	cl.mu.Lock()
	defer cl.mu.Unlock()
	for _, r := range cl.relays {
		r.close()
	}
}

// config returns a client config for the cluster whose data connections
// pass through counting relays.
func (cl *cluster) config() Config {
	return Config{
		Map:         cl.m,
		DialTimeout: 20 * time.Second,
		dataAddr: func(addr string) string {
			r, err := cl.relay(addr)
			if err != nil {
				return addr // the dial fails the test visibly
			}
			return r.addr()
		},
	}
}

// open opens a client on the cluster, closed when the test ends.
func (cl *cluster) open(t testing.TB, cfg Config) *Client {
	t.Helper()
	c, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil && !errors.Is(err, ErrClosed) {
			t.Logf("Close: %v", err)
		}
	})
	return c
}

// relay returns the relay in front of the worker at addr.
func (cl *cluster) relay(addr string) (*relay, error) {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	if r := cl.relays[addr]; r != nil {
		return r, nil
	}
	r, err := newRelay(addr)
	if err != nil {
		return nil, err
	}
	cl.relays[addr] = r
	return r, nil
}

// relayBytes is the number of bytes every relay carried.
func (cl *cluster) relayBytes() uint64 {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	var n uint64
	for _, r := range cl.relays {
		n += r.bytes.Load()
	}
	return n
}

// relay forwards UDP datagrams between clients and one target, counting
// every byte, until cut.
type relay struct {
	ln     *net.UDPConn
	target *net.UDPAddr
	bytes  atomic.Uint64
	cut    atomic.Bool // drop everything, as a dead host or network would

	mu    sync.Mutex // guards flows
	flows map[string]*net.UDPConn
	wg    sync.WaitGroup
}

func newRelay(target string) (*relay, error) {
	ta, err := net.ResolveUDPAddr("udp", target)
	if err != nil {
		return nil, err
	}
	ln, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, err
	}
	r := &relay{ln: ln, target: ta, flows: make(map[string]*net.UDPConn)}
	r.wg.Go(r.serve)
	return r, nil
}

func (r *relay) addr() string { return r.ln.LocalAddr().String() }

func (r *relay) serve() {
	buf := make([]byte, 64<<10)
	for {
		n, from, err := r.ln.ReadFromUDP(buf)
		if err != nil {
			return
		}
		if r.cut.Load() {
			continue
		}
		r.bytes.Add(uint64(n))
		up, err := r.flow(from)
		if err != nil {
			continue
		}
		_, _ = up.Write(buf[:n])
	}
}

// flow returns the upstream socket of one client socket.
func (r *relay) flow(from *net.UDPAddr) (*net.UDPConn, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if up := r.flows[from.String()]; up != nil {
		return up, nil
	}
	up, err := net.DialUDP("udp", nil, r.target)
	if err != nil {
		return nil, err
	}
	r.flows[from.String()] = up
	r.wg.Go(func() {
		buf := make([]byte, 64<<10)
		for {
			n, err := up.Read(buf)
			if err != nil {
				return
			}
			if r.cut.Load() {
				continue
			}
			r.bytes.Add(uint64(n))
			_, _ = r.ln.WriteToUDP(buf[:n], from)
		}
	})
	return up, nil
}

func (r *relay) close() {
	r.ln.Close()
	r.mu.Lock()
	for _, up := range r.flows {
		up.Close()
	}
	r.mu.Unlock()
	r.wg.Wait()
}
