package devicemap

import (
	"errors"
	"reflect"
	"slices"
	"testing"
)

func TestSelect(t *testing.T) {
	m := twoHostMap(t)
	// m: 0 GPU-alpha-0-0/0, 1 GPU-alpha-0-0/1, 2 GPU-alpha-0-1/0,
	//    3 GPU-beta-0-0/0,  4 GPU-beta-0-1/0
	tests := []struct {
		name    string
		spec    string
		want    []string // vGPU ids of the result; nil means a nil map
		wantErr error
		wantPos int
	}{
		{name: "empty spec selects nothing", spec: "", want: []string{}},
		{name: "one index", spec: "3", want: []string{"GPU-beta-0-0/0"}},
		{name: "indices reorder", spec: "4,0,2", want: []string{"GPU-beta-0-1/0", "GPU-alpha-0-0/0", "GPU-alpha-0-1/0"}},
		{name: "spaces around entries", spec: " 1 , 3", want: []string{"GPU-alpha-0-0/1", "GPU-beta-0-0/0"}},
		{name: "full GPU UUID of a one-vGPU GPU", spec: "GPU-beta-0-1", want: []string{"GPU-beta-0-1/0"}},
		{name: "vGPU id", spec: "GPU-alpha-0-0/1,GPU-alpha-0-0/0", want: []string{"GPU-alpha-0-0/1", "GPU-alpha-0-0/0"}},
		{name: "case-insensitive", spec: "gpu-BETA-0-0/0", want: []string{"GPU-beta-0-0/0"}},
		{name: "prefix of two GPUs", spec: "GPU-be,GPU-alpha-0-1", want: []string{}, wantErr: ErrAmbiguousDevice, wantPos: 0},
		{name: "unique prefix of a vGPU id", spec: "GPU-beta-0-1/", want: []string{"GPU-beta-0-1/0"}},
		{name: "full UUIDs", spec: "GPU-alpha-0-1,GPU-beta-0-0", want: []string{"GPU-alpha-0-1/0", "GPU-beta-0-0/0"}},
		{name: "mixed", spec: "GPU-beta-0-0/0,0", want: []string{"GPU-beta-0-0/0", "GPU-alpha-0-0/0"}},

		{name: "UUID of a GPU with two vGPUs is ambiguous", spec: "2,GPU-alpha-0-0,1", want: []string{"GPU-alpha-0-1/0"}, wantErr: ErrAmbiguousDevice, wantPos: 1},
		{name: "ambiguous prefix", spec: "GPU-a", want: []string{}, wantErr: ErrAmbiguousDevice, wantPos: 0},
		{name: "invalid entry stops parsing", spec: "1,x,2", want: []string{"GPU-alpha-0-0/1"}, wantErr: ErrInvalidEntry, wantPos: 1},
		{name: "out-of-range index stops parsing", spec: "1,0,5,2", want: []string{"GPU-alpha-0-0/1", "GPU-alpha-0-0/0"}, wantErr: ErrNoSuchDevice, wantPos: 2},
		{name: "huge index", spec: "99999999999999999999999", want: []string{}, wantErr: ErrNoSuchDevice},
		{name: "negative index is invalid", spec: "-1,0", want: []string{}, wantErr: ErrInvalidEntry},
		{name: "plus sign is invalid", spec: "+1", want: []string{}, wantErr: ErrInvalidEntry},
		{name: "unknown UUID", spec: "3,GPU-gamma", want: []string{"GPU-beta-0-0/0"}, wantErr: ErrNoSuchDevice, wantPos: 1},
		{name: "GPU- alone", spec: "GPU-", want: []string{}, wantErr: ErrInvalidEntry},
		{name: "MIG id", spec: "MIG-abc", want: []string{}, wantErr: ErrInvalidEntry},
		{name: "trailing comma", spec: "0,1,", want: []string{"GPU-alpha-0-0/0", "GPU-alpha-0-0/1"}, wantErr: ErrInvalidEntry, wantPos: 2},
		{name: "empty entry", spec: ",0", want: []string{}, wantErr: ErrInvalidEntry},
		{name: "invalid entry before a duplicate", spec: "0,x,0", want: []string{"GPU-alpha-0-0/0"}, wantErr: ErrInvalidEntry, wantPos: 1},

		{name: "duplicate index", spec: "0,2,0", want: nil, wantErr: ErrDuplicateDevice, wantPos: 2},
		{name: "duplicate by UUID and index", spec: "2,GPU-alpha-0-1", want: nil, wantErr: ErrDuplicateDevice, wantPos: 1},
		{name: "duplicate by vGPU id and prefix", spec: "GPU-beta-0-0/0,GPU-beta-0-0", want: nil, wantErr: ErrDuplicateDevice, wantPos: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := m.Select(tt.spec)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("Select(%q): %v", tt.spec, err)
				}
			} else {
				var se *SelectError
				if !errors.Is(err, tt.wantErr) || !errors.As(err, &se) || se.Pos != tt.wantPos {
					t.Fatalf("Select(%q) err = %v, want *SelectError at %d wrapping %v", tt.spec, err, tt.wantPos, tt.wantErr)
				}
			}
			if tt.want == nil {
				if got != nil {
					t.Fatalf("Select(%q) = %v, want nil map", tt.spec, vgpus(got))
				}
				return
			}
			if got == nil {
				t.Fatalf("Select(%q) = nil map", tt.spec)
			}
			if !slices.Equal(vgpus(got), tt.want) {
				t.Fatalf("Select(%q) = %v, want %v", tt.spec, vgpus(got), tt.want)
			}
			if err := got.Validate(); err != nil {
				t.Fatalf("result does not validate: %v", err)
			}
			if got.Base != m.Base || got.Window != m.Window || got.LeaseID != m.LeaseID {
				t.Fatal("Select changed base, window or lease")
			}
		})
	}
}

