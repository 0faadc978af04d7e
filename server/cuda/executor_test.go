package cuda

import (
	"errors"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

func newTestExecutor(t *testing.T, queue int) *Executor {
	t.Helper()
	e, err := NewExecutor(queue, nil, nil)
	if err != nil {
		t.Fatalf("NewExecutor: %v", err)
	}
	t.Cleanup(e.Close)
	return e
}

func TestExecutorRunsOnOneLockedThread(t *testing.T) {
	var setupTid, teardownTid atomic.Int64
	e, err := NewExecutor(0,
		func() error { setupTid.Store(int64(syscall.Gettid())); return nil },
		func() { teardownTid.Store(int64(syscall.Gettid())) })
	if err != nil {
		t.Fatal(err)
	}
	tids := make(chan int, 100) // one per job
	for range 100 {
		if err := e.Go(func() {
			time.Sleep(10 * time.Microsecond) // give the scheduler a chance to move the goroutine
			tids <- syscall.Gettid()
		}); err != nil {
			t.Fatal(err)
		}
	}
	e.Close()
	close(tids)
	for tid := range tids {
		if int64(tid) != setupTid.Load() {
			t.Fatalf("a function ran on thread %d, setup on %d", tid, setupTid.Load())
		}
	}
	if teardownTid.Load() != setupTid.Load() {
		t.Fatalf("teardown ran on thread %d, setup on %d", teardownTid.Load(), setupTid.Load())
	}
}

func TestExecutorOrder(t *testing.T) {
	tests := []struct {
		name  string
		queue int
	}{
		{"default queue", 0},
		{"queue of one", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newTestExecutor(t, tt.queue)
			var got []int // written on the executor only
			for i := range 500 {
				if i%7 == 0 {
					if err := e.Do(func() error { got = append(got, i); return nil }); err != nil {
						t.Fatal(err)
					}
					continue
				}
				if err := e.Go(func() { got = append(got, i) }); err != nil {
					t.Fatal(err)
				}
			}
			var n int
			if err := e.Do(func() error { n = len(got); return nil }); err != nil {
				t.Fatal(err)
			}
			if n != 500 {
				t.Fatalf("%d functions ran, want 500", n)
			}
			for i, v := range got {
				if v != i {
					t.Fatalf("function %d ran in place %d", v, i)
				}
			}
		})
	}
}

func TestExecutorDoReturnsError(t *testing.T) {
	e := newTestExecutor(t, 0)
	boom := errors.New("boom")
	if err := e.Do(func() error { return boom }); err != boom {
		t.Fatalf("Do = %v, want %v", err, boom)
	}
	if err := e.Do(func() error { return nil }); err != nil {
		t.Fatalf("Do = %v after an error, want nil (results must not leak between calls)", err)
	}
}

func TestExecutorSetupFailure(t *testing.T) {
	boom := errors.New("no context")
	torn := false
	e, err := NewExecutor(0, func() error { return boom }, func() { torn = true })
	if err != boom || e != nil {
		t.Fatalf("NewExecutor = %v, %v; want nil, %v", e, err, boom)
	}
	if torn {
		t.Fatal("teardown ran after a failed setup")
	}
}

func TestExecutorCloseDrains(t *testing.T) {
	var ran atomic.Int32
	var tornAfter atomic.Int32
	e, err := NewExecutor(0, nil, func() { tornAfter.Store(ran.Load()) })
	if err != nil {
		t.Fatal(err)
	}
	for range 50 {
		if err := e.Go(func() { time.Sleep(100 * time.Microsecond); ran.Add(1) }); err != nil {
			t.Fatal(err)
		}
	}
	e.Close()
	if ran.Load() != 50 || tornAfter.Load() != 50 {
		t.Fatalf("Close returned with %d of 50 functions run (%d before teardown)", ran.Load(), tornAfter.Load())
	}
	if err := e.Go(func() {}); !errors.Is(err, ErrExecutorClosed) {
		t.Fatalf("Go after Close = %v, want ErrExecutorClosed", err)
	}
	if err := e.Do(func() error { return nil }); !errors.Is(err, ErrExecutorClosed) {
		t.Fatalf("Do after Close = %v, want ErrExecutorClosed", err)
	}
	e.Close() // idempotent
}

func TestExecutorConcurrentSubmitAndClose(t *testing.T) {
	e, err := NewExecutor(4, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var ran, refused atomic.Int64
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 200 {
				err := e.Do(func() error { ran.Add(1); return nil })
				if errors.Is(err, ErrExecutorClosed) {
					refused.Add(1)
				} else if err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	time.Sleep(2 * time.Millisecond)
	e.Close()
	wg.Wait()
	if ran.Load()+refused.Load() != 8*200 {
		t.Fatalf("%d ran + %d refused != %d submitted", ran.Load(), refused.Load(), 8*200)
	}
}
