package runtime

import (
	"crypto/rand"
	"encoding/binary"
	"strings"
	"testing"

	"github.com/xgpu/xgpu/internal/calls"
	"github.com/xgpu/xgpu/internal/cudaerr"
	"github.com/xgpu/xgpu/server/host"
)

// kernelTestImage returns a host-backend module image with the library's
// kernels and a comment unique to this run, so that no server holds it
// yet; pad makes it longer than calls.InlineMax.
func kernelTestImage(t *testing.T, pad bool) []byte {
	t.Helper()
	img := host.ModuleImage("fill_u32", "add_one_u32", "fault")
	img = append(img, "global counter 8\n# "+rand.Text()+"\n"...)
	if pad {
		img = append(img, strings.Repeat("# "+strings.Repeat("p", 77)+"\n", calls.InlineMax/80+8)...)
	}
	return img
}

func u32(v uint32) []byte { return binary.LittleEndian.AppendUint32(nil, v) }
func u64(v uint64) []byte { return binary.LittleEndian.AppendUint64(nil, v) }

func words(t *testing.T, c *Client, p uint64, n int) []uint32 {
	t.Helper()
	b := make([]byte, 4*n)
	if err := c.MemcpyDtoH(b, p); err != nil {
		t.Fatalf("MemcpyDtoH: %v", err)
	}
	w := make([]uint32, n)
	for i := range w {
		w[i] = binary.LittleEndian.Uint32(b[4*i:])
	}
	return w
}

func wantAll(t *testing.T, what string, got []uint32, want uint32) {
	t.Helper()
	for i, v := range got {
		if v != want {
			t.Fatalf("%s: word %d = %d, want %d", what, i, v, want)
		}
	}
}

// TestKernels loads a module on devices of two servers, launches its
// kernels with the layout GetFunction learned, and checks the results.
func TestKernels(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", t.TempDir()) // the servers' module cache
	cl := newCluster(t, 2, 2)
	c := cl.open(t, cl.config())

	for _, pad := range []bool{false, true} {
		name := map[bool]string{false: "inline image", true: "bulk image"}[pad]
		t.Run(name, func(t *testing.T) {
			img := kernelTestImage(t, pad)
			for dev := range c.DeviceCount() {
				before := c.Stats().PayloadSent()
				m, err := c.LoadModule(dev, img)
				if err != nil {
					t.Fatalf("LoadModule(%d): %v", dev, err)
				}
				sent := c.Stats().PayloadSent() - before
				// The two servers run on this machine with one module
				// cache directory: the image crosses the network once.
				if first := dev == 0; (sent > 0) != first {
					t.Errorf("LoadModule on device %d sent %d payload bytes; want the image sent only when no server holds it", dev, sent)
				}
				fill, err := c.GetFunction(m, "fill_u32")
				if err != nil {
					t.Fatal(err)
				}
				if again, err := c.GetFunction(m, "fill_u32"); err != nil || again != fill {
					t.Fatalf("second GetFunction = %p, %v; want the cached %p", again, err, fill)
				}
				if got := fill.Params(); len(got) != 3 || got[1] != (Param{Offset: 8, Size: 4}) || fill.ArgsSize() != 16 {
					t.Fatalf("fill_u32 layout %v (%d bytes)", got, fill.ArgsSize())
				}
				add, err := c.GetFunction(m, "add_one_u32")
				if err != nil {
					t.Fatal(err)
				}
				const n = 5000
				p := mustMalloc(t, c, dev, 4*n)
				s, err := c.StreamCreate(dev, StreamNonBlocking, 0)
				if err != nil {
					t.Fatal(err)
				}
				grid, block := Dim3{X: (n + 255) / 256, Y: 1, Z: 1}, Dim3{X: 256, Y: 1, Z: 1}
				if err := c.LaunchKernel(fill, grid, block, 0, s, [][]byte{u64(p), u32(n), u32(uint32(100 + dev))}); err != nil {
					t.Fatal(err)
				}
				packed := append(u64(p), u32(n)...)
				if err := c.LaunchKernelPacked(add, grid, block, 0, s, packed); err != nil {
					t.Fatal(err)
				}
				if err := c.StreamSynchronize(s); err != nil {
					t.Fatalf("StreamSynchronize: %v", err)
				}
				wantAll(t, "fill then add_one", words(t, c, p, n), uint32(101+dev))
				if err := c.UnloadModule(m); err != nil {
					t.Fatalf("UnloadModule: %v", err)
				}
			}
		})
	}
}

