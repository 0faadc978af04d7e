package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"

	"github.com/xgpu/xgpu/server"
	"github.com/xgpu/xgpu/server/backend"
	"github.com/xgpu/xgpu/server/cuda"
	"github.com/xgpu/xgpu/server/host"
	"github.com/xgpu/xgpu/server/nvml"
	"github.com/xgpu/xgpu/server/worker"
)

// registerCUDAWorker plugs the cuda backend into workers started by this
// binary; server/worker itself stays free of cgo.
func registerCUDAWorker() {
	worker.RegisterBackend(worker.BackendCUDA, func(c worker.Config) (backend.Backend, error) {
		var cc cuda.Config
		if len(c.CUDA) > 0 {
			if err := json.Unmarshal(c.CUDA, &cc); err != nil {
				return nil, fmt.Errorf("cuda backend config: %w", err)
			}
		}
		return cuda.New(cc)
	})
}

// runWorker is the hidden subcommand a server starts for each client
// session: its configuration comes as JSON on stdin.
func runWorker(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		return fmt.Errorf("takes no arguments; the server starts it with its configuration on stdin")
	}
	registerCUDAWorker()
	return worker.Main(ctx, os.Stdin, stdout, stderr)
}

func runServer(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("server", "[flags]", stderr)
	listen := fs.String("listen", envOr("XGPU_SERVER_LISTEN", ":7701"), "gRPC control address to listen on (env XGPU_SERVER_LISTEN)")
	advertise := fs.String("advertise", "", "address clients dial, host:port (default: the listen address, or this host's name and the port)")
	id := fs.String("id", "", "server id, unique in the pool and stable across restarts (default: host:port)")
	hostName := fs.String("host", "", "host name reported to the pool; servers of one machine share it (default: os hostname)")
	agg := fs.String("aggregator", os.Getenv("XGPU_AGGREGATOR"), "aggregator address host:port to register with; empty runs standalone (env XGPU_AGGREGATOR)")
	backendName := fs.String("backend", "auto", "device backend: cuda (NVIDIA GPUs through NVML and the driver), host (emulated devices in host memory), or auto (cuda when NVML finds GPUs)")
	devices := fs.Int("devices", 4, "host backend: number of emulated GPUs")
	memory := byteSize(16 << 30)
	fs.Var(&memory, "memory", "host backend: memory of each emulated GPU")
	nvlinks := fs.Int("nvlinks", 0, "host backend: NVLink links reported between every pair of emulated GPUs (0: PCIe only; 18 emulates an H200 HGX node)")
	perGPU := fs.Int("vgpus-per-gpu", 1, "split every GPU into this many vGPUs")
	vgpuMem := byteSize(0)
	fs.Var(&vgpuMem, "vgpu-memory", "memory of each vGPU (default: an even share of its GPU)")
	hb := fs.Duration("heartbeat-interval", 0, "heartbeat interval (default: what the aggregator asks for)")
	addrFile := fs.String("addr-file", "", "write the listening address to this file once serving")
	tf := addTelemetryFlags(fs, true)
	newLogger := logFlags(fs, stderr)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return errUsage
	}
	log := newLogger()
	stopTracing, err := tf.startTracing(ctx, "server", log)
	if err != nil {
		return err
	}
	defer stopTracing()

	cfg := server.Config{
		ID: *id, Host: *hostName, Advertise: *advertise, Aggregator: *agg,
		VGPUsPerGPU: *perGPU, VGPUMemory: uint64(vgpuMem), HeartbeatInterval: *hb,
		Logger: log, Version: version, Tracing: tf.workers(),
	}
	switch *backendName {
	case "host":
		hostID := *hostName
		if hostID == "" {
			hostID, _ = os.Hostname()
		}
		if *id != "" {
			hostID = *id
		}
		b, err := host.New(host.Config{Devices: *devices, Memory: uint64(memory), NVLinks: *nvlinks, HostID: hostID})
		if err != nil {
			return err
		}
		defer b.Close()
		gpus, err := server.BackendGPUs(b)
		if err != nil {
			return err
		}
		hc := b.Config()
		cfg.Backend, cfg.Source, cfg.HostBackend = server.BackendHost, server.StaticGPUs(gpus), &hc
	case "cuda", "auto":
		vis, visSet := os.LookupEnv("CUDA_VISIBLE_DEVICES")
		src := visibleSource(&nvml.Source{}, vis, visSet)
		if _, err := src.GPUs(ctx); err != nil {
			if *backendName == "auto" && errors.Is(err, nvml.ErrUnavailable) {
				return fmt.Errorf("no NVIDIA GPUs found (%v); use --backend host to serve emulated devices", err)
			}
			return err
		}
		cfg.Backend, cfg.Source = server.BackendCUDA, src
		registerCUDAWorker()
	default:
		return fmt.Errorf("unknown backend %q: want cuda, host or auto", *backendName)
	}

	srv, err := server.New(cfg)
	if err != nil {
		return err
	}
	lis, err := net.Listen("tcp", *listen)
	if err != nil {
		srv.Close()
		return fmt.Errorf("listen: %w", err)
	}
	stopMetrics, err := serveMetrics(tf.metricsAddr, srv.MetricsHandler(), log)
	if err != nil {
		lis.Close()
		srv.Close()
		return err
	}
	defer stopMetrics()
	return serveUntilDone(ctx, srv, lis, server.ErrServerClosed, log, func() error {
		inv := srv.Inventory()
		log.Info("server ready", "id", inv.GetServerId(), "listen", lis.Addr().String(), "advertise", inv.GetAddress(),
			"backend", cfg.Backend, "gpus", len(inv.GetGpus()), "vgpus", len(inv.GetVgpus()), "aggregator", *agg)
		return writeAddrFile(*addrFile, lis.Addr().String())
	})
}
