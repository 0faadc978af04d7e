package aggregator

import (
	"context"
	"fmt"
	"hash/fnv"
	"log/slog"
	"maps"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/xgpu/xgpu/internal/clock"
	"github.com/xgpu/xgpu/internal/pb"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const gib = 1 << 30

// gpuSpec describes the GPUs of a test inventory: how many, their memory,
// vGPU slots per GPU, and which GPUs share an NVLink island.
type gpuSpec struct {
	gpus    int
	memory  uint64 // per GPU; 0 means 80 GiB
	slots   int    // per GPU; 0 means 1 (the whole GPU)
	islands [][]int
}

// testInventory returns a valid inventory of server id on host with spec.
// GPU UUIDs are "GPU-<id>-<index>", addresses "<host>:<port from id>".
func testInventory(id, host string, spec gpuSpec) *pb.Inventory {
	if spec.memory == 0 {
		spec.memory = 80 * gib
	}
	if spec.slots == 0 {
		spec.slots = 1
	}
	inv := &pb.Inventory{
		ServerId: id,
		Host:     host,
		Address:  fmt.Sprintf("%s:%d", host, portOf(id)),
		Backend:  "host",
		Version:  "test",
	}
	uuid := func(i int) string { return fmt.Sprintf("GPU-%s-%d", id, i) }
	for i := range spec.gpus {
		g := &pb.GPU{
			Index:       int32(i),
			Uuid:        uuid(i),
			Name:        "Test GPU",
			MemoryBytes: spec.memory,
			CcMajor:     9,
		}
		for _, isl := range spec.islands {
			in := false
			for _, j := range isl {
				in = in || j == i
			}
			if !in {
				continue
			}
			for _, j := range isl {
				if j != i {
					g.Peers = append(g.Peers, &pb.PeerLink{PeerUuid: uuid(j), Kind: "NV", Nvlinks: 18})
				}
			}
		}
		inv.Gpus = append(inv.Gpus, g)
		for s := range spec.slots {
			inv.Vgpus = append(inv.Vgpus, &pb.VGPU{
				Id:           fmt.Sprintf("%s/%d", uuid(i), s),
				GpuUuid:      uuid(i),
				GpuIndex:     int32(i),
				Slot:         int32(s),
				MemoryBytes:  spec.memory / uint64(spec.slots),
				ComputeShare: uint32(100 / spec.slots),
			})
		}
	}
	return inv
}

// portOf derives a distinct port from a server id.
func portOf(id string) int {
	h := fnv.New32a()
	h.Write([]byte(id))
	return 10000 + int(h.Sum32()%50000)
}

// quietLogger discards everything.
func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// newTestAggregator returns an Aggregator on store with a fake clock,
// closed at the end of the test.
func newTestAggregator(t *testing.T, store Store, clk *clock.Fake) *Aggregator {
	t.Helper()
	a, err := New(context.Background(), Config{Store: store, Clock: clk, Logger: quietLogger()})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := a.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return a
}

// dump returns every key of the store with its revision and value, to
// compare states before and after an operation that must change nothing.
func dump(t *testing.T, s Store) map[string]string {
	t.Helper()
	kvs, err := s.List(context.Background(), "")
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	out := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		out[kv.Key] = fmt.Sprintf("%d:%s", kv.ModRevision, kv.Value)
	}
	return out
}

func assertUnchanged(t *testing.T, s Store, before map[string]string) {
	t.Helper()
	if after := dump(t, s); !maps.Equal(before, after) {
		t.Errorf("store changed:\nbefore %v\nafter  %v", keysOf(before), keysOf(after))
	}
}

func keysOf(m map[string]string) string {
	var b strings.Builder
	for k, v := range m {
		fmt.Fprintf(&b, "%s@%s ", k, strings.SplitN(v, ":", 2)[0])
	}
	return b.String()
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}
