package server

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/xgpu/xgpu/internal/pb"
)

// GPUSource lists the physical GPUs of this host: index, UUID, name, memory,
// PCI bus id, compute capability, SM count and the links to the other GPUs.
// server/nvml implements it with NVML; StaticGPUs serves a fixed list (the
// host backend's emulated devices).
type GPUSource interface {
	GPUs(ctx context.Context) ([]*pb.GPU, error)
}

// StaticGPUs is a GPUSource that returns a fixed list of GPUs, e.g. the
// devices of the host backend: server.StaticGPUs(gpus). Each call returns a
// deep copy, so callers may modify what they get.
type StaticGPUs []*pb.GPU

// GPUs returns a copy of the list.
func (s StaticGPUs) GPUs(ctx context.Context) ([]*pb.GPU, error) {
	out := make([]*pb.GPU, len(s))
	for i, g := range s {
		if g == nil {
			return nil, fmt.Errorf("server: static GPU %d is nil", i)
		}
		out[i] = proto.CloneOf(g)
	}
	return out, nil
}

// GPUSourceFunc adapts a function to a GPUSource.
type GPUSourceFunc func(ctx context.Context) ([]*pb.GPU, error)

// GPUs calls f.
func (f GPUSourceFunc) GPUs(ctx context.Context) ([]*pb.GPU, error) { return f(ctx) }

var (
	_ GPUSource = StaticGPUs(nil)
	_ GPUSource = GPUSourceFunc(nil)
)

// vgpuMemoryAlign is the granularity of evenly split vGPU memory: the CUDA
// VMM allocation granularity of current GPUs.
const vgpuMemoryAlign = 2 << 20

// Partition splits each GPU into perGPU vGPUs, in GPU order and then slot
// order. Zero perGPU means 1. Each vGPU gets memEach bytes of memory, or,
// when memEach is zero, an even share of its GPU's memory rounded down to
// 2 MiB; it gets 100/perGPU percent of the GPU's compute (rounded down). A
// vGPU's id is "<GPU UUID>/<slot>".
//
// Partition fails, returning nil, if perGPU is outside 0..MaxVGPUsPerGPU, a
// GPU is nil, has no UUID, a UUID containing "/" or a UUID seen before, or a
// GPU's memory cannot hold perGPU vGPUs of the requested (or at least 2 MiB
// of) memory.
func Partition(gpus []*pb.GPU, perGPU int, memEach uint64) ([]*pb.VGPU, error) {
	if perGPU < 0 || perGPU > MaxVGPUsPerGPU {
		return nil, fmt.Errorf("server: partition: %d vGPUs per GPU is outside 0..%d", perGPU, MaxVGPUsPerGPU)
	}
	if perGPU == 0 {
		perGPU = 1
	}
	share := uint32(100 / perGPU)
	seen := make(map[string]struct{}, len(gpus))
	out := make([]*pb.VGPU, 0, len(gpus)*perGPU)
	for i, g := range gpus {
		if g == nil {
			return nil, fmt.Errorf("server: partition: GPU %d is nil", i)
		}
		uuid := g.GetUuid()
		switch {
		case uuid == "":
			return nil, fmt.Errorf("server: partition: GPU %d has no UUID", g.GetIndex())
		case strings.Contains(uuid, "/"):
			return nil, fmt.Errorf("server: partition: GPU %d: UUID %q contains '/'", g.GetIndex(), uuid)
		}
		if _, dup := seen[uuid]; dup {
			return nil, fmt.Errorf("server: partition: GPU %d: UUID %s is listed twice", g.GetIndex(), uuid)
		}
		seen[uuid] = struct{}{}

		// Compare against the floor of memory/perGPU: memEach*perGPU <= total
		// exactly when memEach <= total/perGPU, and the division cannot
		// overflow as the product could.
		most := g.GetMemoryBytes() / uint64(perGPU)
		mem := memEach
		switch {
		case mem == 0:
			mem = most &^ (vgpuMemoryAlign - 1)
			if mem == 0 {
				return nil, fmt.Errorf("server: partition: GPU %s: %d bytes of memory cannot hold %d vGPUs of at least 2 MiB",
					uuid, g.GetMemoryBytes(), perGPU)
			}
		case mem > most:
			return nil, fmt.Errorf("server: partition: GPU %s: %d vGPUs of %d bytes exceed its %d bytes of memory",
				uuid, perGPU, memEach, g.GetMemoryBytes())
		}
		for slot := range perGPU {
			out = append(out, &pb.VGPU{
				Id:           uuid + "/" + strconv.Itoa(slot),
				GpuUuid:      uuid,
				GpuIndex:     g.GetIndex(),
				Slot:         int32(slot),
				MemoryBytes:  mem,
				ComputeShare: share,
			})
		}
	}
	return out, nil
}
