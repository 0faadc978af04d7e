package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/xgpu/xgpu/peers"
	"github.com/xgpu/xgpu/server/host"
	"github.com/xgpu/xgpu/server/worker"
)

// Backends a server reports in its inventory.
const (
	BackendHost = "host" // emulated devices in host memory
	BackendCUDA = "cuda" // the NVIDIA driver
)

const (
	// DefaultHeartbeatInterval is the heartbeat interval used when neither
	// Config.HeartbeatInterval nor the aggregator's Register answer sets one.
	DefaultHeartbeatInterval = 5 * time.Second

	// MaxVGPUsPerGPU bounds Config.VGPUsPerGPU: every vGPU gets at least 1%
	// of its GPU's compute.
	MaxVGPUsPerGPU = 100
)

// Config configures a Server. The zero value of every field but Backend and
// Source is a usable default, as each field says.
type Config struct {
	// ID names the server in the pool; it must be unique there and stable
	// across restarts of the same server, so that the aggregator recognises
	// a restarted server. Zero: Host + ":" + the port of the listener passed
	// to Serve (Host alone if the listener has no port).
	ID string

	// Host is the host name reported in the inventory; servers of one host
	// share it. Zero: os.Hostname().
	Host string

	// Advertise is the host:port clients dial to reach this server. Zero:
	// the listener's address if it is bound to a specific IP, otherwise
	// Host + ":" + the listener's port.
	Advertise string

	// Backend names the device backend, BackendHost or BackendCUDA. It is
	// reported in the inventory only. Required.
	Backend string

	// Source lists the GPUs of this server. New calls it once. Required.
	Source GPUSource

	// VGPUsPerGPU is the number of vGPUs each GPU is split into, 1 to
	// MaxVGPUsPerGPU. Zero: 1 (one vGPU per GPU).
	VGPUsPerGPU int

	// VGPUMemory is the memory quota of each vGPU in bytes; New fails if
	// VGPUMemory*VGPUsPerGPU exceeds a GPU's memory. Zero: each GPU's memory
	// split evenly, rounded down to 2 MiB.
	VGPUMemory uint64

	// Aggregator is the host:port of the pool's aggregator. Zero: the server
	// runs standalone and registers nowhere.
	Aggregator string

	// HeartbeatInterval is the time between heartbeats to the aggregator.
	// Zero: the interval the aggregator answers to Register, or
	// DefaultHeartbeatInterval if it answers none.
	HeartbeatInterval time.Duration

	// Logger receives the server's log lines. Zero: slog.Default().
	Logger *slog.Logger

	// Version is the xgpu version reported in the inventory. Zero: reported
	// as empty.
	Version string

	// GRPCOptions are passed to grpc.NewServer (credentials, interceptors,
	// keepalive). Zero: none, a plaintext server.
	GRPCOptions []grpc.ServerOption

	// AggregatorDialOptions are passed to grpc.NewClient for the connection
	// to the aggregator; when set they must include transport credentials.
	// Zero: a plaintext connection.
	AggregatorDialOptions []grpc.DialOption

	// Worker starts the worker of each session. Zero: an ExecLauncher,
	// which runs this binary again as `xgpu worker`.
	Worker WorkerLauncher

	// HostBackend is the host backend's configuration, which workers use
	// to open the same emulated devices the inventory lists (so it must
	// be the config Source's GPUs came from: same Devices, Memory, HostID
	// and NVLinks). Used when Backend is BackendHost. Zero: host.Config{},
	// whose devices match only a Source built from host.Config{} too.
	HostBackend *host.Config

	// CUDABackend is the cuda backend's configuration as JSON, handed to
	// workers untouched. Used when Backend is BackendCUDA. Zero: the cuda
	// backend's defaults.
	CUDABackend json.RawMessage

	// WorkerListenHost is the host or IP workers bind their QUIC listeners
	// to. Zero: every interface. Clients reach a worker at the host of the
	// advertised address (Advertise), or at WorkerListenHost when that is a
	// specific address.
	WorkerListenHost string

	// WorkerTLS is how workers authenticate their data-plane connections.
	// Zero: dev mode (a throw-away certificate per worker that clients pin;
	// the session token authenticates the client).
	WorkerTLS worker.TLSConfig

	// WorkerTransport tunes the workers' QUIC transport; its idle timeout
	// bounds how long a vanished client holds its vGPUs. Zero: the peers
	// package's defaults.
	WorkerTransport peers.Config

	// ModuleCacheDir is where workers keep the module images (fatbins,
	// cubins, PTX) clients load, by SHA-256, so that an image crosses the
	// network once per server rather than once per session. It holds the
	// code of every tenant of the server: give it to the server's user
	// alone (workers create it with mode 0700). Zero:
	// DefaultModuleCacheDir(), unless NoModuleCache.
	ModuleCacheDir string

	// NoModuleCache turns the module cache off: every session uploads
	// its images. Zero: the cache is on.
	NoModuleCache bool

	// Tracing is the tracing setup of the workers (the supervisor's own
	// is the process's telemetry.Setup): the endpoint, sampler and ratio
	// flags the server was given. Zero: the OTEL_* environment variables,
	// which workers inherit, decide; with none set tracing is off.
	Tracing worker.TracingConfig
}

