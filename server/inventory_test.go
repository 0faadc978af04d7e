package server

import (
	"context"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/xgpu/xgpu/internal/pb"
)

const (
	mib = 1 << 20
	gib = 1 << 30
)

func testGPU(index int32, uuid string, mem uint64) *pb.GPU {
	return &pb.GPU{Index: index, Uuid: uuid, Name: "Test GPU", MemoryBytes: mem, PciBusId: "00000000:18:00.0", CcMajor: 9}
}

func TestPartition(t *testing.T) {
	h200 := uint64(150754820096) // an H200's memory as NVML reports it
	tests := []struct {
		name    string
		gpus    []*pb.GPU
		perGPU  int
		memEach uint64
		want    []*pb.VGPU
		wantErr string
	}{
		{
			name:   "zero per GPU means one vGPU with all memory",
			gpus:   []*pb.GPU{testGPU(0, "GPU-a", 8*gib)},
			perGPU: 0,
			want:   []*pb.VGPU{{Id: "GPU-a/0", GpuUuid: "GPU-a", GpuIndex: 0, Slot: 0, MemoryBytes: 8 * gib, ComputeShare: 100}},
		},
		{
			name:   "one per GPU rounds memory down to 2 MiB",
			gpus:   []*pb.GPU{testGPU(0, "GPU-a", 8*gib+3*mib)},
			perGPU: 1,
			want:   []*pb.VGPU{{Id: "GPU-a/0", GpuUuid: "GPU-a", MemoryBytes: 8*gib + 2*mib, ComputeShare: 100}},
		},
		{
			name:   "two GPUs two slots each keep GPU then slot order",
			gpus:   []*pb.GPU{testGPU(0, "GPU-a", 8*gib), testGPU(1, "GPU-b", 4*gib)},
			perGPU: 2,
			want: []*pb.VGPU{
				{Id: "GPU-a/0", GpuUuid: "GPU-a", GpuIndex: 0, Slot: 0, MemoryBytes: 4 * gib, ComputeShare: 50},
				{Id: "GPU-a/1", GpuUuid: "GPU-a", GpuIndex: 0, Slot: 1, MemoryBytes: 4 * gib, ComputeShare: 50},
				{Id: "GPU-b/0", GpuUuid: "GPU-b", GpuIndex: 1, Slot: 0, MemoryBytes: 2 * gib, ComputeShare: 50},
				{Id: "GPU-b/1", GpuUuid: "GPU-b", GpuIndex: 1, Slot: 1, MemoryBytes: 2 * gib, ComputeShare: 50},
			},
		},
		{
			name:   "three slots of an H200 round share and memory down",
			gpus:   []*pb.GPU{testGPU(3, "GPU-h", h200)},
			perGPU: 3,
			want: []*pb.VGPU{
				{Id: "GPU-h/0", GpuUuid: "GPU-h", GpuIndex: 3, Slot: 0, MemoryBytes: 50249859072, ComputeShare: 33},
				{Id: "GPU-h/1", GpuUuid: "GPU-h", GpuIndex: 3, Slot: 1, MemoryBytes: 50249859072, ComputeShare: 33},
				{Id: "GPU-h/2", GpuUuid: "GPU-h", GpuIndex: 3, Slot: 2, MemoryBytes: 50249859072, ComputeShare: 33},
			},
		},
		{
			name:    "explicit memory is used as given",
			gpus:    []*pb.GPU{testGPU(0, "GPU-a", 8*gib)},
			perGPU:  2,
			memEach: 3*gib + 1,
			want: []*pb.VGPU{
				{Id: "GPU-a/0", GpuUuid: "GPU-a", MemoryBytes: 3*gib + 1, ComputeShare: 50},
				{Id: "GPU-a/1", GpuUuid: "GPU-a", Slot: 1, MemoryBytes: 3*gib + 1, ComputeShare: 50},
			},
		},
		{
			name:    "explicit memory filling the GPU exactly",
			gpus:    []*pb.GPU{testGPU(0, "GPU-a", 8*gib)},
			perGPU:  4,
			memEach: 2 * gib,
			want: []*pb.VGPU{
				{Id: "GPU-a/0", GpuUuid: "GPU-a", Slot: 0, MemoryBytes: 2 * gib, ComputeShare: 25},
				{Id: "GPU-a/1", GpuUuid: "GPU-a", Slot: 1, MemoryBytes: 2 * gib, ComputeShare: 25},
				{Id: "GPU-a/2", GpuUuid: "GPU-a", Slot: 2, MemoryBytes: 2 * gib, ComputeShare: 25},
				{Id: "GPU-a/3", GpuUuid: "GPU-a", Slot: 3, MemoryBytes: 2 * gib, ComputeShare: 25},
			},
		},
		{
			name:   "maximum slots get one percent each",
			gpus:   []*pb.GPU{testGPU(0, "GPU-a", 100*2*mib)},
			perGPU: MaxVGPUsPerGPU,
			want: func() []*pb.VGPU {
				var v []*pb.VGPU
				for i := range MaxVGPUsPerGPU {
					v = append(v, &pb.VGPU{Id: "GPU-a/" + strconv.Itoa(i), GpuUuid: "GPU-a", Slot: int32(i), MemoryBytes: 2 * mib, ComputeShare: 1})
				}
				return v
			}(),
		},
		{name: "no GPUs give no vGPUs", gpus: nil, perGPU: 2, want: []*pb.VGPU{}},
		{name: "explicit memory exceeding the GPU", gpus: []*pb.GPU{testGPU(0, "GPU-a", 8*gib)}, perGPU: 2, memEach: 4*gib + 1, wantErr: "2 vGPUs of 4294967297 bytes exceed its 8589934592 bytes"},
		{name: "explicit memory whose product overflows", gpus: []*pb.GPU{testGPU(0, "GPU-a", 8*gib)}, perGPU: 4, memEach: 1 << 62, wantErr: "exceed"},
		{name: "memory too small to split", gpus: []*pb.GPU{testGPU(0, "GPU-a", 3*mib)}, perGPU: 2, wantErr: "cannot hold 2 vGPUs of at least 2 MiB"},
		{name: "GPU without memory", gpus: []*pb.GPU{testGPU(0, "GPU-a", 0)}, perGPU: 1, wantErr: "cannot hold 1 vGPUs"},
		{name: "negative per GPU", gpus: []*pb.GPU{testGPU(0, "GPU-a", gib)}, perGPU: -1, wantErr: "-1 vGPUs per GPU is outside 0..100"},
		{name: "too many per GPU", gpus: []*pb.GPU{testGPU(0, "GPU-a", gib)}, perGPU: 101, wantErr: "outside 0..100"},
		{name: "nil GPU", gpus: []*pb.GPU{testGPU(0, "GPU-a", gib), nil}, perGPU: 1, wantErr: "GPU 1 is nil"},
		{name: "missing UUID", gpus: []*pb.GPU{testGPU(2, "", gib)}, perGPU: 1, wantErr: "GPU 2 has no UUID"},
		{name: "UUID with slash", gpus: []*pb.GPU{testGPU(0, "GPU-a/b", gib)}, perGPU: 1, wantErr: "contains '/'"},
		{name: "duplicate UUID", gpus: []*pb.GPU{testGPU(0, "GPU-a", gib), testGPU(1, "GPU-a", gib)}, perGPU: 1, wantErr: "GPU 1: UUID GPU-a is listed twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Partition(tt.gpus, tt.perGPU, tt.memEach)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.HasPrefix(err.Error(), "server: partition: ") {
					t.Fatalf("Partition() error = %v, want one containing %q", err, tt.wantErr)
				}
				if got != nil {
					t.Fatalf("Partition() = %v with an error, want nil", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("Partition() error = %v", err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("Partition() gave %d vGPUs, want %d: %v", len(got), len(tt.want), got)
			}
			for i := range got {
				if !proto.Equal(got[i], tt.want[i]) {
					t.Errorf("vGPU %d = %v, want %v", i, got[i], tt.want[i])
				}
			}
		})
	}
}

