package core

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
	"unsafe"

	"github.com/xgpu/xgpu/internal/cudaerr"
	"github.com/xgpu/xgpu/runtime"
)

// fakeKernels is kernelAPI with kernels whose layouts the test sets; it
// records what the registry asks. It stands in for the runtime's kernel
// calls, the edge below the registry.
type fakeKernels struct {
	mu       sync.Mutex // guards the fields below
	layouts  map[string][]Param
	loads    map[int]int    // device -> LoadModule calls
	unloads  map[int]int    // device -> UnloadModule calls
	lookups  map[string]int // "dev/name" -> Function calls
	launches []fakeLaunch
	globals  map[string]uint64 // name -> address (size 64)
	failLoad error
}

type fakeLaunch struct {
	dev         int
	name        string
	grid, block [3]uint32
	shared      uint32
	coop        bool
	stream      runtime.Stream
	args        []byte
}

type fakeModule struct {
	dev   int
	image []byte
}

type fakeFunc struct{ name string }

func newFake() *fakeKernels {
	return &fakeKernels{layouts: map[string][]Param{}, loads: map[int]int{}, unloads: map[int]int{}, lookups: map[string]int{}, globals: map[string]uint64{}}
}

func (f *fakeKernels) LoadModule(dev int, image []byte) (moduleRef, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.loads[dev]++
	if f.failLoad != nil {
		return nil, f.failLoad
	}
	return fakeModule{dev, image}, nil
}

func (f *fakeKernels) UnloadModule(dev int, m moduleRef) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.unloads[dev]++
	return nil
}

func (f *fakeKernels) Function(dev int, m moduleRef, name string) (functionRef, []Param, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lookups[fmt.Sprintf("%d/%s", dev, name)]++
	ps, ok := f.layouts[name]
	if !ok {
		return nil, nil, cudaerr.SymbolNotFound
	}
	return fakeFunc{name}, ps, nil
}

func (f *fakeKernels) Launch(dev int, fn functionRef, grid, block [3]uint32, shared uint32, coop bool, st runtime.Stream, args []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.launches = append(f.launches, fakeLaunch{dev, fn.(fakeFunc).name, grid, block, shared, coop, st, append([]byte(nil), args...)})
	return nil
}

func (f *fakeKernels) FuncAttribute(dev int, fn functionRef, attr int) (int, error) {
	return 1000 + attr, nil
}

func (f *fakeKernels) SetFuncAttribute(dev int, fn functionRef, attr, value int) error {
	if attr != FuncAttrMaxDynamicSharedSizeBytes {
		return cudaerr.InvalidValue
	}
	return nil
}

func (f *fakeKernels) Global(dev int, m moduleRef, name string) (uint64, uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	a, ok := f.globals[name]
	if !ok {
		return 0, 0, cudaerr.SymbolNotFound
	}
	return a, 64, nil
}

// A host stub's address and a kernel name, as nvcc registers them.
var stubA, stubB, varC byte

