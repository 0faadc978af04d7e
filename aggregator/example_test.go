package aggregator_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"net"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/xgpu/xgpu/aggregator"
	"github.com/xgpu/xgpu/internal/pb"
)

// An aggregator with one registered server of two GPUs, and a client that
// leases both.
func Example() {
	ctx := context.Background()
	a, err := aggregator.New(ctx, aggregator.Config{
		Store:  aggregator.NewMemoryStore(), // an embedded etcd when nil
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		log.Fatal(err)
	}
	defer a.Close()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	go a.Serve(l)

	// A GPU server registers its inventory (package server does this).
	conn, err := grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	inv := &pb.Inventory{ServerId: "node1", Host: "node1", Address: "node1:7071", Backend: "host"}
	for i := range 2 {
		uuid := fmt.Sprintf("GPU-node1-%d", i)
		inv.Gpus = append(inv.Gpus, &pb.GPU{Index: int32(i), Uuid: uuid, MemoryBytes: 80 << 30})
		inv.Vgpus = append(inv.Vgpus, &pb.VGPU{Id: uuid + "/0", GpuUuid: uuid, GpuIndex: int32(i),
			MemoryBytes: 80 << 30, ComputeShare: 100})
	}
	if _, err := pb.NewAggregatorClient(conn).Register(ctx, &pb.RegisterRequest{Inventory: inv, Instance: "boot-1"}); err != nil {
		log.Fatal(err)
	}

	// A client leases two vGPUs.
	c, err := aggregator.Dial(ctx, l.Addr().String())
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	lease, err := c.Allocate(ctx, aggregator.AllocateOptions{Count: 2, Owner: "example"})
	if err != nil {
		log.Fatal(err)
	}
	for i, d := range lease.Map.Devices {
		fmt.Println(i, d.Host, d.VGPU)
	}
	fmt.Println(lease.State)
	if err := c.Release(ctx, lease.ID); err != nil {
		log.Fatal(err)
	}
	// Output:
	// 0 node1 GPU-node1-0/0
	// 1 node1 GPU-node1-1/0
	// active
}
