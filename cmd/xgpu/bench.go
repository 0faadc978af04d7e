package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/xgpu/xgpu/bench"
	"github.com/xgpu/xgpu/internal/pb"
	"github.com/xgpu/xgpu/runtime"
	"github.com/xgpu/xgpu/server/nvml"
)

// benchServers are the servers a bench run starts: A and B.
var benchServers = []string{"bench-a", "bench-b"}

// benchConfig is what benchCluster starts and runs.
type benchConfig struct {
	backend string // "host" or "cuda"
	native  string // cuda: the native program
	gpus    string // cuda: --gpus, as CUDA_VISIBLE_DEVICES takes it ("" unless given)
	gpusSet bool
	python  string // cuda: --nccl-python, the interpreter of the NCCL baseline
	script  string // cuda: --nccl-script, examples/bench/nccl_allreduce.py
	ncclSet bool   // --nccl-python or --nccl-script given
	opt     bench.Options
}

// defaultNCCLScript is the NCCL baseline script, relative to the root of
// the working tree, where make bench runs.
const defaultNCCLScript = "examples/bench/nccl_allreduce.py"

func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("bench", "[flags]", stderr)
	jsonOut := fs.String("json", "", "also write the report as JSON to this file (- for stdout)")
	quick := fs.Bool("quick", false, "a quick run: copies up to 64 MiB, three rounds (under a minute)")
	sizes := fs.String("sizes", "", "comma-separated copy sizes, e.g. 1MiB,64MiB,1GiB (default: 1MiB..1GiB, or 1MiB..64MiB with --quick)")
	cases := fs.String("cases", "", "comma-separated case groups: "+strings.Join(bench.Groups, ",")+" (default: all)")
	rounds := fs.Int("rounds", 0, "rounds per case, each alternating xgpu and its baselines (default: 5, or 3 with --quick)")
	syncCalls := fs.Int("sync-calls", 0, "calls per method and round in the sync cases (default: 500, or 300 with --quick)")
	asyncCalls := fs.Int("async-calls", 0, "calls per method and round in the async and launch cases (default: 20000, or 10000 with --quick)")
	logDir := fs.String("log-dir", "", "directory for the started processes' logs (default: a temporary directory, removed after a successful run)")
	backend := fs.String("backend", "host", "servers' device backend: host (emulated devices; transport baselines) or cuda (this machine's GPUs; native CUDA baselines from --native)")
	native := fs.String("native", "", "cuda: the native baseline program, examples/bench/cudabench.cu built with nvcc (make bench builds it)")
	gpus := fs.String("gpus", "", "cuda: the GPUs to use, as CUDA_VISIBLE_DEVICES names them (indices or UUIDs, comma-separated); the first two go to server A, the third (or the second) to server B, and for the allreduce group the fourth too (default: CUDA_VISIBLE_DEVICES, or every GPU)")
	python := fs.String("nccl-python", bench.DefaultNCCLPython, "cuda: the Python interpreter, with torch, of the allreduce group's NCCL baseline (the group is skipped, with the reason, where it lacks torch, CUDA or NCCL)")
	script := fs.String("nccl-script", defaultNCCLScript, "cuda: the allreduce group's NCCL baseline script")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return errUsage
	}
	cfg := benchConfig{backend: *backend, native: *native, gpus: *gpus, python: *python, script: *script}
	fs.Visit(func(f *flag.Flag) {
		cfg.gpusSet = cfg.gpusSet || f.Name == "gpus"
		cfg.ncclSet = cfg.ncclSet || f.Name == "nccl-python" || f.Name == "nccl-script"
	})
	switch {
	case cfg.backend != "host" && cfg.backend != "cuda":
		return fmt.Errorf("--backend %q: want host or cuda", cfg.backend)
	case cfg.backend == "cuda" && cfg.native == "":
		return errors.New("--backend cuda needs --native, the native baseline program (make bench builds it with nvcc)")
	case cfg.backend == "host" && (cfg.native != "" || cfg.gpusSet || cfg.ncclSet):
		return errors.New("--native, --gpus, --nccl-python and --nccl-script need --backend cuda")
	case cfg.python == "" || cfg.script == "":
		return errors.New("--nccl-python and --nccl-script must not be empty")
	}
	if cfg.native != "" {
		if st, err := os.Stat(cfg.native); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
			return fmt.Errorf("--native %s: not an executable file", cfg.native)
		}
	}
	opt := bench.Options{}
	if *quick {
		opt = bench.QuickOptions()
	}
	if *sizes != "" {
		opt.Sizes = nil
		for s := range strings.SplitSeq(*sizes, ",") {
			n, err := parseSize(s)
			if err != nil {
				return fmt.Errorf("--sizes: %w", err)
			}
			if n == 0 || n > bench.MaxSize {
				return fmt.Errorf("--sizes: %s outside 1B..%s", strings.TrimSpace(s), formatSize(bench.MaxSize))
			}
			opt.Sizes = append(opt.Sizes, int64(n))
		}
	}
	if *cases != "" {
		for g := range strings.SplitSeq(*cases, ",") {
			opt.Groups = append(opt.Groups, strings.TrimSpace(g))
		}
	}
	for _, v := range []struct {
		name string
		val  int
		dst  *int
	}{{"rounds", *rounds, &opt.Rounds}, {"sync-calls", *syncCalls, &opt.SyncCalls}, {"async-calls", *asyncCalls, &opt.AsyncCalls}} {
		if v.val < 0 {
			return fmt.Errorf("--%s %d is negative", v.name, v.val)
		}
		if v.val > 0 {
			*v.dst = v.val
		}
	}
	opt.Progress = stderr
	if err := opt.Validate(); err != nil {
		return err
	}
	for _, g := range opt.Groups {
		if cfg.backend == "host" && slices.Contains(bench.NativeGroups, g) {
			return fmt.Errorf("--cases %s: the group compares with native CUDA; it needs --backend cuda", g)
		}
	}
	var out io.Writer
	if *jsonOut != "" && *jsonOut != "-" {
		// Fail now rather than after a run of minutes.
		f, err := os.Create(*jsonOut)
		if err != nil {
			return err
		}
		defer f.Close()
		out = f
	}

	dir, keep := *logDir, *logDir != ""
	if dir == "" {
		d, err := os.MkdirTemp("", "xgpu-bench-")
		if err != nil {
			return err
		}
		dir = d
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	cfg.opt = opt
	rep, err := benchCluster(ctx, dir, cfg, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "xgpu bench: the processes' logs are in %s\n", dir)
		return err
	}
	if !keep {
		_ = os.RemoveAll(dir)
	}
	if err := rep.WriteTable(stdout); err != nil {
		return err
	}
	switch {
	case *jsonOut == "-":
		return rep.WriteJSON(stdout)
	case out != nil:
		if err := rep.WriteJSON(out); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "JSON report: %s\n", *jsonOut)
	}
	return nil
}

