package collective_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"sync"

	"github.com/xgpu/xgpu/collective"
)

// Four ranks on two hosts sum a vector of three float32s in place.
func Example() {
	net := collective.NewLocalNetwork([]string{"gpu01", "gpu01", "gpu02", "gpu02"})
	results := make([][]float32, 4)
	var wg sync.WaitGroup
	for rank := range 4 {
		wg.Go(func() {
			c, err := collective.New(rank, 4, net.Transport(rank), collective.CPUReducer{}, collective.Options{})
			if err != nil {
				panic(err)
			}
			defer c.Close()
			buf := make([]byte, 3*4)
			for i := range 3 {
				binary.LittleEndian.PutUint32(buf[4*i:], math.Float32bits(float32(rank*10+i)))
			}
			if err := c.AllReduce(context.Background(), buf, buf, 3, collective.F32, collective.Sum); err != nil {
				panic(err)
			}
			for i := range 3 {
				results[rank] = append(results[rank], math.Float32frombits(binary.LittleEndian.Uint32(buf[4*i:])))
			}
		})
	}
	wg.Wait()
	fmt.Println(results)
	// Output: [[60 64 68] [60 64 68] [60 64 68] [60 64 68]]
}
