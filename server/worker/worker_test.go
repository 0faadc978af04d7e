package worker

import (
	"bytes"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/xgpu/xgpu/internal/calls"
	"github.com/xgpu/xgpu/internal/cudaerr"
	"github.com/xgpu/xgpu/internal/wire"
	"github.com/xgpu/xgpu/server/backend"
	"github.com/xgpu/xgpu/server/host"
	"github.com/xgpu/xgpu/server/worker/workertest"
)

func TestCopiesByteExact(t *testing.T) {
	b := newBackend(t, 1)
	r := start(t, testConfig(devCfg(0, 0)), b)
	c := dial(t, r, testToken)
	ctx := testCtx(t)
	sizes := []int{1, 7, 4095, calls.InlineMax, calls.InlineMax + 1, 1<<20 + 3, 32<<20 - 5}
	for i, n := range sizes {
		t.Run(describe(n), func(t *testing.T) {
			p := mustMalloc(t, c, 0, uint64(n))
			q := mustMalloc(t, c, 0, uint64(n))

			// Memset, byte-wide, then read back.
			if err := c.Send(calls.OpMemset, calls.Call{Dev: 0, Dst: p, Aux: 0xA5, Aux2: 1, N: uint64(n)}); err != nil {
				t.Fatal(err)
			}
			checkEqual(t, "memset", readBack(t, c, 0, p, n), bytes.Repeat([]byte{0xA5}, n))

			// Host to device, device to host.
			want := pattern(n, uint64(i))
			if err := c.MemcpyHtoD(ctx, 0, p, want, 0); err != nil {
				t.Fatal(err)
			}
			checkEqual(t, "H2D then D2H", readBack(t, c, 0, p, n), want)

			// Device to device.
			if err := c.Send(calls.OpMemcpyDtoD, calls.Call{Dev: 0, Dst: q, Src: p, N: uint64(n)}); err != nil {
				t.Fatal(err)
			}
			checkEqual(t, "D2D", readBack(t, c, 0, q, n), want)

			for _, ptr := range []uint64{p, q} {
				if err := c.Send(calls.OpFree, calls.Call{Dev: 0, Dst: ptr}); err != nil {
					t.Fatal(err)
				}
			}
			mustSync(t, c, 0)
		})
	}
	if got, want := r.w.Stats().HostToDeviceBytes, uint64(sum(sizes)); got != want {
		t.Errorf("HostToDeviceBytes = %d, want %d", got, want)
	}
}

func sum(v []int) (s int) {
	for _, x := range v {
		s += x
	}
	return s
}

func TestMemsetWidths(t *testing.T) {
	b := newBackend(t, 1)
	r := start(t, testConfig(devCfg(0, 0)), b)
	c := dial(t, r, testToken)
	p := mustMalloc(t, c, 0, 64)
	tests := []struct {
		name  string
		width uint64
		val   uint64
		elems uint64
		want  []byte
	}{
		{name: "d16", width: 2, val: 0xBEEF, elems: 8, want: bytes.Repeat([]byte{0xEF, 0xBE}, 8)},
		{name: "d32", width: 4, val: 0x3F800000, elems: 4, want: bytes.Repeat([]byte{0, 0, 0x80, 0x3F}, 4)},
		{name: "d8 value truncated", width: 1, val: 0x1FF, elems: 3, want: []byte{0xFF, 0xFF, 0xFF}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := callStatus(t, c, calls.OpMemset, calls.Call{Dev: 0, Dst: p, Aux: tt.val, Aux2: tt.width, N: tt.elems})
			wantCode(t, "Memset", err, cudaerr.Success)
			checkEqual(t, tt.name, readBack(t, c, 0, p, len(tt.want)), tt.want)
		})
	}
	err := callStatus(t, c, calls.OpMemset, calls.Call{Dev: 0, Dst: p, Aux: 1, Aux2: 3, N: 1})
	wantCode(t, "Memset width 3", err, cudaerr.InvalidValue)
}

