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
	refs := make([]DeviceRef, len(servers))
	for i, s := range servers {
		refs[i] = DeviceRef{Server: s}
	}
	return DeviceMapOf(ctx, refs, opts...)
}

// DeviceRef names a GPU of a standalone server.
type DeviceRef struct {
	Server string // the server's gRPC control address, host:port
	GPU    int    // the GPU's index in the server's inventory
}

// DeviceMapOf builds a device map of the first vGPU of each GPU refs
// name, in the order given: logical device i is the GPU of refs[i]. Each
// server is asked for its inventory once. opts are the gRPC dial options;
// nil: plaintext.
func DeviceMapOf(ctx context.Context, refs []DeviceRef, opts ...grpc.DialOption) (*devicemap.Map, error) {
	if len(refs) == 0 {
		return nil, errors.New("bench: no devices")
	}
	if opts == nil {
		opts = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	}
	invs := make(map[string]*pb.Inventory)
	devs := make([]devicemap.Device, 0, len(refs))
	for _, ref := range refs {
		inv, ok := invs[ref.Server]
		if !ok {
			var err error
			if inv, err = inventory(ctx, ref.Server, opts); err != nil {
				return nil, err
			}
			invs[ref.Server] = inv
		}
		d, err := deviceOf(inv, ref)
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

// inventory asks the server at addr for its inventory.
func inventory(ctx context.Context, addr string, opts []grpc.DialOption) (*pb.Inventory, error) {
	conn, err := grpc.NewClient(addr, opts...)
	if err != nil {
		return nil, fmt.Errorf("bench: server %s: %w", addr, err)
	}
	defer conn.Close()
	inv, err := pb.NewServerClient(conn).Inventory(ctx, &pb.InventoryRequest{})
	if err != nil {
		return nil, fmt.Errorf("bench: inventory of server %s: %w", addr, err)
	}
	return inv, nil
}

// deviceOf returns the first vGPU of the GPU ref names as a device of a
// map.
func deviceOf(inv *pb.Inventory, ref DeviceRef) (devicemap.Device, error) {
	var g *pb.GPU
	for _, x := range inv.GetGpus() {
		if int(x.GetIndex()) == ref.GPU {
			g = x
		}
	}
	if g == nil {
		return devicemap.Device{}, fmt.Errorf("bench: server %s has no GPU %d (%d GPUs)", ref.Server, ref.GPU, len(inv.GetGpus()))
	}
	for _, v := range inv.GetVgpus() {
		if int(v.GetGpuIndex()) != ref.GPU {
			continue
		}
		props := devicemap.Properties{Name: g.GetName(), TotalMemory: g.GetMemoryBytes()}
		if g.GetCcMajor() > 0 {
			props.ComputeCapability = fmt.Sprintf("%d.%d", g.GetCcMajor(), g.GetCcMinor())
		}
		return devicemap.Device{
			Host: inv.GetHost(), Server: inv.GetServerId(), Address: inv.GetAddress(),
			GPUUUID: v.GetGpuUuid(), GPUIndex: ref.GPU, VGPU: v.GetId(), Slot: int(v.GetSlot()),
			MemoryQuota: v.GetMemoryBytes(), Properties: props,
		}, nil
	}
	return devicemap.Device{}, fmt.Errorf("bench: server %s has no vGPU on GPU %d", ref.Server, ref.GPU)
}
