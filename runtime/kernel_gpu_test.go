//go:build cuda

package runtime

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/xgpu/xgpu/devicemap"
	"github.com/xgpu/xgpu/internal/cudaerr"
	"github.com/xgpu/xgpu/internal/pb"
	"github.com/xgpu/xgpu/server/backend/backendtest"
)

// The GPU tests of the runtime run real `xgpu server --backend cuda`
// processes (the binary XGPU_BIN names, as hack/gpu-run.sh sets it), each
// starting a worker process per session, and drive them through the
// runtime API.

// gpuServer is one running `xgpu server`.
type gpuServer struct {
	addr string
	inv  *pb.Inventory
	log  *bytes.Buffer
}

// requireGPUServer skips the test without a GPU or an xgpu binary.
func requireGPUServer(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat("/dev/nvidiactl"); err != nil {
		t.Skip("no NVIDIA GPU on this machine")
	}
	bin := os.Getenv("XGPU_BIN")
	if bin == "" {
		t.Skip("XGPU_BIN does not name an xgpu binary (hack/gpu-run.sh sets it)")
	}
	return bin
}

// startGPUServer starts a cuda server that sees the GPUs visible names
// (CUDA_VISIBLE_DEVICES) and returns it once it serves.
func startGPUServer(t *testing.T, visible string, args ...string) *gpuServer {
	t.Helper()
	bin := requireGPUServer(t)
	dir := t.TempDir()
	addrFile := filepath.Join(dir, "addr")
	cmd := exec.Command(bin, append([]string{"server", "--backend", "cuda", "--listen", "127.0.0.1:0",
		"--host", "gpu-test", "--addr-file", addrFile, "--log-level", "warn"}, args...)...)
	cmd.Env = append(os.Environ(), "CUDA_VISIBLE_DEVICES="+visible, "XDG_CACHE_HOME="+filepath.Join(dir, "cache"),
		"NCCL_NVLS_ENABLE=0", "TORCH_SYMM_MEM_DISABLE_MULTICAST=1", "NVSHMEM_DISABLE_NVLS=1")
	log := &bytes.Buffer{}
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start xgpu server: %v", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("server (CUDA_VISIBLE_DEVICES=%s) log:\n%s", visible, log.String())
		}
	})
	var addr string
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if b, err := os.ReadFile(addrFile); err == nil && len(bytes.TrimSpace(b)) > 0 {
			addr = strings.TrimSpace(string(b))
			break
		}
		select {
		case <-exited:
			t.Fatalf("xgpu server exited:\n%s", log.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("xgpu server did not start:\n%s", log.String())
		}
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	inv, err := pb.NewServerClient(conn).Inventory(ctx, &pb.InventoryRequest{})
	if err != nil {
		t.Fatalf("Inventory: %v", err)
	}
	return &gpuServer{addr: addr, inv: inv, log: log}
}

// device returns the map entry of the vGPU in slot slot of the server's
// GPU gpu (its index in the server's inventory).
func (s *gpuServer) device(t *testing.T, gpu, slot int) devicemap.Device {
	t.Helper()
	for _, v := range s.inv.GetVgpus() {
		if int(v.GetGpuIndex()) != gpu || int(v.GetSlot()) != slot {
			continue
		}
		g := s.inv.GetGpus()[gpu]
		return devicemap.Device{
			Host: s.inv.GetHost(), Server: s.inv.GetServerId(), Address: s.inv.GetAddress(),
			GPUUUID: g.GetUuid(), GPUIndex: gpu, VGPU: v.GetId(), Slot: slot, MemoryQuota: v.GetMemoryBytes(),
			Properties: devicemap.Properties{Name: g.GetName(), TotalMemory: g.GetMemoryBytes(),
				ComputeCapability: fmt.Sprintf("%d.%d", g.GetCcMajor(), g.GetCcMinor())},
		}
	}
	t.Skipf("server %s has no vGPU %d of GPU %d (%d GPUs)", s.addr, slot, gpu, len(s.inv.GetGpus()))
	return devicemap.Device{}
}