// TestCooperativeKernels launches cooperatively on the host backend: a
// grid the device holds at once runs, a larger one is refused with
// cudaErrorCooperativeLaunchTooLarge at the next synchronising call, and
// arguments are checked as for LaunchKernel.
func TestCooperativeKernels(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	cl := newCluster(t, 1, 1)
	c := cl.open(t, cl.config())
	m, err := c.LoadModule(0, kernelTestImage(t, false))
	if err != nil {
		t.Fatal(err)
	}
	fill, err := c.GetFunction(m, "fill_u32")
	if err != nil {
		t.Fatal(err)
	}
	add, err := c.GetFunction(m, "add_one_u32")
	if err != nil {
		t.Fatal(err)
	}
	const n = 2048
	p := mustMalloc(t, c, 0, 4*n)
	grid, block := Dim3{X: n / 256, Y: 1, Z: 1}, Dim3{X: 256, Y: 1, Z: 1}
	if err := c.LaunchCooperativeKernel(fill, grid, block, 0, Stream{}, [][]byte{u64(p), u32(n), u32(40)}); err != nil {
		t.Fatal(err)
	}
	if err := c.LaunchCooperativeKernelPacked(add, grid, block, 0, Stream{}, append(u64(p), u32(n)...)); err != nil {
		t.Fatal(err)
	}
	if err := c.DeviceSynchronize(0); err != nil {
		t.Fatalf("DeviceSynchronize: %v", err)
	}
	wantAll(t, "cooperative fill then add_one", words(t, c, p, n), 41)

	// The host backend's devices hold 8 blocks of 256 threads per SM.
	huge := Dim3{X: 1 << 20, Y: 1, Z: 1}
	if err := c.LaunchCooperativeKernel(fill, huge, block, 0, Stream{}, [][]byte{u64(p), u32(n), u32(99)}); err != nil {
		t.Fatalf("LaunchCooperativeKernel = %v; want the refusal reported later", err)
	}
	wantCode(t, c.DeviceSynchronize(0), cudaerr.CooperativeLaunchTooLarge)
	if err := c.DeviceSynchronize(0); err != nil {
		t.Fatalf("DeviceSynchronize after the refusal was reported: %v", err)
	}
	wantAll(t, "memory after the refused launch", words(t, c, p, n), 41)

	one := Dim3{X: 1, Y: 1, Z: 1}
	tests := []struct {
		name string
		call func() error
		want cudaerr.Error
	}{
		{"too few arguments", func() error {
			return c.LaunchCooperativeKernel(fill, one, one, 0, Stream{}, [][]byte{u64(p)})
		}, cudaerr.InvalidValue},
		{"short packed arguments", func() error { return c.LaunchCooperativeKernelPacked(fill, one, one, 0, Stream{}, make([]byte, 12)) }, cudaerr.InvalidValue},
		{"zero grid", func() error {
			return c.LaunchCooperativeKernel(fill, Dim3{}, one, 0, Stream{}, [][]byte{u64(p), u32(1), u32(1)})
		}, cudaerr.InvalidConfiguration},
		{"nil function", func() error { return c.LaunchCooperativeKernel(nil, one, one, 0, Stream{}, nil) }, cudaerr.InvalidResourceHandle},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantCode(t, tt.call(), tt.want)
		})
	}
}

