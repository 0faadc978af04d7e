package worker

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/xgpu/xgpu/internal/calls"
	"github.com/xgpu/xgpu/internal/cudaerr"
	"github.com/xgpu/xgpu/internal/wire"
	"github.com/xgpu/xgpu/peers"
	"github.com/xgpu/xgpu/server/backend"
	"github.com/xgpu/xgpu/server/host"
	"github.com/xgpu/xgpu/server/worker/workertest"
)

func TestMain(m *testing.M) {
	// quic-go warns once when it cannot get the UDP buffers it wants.
	os.Setenv("QUIC_GO_DISABLE_RECEIVE_BUFFER_WARNING", "true")
	if os.Getenv(clientHelperEnv) != "" {
		os.Exit(clientHelper())
	}
	goleak.VerifyTestMain(m)
}

const (
	testBase   = 0x1000_0000_0000
	testWindow = 1 << 30
	testQuota  = 128 << 20
	testToken  = "0123456789abcdef0123456789abcdef"
)

// testTransport notices a silent peer within a second or two.
var testTransport = peers.Config{MaxIdleTimeout: 2 * time.Second, KeepAlivePeriod: 200 * time.Millisecond, BulkLanes: 2}

// devCfg returns the config of logical device logical on physical device
// phys, in the logical device's window.
func devCfg(logical uint32, phys int) DeviceConfig {
	return DeviceConfig{
		Logical: logical, Physical: phys,
		WindowBase: testBase + uint64(logical)*testWindow, WindowSize: testWindow,
		Quota: testQuota,
	}
}

func testConfig(devs ...DeviceConfig) Config {
	return Config{
		SessionID:     "s-test",
		Token:         testToken,
		Devices:       devs,
		ListenHost:    "127.0.0.1",
		Transport:     testTransport,
		ClientTimeout: 20 * time.Second,
	}
}

// gpuBackend, when set (build tag cuda, on a machine with GPUs), opens the
// backend that the tests written for any backend run on; see newBackend.
var gpuBackend func(t testing.TB) backend.Backend

// newBackend returns the backend of the tests that hold for every backend:
// the cuda backend where gpuBackend is set (its devices must number at
// least devices, else the test is skipped), the host backend otherwise.
func newBackend(t testing.TB, devices int) backend.Backend {
	t.Helper()
	if gpuBackend == nil {
		return newHost(t, devices)
	}
	b := gpuBackend(t)
	infos, err := b.Devices()
	if err != nil {
		t.Fatal(err)
	}
	if len(infos) < devices {
		t.Skipf("needs %d GPUs, the machine has %d", devices, len(infos))
	}
	return b
}

// onGPU reports whether the tests run on the cuda backend.
func onGPU() bool { return gpuBackend != nil }

func newHost(t testing.TB, devices int) *host.Backend {
	t.Helper()
	b, err := host.New(host.Config{Devices: devices, Memory: 1 << 30, HostID: "test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// running is a Worker serving in the background.
type running struct {
	w     *Worker
	ready Ready
	serve chan error // Serve's result; buffered
}

// start serves a new Worker for cfg on b until the test ends.
func start(t testing.TB, cfg Config, b backend.Backend) *running {
	t.Helper()
	w, err := New(cfg, b)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	l, ready, err := w.Listen()
	if err != nil {
		w.Close()
		t.Fatalf("Listen: %v", err)
	}
	r := &running{w: w, ready: ready, serve: make(chan error, 1)}
	go func() { r.serve <- w.Serve(l) }()
	t.Cleanup(func() {
		w.Close()
		<-r.serve
	})
	return r
}

// result waits for Serve's result.
func (r *running) result(t testing.TB, within time.Duration) error {
	t.Helper()
	select {
	case err := <-r.serve:
		r.serve <- err // for the cleanup
		return err
	case <-time.After(within):
		t.Fatalf("Serve still running after %v", within)
		return nil
	}
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// dial connects a client and says Hello with token.
func dial(t testing.TB, r *running, token string) *workertest.Client {
	t.Helper()
	c := dialNoHello(t, r)
	if err := c.Hello(testCtx(t), token); err != nil {
		t.Fatalf("Hello: %v", err)
	}
	return c
}

func dialNoHello(t testing.TB, r *running) *workertest.Client {
	t.Helper()
	tr := testTransport
	c, err := workertest.Dial(testCtx(t), r.ready.Address, pinned(t, r.ready.CertSHA256), &tr)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func pinned(t testing.TB, pin string) *tls.Config {
	t.Helper()
	c, err := PinnedClientTLS(pin, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func pattern(n int, seed uint64) []byte {
	b := make([]byte, n)
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	for i := 0; i < n; i += 8 {
		v := rng.Uint64()
		for j := 0; j < 8 && i+j < n; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

func mustMalloc(t testing.TB, c *workertest.Client, dev uint32, n uint64) uint64 {
	t.Helper()
	p, err := c.Malloc(testCtx(t), dev, n)
	if err != nil {
		t.Fatalf("Malloc(%d, %d): %v", dev, n, err)
	}
	return p
}

func mustSync(t testing.TB, c *workertest.Client, dev uint32) {
	t.Helper()
	if err := c.Sync(testCtx(t), dev, 0); err != nil {
		t.Fatalf("StreamSynchronize(%d): %v", dev, err)
	}
}

func readBack(t testing.TB, c *workertest.Client, dev uint32, p uint64, n int) []byte {
	t.Helper()
	out := make([]byte, n)
	if err := c.MemcpyDtoH(testCtx(t), dev, p, out, 0); err != nil {
		t.Fatalf("MemcpyDtoH(%d bytes): %v", n, err)
	}
	return out
}

func checkEqual(t testing.TB, what string, got, want []byte) {
	t.Helper()
	if bytes.Equal(got, want) {
		return
	}
	for i := range want {
		if i >= len(got) || got[i] != want[i] {
			t.Fatalf("%s: %d bytes, first difference at byte %d", what, len(got), i)
		}
	}
	t.Fatalf("%s: got %d bytes, want %d", what, len(got), len(want))
}

// wantCode checks that err carries the CUDA status code.
func wantCode(t testing.TB, what string, err error, code cudaerr.Error) {
	t.Helper()
	if cudaerr.Code(err) != code && !(code == cudaerr.Success && err == nil) {
		t.Fatalf("%s: err = %v, want %v", what, err, code)
	}
}

// callStatus sends a call and returns its status as an error.
func callStatus(t testing.TB, c *workertest.Client, op wire.Op, call calls.Call) error {
	t.Helper()
	_, err := c.Call(testCtx(t), op, call)
	var ce cudaerr.Error
	if err != nil && !errors.As(err, &ce) {
		t.Fatalf("%s: transport error %v", calls.Name(op), err)
	}
	return err
}

func describe(n int) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1fMiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1fKiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%dB", n)
}
