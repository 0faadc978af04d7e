package backendtest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xgpu/xgpu/internal/cudaerr"
	"github.com/xgpu/xgpu/server/backend"
)

// Run runs the conformance suite. newBackend is called once per subtest and
// must return a fresh Backend whose device 0 has at least MinMemory bytes;
// the suite closes it. The suite opens Devices in windows of WindowSize
// bytes from WindowBase on.
func Run(t *testing.T, newBackend func(t *testing.T) backend.Backend) {
	tests := []struct {
		name string
		fn   func(t *testing.T, e *env)
	}{
		{"Devices", testDevices},
		{"OpenValidation", testOpenValidation},
		{"MallocWindowAlignment", testMallocWindow},
		{"MallocQuota", testMallocQuota},
		{"Free", testFree},
		{"CopyByteExact", testCopyByteExact},
		{"HostMemoryInStreamOrder", testHostMemoryInStreamOrder},
		{"MappedHostMemory", testMappedHostMemory},
		{"MemsetByteExact", testMemsetByteExact},
		{"BadRangesRejected", testBadRanges},
		{"ZeroLength", testZeroLength},
		{"StreamOrder", testStreamOrder},
		{"EventOrdersStreams", testEventOrdersStreams},
		{"QueryNotReady", testQueryNotReady},
		{"EventElapsedTime", testEventElapsedTime},
		{"Flags", testFlags},
		{"DestroyedHandles", testDestroyedHandles},
		{"DestroyWithPendingWork", testDestroyPending},
		{"SynchronizeWaitsForEveryStream", testSynchronizeAll},
		{"LegacyStream", testLegacyStream},
		{"PeerCopy", testPeerCopy},
		{"CrossDeviceEvent", testCrossDeviceEvent},
		{"WaitCancelled", testWaitCancelled},
		{"CloseDevice", testCloseDevice},
		{"CloseBackend", testCloseBackend},
		{"Concurrent", testConcurrent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.fn(t, newEnv(t, newBackend))
		})
	}
}

func testDevices(t *testing.T, e *env) {
	if e.b.Name() == "" {
		t.Error("Name() is empty")
	}
	seen := map[string]bool{}
	for i, info := range e.infos {
		if info.Name == "" {
			t.Errorf("device %d: empty name", i)
		}
		if !strings.HasPrefix(info.UUID, "GPU-") || len(info.UUID) != len("GPU-")+36 {
			t.Errorf("device %d: UUID %q is not GPU-<uuid>", i, info.UUID)
		}
		if seen[info.UUID] {
			t.Errorf("device %d: UUID %q repeats", i, info.UUID)
		}
		seen[info.UUID] = true
		if info.TotalMemory == 0 || info.ComputeMajor == 0 || info.Multiprocessors == 0 {
			t.Errorf("device %d: incomplete info %+v", i, info)
		}
		if len(info.Peers) != len(e.infos)-1 {
			t.Errorf("device %d: %d peers, want %d", i, len(info.Peers), len(e.infos)-1)
		}
		for _, p := range info.Peers {
			if p.UUID == info.UUID {
				t.Errorf("device %d lists itself as a peer", i)
			}
			if p.NVLinks < 0 || (p.NVLinks == 0 && p.PCIePath == "") {
				t.Errorf("device %d: peer %s has no link", i, p.UUID)
			}
		}
	}
	for i, info := range e.infos {
		for _, p := range info.Peers {
			if !seen[p.UUID] {
				t.Errorf("device %d: peer %s is not a device", i, p.UUID)
			}
		}
	}
	// Devices returns a copy: changing it changes nothing.
	again, err := e.b.Devices()
	must(t, "Devices", err)
	if len(again[0].Peers) > 0 {
		again[0].Peers[0].UUID = "changed"
		third, _ := e.b.Devices()
		if third[0].Peers[0].UUID == "changed" {
			t.Error("Devices shares its Peers slices with the caller")
		}
	}
}

func testOpenValidation(t *testing.T, e *env) {
	// A window large enough for a quota above the device's memory.
	mem := (e.infos[0].TotalMemory + backend.WindowAlignment - 1) &^ (backend.WindowAlignment - 1)
	held := e.open(0, quota)
	_ = held
	tests := []struct {
		name string
		spec backend.DeviceSpec
		want cudaerr.Error
	}{
		{"negative index", backend.DeviceSpec{Index: -1, WindowBase: WindowBase + WindowSize, WindowSize: WindowSize}, cudaerr.InvalidDevice},
		{"index out of range", backend.DeviceSpec{Index: len(e.infos), WindowBase: WindowBase + WindowSize, WindowSize: WindowSize}, cudaerr.InvalidDevice},
		{"empty window", backend.DeviceSpec{WindowBase: WindowBase + WindowSize}, cudaerr.InvalidValue},
		{"window at zero", backend.DeviceSpec{WindowBase: 0, WindowSize: WindowSize}, cudaerr.InvalidValue},
		{"misaligned base", backend.DeviceSpec{WindowBase: WindowBase + WindowSize + 4096, WindowSize: WindowSize}, cudaerr.InvalidValue},
		{"misaligned size", backend.DeviceSpec{WindowBase: WindowBase + WindowSize, WindowSize: WindowSize + 4096}, cudaerr.InvalidValue},
		{"wrapping window", backend.DeviceSpec{WindowBase: 1<<64 - backend.WindowAlignment, WindowSize: 2 * backend.WindowAlignment}, cudaerr.InvalidValue},
		{"quota above device memory", backend.DeviceSpec{WindowBase: WindowBase + WindowSize, WindowSize: mem + 2*backend.WindowAlignment, MemoryQuota: mem + backend.WindowAlignment}, cudaerr.InvalidValue},
		{"quota above window", backend.DeviceSpec{WindowBase: WindowBase + WindowSize, WindowSize: backend.WindowAlignment, MemoryQuota: 2 * backend.WindowAlignment}, cudaerr.InvalidValue},
		{"same window as an open device", spec(0, 0, quota), cudaerr.InvalidValue},
		{"window inside an open device's", backend.DeviceSpec{WindowBase: WindowBase + backend.WindowAlignment, WindowSize: backend.WindowAlignment}, cudaerr.InvalidValue},
		{"window straddling an open device's start", backend.DeviceSpec{WindowBase: WindowBase - backend.WindowAlignment, WindowSize: 2 * backend.WindowAlignment}, cudaerr.InvalidValue},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := e.b.Open(tt.spec)
			if err == nil {
				d.Close()
			}
			wantErr(t, err, "Open", tt.want)
		})
	}
	t.Run("adjacent window opens", func(t *testing.T) {
		d := e.open(1, quota)
		_, total, err := d.MemGetInfo()
		must(t, "MemGetInfo", err)
		if total != quota {
			t.Fatalf("MemGetInfo total = %d, want the quota %d", total, quota)
		}
	})
	t.Run("second context on the same device", func(t *testing.T) {
		e.open(2, quota)
	})
}