func TestKernelErrors(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	cl := newCluster(t, 1, 2)
	c := cl.open(t, cl.config())
	img := kernelTestImage(t, false)
	m, err := c.LoadModule(0, img)
	if err != nil {
		t.Fatal(err)
	}
	fill, err := c.GetFunction(m, "fill_u32")
	if err != nil {
		t.Fatal(err)
	}
	p := mustMalloc(t, c, 0, 4096)
	one := Dim3{X: 1, Y: 1, Z: 1}
	s1, err := c.StreamCreate(1, StreamDefault, 0)
	if err != nil {
		t.Fatal(err)
	}
	args := [][]byte{u64(p), u32(1), u32(7)}

	tests := []struct {
		name string
		call func() error
		want cudaerr.Error
	}{
		{"empty image", func() error { _, err := c.LoadModule(0, nil); return err }, cudaerr.InvalidValue},
		{"GPU code on the host backend", func() error {
			_, err := c.LoadModule(0, []byte(".version 8.0\n.target sm_90\n.address_size 64\n"))
			return err
		}, cudaerr.NoKernelImageForDevice},
		{"unknown kernel", func() error { _, err := c.GetFunction(m, "no_such_kernel"); return err }, cudaerr.SymbolNotFound},
		{"module of another device", func() error { _, err := c.GetFunction(Module{dev: 1, id: m.id}, "fill_u32"); return err }, cudaerr.InvalidResourceHandle},
		{"too few arguments", func() error { return c.LaunchKernel(fill, one, one, 0, Stream{}, args[:2]) }, cudaerr.InvalidValue},
		{"argument of the wrong size", func() error {
			return c.LaunchKernel(fill, one, one, 0, Stream{}, [][]byte{u64(p), u64(1), u32(7)})
		}, cudaerr.InvalidValue},
		{"short packed arguments", func() error { return c.LaunchKernelPacked(fill, one, one, 0, Stream{}, make([]byte, 12)) }, cudaerr.InvalidValue},
		{"zero block", func() error { return c.LaunchKernel(fill, one, Dim3{}, 0, Stream{}, args) }, cudaerr.InvalidConfiguration},
		{"stream of another device", func() error { return c.LaunchKernel(fill, one, one, 0, s1, args) }, cudaerr.InvalidResourceHandle},
		{"nil function", func() error { return c.LaunchKernel(nil, one, one, 0, Stream{}, nil) }, cudaerr.InvalidResourceHandle},
		{"unknown global", func() error { _, _, err := c.ModuleGetGlobal(m, "no_such_global"); return err }, cudaerr.SymbolNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantCode(t, tt.call(), tt.want)
		})
	}
	if err := c.DeviceSynchronize(0); err != nil {
		t.Fatalf("DeviceSynchronize after refused calls: %v", err)
	}

	t.Run("attributes and globals", func(t *testing.T) {
		if v, err := c.FuncGetAttribute(fill, FuncAttrMaxThreadsPerBlock); err != nil || v != 1024 {
			t.Fatalf("FuncGetAttribute = %d, %v", v, err)
		}
		if err := c.FuncSetAttribute(fill, FuncAttrMaxDynamicSharedSizeBytes, 100<<10); err != nil {
			t.Fatal(err)
		}
		wantCode(t, c.FuncSetAttribute(fill, FuncAttrNumRegs, 3), cudaerr.InvalidValue)
		ptr, size, err := c.ModuleGetGlobal(m, "counter")
		if err != nil || size != 8 {
			t.Fatalf("ModuleGetGlobal = %#x, %d, %v", ptr, size, err)
		}
		if i, ok := cl.m.DeviceOf(ptr); !ok || i != 0 {
			t.Fatalf("global at %#x is not in device 0's window", ptr)
		}
		// cudaMemcpyToSymbol / FromSymbol: a global is addressable like an
		// allocation, but only within its bounds.
		val := []byte{1, 2, 3, 4, 5, 6, 7, 8}
		if err := c.MemcpyHtoD(ptr, val); err != nil {
			t.Fatalf("copy to a module global: %v", err)
		}
		got := make([]byte, 8)
		if err := c.MemcpyDtoH(got, ptr); err != nil || string(got) != string(val) {
			t.Fatalf("copy from a module global: %v, %v", got, err)
		}
		wantCode(t, c.MemcpyHtoD(ptr+4, val), cudaerr.InvalidValue)
		if a, err := c.PointerGetAttributes(ptr); err != nil || a.Type != MemoryTypeDevice || a.Device != 0 || a.Size != 8 {
			t.Fatalf("PointerGetAttributes(global) = %+v, %v", a, err)
		}
	})

	t.Run("fault surfaces at the next sync and sticks", func(t *testing.T) {
		// Device 1 of the same server keeps working: its context is its
		// own. (Across sessions, see the GPU tests.)
		m1, err := c.LoadModule(1, img)
		if err != nil {
			t.Fatal(err)
		}
		add1, err := c.GetFunction(m1, "add_one_u32")
		if err != nil {
			t.Fatal(err)
		}
		q := mustMalloc(t, c, 1, 4096)
		if err := c.Memset(q, 0, 4096); err != nil {
			t.Fatal(err)
		}
		bad, err := c.GetFunction(m, "fault")
		if err != nil {
			t.Fatal(err)
		}
		if err := c.LaunchKernel(bad, one, one, 0, Stream{}, nil); err != nil {
			t.Fatalf("LaunchKernel(fault) = %v; want the fault reported later", err)
		}
		wantCode(t, c.DeviceSynchronize(0), cudaerr.IllegalAddress)
		_, err = c.Malloc(0, 64)
		wantCode(t, err, cudaerr.IllegalAddress)
		if err := c.LaunchKernel(add1, Dim3{X: 4, Y: 1, Z: 1}, Dim3{X: 256, Y: 1, Z: 1}, 0, LegacyStream(1), [][]byte{u64(q), u32(1024)}); err != nil {
			t.Fatal(err)
		}
		wantAll(t, "device 1 after device 0 faulted", words(t, c, q, 1024), 1)
	})
}
