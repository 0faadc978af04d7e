package cuda

import (
	"sync"
	"testing"
)

func TestFnTable(t *testing.T) {
	var tab fnTable
	var calls []int
	ids := map[uintptr]int{}
	for i := range 10 {
		id := tab.put(func() { calls = append(calls, i) })
		if id == 0 {
			t.Fatal("put returned id 0")
		}
		if _, dup := ids[id]; dup {
			t.Fatalf("id %d handed out twice", id)
		}
		ids[id] = i
	}
	if tab.len() != 10 {
		t.Fatalf("len = %d, want 10", tab.len())
	}
	for id, i := range ids {
		fn, ok := tab.take(id)
		if !ok {
			t.Fatalf("take(%d) failed", id)
		}
		fn()
		if calls[len(calls)-1] != i {
			t.Fatalf("id %d gave function %d, want %d", id, calls[len(calls)-1], i)
		}
		if _, ok := tab.take(id); ok {
			t.Fatalf("take(%d) succeeded twice", id)
		}
	}
	if tab.len() != 0 {
		t.Fatalf("len = %d after taking everything", tab.len())
	}
	for _, bad := range []uintptr{0, 11, 1 << 40} {
		if _, ok := tab.take(bad); ok {
			t.Errorf("take(%d) of an id never handed out succeeded", bad)
		}
	}
	// Freed ids are reused before the table grows.
	id := tab.put(func() {})
	if id > 10 {
		t.Fatalf("put after frees returned %d, want a reused id", id)
	}
}

func TestFnTableConcurrent(t *testing.T) {
	var tab fnTable
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 1000 {
				ran := false
				id := tab.put(func() { ran = true })
				fn, ok := tab.take(id)
				if !ok {
					t.Error("take of a live id failed")
					return
				}
				fn()
				if !ran {
					t.Error("take returned another function")
					return
				}
			}
		}()
	}
	wg.Wait()
	if tab.len() != 0 {
		t.Fatalf("len = %d", tab.len())
	}
}