func testMallocWindow(t *testing.T, e *env) {
	d := e.open(0, quota)
	type region struct{ p, n uint64 }
	var got []region
	for _, n := range []uint64{1, 3, 255, 256, 257, 4095, 4096, 65537, 1 << 20, 3<<20 + 5} {
		p := uint64(malloc(t, d, n))
		if p < WindowBase || p+n > WindowBase+WindowSize {
			t.Fatalf("Malloc(%d) = %#x, outside the window [%#x, %#x)", n, p, uint64(WindowBase), uint64(WindowBase+WindowSize))
		}
		if p%backend.Alignment != 0 {
			t.Fatalf("Malloc(%d) = %#x, not %d-byte aligned", n, p, backend.Alignment)
		}
		for _, r := range got {
			if p < r.p+r.n && r.p < p+n {
				t.Fatalf("Malloc(%d) = %#x overlaps [%#x, +%d)", n, p, r.p, r.n)
			}
		}
		got = append(got, region{p, n})
		dp := backend.DevicePtr(p)
		if !d.Owns(dp, n) || !d.Owns(dp, 0) || !d.Owns(dp+backend.DevicePtr(n-1), 1) {
			t.Fatalf("Owns does not cover the allocation [%#x, +%d)", p, n)
		}
		if d.Owns(dp, n+1) || d.Owns(dp-1, 2) {
			t.Fatalf("Owns reaches past the allocation [%#x, +%d)", p, n)
		}
	}
	if d.Owns(WindowBase+WindowSize-1, 1) {
		t.Error("Owns claims unallocated window space")
	}
}

func testMallocQuota(t *testing.T, e *env) {
	const q = 8 << 20
	const chunk = 2 << 20
	d := e.open(0, q)
	free, total, err := d.MemGetInfo()
	must(t, "MemGetInfo", err)
	if total != q || free != q {
		t.Fatalf("MemGetInfo = (%d, %d), want (%d, %d)", free, total, q, q)
	}
	_, err = d.Malloc(0)
	wantErr(t, err, "Malloc", cudaerr.InvalidValue)
	_, err = d.Malloc(q + 1)
	wantErr(t, err, "Malloc", cudaerr.MemoryAllocation)
	_, err = d.Malloc(1 << 62)
	wantErr(t, err, "Malloc", cudaerr.MemoryAllocation)

	var ps []backend.DevicePtr
	for range q / chunk {
		ps = append(ps, malloc(t, d, chunk))
	}
	_, err = d.Malloc(1)
	wantErr(t, err, "Malloc", cudaerr.MemoryAllocation)
	free, _, err = d.MemGetInfo()
	must(t, "MemGetInfo", err)
	if free != 0 {
		t.Fatalf("MemGetInfo free = %d with the quota used up", free)
	}
	must(t, "Free", d.Free(ps[1]))
	free, _, err = d.MemGetInfo()
	must(t, "MemGetInfo", err)
	if free != chunk {
		t.Fatalf("MemGetInfo free = %d after freeing %d bytes", free, chunk)
	}
	p := malloc(t, d, chunk)
	if !d.Owns(p, chunk) {
		t.Fatal("the reallocated chunk is not owned")
	}

	// A second context on the same device has its own quota.
	d2 := e.open(1, q)
	p2 := malloc(t, d2, chunk)
	if d.Owns(p2, 1) || d2.Owns(p, 1) {
		t.Fatal("one context owns the other's allocation")
	}
}

func testFree(t *testing.T, e *env) {
	d := e.open(0, quota)
	other := e.open(1, quota)
	p := malloc(t, d, 4096)
	q := malloc(t, d, 4096)
	o := malloc(t, other, 4096)
	must(t, "Free(0)", d.Free(0))
	tests := []struct {
		name string
		p    backend.DevicePtr
	}{
		{"interior pointer", p + 256},
		{"one past the start", p + 1},
		{"unallocated window address", WindowBase + WindowSize - backend.Alignment},
		{"address outside every window", 0x10},
		{"another device's allocation", o},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantErr(t, d.Free(tt.p), "Free", cudaerr.InvalidValue)
		})
	}
	if !d.Owns(p, 4096) || !other.Owns(o, 4096) {
		t.Fatal("a failed Free released memory")
	}
	must(t, "Free", d.Free(p))
	if d.Owns(p, 1) {
		t.Fatal("Owns still reports a freed allocation")
	}
	wantErr(t, d.Free(p), "Free", cudaerr.InvalidValue)
	wantErr(t, d.MemsetD8Async(p, 1, 1, backend.LegacyStream), "MemsetD8Async", cudaerr.InvalidValue)
	wantErr(t, d.MemcpyHtoDAsync(p, []byte{1}, backend.LegacyStream), "MemcpyHtoDAsync", cudaerr.InvalidValue)
	// The neighbour is untouched.
	data := pattern(1, 4096)
	upload(t, d, q, data)
	wantBytes(t, "neighbour", download(t, d, q, 4096), data)
}

func testCopyByteExact(t *testing.T, e *env) {
	d := e.open(0, quota)
	const span = 1<<20 + 512
	a := malloc(t, d, span)
	b := malloc(t, d, span)
	base := pattern(1, span)
	for _, n := range []int{1, 3, 255, 256, 257, 4095, 4097, 65537, 1<<20 + 13} {
		for _, off := range []int{0, 1, 7, 256} {
			t.Run(fmt.Sprintf("n=%d,off=%d", n, off), func(t *testing.T) {
				upload(t, d, a, base)
				upload(t, d, b, base)
				data := pattern(uint64(n*31+off), n)
				// Host to device, device to device, device to host.
				must(t, "MemcpyHtoDAsync", d.MemcpyHtoDAsync(a+backend.DevicePtr(off), data, backend.LegacyStream))
				must(t, "MemcpyDtoDAsync", d.MemcpyDtoDAsync(b+backend.DevicePtr(off+3), a+backend.DevicePtr(off), uint64(n), backend.LegacyStream))
				got := make([]byte, n)
				must(t, "MemcpyDtoHAsync", d.MemcpyDtoHAsync(got, b+backend.DevicePtr(off+3), backend.LegacyStream))
				must(t, "StreamSynchronize", d.StreamSynchronize(ctx(t), backend.LegacyStream))
				wantBytes(t, "round trip", got, data)
				// Nothing outside the copied ranges changed.
				wantA := append([]byte(nil), base...)
				copy(wantA[off:], data)
				wantBytes(t, "source allocation", download(t, d, a, span), wantA)
				wantB := append([]byte(nil), base...)
				copy(wantB[off+3:], data)
				wantBytes(t, "destination allocation", download(t, d, b, span), wantB)
			})
		}
	}
	t.Run("overlapping device to device", func(t *testing.T) {
		data := pattern(77, 4096)
		upload(t, d, a, data)
		must(t, "MemcpyDtoDAsync", d.MemcpyDtoDAsync(a+100, a, 1000, backend.LegacyStream))
		want := append([]byte(nil), data...)
		copy(want[100:1100], data[:1000])
		wantBytes(t, "overlapping copy", download(t, d, a, 4096), want)
	})
}

// testHostMemoryInStreamOrder checks that a host-to-device copy reads its
// source when the stream reaches it, and a device-to-host copy writes its
// destination then: the source is filled only after the copy was
// enqueued, while the stream is held up.
func testHostMemoryInStreamOrder(t *testing.T, e *env) {
	d := e.open(0, quota)
	s, err := d.StreamCreate(backend.StreamNonBlocking, 0)
	must(t, "StreamCreate", err)
	for _, n := range []int{100, 1<<20 + 3, 9<<20 + 1} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			p := malloc(t, d, uint64(n))
			src := make([]byte, n)
			out := make([]byte, n)
			g := block(t, d, s)
			must(t, "MemcpyHtoDAsync", d.MemcpyHtoDAsync(p, src, s))
			must(t, "MemcpyDtoHAsync", d.MemcpyDtoHAsync(out, p, s))
			g.waitEntered(t)
			data := pattern(uint64(n), n)
			copy(src, data) // the stream has not reached the copy yet
			g.open()
			must(t, "StreamSynchronize", d.StreamSynchronize(ctx(t), s))
			wantBytes(t, "copied after the source was filled", out, data)
			must(t, "Free", d.Free(p))
		})
	}
}