func TestPeerCopySameWorker(t *testing.T) {
	b := newBackend(t, 2)
	r := start(t, testConfig(devCfg(0, 0), devCfg(1, 1)), b)
	c := dial(t, r, testToken)
	ctx := testCtx(t)
	for _, n := range []int{100, 3<<20 + 1} {
		t.Run(describe(n), func(t *testing.T) {
			src := mustMalloc(t, c, 0, uint64(n))
			dst := mustMalloc(t, c, 1, uint64(n))
			want := pattern(n, 7)
			if err := c.MemcpyHtoD(ctx, 0, src, want, 0); err != nil {
				t.Fatal(err)
			}
			if err := c.Send(calls.OpMemcpyPeer, calls.Call{Dev: 0, Dev2: 1, Dst: dst, Src: src, N: uint64(n)}); err != nil {
				t.Fatal(err)
			}
			mustSync(t, c, 0)
			checkEqual(t, "peer copy", readBack(t, c, 1, dst, n), want)
			// Destination and source swapped across devices is refused.
			err := callStatus(t, c, calls.OpMemcpyPeer, calls.Call{Dev: 0, Dev2: 1, Dst: src, Src: dst, N: uint64(n)})
			wantCode(t, "peer copy with swapped pointers", err, cudaerr.InvalidValue)
		})
	}
}

func TestCrossWorkerPeerCopy(t *testing.T) {
	// Two servers: worker A holds logical device 0, worker B device 1.
	a := start(t, testConfig(devCfg(0, 0)), newBackend(t, 1))
	cfgB := testConfig(devCfg(1, 0))
	cfgB.Token = "fedcba9876543210fedcba9876543210"
	b := start(t, cfgB, newBackend(t, 1))
	ca := dial(t, a, testToken)
	cb := dial(t, b, cfgB.Token)
	ctx := testCtx(t)

	text := b.ready.Address + "|" + cfgB.Token + "|" + b.ready.CertSHA256
	if _, err := ca.Call(ctx, calls.OpPeerConnect, calls.Call{Dev2: 1, Text: text}); err != nil {
		t.Fatalf("PeerConnect: %v", err)
	}
	for i, n := range []int{1000, 8<<20 + 1} {
		t.Run(describe(n), func(t *testing.T) {
			src := mustMalloc(t, ca, 0, uint64(n))
			dst := mustMalloc(t, cb, 1, uint64(n))
			want := pattern(n, uint64(100+i))
			if err := ca.MemcpyHtoD(ctx, 0, src, want, 0); err != nil {
				t.Fatal(err)
			}
			mustSync(t, ca, 0)

			before := ca.Stats()
			beforeB := cb.Stats()
			peerOut, peerIn := a.w.Stats().PeerSentBytes, b.w.Stats().PeerReceivedBytes
			if err := ca.Send(calls.OpPeerSend, calls.Call{Dev: 0, Dev2: 1, Dst: dst, Src: src, N: uint64(n)}); err != nil {
				t.Fatal(err)
			}
			mustSync(t, ca, 0) // returns once B has the bytes
			after := ca.Stats()
			afterB := cb.Stats()

			// The copy cost the client two small frames each way on A and
			// nothing on B.
			if d := after.BulkBytesSent + after.BulkBytesReceived - before.BulkBytesSent - before.BulkBytesReceived; d != 0 {
				t.Errorf("client moved %d bulk bytes during the peer copy", d)
			}
			if d := (after.FrameBytesSent + after.FrameBytesReceived) - (before.FrameBytesSent + before.FrameBytesReceived); d > 512 {
				t.Errorf("client moved %d frame bytes during the peer copy of %d bytes", d, n)
			}
			if afterB != beforeB {
				t.Errorf("client connection to B changed during the copy: %+v -> %+v", beforeB, afterB)
			}
			if got := a.w.Stats().PeerSentBytes - peerOut; got != uint64(n) {
				t.Errorf("A sent %d peer bytes, want %d", got, n)
			}
			if got := b.w.Stats().PeerReceivedBytes - peerIn; got != uint64(n) {
				t.Errorf("B received %d peer bytes, want %d", got, n)
			}
			checkEqual(t, "cross-worker copy", readBack(t, cb, 1, dst, n), want)
		})
	}

	t.Run("destination outside B's allocations", func(t *testing.T) {
		src := mustMalloc(t, ca, 0, 64)
		if err := ca.Send(calls.OpPeerSend, calls.Call{Dev: 0, Dev2: 1, Dst: testBase + testWindow + 1<<29, Src: src, N: 64}); err != nil {
			t.Fatal(err)
		}
		wantCode(t, "sync after refused peer write", ca.Sync(ctx, 0, 0), cudaerr.InvalidValue)
		wantCode(t, "next sync", ca.Sync(ctx, 0, 0), cudaerr.Success)
	})
	t.Run("no PeerConnect for the device", func(t *testing.T) {
		src := mustMalloc(t, ca, 0, 64)
		err := callStatus(t, ca, calls.OpPeerSend, calls.Call{Dev: 0, Dev2: 7, Dst: 1, Src: src, N: 64})
		wantCode(t, "PeerSend without link", err, cudaerr.PeerAccessNotEnabled)
	})
	t.Run("bad PeerConnect text", func(t *testing.T) {
		for _, text := range []string{"", "a|b", b.ready.Address + "|short|" + b.ready.CertSHA256, b.ready.Address + "|" + cfgB.Token + "|xyz"} {
			err := callStatus(t, ca, calls.OpPeerConnect, calls.Call{Dev2: 1, Text: text})
			wantCode(t, "PeerConnect "+text, err, cudaerr.InvalidValue)
		}
	})
	t.Run("wrong peer token", func(t *testing.T) {
		bad := b.ready.Address + "|" + "00000000000000000000000000000000" + "|" + b.ready.CertSHA256
		err := callStatus(t, ca, calls.OpPeerConnect, calls.Call{Dev2: 2, Text: bad})
		wantCode(t, "PeerConnect with a wrong token", err, cudaerr.DevicesUnavailable)
	})
}

