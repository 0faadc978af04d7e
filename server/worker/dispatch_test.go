package worker

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xgpu/xgpu/internal/calls"
	"github.com/xgpu/xgpu/internal/wire"
	"github.com/xgpu/xgpu/server/host"
	"github.com/xgpu/xgpu/server/worker/workertest"
)

// fakeTransport is a connection whose bulk transfers fail at once.
type fakeTransport struct {
	ctx    context.Context
	cancel context.CancelFunc
}

func newFakeTransport() *fakeTransport {
	ctx, cancel := context.WithCancel(context.Background())
	return &fakeTransport{ctx: ctx, cancel: cancel}
}

var errFakeBulk = errors.New("fake transport: no bulk transfers")

func (f *fakeTransport) RecvBulk(context.Context, uint64, []byte) error { return errFakeBulk }
func (f *fakeTransport) SendBulk(context.Context, uint64, []byte) error { return errFakeBulk }
func (f *fakeTransport) Context() context.Context                       { return f.ctx }
func (f *fakeTransport) Close() error                                   { f.cancel(); return nil }

// offline is a Worker whose background goroutines run but that serves no
// listener: tests drive its dispatch directly.
func offline(t testing.TB, cfg Config) *Worker {
	t.Helper()
	b, err := host.New(host.Config{Devices: 2, Memory: 1 << 30, HostID: "test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	w, err := New(cfg, b)
	if err != nil {
		t.Fatal(err)
	}
	for range numWaiters {
		w.spawn(w.waiter)
	}
	w.spawn(w.watchdog)
	t.Cleanup(func() { w.Close() })
	return w
}

// fakeConn is an authenticated client connection over a fake transport
// whose replies go to out.
func fakeConn(w *Worker, out io.Writer) *conn {
	return &conn{w: w, pc: newFakeTransport(), role: roleClient, cw: wire.NewWriter(out, 0)}
}

func frame(t testing.TB, op wire.Op, flags wire.Flags, call calls.Call) []byte {
	t.Helper()
	var e wire.Enc
	if err := call.Encode(op, &e); err != nil {
		t.Fatal(err)
	}
	b, err := wire.AppendFrame(nil, &wire.Header{Op: op, Flags: flags, ReqID: 1}, e.B)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// FuzzDispatch feeds arbitrary frames to a client connection's dispatch,
// and arbitrary bytes to its reader: nothing may panic, and the worker
// must still answer a Ping afterwards.
func FuzzDispatch(f *testing.F) {
	seeds := []struct {
		op    wire.Op
		flags wire.Flags
		call  calls.Call
	}{
		{calls.OpMalloc, 0, calls.Call{Dev: 0, N: 4096}},
		{calls.OpMemset, wire.FlagNoReply, calls.Call{Dev: 0, Dst: testBase, Aux2: 1, N: 16}},
		{calls.OpMemcpyHtoD, wire.FlagNoReply, calls.Call{Dev: 0, Dst: testBase, N: 3, Data: []byte{1, 2, 3}}},
		{calls.OpMemcpyHtoD, wire.FlagNoReply, calls.Call{Dev: 0, Dst: testBase, N: 1 << 20, Aux: 5}},
		{calls.OpMemcpyDtoH, 0, calls.Call{Dev: 0, Src: testBase, N: 16}},
		{calls.OpMemcpyDtoH, 0, calls.Call{Dev: 0, Src: testBase, N: 1 << 20}},
		{calls.OpMemcpyPeer, 0, calls.Call{Dev: 0, Dev2: 1, Dst: testBase + testWindow, Src: testBase, N: 8}},
		{calls.OpPeerConnect, 0, calls.Call{Dev2: 5, Text: "127.0.0.1:1|" + testToken + "|" + strings.Repeat("ab", 32)}},
		{calls.OpPeerSend, 0, calls.Call{Dev: 0, Dev2: 5, Src: testBase, N: 8}},
		{calls.OpStreamCreate, 0, calls.Call{Dev: 0, Aux: 1}},
		{calls.OpStreamSynchronize, 0, calls.Call{Dev: 0, Stream: 1 << 40}},
		{calls.OpEventCreate, 0, calls.Call{Dev: 1}},
		{calls.OpEventElapsedTime, 0, calls.Call{Dev: 0, Event: 1, Event2: 2}},
		{calls.OpDeviceSynchronize, 0, calls.Call{Dev: 1}},
		{calls.OpFree, wire.FlagNoReply, calls.Call{Dev: 0, Dst: testBase}},
		{calls.OpModuleHave, 0, calls.Call{Dev: 0, Text: strings.Repeat("0f", 32)}},
		{calls.OpModuleLoad, 0, calls.Call{Dev: 0, Text: digestOf(hostKernels).String(), N: uint64(len(hostKernels)), Data: hostKernels}},
		{calls.OpModuleLoad, 0, calls.Call{Dev: 1, Text: strings.Repeat("0f", 32), N: 1 << 20, Aux: 9}},
		{calls.OpModuleGetFunction, 0, calls.Call{Dev: 0, Aux: 1, Text: "fill_u32"}},
		{calls.OpFuncGetAttribute, 0, calls.Call{Dev: 0, Aux: 1, Aux2: 4}},
		{calls.OpLaunchKernel, wire.FlagNoReply, calls.Call{Dev: 0, Aux: 1, Grid: [3]uint32{1, 1, 1}, Block: [3]uint32{1, 1, 1}, Data: make([]byte, 16)}},
		{calls.OpModuleUnload, wire.FlagNoReply, calls.Call{Dev: 0, Aux: 1}},
	}
	for _, s := range seeds {
		f.Add(frame(f, s.op, s.flags, s.call))
	}
	f.Add(append(frame(f, calls.OpMalloc, 0, calls.Call{N: 256}), frame(f, calls.OpMemcpyDtoH, 0, calls.Call{Src: testBase, N: 256})...))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 1, 0, 0, 0})
	cfg := testConfig(devCfg(0, 0), devCfg(1, 1))
	cfg.Transport.HandshakeTimeout = 200 * time.Millisecond
	w := offline(f, cfg)
	f.Fuzz(func(t *testing.T, in []byte) {
		out := &lockedBuffer{}
		c := fakeConn(w, out)
		r := wire.NewReader(bytes.NewReader(in), 0)
		for i := 0; i < 64; i++ {
			h, body, err := r.Next()
			if err != nil {
				break
			}
			if h.Op == calls.OpCloseSession {
				continue // would end the shared session
			}
			c.dispatch(&h, body)
		}
		// Whatever happened, the worker answers.
		w.deferred.Store(0)
		const pingID = 1 << 62
		h := wire.Header{Op: calls.OpPing, ReqID: pingID}
		c.dispatch(&h, nil)
		c.flush()
		replies := wire.NewReader(bytes.NewReader(out.bytes()), 0)
		for {
			rh, rbody, err := replies.Next()
			if err != nil {
				t.Fatalf("no Ping reply after fuzz input: %v", err)
			}
			if rh.ReqID != pingID {
				continue
			}
			var rep calls.Reply
			if rh.Op != calls.OpPing || rep.Decode(rbody) != nil || rep.Status != 0 {
				t.Fatalf("bad Ping reply after fuzz input: %+v %+v", rh, rep)
			}
			return
		}
	})
}

// lockedBuffer collects replies written from several goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.buf.Bytes())
}

