package core

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/xgpu/xgpu/devicemap"
	"github.com/xgpu/xgpu/internal/certs"
	"github.com/xgpu/xgpu/runtime"
)

// Environment variables the shim reads (documented in docs/cuda-shim.md).
const (
	EnvDeviceMap  = "XGPU_DEVICE_MAP"  // path of a device-map file
	EnvLease      = "XGPU_LEASE"       // lease id, with EnvAggregator
	EnvAggregator = "XGPU_AGGREGATOR"  // aggregator host:port, with EnvLease
	EnvCertDir    = "XGPU_CERT_DIR"    // cluster CA directory (mutual TLS); empty: dev mode
	EnvCertName   = "XGPU_CERT_NAME"   // client certificate name in EnvCertDir
	EnvLogLevel   = "XGPU_LOG_LEVEL"   // debug, info, warn (default), error
	EnvClientName = "XGPU_CLIENT_NAME" // name in the servers' session lists
	EnvVisible    = "CUDA_VISIBLE_DEVICES"
)

// DefaultCloseTimeout bounds how long the shim's shutdown at process exit
// waits for the servers.
const DefaultCloseTimeout = 2 * time.Second

// ErrNoConfig is returned by ConfigFromEnv when the environment names no
// devices: neither EnvDeviceMap nor EnvLease is set.
var ErrNoConfig = errors.New("core: no devices configured: set " + EnvDeviceMap + " to a device-map file, or " +
	EnvLease + " and " + EnvAggregator + " (xgpu run sets them)")

// Config says where the shim's devices come from.
type Config struct {
	// Map is the device map to open. Exactly one of Map and Lease is set.
	Map *devicemap.Map
	// Lease is a lease id whose device map the aggregator at Aggregator
	// gives.
	Lease, Aggregator string
	// Runtime is the runtime configuration; its Map is set from Map (or
	// the lease) when the shim opens. Zero fields take the runtime's
	// defaults, except CloseTimeout: DefaultCloseTimeout.
	Runtime runtime.Config
	// Logger receives the shim's log lines. Zero: nothing is logged.
	Logger *slog.Logger
}

// ConfigFromEnv builds a Config from the environment lookupEnv reads
// (os.LookupEnv in the shim). It returns ErrNoConfig when no devices are
// configured, and a clear error for a map file that cannot be read.
// CUDA_VISIBLE_DEVICES selects and reorders the map's devices as it does
// for CUDA; as in CUDA, an invalid entry hides it and every later entry
// (the problem is logged), and an empty value hides every device.
func ConfigFromEnv(lookupEnv func(string) (string, bool)) (Config, error) {
	getenv := func(k string) string { v, _ := lookupEnv(k); return v }
	cfg := Config{Logger: NewLogger(getenv(EnvLogLevel))}
	cfg.Runtime.CloseTimeout = DefaultCloseTimeout
	cfg.Runtime.Logger = cfg.Logger
	cfg.Runtime.Client = getenv(EnvClientName)
	if dir := getenv(EnvCertDir); dir != "" {
		name := getenv(EnvCertName)
		if name == "" {
			return Config{}, fmt.Errorf("core: %s is set but %s is not", EnvCertDir, EnvCertName)
		}
		tc, err := certs.LoadTLS(dir, name, certs.RoleClient)
		if err != nil {
			return Config{}, fmt.Errorf("core: client certificate: %w", err)
		}
		cfg.Runtime.TLS = tc
		cfg.Runtime.GRPCDialOptions = []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(tc.Clone()))}
	}
	path, lease, agg := getenv(EnvDeviceMap), getenv(EnvLease), getenv(EnvAggregator)
	switch {
	case path != "" && lease != "":
		return Config{}, fmt.Errorf("core: both %s and %s are set; set one", EnvDeviceMap, EnvLease)
	case path != "":
		m, err := devicemap.Load(path)
		if err != nil {
			return Config{}, fmt.Errorf("core: %s: %w", EnvDeviceMap, err)
		}
		if v, ok := lookupEnv(EnvVisible); ok {
			sel, err := m.Select(v)
			if sel == nil {
				return Config{}, fmt.Errorf("core: %s=%q: %w", EnvVisible, v, err)
			}
			if err != nil {
				cfg.Logger.Warn("CUDA_VISIBLE_DEVICES: devices from the bad entry on are hidden", "value", v, "err", err)
			}
			m = sel
		}
		cfg.Map = m
	case lease != "":
		if agg == "" {
			return Config{}, fmt.Errorf("core: %s is set but %s is not", EnvLease, EnvAggregator)
		}
		cfg.Lease, cfg.Aggregator = lease, agg
	default:
		return Config{}, ErrNoConfig
	}
	return cfg, nil
}

// NewLogger returns a text logger on stderr at level ("debug", "info",
// "warn", "error"; anything else: "warn"), whose lines start "xgpu:".
func NewLogger(level string) *slog.Logger {
	var l slog.Level
	switch strings.ToLower(level) {
	case "debug":
		l = slog.LevelDebug
	case "info":
		l = slog.LevelInfo
	case "error":
		l = slog.LevelError
	default:
		l = slog.LevelWarn
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l})).With("component", "xgpu-cudart")
}
