package runtime

import (
	"errors"
	"sync"
	"testing"

	"github.com/xgpu/xgpu/internal/cudaerr"
	"github.com/xgpu/xgpu/server/host"
)

func TestDeviceAttributes(t *testing.T) {
	cl := newCluster(t, 2, 2)
	c := cl.open(t, cl.config())
	calls := func() (n uint64) {
		for _, s := range c.Stats().Sessions {
			n += s.Calls
		}
		return n
	}
	profile := host.H200Attributes()
	for dev := range c.DeviceCount() {
		t.Run(cl.m.Devices[dev].VGPU, func(t *testing.T) {
			before := calls()
			// Concurrent first calls: one fetch, one result.
			got := make([]*DeviceAttributes, 4)
			var wg sync.WaitGroup
			for i := range got {
				wg.Go(func() {
					a, err := c.DeviceAttributes(dev)
					if err != nil {
						t.Error(err)
					}
					got[i] = a
				})
			}
			wg.Wait()
			a := got[0]
			for _, o := range got[1:] {
				if o != a {
					t.Fatal("concurrent calls fetched more than once")
				}
			}
			if n := calls() - before; n != 1 {
				t.Fatalf("%d calls for the first fetches, want 1", n)
			}
			if again, err := c.DeviceAttributes(dev); err != nil || again != a || calls()-before != 1 {
				t.Fatalf("a later call: %v, cached %v, %d calls", err, again == a, calls()-before)
			}
			// The server's values: the emulated GPU's profile with the
			// device's own PCI bus and board.
			gpu := cl.m.Devices[dev].GPUIndex
			want := map[DeviceAttr]int{33: 0x10 + gpu, 34: 0, 85: gpu}
			if a.Len() != len(profile) {
				t.Fatalf("%d attributes, want %d", a.Len(), len(profile))
			}
			seen := 0
			for attr, v := range a.All() {
				w, ok := want[attr]
				if !ok {
					w = int(profile[int(attr)])
				}
				if v != w {
					t.Errorf("attribute %d = %d, want %d", attr, v, w)
				}
				seen++
			}
			if seen != len(profile) {
				t.Fatalf("All yielded %d attributes, want %d", seen, len(profile))
			}
			if v, ok := a.Get(DevAttrMultiProcessorCount); !ok || v != host.DefaultMultiprocessors {
				t.Errorf("SM count %d (%v)", v, ok)
			}
			for _, attr := range []DeviceAttr{0, -1, 148, 255, MaxDeviceAttr, 1000} {
				if v, ok := a.Get(attr); ok || v != 0 {
					t.Errorf("Get(%d) = %d, %v; the device does not answer it", attr, v, ok)
				}
			}
		})
	}

	t.Run("bad device", func(t *testing.T) {
		for _, dev := range []int{-1, c.DeviceCount()} {
			_, err := c.DeviceAttributes(dev)
			wantCode(t, err, cudaerr.InvalidDevice)
		}
	})

	t.Run("leaves an asynchronous failure for the next call", func(t *testing.T) {
		// The device's first fetch happens after the failure.
		cl := newCluster(t, 1, 1)
		c2 := cl.open(t, cl.config())
		s, err := c2.StreamCreate(0, StreamNonBlocking, 0)
		if err != nil {
			t.Fatal(err)
		}
		if err := c2.StreamDestroy(s); err != nil {
			t.Fatal(err)
		}
		p := mustMalloc(t, c2, 0, 64)
		if err := c2.MemsetAsync(p, 1, 16, s); err != nil {
			t.Fatal(err)
		}
		if _, err := c2.DeviceAttributes(0); err != nil {
			t.Fatalf("DeviceAttributes after a failed asynchronous call: %v", err)
		}
		_, _, err = c2.MemGetInfo(0)
		wantCode(t, err, cudaerr.InvalidResourceHandle)
	})

	t.Run("closed", func(t *testing.T) {
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := c.DeviceAttributes(0); !errors.Is(err, ErrClosed) {
			t.Fatalf("a cached device after Close: %v, want ErrClosed", err)
		}
		cl := newCluster(t, 1, 1)
		c3 := cl.open(t, cl.config())
		if err := c3.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := c3.DeviceAttributes(0); !errors.Is(err, ErrClosed) {
			t.Fatalf("after Close: %v, want ErrClosed", err)
		}
	})
}
