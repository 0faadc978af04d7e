package cudarttest

import (
	"strconv"
	"strings"
	"testing"

	"github.com/xgpu/xgpu/server/host"
)

// TestCAttributesFromServer runs testdata/shim_test.c's attribute checks
// with a device map that claims 7 SMs and compute capability 7.5 for
// GPUs whose server reports the host backend's 132 SMs and 9.0:
// cudaGetDeviceProperties and cudaDeviceGetAttribute must answer the
// server's values, which neither the map nor the shim's fallback profile
// (which takes the map's SM count and compute capability) gives.
func TestCAttributesFromServer(t *testing.T) {
	dir := buildShim(t)
	exe := compile(t, dir, "shim_test.c")
	m := startServer(t, 2).Clone()
	for i := range m.Devices {
		m.Devices[i].Properties.MultiprocessorCount = 7
		m.Devices[i].Properties.ComputeCapability = "7.5"
	}
	out := run(t, exe, []string{"XGPU_DEVICE_MAP=" + writeMap(t, m)}, "attrs",
		strconv.Itoa(host.DefaultMultiprocessors), strconv.Itoa(host.DefaultComputeMajor), strconv.Itoa(host.DefaultComputeMinor))
	if strings.Contains(out, "predates") {
		t.Errorf("the shim fell back to its own profile:\n%s", out)
	}
}
