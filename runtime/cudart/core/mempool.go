package core

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/xgpu/xgpu/internal/cudaerr"
	"github.com/xgpu/xgpu/runtime"
)

// Stream-ordered memory pools (cudaMallocAsync, cudaMemPool*). A pool is
// kept in the client: it reserves device memory from the server (one
// allocation per block) and hands blocks out; cudaFreeAsync gives a block
// back to its pool, not to the server. A freed block is handed out again
// to a later allocation on the stream it was freed on (stream order makes
// that safe), or on any stream once a synchronization showed the free
// done. Memory beyond the pool's release threshold goes back to the
// server at synchronizing calls and cudaMemPoolTrimTo; the server's free
// waits for the work already queued, so no work still using a block loses
// it.

// Memory pool attributes: the values of cudaMemPoolAttr.
const (
	PoolReuseFollowEventDependencies   = 1 // int, 0 or 1
	PoolReuseAllowOpportunistic        = 2 // int, 0 or 1
	PoolReuseAllowInternalDependencies = 3 // int, 0 or 1
	PoolReleaseThreshold               = 4 // uint64, bytes
	PoolReservedMemCurrent             = 5 // uint64, read only
	PoolReservedMemHigh                = 6 // uint64, may be reset (set to 0)
	PoolUsedMemCurrent                 = 7 // uint64, read only
	PoolUsedMemHigh                    = 8 // uint64, may be reset (set to 0)
)

// Access flags: the values of cudaMemAccessFlags.
const (
	AccessNone      = 0
	AccessRead      = 1
	AccessReadWrite = 3
)

// poolState holds the process's memory pools.
type poolState struct {
	// live counts blocks handed out by pools, and held the number of free
	// blocks kept: the only fields plain frees and synchronizations read.
	live atomic.Int64
	held atomic.Int64

	mu       sync.Mutex // guards the fields below and every memPool and poolBlock
	pools    map[uint64]*memPool
	next     uint64
	defaults map[int]*memPool
	current  map[int]*memPool
	inUse    map[uint64]*poolBlock // by address
}

// memPool is one pool of one device.
type memPool struct {
	handle    uint64
	dev       int
	isDefault bool
	destroyed bool   // cudaMemPoolDestroy'd: blocks go back to the server as they are freed
	maxSize   uint64 // 0: no limit

	threshold                            uint64
	reuseFollow, reuseOpport, reuseInter bool

	reserved, reservedHigh uint64
	used, usedHigh         uint64
	free                   []*poolBlock // in the order they were freed
	access                 map[int]int  // device -> AccessRead or AccessReadWrite (owner: always read-write)
}

// poolBlock is one reservation of a pool.
type poolBlock struct {
	pool    *memPool
	ptr     uint64
	size    uint64
	freedOn runtime.Stream // the stream of the cudaFreeAsync that gave it back
	settled bool           // a synchronization showed the free done: any stream may reuse it
}

func (p *poolState) initLocked() {
	if p.pools == nil {
		p.pools = make(map[uint64]*memPool)
		p.defaults = make(map[int]*memPool)
		p.current = make(map[int]*memPool)
		p.inUse = make(map[uint64]*poolBlock)
		p.next = firstHandle
	}
}

func (p *poolState) newPoolLocked(dev int, isDefault bool, maxSize uint64) *memPool {
	mp := &memPool{handle: p.next, dev: dev, isDefault: isDefault, maxSize: maxSize,
		reuseFollow: true, reuseOpport: true, reuseInter: true, access: map[int]int{}}
	p.next++
	p.pools[mp.handle] = mp
	return mp
}

// defaultLocked returns dev's default pool, creating it at first use.
func (p *poolState) defaultLocked(dev int) *memPool {
	p.initLocked()
	mp := p.defaults[dev]
	if mp == nil {
		mp = p.newPoolLocked(dev, true, 0)
		p.defaults[dev] = mp
	}
	return mp
}

func (p *poolState) poolLocked(h uint64) (*memPool, error) {
	p.initLocked()
	mp := p.pools[h]
	if mp == nil || mp.destroyed {
		return nil, fmt.Errorf("core: memory pool handle %#x: %w", h, cudaerr.InvalidValue)
	}
	return mp, nil
}