// benchCluster starts two servers (host backend, or cuda on this
// machine's GPUs) and two baseline peers on loopback, and for cuda the
// native program; it opens a client on the servers' devices and runs the
// benchmark.
func benchCluster(ctx context.Context, dir string, cfg benchConfig, stderr io.Writer) (*bench.Report, error) {
	sizes := cfg.opt.Sizes
	if len(sizes) == 0 {
		sizes = bench.DefaultSizes
	}
	largest := max(slices.Max(sizes), bench.DefaultTransportSize)
	// Every copy lands in one allocation of the largest size per device,
	// and the allreduce group takes one more on each of its devices.
	memory := max(uint64(2<<30), 3*uint64(largest))
	allReduce := len(cfg.opt.Groups) == 0 || slices.Contains(cfg.opt.Groups, bench.GroupAllReduce)

	var children []*child
	defer func() {
		if err := stopAll(children, 10*time.Second); err != nil {
			fmt.Fprintf(stderr, "xgpu bench: %v\n", err)
		}
	}()
	start := func(name string, env []string, args ...string) (string, error) {
		f, err := os.Create(filepath.Join(dir, name+".log"))
		if err != nil {
			return "", err
		}
		defer f.Close() // the child holds its own descriptor
		c, addr, err := startChildEnv(ctx, name, dir, f, env, args...)
		if err != nil {
			return "", err
		}
		children = append(children, c)
		return addr, nil
	}
	var infos []bench.PeerInfo
	for _, name := range []string{"bench-peer-a", "bench-peer-b"} {
		line, err := start(name, nil, "bench-peer", "--listen-host", "127.0.0.1",
			"--max-bytes", strconv.FormatInt(largest, 10), "--log-level", "warn")
		if err != nil {
			return nil, err
		}
		var info bench.PeerInfo
		if err := json.Unmarshal([]byte(line), &info); err != nil {
			return nil, fmt.Errorf("%s: bad address line %q: %w", name, line, err)
		}
		infos = append(infos, info)
	}
	env := bench.Env{DevA: 0, DevB: 1, PeerA: infos[0], PeerB: infos[1], Backend: cfg.backend}
	// Everything runs on this host: the client's sessions and the links
	// between the two servers' workers join local lanes unless
	// XGPU_LOCAL_LANE=0, which the client reads from this environment and
	// the servers (and their workers) get from it; the baselines take the
	// same path.
	lanes, serverEnv := benchPaths(os.Getenv(runtime.EnvLocalLane))
	env.WorkerPath = lanes
	var refs []bench.DeviceRef
	if cfg.backend == "host" {
		// The allreduce group runs 4 ranks, 2 on each server's worker, so
		// that it moves data both inside a worker and between workers.
		devices := 1
		if allReduce {
			devices = 2
		}
		var addrs []string
		for _, name := range benchServers {
			addr, err := start(name, serverEnv, "server", "--backend", "host", "--host", name, "--id", name,
				"--listen", "127.0.0.1:0", "--devices", strconv.Itoa(devices), "--memory", strconv.FormatUint(memory, 10),
				"--log-level", "warn")
			if err != nil {
				return nil, err
			}
			addrs = append(addrs, addr)
		}
		refs, env.Ranks = hostDevices(addrs, devices)
		env.Setup = fmt.Sprintf("this client; 2 xgpu servers (host backend, %d device(s) each) with one session worker each; "+
			"2 baseline peer processes; all on loopback, sharing the machine's cores; %s", devices, describePaths(lanes))
	} else {
		gpus, err := benchGPUs(ctx, cfg)
		if err != nil {
			return nil, err
		}
		lay, err := planGPUs(gpus, cfg.opt.Groups)
		if err != nil {
			return nil, err
		}
		var addrs []string
		for i, vis := range [][]string{lay.a, lay.b} {
			if len(vis) == 0 {
				continue
			}
			name := benchServers[i]
			addr, err := start(name, append(cudaEnv(vis), serverEnv...), "server", "--backend", "cuda", "--host", name, "--id", name,
				"--listen", "127.0.0.1:0", "--log-level", "warn")
			if err != nil {
				return nil, err
			}
			addrs = append(addrs, addr)
		}
		for _, d := range lay.devices {
			refs = append(refs, bench.DeviceRef{Server: addrs[d.server], GPU: d.gpu})
		}
		env.DevA, env.DevB, env.DevA2, env.Ranks = lay.devA, lay.devB, lay.devA2, lay.ranks
		env.NativeDevs, env.Skip = lay.native, lay.skip
		env.GPU = describeGPUs(gpus[:len(lay.visible)])
		logf, err := os.Create(filepath.Join(dir, "native.log"))
		if err != nil {
			return nil, err
		}
		defer logf.Close()
		np, err := bench.StartNative(ctx, bench.NativeConfig{Path: cfg.native, Env: cudaEnv(lay.visible), Stderr: logf})
		if err != nil {
			return nil, err
		}
		defer np.Close()
		env.Native = np
		if _, skipped := env.Skip[bench.GroupAllReduce]; allReduce && !skipped {
			ncclLog, err := os.Create(filepath.Join(dir, "nccl.log"))
			if err != nil {
				return nil, err
			}
			defer ncclLog.Close()
			nccl, why := startNCCL(ctx, ncclLog, cfg, lay.rankGPUs)
			if nccl != nil {
				defer nccl.Close()
				env.NCCL = nccl
			} else {
				if env.Skip == nil {
					env.Skip = make(map[string]string)
				}
				env.Skip[bench.GroupAllReduce] = why
				fmt.Fprintf(stderr, "xgpu bench: allreduce skipped: %s (its log: %s)\n", why, ncclLog.Name())
			}
		}
		env.Setup = fmt.Sprintf("this client; server A (cuda backend, GPUs %s) and %s, one session worker each; "+
			"the native program %s on the same GPUs; 2 baseline peer processes; all on this machine, loopback; %s",
			strings.Join(lay.a, ","), describeServerB(lay.b), cfg.native, describePaths(lanes))
	}

	m, err := bench.DeviceMapOf(ctx, refs)
	if err != nil {
		return nil, err
	}
	c, err := runtime.Open(ctx, runtime.Config{Map: m, Client: "xgpu bench"})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	env.Client = c
	return bench.Run(ctx, env, cfg.opt)
}

