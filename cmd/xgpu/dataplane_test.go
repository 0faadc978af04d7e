package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"syscall"
	"testing"
	"time"

	"github.com/xgpu/xgpu/aggregator"
	"github.com/xgpu/xgpu/internal/cudaerr"
	"github.com/xgpu/xgpu/runtime"
)

// startCluster starts an aggregator and hosts x gpus host-backend servers
// as real processes and returns the aggregator address and the servers.
func startCluster(t *testing.T, hosts, gpus int) (string, []*proc) {
	t.Helper()
	aggAddr := freePort(t)
	startProc(t, "aggregator", "aggregator", "--listen", aggAddr,
		"--heartbeat-interval", "250ms", "--heartbeat-timeout", "1500ms")
	servers := make([]*proc, hosts)
	for h := range hosts {
		name := fmt.Sprintf("host%02d", h)
		servers[h], _ = startProc(t, name, "server", "--backend", "host", "--host", name, "--id", name,
			"--listen", "127.0.0.1:0", "--aggregator", aggAddr, "--devices", fmt.Sprint(gpus),
			"--memory", "1GiB", "--nvlinks", "18")
	}
	return aggAddr, servers
}

func pattern(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// TestDataPlaneOnDemoCluster runs the data plane on the loopback demo
// cluster, 16 server processes with 4 host-backend devices each: every
// device holds data written to it, peer copies between any two devices are
// byte-exact with no payload byte through the client, async errors surface
// at the next sync, a session cannot touch memory outside its allocations,
// and a killed server gives the client an error within the documented
// bound.
func TestDataPlaneOnDemoCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 17 processes and 16 workers")
	}
	const hosts, gpus = 16, 4
	aggAddr, servers := startCluster(t, hosts, gpus)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	ac, err := aggregator.Dial(ctx, aggAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer ac.Close()
	if err := waitPool(ctx, ac, hosts*gpus, 60*time.Second); err != nil {
		t.Fatal(err)
	}
	lease, err := ac.Allocate(ctx, aggregator.AllocateOptions{Count: hosts * gpus, TTL: 10 * time.Minute, Owner: t.Name()})
	if err != nil {
		t.Fatal(err)
	}
	c, err := runtime.OpenLease(ctx, aggAddr, lease.ID, runtime.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	n := c.DeviceCount()
	if n != hosts*gpus {
		t.Fatalf("DeviceCount = %d, want %d", n, hosts*gpus)
	}

	// Every device: write a distinct pattern, read it back.
	const size = 1<<20 + 13
	ptrs := make([]uint64, n)
	for d := range n {
		p, err := c.Malloc(d, size)
		if err != nil {
			t.Fatalf("Malloc on device %d: %v", d, err)
		}
		ptrs[d] = p
		if err := c.MemcpyHtoD(p, pattern(uint64(d), size)); err != nil {
			t.Fatalf("H2D on device %d: %v", d, err)
		}
	}
	got := make([]byte, size)
	for d := range n {
		if err := c.MemcpyDtoH(got, ptrs[d]); err != nil {
			t.Fatalf("D2H on device %d: %v", d, err)
		}
		if !bytes.Equal(got, pattern(uint64(d), size)) {
			t.Fatalf("device %d read back different data", d)
		}
	}

	// Peer copies between every ordered pair of devices: the first 4099
	// bytes of the source's pattern land at an offset in the destination.
	const chunk, off = 4099, 8192
	before := c.Stats()
	for src := range n {
		for dst := range n {
			if src == dst {
				continue
			}
			if err := c.MemcpyPeerAsync(ptrs[dst]+off, dst, ptrs[src], src, chunk, runtime.LegacyStream(src)); err != nil {
				t.Fatalf("MemcpyPeerAsync %d -> %d: %v", src, dst, err)
			}
			if err := c.StreamSynchronize(runtime.LegacyStream(src)); err != nil {
				t.Fatalf("peer copy %d -> %d: %v", src, dst, err)
			}
			if err := c.MemcpyDtoH(got[:chunk], ptrs[dst]+off); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got[:chunk], pattern(uint64(src), size)[:chunk]) {
				t.Fatalf("peer copy %d -> %d is not byte-exact", src, dst)
			}
		}
	}
	// A large cross-server copy moves no payload byte through the client.
	want := make([]byte, size)
	if err := c.MemcpyDtoH(want, ptrs[0]); err != nil {
		t.Fatal(err)
	}
	mid := c.Stats()
	if err := c.MemcpyPeer(ptrs[n-1], n-1, ptrs[0], 0, size); err != nil {
		t.Fatal(err)
	}
	after := c.Stats()
	if s := after.PayloadSent() - mid.PayloadSent(); s != 0 {
		t.Fatalf("a cross-server peer copy sent %d payload bytes through the client", s)
	}
	if r := after.PayloadReceived() - mid.PayloadReceived(); r != 0 {
		t.Fatalf("a cross-server peer copy received %d payload bytes through the client", r)
	}
	if err := c.MemcpyDtoH(got, ptrs[n-1]); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("large cross-server copy not byte-exact (err %v)", err)
	}
	// The read-backs above are the only payload the client moved.
	t.Logf("payload through the client for %d peer copies and their checks: sent %d, received %d",
		n*(n-1), mid.PayloadSent()-before.PayloadSent(), mid.PayloadReceived()-before.PayloadReceived())
	if mid.PayloadSent() != before.PayloadSent() {
		t.Fatalf("peer copies sent %d payload bytes through the client", mid.PayloadSent()-before.PayloadSent())
	}

	// An async error surfaces at the next synchronising call: a memset on
	// a stream destroyed just before is refused by the worker, not the
	// client, and reported by the following sync.
	st, err := c.StreamCreate(5, runtime.StreamNonBlocking, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.StreamDestroy(st); err != nil {
		t.Fatal(err)
	}
	if err := c.MemsetAsync(ptrs[5], 1, 4096, st); err != nil {
		t.Fatalf("async memset returned %v at the call, want the error at the next sync", err)
	}
	if err := c.DeviceSynchronize(5); cudaerr.Code(err) != cudaerr.InvalidResourceHandle {
		t.Fatalf("next sync after a failed async memset: %v, want cudaErrorInvalidResourceHandle", err)
	}
	if err := c.DeviceSynchronize(5); err != nil {
		t.Fatalf("the error was not cleared after it was reported: %v", err)
	}
	// Out of bounds of an allocation: refused, nothing touched.
	if err := c.MemcpyHtoD(ptrs[7]+size-10, make([]byte, 64)); cudaerr.Code(err) != cudaerr.InvalidValue {
		t.Fatalf("H2D past the end of an allocation: %v, want cudaErrorInvalidValue", err)
	}
	want7 := make([]byte, size)
	if err := c.MemcpyDtoH(want7, ptrs[7]); err != nil {
		t.Fatal(err)
	}
	if err := c.MemcpyHtoD(ptrs[7]+size-10, make([]byte, 64)); cudaerr.Code(err) != cudaerr.InvalidValue {
		t.Fatalf("H2D past the end of an allocation (again): %v", err)
	}
	if err := c.MemcpyDtoH(got, ptrs[7]); err != nil || !bytes.Equal(got, want7) {
		t.Fatalf("a refused copy changed device memory (err %v)", err)
	}

	// Kill host03 (its workers die with it): calls on its devices fail
	// within the transport's idle timeout, the rest keep working.
	victimDev := -1
	for d, dev := range c.Map().Devices {
		if dev.Host == "host03" {
			victimDev = d
			break
		}
	}
	servers[3].kill(syscall.SIGKILL)
	start := time.Now()
	err = nil
	for err == nil && time.Since(start) < 30*time.Second {
		err = c.MemcpyDtoH(got[:16], ptrs[victimDev])
	}
	elapsed := time.Since(start)
	if err == nil {
		t.Fatal("calls on a killed server's device still succeed after 30 s")
	}
	const bound = 5*time.Second + 2*time.Second // peers' default idle timeout, plus slack
	if elapsed > bound {
		t.Fatalf("error after %v, want within %v", elapsed, bound)
	}
	var lost *runtime.LostError
	if !errors.As(err, &lost) && cudaerr.Code(err) != cudaerr.DevicesUnavailable {
		t.Logf("error on the dead server's device: %v", err)
	}
	t.Logf("killed server noticed after %v: %v", elapsed.Round(time.Millisecond), err)
	if err := c.MemcpyDtoH(got, ptrs[0]); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("a live server's device failed after another server died: %v", err)
	}
}