func TestAsyncErrorSurfacesAtSync(t *testing.T) {
	b := newBackend(t, 1)
	r := start(t, testConfig(devCfg(0, 0)), b)
	c := dial(t, r, testToken)
	ctx := testCtx(t)
	p := mustMalloc(t, c, 0, 4096)
	tests := []struct {
		name  string
		async func() error
		want  cudaerr.Error
	}{
		{name: "memset on a freed pointer", async: func() error {
			if err := c.Send(calls.OpFree, calls.Call{Dev: 0, Dst: p}); err != nil {
				return err
			}
			return c.Send(calls.OpMemset, calls.Call{Dev: 0, Dst: p, Aux: 1, Aux2: 1, N: 16})
		}, want: cudaerr.InvalidValue},
		{name: "copy on an unknown stream", async: func() error {
			return c.Send(calls.OpMemcpyDtoD, calls.Call{Dev: 0, Dst: p, Src: p, N: 0, Stream: 12345})
		}, want: cudaerr.InvalidResourceHandle},
		{name: "unknown device", async: func() error {
			return c.Send(calls.OpMemset, calls.Call{Dev: 9, Dst: p, Aux: 1, Aux2: 1, N: 1})
		}, want: cudaerr.InvalidDevice},
		{name: "first failure wins", async: func() error {
			if err := c.Send(calls.OpMemset, calls.Call{Dev: 9, Aux2: 1, N: 1}); err != nil {
				return err
			}
			return c.Send(calls.OpMemset, calls.Call{Dev: 0, Dst: 1, Aux2: 1, N: 1})
		}, want: cudaerr.InvalidDevice},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.async(); err != nil {
				t.Fatal(err)
			}
			wantCode(t, "first sync", c.Sync(ctx, 0, 0), tt.want)
			wantCode(t, "second sync", c.Sync(ctx, 0, 0), cudaerr.Success)
		})
	}
	t.Run("sync call does not run while an error is pending", func(t *testing.T) {
		if err := c.Send(calls.OpMemset, calls.Call{Dev: 9, Aux2: 1, N: 1}); err != nil {
			t.Fatal(err)
		}
		_, err := c.Malloc(ctx, 0, 1<<20)
		wantCode(t, "Malloc after failed async", err, cudaerr.InvalidDevice)
		rep, err := c.Call(ctx, calls.OpMemGetInfo, calls.Call{Dev: 0})
		if err != nil || rep.V1 != rep.V2 {
			t.Fatalf("MemGetInfo = %d free of %d, %v: the refused Malloc allocated", rep.V1, rep.V2, err)
		}
	})
}

