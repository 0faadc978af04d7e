package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/xgpu/xgpu/internal/pb"
	"github.com/xgpu/xgpu/server"
)

// visibleGPUs applies CUDA_VISIBLE_DEVICES to an NVML inventory. NVML lists
// every GPU of the machine whatever the variable says, while the driver in
// the worker sees only the visible ones, numbered from 0 in the order the
// variable gives; so the served list must be cut and renumbered the same
// way. Entries are NVML indices or GPU UUIDs (a unique prefix is enough);
// as in CUDA, the list ends at the first entry that names no GPU. An unset
// variable leaves the list as it is; a set but empty one hides every GPU,
// as it does for CUDA, which is an error for a server.
func visibleGPUs(gpus []*pb.GPU, spec string, set bool) ([]*pb.GPU, error) {
	if !set {
		return gpus, nil
	}
	var out []*pb.GPU
	seen := map[string]bool{}
	for _, e := range strings.Split(spec, ",") {
		e = strings.TrimSpace(e)
		g := pickGPU(gpus, e)
		if g == nil {
			break
		}
		if seen[g.GetUuid()] {
			return nil, fmt.Errorf("CUDA_VISIBLE_DEVICES=%q names GPU %s twice", spec, g.GetUuid())
		}
		seen[g.GetUuid()] = true
		out = append(out, g)
	}
	for i, g := range out {
		g.Index = int32(i)
		var peers []*pb.PeerLink
		for _, p := range g.GetPeers() {
			if seen[p.GetPeerUuid()] {
				peers = append(peers, p)
			}
		}
		g.Peers = peers
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("CUDA_VISIBLE_DEVICES=%q leaves no GPU visible", spec)
	}
	return out, nil
}

func pickGPU(gpus []*pb.GPU, e string) *pb.GPU {
	if e == "" {
		return nil
	}
	if i, err := strconv.Atoi(e); err == nil {
		for _, g := range gpus {
			if int(g.GetIndex()) == i {
				return g
			}
		}
		return nil
	}
	var hit *pb.GPU
	for _, g := range gpus {
		if strings.HasPrefix(strings.ToLower(g.GetUuid()), strings.ToLower(e)) {
			if hit != nil {
				return nil // ambiguous prefix: CUDA treats it as invalid
			}
			hit = g
		}
	}
	return hit
}

// visibleSource wraps a GPU source with CUDA_VISIBLE_DEVICES.
func visibleSource(src server.GPUSource, spec string, set bool) server.GPUSource {
	return server.GPUSourceFunc(func(ctx context.Context) ([]*pb.GPU, error) {
		gpus, err := src.GPUs(ctx)
		if err != nil {
			return nil, err
		}
		return visibleGPUs(gpus, spec, set)
	})
}