// hostDevices returns the device map of a host run on the servers at
// addrs with devices devices each: logical device 0 on server A, 1 on
// server B (the devices of every other group), then A's second device,
// B's second, ...; and the allreduce group's ranks, grouped by server:
// A's devices, then B's. With one device each the ranks are 0 and 1.
func hostDevices(addrs []string, devices int) ([]bench.DeviceRef, []int) {
	var refs []bench.DeviceRef
	for g := range devices {
		for _, a := range addrs {
			refs = append(refs, bench.DeviceRef{Server: a, GPU: g})
		}
	}
	var ranks []int
	for s := range addrs {
		for g := range devices {
			ranks = append(ranks, g*len(addrs)+s)
		}
	}
	return refs, ranks
}

// startNCCL starts the allreduce group's NCCL baseline on gpus (UUIDs, in
// rank order), its standard error to logw. When it cannot run (no
// interpreter, torch, CUDA or NCCL, too few GPUs) it returns nil and why,
// which the report lists as the group's skip reason.
func startNCCL(ctx context.Context, logw io.Writer, cfg benchConfig, gpus []string) (*bench.NativeProgram, string) {
	if st, err := os.Stat(cfg.script); err != nil || st.IsDir() {
		return nil, fmt.Sprintf("no NCCL baseline: --nccl-script %s is not a file", cfg.script)
	}
	p, err := bench.StartNCCL(ctx, bench.NCCLConfig{Python: cfg.python, Script: cfg.script, Ranks: len(gpus),
		Env: cudaEnv(gpus), Stderr: logw})
	if err != nil {
		return nil, fmt.Sprintf("no NCCL baseline: %v", err)
	}
	return p, ""
}

