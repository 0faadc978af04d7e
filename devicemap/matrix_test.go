package devicemap

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("output differs from %s:\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

func TestMatrixGolden(t *testing.T) {
	var buf bytes.Buffer
	if err := twoHostMap(t).Matrix(&buf); err != nil {
		t.Fatal(err)
	}
	golden(t, "matrix_2host.golden", buf.Bytes())
}

func TestMatrixWide(t *testing.T) {
	m, err := New(pool(64, 16*gib))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := m.Matrix(&buf); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(buf.String(), "\n")
	header, row0, row63 := lines[0], lines[1], lines[64]
	// Every row starts its cells in the header's columns.
	for j, label := range []string{"GPU0", "GPU9", "GPU10", "GPU63", "Host", "vGPU"} {
		col := strings.Index(header, " "+label+" ")
		if label == "vGPU" {
			col = strings.LastIndex(header, " "+label)
		}
		if col < 0 {
			t.Fatalf("header lacks %s: %q", label, header)
		}
		col++
		for _, row := range []string{row0, row63} {
			if col >= len(row) || row[col-1] != ' ' || row[col] == ' ' {
				t.Errorf("column %d (%s) misaligned in row %q", j, label, row)
			}
		}
	}
	if !strings.HasPrefix(row63, "GPU63 ") || !strings.HasSuffix(row63, "GPU-h007-s-7/0") {
		t.Errorf("row 63 = %q", row63)
	}
	if !strings.HasPrefix(row0, "GPU0   X      SYS    ") || !strings.Contains(row0, " SYS    NET ") {
		t.Errorf("row 0 = %q", row0)
	}
}

type failWriter struct{}

var errWrite = errors.New("write failed")

func (failWriter) Write([]byte) (int, error) { return 0, errWrite }

func TestMatrixWriteError(t *testing.T) {
	if err := twoHostMap(t).Matrix(failWriter{}); !errors.Is(err, errWrite) {
		t.Fatalf("err = %v, want the writer's error", err)
	}
}

func TestMatrixJSON(t *testing.T) {
	m := twoHostMap(t)
	data, err := m.MatrixJSON()
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "matrix_2host.json", append(data, '\n'))

	var doc MatrixDoc
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Version != Version || len(doc.Devices) != m.Len() || len(doc.Links) != m.Len() {
		t.Fatalf("doc = %+v", doc)
	}
	for i := range m.Len() {
		if doc.Devices[i].Index != i || doc.Devices[i].VGPU != m.Devices[i].VGPU {
			t.Errorf("device %d = %+v", i, doc.Devices[i])
		}
		for j := range m.Len() {
			if doc.Links[i][j] != m.Link(i, j) {
				t.Errorf("links[%d][%d] = %+v, want %+v", i, j, doc.Links[i][j], m.Link(i, j))
			}
		}
	}
	empty, err := (&Map{}).MatrixJSON()
	if err != nil || string(empty) != `{"version":1,"devices":[],"links":[]}` {
		t.Fatalf("empty matrix = %s, %v", empty, err)
	}
}

func TestNetFigures(t *testing.T) {
	tests := []struct {
		name string
		rtt  time.Duration
		bw   float64
		want string
	}{
		{"unmeasured", 0, 0, "RTT not measured, bandwidth not measured"},
		{"sub-microsecond", 850 * time.Nanosecond, 2.5e6, "RTT 850ns, bandwidth 2.5 MB/s"},
		{"rounded", 1234567 * time.Nanosecond, 900e3, "RTT 1.235ms, bandwidth 900.0 kB/s"},
		{"fast", 85 * time.Microsecond, 50e9, "RTT 85µs, bandwidth 50.0 GB/s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := New(twoHostDevices(), WithNet([]NetLink{{FromHost: "beta", ToHost: "alpha", RTT: tt.rtt, BandwidthBps: tt.bw}}))
			if err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			if err := m.Matrix(&buf); err != nil {
				t.Fatal(err)
			}
			if line := "  beta -> alpha: " + tt.want + "\n"; !strings.HasSuffix(buf.String(), line) {
				t.Fatalf("matrix ends with %q, want %q", buf.String()[strings.LastIndex(buf.String(), "Network:"):], line)
			}
		})
	}
}