// DefaultModuleCacheDir is the module cache of a Config that names none:
// xgpu/modules under the user's cache directory ($XDG_CACHE_HOME, else
// ~/.cache), or "" when there is none (no cache).
func DefaultModuleCacheDir() string {
	dir, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	return filepath.Join(dir, "xgpu", "modules")
}

// Validate reports every problem of c, joined, or nil. It does not change c;
// zero values that have a default are valid.
func (c *Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("server: config: %s: %s", field, fmt.Sprintf(format, args...)))
	}
	switch c.Backend {
	case BackendHost, BackendCUDA:
	case "":
		bad("Backend", "required (%q or %q)", BackendHost, BackendCUDA)
	default:
		bad("Backend", "%q is neither %q nor %q", c.Backend, BackendHost, BackendCUDA)
	}
	if c.Source == nil {
		bad("Source", "required")
	}
	if c.VGPUsPerGPU < 0 || c.VGPUsPerGPU > MaxVGPUsPerGPU {
		bad("VGPUsPerGPU", "%d is outside 0..%d", c.VGPUsPerGPU, MaxVGPUsPerGPU)
	}
	if c.HeartbeatInterval < 0 {
		bad("HeartbeatInterval", "%v is negative", c.HeartbeatInterval)
	}
	if c.Aggregator != "" {
		if err := checkHostPort(c.Aggregator); err != nil {
			bad("Aggregator", "%v", err)
		}
	}
	if c.Advertise != "" {
		if err := checkHostPort(c.Advertise); err != nil {
			bad("Advertise", "%v", err)
		}
	}
	if c.HostBackend != nil {
		if err := c.HostBackend.Validate(); err != nil {
			bad("HostBackend", "%v", err)
		}
	}
	if err := c.WorkerTransport.Validate(); err != nil {
		bad("WorkerTransport", "%v", err)
	}
	if _, err := c.Tracing.Telemetry(nil).Resolve(); err != nil {
		bad("Tracing", "%v", err)
	}
	switch c.WorkerTLS.Mode {
	case "", worker.TLSDev:
	case worker.TLSCA:
		if c.WorkerTLS.Dir == "" || c.WorkerTLS.Name == "" {
			bad("WorkerTLS", "mode %q needs Dir and Name", worker.TLSCA)
		}
	default:
		bad("WorkerTLS", "mode %q is neither %q nor %q", c.WorkerTLS.Mode, worker.TLSDev, worker.TLSCA)
	}
	return errors.Join(errs...)
}

// checkHostPort reports whether s is host:port with a host and a numeric
// port in 1..65535.
func checkHostPort(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("%q is not host:port", s)
	}
	if host == "" {
		return fmt.Errorf("%q has no host", s)
	}
	if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 {
		return fmt.Errorf("%q has no valid port", s)
	}
	return nil
}

// withDefaults returns a copy of c with the defaults that need no listener
// applied. c must be valid.
func (c Config) withDefaults() (Config, error) {
	if c.Host == "" {
		h, err := os.Hostname()
		if err != nil {
			return c, fmt.Errorf("server: config: Host: %w", err)
		}
		c.Host = h
	}
	if c.VGPUsPerGPU == 0 {
		c.VGPUsPerGPU = 1
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Worker == nil {
		c.Worker = &ExecLauncher{}
	}
	switch {
	case c.NoModuleCache:
		c.ModuleCacheDir = ""
	case c.ModuleCacheDir == "":
		c.ModuleCacheDir = DefaultModuleCacheDir()
	default:
		// Workers may run elsewhere than the supervisor's directory.
		dir, err := filepath.Abs(c.ModuleCacheDir)
		if err != nil {
			return c, fmt.Errorf("server: config: ModuleCacheDir: %w", err)
		}
		c.ModuleCacheDir = dir
	}
	if c.AggregatorDialOptions == nil {
		c.AggregatorDialOptions = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	}
	return c, nil
}

// addresses returns the server ID and the advertised address for a server
// listening on addr, applying the defaults documented on Config.
func (c *Config) addresses(addr net.Addr) (id, advertise string) {
	lhost, lport, err := net.SplitHostPort(addr.String())
	if err != nil {
		lhost, lport = "", ""
	}
	id = c.ID
	if id == "" {
		id = c.Host
		if lport != "" {
			id = net.JoinHostPort(c.Host, lport)
		}
	}
	advertise = c.Advertise
	if advertise == "" {
		switch ip := net.ParseIP(lhost); {
		case lport == "":
			advertise = addr.String()
		case ip != nil && !ip.IsUnspecified():
			advertise = net.JoinHostPort(lhost, lport)
		default:
			advertise = net.JoinHostPort(c.Host, lport)
		}
	}
	return id, advertise
}