// testMappedHostMemory: copies to and from HostAlloc memory (which the
// cuda backend moves by DMA with no staging) keep the host-memory rules:
// byte-exact, the source read when the stream reaches the copy, at any
// offset of the buffer; a buffer one Device allocated serves another's
// copies; a freed one is no longer mapped. A Device that does not
// implement backend.HostMapper skips it.
func testMappedHostMemory(t *testing.T, e *env) {
	d := e.open(0, quota)
	hm, ok := d.(backend.HostMapper)
	if !ok {
		t.Skipf("the %s backend's Device does not implement backend.HostMapper", e.b.Name())
	}
	s, err := d.StreamCreate(backend.StreamNonBlocking, 0)
	must(t, "StreamCreate", err)
	const n = 9<<20 + 5
	src, err := hm.HostAlloc(n + 64)
	must(t, "HostAlloc", err)
	dst, err := hm.HostAlloc(n + 64)
	must(t, "HostAlloc", err)
	p := malloc(t, d, n)
	for _, off := range []int{0, 3, 64} {
		t.Run(fmt.Sprint("offset ", off), func(t *testing.T) {
			in, out := src.Bytes[off:off+n], dst.Bytes[off:off+n]
			clear(in)
			clear(out)
			g := block(t, d, s)
			must(t, "MemcpyHtoDAsync", d.MemcpyHtoDAsync(p, in, s))
			must(t, "MemcpyDtoHAsync", d.MemcpyDtoHAsync(out, p, s))
			g.waitEntered(t)
			data := pattern(uint64(off+1), n)
			copy(in, data) // the stream has not reached the copy yet
			g.open()
			must(t, "StreamSynchronize", d.StreamSynchronize(ctx(t), s))
			wantBytes(t, "copied through mapped memory", out, data)
		})
	}
	t.Run("another device's buffer", func(t *testing.T) {
		if len(e.infos) < 2 {
			t.Skip("one device")
		}
		d2 := e.open(1, quota)
		q := malloc(t, d2, 4096)
		data := pattern(77, 4096)
		copy(src.Bytes, data)
		must(t, "MemcpyHtoDAsync", d2.MemcpyHtoDAsync(q, src.Bytes[:4096], backend.LegacyStream))
		clear(dst.Bytes[:4096])
		must(t, "MemcpyDtoHAsync", d2.MemcpyDtoHAsync(dst.Bytes[:4096], q, backend.LegacyStream))
		must(t, "StreamSynchronize", d2.StreamSynchronize(ctx(t), backend.LegacyStream))
		wantBytes(t, "copied by another device", dst.Bytes[:4096], data)
	})
	must(t, "HostFree", hm.HostFree(src))
	must(t, "HostFree", hm.HostFree(dst))
	wantErr(t, hm.HostFree(src), "HostFree", cudaerr.InvalidValue)
	// Ordinary memory again: the copy still works (staged).
	again := pattern(5, 4096)
	out := make([]byte, 4096)
	must(t, "MemcpyHtoDAsync", d.MemcpyHtoDAsync(p, again, s))
	must(t, "MemcpyDtoHAsync", d.MemcpyDtoHAsync(out, p, s))
	must(t, "StreamSynchronize", d.StreamSynchronize(ctx(t), s))
	wantBytes(t, "copied through Go memory", out, again)
}

func testMemsetByteExact(t *testing.T, e *env) {
	d := e.open(0, quota)
	const span = 1 << 16
	p := malloc(t, d, span)
	tests := []struct {
		name  string
		off   int
		count int
		elem  int
		val   uint32
	}{
		{"d8 one byte", 0, 1, 1, 0xab},
		{"d8 odd offset odd count", 3, 1001, 1, 0x5c},
		{"d8 whole allocation", 0, span, 1, 0xff},
		{"d8 zero", 17, 333, 1, 0},
		{"d16 one", 2, 1, 2, 0xbeef},
		{"d16 odd count", 6, 777, 2, 0x1234},
		{"d32 one", 4, 1, 4, 0xdeadbeef},
		{"d32 odd count", 12, 1001, 4, 0x01020304},
		{"d32 to the end", span - 4*9, 9, 4, 0xcafef00d},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := pattern(uint64(tt.off+tt.count), span)
			upload(t, d, p, base)
			dst := p + backend.DevicePtr(tt.off)
			var err error
			switch tt.elem {
			case 1:
				err = d.MemsetD8Async(dst, uint8(tt.val), uint64(tt.count), backend.LegacyStream)
			case 2:
				err = d.MemsetD16Async(dst, uint16(tt.val), uint64(tt.count), backend.LegacyStream)
			case 4:
				err = d.MemsetD32Async(dst, tt.val, uint64(tt.count), backend.LegacyStream)
			}
			must(t, "memset", err)
			want := append([]byte(nil), base...)
			for i := range tt.count {
				for k := range tt.elem {
					want[tt.off+i*tt.elem+k] = byte(tt.val >> (8 * k)) // little-endian
				}
			}
			wantBytes(t, "after memset", download(t, d, p, span), want)
		})
	}
	t.Run("misaligned", func(t *testing.T) {
		wantErr(t, d.MemsetD16Async(p+1, 1, 4, backend.LegacyStream), "MemsetD16Async", cudaerr.InvalidValue)
		wantErr(t, d.MemsetD32Async(p+2, 1, 4, backend.LegacyStream), "MemsetD32Async", cudaerr.InvalidValue)
	})
}

func testBadRanges(t *testing.T, e *env) {
	d := e.open(0, quota)
	const n = 4096
	a := malloc(t, d, n)
	b := malloc(t, d, n)
	hole := malloc(t, d, n)
	must(t, "Free", d.Free(hole))
	base := pattern(5, n)
	upload(t, d, a, base)
	upload(t, d, b, base)
	buf := make([]byte, 2*n)
	s := backend.LegacyStream
	tests := []struct {
		name string
		op   string
		call func() error
	}{
		{"h2d one past the end", "MemcpyHtoDAsync", func() error { return d.MemcpyHtoDAsync(a+1, buf[:n], s) }},
		{"h2d larger than the allocation", "MemcpyHtoDAsync", func() error { return d.MemcpyHtoDAsync(a, buf[:n+1], s) }},
		{"h2d into a freed allocation", "MemcpyHtoDAsync", func() error { return d.MemcpyHtoDAsync(hole, buf[:1], s) }},
		{"h2d outside every window", "MemcpyHtoDAsync", func() error { return d.MemcpyHtoDAsync(0x1000, buf[:1], s) }},
		{"h2d null", "MemcpyHtoDAsync", func() error { return d.MemcpyHtoDAsync(0, buf[:1], s) }},
		{"d2h before the start", "MemcpyDtoHAsync", func() error { return d.MemcpyDtoHAsync(buf[:2], a-1, s) }},
		{"d2h past the end", "MemcpyDtoHAsync", func() error { return d.MemcpyDtoHAsync(buf[:n], b+n-10, s) }},
		{"d2d across two allocations", "MemcpyDtoDAsync", func() error { return d.MemcpyDtoDAsync(b, a, 2*n, s) }},
		{"d2d bad destination", "MemcpyDtoDAsync", func() error { return d.MemcpyDtoDAsync(b+n-1, a, 2, s) }},
		{"d2d bad source", "MemcpyDtoDAsync", func() error { return d.MemcpyDtoDAsync(b, a+n-1, 2, s) }},
		{"d2d huge", "MemcpyDtoDAsync", func() error { return d.MemcpyDtoDAsync(b, a, 1<<63, s) }},
		{"memset past the end", "MemsetD8Async", func() error { return d.MemsetD8Async(a, 0, n+1, s) }},
		{"memset d32 past the end", "MemsetD32Async", func() error { return d.MemsetD32Async(a, 0, n/4+1, s) }},
		{"memset d32 count overflow", "MemsetD32Async", func() error { return d.MemsetD32Async(a, 0, 1<<62+1, s) }},
		{"memset unallocated", "MemsetD8Async", func() error { return d.MemsetD8Async(hole, 0, 1, s) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantErr(t, tt.call(), tt.op, cudaerr.InvalidValue)
		})
	}
	wantBytes(t, "allocation a", download(t, d, a, n), base)
	wantBytes(t, "allocation b", download(t, d, b, n), base)
	must(t, "StreamQuery", d.StreamQuery(s))
}

