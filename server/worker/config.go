package worker

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/xgpu/xgpu/peers"
	"github.com/xgpu/xgpu/server/backend"
	"github.com/xgpu/xgpu/server/host"
)

// Backend kinds a Config names.
const (
	BackendHost = "host" // emulated devices in host memory (server/host)
	BackendCUDA = "cuda" // the NVIDIA driver (server/cuda), registered with RegisterBackend
)

// TLS modes of a worker's data-plane listener.
const (
	// TLSDev makes a throw-away certificate at start; clients pin its
	// SHA-256 (Ready.CertSHA256, handed to them over the control channel)
	// and authenticate with the session token. No client certificate is
	// asked for.
	TLSDev = "dev"
	// TLSCA loads the node certificate Name from Dir (internal/certs
	// LoadTLS) and requires clients to present a certificate of the
	// cluster CA: mutual TLS.
	TLSCA = "ca"
)

// Defaults for zero Config fields.
const (
	// DefaultClientTimeout is how long a worker waits for its client to
	// connect and present the token before it ends the session.
	DefaultClientTimeout = 30 * time.Second
	// DefaultStagingLimit bounds the host memory a worker holds at once for
	// payloads in flight (host-to-device, device-to-host and peer copies).
	DefaultStagingLimit = 1 << 30
	// MaxLogicalIndex is the largest logical device index a worker accepts.
	MaxLogicalIndex = 1<<16 - 1
	// TokenMinLen is the shortest session token a worker accepts.
	TokenMinLen = 16
)

// Config is everything a worker process needs, handed to it as one JSON
// document on its standard input. The supervisor fills every field it
// knows; the zero value of each optional field is documented below.
type Config struct {
	// SessionID names the session in logs. Required.
	SessionID string `json:"session_id"`
	// Token is the secret the client (and peer workers) present in their
	// first call, OpHello. At least TokenMinLen bytes, and free of '|' (it
	// travels inside OpPeerConnect's "addr|token|pin"). Required.
	Token string `json:"token"`
	// Devices are the session's devices, one per logical index. Required.
	Devices []DeviceConfig `json:"devices"`
	// Backend is BackendHost or BackendCUDA. Zero: BackendHost.
	Backend string `json:"backend"`
	// Host configures the host backend, so that the worker opens the same
	// emulated devices the supervisor lists. Zero (nil): host.Config{}.
	Host *host.Config `json:"host,omitempty"`
	// CUDA is the cuda backend's configuration, passed untouched to the
	// opener registered for BackendCUDA. Zero: that opener's default.
	CUDA json.RawMessage `json:"cuda,omitempty"`
	// ListenHost is the host or IP the data-plane listener binds (port
	// chosen by the system). Zero: every interface.
	ListenHost string `json:"listen_host,omitempty"`
	// AdvertiseHost is the host clients dial; the address the worker
	// reports is AdvertiseHost and the port it got. Zero: ListenHost when
	// it names a specific address, else "localhost".
	AdvertiseHost string `json:"advertise_host,omitempty"`
	// TLS selects how the listener authenticates. Zero: dev mode.
	TLS TLSConfig `json:"tls"`
	// Transport tunes the QUIC transport (idle timeout: how soon a lost
	// client is noticed). Zero: peers' defaults.
	Transport peers.Config `json:"transport"`
	// ClientTimeout is how long the worker waits for its client's first
	// call. Zero: DefaultClientTimeout.
	ClientTimeout time.Duration `json:"client_timeout,omitempty"`
	// StagingLimit bounds the bytes of payload the worker stages at once;
	// a call that needs more waits for earlier copies to finish (a single
	// copy larger than the limit runs alone). Zero: DefaultStagingLimit.
	StagingLimit uint64 `json:"staging_limit,omitempty"`
	// LogLevel is the least severe level Run logs: "debug", "info",
	// "warn" or "error". Zero: "info".
	LogLevel string `json:"log_level,omitempty"`
	// ModuleCacheDir is the directory, shared by every worker of the
	// server, where module images are kept by their SHA-256 so that an
	// image crosses the network once per server (created with mode 0700
	// if missing; a worker that cannot create it works without). Zero: no
	// cache; each session's devices get their images from the client.
	ModuleCacheDir string `json:"module_cache_dir,omitempty"`
	// Tracing configures the spans of the worker process (Run): the
	// supervisor's tracing flags. Zero: the OTEL_* environment, which
	// the worker inherits, decides; with none set tracing is off.
	Tracing TracingConfig `json:"tracing,omitzero"`
}