func TestPointerChecks(t *testing.T) {
	b := newBackend(t, 1)
	// Two sessions on the same physical device, in their own windows.
	r1 := start(t, testConfig(devCfg(0, 0)), b)
	cfg2 := testConfig(devCfg(1, 0))
	cfg2.Token = "11111111111111112222222222222222"
	r2 := start(t, cfg2, b)
	c1 := dial(t, r1, testToken)
	c2 := dial(t, r2, cfg2.Token)
	ctx := testCtx(t)

	p1 := mustMalloc(t, c1, 0, 4096)
	want := pattern(4096, 1)
	if err := c1.MemcpyHtoD(ctx, 0, p1, want, 0); err != nil {
		t.Fatal(err)
	}
	p2 := mustMalloc(t, c2, 1, 4096)

	tests := []struct {
		name string
		c    *workertest.Client
		op   wire.Op
		call calls.Call
	}{
		{name: "read past the end", c: c1, op: calls.OpMemcpyDtoH, call: calls.Call{Dev: 0, Src: p1, N: 4097}},
		{name: "read outside any allocation", c: c1, op: calls.OpMemcpyDtoH, call: calls.Call{Dev: 0, Src: testBase + 1<<20, N: 1}},
		{name: "write outside any allocation", c: c1, op: calls.OpMemcpyHtoD, call: calls.Call{Dev: 0, Dst: testBase + 1<<20, N: 4, Data: []byte{1, 2, 3, 4}}},
		{name: "inline length mismatch", c: c1, op: calls.OpMemcpyHtoD, call: calls.Call{Dev: 0, Dst: p1, N: 5, Data: []byte{1, 2, 3, 4}}},
		{name: "D2D source partly outside", c: c1, op: calls.OpMemcpyDtoD, call: calls.Call{Dev: 0, Dst: p1, Src: p1 + 4000, N: 200}},
		{name: "memset overflow", c: c1, op: calls.OpMemset, call: calls.Call{Dev: 0, Dst: p1, Aux2: 4, N: 1 << 62}},
		{name: "other session reads", c: c2, op: calls.OpMemcpyDtoH, call: calls.Call{Dev: 1, Src: p1, N: 16}},
		{name: "other session writes", c: c2, op: calls.OpMemcpyHtoD, call: calls.Call{Dev: 1, Dst: p1, N: 4, Data: []byte{9, 9, 9, 9}}},
		{name: "other session memsets", c: c2, op: calls.OpMemset, call: calls.Call{Dev: 1, Dst: p1, Aux: 0, Aux2: 1, N: 16}},
		{name: "other session copies out", c: c2, op: calls.OpMemcpyDtoD, call: calls.Call{Dev: 1, Dst: p2, Src: p1, N: 16}},
		{name: "other session frees", c: c2, op: calls.OpFree, call: calls.Call{Dev: 1, Dst: p1}},
		{name: "other session's device index", c: c2, op: calls.OpMemcpyDtoH, call: calls.Call{Dev: 0, Src: p1, N: 16}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := callStatus(t, tt.c, tt.op, tt.call)
			if err == nil {
				t.Fatalf("%s succeeded", calls.Name(tt.op))
			}
			if c := cudaerr.Code(err); c != cudaerr.InvalidValue && c != cudaerr.InvalidDevice {
				t.Fatalf("err = %v, want cudaErrorInvalidValue or cudaErrorInvalidDevice", err)
			}
		})
	}
	// Session 1's memory is untouched.
	checkEqual(t, "session 1 data", readBack(t, c1, 0, p1, 4096), want)
}