// benchPaths returns how the processes of a run, all on this host, move
// bulk data given the value of XGPU_LOCAL_LANE in this environment, and
// the environment the servers get for it: local lanes unless it is "0".
// The setting is passed on explicitly so that the servers' workers and
// the run's baselines agree on it.
func benchPaths(setting string) (bench.Path, []string) {
	if setting == "0" {
		return bench.PathQUIC, []string{runtime.EnvLocalLane + "=0"}
	}
	return bench.PathLocalLane, nil
}

// describePaths says in the report's setup how bulk data moves.
func describePaths(p bench.Path) string {
	if p == bench.PathQUIC {
		return "bulk data on QUIC (" + runtime.EnvLocalLane + "=0)"
	}
	return "bulk data through local lanes where the platform has them (" + runtime.EnvLocalLane + "=0 turns them off)"
}

func describeServerB(b []string) string {
	if len(b) == 0 {
		return "no server B"
	}
	return "server B (cuda backend, GPU " + strings.Join(b, ",") + ")"
}

// describeGPUs names the GPUs of a run, e.g. "2 x NVIDIA H200".
func describeGPUs(gpus []*pb.GPU) string {
	var parts []string
	count := map[string]int{}
	for _, g := range gpus {
		if count[g.GetName()] == 0 {
			parts = append(parts, g.GetName())
		}
		count[g.GetName()]++
	}
	for i, name := range parts {
		parts[i] = fmt.Sprintf("%d x %s", count[name], name)
	}
	return strings.Join(parts, ", ")
}

