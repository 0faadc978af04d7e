package core

import (
	"encoding/binary"
	"os"
	"testing"
	"unsafe"

	"github.com/xgpu/xgpu/internal/cudaerr"
	"github.com/xgpu/xgpu/runtime"
	"github.com/xgpu/xgpu/runtime/cudart/fatbin"
)

// elfImage lays out a little-endian ELF64 image: the header, then each
// section's bytes, then the section headers.
func elfImage(sections []elfSection) []byte {
	le := binary.LittleEndian
	img := make([]byte, elfHeaderSize)
	copy(img, "\x7fELF")
	img[4], img[5] = 2, 1 // 64-bit, little endian
	type placed struct{ off, size uint64 }
	var where []placed
	for _, s := range sections {
		where = append(where, placed{uint64(len(img)), s.size})
		if s.typ != 8 {
			img = append(img, make([]byte, s.size)...)
		}
	}
	shoff := uint64(len(img))
	le.PutUint64(img[0x28:], shoff)
	le.PutUint16(img[0x3a:], 64)
	le.PutUint16(img[0x3c:], uint16(len(sections)))
	for i, s := range sections {
		sh := make([]byte, 64)
		le.PutUint32(sh[4:], s.typ)
		le.PutUint64(sh[24:], where[i].off)
		le.PutUint64(sh[32:], where[i].size)
		img = append(img, sh...)
	}
	return img
}

type elfSection struct {
	typ  uint32
	size uint64
}

func TestModuleImage(t *testing.T) {
	container, err := os.ReadFile("../fatbin/testdata/vector_add.fatbin")
	if err != nil {
		t.Fatal(err)
	}
	c, err := fatbin.Parse(container)
	if err != nil {
		t.Fatal(err)
	}
	var cubin []byte // the sm_90 cubin nvcc put in the container, uncompressed
	for _, e := range c.Entries {
		if e.Kind == fatbin.KindELF && !e.Compressed() {
			cubin = e.Payload(container)
		}
	}
	if cubin == nil {
		t.Fatal("no uncompressed cubin in vector_add.fatbin")
	}
	// A section that takes no room in the file (.bss) does not count.
	made := elfImage([]elfSection{{1, 100}, {8, 1 << 40}, {1, 7}})
	bigEndian := elfImage(nil)
	bigEndian[5] = 2
	tooFar := elfImage([]elfSection{{1, 8}})
	binary.LittleEndian.PutUint64(tooFar[len(tooFar)-64+32:], 2<<30)
	badEntSize := elfImage([]elfSection{{1, 8}})
	binary.LittleEndian.PutUint16(badEntSize[0x3a:], 40)

	tests := []struct {
		name  string
		image []byte // with what follows it in memory
		want  int    // the image's length
		code  cudaerr.Error
	}{
		{"nvcc cubin", append(append([]byte(nil), cubin...), 0xee, 0xee), len(cubin), 0},
		{"made-up ELF with .bss", append(made, 0xee), len(made), 0},
		{"fat binary", append(append([]byte(nil), container...), 0xee), c.Size, 0},
		{"PTX", []byte(".version 9.0\n.target sm_90\x00garbage"), len(".version 9.0\n.target sm_90"), 0},
		{"host module", []byte("xgpu-host-module v1\nkernel fill_u32\n\x00"), len("xgpu-host-module v1\nkernel fill_u32\n"), 0},
		{"big-endian ELF", bigEndian, 0, cudaerr.InvalidKernelImage},
		{"ELF section past 1 GiB", tooFar, 0, cudaerr.InvalidKernelImage},
		{"ELF section headers of 40 bytes", badEntSize, 0, cudaerr.InvalidKernelImage},
		{"broken fat binary", append([]byte{0x50, 0xed, 0x55, 0xba, 1, 0, 8, 0}, make([]byte, 16)...), 0, cudaerr.InvalidKernelImage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := moduleImage(unsafe.Pointer(&tt.image[0]))
			if tt.code != 0 {
				wantCode(t, tt.name, err, tt.code)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != tt.want || unsafe.Pointer(&got[0]) != unsafe.Pointer(&tt.image[0]) {
				t.Fatalf("image of %d bytes at %p, want %d at %p", len(got), &got[0], tt.want, &tt.image[0])
			}
		})
	}
	_, err = moduleImage(nil)
	wantCode(t, "nil image", err, cudaerr.InvalidValue)
}