func testZeroLength(t *testing.T, e *env) {
	d := e.open(0, quota)
	s := backend.LegacyStream
	bad := backend.DevicePtr(0x10)
	must(t, "MemcpyHtoDAsync", d.MemcpyHtoDAsync(bad, nil, s))
	must(t, "MemcpyDtoHAsync", d.MemcpyDtoHAsync(nil, bad, s))
	must(t, "MemcpyDtoDAsync", d.MemcpyDtoDAsync(bad, bad, 0, s))
	must(t, "MemsetD8Async", d.MemsetD8Async(bad, 0, 0, s))
	must(t, "MemsetD32Async", d.MemsetD32Async(bad, 0, 0, s))
	must(t, "MemcpyPeerAsync", d.MemcpyPeerAsync(bad, d, bad, 0, s))
	// The stream is still checked.
	wantErr(t, d.MemcpyHtoDAsync(bad, nil, 12345), "MemcpyHtoDAsync", cudaerr.InvalidResourceHandle)
	wantErr(t, d.MemsetD8Async(bad, 0, 0, 12345), "MemsetD8Async", cudaerr.InvalidResourceHandle)
}

func testStreamOrder(t *testing.T, e *env) {
	d := e.open(0, quota)
	for _, flags := range []uint32{backend.StreamDefault, backend.StreamNonBlocking} {
		t.Run(fmt.Sprintf("flags=%d", flags), func(t *testing.T) {
			s, err := d.StreamCreate(flags, 0)
			must(t, "StreamCreate", err)
			defer d.StreamDestroy(s)
			p := malloc(t, d, 64)
			defer d.Free(p)
			const rounds = 200
			outs := make([][]byte, rounds)
			var order []int
			for i := range rounds {
				// Each round overwrites p, reads it back and checks in a
				// host function that the read saw this round's value.
				must(t, "MemsetD8Async", d.MemsetD8Async(p, uint8(i), 64, s))
				if i%3 == 0 {
					must(t, "MemcpyHtoDAsync", d.MemcpyHtoDAsync(p+5, []byte{uint8(i), uint8(i)}, s))
				}
				outs[i] = make([]byte, 64)
				must(t, "MemcpyDtoHAsync", d.MemcpyDtoHAsync(outs[i], p, s))
				must(t, "LaunchHostFunc", d.LaunchHostFunc(s, func() {
					for _, b := range outs[i] {
						if b != uint8(i) {
							order = append(order, -1)
							return
						}
					}
					order = append(order, i)
				}))
			}
			must(t, "StreamSynchronize", d.StreamSynchronize(ctx(t), s))
			if len(order) != rounds {
				t.Fatalf("%d host functions ran, want %d", len(order), rounds)
			}
			for i, got := range order {
				if got != i {
					t.Fatalf("host function %d saw round %d", i, got)
				}
			}
			must(t, "StreamQuery", d.StreamQuery(s))
		})
	}
}

func testEventOrdersStreams(t *testing.T, e *env) {
	d := e.open(0, quota)
	s1, err := d.StreamCreate(backend.StreamNonBlocking, 0)
	must(t, "StreamCreate", err)
	s2, err := d.StreamCreate(backend.StreamNonBlocking, 0)
	must(t, "StreamCreate", err)
	ev, err := d.EventCreate(backend.EventDisableTiming)
	must(t, "EventCreate", err)
	p := malloc(t, d, 1<<16)
	upload(t, d, p, make([]byte, 1<<16))

	g := block(t, d, s1)
	data := pattern(9, 1<<16)
	must(t, "MemcpyHtoDAsync", d.MemcpyHtoDAsync(p, data, s1))
	must(t, "EventRecord", d.EventRecord(ev, s1))
	must(t, "StreamWaitEvent", d.StreamWaitEvent(s2, ev))
	out := make([]byte, 1<<16)
	must(t, "MemcpyDtoHAsync", d.MemcpyDtoHAsync(out, p, s2))
	g.waitEntered(t)
	pending(t, "StreamQuery(waiting stream)", func() error { return d.StreamQuery(s2) })
	pending(t, "EventQuery", func() error { return d.EventQuery(ev) })
	g.open()
	must(t, "StreamSynchronize", d.StreamSynchronize(ctx(t), s2))
	wantBytes(t, "read after the event", out, data)

	t.Run("re-record replaces the capture", func(t *testing.T) {
		g := block(t, d, s1)
		must(t, "EventRecord", d.EventRecord(ev, s1))
		g.waitEntered(t)
		pending(t, "EventQuery", func() error { return d.EventQuery(ev) })
		// Recorded again on an idle stream: complete at once.
		must(t, "EventRecord", d.EventRecord(ev, s2))
		must(t, "EventSynchronize", d.EventSynchronize(ctx(t), ev))
		must(t, "EventQuery", d.EventQuery(ev))
		g.open()
	})
	t.Run("wait on a never recorded event", func(t *testing.T) {
		fresh, err := d.EventCreate(backend.EventDefault)
		must(t, "EventCreate", err)
		must(t, "EventQuery", d.EventQuery(fresh))
		must(t, "EventSynchronize", d.EventSynchronize(ctx(t), fresh))
		must(t, "StreamWaitEvent", d.StreamWaitEvent(s2, fresh))
		must(t, "StreamSynchronize", d.StreamSynchronize(ctx(t), s2))
	})
	t.Run("wait holds the capture at the time of the call", func(t *testing.T) {
		must(t, "EventRecord", d.EventRecord(ev, s2)) // complete
		must(t, "EventSynchronize", d.EventSynchronize(ctx(t), ev))
		must(t, "StreamWaitEvent", d.StreamWaitEvent(s2, ev))
		g := block(t, d, s1)
		must(t, "EventRecord", d.EventRecord(ev, s1)) // pending, after the wait
		g.waitEntered(t)
		must(t, "StreamSynchronize(s2)", d.StreamSynchronize(ctx(t), s2))
		g.open()
	})
}

