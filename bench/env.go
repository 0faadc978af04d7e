package bench

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/xgpu/xgpu/devicemap"
	"github.com/xgpu/xgpu/internal/pb"
)

// LeaseID is the lease id of the device maps DeviceMap builds: standalone
// servers (no aggregator) accept any.
const LeaseID = "xgpu-bench"

// DeviceMap asks each of the standalone servers at servers (gRPC control
// addresses, host:port) for its inventory and builds a device map of the
// first vGPU of each, in the order given, as an aggregator's lease would:
// logical device i is on servers[i]. opts are the gRPC dial options; nil:
// plaintext.
func DeviceMap(ctx context.Context, servers []string, opts ...grpc.DialOption) (*devicemap.Map, error) {
	if len(servers) == 0 {
		return nil, errors.New("bench: no servers")
	}
	if opts == nil {
		opts = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	}
	devs := make([]devicemap.Device, 0, len(servers))
	for _, addr := range servers {
		d, err := firstDevice(ctx, addr, opts)
		if err != nil {
			return nil, err
		}
		devs = append(devs, d)
	}
	m, err := devicemap.New(devs, devicemap.KeepOrder(), devicemap.WithLeaseID(LeaseID))
	if err != nil {
		return nil, fmt.Errorf("bench: device map: %w", err)
	}
	return m, nil
}

// firstDevice returns the first vGPU of the server at addr as a device of
// a map.
func firstDevice(ctx context.Context, addr string, opts []grpc.DialOption) (devicemap.Device, error) {
	conn, err := grpc.NewClient(addr, opts...)
	if err != nil {
		return devicemap.Device{}, fmt.Errorf("bench: server %s: %w", addr, err)
	}
	defer conn.Close()
	inv, err := pb.NewServerClient(conn).Inventory(ctx, &pb.InventoryRequest{})
	if err != nil {
		return devicemap.Device{}, fmt.Errorf("bench: inventory of server %s: %w", addr, err)
	}
	vs := inv.GetVgpus()
	if len(vs) == 0 {
		return devicemap.Device{}, fmt.Errorf("bench: server %s has no vGPU", addr)
	}
	v := vs[0]
	gi := int(v.GetGpuIndex())
	var g *pb.GPU
	for _, x := range inv.GetGpus() {
		if int(x.GetIndex()) == gi {
			g = x
		}
	}
	if g == nil {
		return devicemap.Device{}, fmt.Errorf("bench: server %s: vGPU %s names GPU %d, which its inventory lacks", addr, v.GetId(), gi)
	}
	return devicemap.Device{
		Host: inv.GetHost(), Server: inv.GetServerId(), Address: inv.GetAddress(),
		GPUUUID: v.GetGpuUuid(), GPUIndex: gi, VGPU: v.GetId(), Slot: int(v.GetSlot()),
		MemoryQuota: v.GetMemoryBytes(),
		Properties:  devicemap.Properties{Name: g.GetName(), TotalMemory: g.GetMemoryBytes()},
	}, nil
}