// openGPUClient opens a client of the given devices.
func openGPUClient(t *testing.T, devs ...devicemap.Device) *Client {
	t.Helper()
	m, err := devicemap.New(devs, devicemap.KeepOrder())
	if err != nil {
		t.Fatalf("device map: %v", err)
	}
	c, err := Open(context.Background(), Config{Map: m, DialTimeout: 60 * time.Second})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// nvcc compiles testdata/kernels.cu for the GPU of dev into a file of
// the given kind ("cubin" or "fatbin") and returns it; it skips the test
// without nvcc.
func nvcc(t *testing.T, dev devicemap.Device, kind string) []byte {
	t.Helper()
	path, err := exec.LookPath("nvcc")
	if err != nil {
		if _, serr := os.Stat("/usr/local/cuda/bin/nvcc"); serr != nil {
			t.Skip("no nvcc on this machine")
		}
		path = "/usr/local/cuda/bin/nvcc"
	}
	sm := strings.ReplaceAll(dev.Properties.ComputeCapability, ".", "")
	out := filepath.Join(t.TempDir(), "kernels."+kind)
	args := []string{"-" + kind, "-o", out, "testdata/kernels.cu"}
	if kind == "cubin" {
		args = append(args, "-arch=sm_"+sm)
	} else {
		// Machine code for this GPU and PTX for later ones.
		args = append(args, "-gencode", "arch=compute_"+sm+",code=[sm_"+sm+",compute_"+sm+"]")
	}
	cmd := exec.Command(path, args...)
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nvcc %s: %v\n%s", strings.Join(args, " "), err, msg)
	}
	img, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func f32s(b []byte) []float32 {
	v := make([]float32, len(b)/4)
	for i := range v {
		v[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return v
}

// TestGPUNvccKernel compiles a kernel with nvcc, loads it (as a cubin and
// as a fatbin) through the runtime API, and checks what it computes.
func TestGPUNvccKernel(t *testing.T) {
	srv := startGPUServer(t, "0")
	dev := srv.device(t, 0, 0)
	c := openGPUClient(t, dev)
	for _, kind := range []string{"cubin", "fatbin"} {
		t.Run(kind, func(t *testing.T) {
			img := nvcc(t, dev, kind)
			m, err := c.LoadModule(0, img)
			if err != nil {
				t.Fatalf("LoadModule(%d-byte %s): %v", len(img), kind, err)
			}
			saxpy, err := c.GetFunction(m, "saxpy")
			if err != nil {
				t.Fatal(err)
			}
			if want := []Param{{Offset: 0, Size: 4}, {Offset: 8, Size: 8}, {Offset: 16, Size: 8}, {Offset: 24, Size: 4}}; fmt.Sprint(saxpy.Params()) != fmt.Sprint(want) {
				t.Fatalf("saxpy layout %v, want %v", saxpy.Params(), want)
			}
			affine, err := c.GetFunction(m, "_Z6affine6AffinePdy")
			if err != nil {
				t.Fatal(err)
			}
			if want := []Param{{Offset: 0, Size: 16}, {Offset: 16, Size: 8}, {Offset: 24, Size: 8}}; fmt.Sprint(affine.Params()) != fmt.Sprint(want) {
				t.Fatalf("affine layout %v, want %v", affine.Params(), want)
			}

			const n = 1<<20 + 3
			x, y := make([]byte, 4*n), make([]byte, 4*n)
			for i := range n {
				binary.LittleEndian.PutUint32(x[4*i:], math.Float32bits(float32(i)))
				binary.LittleEndian.PutUint32(y[4*i:], math.Float32bits(1))
			}
			px, py := mustMalloc(t, c, 0, 4*n), mustMalloc(t, c, 0, 4*n)
			if err := c.MemcpyHtoD(px, x); err != nil {
				t.Fatal(err)
			}
			if err := c.MemcpyHtoD(py, y); err != nil {
				t.Fatal(err)
			}
			s, err := c.StreamCreate(0, StreamNonBlocking, 0)
			if err != nil {
				t.Fatal(err)
			}
			grid, block := Dim3{X: (n + 255) / 256, Y: 1, Z: 1}, Dim3{X: 256, Y: 1, Z: 1}
			a := math.Float32bits(2)
			if err := c.LaunchKernel(saxpy, grid, block, 0, s, [][]byte{u32(a), u64(px), u64(py), u32(n)}); err != nil {
				t.Fatal(err)
			}
			out := make([]byte, 4*n)
			if err := c.MemcpyDtoHAsync(out, py, s); err != nil {
				t.Fatal(err)
			}
			if err := c.StreamSynchronize(s); err != nil {
				t.Fatalf("StreamSynchronize after saxpy: %v", err)
			}
			for i, v := range f32s(out) {
				if want := 2*float32(i) + 1; v != want {
					t.Fatalf("saxpy: y[%d] = %g, want %g", i, v, want)
				}
			}

			// The struct argument: {scale float32 at 0, shift float64 at 8}.
			const m2 = 3 << 20
			v := make([]byte, 8*m2)
			for i := range m2 {
				binary.LittleEndian.PutUint64(v[8*i:], math.Float64bits(float64(i)))
			}
			pv := mustMalloc(t, c, 0, 8*m2)
			if err := c.MemcpyHtoD(pv, v); err != nil {
				t.Fatal(err)
			}
			p := make([]byte, 16)
			binary.LittleEndian.PutUint32(p, math.Float32bits(0.5))
			binary.LittleEndian.PutUint64(p[8:], math.Float64bits(-3))
			if err := c.LaunchKernel(affine, Dim3{X: 264, Y: 1, Z: 1}, block, 0, s, [][]byte{p, u64(pv), u64(m2)}); err != nil {
				t.Fatal(err)
			}
			if err := c.StreamSynchronize(s); err != nil {
				t.Fatalf("StreamSynchronize after affine: %v", err)
			}
			if err := c.MemcpyDtoH(v, pv); err != nil {
				t.Fatal(err)
			}
			for i := range m2 {
				if got, want := math.Float64frombits(binary.LittleEndian.Uint64(v[8*i:])), float64(i)*0.5-3; got != want {
					t.Fatalf("affine: v[%d] = %g, want %g", i, got, want)
				}
			}
			if regs, err := c.FuncGetAttribute(saxpy, FuncAttrNumRegs); err != nil || regs <= 0 {
				t.Errorf("FuncGetAttribute(NumRegs) = %d, %v", regs, err)
			}
			if err := c.UnloadModule(m); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// peerRoundTrip copies n bytes from device a to b and back with
// MemcpyPeer and checks them.
func peerRoundTrip(t *testing.T, c *Client, a, b int, n uint64) {
	t.Helper()
	in := pattern(int(n), uint64(a*10+b))
	pa, pb := mustMalloc(t, c, a, n), mustMalloc(t, c, b, n)
	back := mustMalloc(t, c, a, n)
	if err := c.MemcpyHtoD(pa, in); err != nil {
		t.Fatal(err)
	}
	before := c.Stats()
	start := time.Now()
	if err := c.MemcpyPeer(pb, b, pa, a, n); err != nil {
		t.Fatalf("MemcpyPeer %d->%d: %v", a, b, err)
	}
	took := time.Since(start)
	if err := c.MemcpyPeer(back, a, pb, b, n); err != nil {
		t.Fatalf("MemcpyPeer %d->%d: %v", b, a, err)
	}
	after := c.Stats()
	if d := after.PayloadSent() + after.PayloadReceived() - before.PayloadSent() - before.PayloadReceived(); d != 0 {
		t.Errorf("%d payload bytes passed the client during the peer copies", d)
	}
	t.Logf("MemcpyPeer %d->%d of %d MiB: %v (%.1f GB/s)", a, b, n>>20, took, float64(n)/took.Seconds()/1e9)
	for _, check := range []struct {
		name string
		p    uint64
	}{{"destination", pb}, {"copied back", back}} {
		out := make([]byte, n)
		if err := c.MemcpyDtoH(out, check.p); err != nil {
			t.Fatal(err)
		}
		if i := firstDiff(in, out); i >= 0 {
			t.Fatalf("%s: byte %d differs", check.name, i)
		}
	}
}

// TestGPUPeerCopies copies between two GPUs of one server (one worker,
// the GPUs' own path) and between two servers on this machine, one GPU
// each (worker to worker over QUIC).
func TestGPUPeerCopies(t *testing.T) {
	const n = 256<<20 + 7
	t.Run("one server, two GPUs", func(t *testing.T) {
		srv := startGPUServer(t, "0,1")
		c := openGPUClient(t, srv.device(t, 0, 0), srv.device(t, 1, 0))
		peerRoundTrip(t, c, 0, 1, n)
	})
	t.Run("two servers, one GPU each", func(t *testing.T) {
		if n := gpuCount(); n < 2 {
			t.Skipf("%d GPU on this machine; two servers need one each", n)
		}
		a := startGPUServer(t, "0")
		b := startGPUServer(t, "1")
		// Each server numbers its visible GPUs from 0, as the driver does.
		c := openGPUClient(t, a.device(t, 0, 0), b.device(t, 0, 0))
		if st := c.Stats(); len(st.Sessions) != 2 {
			t.Fatalf("%d sessions, want one per server", len(st.Sessions))
		}
		peerRoundTrip(t, c, 0, 1, n)
	})
}

// TestGPUIsolation runs two sessions on one GPU (two vGPUs, two worker
// processes): one launches a kernel that faults, and gets the error and
// keeps it; the other's copies and kernels go on working, before and
// after, and a new session on the faulted vGPU works again.
func TestGPUIsolation(t *testing.T) {
	srv := startGPUServer(t, "0", "--vgpus-per-gpu", "2")
	ptx := []byte(backendtest.KernelsPTX)
	victim := openGPUClient(t, srv.device(t, 0, 0))
	other := openGPUClient(t, srv.device(t, 0, 1))
	if pv, po := victim.Stats().Sessions[0].WorkerPID, other.Stats().Sessions[0].WorkerPID; pv == po || pv == 0 {
		t.Fatalf("worker pids %d and %d: want two worker processes", pv, po)
	}

	// The other session's work: add_one over 1 Mi words, checked after
	// each round.
	mo, err := other.LoadModule(0, ptx)
	if err != nil {
		t.Fatal(err)
	}
	add, err := other.GetFunction(mo, backendtest.KernelAddOne)
	if err != nil {
		t.Fatal(err)
	}
	const n = 1 << 20
	q := mustMalloc(t, other, 0, 4*n)
	if err := other.Memset(q, 0, 4*n); err != nil {
		t.Fatal(err)
	}
	round := 0
	work := func(when string) {
		t.Helper()
		round++
		if err := other.LaunchKernel(add, Dim3{X: n / 256, Y: 1, Z: 1}, Dim3{X: 256, Y: 1, Z: 1}, 0, LegacyStream(0), [][]byte{u64(q), u32(n)}); err != nil {
			t.Fatalf("%s: LaunchKernel: %v", when, err)
		}
		data := pattern(1<<20, uint64(round))
		p := mustMalloc(t, other, 0, 1<<20)
		if err := other.MemcpyHtoD(p, data); err != nil {
			t.Fatalf("%s: MemcpyHtoD: %v", when, err)
		}
		out := make([]byte, 1<<20)
		if err := other.MemcpyDtoH(out, p); err != nil {
			t.Fatalf("%s: MemcpyDtoH: %v", when, err)
		}
		if i := firstDiff(data, out); i >= 0 {
			t.Fatalf("%s: copy differs at byte %d", when, i)
		}
		wantAll(t, when, words(t, other, q, n), uint32(round))
		if err := other.Free(p); err != nil {
			t.Fatal(err)
		}
	}
	work("before the fault")

	mv, err := victim.LoadModule(0, ptx)
	if err != nil {
		t.Fatal(err)
	}
	bad, err := victim.GetFunction(mv, backendtest.KernelFault)
	if err != nil {
		t.Fatal(err)
	}
	one := Dim3{X: 1, Y: 1, Z: 1}
	if err := victim.LaunchKernel(bad, one, one, 0, LegacyStream(0), nil); err != nil {
		t.Fatalf("LaunchKernel(fault) = %v; want the fault reported later", err)
	}
	err = victim.DeviceSynchronize(0)
	wantCode(t, err, cudaerr.IllegalAddress)
	t.Logf("the faulting session: %v", err)
	_, err = victim.Malloc(0, 64)
	wantCode(t, err, cudaerr.IllegalAddress)

	work("after the fault")
	work("again")
	victim.Close()

	// The vGPU is free again, and a fresh worker has a fresh context.
	var again *Client
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		m, err := devicemap.New([]devicemap.Device{srv.device(t, 0, 0)}, devicemap.KeepOrder())
		if err != nil {
			t.Fatal(err)
		}
		again, err = Open(context.Background(), Config{Map: m, DialTimeout: 60 * time.Second})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("reopening the faulted vGPU: %v", err)
		}
	}
	defer again.Close()
	p := mustMalloc(t, again, 0, 4096)
	if err := again.Memset(p, 7, 4096); err != nil {
		t.Fatal(err)
	}
	out := make([]byte, 4096)
	if err := again.MemcpyDtoH(out, p); err != nil || out[4095] != 7 {
		t.Fatalf("new session on the faulted vGPU: %v, byte %d", err, out[4095])
	}
}

// gpuCount counts the NVIDIA GPUs the kernel driver knows, whatever
// CUDA_VISIBLE_DEVICES says.
func gpuCount() int {
	ents, err := os.ReadDir("/proc/driver/nvidia/gpus")
	if err != nil {
		return 0
	}
	return len(ents)
}
