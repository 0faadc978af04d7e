package bench

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	goruntime "runtime"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
)

// ReportVersion is the version of the JSON document; a field is never
// removed or renamed within one version.
const ReportVersion = 1

// Units of Result.Unit.
const (
	UnitMicros = "us"      // microseconds per call; lower is better
	UnitRate   = "calls/s" // calls per second; higher is better
	UnitGBps   = "GB/s"    // 10^9 bytes per second; higher is better
)

// Report is the outcome of one run: every case with its baseline measured
// in the same run.
type Report struct {
	Version  int      `json:"version"`
	Machine  Machine  `json:"machine"`
	Date     string   `json:"date"` // RFC 3339, when the run started
	Backend  string   `json:"backend,omitempty"`
	GPU      string   `json:"gpu,omitempty"`   // the GPUs of a cuda run
	Setup    string   `json:"setup,omitempty"` // the processes the run measured
	Settings Options  `json:"settings"`
	Seconds  float64  `json:"seconds"` // wall time of the run
	Cases    []Result `json:"cases"`
	// Skipped are the groups asked for that this environment cannot run,
	// and cases of a group it left out ("transport/local-lane" where
	// there are no local lanes).
	Skipped []Skipped `json:"skipped,omitempty"`
}

// Skipped is a case group, or cases of one (group/variant), a run left
// out, and why.
type Skipped struct {
	Group  string `json:"group"`
	Reason string `json:"reason"`
}

// Result is one case: the xgpu figure, the baseline figure measured in
// the same run, interleaved with it, and their ratio.
type Result struct {
	Name   string `json:"name"`   // group/what[/size], e.g. "h2d/64MiB"
	Group  string `json:"group"`  // one of Groups: sync, async, launch, h2d, d2h, peer-local, peer, allreduce, transport
	Unit   string `json:"unit"`   // UnitMicros, UnitRate or UnitGBps
	Better string `json:"better"` // "lower" or "higher": which way xgpu is faster
	Bytes  int64  `json:"bytes,omitempty"`

	// XGPU is the figure of xgpu: the median of every call for a latency,
	// the median of the rounds' rates for a rate or throughput. In the
	// transport group it is xgpu's data-plane transport on its own.
	XGPU     float64 `json:"xgpu"`
	XGPUP99  float64 `json:"xgpu_p99,omitempty"` // latencies only
	XGPUName string  `json:"xgpu_name,omitempty"`

	Baseline     float64 `json:"baseline"`
	BaselineP99  float64 `json:"baseline_p99,omitempty"`
	BaselineName string  `json:"baseline_name"`

	// Ratio is XGPU / Baseline: below 1 xgpu is slower for a rate or a
	// throughput, above 1 it is slower for a latency.
	Ratio float64 `json:"ratio"`

	// A second reference measured in the same rounds, where the case has
	// one: for host copies, raw striped transfers on the path the
	// session's bytes take (a local lane when the client shares the
	// server's host, QUIC otherwise; ReferenceName says which); TCP for
	// latencies.
	Reference      float64 `json:"reference,omitempty"`
	ReferenceP99   float64 `json:"reference_p99,omitempty"`
	ReferenceName  string  `json:"reference_name,omitempty"`
	ReferenceRatio float64 `json:"reference_ratio,omitempty"` // XGPU / Reference

	// Extra are further figures measured in the same rounds: in a cuda
	// run's h2d and d2h cases, the native copy with pinned host memory.
	Extra []Extra `json:"extra,omitempty"`

	// Overlap relates a cuda run's h2d or d2h copy to its two stages.
	Overlap *Overlap `json:"overlap,omitempty"`

	// ClientPayloadBytes is, for copies between devices of two servers
	// and for all-reduces, the copy payload that crossed the client's
	// connections during the case (runtime Stats): it must be 0.
	ClientPayloadBytes *uint64 `json:"client_payload_bytes,omitempty"`

	Rounds  int `json:"rounds"`
	Samples int `json:"samples"` // timed operations per method
}

