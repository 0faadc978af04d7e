package cuda

import (
	"errors"
	"math/rand/v2"
	"testing"
)

// fakePhys records which ranges are backed and can be told to fail.
type fakePhys struct {
	gran   uint64
	mapped map[uint64]uint64 // base -> size
	next   MemHandle
	fail   error
	backs  int
}

func newFakePhys(gran uint64) *fakePhys {
	return &fakePhys{gran: gran, mapped: map[uint64]uint64{}}
}

func (f *fakePhys) back(p, size uint64) (MemHandle, error) {
	if f.fail != nil {
		return 0, f.fail
	}
	if p%f.gran != 0 || size%f.gran != 0 || size == 0 {
		panic("fakePhys: unaligned back")
	}
	for b, s := range f.mapped {
		if p < b+s && b < p+size {
			panic("fakePhys: overlapping back")
		}
	}
	f.mapped[p] = size
	f.next++
	f.backs++
	return f.next, nil
}

func (f *fakePhys) unback(p, size uint64, h MemHandle) error {
	if f.mapped[p] != size {
		panic("fakePhys: unback of an unmapped range")
	}
	delete(f.mapped, p)
	return nil
}

// covered reports whether [p, p+n) lies in backed memory.
func (f *fakePhys) covered(p, n uint64) bool {
	for b, s := range f.mapped {
		if p >= b && p+n <= b+s {
			return true
		}
	}
	return false
}

const (
	testGran = 2 << 20
	testBase = 0x1000_0000_0000
)

func TestArenaPlacement(t *testing.T) {
	tests := []struct {
		name      string
		size      uint64
		wantLarge bool
		reserved  uint64
	}{
		{"one byte", 1, false, 256},
		{"aligned small", 4096, false, 4096},
		{"unaligned small", 1000, false, 1024},
		{"just below large", testGran/2 - 256, false, testGran/2 - 256},
		{"half granule", testGran / 2, true, testGran},
		{"granule", testGran, true, testGran},
		{"granule and a byte", testGran + 1, true, 2 * testGran},
		{"big", 100 << 20, true, 100 << 20},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakePhys(testGran)
			a := newArena(testBase, 1<<30, testGran, f)
			pl, err := a.alloc(tc.size)
			if err != nil {
				t.Fatalf("alloc(%d): %v", tc.size, err)
			}
			if (pl.slab == nil) != tc.wantLarge {
				t.Errorf("large = %v, want %v", pl.slab == nil, tc.wantLarge)
			}
			if pl.reserved != tc.reserved {
				t.Errorf("reserved = %d, want %d", pl.reserved, tc.reserved)
			}
			if pl.base%allocAlignment != 0 || pl.base < testBase || pl.base+pl.reserved > testBase+1<<30 {
				t.Errorf("base %#x misaligned or outside the window", pl.base)
			}
			if !f.covered(pl.base, tc.size) {
				t.Errorf("[%#x, +%d) is not backed", pl.base, tc.size)
			}
			if err := a.release(pl); err != nil {
				t.Fatalf("release: %v", err)
			}
			if err := a.releaseAll(); err != nil {
				t.Fatalf("releaseAll: %v", err)
			}
			if len(f.mapped) != 0 {
				t.Errorf("%d ranges still mapped after releasing everything", len(f.mapped))
			}
			if len(a.free) != 1 || a.free[0] != (span{testBase, testBase + 1<<30}) {
				t.Errorf("window free list = %v, want the whole window", a.free)
			}
		})
	}
}

func TestArenaSmallAllocationsShareSlabs(t *testing.T) {
	f := newFakePhys(testGran)
	a := newArena(testBase, 64<<20, testGran, f)
	var pls []placement
	for range 1000 { // 1000 * 4 KiB: two slabs, not 1000 granules
		pl, err := a.alloc(4096)
		if err != nil {
			t.Fatalf("alloc: %v", err)
		}
		pls = append(pls, pl)
	}
	if f.backs != 2 {
		t.Errorf("backed %d granules for 4000 KiB of small allocations, want 2", f.backs)
	}
	for _, pl := range pls {
		if err := a.release(pl); err != nil {
			t.Fatal(err)
		}
	}
	if len(f.mapped) != 1 || a.spare == nil {
		t.Errorf("after freeing all: %d granules mapped, spare %v; want the spare only", len(f.mapped), a.spare != nil)
	}
	// The spare serves the next small allocation without a new mapping.
	if _, err := a.alloc(256); err != nil {
		t.Fatal(err)
	}
	if f.backs != 2 {
		t.Errorf("the spare slab was not reused: %d backs", f.backs)
	}
}

