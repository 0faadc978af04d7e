package cudarttest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCooperativeProgram runs testdata/cooperative_test.c:
// cudaLaunchCooperativeKernel (a grid that fits runs; one too large is
// refused with cudaErrorCooperativeLaunchTooLarge at the next sync and
// runs as an ordinary launch), cudaLaunchKernelExC with every class of
// launch attribute (ignored, cooperative, hints, programmatic stream
// serialization, a 1x1x1 cluster, and the refused ones), the driver's
// cuLaunchCooperativeKernel and cuLaunchKernelEx (kernel parameters and a
// packed buffer), and a cooperative launch captured and replayed.
func TestCooperativeProgram(t *testing.T) {
	dir := buildShim(t)
	exe := compile(t, dir, "cooperative_test.c", "libcuda.so.1", "libcudart.so.13")
	m := startServer(t, 1)
	dot := filepath.Join(t.TempDir(), "graph.dot")
	out := run(t, exe, []string{"XGPU_DEVICE_MAP=" + writeMap(t, m)}, dot)
	// Each refused attribute is logged once, by the facade that refused
	// it, and nothing else the program calls is refused.
	refused := []string{
		`function="cudaLaunchKernelExC(attribute 3)"`,
		`function="cudaLaunchKernelExC(attribute 4)"`,
		`function="cudaLaunchKernelExC(attribute 5)"`,
		`function="cudaLaunchKernelExC(attribute 7)"`,
		`function="cudaLaunchKernelExC(attribute 10)"`,
		`function="cudaLaunchKernelExC(attribute 99)"`,
		`function="cuLaunchKernelEx(attribute 4)"`,
	}
	for _, want := range refused {
		if n := strings.Count(out, want); n != 1 {
			t.Errorf("%s logged %d times, want once", want, n)
		}
	}
	if n := strings.Count(out, "not supported by xgpu"); n != len(refused) {
		t.Errorf("%d functions or attributes logged as not supported, want the %d refused attributes:\n%s", n, len(refused), out)
	}
	data, err := os.ReadFile(dot)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(data), "cooperative"); n != 2 {
		t.Errorf("the DOT file shows %d cooperative kernel nodes, want 2:\n%s", n, data)
	}
}
