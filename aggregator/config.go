package aggregator

import (
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/xgpu/xgpu/internal/clock"
)

// Defaults of Config.
const (
	DefaultHeartbeatInterval = time.Second
	DefaultHeartbeatTimeout  = 5 * time.Second
	DefaultLeaseTTL          = 30 * time.Second
	DefaultMaxLeaseTTL       = 24 * time.Hour
	DefaultEtcdTimeout       = 10 * time.Second
)

// MinLeaseTTL is the shortest lease TTL the aggregator grants: a client
// renews at a third of the TTL, and a shorter lease would spend its life
// renewing.
const MinLeaseTTL = time.Second

// Config configures an Aggregator. The zero Config is valid: an embedded
// etcd in a temporary directory (state lost at Close), the default timings,
// the real clock and slog.Default().
type Config struct {
	// EtcdEndpoints are the client URLs of an external etcd cluster, e.g.
	// "http://10.0.0.1:2379". Empty means an embedded single-node etcd in
	// DataDir.
	EtcdEndpoints []string
	// DataDir is the embedded etcd's data directory, created if missing.
	// Empty means a fresh temporary directory removed at Close, so nothing
	// survives a restart (a warning is logged). Must be empty with
	// EtcdEndpoints or Store.
	DataDir string
	// EtcdTimeout bounds how long New waits for the external cluster to
	// answer or the embedded etcd to become ready. 0 means
	// DefaultEtcdTimeout (10 s).
	EtcdTimeout time.Duration

	// HeartbeatInterval is how often servers are told to heartbeat, and how
	// often the aggregator sweeps for dead servers and expired leases. 0
	// means DefaultHeartbeatInterval (1 s).
	HeartbeatInterval time.Duration
	// HeartbeatTimeout is how long a server may stay silent before it is
	// dead; at least twice HeartbeatInterval. 0 means
	// DefaultHeartbeatTimeout (5 s).
	HeartbeatTimeout time.Duration
	// DefaultLeaseTTL is the TTL of a lease whose request names none. 0
	// means DefaultLeaseTTL (30 s).
	DefaultLeaseTTL time.Duration
	// MaxLeaseTTL is the longest TTL a request may ask for. 0 means
	// DefaultMaxLeaseTTL (24 h).
	MaxLeaseTTL time.Duration

	// Clock drives heartbeat deadlines and lease expiry. nil means
	// clock.Real().
	Clock clock.Clock
	// Logger receives the aggregator's and the embedded etcd's logs. nil
	// means slog.Default().
	Logger *slog.Logger
	// Store replaces etcd, for tests (NewMemoryStore) or a caller-managed
	// etcd client (NewEtcdStore). The caller keeps ownership: Close does not
	// close it. nil means etcd as above.
	Store Store
}

// withDefaults returns c with every zero field set to its default.
func (c Config) withDefaults() Config {
	if c.EtcdTimeout == 0 {
		c.EtcdTimeout = DefaultEtcdTimeout
	}
	if c.HeartbeatInterval == 0 {
		c.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if c.HeartbeatTimeout == 0 {
		c.HeartbeatTimeout = max(DefaultHeartbeatTimeout, 2*c.HeartbeatInterval)
	}
	if c.DefaultLeaseTTL == 0 {
		c.DefaultLeaseTTL = DefaultLeaseTTL
	}
	if c.MaxLeaseTTL == 0 {
		c.MaxLeaseTTL = max(DefaultMaxLeaseTTL, c.DefaultLeaseTTL)
	}
	if c.Clock == nil {
		c.Clock = clock.Real()
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Validate reports the first problem of c, after zero fields take their
// defaults, as an error wrapping ErrInvalid.
func (c Config) Validate() error {
	d := c.withDefaults()
	bad := func(format string, args ...any) error {
		return &Error{Kind: ErrInvalid, Msg: "config: " + fmt.Sprintf(format, args...)}
	}
	for _, f := range []struct {
		name string
		v    time.Duration
	}{
		{"EtcdTimeout", c.EtcdTimeout}, {"HeartbeatInterval", c.HeartbeatInterval}, {"HeartbeatTimeout", c.HeartbeatTimeout},
		{"DefaultLeaseTTL", c.DefaultLeaseTTL}, {"MaxLeaseTTL", c.MaxLeaseTTL},
	} {
		if f.v < 0 {
			return bad("%s %v is negative", f.name, f.v)
		}
	}
	switch {
	case d.HeartbeatTimeout < 2*d.HeartbeatInterval:
		return bad("HeartbeatTimeout %v is less than twice HeartbeatInterval %v", d.HeartbeatTimeout, d.HeartbeatInterval)
	case d.DefaultLeaseTTL < MinLeaseTTL:
		return bad("DefaultLeaseTTL %v is below the minimum %v", d.DefaultLeaseTTL, MinLeaseTTL)
	case d.MaxLeaseTTL < d.DefaultLeaseTTL:
		return bad("MaxLeaseTTL %v is less than DefaultLeaseTTL %v", d.MaxLeaseTTL, d.DefaultLeaseTTL)
	case c.Store != nil && (len(c.EtcdEndpoints) > 0 || c.DataDir != ""):
		return bad("Store excludes EtcdEndpoints and DataDir")
	case len(c.EtcdEndpoints) > 0 && c.DataDir != "":
		return bad("DataDir is for the embedded etcd; it must be empty with EtcdEndpoints")
	}
	for i, ep := range c.EtcdEndpoints {
		if strings.TrimSpace(ep) == "" || strings.ContainsAny(ep, " \t\r\n") {
			return bad("EtcdEndpoints[%d] %q is not an address", i, ep)
		}
	}
	return nil
}
