package cuda

import (
	"errors"
	"runtime"
	"sync"
)

// ErrExecutorClosed is returned by Executor.Go and Executor.Do after Close.
var ErrExecutorClosed = errors.New("cuda: executor closed")

// Executor runs functions on one OS thread, in the order they are
// submitted. CUDA keeps the current context per OS thread; an Executor's
// thread is locked to its goroutine (runtime.LockOSThread) and made the
// device's context current once at start, so every function it runs may
// call the driver for that device without switching contexts. Give each
// device one Executor and make every context-bound driver call for it
// there; calls that only wait (stream, event and context synchronization)
// may run on other threads that set the context current themselves, so that
// a long wait never holds up the device's other calls.
//
// Go and Do are safe for concurrent use. Functions submitted by one
// goroutine run in submission order; the order between goroutines is the
// order in which their submissions reach the queue.
type Executor struct {
	jobs chan func() // buffered: Go returns as soon as its function is queued
	done chan struct{}

	mu     sync.RWMutex // guards closed; held for reading while submitting
	closed bool

	closeOnce sync.Once
}

// DefaultQueue is the queue length of an Executor made with queue <= 0: the
// number of functions Go can queue before it waits for the thread.
const DefaultQueue = 4096

// NewExecutor starts an Executor. Its goroutine locks its OS thread, runs
// setup there (typically: make the device's primary context current) and,
// if setup fails, exits and returns setup's error. teardown (may be nil)
// runs on the thread after Close has drained the queue. The thread is not
// unlocked: it ends with the goroutine, so that the context made current on
// it never leaks to other goroutines.
func NewExecutor(queue int, setup func() error, teardown func()) (*Executor, error) {
	if queue <= 0 {
		queue = DefaultQueue
	}
	e := &Executor{
		jobs: make(chan func(), queue),
		done: make(chan struct{}),
	}
	started := make(chan error, 1) // buffered: the goroutine never waits on the creator
	go e.loop(setup, teardown, started)
	if err := <-started; err != nil {
		<-e.done
		return nil, err
	}
	return e, nil
}

func (e *Executor) loop(setup func() error, teardown func(), started chan<- error) {
	defer close(e.done)
	runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
	if setup != nil {
		if err := setup(); err != nil {
			started <- err
			return
		}
	}
	started <- nil
	for fn := range e.jobs {
		fn()
	}
	if teardown != nil {
		teardown()
	}
}

// Go queues fn and returns without waiting for it to run. It waits only
// while the queue is full. It returns ErrExecutorClosed after Close.
func (e *Executor) Go(fn func()) error {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.closed {
		return ErrExecutorClosed
	}
	e.jobs <- fn
	return nil
}

// result carries a Do function's error back; buffered so that the executor
// never waits on the submitter.
var resultPool = sync.Pool{New: func() any { return make(chan error, 1) }}

// Do runs fn on the executor's thread after every function queued before
// it, and returns fn's error. It returns ErrExecutorClosed after Close.
func (e *Executor) Do(fn func() error) error {
	ch := resultPool.Get().(chan error)
	if err := e.Go(func() { ch <- fn() }); err != nil {
		resultPool.Put(ch)
		return err
	}
	err := <-ch
	resultPool.Put(ch)
	return err
}

// Close stops accepting functions, runs every function already queued,
// runs teardown, and waits for the thread to exit. It is idempotent and
// must not be called from a function running on the executor.
func (e *Executor) Close() {
	e.closeOnce.Do(func() {
		e.mu.Lock()
		e.closed = true
		e.mu.Unlock()
		close(e.jobs) // no submitter holds the read lock past this point
	})
	<-e.done
}