func testQueryNotReady(t *testing.T, e *env) {
	d := e.open(0, quota)
	s, err := d.StreamCreate(backend.StreamNonBlocking, 0)
	must(t, "StreamCreate", err)
	ev, err := d.EventCreate(backend.EventDefault)
	must(t, "EventCreate", err)
	must(t, "StreamQuery(idle)", d.StreamQuery(s))
	g := block(t, d, s)
	must(t, "EventRecord", d.EventRecord(ev, s))
	g.waitEntered(t)
	pending(t, "StreamQuery", func() error { return d.StreamQuery(s) })
	pending(t, "EventQuery", func() error { return d.EventQuery(ev) })
	wantErr(t, d.StreamQuery(s), "StreamQuery", cudaerr.NotReady)
	wantErr(t, d.EventQuery(ev), "EventQuery", cudaerr.NotReady)
	g.open()
	must(t, "EventSynchronize", d.EventSynchronize(ctx(t), ev))
	must(t, "EventQuery", d.EventQuery(ev))
	must(t, "StreamSynchronize", d.StreamSynchronize(ctx(t), s))
	must(t, "StreamQuery", d.StreamQuery(s))
}

func testEventElapsedTime(t *testing.T, e *env) {
	d := e.open(0, quota)
	s, err := d.StreamCreate(backend.StreamNonBlocking, 0)
	must(t, "StreamCreate", err)
	var evs [4]backend.Event
	for i := range evs {
		evs[i], err = d.EventCreate(backend.EventDefault)
		must(t, "EventCreate", err)
	}
	const nap = 5 * time.Millisecond
	must(t, "EventRecord", d.EventRecord(evs[0], s))
	must(t, "LaunchHostFunc", d.LaunchHostFunc(s, func() { time.Sleep(nap) }))
	must(t, "EventRecord", d.EventRecord(evs[1], s))
	must(t, "EventRecord", d.EventRecord(evs[2], s))
	must(t, "LaunchHostFunc", d.LaunchHostFunc(s, func() { time.Sleep(nap) }))
	must(t, "EventRecord", d.EventRecord(evs[3], s))
	must(t, "StreamSynchronize", d.StreamSynchronize(ctx(t), s))

	elapsed := func(a, b int) float32 {
		ms, err := d.EventElapsedTime(evs[a], evs[b])
		must(t, "EventElapsedTime", err)
		return ms
	}
	t01, t02, t03, t12 := elapsed(0, 1), elapsed(0, 2), elapsed(0, 3), elapsed(1, 2)
	napMs := float32(nap) / float32(time.Millisecond)
	if t01 < 0.8*napMs {
		t.Errorf("elapsed over a %v host function = %v ms", nap, t01)
	}
	if t12 < 0 || t02 < t01 || t03 < t02+0.8*napMs {
		t.Errorf("elapsed times not monotonic: t01=%v t02=%v t03=%v t12=%v", t01, t02, t03, t12)
	}

	t.Run("timing disabled", func(t *testing.T) {
		nt, err := d.EventCreate(backend.EventDisableTiming)
		must(t, "EventCreate", err)
		must(t, "EventRecord", d.EventRecord(nt, s))
		must(t, "EventSynchronize", d.EventSynchronize(ctx(t), nt))
		_, err = d.EventElapsedTime(evs[0], nt)
		wantErr(t, err, "EventElapsedTime", cudaerr.InvalidResourceHandle)
	})
	t.Run("never recorded", func(t *testing.T) {
		fresh, err := d.EventCreate(backend.EventDefault)
		must(t, "EventCreate", err)
		_, err = d.EventElapsedTime(fresh, evs[0])
		wantErr(t, err, "EventElapsedTime", cudaerr.InvalidResourceHandle)
	})
	t.Run("re-recorded event keeps the latest record's time", func(t *testing.T) {
		other, err := d.StreamCreate(backend.StreamNonBlocking, 0)
		must(t, "StreamCreate", err)
		ev, err := d.EventCreate(backend.EventDefault)
		must(t, "EventCreate", err)
		g := block(t, d, s)
		must(t, "EventRecord(held)", d.EventRecord(ev, s))
		must(t, "EventRecord(idle)", d.EventRecord(ev, other))
		must(t, "EventSynchronize", d.EventSynchronize(ctx(t), ev))
		before, err := d.EventElapsedTime(evs[0], ev)
		must(t, "EventElapsedTime", err)
		g.open()
		must(t, "LaunchHostFunc", d.LaunchHostFunc(s, func() { time.Sleep(nap) }))
		must(t, "StreamSynchronize", d.StreamSynchronize(ctx(t), s))
		after, err := d.EventElapsedTime(evs[0], ev)
		must(t, "EventElapsedTime", err)
		if after != before {
			t.Fatalf("elapsed time changed from %v to %v when the superseded record ran", before, after)
		}
	})
	t.Run("pending", func(t *testing.T) {
		late, err := d.EventCreate(backend.EventDefault)
		must(t, "EventCreate", err)
		g := block(t, d, s)
		must(t, "EventRecord", d.EventRecord(late, s))
		g.waitEntered(t)
		_, err = d.EventElapsedTime(evs[0], late)
		wantErr(t, err, "EventElapsedTime", cudaerr.NotReady)
		g.open()
		must(t, "EventSynchronize", d.EventSynchronize(ctx(t), late))
		if ms, err := d.EventElapsedTime(evs[0], late); err != nil || ms < t03 {
			t.Fatalf("EventElapsedTime after completion = %v, %v; want >= %v", ms, err, t03)
		}
	})
}

func testFlags(t *testing.T, e *env) {
	d := e.open(0, quota)
	streamTests := []struct {
		name     string
		flags    uint32
		priority int
		wantErr  bool
	}{
		{"default", backend.StreamDefault, 0, false},
		{"non-blocking", backend.StreamNonBlocking, 0, false},
		{"greatest priority", backend.StreamDefault, backend.StreamPriorityGreatest, false},
		{"priority clamped high", backend.StreamNonBlocking, -1000, false},
		{"priority clamped low", backend.StreamNonBlocking, 1000, false},
		{"unknown flag", 0x2, 0, true},
		{"high bits", 0x80000000, 0, true},
	}
	for _, tt := range streamTests {
		t.Run("stream "+tt.name, func(t *testing.T) {
			s, err := d.StreamCreate(tt.flags, tt.priority)
			if tt.wantErr {
				wantErr(t, err, "StreamCreate", cudaerr.InvalidValue)
				return
			}
			must(t, "StreamCreate", err)
			if s == backend.LegacyStream {
				t.Fatal("StreamCreate returned the legacy stream's handle")
			}
			must(t, "StreamSynchronize", d.StreamSynchronize(ctx(t), s))
			must(t, "StreamDestroy", d.StreamDestroy(s))
		})
	}
	eventTests := []struct {
		name    string
		flags   uint32
		wantErr bool
	}{
		{"default", backend.EventDefault, false},
		{"blocking sync", backend.EventBlockingSync, false},
		{"timing disabled", backend.EventDisableTiming, false},
		{"interprocess", backend.EventInterprocess | backend.EventDisableTiming, false},
		{"all", backend.EventBlockingSync | backend.EventDisableTiming | backend.EventInterprocess, false},
		{"interprocess with timing", backend.EventInterprocess, true},
		{"unknown flag", 0x8, true},
	}
	for _, tt := range eventTests {
		t.Run("event "+tt.name, func(t *testing.T) {
			ev, err := d.EventCreate(tt.flags)
			if tt.wantErr {
				wantErr(t, err, "EventCreate", cudaerr.InvalidValue)
				return
			}
			must(t, "EventCreate", err)
			if ev == 0 {
				t.Fatal("EventCreate returned handle 0")
			}
			must(t, "EventRecord", d.EventRecord(ev, backend.LegacyStream))
			must(t, "EventSynchronize", d.EventSynchronize(ctx(t), ev))
			must(t, "EventDestroy", d.EventDestroy(ev))
		})
	}
	t.Run("nil host function", func(t *testing.T) {
		wantErr(t, d.LaunchHostFunc(backend.LegacyStream, nil), "LaunchHostFunc", cudaerr.InvalidValue)
	})
}