// DefaultMemPool returns dev's default pool (cudaDeviceGetDefaultMemPool).
func (s *Shim) DefaultMemPool(dev int) (uint64, error) {
	if _, err := s.device(dev); err != nil {
		return 0, err
	}
	s.pools.mu.Lock()
	defer s.pools.mu.Unlock()
	return s.pools.defaultLocked(dev).handle, nil
}

// MemPool returns dev's current pool, the one cudaMallocAsync uses
// (cudaDeviceGetMemPool).
func (s *Shim) MemPool(dev int) (uint64, error) {
	if _, err := s.device(dev); err != nil {
		return 0, err
	}
	s.pools.mu.Lock()
	defer s.pools.mu.Unlock()
	return s.pools.currentLocked(dev).handle, nil
}

func (p *poolState) currentLocked(dev int) *memPool {
	p.initLocked()
	if mp := p.current[dev]; mp != nil {
		return mp
	}
	return p.defaultLocked(dev)
}

// SetMemPool makes pool h, a pool of dev, dev's current pool
// (cudaDeviceSetMemPool).
func (s *Shim) SetMemPool(dev int, h uint64) error {
	if _, err := s.device(dev); err != nil {
		return err
	}
	s.pools.mu.Lock()
	defer s.pools.mu.Unlock()
	mp, err := s.pools.poolLocked(h)
	if err != nil {
		return err
	}
	if mp.dev != dev {
		return fmt.Errorf("core: memory pool %#x belongs to device %d, not %d: %w", h, mp.dev, dev, cudaerr.InvalidValue)
	}
	s.pools.current[dev] = mp
	return nil
}

// MemPoolCreate creates a pool of dev's memory (cudaMemPoolCreate);
// maxSize bounds what it reserves (0: no bound).
func (s *Shim) MemPoolCreate(dev int, maxSize uint64) (uint64, error) {
	if _, err := s.device(dev); err != nil {
		return 0, err
	}
	s.pools.mu.Lock()
	defer s.pools.mu.Unlock()
	s.pools.initLocked()
	return s.pools.newPoolLocked(dev, false, maxSize).handle, nil
}

// MemPoolDestroy destroys pool h (cudaMemPoolDestroy). Its free blocks go
// back to the server now; blocks still in use go back when they are
// freed. A default pool cannot be destroyed. A device whose current pool
// it was uses its default pool again.
func (s *Shim) MemPoolDestroy(h uint64) error {
	c, err := s.Client()
	if err != nil {
		return err
	}
	p := &s.pools
	p.mu.Lock()
	mp, err := p.poolLocked(h)
	if err == nil && mp.isDefault {
		err = fmt.Errorf("core: memory pool %#x is device %d's default pool: %w", h, mp.dev, cudaerr.InvalidValue)
	}
	var release []*poolBlock
	if err == nil {
		mp.destroyed = true
		delete(p.pools, h)
		if p.current[mp.dev] == mp {
			delete(p.current, mp.dev)
		}
		release = p.trimLocked(mp, 0)
	}
	p.mu.Unlock()
	if err != nil {
		return err
	}
	return s.releaseBlocks(c, release)
}

// trimLocked takes free blocks out of mp until it reserves at most keep
// bytes and returns them for releaseBlocks: blocks only their own stream
// may reuse go first, then larger before smaller.
func (p *poolState) trimLocked(mp *memPool, keep uint64) []*poolBlock {
	if mp.reserved <= keep || len(mp.free) == 0 {
		return nil
	}
	byLarge := slices.Clone(mp.free)
	slices.SortStableFunc(byLarge, func(a, b *poolBlock) int {
		switch {
		case a.settled != b.settled:
			if b.settled {
				return -1
			}
			return 1
		case a.size > b.size:
			return -1
		case a.size < b.size:
			return 1
		}
		return 0
	})
	var out []*poolBlock
	for _, b := range byLarge {
		if mp.reserved <= keep {
			break
		}
		mp.reserved -= b.size
		out = append(out, b)
	}
	mp.free = slices.DeleteFunc(mp.free, func(b *poolBlock) bool { return slices.Contains(out, b) })
	p.held.Add(-int64(len(out)))
	return out
}

