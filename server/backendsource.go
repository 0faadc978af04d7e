package server

import (
	"context"
	"fmt"

	"github.com/xgpu/xgpu/internal/pb"
	"github.com/xgpu/xgpu/server/backend"
)

// BackendGPUs lists the physical devices of a Backend as inventory GPUs: the
// inventory of a host-backend server, whose devices NVML cannot see.
func BackendGPUs(b backend.Backend) ([]*pb.GPU, error) {
	infos, err := b.Devices()
	if err != nil {
		return nil, fmt.Errorf("server: %s backend devices: %w", b.Name(), err)
	}
	gpus := make([]*pb.GPU, len(infos))
	for i, in := range infos {
		g := &pb.GPU{
			Index:           int32(i),
			Uuid:            in.UUID,
			Name:            in.Name,
			MemoryBytes:     in.TotalMemory,
			PciBusId:        in.PCIBusID,
			CcMajor:         int32(in.ComputeMajor),
			CcMinor:         int32(in.ComputeMinor),
			Multiprocessors: int32(in.Multiprocessors),
		}
		for _, p := range in.Peers {
			if p.UUID == in.UUID {
				continue
			}
			l := &pb.PeerLink{PeerUuid: p.UUID, Kind: p.PCIePath}
			if p.NVLinks > 0 {
				l.Kind, l.Nvlinks = "NV", int32(p.NVLinks)
			}
			if l.Kind == "" {
				l.Kind = "SYS"
			}
			g.Peers = append(g.Peers, l)
		}
		gpus[i] = g
	}
	return gpus, nil
}

// BackendSource is a GPUSource over a Backend's devices.
func BackendSource(b backend.Backend) GPUSource {
	return GPUSourceFunc(func(context.Context) ([]*pb.GPU, error) { return BackendGPUs(b) })
}