// Extra is a further figure of a case, measured in the same rounds.
type Extra struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
	Ratio float64 `json:"ratio"` // XGPU / Value
}

// Overlap relates a host copy through xgpu on the cuda backend to the two
// stages its bytes pass: the transport between client and server (the
// case's raw reference, on the path the session's bytes take: a local
// lane or QUIC) and DMA between the server's pinned
// staging buffers and the GPU (the native pinned copy). When the server
// overlaps them, the copy runs at the slower stage (Bound); when it runs
// them one after the other, at Serial. Figures in GB/s.
type Overlap struct {
	Transport float64 `json:"transport"`
	DMA       float64 `json:"dma"`
	Bound     float64 `json:"bound"`    // min(Transport, DMA)
	Serial    float64 `json:"serial"`   // 1 / (1/Transport + 1/DMA)
	OfBound   float64 `json:"of_bound"` // XGPU / Bound
}

// Machine describes where a run happened.
type Machine struct {
	CPU         string `json:"cpu"`
	Cores       int    `json:"cores"`
	GOMAXPROCS  int    `json:"gomaxprocs"`
	MemoryBytes uint64 `json:"memory_bytes,omitempty"`
	Go          string `json:"go"`
	OS          string `json:"os"` // GOOS/GOARCH and kernel release
}

// DescribeMachine reports this machine (Linux details from /proc; the
// rest from the Go runtime).
func DescribeMachine() Machine {
	m := Machine{
		CPU:        "unknown",
		Cores:      goruntime.NumCPU(),
		GOMAXPROCS: goruntime.GOMAXPROCS(0),
		Go:         goruntime.Version(),
		OS:         goruntime.GOOS + "/" + goruntime.GOARCH,
	}
	if v := procField("/proc/cpuinfo", "model name"); v != "" {
		m.CPU = v
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.OS += " " + strings.TrimSpace(string(b))
	}
	if v := procField("/proc/meminfo", "MemTotal"); v != "" {
		if kb, err := strconv.ParseUint(strings.TrimSuffix(v, " kB"), 10, 64); err == nil {
			m.MemoryBytes = kb << 10
		}
	}
	return m
}

// procField returns the value of the first "key : value" line of a /proc
// file, or "".
func procField(path, key string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// WriteJSON writes r as one indented JSON document.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	return nil
}

// WriteTable writes r as a readable table, followed by what each group's
// baseline and reference are.
func (r *Report) WriteTable(w io.Writer) error {
	m := r.Machine
	fmt.Fprintf(w, "xgpu bench, %s\n", r.Date)
	fmt.Fprintf(w, "machine: %s, %d cores (GOMAXPROCS %d), %s, %s\n", m.CPU, m.Cores, m.GOMAXPROCS, m.OS, m.Go)
	if r.GPU != "" {
		fmt.Fprintf(w, "GPUs: %s\n", r.GPU)
	}
	if r.Setup != "" {
		fmt.Fprintf(w, "setup: %s\n", r.Setup)
	}
	fmt.Fprintf(w, "ratio = xgpu / baseline, measured in this run, interleaved (µs: lower is better; calls/s, GB/s: higher is better)\n\n")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "case\tunit\txgpu\tbaseline\tratio\treference\tref ratio")
	var legend []string
	seen := make(map[string]bool)
	for _, c := range r.Cases {
		unit := c.Unit
		if unit == UnitMicros {
			unit = "µs"
		}
		ref, refRatio := "", ""
		if c.ReferenceName != "" {
			ref = fmtFigure(c.Reference, c.ReferenceP99, c.Unit)
			refRatio = fmt.Sprintf("%.2f", c.ReferenceRatio)
		}
		var notes []string
		for _, e := range c.Extra {
			notes = append(notes, fmt.Sprintf("%s %s (ratio %.2f)", e.Name, fmtFigure(e.Value, 0, c.Unit), e.Ratio))
		}
		if c.ClientPayloadBytes != nil {
			notes = append(notes, fmt.Sprintf("client payload %d B", *c.ClientPayloadBytes))
		}
		note := strings.Join(notes, "; ")
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%.2f\t%s\t%s\t%s\n", c.Name, unit,
			fmtFigure(c.XGPU, c.XGPUP99, c.Unit), fmtFigure(c.Baseline, c.BaselineP99, c.Unit), c.Ratio,
			ref, refRatio, note)
		what := c.Group + ": "
		if c.Group == GroupTransport {
			what += "xgpu column: xgpu's transport alone (quic-1-stream: one raw QUIC stream; striped-N: peers SendBulk over N lanes; " +
				"local-lane: peers SendBulk through a local lane, shared memory); "
		}
		if c.Group == GroupAllReduce {
			what += "xgpu: " + c.XGPUName + "; "
		}
		what += "baseline: " + c.BaselineName
		if c.ReferenceName != "" {
			what += "; reference: " + c.ReferenceName
		}
		for _, e := range c.Extra {
			what += "; also: " + e.Name
		}
		if !seen[what] {
			seen[what] = true
			legend = append(legend, what)
		}
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	fmt.Fprintln(w)
	for _, l := range legend {
		fmt.Fprintf(w, "  %s\n", l)
	}
	if err := r.writeOverlap(w); err != nil {
		return err
	}
	if len(r.Skipped) > 0 {
		fmt.Fprintln(w)
		for _, s := range r.Skipped {
			fmt.Fprintf(w, "skipped: %s: %s\n", s.Group, s.Reason)
		}
	}
	_, err := fmt.Fprintf(w, "\n%d cases in %.1f s\n", len(r.Cases), r.Seconds)
	return err
}