func testDestroyedHandles(t *testing.T, e *env) {
	d := e.open(0, quota)
	other := e.open(1, quota)
	p := malloc(t, d, 256)
	s, err := d.StreamCreate(backend.StreamDefault, 0)
	must(t, "StreamCreate", err)
	must(t, "StreamDestroy", d.StreamDestroy(s))
	ev, err := d.EventCreate(backend.EventDefault)
	must(t, "EventCreate", err)
	must(t, "EventDestroy", d.EventDestroy(ev))
	otherStream, err := other.StreamCreate(backend.StreamDefault, 0)
	must(t, "StreamCreate", err)
	otherEvent, err := other.EventCreate(backend.EventDefault)
	must(t, "EventCreate", err)
	live, err := d.EventCreate(backend.EventDefault)
	must(t, "EventCreate", err)
	buf := make([]byte, 8)

	const bogusStream, bogusEvent = backend.Stream(0x7777), backend.Event(0x7777)
	for _, bad := range []struct {
		name string
		s    backend.Stream
	}{{"destroyed stream", s}, {"bogus stream", bogusStream}, {"another device's stream", otherStream}} {
		t.Run(bad.name, func(t *testing.T) {
			calls := []struct {
				op   string
				call func() error
			}{
				{"MemsetD8Async", func() error { return d.MemsetD8Async(p, 0, 1, bad.s) }},
				{"MemcpyHtoDAsync", func() error { return d.MemcpyHtoDAsync(p, buf, bad.s) }},
				{"MemcpyDtoHAsync", func() error { return d.MemcpyDtoHAsync(buf, p, bad.s) }},
				{"MemcpyDtoDAsync", func() error { return d.MemcpyDtoDAsync(p, p+8, 8, bad.s) }},
				{"MemcpyPeerAsync", func() error { return d.MemcpyPeerAsync(p, d, p+8, 8, bad.s) }},
				{"LaunchHostFunc", func() error { return d.LaunchHostFunc(bad.s, func() {}) }},
				{"EventRecord", func() error { return d.EventRecord(live, bad.s) }},
				{"StreamWaitEvent", func() error { return d.StreamWaitEvent(bad.s, live) }},
				{"StreamQuery", func() error { return d.StreamQuery(bad.s) }},
				{"StreamSynchronize", func() error { return d.StreamSynchronize(ctx(t), bad.s) }},
				{"StreamDestroy", func() error { return d.StreamDestroy(bad.s) }},
			}
			for _, c := range calls {
				wantErr(t, c.call(), c.op, cudaerr.InvalidResourceHandle)
			}
		})
	}
	for _, bad := range []struct {
		name string
		e    backend.Event
	}{{"destroyed event", ev}, {"bogus event", bogusEvent}, {"zero event", 0}} {
		t.Run(bad.name, func(t *testing.T) {
			calls := []struct {
				op   string
				call func() error
			}{
				{"EventRecord", func() error { return d.EventRecord(bad.e, backend.LegacyStream) }},
				{"EventQuery", func() error { return d.EventQuery(bad.e) }},
				{"EventSynchronize", func() error { return d.EventSynchronize(ctx(t), bad.e) }},
				{"EventElapsedTime", func() error { _, err := d.EventElapsedTime(bad.e, live); return err }},
				{"EventDestroy", func() error { return d.EventDestroy(bad.e) }},
				{"StreamWaitEvent", func() error { return d.StreamWaitEvent(backend.LegacyStream, bad.e) }},
			}
			for _, c := range calls {
				wantErr(t, c.call(), c.op, cudaerr.InvalidResourceHandle)
			}
		})
	}
	t.Run("another device's event", func(t *testing.T) {
		wantErr(t, d.EventRecord(otherEvent, backend.LegacyStream), "EventRecord", cudaerr.InvalidResourceHandle)
		wantErr(t, d.EventQuery(otherEvent), "EventQuery", cudaerr.InvalidResourceHandle)
		wantErr(t, d.EventDestroy(otherEvent), "EventDestroy", cudaerr.InvalidResourceHandle)
		// Waiting on it is allowed, as cudaStreamWaitEvent allows.
		must(t, "StreamWaitEvent", d.StreamWaitEvent(backend.LegacyStream, otherEvent))
	})
	t.Run("legacy stream", func(t *testing.T) {
		wantErr(t, d.StreamDestroy(backend.LegacyStream), "StreamDestroy", cudaerr.InvalidResourceHandle)
		must(t, "StreamQuery", d.StreamQuery(backend.LegacyStream))
	})
}

func testDestroyPending(t *testing.T, e *env) {
	d := e.open(0, quota)
	ev, err := d.EventCreate(backend.EventDefault)
	must(t, "EventCreate", err)
	for _, flags := range []uint32{backend.StreamDefault, backend.StreamNonBlocking} {
		t.Run(fmt.Sprintf("flags=%d", flags), func(t *testing.T) {
			s, err := d.StreamCreate(flags, 0)
			must(t, "StreamCreate", err)
			p := malloc(t, d, 4096)
			data := pattern(uint64(flags)+3, 4096)
			out := make([]byte, 4096)
			var ran atomic.Bool
			g := block(t, d, s)
			must(t, "MemcpyHtoDAsync", d.MemcpyHtoDAsync(p, data, s))
			must(t, "MemcpyDtoHAsync", d.MemcpyDtoHAsync(out, p, s))
			must(t, "LaunchHostFunc", d.LaunchHostFunc(s, func() { ran.Store(true) }))
			must(t, "EventRecord", d.EventRecord(ev, s))
			must(t, "StreamDestroy", d.StreamDestroy(s))
			wantErr(t, d.StreamQuery(s), "StreamQuery", cudaerr.InvalidResourceHandle)
			g.waitEntered(t)
			pending(t, "EventQuery", func() error { return d.EventQuery(ev) })
			g.open()
			must(t, "EventSynchronize", d.EventSynchronize(ctx(t), ev))
			must(t, "Synchronize", d.Synchronize(ctx(t)))
			if !ran.Load() {
				t.Fatal("the host function queued before StreamDestroy did not run")
			}
			wantBytes(t, "copy queued before StreamDestroy", out, data)
		})
	}
}

func testSynchronizeAll(t *testing.T, e *env) {
	d := e.open(0, quota)
	held, err := d.StreamCreate(backend.StreamNonBlocking, 0)
	must(t, "StreamCreate", err)
	free, err := d.StreamCreate(backend.StreamNonBlocking, 0)
	must(t, "StreamCreate", err)
	p := malloc(t, d, 4096)
	q := malloc(t, d, 4096)
	dataP, dataQ := pattern(1, 4096), pattern(2, 4096)
	outP, outQ := make([]byte, 4096), make([]byte, 4096)

	g := block(t, d, held)
	must(t, "MemcpyHtoDAsync", d.MemcpyHtoDAsync(p, dataP, held))
	must(t, "MemcpyDtoHAsync", d.MemcpyDtoHAsync(outP, p, held))
	must(t, "MemcpyHtoDAsync", d.MemcpyHtoDAsync(q, dataQ, free))
	must(t, "MemcpyDtoHAsync", d.MemcpyDtoHAsync(outQ, q, free))
	g.waitEntered(t)

	done := make(chan error, 1) // buffered: the goroutine never blocks on send
	c := ctx(t)
	go func() { done <- d.Synchronize(c) }()
	select {
	case err := <-done:
		t.Fatalf("Synchronize returned (%v) while a stream was held up", err)
	case <-time.After(settle):
	}
	g.open()
	select {
	case err := <-done:
		must(t, "Synchronize", err)
	case <-time.After(waitLimit):
		t.Fatal("Synchronize did not return after the streams drained")
	}
	wantBytes(t, "held stream", outP, dataP)
	wantBytes(t, "free stream", outQ, dataQ)
	must(t, "StreamQuery", d.StreamQuery(held))
	must(t, "StreamQuery", d.StreamQuery(free))
}