func TestKernelRegistryAndLaunch(t *testing.T) {
	s := newShim(t)
	fake := newFake()
	s.kapi = fake
	// vector_add's axpby(const float*, const float*, float*, Coeffs, int, size_t):
	// the layout nvcc's stub uses (offsets 0, 8, 16, 24, 48, 56).
	fake.layouts["axpby"] = []Param{{0, 8}, {8, 8}, {16, 8}, {24, 24}, {48, 4}, {56, 8}}
	fake.layouts["noargs"] = nil
	fake.layouts["broken"] = []Param{{8, 8}, {0, 8}}
	fake.globals["counter"] = 0x7f00_0000_0000

	image, err := os.ReadFile("../fatbin/testdata/vector_add.fatbin")
	if err != nil {
		t.Fatal(err)
	}
	mod, err := s.RegisterFatbin(unsafe.Pointer(&image[0]))
	if err != nil {
		t.Fatal(err)
	}
	name := []byte("axpby\x00")
	for _, r := range []struct {
		host *byte
		name string
	}{{&stubA, "axpby"}, {&stubB, "noargs"}} {
		if err := s.RegisterFunction(mod, uintptr(unsafe.Pointer(r.host)), r.name, unsafe.Pointer(&name[0])); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.RegisterVar(mod, uintptr(unsafe.Pointer(&varC)), "counter", 8); err != nil {
		t.Fatal(err)
	}
	k, err := s.Kernel(uintptr(unsafe.Pointer(&stubA)))
	if err != nil {
		t.Fatal(err)
	}
	if p, err := s.KernelName(k); err != nil || p != unsafe.Pointer(&name[0]) {
		t.Fatalf("KernelName = %p, %v", p, err)
	}

	// Arguments as nvcc's stub passes them: one pointer per parameter.
	type coeffs struct {
		a   float32
		b   float64
		tag byte
	}
	x, y, out := uint64(0x1000), uint64(0x2000), uint64(0x3000)
	c := coeffs{2, 3, 'C'}
	kk, n := int32(5), uint64(1<<24)
	args := []unsafe.Pointer{unsafe.Pointer(&x), unsafe.Pointer(&y), unsafe.Pointer(&out), unsafe.Pointer(&c), unsafe.Pointer(&kk), unsafe.Pointer(&n)}
	for dev := range 2 {
		for range 3 {
			if err := s.Launch(k, dev, [3]uint32{65536, 1, 1}, [3]uint32{256, 1, 1}, 128, 0, unsafe.Pointer(&args[0])); err != nil {
				t.Fatal(err)
			}
		}
	}
	if fake.loads[0] != 1 || fake.loads[1] != 1 || fake.lookups["0/axpby"] != 1 || fake.lookups["1/axpby"] != 1 {
		t.Fatalf("module loads %v, lookups %v: want one of each per device", fake.loads, fake.lookups)
	}
	if len(fake.launches) != 6 {
		t.Fatalf("%d launches", len(fake.launches))
	}
	l := fake.launches[5]
	if l.dev != 1 || l.grid != [3]uint32{65536, 1, 1} || l.block != [3]uint32{256, 1, 1} || l.shared != 128 || l.stream != runtime.LegacyStream(1) {
		t.Fatalf("launch %+v", l)
	}
	le := binary.LittleEndian
	if len(l.args) != 64 || le.Uint64(l.args[0:]) != x || le.Uint64(l.args[8:]) != y || le.Uint64(l.args[16:]) != out ||
		!equalBytes(l.args[24:48], unsafe.Slice((*byte)(unsafe.Pointer(&c)), 24)) ||
		le.Uint32(l.args[48:]) != 5 || le.Uint64(l.args[56:]) != n {
		t.Fatalf("packed arguments % x", l.args)
	}

	// A kernel with no parameters takes no argument array.
	kb, _ := s.Kernel(uintptr(unsafe.Pointer(&stubB)))
	if err := s.Launch(kb, 0, [3]uint32{1, 1, 1}, [3]uint32{1, 1, 1}, 0, 0, nil); err != nil {
		t.Fatal(err)
	}

	// Attributes, and their errors.
	fa, err := s.FuncAttributes(k, 0)
	if err != nil || fa.MaxThreadsPerBlock != 1000 || fa.SharedSizeBytes != 1001 || fa.PreferredShmemCarveout != 1009 {
		t.Fatalf("FuncAttributes = %+v, %v", fa, err)
	}
	if err := s.FuncSetAttribute(k, 0, FuncAttrMaxDynamicSharedSizeBytes, 100000); err != nil {
		t.Fatal(err)
	}
	wantCode(t, "set read-only attribute", s.FuncSetAttribute(k, 0, FuncAttrNumRegs, 1), cudaerr.InvalidValue)

	// Device variables: looked up once per device; copies to them are
	// device copies.
	for range 2 {
		addr, size, err := s.SymbolAddress(uintptr(unsafe.Pointer(&varC)), 1)
		if err != nil || addr != 0x7f00_0000_0000 || size != 64 {
			t.Fatalf("SymbolAddress = %#x, %d, %v", addr, size, err)
		}
	}
	if !s.isDevice(0x7f00_0000_0000+63) || s.isDevice(0x7f00_0000_0000+64) {
		t.Fatal("the variable's range is not device memory")
	}
	_, _, err = s.SymbolAddress(uintptr(unsafe.Pointer(&stubA)), 0)
	wantCode(t, "unregistered variable", err, cudaerr.InvalidSymbol)

	// Errors: bad handles, arguments, layouts.
	tests := []struct {
		name string
		err  error
		code cudaerr.Error
	}{
		{"unknown kernel handle", s.Launch(12345, 0, [3]uint32{1, 1, 1}, [3]uint32{1, 1, 1}, 0, 0, nil), cudaerr.InvalidDeviceFunction},
		{"nil arguments", s.Launch(k, 0, [3]uint32{1, 1, 1}, [3]uint32{1, 1, 1}, 0, 0, nil), cudaerr.InvalidValue},
		{"bad device", s.Launch(k, 7, [3]uint32{1, 1, 1}, [3]uint32{1, 1, 1}, 0, 0, nil), cudaerr.InvalidDevice},
		{"bad stream", s.Launch(k, 0, [3]uint32{1, 1, 1}, [3]uint32{1, 1, 1}, 0, 0xbad, unsafe.Pointer(&args[0])), cudaerr.InvalidResourceHandle},
		{"huge shared memory", s.Launch(k, 0, [3]uint32{1, 1, 1}, [3]uint32{1, 1, 1}, 1<<33, 0, unsafe.Pointer(&args[0])), cudaerr.InvalidValue},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { wantCode(t, tt.name, tt.err, tt.code) })
	}
	var unknown byte
	_, err = s.Kernel(uintptr(unsafe.Pointer(&unknown)))
	wantCode(t, "unregistered stub", err, cudaerr.InvalidDeviceFunction)

	// A layout the server got wrong is refused, and so remembered.
	if err := s.RegisterFunction(mod, uintptr(unsafe.Pointer(&unknown)), "broken", nil); err != nil {
		t.Fatal(err)
	}
	kx, _ := s.Kernel(uintptr(unsafe.Pointer(&unknown)))
	for range 2 {
		wantCode(t, "broken layout", s.Launch(kx, 0, [3]uint32{1, 1, 1}, [3]uint32{1, 1, 1}, 0, 0, unsafe.Pointer(&args[0])), cudaerr.InvalidKernelImage)
	}
	if fake.lookups["0/broken"] != 1 {
		t.Fatalf("broken layout asked %d times", fake.lookups["0/broken"])
	}

	// Unregistering forgets the module's kernels and variables.
	if err := s.UnregisterFatbin(mod); err != nil {
		t.Fatal(err)
	}
	_, err = s.Kernel(uintptr(unsafe.Pointer(&stubA)))
	wantCode(t, "kernel of an unregistered module", err, cudaerr.InvalidDeviceFunction)
	wantCode(t, "unregister twice", s.UnregisterFatbin(mod), cudaerr.InvalidResourceHandle)
	wantCode(t, "register into a gone module", s.RegisterFunction(mod, 1, "x", nil), cudaerr.InvalidResourceHandle)
	wantCode(t, "launch of a gone kernel", s.Launch(k, 0, [3]uint32{1, 1, 1}, [3]uint32{1, 1, 1}, 0, 0, unsafe.Pointer(&args[0])), cudaerr.InvalidDeviceFunction)
}

