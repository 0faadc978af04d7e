package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xgpu/xgpu/bench"
)

// TestBenchFlags: bad flags fail before any process starts.
func TestBenchFlags(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"bad size", []string{"--sizes", "1MiB,lots"}, "invalid size"},
		{"zero size", []string{"--sizes", "0"}, "outside"},
		{"huge size", []string{"--sizes", "1TiB"}, "outside"},
		{"unknown case", []string{"--cases", "h2d,kernels"}, `unknown case group "kernels"`},
		{"negative rounds", []string{"--rounds", "-1"}, "negative"},
		{"stray argument", []string{"now"}, "Usage"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := run(append([]string{"bench"}, tt.args...), &out, &errb)
			if code == 0 || !strings.Contains(errb.String(), tt.want) {
				t.Errorf("exit %d, stderr %q; want a failure with %q", code, errb.String(), tt.want)
			}
		})
	}
}

// TestBenchCommand runs `xgpu bench` on a tiny configuration: two servers,
// two baseline peers and the client, as processes.
func TestBenchCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 6 processes")
	}
	jsonPath := filepath.Join(t.TempDir(), "bench.json")
	cmd := exec.Command(xgpuBin, "bench", "--sizes", "128KiB", "--cases", "sync,async,h2d,peer",
		"--rounds", "1", "--sync-calls", "5", "--async-calls", "50", "--json", jsonPath)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("xgpu bench: %v\nstdout:\n%s\nstderr:\n%s", err, out.String(), errb.String())
	}
	for _, s := range []string{"sync/d2h-4B", "h2d/128KiB", "peer/128KiB", "client payload 0 B", "cores"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("table lacks %q:\n%s", s, out.String())
		}
	}
	b, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	var rep bench.Report
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatalf("report: %v\n%s", err, b)
	}
	if len(rep.Cases) != 5 || rep.Backend != "host" || rep.Machine.Cores < 1 {
		t.Fatalf("report: %s", b)
	}
	for _, c := range rep.Cases {
		if c.XGPU <= 0 || c.Baseline <= 0 || c.Ratio <= 0 {
			t.Errorf("%s: %+v", c.Name, c)
		}
		if c.Group == bench.GroupPeer && (c.ClientPayloadBytes == nil || *c.ClientPayloadBytes != 0) {
			t.Errorf("%s: client payload %v, want 0", c.Name, c.ClientPayloadBytes)
		}
	}
}