func TestStaticGPUs(t *testing.T) {
	tests := []struct {
		name    string
		src     StaticGPUs
		want    int
		wantErr string
	}{
		{name: "empty", src: nil, want: 0},
		{name: "two GPUs", src: StaticGPUs{testGPU(0, "GPU-a", gib), testGPU(1, "GPU-b", gib)}, want: 2},
		{name: "nil entry", src: StaticGPUs{testGPU(0, "GPU-a", gib), nil}, wantErr: "server: static GPU 1 is nil"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.src.GPUs(context.Background())
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("GPUs() error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("GPUs() error = %v", err)
			}
			if len(got) != tt.want {
				t.Fatalf("GPUs() gave %d GPUs, want %d", len(got), tt.want)
			}
			for i := range got {
				if got[i] == tt.src[i] || !proto.Equal(got[i], tt.src[i]) {
					t.Errorf("GPU %d is not an equal copy", i)
				}
				got[i].Name = "changed"
				if tt.src[i].Name == "changed" {
					t.Errorf("changing the result changed the source")
				}
			}
		})
	}
}

func TestGPUSourceFunc(t *testing.T) {
	want := []*pb.GPU{testGPU(0, "GPU-a", gib)}
	got, err := GPUSourceFunc(func(context.Context) ([]*pb.GPU, error) { return want, nil }).GPUs(context.Background())
	if err != nil || len(got) != 1 || got[0] != want[0] {
		t.Fatalf("GPUSourceFunc.GPUs() = %v, %v; want the function's result", got, err)
	}
}
