// Command xgpu is the one binary of xgpu: the GPU server, the pool
// aggregator, the client tools and a loopback demo cluster.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
)

// version is stamped at build time with -X main.version=...
var version = "dev"

// command is one subcommand of xgpu.
type command struct {
	name    string
	summary string // empty: hidden from the usage text
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

func commands() []command {
	return []command{
		{"server", "serve this host's GPUs (or emulated host devices) to the pool", runServer},
		{"aggregator", "run the pool controller: registry, leases, placement", runAggregator},
		{"ls", "list the pool's hosts and devices, leased or free", runLs},
		{"alloc", "lease vGPUs from the pool and print the device map", runAlloc},
		{"release", "give a lease back to the pool", runRelease},
		{"renew", "extend a lease by its TTL", runRenew},
		{"leases", "list the pool's leases", runLeases},
		{"topo", "show the link matrix of a lease or of the whole pool", runTopo},
		{"demo", "start a loopback cluster on the host backend", runDemo},
		{"bench", "measure xgpu against baselines of the same run", runBench},
		{"bench-peer", "", runBenchPeer},
		{"version", "print the version", runVersion},
		{"worker", "", runWorker},
	}
}

func usage(w io.Writer) {
	fmt.Fprintf(w, "xgpu %s: GPU pooling across hosts\n\nUsage: xgpu <command> [flags]\n\nCommands:\n", version)
	cmds := commands()
	sort.Slice(cmds, func(i, j int) bool { return cmds[i].name < cmds[j].name })
	for _, c := range cmds {
		if c.summary == "" {
			continue
		}
		fmt.Fprintf(w, "  %-11s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, "\nRun 'xgpu <command> -h' for a command's flags.\n")
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// errUsage marks errors that should print the command's usage; the flag
// package has already printed it.
var errUsage = errors.New("usage")

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stdout)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, c := range commands() {
		if c.name != args[0] {
			continue
		}
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		err := c.run(ctx, args[1:], stdout, stderr)
		switch {
		case err == nil:
			return 0
		case errors.Is(err, flag.ErrHelp):
			return 0
		case errors.Is(err, errUsage):
			return 2
		default:
			fmt.Fprintf(stderr, "xgpu %s: %v\n", c.name, err)
			return 1
		}
	}
	fmt.Fprintf(stderr, "xgpu: unknown command %q\n\n", args[0])
	usage(stderr)
	return 2
}

// newFlagSet returns a flag set that reports errors instead of exiting.
func newFlagSet(name, synopsis string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("xgpu "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: xgpu %s %s\n\nFlags:\n", name, synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args and maps flag errors to errUsage.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	return nil
}

// logFlags adds --log-level and returns a constructor for the logger.
func logFlags(fs *flag.FlagSet, stderr io.Writer) func() *slog.Logger {
	level := fs.String("log-level", envOr("XGPU_LOG_LEVEL", "info"), "log level: debug, info, warn, error (env XGPU_LOG_LEVEL)")
	return func() *slog.Logger {
		var l slog.Level
		if err := l.UnmarshalText([]byte(*level)); err != nil {
			l = slog.LevelInfo
		}
		return slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: l}))
	}
}

func envOr(key, def string) string {
	if v := strings.TrimSpace(os.Getenv(key)); v != "" {
		return v
	}
	return def
}

func runVersion(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("version", "", stderr)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "xgpu %s\n", version)
	return nil
}