func TestSelectAmbiguousErrorNamesEntry(t *testing.T) {
	m := twoHostMap(t)
	_, err := m.Select("0, GPU-a")
	const want = `devicemap: device list entry 1 " GPU-a": ambiguous device: matches 3 devices (GPU-alpha-0-0/0, GPU-alpha-0-0/1, GPU-alpha-0-1/0); name a vGPU id`
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v\nwant  %s", err, want)
	}
}

func TestSelectPrefixes(t *testing.T) {
	// "GPU-h-1" is a whole UUID and a prefix of "GPU-h-10".
	devs := []Device{gpu("h", "s", 0, 0, gib), gpu("h", "s", 1, 0, gib), gpu("h", "s", 2, 0, gib)}
	devs[0].GPUUUID, devs[1].GPUUUID, devs[2].GPUUUID = "GPU-h-1", "GPU-h-10", "GPU-8f0c2a1e-77d1"
	m, err := New(devs)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct{ spec, want string }{
		{"GPU-h-1", "GPU-h-1/0"},
		{"GPU-h-10", "GPU-h-10/0"},
		{"GPU-h-1/", "GPU-h-1/0"},
		{"GPU-8", "GPU-8f0c2a1e-77d1/0"},
		{"GPU-8F0C", "GPU-8f0c2a1e-77d1/0"},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			got, err := m.Select(tt.spec)
			if err != nil || got.Len() != 1 || got.Devices[0].VGPU != tt.want {
				t.Fatalf("Select(%q) = %v, %v, want %s", tt.spec, got, err, tt.want)
			}
		})
	}
}

func TestSelectNetAndCopies(t *testing.T) {
	m := twoHostMap(t)
	one, err := m.Select("0,1")
	if err != nil {
		t.Fatal(err)
	}
	if len(one.Net) != 0 {
		t.Errorf("single-host selection keeps net links %v", one.Net)
	}
	both, err := m.Select("3,0")
	if err != nil {
		t.Fatal(err)
	}
	if len(both.Net) != 1 || both.Link(0, 1).RTT != twoHostNet[0].RTT {
		t.Errorf("two-host selection net %v, link %+v", both.Net, both.Link(0, 1))
	}
	if both.Devices[0].Index != 0 || both.Devices[1].Index != 1 {
		t.Error("result not re-indexed")
	}
	both.Devices[0].Peers[0].Kind = LinkSys
	if m.Devices[3].Peers[0].Kind != LinkPIX {
		t.Error("Select result shares memory with the map")
	}
}

func TestClone(t *testing.T) {
	m := twoHostMap(t)
	c := m.Clone()
	if !reflect.DeepEqual(c, m) {
		t.Fatal("Clone differs from the map")
	}
	c.Devices[0].Peers[0].NVLinks = 1
	c.Net[0].RTT = 1
	c.Devices[1].Host = "x"
	if m.Devices[0].Peers[0].NVLinks != 18 || m.Net[0].RTT != twoHostNet[0].RTT || m.Devices[1].Host != "alpha" {
		t.Fatal("Clone shares memory with the map")
	}
}

func TestHostGroups(t *testing.T) {
	m := twoHostMap(t)
	if got, want := m.HostGroups(), [][]int{{0, 1, 2}, {3, 4}}; !reflect.DeepEqual(got, want) {
		t.Fatalf("HostGroups = %v, want %v", got, want)
	}
	sel, err := m.Select("3,0,4")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := sel.HostGroups(), [][]int{{0, 2}, {1}}; !reflect.DeepEqual(got, want) {
		t.Fatalf("HostGroups of a selection = %v, want %v", got, want)
	}
	if got := (&Map{}).HostGroups(); got != nil {
		t.Fatalf("HostGroups of an empty map = %v", got)
	}
}