func TestArenaWindowFull(t *testing.T) {
	f := newFakePhys(testGran)
	a := newArena(testBase, 4*testGran, testGran, f)
	if _, err := a.alloc(3 * testGran); err != nil {
		t.Fatal(err)
	}
	if _, err := a.alloc(2 * testGran); !errors.Is(err, errWindowFull) {
		t.Fatalf("alloc past the window: got %v, want errWindowFull", err)
	}
	if _, err := a.alloc(1 << 63); !errors.Is(err, errWindowFull) {
		t.Fatalf("alloc of 2^63: got %v, want errWindowFull", err)
	}
	if _, err := a.alloc(^uint64(0)); !errors.Is(err, errWindowFull) {
		t.Fatalf("alloc of 2^64-1: got %v, want errWindowFull", err)
	}
}

func TestArenaBackFailureChangesNothing(t *testing.T) {
	f := newFakePhys(testGran)
	a := newArena(testBase, 1<<30, testGran, f)
	boom := errors.New("out of device memory")
	f.fail = boom
	for _, size := range []uint64{256, 8 << 20} {
		if _, err := a.alloc(size); !errors.Is(err, boom) {
			t.Fatalf("alloc(%d): got %v, want %v", size, err, boom)
		}
	}
	if len(a.free) != 1 || a.free[0] != (span{testBase, testBase + 1<<30}) || len(a.slabs) != 0 {
		t.Fatalf("a failed alloc changed the arena: free %v, %d slabs", a.free, len(a.slabs))
	}
}

// TestArenaRandom allocates and frees at random and checks that live
// allocations never overlap, stay in the window and are backed, and that
// everything is returned at the end.
func TestArenaRandom(t *testing.T) {
	f := newFakePhys(testGran)
	const size = 256 << 20
	a := newArena(testBase, size, testGran, f)
	r := rand.New(rand.NewPCG(1, 2))
	live := map[uint64]placement{}
	sizes := map[uint64]uint64{}
	for i := range 5000 {
		if len(live) > 0 && r.IntN(3) == 0 {
			for p, pl := range live {
				if err := a.release(pl); err != nil {
					t.Fatal(err)
				}
				delete(live, p)
				break
			}
			continue
		}
		n := uint64(1 + r.IntN(64<<10))
		if r.IntN(20) == 0 {
			n = uint64(1 + r.IntN(8<<20))
		}
		pl, err := a.alloc(n)
		if errors.Is(err, errWindowFull) {
			continue
		}
		if err != nil {
			t.Fatalf("step %d: alloc(%d): %v", i, n, err)
		}
		if pl.base%allocAlignment != 0 || pl.base < testBase || pl.base+n > testBase+size {
			t.Fatalf("step %d: [%#x, +%d) misaligned or outside the window", i, pl.base, n)
		}
		if !f.covered(pl.base, n) {
			t.Fatalf("step %d: [%#x, +%d) not backed", i, pl.base, n)
		}
		for p, o := range live {
			if pl.base < p+o.reserved && p < pl.base+pl.reserved {
				t.Fatalf("step %d: [%#x, +%d) overlaps [%#x, +%d)", i, pl.base, pl.reserved, p, o.reserved)
			}
		}
		live[pl.base] = pl
		sizes[pl.base] = n
	}
	for _, pl := range live {
		if err := a.release(pl); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.releaseAll(); err != nil {
		t.Fatal(err)
	}
	if len(f.mapped) != 0 || len(a.free) != 1 || a.free[0] != (span{testBase, testBase + size}) {
		t.Fatalf("leak: %d ranges mapped, free list %v", len(f.mapped), a.free)
	}
}