// DeviceConfig is one device of a session: a vGPU on a physical device,
// with the address window the client's device map gives it.
type DeviceConfig struct {
	// Logical is the device's index in the client's device map: the
	// device number every call names. At most MaxLogicalIndex.
	Logical uint32 `json:"logical"`
	// Physical is the physical device's index in the backend.
	Physical int `json:"physical"`
	// GPUUUID, when set, must be the UUID the backend reports for
	// Physical; the worker looks the device up by it when the indices
	// differ. Zero: Physical is trusted.
	GPUUUID string `json:"gpu_uuid,omitempty"`
	// VGPU is the vGPU id, for logs. Zero: none.
	VGPU string `json:"vgpu,omitempty"`
	// WindowBase and WindowSize bound the device's addresses (see
	// backend.DeviceSpec).
	WindowBase uint64 `json:"window_base"`
	WindowSize uint64 `json:"window_size"`
	// Quota is the vGPU's memory in bytes. Zero: the whole device or
	// window (backend.DeviceSpec.MemoryQuota).
	Quota uint64 `json:"quota"`
}

// Spec returns the backend.DeviceSpec of d.
func (d DeviceConfig) Spec() backend.DeviceSpec {
	return backend.DeviceSpec{Index: d.Physical, WindowBase: d.WindowBase, WindowSize: d.WindowSize, MemoryQuota: d.Quota}
}

// TLSConfig selects the TLS setup of a worker.
type TLSConfig struct {
	// Mode is TLSDev or TLSCA. Zero: TLSDev.
	Mode string `json:"mode,omitempty"`
	// Dir holds the cluster CA and the node certificate (TLSCA only).
	Dir string `json:"dir,omitempty"`
	// Name is the node certificate's name in Dir (TLSCA only).
	Name string `json:"name,omitempty"`
}

// Ready is the one JSON line a worker process prints on its standard
// output once it listens.
type Ready struct {
	// Address is the data-plane address clients dial, host:port.
	Address string `json:"address"`
	// CertSHA256 is the hex SHA-256 of the listener's leaf certificate
	// (DER), which clients pin in dev mode.
	CertSHA256 string `json:"cert_sha256"`
}

// Validate reports the first problem of c.
func (c *Config) Validate() error {
	switch {
	case c.SessionID == "":
		return errors.New("worker: config: session_id is required")
	case len(c.Token) < TokenMinLen:
		return fmt.Errorf("worker: config: token has %d bytes, want at least %d", len(c.Token), TokenMinLen)
	case strings.ContainsAny(c.Token, "|\n"):
		return errors.New("worker: config: token contains '|' or a newline")
	case len(c.Devices) == 0:
		return errors.New("worker: config: no devices")
	case c.ClientTimeout < 0:
		return errors.New("worker: config: client_timeout is negative")
	}
	switch c.Backend {
	case "", BackendHost, BackendCUDA:
	default:
		return fmt.Errorf("worker: config: backend %q is neither %q nor %q", c.Backend, BackendHost, BackendCUDA)
	}
	switch c.TLS.Mode {
	case "", TLSDev:
	case TLSCA:
		if c.TLS.Dir == "" || c.TLS.Name == "" {
			return errors.New("worker: config: tls mode \"ca\" needs dir and name")
		}
	default:
		return fmt.Errorf("worker: config: tls mode %q is neither %q nor %q", c.TLS.Mode, TLSDev, TLSCA)
	}
	if _, err := parseLevel(c.LogLevel); err != nil {
		return err
	}
	if _, err := c.Tracing.Telemetry(nil).Resolve(); err != nil {
		return fmt.Errorf("worker: config: tracing: %w", err)
	}
	if c.Host != nil {
		if err := c.Host.Validate(); err != nil {
			return fmt.Errorf("worker: config: %w", err)
		}
	}
	if err := c.Transport.Validate(); err != nil {
		return fmt.Errorf("worker: config: %w", err)
	}
	seen := make(map[uint32]bool, len(c.Devices))
	for i, d := range c.Devices {
		if d.Logical > MaxLogicalIndex {
			return fmt.Errorf("worker: config: device %d: logical index %d exceeds %d", i, d.Logical, MaxLogicalIndex)
		}
		if seen[d.Logical] {
			return fmt.Errorf("worker: config: logical index %d is listed twice", d.Logical)
		}
		seen[d.Logical] = true
		spec := d.Spec()
		if err := spec.Validate(); err != nil {
			return fmt.Errorf("worker: config: device %d: %w", d.Logical, err)
		}
		for _, o := range c.Devices[:i] {
			if spec.Overlaps(o.Spec()) {
				return fmt.Errorf("worker: config: windows of devices %d and %d overlap", o.Logical, d.Logical)
			}
		}
	}
	return nil
}

// withDefaults returns c with the zero fields that have a default filled.
func (c Config) withDefaults() Config {
	if c.Backend == "" {
		c.Backend = BackendHost
	}
	if c.TLS.Mode == "" {
		c.TLS.Mode = TLSDev
	}
	if c.ClientTimeout == 0 {
		c.ClientTimeout = DefaultClientTimeout
	}
	if c.StagingLimit == 0 {
		c.StagingLimit = DefaultStagingLimit
	}
	return c
}
