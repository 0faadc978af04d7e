package runtime

import (
	"fmt"
	"sync"

	"github.com/xgpu/xgpu/devicemap"
)

// The device windows are reserved in the client's own address space (an
// inaccessible mapping, no memory behind it), so that no host allocation
// lands in one: a pointer inside a window is then always a device pointer,
// and a pointer outside every window always host memory, which is what
// PointerGetAttributes and copies of unspecified direction rely on.
// Clients of one process share reservations of equal windows.

// window is one reserved address range.
type window struct{ lo, hi uint64 }

var (
	reserveMu sync.Mutex         // guards reserved
	reserved  = map[window]int{} // reference counts
)

// reserveWindows reserves the window of every device of m that no other
// Client of the process holds, and returns the windows it holds a
// reference to (to give to releaseWindows) and an error naming the ones it
// could not reserve (an address already mapped in this process, or a
// system without the facility).
func reserveWindows(m *devicemap.Map) ([]window, error) {
	reserveMu.Lock()
	defer reserveMu.Unlock()
	var held []window
	var failed []int
	var first error
	for i := range m.Len() {
		lo, hi := m.WindowOf(i)
		w := window{lo, hi}
		if reserved[w] == 0 {
			if err := mapReserve(lo, hi-lo); err != nil {
				failed = append(failed, i)
				if first == nil {
					first = err
				}
				continue
			}
		}
		reserved[w]++
		held = append(held, w)
	}
	if first != nil {
		return held, fmt.Errorf("runtime: address windows of devices %v not reserved: %w", failed, first)
	}
	return held, nil
}

// releaseWindows drops references taken by reserveWindows; the last one
// unmaps its window.
func releaseWindows(ws []window) {
	reserveMu.Lock()
	defer reserveMu.Unlock()
	for _, w := range ws {
		if reserved[w]--; reserved[w] <= 0 {
			delete(reserved, w)
			mapRelease(w.lo, w.hi-w.lo)
		}
	}
}