func TestAuthentication(t *testing.T) {
	b := newBackend(t, 1)
	r := start(t, testConfig(devCfg(0, 0)), b)
	ctx := testCtx(t)
	tests := []struct {
		name string
		send func(c *workertest.Client) error
	}{
		{name: "wrong token", send: func(c *workertest.Client) error { return c.Hello(ctx, "wrong-token-wrong-token") }},
		{name: "token prefix", send: func(c *workertest.Client) error { return c.Hello(ctx, testToken[:16]) }},
		{name: "empty token", send: func(c *workertest.Client) error { return c.Hello(ctx, "") }},
		{name: "malloc first", send: func(c *workertest.Client) error {
			_, err := c.Malloc(ctx, 0, 16)
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dialNoHello(t, r)
			wantCode(t, "first call", tt.send(c), cudaerr.NotPermitted)
			select {
			case <-c.Done():
			case <-time.After(5 * time.Second):
				t.Fatal("worker kept the connection open after refusing it")
			}
		})
	}
	// The session is still there for its client, and only one client.
	c := dial(t, r, testToken)
	mustMalloc(t, c, 0, 16)
	second := dialNoHello(t, r)
	wantCode(t, "second client", second.Hello(ctx, testToken), cudaerr.NotPermitted)
	mustMalloc(t, c, 0, 16)
}

func TestMalformedCalls(t *testing.T) {
	b := newBackend(t, 1)
	r := start(t, testConfig(devCfg(0, 0)), b)
	c := dial(t, r, testToken)
	ctx := testCtx(t)
	tests := []struct {
		name string
		h    wire.Header
		body []byte
		want cudaerr.Error
	}{
		{name: "unknown opcode", h: wire.Header{Op: 999}, want: cudaerr.NotSupported},
		{name: "truncated body", h: wire.Header{Op: calls.OpMalloc}, body: []byte{0, 0}, want: cudaerr.InvalidValue},
		{name: "trailing bytes", h: wire.Header{Op: calls.OpPing}, body: []byte{1}, want: cudaerr.InvalidValue},
		{name: "peer write from the client", h: wire.Header{Op: calls.OpPeerWrite}, body: peerWriteBody(), want: cudaerr.NotPermitted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep, err := c.Raw(ctx, tt.h, tt.body, true)
			if err != nil {
				t.Fatal(err)
			}
			if cudaerr.Error(rep.Status) != tt.want {
				t.Fatalf("status %v, want %v", cudaerr.Error(rep.Status), tt.want)
			}
		})
	}
	// A malformed asynchronous call surfaces at the next sync.
	if _, err := c.Raw(ctx, wire.Header{Op: calls.OpMemset, Flags: wire.FlagNoReply}, []byte{1}, false); err != nil {
		t.Fatal(err)
	}
	wantCode(t, "sync after malformed async call", c.Sync(ctx, 0, 0), cudaerr.InvalidValue)
	// The session goes on.
	if _, err := c.Call(ctx, calls.OpPing, calls.Call{}); err != nil {
		t.Fatalf("Ping after malformed calls: %v", err)
	}
}

func peerWriteBody() []byte {
	var e wire.Enc
	_ = (&calls.Call{Dev: 0, Dst: testBase, N: 1, Data: []byte{1}}).Encode(calls.OpPeerWrite, &e)
	return e.B
}