func TestDriverModules(t *testing.T) {
	s := newShim(t)
	fake := newFake()
	s.kapi = fake
	fake.layouts["fill"] = []Param{{0, 8}, {8, 4}, {12, 4}}
	fake.layouts["noargs"] = nil
	fake.layouts["broken"] = []Param{{8, 8}, {0, 8}}
	fake.globals["counter"] = 0x7e00_0000_0000
	image := []byte("xgpu-host-module v1\nkernel fill\n\x00")

	mod, err := s.ModuleLoad(1, unsafe.Pointer(&image[0]))
	if err != nil {
		t.Fatal(err)
	}
	f, err := s.ModuleFunction(mod, "fill")
	if err != nil {
		t.Fatal(err)
	}
	if again, err := s.ModuleFunction(mod, "fill"); err != nil || again != f {
		t.Fatalf("second lookup = %#x, %v; want %#x", again, err, f)
	}
	if fake.loads[1] != 1 || fake.lookups["1/fill"] != 1 {
		t.Fatalf("loads %v lookups %v: want one of each on device 1", fake.loads, fake.lookups)
	}
	if dev, err := s.FunctionDevice(f); err != nil || dev != 1 {
		t.Fatalf("FunctionDevice = %d, %v", dev, err)
	}

	// Arguments from kernelParams, then from a packed buffer.
	p, n, v := uint64(0x7f00_0000_1000), uint32(100), uint32(41)
	args := []unsafe.Pointer{unsafe.Pointer(&p), unsafe.Pointer(&n), unsafe.Pointer(&v)}
	if err := s.FunctionLaunch(f, [3]uint32{4, 1, 1}, [3]uint32{32, 1, 1}, 64, 0, unsafe.Pointer(&args[0]), nil, 0); err != nil {
		t.Fatal(err)
	}
	packed := make([]byte, 24)
	binary.LittleEndian.PutUint64(packed, p)
	binary.LittleEndian.PutUint32(packed[8:], 7)
	binary.LittleEndian.PutUint32(packed[12:], 9)
	if err := s.FunctionLaunch(f, [3]uint32{1, 1, 1}, [3]uint32{1, 1, 1}, 0, 0, nil, unsafe.Pointer(&packed[0]), 24); err != nil {
		t.Fatal(err)
	}
	if len(fake.launches) != 2 {
		t.Fatalf("%d launches", len(fake.launches))
	}
	l0, l1 := fake.launches[0], fake.launches[1]
	le := binary.LittleEndian
	if l0.dev != 1 || l0.name != "fill" || l0.shared != 64 || l0.stream != runtime.LegacyStream(1) || len(l0.args) != 16 ||
		le.Uint64(l0.args) != p || le.Uint32(l0.args[8:]) != n || le.Uint32(l0.args[12:]) != v {
		t.Fatalf("launch %+v", l0)
	}
	if len(l1.args) != 16 || le.Uint32(l1.args[8:]) != 7 || le.Uint32(l1.args[12:]) != 9 {
		t.Fatalf("packed launch % x", l1.args)
	}

	// Attributes and globals.
	if a, err := s.FunctionAttribute(f, FuncAttrNumRegs); err != nil || a != 1000+FuncAttrNumRegs {
		t.Fatalf("FunctionAttribute = %d, %v", a, err)
	}
	if err := s.FunctionSetAttribute(f, FuncAttrMaxDynamicSharedSizeBytes, 1<<16); err != nil {
		t.Fatal(err)
	}
	addr, size, err := s.ModuleGlobal(mod, "counter")
	if err != nil || addr != 0x7e00_0000_0000 || size != 64 {
		t.Fatalf("ModuleGlobal = %#x, %d, %v", addr, size, err)
	}
	if !s.isDevice(0x7e00_0000_0000 + 63) {
		t.Fatal("a module global is not device memory")
	}
	noargs, err := s.ModuleFunction(mod, "noargs")
	if err != nil {
		t.Fatal(err)
	}

	small := make([]byte, 8)
	tests := []struct {
		name string
		err  error
		code cudaerr.Error
	}{
		{"unknown kernel", second(s.ModuleFunction(mod, "nope")), cudaerr.SymbolNotFound},
		{"empty kernel name", second(s.ModuleFunction(mod, "")), cudaerr.InvalidValue},
		{"broken layout", second(s.ModuleFunction(mod, "broken")), cudaerr.InvalidKernelImage},
		{"unknown module", second(s.ModuleFunction(0x999999, "fill")), cudaerr.InvalidResourceHandle},
		{"unknown global", third(s.ModuleGlobal(mod, "nope")), cudaerr.SymbolNotFound},
		{"no arguments", s.FunctionLaunch(f, [3]uint32{1, 1, 1}, [3]uint32{1, 1, 1}, 0, 0, nil, nil, 0), cudaerr.InvalidValue},
		{"packed buffer too small", s.FunctionLaunch(f, [3]uint32{1, 1, 1}, [3]uint32{1, 1, 1}, 0, 0, nil, unsafe.Pointer(&small[0]), 8), cudaerr.InvalidValue},
		{"nil argument", s.FunctionLaunch(f, [3]uint32{1, 1, 1}, [3]uint32{1, 1, 1}, 0, 0, unsafe.Pointer(&[]unsafe.Pointer{nil, nil, nil}[0]), nil, 0), cudaerr.InvalidValue},
		{"bad stream", s.FunctionLaunch(noargs, [3]uint32{1, 1, 1}, [3]uint32{1, 1, 1}, 0, 0xbad, nil, nil, 0), cudaerr.InvalidResourceHandle},
		{"huge shared memory", s.FunctionLaunch(noargs, [3]uint32{1, 1, 1}, [3]uint32{1, 1, 1}, 1<<33, 0, nil, nil, 0), cudaerr.InvalidValue},
		{"unknown function", s.FunctionLaunch(0x999999, [3]uint32{1, 1, 1}, [3]uint32{1, 1, 1}, 0, 0, nil, nil, 0), cudaerr.InvalidResourceHandle},
		{"bad device", second(s.ModuleLoad(2, unsafe.Pointer(&image[0]))), cudaerr.InvalidDevice},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { wantCode(t, tt.name, tt.err, tt.code) })
	}
	if err := s.FunctionLaunch(noargs, [3]uint32{1, 1, 1}, [3]uint32{1, 1, 1}, 0, 0, nil, nil, 0); err != nil {
		t.Fatalf("a kernel with no parameters: %v", err)
	}

	// Unloading invalidates the module and its functions.
	if err := s.ModuleUnload(mod); err != nil {
		t.Fatal(err)
	}
	if fake.unloads[1] != 1 {
		t.Fatalf("unloads %v", fake.unloads)
	}
	wantCode(t, "launch after unload", s.FunctionLaunch(f, [3]uint32{1, 1, 1}, [3]uint32{1, 1, 1}, 0, 0, unsafe.Pointer(&args[0]), nil, 0), cudaerr.InvalidResourceHandle)
	wantCode(t, "lookup after unload", second(s.ModuleFunction(mod, "fill")), cudaerr.InvalidResourceHandle)
	wantCode(t, "unload twice", s.ModuleUnload(mod), cudaerr.InvalidResourceHandle)
}

