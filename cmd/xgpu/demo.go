package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/xgpu/xgpu/aggregator"
	"github.com/xgpu/xgpu/internal/telemetry/jaegerbin"
)

func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("demo", "[flags]", stderr)
	hosts := fs.Int("hosts", 16, "number of emulated hosts (one server process each)")
	gpus := fs.Int("gpus-per-host", 4, "emulated GPUs per host")
	memory := byteSize(16 << 30)
	fs.Var(&memory, "memory", "memory of each emulated GPU (taken from host memory only when allocated)")
	nvlinks := fs.Int("nvlinks", 18, "NVLink links reported between the GPUs of one host (0: PCIe only)")
	logDir := fs.String("log-dir", "", "directory for the processes' logs (default: a temporary directory, kept)")
	once := fs.Bool("once", false, "stop after showing the pool instead of running until interrupted")
	withJaeger := fs.Bool("jaeger", false, "also start Jaeger (built by hack/jaeger.sh, or $"+jaegerbin.EnvBin+"), trace every "+
		"process into it at full sampling, and run a small traced workload whose trace id is printed")
	tf := addTelemetryFlags(fs, false)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	switch {
	case *hosts < 1 || *hosts > 256:
		return fmt.Errorf("--hosts %d out of range 1..256", *hosts)
	case *gpus < 1 || *gpus > 64:
		return fmt.Errorf("--gpus-per-host %d out of range 1..64", *gpus)
	case *withJaeger && *hosts**gpus < 2:
		return errors.New("--jaeger needs at least two devices (--hosts, --gpus-per-host)")
	}
	jaegerBin := ""
	if *withJaeger {
		bin, err := jaegerBinary()
		if err != nil {
			return err
		}
		jaegerBin = bin
	}
	dir := *logDir
	if dir == "" {
		d, err := os.MkdirTemp("", "xgpu-demo-")
		if err != nil {
			return err
		}
		dir = d
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "logs: %s\n", dir)

	var children []*child
	defer func() {
		if err := stopAll(children, 10*time.Second); err != nil {
			fmt.Fprintf(stderr, "xgpu demo: %v\n", err)
		}
	}()
	logFile := func(name string) (*os.File, error) { return os.Create(filepath.Join(dir, name+".log")) }

	var jg *jaeger
	if *withJaeger {
		j, err := startJaeger(ctx, jaegerBin, dir)
		if err != nil {
			return err
		}
		children = append(children, j.child)
		jg = j
		tf.endpoint, tf.sampler, tf.ratio = j.otlpHTTP, "always_on", 0
		fmt.Fprintf(stdout, "jaeger: %s (OTLP %s)\n", j.queryURL, j.otlpHTTP)
	}
	// This process's spans: the traced workload's client and the
	// aggregator client's gRPC calls.
	stopTracing, err := tf.startTracing(ctx, "client", slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		return err
	}
	defer stopTracing()

	alog, err := logFile("aggregator")
	if err != nil {
		return err
	}
	defer alog.Close()
	agg, aggAddr, err := startChild(ctx, "aggregator", dir, alog, append([]string{"aggregator", "--listen", "127.0.0.1:0",
		"--data-dir", filepath.Join(dir, "etcd")}, tf.args()...)...)
	if err != nil {
		return err
	}
	children = append(children, agg)
	fmt.Fprintf(stdout, "aggregator: %s\n", aggAddr)

	for h := 0; h < *hosts; h++ {
		name := fmt.Sprintf("host%02d", h)
		f, err := logFile(name)
		if err != nil {
			return err
		}
		defer f.Close()
		c, addr, err := startChild(ctx, name, dir, f, append([]string{"server", "--backend", "host", "--host", name, "--id", name,
			"--listen", "127.0.0.1:0", "--aggregator", aggAddr, "--devices", strconv.Itoa(*gpus),
			"--memory", strconv.FormatUint(uint64(memory), 10), "--nvlinks", strconv.Itoa(*nvlinks)}, tf.args()...)...)
		if err != nil {
			return err
		}
		children = append(children, c)
		fmt.Fprintf(stdout, "server %s: %s (%d GPUs)\n", name, addr, *gpus)
	}

	client, err := dialAggregator(ctx, aggAddr)
	if err != nil {
		return err
	}
	defer client.Close()
	want := *hosts * *gpus
	if err := waitPool(ctx, client, want, 30*time.Second); err != nil {
		return err
	}
	lease, err := client.Allocate(ctx, aggregator.AllocateOptions{Count: want, TTL: time.Minute, Owner: "xgpu demo"})
	if err != nil {
		return fmt.Errorf("lease every device: %w", err)
	}
	fmt.Fprintf(stdout, "\nThe logical device list a client leasing all %d devices sees:\n\n", want)
	if err := printLease(stdout, lease); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\nIts topology (xgpu topo --lease %s):\n\n", lease.ID)
	if err := lease.Map.Matrix(stdout); err != nil {
		return err
	}
	if err := client.Release(ctx, lease.ID); err != nil {
		return fmt.Errorf("release the demo lease: %w", err)
	}
	fmt.Fprintf(stdout, "\nreleased lease %s\n", lease.ID)
	if jg != nil {
		if err := showTrace(ctx, jg, client, aggAddr, stopTracing, stdout); err != nil {
			return err
		}
	}
	if *once {
		return nil
	}
	fmt.Fprintf(stdout, "\nThe pool is running. In another shell:\n  export XGPU_AGGREGATOR=%s\n  xgpu ls\n  xgpu alloc -n 8\n  xgpu topo\nPress Ctrl-C to stop every process.\n", aggAddr)
	for {
		select {
		case <-ctx.Done():
			fmt.Fprintln(stdout, "\nstopping the demo cluster")
			return nil
		case <-agg.done:
			return errors.New("the aggregator exited; see its log")
		case <-time.After(time.Second):
			for _, c := range children {
				select {
				case <-c.done:
					fmt.Fprintf(stderr, "xgpu demo: %s exited (%v); see %s\n", c.name, c.err, filepath.Join(dir, c.name+".log"))
					return fmt.Errorf("%s exited", c.name)
				default:
				}
			}
		}
	}
}

// waitPool waits until the pool has at least want free vGPUs on live servers.
func waitPool(ctx context.Context, c *aggregator.Client, want int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	free := 0
	for time.Now().Before(deadline) {
		pool, err := c.Pool(ctx)
		if err == nil {
			free = 0
			for _, s := range pool.Servers {
				if !s.Alive {
					continue
				}
				for _, v := range s.Inventory.GetVgpus() {
					if pool.Leased[v.GetId()] == "" {
						free++
					}
				}
			}
			if free >= want {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("only %d of %d devices joined the pool within %v", free, want, timeout)
}
