package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/user"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/xgpu/xgpu/aggregator"
	"github.com/xgpu/xgpu/devicemap"
)

// jsonVersion is the version of every --json document; a field is never
// removed or renamed within one version.
const jsonVersion = 1

// defaultAggregator is where the client tools look for the pool when neither
// --aggregator nor XGPU_AGGREGATOR says.
const defaultAggregator = "127.0.0.1:7700"

// aggFlag adds --aggregator with the environment default.
func aggFlag(fs *flag.FlagSet) *string {
	return fs.String("aggregator", envOr("XGPU_AGGREGATOR", defaultAggregator), "aggregator address host:port (env XGPU_AGGREGATOR)")
}

func dialAggregator(ctx context.Context, addr string) (*aggregator.Client, error) {
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	c, err := aggregator.Dial(dctx, addr, aggregator.WithDialTimeout(5*time.Second))
	if err != nil {
		return nil, fmt.Errorf("cannot reach the aggregator at %s (set --aggregator or XGPU_AGGREGATOR): %w", addr, err)
	}
	return c, nil
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// --- ls ---

type lsVGPU struct {
	ID       string `json:"id"`
	GPUUUID  string `json:"gpuUuid"`
	GPUIndex int    `json:"gpuIndex"`
	Slot     int    `json:"slot"`
	Memory   uint64 `json:"memoryBytes"`
	Lease    string `json:"lease,omitempty"` // empty when free
}

type lsServer struct {
	ID            string   `json:"id"`
	Host          string   `json:"host"`
	Address       string   `json:"address"`
	Backend       string   `json:"backend"`
	Version       string   `json:"version"`
	Alive         bool     `json:"alive"`
	LastHeartbeat string   `json:"lastHeartbeat"` // RFC 3339
	GPUs          []lsGPU  `json:"gpus"`
	VGPUs         []lsVGPU `json:"vgpus"`
}

type lsGPU struct {
	Index  int    `json:"index"`
	UUID   string `json:"uuid"`
	Name   string `json:"name"`
	Memory uint64 `json:"memoryBytes"`
}

type lsDoc struct {
	Version int        `json:"version"`
	Servers []lsServer `json:"servers"`
	Summary lsSummary  `json:"summary"`
}

type lsSummary struct {
	Servers      int `json:"servers"`
	AliveServers int `json:"aliveServers"`
	VGPUs        int `json:"vgpus"`
	Leased       int `json:"leased"`
	Free         int `json:"free"`
}

func runLs(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("ls", "[flags]", stderr)
	addr := aggFlag(fs)
	asJSON := fs.Bool("json", false, "print JSON (see docs/cli.md)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	c, err := dialAggregator(ctx, *addr)
	if err != nil {
		return err
	}
	defer c.Close()
	pool, err := c.Pool(ctx)
	if err != nil {
		return err
	}
	doc := lsDoc{Version: jsonVersion, Servers: []lsServer{}}
	for _, s := range pool.Servers {
		inv := s.Inventory
		ls := lsServer{ID: inv.GetServerId(), Host: inv.GetHost(), Address: inv.GetAddress(), Backend: inv.GetBackend(),
			Version: inv.GetVersion(), Alive: s.Alive, LastHeartbeat: s.LastHeartbeat.UTC().Format(time.RFC3339),
			GPUs: []lsGPU{}, VGPUs: []lsVGPU{}}
		for _, g := range inv.GetGpus() {
			ls.GPUs = append(ls.GPUs, lsGPU{int(g.GetIndex()), g.GetUuid(), g.GetName(), g.GetMemoryBytes()})
		}
		for _, v := range inv.GetVgpus() {
			lease := pool.Leased[v.GetId()]
			ls.VGPUs = append(ls.VGPUs, lsVGPU{v.GetId(), v.GetGpuUuid(), int(v.GetGpuIndex()), int(v.GetSlot()), v.GetMemoryBytes(), lease})
			doc.Summary.VGPUs++
			switch {
			case lease != "":
				doc.Summary.Leased++
			case s.Alive:
				doc.Summary.Free++
			}
		}
		doc.Summary.Servers++
		if s.Alive {
			doc.Summary.AliveServers++
		}
		doc.Servers = append(doc.Servers, ls)
	}
	sort.SliceStable(doc.Servers, func(i, j int) bool {
		a, b := doc.Servers[i], doc.Servers[j]
		if a.Host != b.Host {
			return a.Host < b.Host
		}
		return a.ID < b.ID
	})
	if *asJSON {
		return writeJSON(stdout, doc)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tSERVER\tADDRESS\tSTATE\tGPU\tNAME\tVGPU\tMEMORY\tLEASE")
	for _, s := range doc.Servers {
		state := "alive"
		if !s.Alive {
			state = "dead"
		}
		names := map[string]string{}
		for _, g := range s.GPUs {
			names[g.UUID] = g.Name
		}
		for _, v := range s.VGPUs {
			lease := v.Lease
			if lease == "" {
				lease = "free"
				if !s.Alive {
					lease = "-"
				}
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n", s.Host, s.ID, s.Address, state, v.GPUIndex,
				names[v.GPUUUID], v.ID, formatSize(v.Memory), lease)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	sm := doc.Summary
	fmt.Fprintf(stdout, "\n%d servers (%d alive), %d vGPUs: %d leased, %d free\n", sm.Servers, sm.AliveServers, sm.VGPUs, sm.Leased, sm.Free)
	return nil
}

// --- alloc, renew, release, leases ---

type leaseDoc struct {
	Version   int            `json:"version"`
	ID        string         `json:"id"`
	State     string         `json:"state"` // "active" or "degraded"
	Owner     string         `json:"owner"`
	TTL       string         `json:"ttl"`     // Go duration
	Created   string         `json:"created"` // RFC 3339
	Expires   string         `json:"expires"` // RFC 3339
	Lost      []int          `json:"lost"`    // logical indices lost with their server
	DeviceMap *devicemap.Map `json:"deviceMap"`
}

func toLeaseDoc(l *aggregator.Lease) leaseDoc {
	lost := l.Lost
	if lost == nil {
		lost = []int{}
	}
	return leaseDoc{Version: jsonVersion, ID: l.ID, State: l.State.String(), Owner: l.Owner, TTL: l.TTL.String(),
		Created: l.Created.UTC().Format(time.RFC3339), Expires: l.Expires.UTC().Format(time.RFC3339), Lost: lost, DeviceMap: l.Map}
}

func defaultOwner() string {
	name := "unknown"
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	h, _ := os.Hostname()
	return fmt.Sprintf("%s@%s", name, h)
}

func printLease(w io.Writer, l *aggregator.Lease) error {
	fmt.Fprintf(w, "lease %s: %d devices, %s, owner %s, expires %s (ttl %s)\n", l.ID, l.Map.Len(), l.State, l.Owner,
		l.Expires.Local().Format(time.RFC3339), l.TTL)
	if len(l.Lost) > 0 {
		fmt.Fprintf(w, "lost devices: %v\n", l.Lost)
	}
	return printDevices(w, l.Map, l.Lost)
}

func printDevices(w io.Writer, m *devicemap.Map, lost []int) error {
	isLost := map[int]bool{}
	for _, i := range lost {
		isLost[i] = true
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DEV\tHOST\tSERVER\tADDRESS\tGPU\tVGPU\tNAME\tMEMORY\tWINDOW")
	for i, d := range m.Devices {
		lo, _ := m.WindowOf(i)
		name := d.Properties.Name
		if isLost[i] {
			name += " (lost)"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%#x\n", i, d.Host, d.Server, d.Address, d.GPUIndex, d.VGPU, name,
			formatSize(d.MemoryQuota), lo)
	}
	return tw.Flush()
}

func runAlloc(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("alloc", "-n N [flags]", stderr)
	addr := aggFlag(fs)
	n := fs.Int("n", 1, "number of vGPUs to lease")
	mem := byteSize(0)
	fs.Var(&mem, "memory", "minimum memory of each vGPU (default: any)")
	placement := fs.String("placement", "pack", "pack: as few hosts and NVLink islands as possible; spread: as many hosts as possible")
	ttl := fs.Duration("ttl", 10*time.Minute, "lease lifetime unless renewed (xgpu renew)")
	owner := fs.String("owner", defaultOwner(), "who holds the lease, for people reading xgpu leases")
	asJSON := fs.Bool("json", false, "print the lease as JSON (see docs/cli.md)")
	out := fs.String("o", "", "also write the device map JSON to this file (input for XGPU_DEVICE_MAP and xgpu topo --map)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	p, err := aggregator.ParsePlacement(*placement)
	if err != nil {
		return err
	}
	c, err := dialAggregator(ctx, *addr)
	if err != nil {
		return err
	}
	defer c.Close()
	l, err := c.Allocate(ctx, aggregator.AllocateOptions{Count: *n, MemoryBytes: uint64(mem), Placement: p, TTL: *ttl, Owner: *owner})
	if err != nil {
		return err
	}
	if *out != "" {
		data, err := l.Map.Encode()
		if err == nil {
			err = os.WriteFile(*out, data, 0o644)
		}
		if err != nil {
			return fmt.Errorf("lease %s granted, but writing %s failed: %w", l.ID, *out, err)
		}
	}
	if *asJSON {
		return writeJSON(stdout, toLeaseDoc(l))
	}
	return printLease(stdout, l)
}

func runRenew(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("renew", "LEASE [flags]", stderr)
	addr := aggFlag(fs)
	asJSON := fs.Bool("json", false, "print the lease as JSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return errUsage
	}
	c, err := dialAggregator(ctx, *addr)
	if err != nil {
		return err
	}
	defer c.Close()
	l, err := c.Renew(ctx, fs.Arg(0))
	if err != nil {
		return err
	}
	if *asJSON {
		return writeJSON(stdout, toLeaseDoc(l))
	}
	fmt.Fprintf(stdout, "lease %s renewed until %s\n", l.ID, l.Expires.Local().Format(time.RFC3339))
	return nil
}

func runRelease(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("release", "LEASE [LEASE...] [flags]", stderr)
	addr := aggFlag(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return errUsage
	}
	c, err := dialAggregator(ctx, *addr)
	if err != nil {
		return err
	}
	defer c.Close()
	var errs []error
	for _, id := range fs.Args() {
		if err := c.Release(ctx, id); err != nil {
			errs = append(errs, err)
			continue
		}
		fmt.Fprintf(stdout, "released %s\n", id)
	}
	return errors.Join(errs...)
}

type leasesDoc struct {
	Version int        `json:"version"`
	Leases  []leaseDoc `json:"leases"`
}

func runLeases(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("leases", "[flags]", stderr)
	addr := aggFlag(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	c, err := dialAggregator(ctx, *addr)
	if err != nil {
		return err
	}
	defer c.Close()
	ls, err := c.List(ctx)
	if err != nil {
		return err
	}
	if *asJSON {
		doc := leasesDoc{Version: jsonVersion, Leases: []leaseDoc{}}
		for _, l := range ls {
			doc.Leases = append(doc.Leases, toLeaseDoc(l))
		}
		return writeJSON(stdout, doc)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "LEASE\tSTATE\tDEVICES\tHOSTS\tOWNER\tEXPIRES\tLOST")
	for _, l := range ls {
		hosts := map[string]bool{}
		for _, d := range l.Map.Devices {
			hosts[d.Host] = true
		}
		lost := "-"
		if len(l.Lost) > 0 {
			lost = strings.Trim(fmt.Sprint(l.Lost), "[]")
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%s\t%s\n", l.ID, l.State, l.Map.Len(), len(hosts), l.Owner,
			time.Until(l.Expires).Round(time.Second), lost)
	}
	return tw.Flush()
}

// --- topo ---

func runTopo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("topo", "[--lease ID | --map FILE] [flags]", stderr)
	addr := aggFlag(fs)
	leaseID := fs.String("lease", "", "show this lease's devices")
	mapFile := fs.String("map", os.Getenv("XGPU_DEVICE_MAP"), "show the devices of this device-map file (env XGPU_DEVICE_MAP)")
	asJSON := fs.Bool("json", false, "print the link matrix as JSON (see docs/cli.md)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	mapSet := false
	fs.Visit(func(f *flag.Flag) { mapSet = mapSet || f.Name == "map" })
	var m *devicemap.Map
	switch {
	case *leaseID != "" && mapSet:
		return errors.New("--lease and --map are exclusive")
	case *leaseID != "":
		c, err := dialAggregator(ctx, *addr)
		if err != nil {
			return err
		}
		defer c.Close()
		l, err := c.Get(ctx, *leaseID)
		if err != nil {
			return err
		}
		m = l.Map
	case *mapFile != "":
		var err error
		if m, err = devicemap.Load(*mapFile); err != nil {
			return err
		}
	default:
		c, err := dialAggregator(ctx, *addr)
		if err != nil {
			return err
		}
		defer c.Close()
		pool, err := c.Pool(ctx)
		if err != nil {
			return err
		}
		if pool.Map == nil || pool.Map.Len() == 0 {
			return errors.New("the pool has no live devices")
		}
		m = pool.Map
	}
	if *asJSON {
		b, err := m.MatrixJSON()
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(stdout, "%s\n", b)
		return err
	}
	return m.Matrix(stdout)
}
