package devicemap

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// matrixLegend explains the cell labels, one kind a line.
var matrixLegend = [...][2]string{
	{"X", "Self"},
	{"VGPU", "Two vGPUs of the same physical GPU"},
	{"NV#", "NVLink, a bonded set of # links"},
	{"PIX", "PCIe through at most one PCIe bridge"},
	{"PXB", "PCIe through several PCIe bridges, not through a host bridge"},
	{"PHB", "PCIe through a PCIe host bridge (typically the CPU)"},
	{"NODE", "PCIe and the link between PCIe host bridges of one NUMA node"},
	{"SYS", "PCIe and the interconnect between NUMA nodes (e.g. QPI/UPI)"},
	{"NET", "Across the network between hosts (RTT, bandwidth when measured)"},
}

// Matrix writes the link matrix of the map as text laid out like
// `nvidia-smi topo -m`: a header row GPU0..GPUn-1, one row per device with
// the label of each Link (X, VGPU, NV18, PIX, ..., NET) followed by its Host
// and vGPU id, then a legend and the measured network figures between the
// hosts of the map. Columns are as wide as their widest entry, so the
// matrix of a few hundred devices stays aligned.
func (m *Map) Matrix(w io.Writer) error {
	n := len(m.Devices)
	bw := bufio.NewWriter(w)
	label := func(i int) string { return "GPU" + strconv.Itoa(i) }

	rowW := len(label(max(n-1, 0)))
	cellW := rowW
	cells := make([][]string, n)
	for i := range n {
		cells[i] = make([]string, n)
		for j := range n {
			s := m.Link(i, j).String()
			cells[i][j] = s
			cellW = max(cellW, len(s))
		}
	}
	hostW := len("Host")
	for i := range m.Devices {
		hostW = max(hostW, len(m.Devices[i].Host))
	}

	var line strings.Builder
	pad := func(s string, width int) {
		line.WriteString(s)
		for k := len(s); k < width+2; k++ {
			line.WriteByte(' ')
		}
	}
	flush := func() {
		bw.WriteString(strings.TrimRight(line.String(), " "))
		bw.WriteByte('\n')
		line.Reset()
	}

	pad("", rowW)
	for j := range n {
		pad(label(j), cellW)
	}
	pad("Host", hostW)
	line.WriteString("vGPU")
	flush()
	for i := range n {
		pad(label(i), rowW)
		for j := range n {
			pad(cells[i][j], cellW)
		}
		pad(m.Devices[i].Host, hostW)
		line.WriteString(m.Devices[i].VGPU)
		flush()
	}

	bw.WriteString("\nLegend:\n\n")
	for _, l := range matrixLegend {
		fmt.Fprintf(bw, "  %-4s = %s\n", l[0], l[1])
	}

	hosts := make(map[string]bool)
	for i := range m.Devices {
		hosts[m.Devices[i].Host] = true
	}
	header := false
	for _, nl := range m.Net {
		if !hosts[nl.FromHost] || !hosts[nl.ToHost] {
			continue
		}
		if !header {
			bw.WriteString("\nNetwork:\n\n")
			header = true
		}
		fmt.Fprintf(bw, "  %s -> %s: RTT %s, bandwidth %s\n", nl.FromHost, nl.ToHost, formatRTT(nl.RTT), formatBandwidth(nl.BandwidthBps))
	}
	return bw.Flush()
}

func formatRTT(d time.Duration) string {
	switch {
	case d <= 0:
		return "not measured"
	case d >= time.Microsecond:
		return d.Round(time.Microsecond).String()
	default:
		return d.String()
	}
}

// formatBandwidth writes bytes per second in decimal units, as network
// figures usually are.
func formatBandwidth(b float64) string {
	switch {
	case b <= 0:
		return "not measured"
	case b >= 1e9:
		return strconv.FormatFloat(b/1e9, 'f', 1, 64) + " GB/s"
	case b >= 1e6:
		return strconv.FormatFloat(b/1e6, 'f', 1, 64) + " MB/s"
	default:
		return strconv.FormatFloat(b/1e3, 'f', 1, 64) + " kB/s"
	}
}

// MatrixDevice is the short description of a device in MatrixJSON.
type MatrixDevice struct {
	Index   int    `json:"index"`
	Host    string `json:"host"`
	Server  string `json:"server"`
	GPUUUID string `json:"gpuUuid"`
	VGPU    string `json:"vgpu"`
	Name    string `json:"name,omitempty"`
}

// MatrixDoc is the document MatrixJSON writes.
type MatrixDoc struct {
	Version int            `json:"version"`
	Devices []MatrixDevice `json:"devices"`
	// Links[i][j] is m.Link(i, j).
	Links [][]Link `json:"links"`
}

// MatrixJSON returns the link matrix as compact JSON (see the package
// documentation for the format). The output is stable.
func (m *Map) MatrixJSON() ([]byte, error) {
	n := len(m.Devices)
	doc := MatrixDoc{
		Version: Version,
		Devices: make([]MatrixDevice, n),
		Links:   make([][]Link, n),
	}
	for i := range m.Devices {
		d := &m.Devices[i]
		doc.Devices[i] = MatrixDevice{Index: i, Host: d.Host, Server: d.Server, GPUUUID: d.GPUUUID, VGPU: d.VGPU, Name: d.Properties.Name}
		doc.Links[i] = make([]Link, n)
		for j := range n {
			doc.Links[i][j] = m.Link(i, j)
		}
	}
	b, err := json.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("devicemap: encode matrix: %w", err)
	}
	return b, nil
}
