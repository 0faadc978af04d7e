package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/xgpu/xgpu/bench"
	"github.com/xgpu/xgpu/runtime"
)

// benchServers are the host-backend servers a bench run starts; the
// client gets the first device of each.
var benchServers = []string{"bench-a", "bench-b"}

func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("bench", "[flags]", stderr)
	jsonOut := fs.String("json", "", "also write the report as JSON to this file (- for stdout)")
	quick := fs.Bool("quick", false, "a quick run: copies up to 64 MiB, three rounds (under a minute)")
	sizes := fs.String("sizes", "", "comma-separated copy sizes, e.g. 1MiB,64MiB,1GiB (default: 1MiB..1GiB, or 1MiB..64MiB with --quick)")
	cases := fs.String("cases", "", "comma-separated case groups: "+strings.Join(bench.Groups, ",")+" (default: all)")
	rounds := fs.Int("rounds", 0, "rounds per case, each alternating xgpu and its baselines (default: 5, or 3 with --quick)")
	syncCalls := fs.Int("sync-calls", 0, "calls per method and round in the sync cases (default: 500, or 300 with --quick)")
	asyncCalls := fs.Int("async-calls", 0, "calls per method and round in the async case (default: 20000, or 10000 with --quick)")
	logDir := fs.String("log-dir", "", "directory for the started processes' logs (default: a temporary directory, removed after a successful run)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return errUsage
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
	rep, err := benchCluster(ctx, dir, opt, stderr)
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

// benchCluster starts two host-backend servers and two baseline peers on
// loopback, opens a client on a device of each server and runs the
// benchmark.
func benchCluster(ctx context.Context, dir string, opt bench.Options, stderr io.Writer) (*bench.Report, error) {
	sizes := opt.Sizes
	if len(sizes) == 0 {
		sizes = bench.DefaultSizes
	}
	largest := max(slices.Max(sizes), bench.DefaultTransportSize)
	// Every copy lands in one allocation of the largest size per device.
	memory := max(uint64(2<<30), 2*uint64(largest))

	var children []*child
	defer func() {
		if err := stopAll(children, 10*time.Second); err != nil {
			fmt.Fprintf(stderr, "xgpu bench: %v\n", err)
		}
	}()
	start := func(name string, args ...string) (string, error) {
		f, err := os.Create(filepath.Join(dir, name+".log"))
		if err != nil {
			return "", err
		}
		defer f.Close() // the child holds its own descriptor
		c, addr, err := startChild(ctx, name, dir, f, args...)
		if err != nil {
			return "", err
		}
		children = append(children, c)
		return addr, nil
	}
	var servers []string
	for _, name := range benchServers {
		addr, err := start(name, "server", "--backend", "host", "--host", name, "--id", name,
			"--listen", "127.0.0.1:0", "--devices", "1", "--memory", strconv.FormatUint(memory, 10),
			"--log-level", "warn")
		if err != nil {
			return nil, err
		}
		servers = append(servers, addr)
	}
	var infos []bench.PeerInfo
	for _, name := range []string{"bench-peer-a", "bench-peer-b"} {
		line, err := start(name, "bench-peer", "--listen-host", "127.0.0.1",
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

	m, err := bench.DeviceMap(ctx, servers)
	if err != nil {
		return nil, err
	}
	c, err := runtime.Open(ctx, runtime.Config{Map: m, Client: "xgpu bench"})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	env := bench.Env{
		Client: c, DevA: 0, DevB: 1, PeerA: infos[0], PeerB: infos[1], Backend: "host",
		Setup: "this client; 2 xgpu servers (host backend, 1 device each) with one session worker each; " +
			"2 baseline peer processes; all on loopback, sharing the machine's cores",
	}
	return bench.Run(ctx, env, opt)
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
