package core

import (
	"testing"

	"github.com/xgpu/xgpu/internal/cudaerr"
)

func poolAttr(t *testing.T, s *Shim, p uint64, attr int) uint64 {
	t.Helper()
	v, err := s.MemPoolAttribute(p, attr)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestMemPools checks the counters through allocation, reuse in stream
// order (same stream at once, another stream only after a sync), release
// at a sync above the threshold, and trimming.
func TestMemPools(t *testing.T) {
	s := newShim(t)
	def, err := s.DefaultMemPool(0)
	if err != nil {
		t.Fatal(err)
	}
	st1, _ := s.StreamCreate(0, 1, 0)
	st2, _ := s.StreamCreate(0, 1, 0)
	const mb = 1 << 20
	a, err := s.MallocAsync(0, 0, mb, st1)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.FreeAsync(a, 0, st1); err != nil {
		t.Fatal(err)
	}
	b, _ := s.MallocAsync(0, 0, mb, st2)
	if b == a {
		t.Fatal("a block freed on one stream went to another before any sync")
	}
	c, _ := s.MallocAsync(0, 0, mb, st1)
	if c != a {
		t.Fatalf("the block freed on stream 1 was not reused there: %#x, then %#x", a, c)
	}
	tests := []struct {
		attr int
		want uint64
	}{
		{PoolUsedMemCurrent, 2 * mb},
		{PoolReservedMemCurrent, 2 * mb},
		{PoolUsedMemHigh, 2 * mb},
		{PoolReleaseThreshold, 0},
		{PoolReuseAllowOpportunistic, 1},
	}
	for _, tt := range tests {
		if got := poolAttr(t, s, def, tt.attr); got != tt.want {
			t.Errorf("attribute %d = %d, want %d", tt.attr, got, tt.want)
		}
	}
	if err := s.SetMemPoolAttribute(def, PoolReleaseThreshold, mb); err != nil {
		t.Fatal(err)
	}
	_ = s.FreeAsync(b, 0, st2)
	_ = s.FreeAsync(c, 0, st1)
	if err := s.StreamSynchronize(0, st2); err != nil {
		t.Fatal(err)
	}
	if got := poolAttr(t, s, def, PoolReservedMemCurrent); got != mb {
		t.Errorf("reserved %d after a sync with a 1 MiB threshold", got)
	}
	// The kept block is known free now: any stream may take it.
	d, _ := s.MallocAsync(0, 0, mb, st2)
	if d != b && d != c {
		t.Errorf("the settled block was not reused on another stream")
	}
	_ = s.Free(d) // cudaFree of pool memory leaves the pool
	if got := poolAttr(t, s, def, PoolReservedMemCurrent); got != 0 {
		t.Errorf("reserved %d after cudaFree of the last block", got)
	}
	bad := []struct {
		name string
		attr int
		v    uint64
	}{
		{"current used", PoolUsedMemCurrent, 0},
		{"high mark to nonzero", PoolUsedMemHigh, 5},
		{"flag 2", PoolReuseFollowEventDependencies, 2},
		{"unknown", 99, 0},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			if err := s.SetMemPoolAttribute(def, tt.attr, tt.v); cudaerr.Code(err) != cudaerr.InvalidValue {
				t.Errorf("set: %v", err)
			}
		})
	}
	if err := s.SetMemPoolAttribute(def, PoolUsedMemHigh, 0); err != nil || poolAttr(t, s, def, PoolUsedMemHigh) != 0 {
		t.Errorf("reset of the high mark: %v", err)
	}
}

func TestMemPoolCreateAccessDestroy(t *testing.T) {
	s := newShim(t)
	p, err := s.MemPoolCreate(1, 4096)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := s.StreamCreate(1, 1, 0)
	if _, err := s.MallocAsync(1, p, 8192, st); cudaerr.Code(err) != cudaerr.MemoryAllocation {
		t.Errorf("allocation over the pool's maximum: %v", err)
	}
	x, err := s.MallocAsync(1, p, 4096, st)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetMemPool(0, p); cudaerr.Code(err) != cudaerr.InvalidValue {
		t.Errorf("a pool of device 1 made current on device 0: %v", err)
	}
	if err := s.SetMemPool(1, p); err != nil {
		t.Fatal(err)
	}
	access := []struct {
		name  string
		descs []AccessDesc
		want  cudaerr.Error
	}{
		{"peer read-write", []AccessDesc{{0, AccessReadWrite}}, 0},
		{"own device lowered", []AccessDesc{{1, AccessNone}}, cudaerr.InvalidValue},
		{"no such device", []AccessDesc{{5, AccessRead}}, cudaerr.InvalidDevice},
		{"bad flags", []AccessDesc{{0, 2}}, cudaerr.InvalidValue},
	}
	for _, tt := range access {
		t.Run(tt.name, func(t *testing.T) {
			if got := cudaerr.Code(s.MemPoolSetAccess(p, tt.descs)); got != tt.want {
				t.Errorf("set access: %v, want %v", got, tt.want)
			}
		})
	}
	if f, _ := s.MemPoolAccess(p, 0); f != AccessReadWrite {
		t.Errorf("device 0 access %d", f)
	}
	if err := s.MemPoolDestroy(p); err != nil {
		t.Fatal(err)
	}
	if cur, _ := s.MemPool(1); cur == p {
		t.Error("a destroyed pool is still current")
	}
	if err := s.FreeAsync(x, 1, st); err != nil {
		t.Errorf("free of a destroyed pool's block: %v", err)
	}
	if _, err := s.MemPoolAttribute(p, PoolUsedMemCurrent); cudaerr.Code(err) != cudaerr.InvalidValue {
		t.Errorf("attribute of a destroyed pool: %v", err)
	}
	def, _ := s.DefaultMemPool(1)
	if err := s.MemPoolDestroy(def); cudaerr.Code(err) != cudaerr.InvalidValue {
		t.Errorf("destroying the default pool: %v", err)
	}
}