func TestStreamsAndEvents(t *testing.T) {
	b := newBackend(t, 1)
	r := start(t, testConfig(devCfg(0, 0)), b)
	c := dial(t, r, testToken)
	ctx := testCtx(t)
	rep, err := c.Call(ctx, calls.OpStreamCreate, calls.Call{Dev: 0, Aux: uint64(backend.StreamNonBlocking), Aux2: 0xFFFF_FFFF}) // priority -1 as int32
	if err != nil {
		t.Fatal(err)
	}
	s := rep.V1
	ev := func() uint64 {
		rep, err := c.Call(ctx, calls.OpEventCreate, calls.Call{Dev: 0})
		if err != nil {
			t.Fatal(err)
		}
		return rep.V1
	}
	e1, e2 := ev(), ev()
	p := mustMalloc(t, c, 0, 1<<20)
	for _, step := range []struct {
		op   wire.Op
		call calls.Call
	}{
		{calls.OpEventRecord, calls.Call{Dev: 0, Event: e1, Stream: s}},
		{calls.OpMemset, calls.Call{Dev: 0, Dst: p, Aux: 3, Aux2: 1, N: 1 << 20, Stream: s}},
		{calls.OpEventRecord, calls.Call{Dev: 0, Event: e2, Stream: s}},
		{calls.OpStreamWaitEvent, calls.Call{Dev: 0, Dev2: 0, Stream: 0, Event: e2}},
	} {
		if err := c.Send(step.op, step.call); err != nil {
			t.Fatal(err)
		}
	}
	for _, step := range []struct {
		name string
		op   wire.Op
		call calls.Call
		want cudaerr.Error
	}{
		{"EventSynchronize", calls.OpEventSynchronize, calls.Call{Dev: 0, Event: e2}, cudaerr.Success},
		{"EventQuery", calls.OpEventQuery, calls.Call{Dev: 0, Event: e2}, cudaerr.Success},
		{"StreamQuery", calls.OpStreamQuery, calls.Call{Dev: 0, Stream: s}, cudaerr.Success},
		{"DeviceSynchronize", calls.OpDeviceSynchronize, calls.Call{Dev: 0}, cudaerr.Success},
		{"wait on an event of another worker's device", calls.OpStreamWaitEvent, calls.Call{Dev: 0, Dev2: 5, Event: e2}, cudaerr.InvalidResourceHandle},
		{"StreamCreate with unknown flags", calls.OpStreamCreate, calls.Call{Dev: 0, Aux: 1 << 40}, cudaerr.InvalidValue},
	} {
		t.Run(step.name, func(t *testing.T) {
			wantCode(t, step.name, callStatus(t, c, step.op, step.call), step.want)
		})
	}
	rep, err = c.Call(ctx, calls.OpEventElapsedTime, calls.Call{Dev: 0, Event: e1, Event2: e2})
	if err != nil || calls.F32From(rep.V1) < 0 {
		t.Fatalf("EventElapsedTime = %v ms, %v", calls.F32From(rep.V1), err)
	}
	for _, step := range []struct {
		op   wire.Op
		call calls.Call
	}{
		{calls.OpEventDestroy, calls.Call{Dev: 0, Event: e1}},
		{calls.OpEventDestroy, calls.Call{Dev: 0, Event: e2}},
		{calls.OpStreamDestroy, calls.Call{Dev: 0, Stream: s}},
	} {
		wantCode(t, calls.Name(step.op), callStatus(t, c, step.op, step.call), cudaerr.Success)
	}
	wantCode(t, "query of destroyed stream", callStatus(t, c, calls.OpStreamQuery, calls.Call{Dev: 0, Stream: s}), cudaerr.InvalidResourceHandle)
}