// writeOverlap writes the host copies of a cuda run against their two
// stages, if the report has any.
func (r *Report) writeOverlap(w io.Writer) error {
	var cases []Result
	for _, c := range r.Cases {
		if c.Overlap != nil {
			cases = append(cases, c)
		}
	}
	if len(cases) == 0 {
		return nil
	}
	fmt.Fprintf(w, "\nstaging overlap: a host copy through xgpu crosses the transport (client to server) and the\n"+
		"server's DMA from pinned staging memory; overlapped it runs at the slower stage (bound),\n"+
		"one after the other at serial = 1/(1/transport + 1/DMA). GB/s:\n\n")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "case\txgpu\ttransport\tpinned DMA\tbound\tserial\txgpu/bound")
	for _, c := range cases {
		o := c.Overlap
		fmt.Fprintf(tw, "%s\t%.3f\t%.3f\t%.3f\t%.3f\t%.3f\t%.2f\n", c.Name, c.XGPU, o.Transport, o.DMA, o.Bound, o.Serial, o.OfBound)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	return nil
}

// fmtFigure prints a figure, with its p99 for latencies.
func fmtFigure(v, p99 float64, unit string) string {
	switch unit {
	case UnitMicros:
		if p99 > 0 {
			return fmt.Sprintf("%.1f (p99 %.1f)", v, p99)
		}
		return fmt.Sprintf("%.1f", v)
	case UnitRate:
		return fmt.Sprintf("%.0f", v)
	default:
		return fmt.Sprintf("%.3f", v)
	}
}

// quantile returns the q-quantile (0..1) of xs by the nearest-rank
// method; xs is sorted in place. It returns 0 for no samples.
func quantile(xs []float64, q float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	slices.Sort(xs)
	rank := int(math.Ceil(q*float64(len(xs)))) - 1
	return xs[max(0, min(rank, len(xs)-1))]
}

// ratio is a/b, or 0 when b is 0.
func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// SizeName prints a byte count in the largest binary unit that divides
// it: 4B, 64KiB, 1GiB.
func SizeName(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return strconv.FormatInt(n>>30, 10) + "GiB"
	case n >= 1<<20 && n%(1<<20) == 0:
		return strconv.FormatInt(n>>20, 10) + "MiB"
	case n >= 1<<10 && n%(1<<10) == 0:
		return strconv.FormatInt(n>>10, 10) + "KiB"
	}
	return strconv.FormatInt(n, 10) + "B"
}