func second[T any](_ T, err error) error { return err }

func third[T, U any](_ T, _ U, err error) error { return err }

// addrPointer is a device address as the C side passes it: a pointer the
// Go side never dereferences.
func addrPointer(a uint64) unsafe.Pointer {
	p := uintptr(a)
	return *(*unsafe.Pointer)(unsafe.Pointer(&p))
}

func TestPointerInfo(t *testing.T) {
	s := newShim(t)
	buf := make([]byte, 8192)
	if err := s.HostRegister(unsafe.Pointer(&buf[0]), 4096); err != nil {
		t.Fatal(err)
	}
	d, err := s.Malloc(1, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		p          unsafe.Pointer
		typ        runtime.MemoryType
		dev        int
		base, size uint64
	}{
		{"inside pinned memory", unsafe.Pointer(&buf[100]), runtime.MemoryTypeHost, 0, uint64(uintptr(unsafe.Pointer(&buf[0]))), 4096},
		{"past pinned memory", unsafe.Pointer(&buf[4096]), runtime.MemoryTypeUnregistered, runtime.UnregisteredDevice, 0, 0},
		{"device memory", addrPointer(d + 4096), runtime.MemoryTypeDevice, 1, d, 1 << 20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := s.PointerInfo(tt.p, 0)
			if err != nil {
				t.Fatal(err)
			}
			if a.Type != tt.typ || a.Device != tt.dev || a.Base != tt.base || a.Size < tt.size {
				t.Fatalf("PointerInfo = %+v, want type %v device %d base %#x size %d", a, tt.typ, tt.dev, tt.base, tt.size)
			}
		})
	}
	if err := s.Free(d); err != nil {
		t.Fatal(err)
	}
	if err := s.HostUnregister(unsafe.Pointer(&buf[0])); err != nil {
		t.Fatal(err)
	}
}