func TestSessionEnd(t *testing.T) {
	tests := []struct {
		name string
		end  func(t *testing.T, r *running, c *workertest.Client)
		want error // nil: Serve returns nil
	}{
		{name: "CloseSession", end: func(t *testing.T, r *running, c *workertest.Client) {
			if _, err := c.Call(testCtx(t), calls.OpCloseSession, calls.Call{}); err != nil {
				t.Fatalf("CloseSession: %v", err)
			}
			c.Close()
		}},
		{name: "client closes", end: func(t *testing.T, r *running, c *workertest.Client) { c.Close() }, want: ErrClientLost},
		{name: "Close", end: func(t *testing.T, r *running, c *workertest.Client) { r.w.Close() }, want: ErrClosed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBackend(t, 1)
			cfg := testConfig(devCfg(0, 0))
			r := start(t, cfg, b)
			c := dial(t, r, testToken)
			p := mustMalloc(t, c, 0, 64<<20)
			if err := c.Send(calls.OpMemset, calls.Call{Dev: 0, Dst: p, Aux: 1, Aux2: 1, N: 64 << 20}); err != nil {
				t.Fatal(err)
			}
			tt.end(t, r, c)
			err := r.result(t, 10*time.Second)
			if (tt.want == nil && err != nil) || (tt.want != nil && !errors.Is(err, tt.want)) {
				t.Fatalf("Serve = %v, want %v", err, tt.want)
			}
			// Everything was freed: the window can be opened again.
			d, err := b.Open(devCfg(0, 0).Spec())
			if err != nil {
				t.Fatalf("window still held after the session ended: %v", err)
			}
			d.Close()
		})
	}
}

func TestNoClient(t *testing.T) {
	cfg := testConfig(devCfg(0, 0))
	cfg.ClientTimeout = 200 * time.Millisecond
	r := start(t, cfg, newBackend(t, 1))
	if err := r.result(t, 5*time.Second); !errors.Is(err, ErrNoClient) {
		t.Fatalf("Serve = %v, want ErrNoClient", err)
	}
}

func TestStickyFault(t *testing.T) {
	b := newHost(t, 1)
	r := start(t, testConfig(devCfg(0, 0)), b)
	c := dial(t, r, testToken)
	ctx := testCtx(t)
	p := mustMalloc(t, c, 0, 1<<20)

	// A bulk copy whose payload never comes holds the stream; a
	// device-to-host copy queues behind it.
	if err := c.Send(calls.OpMemcpyHtoD, calls.Call{Dev: 0, Dst: p, N: 1 << 20, Aux: 77}); err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- c.MemcpyDtoH(ctx, 0, p, make([]byte, 16), 0) }()
	time.Sleep(100 * time.Millisecond)
	if err := r.w.devs[0].dev.(*host.Device).InjectFault(cudaerr.IllegalAddress); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		wantCode(t, "D2H queued behind the fault", err, cudaerr.IllegalAddress)
	case <-time.After(5 * time.Second):
		t.Fatal("D2H reply never came after the fault")
	}
	// Sticky: every later call fails the same way.
	for range 2 {
		_, err := c.Malloc(ctx, 0, 16)
		wantCode(t, "Malloc after fault", err, cudaerr.IllegalAddress)
	}
}

// TestSmallCopiesThroughEvents: answered through events (as on the cuda
// backend), small device-to-host copies return the bytes of their moment
// in stream order, from many goroutines at once, and a copy queued behind
// a failed stream gets the failure.
func TestSmallCopiesThroughEvents(t *testing.T) {
	testEventD2H = true
	b := newBackend(t, 1)
	r := start(t, testConfig(devCfg(0, 0)), b)
	testEventD2H = false
	if !r.w.eventD2H {
		t.Fatal("the worker does not answer through events")
	}
	c := dial(t, r, testToken)
	ctx := testCtx(t)
	p := mustMalloc(t, c, 0, 1<<16)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			off := uint64(g) * 4096
			for i := range 50 {
				want := pattern(4096, uint64(g*1000+i))
				if err := c.MemcpyHtoD(ctx, 0, p+off, want, 0); err != nil {
					t.Error(err)
					return
				}
				got := make([]byte, 4096)
				if err := c.MemcpyDtoH(ctx, 0, p+off, got, 0); err != nil {
					t.Error(err)
					return
				}
				if !bytes.Equal(got, want) {
					t.Errorf("goroutine %d, round %d: the copy read other bytes", g, i)
					return
				}
			}
		})
	}
	wg.Wait()
	// Events are reused, not made per copy.
	if n := len(r.w.devs[0].events); n == 0 || n > maxIdleEvents {
		t.Errorf("%d idle events kept, want 1..%d", n, maxIdleEvents)
	}
}