// cudaEnv is the environment of a process that sees the GPUs vis, with
// NVLink multicast off as in every GPU run of the project.
func cudaEnv(vis []string) []string {
	return []string{"CUDA_VISIBLE_DEVICES=" + strings.Join(vis, ","),
		"NCCL_NVLS_ENABLE=0", "TORCH_SYMM_MEM_DISABLE_MULTICAST=1", "NVSHMEM_DISABLE_NVLS=1"}
}

// benchGPUs lists the GPUs a cuda run may use, in order: --gpus, else
// CUDA_VISIBLE_DEVICES, else every GPU NVML lists.
func benchGPUs(ctx context.Context, cfg benchConfig) ([]*pb.GPU, error) {
	all, err := (&nvml.Source{}).GPUs(ctx)
	if err != nil {
		return nil, fmt.Errorf("--backend cuda: %w", err)
	}
	spec, set := os.LookupEnv("CUDA_VISIBLE_DEVICES")
	what := "CUDA_VISIBLE_DEVICES"
	if cfg.gpusSet {
		spec, set, what = cfg.gpus, true, "--gpus"
	}
	gpus, err := visibleGPUs(all, spec, set)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return gpus, nil
}

// gpuLayout places a cuda run on its GPUs.
type gpuLayout struct {
	a, b    []string // the GPUs (UUIDs) of servers A and B; b is empty with one GPU
	visible []string // the native program's GPUs: its device i is visible[i]
	// devices are the logical devices of the client's map, in order:
	// 0 is A's first GPU, then B's GPU, then A's second GPU.
	devices           []gpuRef
	devA, devB, devA2 int
	native            bench.NativeDevices
	skip              map[string]string
	// ranks are the allreduce group's logical devices in rank order (A's
	// GPUs, then B's), rankGPUs their GPUs (UUIDs), the NCCL baseline's
	// CUDA_VISIBLE_DEVICES.
	ranks    []int
	rankGPUs []string
}

// gpuRef is a GPU of a started server: servers in start order, GPUs as
// the server numbers them.
type gpuRef struct{ server, gpu int }