// TestReaderGarbage checks that bytes the frame reader cannot parse close
// the connection with an error instead of reaching dispatch.
func TestReaderGarbage(t *testing.T) {
	w := offline(t, testConfig(devCfg(0, 0)))
	hello := frame(t, calls.OpHello, 0, calls.Call{Text: testToken})
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{name: "opcode zero", in: append(bytes.Clone(hello), 16, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0), want: wire.ErrMalformed},
		{name: "undefined flag", in: append(bytes.Clone(hello), 16, 0, 0, 0, 2, 0, 0, 0x80, 1, 0, 0, 0, 0, 0, 0, 0), want: wire.ErrMalformed},
		{name: "length over the limit", in: append(bytes.Clone(hello), 0xff, 0xff, 0xff, 0x7f, 2, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0), want: wire.ErrFrameTooLarge},
		{name: "cut inside a frame", in: append(bytes.Clone(hello), 40, 0, 0, 0, 2, 0), want: io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			c := fakeConn(w, &out)
			c.role = roleNone
			c.cr = wire.NewReader(bytes.NewReader(tt.in), 0)
			w.mu.Lock()
			w.client = nil
			w.mu.Unlock()
			if err := c.loop(); !errors.Is(err, tt.want) {
				t.Fatalf("loop = %v, want %v", err, tt.want)
			}
		})
	}
}