// releaseBlocks gives blocks back to the server; its free waits for the
// work already queued.
func (s *Shim) releaseBlocks(c *runtime.Client, bs []*poolBlock) error {
	var errs []error
	for _, b := range bs {
		if err := c.Free(b.ptr); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// MallocAsync allocates size bytes from pool h (0: the current pool of
// dev) for use in stream order on stream (a handle; 0: dev's legacy
// stream), as cudaMallocAsync and cudaMallocFromPoolAsync do. Size 0
// gives address 0.
func (s *Shim) MallocAsync(dev int, h uint64, size uint64, stream uint64) (uint64, error) {
	c, err := s.device(dev)
	if err != nil {
		return 0, err
	}
	st, err := s.stream(dev, stream)
	if err != nil {
		return 0, err
	}
	if err := s.refuseCaptured("cudaMallocAsync", dev, stream); err != nil {
		return 0, err
	}
	p := &s.pools
	p.mu.Lock()
	var mp *memPool
	if h == 0 {
		mp = p.currentLocked(dev)
	} else if mp, err = p.poolLocked(h); err != nil {
		p.mu.Unlock()
		return 0, err
	}
	if size == 0 {
		p.mu.Unlock()
		return 0, nil
	}
	if b := p.reuseLocked(mp, size, st); b != nil {
		p.mu.Unlock()
		return b.ptr, nil
	}
	if mp.maxSize != 0 && (size > mp.maxSize || mp.reserved > mp.maxSize-size) {
		release := p.trimLocked(mp, mp.maxSize-min(size, mp.maxSize))
		over := size > mp.maxSize || mp.reserved > mp.maxSize-size
		p.mu.Unlock()
		if err := s.releaseBlocks(c, release); err != nil {
			return 0, err
		}
		if over {
			return 0, fmt.Errorf("core: memory pool %#x would exceed its %d bytes: %w", mp.handle, mp.maxSize, cudaerr.MemoryAllocation)
		}
	} else {
		p.mu.Unlock()
	}
	ptr, err := c.Malloc(mp.dev, size)
	if errors.Is(err, cudaerr.MemoryAllocation) {
		// The device's pools may hold free blocks: give them back and
		// try once more, as CUDA's pools do.
		p.mu.Lock()
		var release []*poolBlock
		for _, o := range p.pools {
			if o.dev == mp.dev {
				release = append(release, p.trimLocked(o, 0)...)
			}
		}
		p.mu.Unlock()
		if len(release) > 0 {
			if rerr := s.releaseBlocks(c, release); rerr != nil {
				return 0, rerr
			}
			ptr, err = c.Malloc(mp.dev, size)
		}
	}
	if err != nil {
		return 0, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	b := &poolBlock{pool: mp, ptr: ptr, size: size}
	mp.reserved += size
	mp.reservedHigh = max(mp.reservedHigh, mp.reserved)
	p.handOutLocked(b)
	return ptr, nil
}

// reuseLocked hands out a free block of mp that fits size (not more than
// twice as large) and that st may use now: one freed on st, or one whose
// free a synchronization showed done; the smallest such.
func (p *poolState) reuseLocked(mp *memPool, size uint64, st runtime.Stream) *poolBlock {
	best := -1
	for i, b := range mp.free {
		if b.size < size || b.size/2 > size || (!b.settled && b.freedOn != st) {
			continue
		}
		if best < 0 || b.size < mp.free[best].size {
			best = i
		}
	}
	if best < 0 {
		return nil
	}
	b := mp.free[best]
	mp.free = slices.Delete(mp.free, best, best+1)
	p.held.Add(-1)
	p.handOutLocked(b)
	return b
}

func (p *poolState) handOutLocked(b *poolBlock) {
	mp := b.pool
	mp.used += b.size
	mp.usedHigh = max(mp.usedHigh, mp.used)
	b.settled = false
	p.inUse[b.ptr] = b
	p.live.Add(1)
}

// takeLocked removes the in-use block at ptr from the pool's used memory.
func (p *poolState) takeLocked(ptr uint64) *poolBlock {
	b := p.inUse[ptr]
	if b == nil {
		return nil
	}
	delete(p.inUse, ptr)
	p.live.Add(-1)
	b.pool.used -= b.size
	return b
}

// FreeAsync gives the allocation at ptr back in stream order on stream (a
// handle; 0: dev's legacy stream), as cudaFreeAsync does. Memory of a pool
// goes back to its pool; other device memory is freed.
func (s *Shim) FreeAsync(ptr uint64, dev int, stream uint64) error {
	c, err := s.device(dev)
	if err != nil {
		return err
	}
	if ptr == 0 {
		return nil
	}
	st, err := s.stream(dev, stream)
	if err != nil {
		return err
	}
	if err := s.refuseCaptured("cudaFreeAsync", dev, stream); err != nil {
		return err
	}
	p := &s.pools
	if p.live.Load() != 0 {
		p.mu.Lock()
		b := p.takeLocked(ptr)
		if b != nil {
			mp := b.pool
			if mp.destroyed {
				mp.reserved -= b.size
				p.mu.Unlock()
				return c.Free(ptr)
			}
			b.freedOn = st
			mp.free = append(mp.free, b)
			p.held.Add(1)
			p.mu.Unlock()
			return nil
		}
		p.mu.Unlock()
	}
	return c.Free(ptr)
}

// freePoolBlock handles cudaFree of pool memory: the block leaves its pool
// and goes back to the server. It reports false for memory no pool holds.
func (s *Shim) freePoolBlock(c *runtime.Client, ptr uint64) (bool, error) {
	p := &s.pools
	p.mu.Lock()
	b := p.takeLocked(ptr)
	if b != nil {
		b.pool.reserved -= b.size
	}
	p.mu.Unlock()
	if b == nil {
		return false, nil
	}
	return true, c.Free(ptr)
}

// poolsSynchronized runs after a synchronization of st (all of st's
// device's streams if device): blocks freed there are known free, and the
// device's pools give back what they hold beyond their release
// thresholds.
func (s *Shim) poolsSynchronized(c *runtime.Client, st runtime.Stream, device bool) {
	p := &s.pools
	if p.held.Load() == 0 {
		return
	}
	p.mu.Lock()
	var release []*poolBlock
	for _, mp := range p.pools {
		if mp.dev != st.Device() || len(mp.free) == 0 {
			continue
		}
		for _, b := range mp.free {
			if device || b.freedOn == st {
				b.settled = true
			}
		}
		release = append(release, p.trimLocked(mp, mp.threshold)...)
	}
	p.mu.Unlock()
	if err := s.releaseBlocks(c, release); err != nil {
		s.Logger().Warn("memory pool: giving memory back to the server failed", "err", err)
	}
}

// MemPoolTrimTo gives free memory of pool h back to the server until the
// pool reserves at most keep bytes (cudaMemPoolTrimTo); memory in use
// stays.
func (s *Shim) MemPoolTrimTo(h, keep uint64) error {
	c, err := s.Client()
	if err != nil {
		return err
	}
	p := &s.pools
	p.mu.Lock()
	mp, err := p.poolLocked(h)
	var release []*poolBlock
	if err == nil {
		release = p.trimLocked(mp, keep)
	}
	p.mu.Unlock()
	if err != nil {
		return err
	}
	return s.releaseBlocks(c, release)
}

// MemPoolAttribute returns attribute attr of pool h; flags are 0 or 1.
func (s *Shim) MemPoolAttribute(h uint64, attr int) (uint64, error) {
	p := &s.pools
	p.mu.Lock()
	defer p.mu.Unlock()
	mp, err := p.poolLocked(h)
	if err != nil {
		return 0, err
	}
	b := func(v bool) uint64 {
		if v {
			return 1
		}
		return 0
	}
	switch attr {
	case PoolReuseFollowEventDependencies:
		return b(mp.reuseFollow), nil
	case PoolReuseAllowOpportunistic:
		return b(mp.reuseOpport), nil
	case PoolReuseAllowInternalDependencies:
		return b(mp.reuseInter), nil
	case PoolReleaseThreshold:
		return mp.threshold, nil
	case PoolReservedMemCurrent:
		return mp.reserved, nil
	case PoolReservedMemHigh:
		return mp.reservedHigh, nil
	case PoolUsedMemCurrent:
		return mp.used, nil
	case PoolUsedMemHigh:
		return mp.usedHigh, nil
	}
	return 0, fmt.Errorf("core: memory pool attribute %d: %w", attr, cudaerr.InvalidValue)
}

// SetMemPoolAttribute sets attribute attr of pool h to v: the reuse flags
// (0 or 1) and the release threshold are kept; the high-water marks may
// only be reset (v 0), to the current values; the current values cannot
// be set.
func (s *Shim) SetMemPoolAttribute(h uint64, attr int, v uint64) error {
	p := &s.pools
	p.mu.Lock()
	defer p.mu.Unlock()
	mp, err := p.poolLocked(h)
	if err != nil {
		return err
	}
	bad := func() error {
		return fmt.Errorf("core: memory pool attribute %d cannot be set to %d: %w", attr, v, cudaerr.InvalidValue)
	}
	switch attr {
	case PoolReuseFollowEventDependencies, PoolReuseAllowOpportunistic, PoolReuseAllowInternalDependencies:
		if v > 1 {
			return bad()
		}
		switch attr {
		case PoolReuseFollowEventDependencies:
			mp.reuseFollow = v == 1
		case PoolReuseAllowOpportunistic:
			mp.reuseOpport = v == 1
		default:
			mp.reuseInter = v == 1
		}
	case PoolReleaseThreshold:
		mp.threshold = v
	case PoolReservedMemHigh, PoolUsedMemHigh:
		if v != 0 {
			return bad()
		}
		if attr == PoolReservedMemHigh {
			mp.reservedHigh = mp.reserved
		} else {
			mp.usedHigh = mp.used
		}
	default:
		return bad()
	}
	return nil
}

// AccessDesc is one entry of cudaMemPoolSetAccess: device Dev gets Flags
// (an Access* value) to the pool's memory.
type AccessDesc struct {
	Dev   int
	Flags int
}

// MemPoolSetAccess sets which devices may use pool h's memory
// (cudaMemPoolSetAccess). The pool's own device always has read-write
// access and cannot be given less. Nothing changes when an entry is bad.
func (s *Shim) MemPoolSetAccess(h uint64, descs []AccessDesc) error {
	n, err := s.DeviceCount()
	if err != nil {
		return err
	}
	p := &s.pools
	p.mu.Lock()
	defer p.mu.Unlock()
	mp, err := p.poolLocked(h)
	if err != nil {
		return err
	}
	for _, d := range descs {
		switch {
		case d.Dev < 0 || d.Dev >= n:
			return fmt.Errorf("core: memory pool access for device %d: %w", d.Dev, cudaerr.InvalidDevice)
		case d.Flags != AccessNone && d.Flags != AccessRead && d.Flags != AccessReadWrite:
			return fmt.Errorf("core: memory pool access flags %d: %w", d.Flags, cudaerr.InvalidValue)
		case d.Dev == mp.dev && d.Flags != AccessReadWrite:
			return fmt.Errorf("core: the access of memory pool %#x's own device cannot be lowered: %w", h, cudaerr.InvalidValue)
		}
	}
	for _, d := range descs {
		if d.Flags == AccessNone {
			delete(mp.access, d.Dev)
		} else if d.Dev != mp.dev {
			mp.access[d.Dev] = d.Flags
		}
	}
	return nil
}

// MemPoolAccess returns device dev's access to pool h's memory
// (cudaMemPoolGetAccess).
func (s *Shim) MemPoolAccess(h uint64, dev int) (int, error) {
	if _, err := s.device(dev); err != nil {
		return 0, err
	}
	p := &s.pools
	p.mu.Lock()
	defer p.mu.Unlock()
	mp, err := p.poolLocked(h)
	if err != nil {
		return 0, err
	}
	if dev == mp.dev {
		return AccessReadWrite, nil
	}
	return mp.access[dev], nil
}