// planGPUs places a cuda run on gpus: server A gets the first two (the
// peer-local pair), server B the third, so that a copy from A's first GPU
// to B crosses both servers' workers and two GPUs. A device map puts each
// GPU on one server, so two GPUs serve one of the peer groups: the
// two-server copy (A gets the first, B the second), or, when groups asks
// for peer-local without peer, the pair on A. With four GPUs or more and
// the allreduce group asked for, B gets the fourth too, so that the
// all-reduce runs 2 x 2 (A's GPUs, then B's). With one GPU both peer
// groups and the allreduce group are skipped. groups are the requested
// case groups (none: all).
func planGPUs(gpus []*pb.GPU, groups []string) (gpuLayout, error) {
	var ids []string
	for _, g := range gpus {
		ids = append(ids, g.GetUuid())
	}
	wants := func(g string) bool { return len(groups) == 0 || slices.Contains(groups, g) }
	var l gpuLayout
	switch n := len(ids); {
	case n == 0:
		return gpuLayout{}, errors.New("--backend cuda: no GPU to use")
	case n == 1:
		why := "needs 2 GPUs; 1 in use"
		return gpuLayout{
			a: ids[:1], visible: ids[:1], devices: []gpuRef{{0, 0}},
			skip: map[string]string{bench.GroupPeerLocal: why, bench.GroupPeer: why, bench.GroupAllReduce: why},
		}, nil
	case n == 2 && wants(bench.GroupPeerLocal) && !wants(bench.GroupPeer):
		l = gpuLayout{
			a: ids[:2], visible: ids[:2],
			devices: []gpuRef{{0, 0}, {0, 1}}, devA: 0, devB: 1, devA2: 1,
			native: bench.NativeDevices{A: 0, A2: 1, B: 1},
			skip:   map[string]string{bench.GroupPeer: "needs a third GPU beside the peer-local pair"},
			ranks:  []int{0, 1},
		}
	case n == 2:
		l = gpuLayout{
			a: ids[:1], b: ids[1:2], visible: ids[:2],
			devices: []gpuRef{{0, 0}, {1, 0}}, devA: 0, devB: 1, devA2: 1,
			native: bench.NativeDevices{A: 0, A2: 1, B: 1},
			skip:   map[string]string{bench.GroupPeerLocal: "needs a third GPU beside the two servers' (--cases peer-local measures it on two)"},
			ranks:  []int{0, 1},
		}
	case n == 3 || !wants(bench.GroupAllReduce):
		l = gpuLayout{
			a: ids[:2], b: ids[2:3], visible: ids[:3],
			devices: []gpuRef{{0, 0}, {1, 0}, {0, 1}}, devA: 0, devB: 1, devA2: 2,
			native: bench.NativeDevices{A: 0, A2: 1, B: 2},
			ranks:  []int{0, 2, 1},
		}
	default:
		// The allreduce group's fourth GPU goes to server B: 2 x 2.
		l = gpuLayout{
			a: ids[:2], b: ids[2:4], visible: ids[:4],
			devices: []gpuRef{{0, 0}, {1, 0}, {0, 1}, {1, 1}}, devA: 0, devB: 1, devA2: 2,
			native: bench.NativeDevices{A: 0, A2: 1, B: 2},
			ranks:  []int{0, 2, 1, 3},
		}
	}
	servers := [][]string{l.a, l.b}
	for _, d := range l.ranks {
		ref := l.devices[d]
		l.rankGPUs = append(l.rankGPUs, servers[ref.server][ref.gpu])
	}
	return l, nil
}

// runBenchPeer is the hidden subcommand `xgpu bench` starts as its
// baseline process: a raw echo and bulk sink over the data-plane transport
// and over TCP. Its address line (--addr-file) is its bench.PeerInfo as
// JSON.
func runBenchPeer(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("bench-peer", "[flags]", stderr)
	host := fs.String("listen-host", "127.0.0.1", "host or IP to listen on (QUIC and TCP, ports chosen by the kernel)")
	maxBytes := byteSize(bench.DefaultPeerMaxBytes)
	fs.Var(&maxBytes, "max-bytes", "largest transfer accepted")
	addrFile := fs.String("addr-file", "", "write the peer's addresses and certificate pin (JSON) to this file once serving")
	newLogger := logFlags(fs, stderr)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return errUsage
	}
	if maxBytes == 0 || uint64(maxBytes) > bench.MaxSize {
		return fmt.Errorf("--max-bytes %s outside 1B..%s", formatSize(uint64(maxBytes)), formatSize(bench.MaxSize))
	}
	log := newLogger()
	p, err := bench.ServePeer(bench.PeerConfig{Host: *host, MaxBytes: int64(maxBytes), Logger: log})
	if err != nil {
		return err
	}
	defer p.Close()
	line, err := json.Marshal(p.Info())
	if err != nil {
		return err
	}
	if err := writeAddrFile(*addrFile, string(line)); err != nil {
		return err
	}
	log.Info("bench peer ready", "quic", p.Info().QUIC, "tcp", p.Info().TCP)
	<-ctx.Done()
	if err := p.Close(); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}
