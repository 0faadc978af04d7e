package main

import (
	"testing"

	"github.com/xgpu/xgpu/internal/pb"
)

func TestVisibleGPUs(t *testing.T) {
	mk := func() []*pb.GPU {
		var gs []*pb.GPU
		uuids := []string{"GPU-aaaa-0", "GPU-bbbb-1", "GPU-cccc-2", "GPU-ccdd-3"}
		for i, u := range uuids {
			g := &pb.GPU{Index: int32(i), Uuid: u}
			for j, v := range uuids {
				if j != i {
					g.Peers = append(g.Peers, &pb.PeerLink{PeerUuid: v, Kind: "NV", Nvlinks: 18})
				}
			}
			gs = append(gs, g)
		}
		return gs
	}
	tests := []struct {
		name    string
		spec    string
		set     bool
		want    []string
		wantErr bool
	}{
		{"unset keeps all", "", false, []string{"GPU-aaaa-0", "GPU-bbbb-1", "GPU-cccc-2", "GPU-ccdd-3"}, false},
		{"one index", "1", true, []string{"GPU-bbbb-1"}, false},
		{"reordered", "2,0", true, []string{"GPU-cccc-2", "GPU-aaaa-0"}, false},
		{"uuid prefix", "GPU-bbbb", true, []string{"GPU-bbbb-1"}, false},
		{"stops at invalid", "3,9,0", true, []string{"GPU-ccdd-3"}, false},
		{"ambiguous prefix stops", "0,GPU-cc,1", true, []string{"GPU-aaaa-0"}, false},
		{"set but empty", "", true, nil, true},
		{"first invalid", "7", true, nil, true},
		{"duplicate", "1,1", true, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := visibleGPUs(mk(), tt.spec, tt.set)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %d GPUs, want %v", len(got), tt.want)
			}
			for i, g := range got {
				if g.GetUuid() != tt.want[i] {
					t.Fatalf("GPU %d = %s, want %s", i, g.GetUuid(), tt.want[i])
				}
				if tt.set && int(g.GetIndex()) != i {
					t.Fatalf("GPU %s index %d, want %d (renumbered as the driver does)", g.GetUuid(), g.GetIndex(), i)
				}
				if tt.set && len(g.GetPeers()) != len(got)-1 {
					t.Fatalf("GPU %s keeps %d peers, want only the %d visible", g.GetUuid(), len(g.GetPeers()), len(got)-1)
				}
			}
		})
	}
}
