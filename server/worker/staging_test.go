package worker

import (
	"context"
	"testing"

	"github.com/xgpu/xgpu/server/backend"
)

// TestStagingPinned: with a mapper, class buffers are mapped host memory
// reused through the pool's own lists, within the budget; past it, and for
// sizes above the largest class, Go memory; a dropped buffer goes back to
// the mapper.
func TestStagingPinned(t *testing.T) {
	b := newHost(t, 1)
	dev, err := b.Open(devCfg(0, 0).Spec())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dev.Close() })
	hm := dev.(backend.HostMapper)
	ctx := context.Background()
	p := newStagingPool(3 << 20)
	p.setPinned(hm)

	a, err := p.get(ctx, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if a.pinned.Ptr == 0 || len(a.b) != 1<<20 {
		t.Fatalf("a 1 MiB buffer: pinned %#x, %d bytes; want mapped memory", uint64(a.pinned.Ptr), len(a.b))
	}
	p.put(a)
	again, err := p.get(ctx, 1<<20-5)
	if err != nil {
		t.Fatal(err)
	}
	if again != a {
		t.Error("the pinned buffer was not reused")
	}
	// 1 MiB held; a 2 MiB class buffer fits the 3 MiB of pinned memory,
	// a further 1 MiB one does not: Go memory.
	two, err := p.get(ctx, 2<<20)
	if err != nil {
		t.Fatal(err)
	}
	if two.pinned.Ptr == 0 {
		t.Error("the 2 MiB buffer is not pinned")
	}
	p.put(two)
	p.put(again)
	if got := p.pinnedBytes(); got != 3<<20 {
		t.Errorf("pinned bytes %d, want %d", got, 3<<20)
	}
	x, _ := p.get(ctx, 1<<20)
	y, _ := p.get(ctx, 4<<10)
	if x.pinned.Ptr == 0 || y.pinned.Ptr != 0 {
		t.Errorf("over the budget: pinned %#x and %#x, want the first only", uint64(x.pinned.Ptr), uint64(y.pinned.Ptr))
	}
	// A dropped pinned buffer is freed: the pool may pin another.
	xp := x.pinned
	p.drop(x)
	p.put(y)
	if got := p.pinnedBytes(); got != 2<<20 {
		t.Errorf("pinned bytes after the drop %d, want %d", got, 2<<20)
	}
	if err := hm.HostFree(xp); err == nil {
		t.Error("the dropped buffer is still mapped")
	}
	big, err := p.get(ctx, 65<<20)
	if err != nil {
		t.Fatal(err)
	}
	if big.pinned.Ptr != 0 {
		t.Error("a buffer above the largest class is pinned")
	}
	p.put(big)
}
