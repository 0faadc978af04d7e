package cuda

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/xgpu/xgpu/server/backend"
)

// Config configures the cuda backend. The zero value is ready to use.
type Config struct {
	// Library is the CUDA driver library to load. Zero: DefaultLibrary
	// (libcuda.so.1), found through the dynamic loader's search path.
	Library string

	// Links gives, by device UUID ("GPU-..."), the links from that device
	// to the others, as NVML reports them (server/nvml); the driver API
	// cannot tell NVLink counts or PCIe paths. Zero (or a device missing
	// from it): each peer is reported with no NVLink and the PCIe path
	// "SYS", the least capable one, so that placement never overrates a
	// link.
	Links map[string][]backend.PeerInfo

	// StagingRetain bounds the pinned host memory each GPU keeps between
	// host-device copies for reuse (copies stage through pinned memory; see
	// the package documentation). Zero: DefaultStagingRetain.
	StagingRetain uint64

	// QueueLength is the number of asynchronous calls each GPU's executor
	// queues before a caller waits for its thread. Zero: DefaultQueue.
	QueueLength int
}

// DefaultStagingRetain is the pinned staging memory a GPU keeps by default.
const DefaultStagingRetain = 256 << 20

// Validate reports a configuration New would reject.
func (c Config) Validate() error {
	if strings.IndexByte(c.Library, 0) >= 0 {
		return fmt.Errorf("cuda: config: library path contains a NUL byte")
	}
	if c.QueueLength < 0 {
		return fmt.Errorf("cuda: config: negative queue length %d", c.QueueLength)
	}
	for uuid, peers := range c.Links {
		for i, p := range peers {
			if p.UUID == "" || p.UUID == uuid {
				return fmt.Errorf("cuda: config: links of %s: peer %d has UUID %q", uuid, i, p.UUID)
			}
			if p.NVLinks < 0 || (p.NVLinks == 0 && p.PCIePath == "") {
				return fmt.Errorf("cuda: config: links of %s: peer %s has no link", uuid, p.UUID)
			}
		}
	}
	return nil
}

// nvmlBusID converts a PCI address as cuDeviceGetPCIBusId writes it
// ("0000:19:00.0", hex digits in either case) to NVML's form
// ("00000000:19:00.0"). An address it cannot parse is returned unchanged.
func nvmlBusID(s string) string {
	dom, rest, ok := strings.Cut(s, ":")
	if !ok {
		return s
	}
	bus, rest, ok := strings.Cut(rest, ":")
	if !ok {
		return s
	}
	dev, fn, ok := strings.Cut(rest, ".")
	if !ok {
		return s
	}
	var v [4]uint64
	for i, f := range []struct {
		s    string
		bits int
	}{{dom, 32}, {bus, 8}, {dev, 8}, {fn, 4}} {
		if f.s == "" {
			return s
		}
		n, err := strconv.ParseUint(f.s, 16, f.bits)
		if err != nil {
			return s
		}
		v[i] = n
	}
	return fmt.Sprintf("%08X:%02X:%02X.%X", v[0], v[1], v[2], v[3])
}