// TestHotPathAllocs checks that small calls allocate nothing once warm.
func TestHotPathAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items on purpose under the race detector")
	}
	w := offline(t, testConfig(devCfg(0, 0)))
	c := fakeConn(w, io.Discard)
	p, err := w.devs[0].dev.Malloc(1 << 16)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		op    wire.Op
		flags wire.Flags
		call  calls.Call
	}{
		{"async memset", calls.OpMemset, wire.FlagNoReply, calls.Call{Dev: 0, Dst: uint64(p), Aux: 1, Aux2: 4, N: 64}},
		{"inline H2D", calls.OpMemcpyHtoD, wire.FlagNoReply, calls.Call{Dev: 0, Dst: uint64(p), N: 256, Data: make([]byte, 256)}},
		{"D2D", calls.OpMemcpyDtoD, wire.FlagNoReply, calls.Call{Dev: 0, Dst: uint64(p), Src: uint64(p) + 4096, N: 256}},
		{"ping", calls.OpPing, 0, calls.Call{}},
		{"stream query", calls.OpStreamQuery, 0, calls.Call{Dev: 0}},
		{"inline D2H", calls.OpMemcpyDtoH, 0, calls.Call{Dev: 0, Src: uint64(p), N: 256}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := frame(t, tt.op, tt.flags, tt.call)
			h, body, err := wire.NewReader(bytes.NewReader(in), 0).Next()
			if err != nil {
				t.Fatal(err)
			}
			run := func() {
				c.dispatch(&h, body)
				c.flush()
			}
			for range 1000 { // warm the pools as deep as the stream queue
				run()
			}
			if err := w.devs[0].dev.Synchronize(context.Background()); err != nil {
				t.Fatal(err)
			}
			allocs := testing.AllocsPerRun(500, run)
			// A pool emptied by a garbage collection refills now and
			// then; a call on the hot path must not allocate as a rule.
			if allocs >= 0.5 {
				t.Fatalf("%v allocations per call", allocs)
			}
		})
	}
}

// The client helper process: it connects to a worker, says Hello, reports
// and then waits to be killed, so that a test can make a client vanish
// without closing its connection.
const clientHelperEnv = "XGPU_WORKER_TEST_CLIENT"

func clientHelper() int {
	parts := strings.Split(os.Getenv(clientHelperEnv), "|")
	if len(parts) != 3 {
		fmt.Fprintln(os.Stderr, "bad", clientHelperEnv)
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tr := testTransport
	tlsConf, err := PinnedClientTLS(parts[1], nil)
	var c *workertest.Client
	if err == nil {
		c, err = workertest.Dial(ctx, parts[0], tlsConf, &tr)
	}
	if err == nil {
		err = c.Hello(ctx, parts[2])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println("connected")
	<-ctx.Done()
	return 0
}

func TestClientVanishes(t *testing.T) {
	b := newHost(t, 1)
	r := start(t, testConfig(devCfg(0, 0)), b)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), clientHelperEnv+"="+r.ready.Address+"|"+r.ready.CertSHA256+"|"+testToken)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "connected\n" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("client helper said %q, %v", line, err)
	}
	killed := time.Now()
	cmd.Process.Kill()
	cmd.Wait()
	// The worker notices within the idle timeout (plus scheduling slack).
	bound := testTransport.MaxIdleTimeout + 2*time.Second
	err = r.result(t, bound+5*time.Second)
	if !errors.Is(err, ErrClientLost) {
		t.Fatalf("Serve = %v, want ErrClientLost", err)
	}
	if took := time.Since(killed); took > bound {
		t.Fatalf("worker noticed the lost client after %v, bound %v", took, bound)
	}
	d, err := b.Open(devCfg(0, 0).Spec())
	if err != nil {
		t.Fatalf("devices not freed: %v", err)
	}
	d.Close()
}