// testLegacyStream checks the legacy default stream's implicit
// synchronization with blocking streams, and its absence with non-blocking
// ones.
func testLegacyStream(t *testing.T, e *env) {
	d := e.open(0, quota)
	blocking, err := d.StreamCreate(backend.StreamDefault, 0)
	must(t, "StreamCreate", err)
	nonBlocking, err := d.StreamCreate(backend.StreamNonBlocking, 0)
	must(t, "StreamCreate", err)
	ev, err := d.EventCreate(backend.EventDisableTiming)
	must(t, "EventCreate", err)
	p := malloc(t, d, 4096)
	legacy := backend.LegacyStream

	tests := []struct {
		name      string
		held      backend.Stream // gated first
		after     backend.Stream // then a copy and a record here
		mustWait  bool
		checkData bool
	}{
		{"legacy waits for a blocking stream", blocking, legacy, true, true},
		{"a blocking stream waits for legacy", legacy, blocking, true, true},
		{"legacy ignores a non-blocking stream", nonBlocking, legacy, false, false},
		{"a non-blocking stream ignores legacy", legacy, nonBlocking, false, false},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := pattern(uint64(i), 4096)
			out := make([]byte, 4096)
			g := block(t, d, tt.held)
			g.waitEntered(t)
			must(t, "MemcpyHtoDAsync", d.MemcpyHtoDAsync(p, data, tt.after))
			must(t, "MemcpyDtoHAsync", d.MemcpyDtoHAsync(out, p, tt.after))
			must(t, "EventRecord", d.EventRecord(ev, tt.after))
			if tt.mustWait {
				pending(t, "EventQuery", func() error { return d.EventQuery(ev) })
				g.open()
			}
			must(t, "EventSynchronize", d.EventSynchronize(ctx(t), ev))
			wantBytes(t, "copy", out, data)
			if !tt.mustWait {
				// The held stream is still held: the work above ran past it.
				wantErr(t, d.StreamQuery(tt.held), "StreamQuery", cudaerr.NotReady)
				g.open()
			}
			must(t, "Synchronize", d.Synchronize(ctx(t)))
		})
	}
	t.Run("work enqueued before the blocking work is not waited for", func(t *testing.T) {
		// A legacy operation waits only for blocking work enqueued before it.
		must(t, "EventRecord", d.EventRecord(ev, legacy))
		g := block(t, d, blocking)
		g.waitEntered(t)
		must(t, "EventSynchronize", d.EventSynchronize(ctx(t), ev))
		g.open()
	})
}

func testPeerCopy(t *testing.T, e *env) {
	src := e.open(0, quota)
	var dst backend.Device
	if len(e.infos) > 1 && e.infos[1].TotalMemory >= quota {
		dst = e.openOn(1, 1, quota)
	} else {
		dst = e.open(1, quota) // a second context on the same device
	}
	const n = 1<<20 + 7
	p := malloc(t, src, n)
	q := malloc(t, dst, n)
	data := pattern(11, n)
	upload(t, src, p, data)
	upload(t, dst, q, make([]byte, n))

	must(t, "MemcpyPeerAsync", src.MemcpyPeerAsync(q+1, dst, p, n-1, backend.LegacyStream))
	must(t, "StreamSynchronize", src.StreamSynchronize(ctx(t), backend.LegacyStream))
	want := make([]byte, n)
	copy(want[1:], data[:n-1])
	wantBytes(t, "peer copy", download(t, dst, q, n), want)

	s := backend.LegacyStream
	tests := []struct {
		name string
		call func() error
		want cudaerr.Error
	}{
		{"nil destination device", func() error { return src.MemcpyPeerAsync(q, nil, p, 1, s) }, cudaerr.InvalidDevice},
		{"destination outside the destination device", func() error { return src.MemcpyPeerAsync(p, dst, p, 1, s) }, cudaerr.InvalidValue},
		{"source outside the source device", func() error { return src.MemcpyPeerAsync(q, dst, q, 1, s) }, cudaerr.InvalidValue},
		{"range past the destination's end", func() error { return src.MemcpyPeerAsync(q+8, dst, p, n, s) }, cudaerr.InvalidValue},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantErr(t, tt.call(), "MemcpyPeerAsync", tt.want)
		})
	}
	wantBytes(t, "destination after rejected copies", download(t, dst, q, n), want)

	t.Run("closed destination device", func(t *testing.T) {
		gone := e.open(2, quota)
		r := malloc(t, gone, 64)
		must(t, "Close", gone.Close())
		wantErr(t, src.MemcpyPeerAsync(r, gone, p, 1, s), "MemcpyPeerAsync", cudaerr.ContextIsDestroyed)
	})
}

func testCrossDeviceEvent(t *testing.T, e *env) {
	a := e.open(0, quota)
	b := e.open(1, quota)
	sa, err := a.StreamCreate(backend.StreamNonBlocking, 0)
	must(t, "StreamCreate", err)
	sb, err := b.StreamCreate(backend.StreamNonBlocking, 0)
	must(t, "StreamCreate", err)
	ev, err := a.EventCreate(backend.EventDisableTiming)
	must(t, "EventCreate", err)
	const n = 64 << 10
	p := malloc(t, a, n)
	q := malloc(t, b, n)
	data := pattern(21, n)
	out := make([]byte, n)

	g := block(t, a, sa)
	must(t, "MemcpyHtoDAsync", a.MemcpyHtoDAsync(p, data, sa))
	must(t, "MemcpyPeerAsync", a.MemcpyPeerAsync(q, b, p, n, sa))
	must(t, "EventRecord", a.EventRecord(ev, sa))
	must(t, "StreamWaitEvent", b.StreamWaitEvent(sb, ev))
	must(t, "MemcpyDtoHAsync", b.MemcpyDtoHAsync(out, q, sb))
	g.waitEntered(t)
	pending(t, "StreamQuery(waiting device)", func() error { return b.StreamQuery(sb) })
	g.open()
	must(t, "StreamSynchronize", b.StreamSynchronize(ctx(t), sb))
	wantBytes(t, "read on the peer after the event", out, data)
}

