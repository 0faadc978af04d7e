package cuda

import "sync"

// fnTable hands out small integer ids for Go functions, so that C code (the
// cuLaunchHostFunc trampoline) can name a function without holding a Go
// pointer. An id is valid from put until the take that returns it; ids are
// reused afterwards. The zero id is never handed out.
type fnTable struct {
	mu   sync.Mutex // guards the fields below
	fns  []func()   // fns[id-1]; nil for a free slot
	free []uintptr  // free ids, reused before fns grows
	live int        // number of ids handed out and not yet taken
}

// hostFns holds the functions queued with Driver.LaunchHostFunc.
var hostFns fnTable

// put stores fn and returns its id.
func (t *fnTable) put(fn func()) uintptr {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.live++
	if n := len(t.free); n > 0 {
		id := t.free[n-1]
		t.free = t.free[:n-1]
		t.fns[id-1] = fn
		return id
	}
	t.fns = append(t.fns, fn)
	return uintptr(len(t.fns))
}

// take removes and returns the function of id; ok is false for an id that
// is not live.
func (t *fnTable) take(id uintptr) (fn func(), ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if id == 0 || id > uintptr(len(t.fns)) || t.fns[id-1] == nil {
		return nil, false
	}
	fn = t.fns[id-1]
	t.fns[id-1] = nil
	t.free = append(t.free, id)
	t.live--
	return fn, true
}

// len returns the number of live ids.
func (t *fnTable) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.live
}