func TestLoadFailures(t *testing.T) {
	s := newShim(t)
	fake := newFake()
	s.kapi = fake
	fake.layouts["k"] = nil
	image, err := os.ReadFile("../fatbin/testdata/vector_add_compressed.fatbin")
	if err != nil {
		t.Fatal(err)
	}
	mod, err := s.RegisterFatbin(unsafe.Pointer(&image[0]))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.RegisterFunction(mod, uintptr(unsafe.Pointer(&stubA)), "k", nil); err != nil {
		t.Fatal(err)
	}
	k, _ := s.Kernel(uintptr(unsafe.Pointer(&stubA)))
	grid := [3]uint32{1, 1, 1}
	// A lost session is not remembered: a later launch tries again.
	fake.failLoad = &runtime.LostError{Err: errors.New("gone")}
	wantCode(t, "lost", s.Launch(k, 0, grid, grid, 0, 0, nil), cudaerr.DevicesUnavailable)
	// An image the device cannot run is remembered.
	fake.failLoad = cudaerr.NoKernelImageForDevice
	for range 2 {
		wantCode(t, "no image", s.Launch(k, 0, grid, grid, 0, 0, nil), cudaerr.NoKernelImageForDevice)
	}
	if fake.loads[0] != 2 {
		t.Fatalf("%d loads, want 2 (the lost one, then the remembered failure)", fake.loads[0])
	}
}

func TestRegisterFatbinRejects(t *testing.T) {
	s := New(func() (Config, error) { return Config{}, ErrNoConfig })
	host := []byte(HostModuleHeader + "kernel fill_u32\n\x00")
	if _, err := s.RegisterFatbin(unsafe.Pointer(&host[0])); err != nil {
		t.Fatalf("host module image: %v", err)
	}
	bad := make([]byte, 64)
	_, err := s.RegisterFatbin(unsafe.Pointer(&bad[0]))
	wantCode(t, "zeros", err, cudaerr.InvalidKernelImage)
	_, err = s.RegisterFatbin(nil)
	wantCode(t, "nil", err, cudaerr.InvalidKernelImage)
	badHost := []byte(HostModuleHeader[:16] + "xxxxxxxx\x00")
	_, err = s.RegisterFatbin(unsafe.Pointer(&badHost[0]))
	wantCode(t, "bad host module", err, cudaerr.InvalidKernelImage)
}

func TestArgsSize(t *testing.T) {
	tests := []struct {
		name string
		ps   []Param
		want int
		ok   bool
	}{
		{"none", nil, 0, true},
		{"padded", []Param{{0, 4}, {8, 8}}, 16, true},
		{"overlap", []Param{{0, 8}, {4, 4}}, 0, false},
		{"zero size", []Param{{0, 0}}, 0, false},
		{"too large", []Param{{0, 8}, {32760, 8}}, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := argsSize(tt.ps)
			if (err == nil) != tt.ok || got != tt.want {
				t.Fatalf("argsSize = %d, %v", got, err)
			}
		})
	}
}

func equalBytes(a, b []byte) bool { return string(a) == string(b) }