func testWaitCancelled(t *testing.T, e *env) {
	d := e.open(0, quota)
	s, err := d.StreamCreate(backend.StreamNonBlocking, 0)
	must(t, "StreamCreate", err)
	ev, err := d.EventCreate(backend.EventDefault)
	must(t, "EventCreate", err)
	g := block(t, d, s)
	must(t, "EventRecord", d.EventRecord(ev, s))
	g.waitEntered(t)
	waits := []struct {
		name string
		wait func(context.Context) error
	}{
		{"StreamSynchronize", func(c context.Context) error { return d.StreamSynchronize(c, s) }},
		{"EventSynchronize", func(c context.Context) error { return d.EventSynchronize(c, ev) }},
		{"Synchronize", func(c context.Context) error { return d.Synchronize(c) }},
	}
	for _, w := range waits {
		t.Run(w.name, func(t *testing.T) {
			c, cancel := context.WithTimeout(context.Background(), settle)
			defer cancel()
			err := w.wait(c)
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("%s with an expired context = %v, want context.DeadlineExceeded", w.name, err)
			}
			cause := errors.New("session over")
			c2, cancel2 := context.WithCancelCause(context.Background())
			cancel2(cause)
			if err := w.wait(c2); !errors.Is(err, cause) {
				t.Fatalf("%s with a cancelled context = %v, want its cause", w.name, err)
			}
		})
	}
	// The work was not disturbed.
	g.open()
	must(t, "Synchronize", d.Synchronize(ctx(t)))
	must(t, "EventQuery", d.EventQuery(ev))
}

func testCloseDevice(t *testing.T, e *env) {
	d := e.open(0, quota)
	s, err := d.StreamCreate(backend.StreamNonBlocking, 0)
	must(t, "StreamCreate", err)
	ev, err := d.EventCreate(backend.EventDefault)
	must(t, "EventCreate", err)
	p := malloc(t, d, 1<<20)
	var ran atomic.Bool
	must(t, "LaunchHostFunc", d.LaunchHostFunc(s, func() {
		time.Sleep(settle)
		ran.Store(true)
	}))
	must(t, "Close", d.Close())
	if !ran.Load() {
		t.Fatal("Close returned before the queued host function ran")
	}
	if d.Owns(p, 1) {
		t.Error("Owns reports an allocation of a closed device")
	}
	buf := make([]byte, 4)
	calls := []struct {
		op   string
		call func() error
	}{
		{"Malloc", func() error { _, err := d.Malloc(1); return err }},
		{"Free", func() error { return d.Free(p) }},
		{"MemGetInfo", func() error { _, _, err := d.MemGetInfo(); return err }},
		{"MemsetD8Async", func() error { return d.MemsetD8Async(p, 0, 1, backend.LegacyStream) }},
		{"MemcpyHtoDAsync", func() error { return d.MemcpyHtoDAsync(p, buf, backend.LegacyStream) }},
		{"MemcpyDtoHAsync", func() error { return d.MemcpyDtoHAsync(buf, p, s) }},
		{"LaunchHostFunc", func() error { return d.LaunchHostFunc(backend.LegacyStream, func() {}) }},
		{"StreamCreate", func() error { _, err := d.StreamCreate(0, 0); return err }},
		{"StreamDestroy", func() error { return d.StreamDestroy(s) }},
		{"StreamSynchronize", func() error { return d.StreamSynchronize(ctx(t), backend.LegacyStream) }},
		{"StreamQuery", func() error { return d.StreamQuery(s) }},
		{"EventCreate", func() error { _, err := d.EventCreate(0); return err }},
		{"EventRecord", func() error { return d.EventRecord(ev, backend.LegacyStream) }},
		{"EventQuery", func() error { return d.EventQuery(ev) }},
		{"EventSynchronize", func() error { return d.EventSynchronize(ctx(t), ev) }},
		{"EventDestroy", func() error { return d.EventDestroy(ev) }},
		{"Synchronize", func() error { return d.Synchronize(ctx(t)) }},
		{"Close", func() error { return d.Close() }},
	}
	for _, c := range calls {
		wantErr(t, c.call(), c.op, cudaerr.ContextIsDestroyed)
	}
	// The window and the memory are free again.
	again := e.open(0, quota)
	free, _, err := again.MemGetInfo()
	must(t, "MemGetInfo", err)
	if free != quota {
		t.Fatalf("MemGetInfo free = %d after reopening, want %d", free, quota)
	}
}

func testCloseBackend(t *testing.T, e *env) {
	a := e.open(0, quota)
	b := e.open(1, quota)
	malloc(t, a, 4096)
	must(t, "Backend.Close", e.b.Close())
	for _, d := range []backend.Device{a, b} {
		_, err := d.Malloc(1)
		wantErr(t, err, "Malloc", cudaerr.ContextIsDestroyed)
	}
	_, err := e.b.Open(spec(0, 3, quota))
	wantErr(t, err, "Open", cudaerr.CudartUnloading)
	_, err = e.b.Devices()
	wantErr(t, err, "Devices", cudaerr.CudartUnloading)
}

func testConcurrent(t *testing.T, e *env) {
	d := e.open(0, quota)
	peer := e.open(1, quota)
	const workers = 8
	const rounds = 25
	var wg sync.WaitGroup
	errs := make(chan error, workers) // one per worker at most
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := concurrentWorker(d, peer, w, rounds); err != nil {
				errs <- fmt.Errorf("worker %d: %w", w, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	must(t, "Synchronize", d.Synchronize(ctx(t)))
	free, total, err := d.MemGetInfo()
	must(t, "MemGetInfo", err)
	if free != total {
		t.Errorf("MemGetInfo = (%d, %d) after every worker freed its memory", free, total)
	}
}

// concurrentWorker runs rounds of allocate, copy, check and free on a
// stream of its own (the legacy stream for worker 0), with an event and a
// peer copy in each round.
func concurrentWorker(d, peer backend.Device, w, rounds int) error {
	c, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	s := backend.LegacyStream
	if w > 0 {
		flags := backend.StreamNonBlocking
		if w%2 == 0 {
			flags = backend.StreamDefault
		}
		var err error
		if s, err = d.StreamCreate(flags, -w%3); err != nil {
			return err
		}
		defer d.StreamDestroy(s)
	}
	ev, err := d.EventCreate(backend.EventDefault)
	if err != nil {
		return err
	}
	defer d.EventDestroy(ev)
	for r := range rounds {
		n := 1 + (w*7919+r*104729)%(96<<10)
		data := pattern(uint64(w*rounds+r), n)
		p, err := d.Malloc(uint64(n))
		if err != nil {
			return err
		}
		q, err := d.Malloc(uint64(n))
		if err != nil {
			return err
		}
		pp, err := peer.Malloc(uint64(n))
		if err != nil {
			return err
		}
		out := make([]byte, n)
		outPeer := make([]byte, n)
		var seen atomic.Bool
		steps := []error{
			d.MemcpyHtoDAsync(p, data, s),
			d.MemcpyDtoDAsync(q, p, uint64(n), s),
			d.MemsetD8Async(p, 0, uint64(n), s),
			d.MemcpyPeerAsync(pp, peer, q, uint64(n), s),
			d.MemcpyDtoHAsync(out, q, s),
			d.LaunchHostFunc(s, func() { seen.Store(true) }),
			d.EventRecord(ev, s),
			d.EventSynchronize(c, ev),
			peer.MemcpyDtoHAsync(outPeer, pp, backend.LegacyStream),
			peer.StreamSynchronize(c, backend.LegacyStream),
		}
		if err := errors.Join(steps...); err != nil {
			return err
		}
		if i := firstDiff(out, data); i >= 0 {
			return fmt.Errorf("round %d: read back differs at byte %d of %d", r, i, n)
		}
		if i := firstDiff(outPeer, data); i >= 0 {
			return fmt.Errorf("round %d: peer copy differs at byte %d of %d", r, i, n)
		}
		if !seen.Load() {
			return fmt.Errorf("round %d: the host function had not run when the event completed", r)
		}
		if err := errors.Join(d.Free(p), d.Free(q), peer.Free(pp)); err != nil {
			return err
		}
	}
	return nil
}
