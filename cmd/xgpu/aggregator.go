package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"

	"github.com/xgpu/xgpu/aggregator"
	"github.com/xgpu/xgpu/internal/telemetry/metrics"
)

func runAggregator(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("aggregator", "[flags]", stderr)
	listen := fs.String("listen", envOr("XGPU_AGGREGATOR_LISTEN", ":7700"), "gRPC address to listen on (env XGPU_AGGREGATOR_LISTEN)")
	dataDir := fs.String("data-dir", "", "embedded etcd data directory; state survives restarts (default: a temporary directory, state lost at exit)")
	endpoints := fs.String("etcd-endpoints", "", "comma-separated client URLs of an external etcd cluster, instead of the embedded one")
	etcdTimeout := fs.Duration("etcd-timeout", aggregator.DefaultEtcdTimeout, "how long to wait for etcd at start")
	hbInterval := fs.Duration("heartbeat-interval", aggregator.DefaultHeartbeatInterval, "how often servers heartbeat")
	hbTimeout := fs.Duration("heartbeat-timeout", aggregator.DefaultHeartbeatTimeout, "silence after which a server is dead and leaves the pool")
	ttl := fs.Duration("lease-ttl", aggregator.DefaultLeaseTTL, "TTL of a lease whose request names none")
	maxTTL := fs.Duration("max-lease-ttl", aggregator.DefaultMaxLeaseTTL, "longest TTL a lease may ask for")
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
	stopTracing, err := tf.startTracing(ctx, "aggregator", log)
	if err != nil {
		return err
	}
	defer stopTracing()
	cfg := aggregator.Config{
		DataDir: *dataDir, EtcdTimeout: *etcdTimeout, HeartbeatInterval: *hbInterval, HeartbeatTimeout: *hbTimeout,
		DefaultLeaseTTL: *ttl, MaxLeaseTTL: *maxTTL, Logger: log,
	}
	if *endpoints != "" {
		for _, e := range strings.Split(*endpoints, ",") {
			if e = strings.TrimSpace(e); e != "" {
				cfg.EtcdEndpoints = append(cfg.EtcdEndpoints, e)
			}
		}
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	lis, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	a, err := aggregator.New(ctx, cfg)
	if err != nil {
		lis.Close()
		return err
	}
	stopMetrics, err := serveMetrics(tf.metricsAddr, metrics.Handler(), log)
	if err != nil {
		lis.Close()
		a.Close()
		return err
	}
	defer stopMetrics()
	return serveUntilDone(ctx, a, lis, aggregator.ErrServerClosed, log, func() error {
		store := "embedded etcd in " + *dataDir
		switch {
		case len(cfg.EtcdEndpoints) > 0:
			store = "etcd " + strings.Join(cfg.EtcdEndpoints, ",")
		case *dataDir == "":
			store = "embedded etcd in a temporary directory (state is lost at exit; set --data-dir)"
		}
		log.Info("aggregator ready", "listen", lis.Addr().String(), "store", store)
		return writeAddrFile(*addrFile, lis.Addr().String())
	})
}
