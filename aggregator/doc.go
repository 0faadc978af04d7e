// Package aggregator is xgpu's pool controller: GPU servers register their
// vGPUs and heartbeat, and clients lease vGPUs, getting an ordered device map
// (package devicemap) whose devices may sit on many hosts.
//
// Running an aggregator:
//
//	a, err := aggregator.New(ctx, aggregator.Config{DataDir: "/var/lib/xgpu/aggregator"})
//	if err != nil {
//		return err
//	}
//	l, err := net.Listen("tcp", ":7070")
//	if err != nil {
//		return err
//	}
//	go func() { errc <- a.Serve(l) }() // ErrServerClosed after Shutdown
//	...
//	err = a.Shutdown(ctx)
//
// Leasing vGPUs from it:
//
//	c, err := aggregator.Dial(ctx, "aggregator.example:7070")
//	if err != nil {
//		return err // unreachable: wraps ErrUnavailable, within the dial timeout
//	}
//	defer c.Close()
//	lease, err := c.Allocate(ctx, aggregator.AllocateOptions{Count: 8, MemoryBytes: 40 << 30})
//	if errors.Is(err, aggregator.ErrExhausted) {
//		// not enough free vGPUs; the message says how many are free
//	}
//	go c.KeepAlive(ctx, lease.ID) // renews every TTL/3 until ctx ends
//	defer c.Release(context.WithoutCancel(ctx), lease.ID)
//	for i, d := range lease.Map.Devices {
//		fmt.Println(i, d.Host, d.VGPU)
//	}
//
// # Registry and liveness
//
// A server registers its inventory with an instance id that is random per
// process start, then heartbeats at the interval the Register answer names.
// Registering again with the same instance is idempotent; another instance
// under a live server id is refused with AlreadyExists. A server silent for
// HeartbeatTimeout is dead: its vGPUs leave the pool and every lease holding
// one of them turns DEGRADED, listing the lost logical indices. Its
// heartbeats are then answered NotFound, and it registers again; its vGPUs
// rejoin the pool free. Liveness is kept in memory (a death is also
// stored); after a restart every stored server not already dead gets one
// HeartbeatTimeout of grace.
//
// # Leases and placement
//
// A lease is an ordered device map plus an expiry; it ends when released or
// when not renewed within its TTL. PlacementPack puts it on as few hosts,
// NVLink islands and GPUs as possible, taking at each level the unit that
// fits the request most tightly; PlacementSpread deals vGPUs round-robin
// across hosts.
//
// # State
//
// Registrations and leases are JSON values under /xgpu/ in a Store: an
// embedded single-node etcd by default, an external etcd cluster
// (Config.EtcdEndpoints), or a MemoryStore in tests. A lease is created in
// one transaction with one claim key per vGPU, each required to be absent,
// so aggregators sharing an etcd never hand out a vGPU twice. Liveness is
// not shared between aggregators, so a pool should have one active
// aggregator; a second one on the same etcd is safe for claims only.
//
// # Concurrency
//
// An Aggregator, a Client and the Stores of this package are safe for
// concurrent use.
package aggregator
