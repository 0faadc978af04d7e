package cudarttest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestGraphsProgram runs testdata/graphs_test.c: a memset, kernels of both
// launch paths, copies both ways and a host function captured on a stream
// and replayed three times with new host input; a fork and join across
// two streams through events; the errors CUDA documents for calls that
// conflict with a capture (a sync of a capturing stream, an end on a
// stream not capturing, an unjoined fork, an event from outside, unsafe
// calls in each capture mode, the legacy stream beside a blocking
// capturing stream); a graph built node by node with dependencies; and
// memory pools (the default pool, attributes, used and reserved counters,
// reuse in stream order, trimming, a created pool and its access).
func TestGraphsProgram(t *testing.T) {
	dir := buildShim(t)
	exe := compile(t, dir, "graphs_test.c")
	m := startServer(t, 2)
	dot := filepath.Join(t.TempDir(), "graph.dot")
	out := run(t, exe, []string{"XGPU_DEVICE_MAP=" + writeMap(t, m)}, dot)
	if strings.Contains(out, "not supported by xgpu") {
		t.Errorf("a function the program calls is not served:\n%s", out)
	}
	data, err := os.ReadFile(dot)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"digraph", "kernel add_one_u32", "memset", "memcpy", "host function", " -> "} {
		if !strings.Contains(string(data), want) {
			t.Errorf("the DOT file lacks %q:\n%s", want, data)
		}
	}
}
