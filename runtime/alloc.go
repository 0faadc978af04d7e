package runtime

import (
	"slices"
	"sync"
)

// allocTable is the client's record of the live allocations of one device:
// what PointerGetAttributes answers from and what copies are checked
// against before they leave, so that a bad pointer fails at the call, as
// in CUDA, instead of at the next synchronising call.
type allocTable struct {
	mu    sync.RWMutex // guards bases and sizes
	bases []uint64     // sorted; allocations never overlap
	sizes []uint64     // sizes[i] belongs to bases[i]
	bytes uint64       // sum of sizes
}

// add records the allocation [p, p+n). It reports false, recording
// nothing, if the range overlaps a live allocation (a worker answering
// nonsense).
func (t *allocTable) add(p, n uint64) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	i, _ := slices.BinarySearch(t.bases, p)
	if i > 0 && t.bases[i-1]+t.sizes[i-1] > p {
		return false
	}
	if i < len(t.bases) && p+n > t.bases[i] {
		return false
	}
	t.bases = slices.Insert(t.bases, i, p)
	t.sizes = slices.Insert(t.sizes, i, n)
	t.bytes += n
	return true
}

// remove forgets the allocation that starts at p and returns its size; ok
// is false if no live allocation starts at p.
func (t *allocTable) remove(p uint64) (size uint64, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	i, found := slices.BinarySearch(t.bases, p)
	if !found {
		return 0, false
	}
	size = t.sizes[i]
	t.bases = slices.Delete(t.bases, i, i+1)
	t.sizes = slices.Delete(t.sizes, i, i+1)
	t.bytes -= size
	return size, true
}

// find returns the allocation that contains p.
func (t *allocTable) find(p uint64) (base, size uint64, ok bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.findLocked(p)
}

func (t *allocTable) findLocked(p uint64) (base, size uint64, ok bool) {
	i, found := slices.BinarySearch(t.bases, p)
	if found {
		return t.bases[i], t.sizes[i], true
	}
	if i == 0 {
		return 0, 0, false
	}
	if b, s := t.bases[i-1], t.sizes[i-1]; p-b < s {
		return b, s, true
	}
	return 0, 0, false
}

// contains reports whether [p, p+n) lies inside one live allocation; n is
// at least 1.
func (t *allocTable) contains(p, n uint64) bool {
	t.mu.RLock()
	defer t.mu.RUnlock()
	b, s, ok := t.findLocked(p)
	// p-b < s holds; the end must not pass the allocation's end, and
	// p+n must not wrap.
	return ok && n <= s-(p-b)
}

// stats returns the number of live allocations and their bytes.
func (t *allocTable) stats() (count int, bytes uint64) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return len(t.bases), t.bytes
}
