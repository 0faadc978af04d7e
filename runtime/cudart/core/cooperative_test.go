package core

import (
	"os"
	"testing"
	"unsafe"

	"github.com/xgpu/xgpu/internal/cudaerr"
)

var stubCoop byte

// TestCooperativeLaunches checks that the cooperative flag reaches the
// kernel API through both launch paths, that unknown flags are refused,
// and that a captured cooperative launch replays as one (and keeps the
// flag when its node gets new parameters).
func TestCooperativeLaunches(t *testing.T) {
	s := newShim(t)
	fake := newFake()
	s.kapi = fake
	fake.layouts["fill"] = []Param{{0, 8}, {8, 4}, {12, 4}}

	image, err := os.ReadFile("../fatbin/testdata/vector_add.fatbin")
	if err != nil {
		t.Fatal(err)
	}
	mod, err := s.RegisterFatbin(unsafe.Pointer(&image[0]))
	if err != nil {
		t.Fatal(err)
	}
	name := []byte("fill\x00")
	if err := s.RegisterFunction(mod, uintptr(unsafe.Pointer(&stubCoop)), "fill", unsafe.Pointer(&name[0])); err != nil {
		t.Fatal(err)
	}
	k, err := s.Kernel(uintptr(unsafe.Pointer(&stubCoop)))
	if err != nil {
		t.Fatal(err)
	}
	text := []byte("xgpu-host-module v1\nkernel fill\n\x00")
	dmod, err := s.ModuleLoad(0, unsafe.Pointer(&text[0]))
	if err != nil {
		t.Fatal(err)
	}
	f, err := s.ModuleFunction(dmod, "fill")
	if err != nil {
		t.Fatal(err)
	}

	p, n, v := uint64(0x7f00_0000_1000), uint32(64), uint32(5)
	args := []unsafe.Pointer{unsafe.Pointer(&p), unsafe.Pointer(&n), unsafe.Pointer(&v)}
	argv := unsafe.Pointer(&args[0])
	grid, block := [3]uint32{2, 1, 1}, [3]uint32{32, 1, 1}
	tests := []struct {
		name   string
		launch func() error
		coop   bool
	}{
		{"runtime, ordinary", func() error { return s.LaunchEx(k, 0, grid, block, 0, 0, argv, 0) }, false},
		{"runtime, cooperative", func() error { return s.LaunchEx(k, 0, grid, block, 0, 0, argv, LaunchCooperative) }, true},
		{"driver, kernel parameters", func() error {
			return s.FunctionLaunchEx(f, grid, block, 0, 0, argv, nil, 0, LaunchCooperative)
		}, true},
		{"driver, packed buffer", func() error {
			packed := make([]byte, 16)
			return s.FunctionLaunchEx(f, grid, block, 0, 0, nil, unsafe.Pointer(&packed[0]), 16, LaunchCooperative)
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(fake.launches)
			if err := tt.launch(); err != nil {
				t.Fatal(err)
			}
			if len(fake.launches) != before+1 {
				t.Fatalf("%d launches, want %d", len(fake.launches), before+1)
			}
			if l := fake.launches[before]; l.coop != tt.coop || l.name != "fill" || l.grid != grid {
				t.Fatalf("launch %+v, want cooperative %v", l, tt.coop)
			}
		})
	}
	before := len(fake.launches)
	wantCode(t, "unknown runtime launch flag", s.LaunchEx(k, 0, grid, block, 0, 0, argv, 0x8), cudaerr.InvalidValue)
	wantCode(t, "unknown driver launch flag", s.FunctionLaunchEx(f, grid, block, 0, 0, argv, nil, 0, 0x8), cudaerr.InvalidValue)
	if len(fake.launches) != before {
		t.Fatalf("refused launches reached the kernel API")
	}

	t.Run("captured", func(t *testing.T) {
		st, err := s.StreamCreate(0, 1, 0)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.BeginCapture(0, st, CaptureModeGlobal, 1, 0, nil); err != nil {
			t.Fatal(err)
		}
		before := len(fake.launches)
		if err := s.LaunchEx(k, 0, grid, block, 0, st, argv, LaunchCooperative); err != nil {
			t.Fatal(err)
		}
		if err := s.FunctionLaunchEx(f, grid, block, 0, st, argv, nil, 0, 0); err != nil {
			t.Fatal(err)
		}
		if len(fake.launches) != before {
			t.Fatalf("a captured launch ran")
		}
		g, err := s.EndCapture(st, 1)
		if err != nil {
			t.Fatal(err)
		}
		nodes, err := s.GraphNodes(g, false)
		if err != nil || len(nodes) != 2 {
			t.Fatalf("nodes %v, %v; want 2", nodes, err)
		}
		x, err := s.GraphInstantiate(g, 0)
		if err != nil {
			t.Fatal(err)
		}
		for range 2 {
			if err := s.GraphLaunch(x, 0, st); err != nil {
				t.Fatal(err)
			}
		}
		got := fake.launches[before:]
		if len(got) != 4 || !got[0].coop || got[1].coop || !got[2].coop || got[3].coop {
			t.Fatalf("replayed launches %+v: want cooperative, ordinary, twice", got)
		}
		// New parameters for the cooperative node keep it cooperative.
		v2 := uint32(9)
		args2 := []unsafe.Pointer{unsafe.Pointer(&p), unsafe.Pointer(&n), unsafe.Pointer(&v2)}
		if err := s.GraphExecKernelParams(x, nodes[0], k, 0, grid, block, 0, unsafe.Pointer(&args2[0])); err != nil {
			t.Fatal(err)
		}
		before = len(fake.launches)
		if err := s.GraphLaunch(x, 0, st); err != nil {
			t.Fatal(err)
		}
		if l := fake.launches[before]; !l.coop || l.args[12] != 9 {
			t.Fatalf("launch after new parameters %+v: want cooperative with the new value", l)
		}
	})
}
