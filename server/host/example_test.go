package host_test

import (
	"context"
	"fmt"

	"github.com/xgpu/xgpu/internal/cudaerr"
	"github.com/xgpu/xgpu/server/backend"
	"github.com/xgpu/xgpu/server/host"
)

func Example() {
	b, err := host.New(host.Config{Devices: 2, Memory: 1 << 30, HostID: "example"})
	if err != nil {
		panic(err)
	}
	defer b.Close()
	dev, err := b.Open(backend.DeviceSpec{Index: 0, WindowBase: 0x1000_0000_0000, WindowSize: 1 << 30})
	if err != nil {
		panic(err)
	}

	p, _ := dev.Malloc(8)
	_ = dev.MemsetD32Async(p, 0x01020304, 2, backend.LegacyStream)
	out := make([]byte, 8)
	_ = dev.MemcpyDtoHAsync(out, p, backend.LegacyStream)
	_ = dev.StreamSynchronize(context.Background(), backend.LegacyStream)
	fmt.Printf("%#x %v\n", uint64(p), out)

	err = dev.Free(p + 4)
	fmt.Println(cudaerr.Code(err).Name())
	fmt.Println(err)
	// Output:
	// 0x100000000000 [4 3 2 1 4 3 2 1]
	// cudaErrorInvalidValue
	// host: Free: 0x100000000004 lies inside the allocation at 0x100000000000, not at its start: cudaErrorInvalidValue: invalid argument
}
