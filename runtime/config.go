package runtime

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/xgpu/xgpu/devicemap"
	"github.com/xgpu/xgpu/internal/calls"
	"github.com/xgpu/xgpu/peers"
)

// Defaults for the zero fields of Config.
const (
	// DefaultDialTimeout bounds Open.
	DefaultDialTimeout = 15 * time.Second
	// DefaultCloseTimeout bounds Close.
	DefaultCloseTimeout = 5 * time.Second
	// DefaultChunkSize is the piece size large copies are cut into.
	DefaultChunkSize = 8 << 20
	// DefaultMaxInflight is the number of chunks of bulk copies one session
	// keeps in flight.
	DefaultMaxInflight = 8
)

// Limits on Config fields.
const (
	MinChunkSize  = calls.InlineMax
	MaxChunkSize  = 256 << 20
	MaxFlushDelay = 10 * time.Millisecond
)

// Config configures Open. Every field but Map has a usable zero value, as
// its comment says.
type Config struct {
	// Map is the logical device list: device i of the client is
	// Map.Devices[i], on the server at its Address. Required; it must
	// pass Map.Validate.
	Map *devicemap.Map

	// LeaseID is sent with every OpenSession, so that servers can check
	// the devices are leased to this client. Zero: Map.LeaseID.
	LeaseID string

	// Client names the client in the servers' session lists. Zero:
	// "user@host pid N".
	Client string

	// DialTimeout bounds Open as a whole: opening the sessions, starting
	// the workers and connecting to them. Zero: DefaultDialTimeout (15 s).
	DialTimeout time.Duration

	// CloseTimeout bounds Close. Zero: DefaultCloseTimeout (5 s).
	CloseTimeout time.Duration

	// TLS is the client side of the data plane's mutual TLS (from
	// certs.LoadTLS with certs.RoleClient) for a cluster with a CA. The
	// worker's certificate is also pinned to the SHA-256 its server
	// reports. Zero: dev mode: the worker's throw-away certificate is
	// trusted only through that pin, which came over the control channel.
	TLS *tls.Config

	// GRPCDialOptions are passed to grpc.NewClient for the control
	// connections to servers (and the aggregator, in OpenLease); when set
	// they must include transport credentials. Zero: plaintext.
	GRPCDialOptions []grpc.DialOption

	// Transport tunes the QUIC connections to the workers. Its
	// MaxIdleTimeout is the bound on how long a dead worker, server or
	// network goes unnoticed: every call waiting on such a session fails
	// with a *LostError no later than that after the last packet heard.
	// Zero (nil): peers' defaults (5 s, keep-alives every second, four bulk
	// lanes).
	Transport *peers.Config

	// NoLocalLane keeps bulk data on QUIC. Zero: a session whose worker
	// runs on this host (and in this network namespace) moves its copies
	// through shared memory (a peers local lane), which the client finds
	// out by trying; the calls stay on QUIC either way. The environment
	// variable XGPU_LOCAL_LANE=0 has the same effect.
	NoLocalLane bool

	// ChunkSize is the piece size copies larger than it are cut into, so
	// that the transfer of one piece overlaps the device copy of the last
	// and the workers' staging stays bounded. Zero: DefaultChunkSize
	// (8 MiB). Between MinChunkSize and MaxChunkSize.
	ChunkSize int

	// MaxInflight is the number of chunks of host copies each session has
	// in flight at once; a copy that finds no room waits. Zero:
	// DefaultMaxInflight (8).
	MaxInflight int

	// FlushDelay is how long an asynchronous call may sit in the send
	// buffer, gathering later calls into the same write, before the
	// flusher goroutine sends it; a synchronising call or a full buffer
	// sends at once. Zero: no delay: the flusher sends as soon as it runs
	// (tens of microseconds), and calls queued while it writes go in its
	// next write, which batches a busy caller's calls just as well (see
	// BenchmarkAsyncCallRate and BenchmarkAsyncLatency: on a loaded
	// machine Go timers fire milliseconds late, so a delay costs latency
	// without buying throughput). At most MaxFlushDelay.
	FlushDelay time.Duration

	// Logger receives the runtime's log lines (lost sessions, protocol
	// oddities). Zero: nothing is logged; the runtime lives inside
	// applications that own their stderr.
	Logger *slog.Logger

	// dataAddr rewrites a worker's data address before it is dialled
	// (tests route the client through a byte-counting relay). Zero: none.
	dataAddr func(string) string
}

// Validate reports every problem of c, joined, or nil.
func (c *Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("runtime: config: %s: %s", field, fmt.Sprintf(format, args...)))
	}
	if c.Map == nil {
		errs = append(errs, errNilMap)
	} else if err := c.Map.Validate(); err != nil {
		bad("Map", "%v", err)
	} else if c.Map.Len() == 0 {
		bad("Map", "no devices")
	}
	if c.DialTimeout < 0 {
		bad("DialTimeout", "%v is negative", c.DialTimeout)
	}
	if c.CloseTimeout < 0 {
		bad("CloseTimeout", "%v is negative", c.CloseTimeout)
	}
	if c.ChunkSize != 0 && (c.ChunkSize < MinChunkSize || c.ChunkSize > MaxChunkSize) {
		bad("ChunkSize", "%d outside [%d, %d]", c.ChunkSize, MinChunkSize, MaxChunkSize)
	}
	if c.MaxInflight < 0 {
		bad("MaxInflight", "%d is negative", c.MaxInflight)
	}
	if c.FlushDelay < 0 || c.FlushDelay > MaxFlushDelay {
		bad("FlushDelay", "%v outside [0, %v]", c.FlushDelay, MaxFlushDelay)
	}
	if c.Transport != nil {
		if err := c.Transport.Validate(); err != nil {
			bad("Transport", "%v", err)
		}
	}
	return errors.Join(errs...)
}

// withDefaults returns a copy of c with every zero field set. c must be
// valid.
func (c Config) withDefaults() Config {
	if c.LeaseID == "" {
		c.LeaseID = c.Map.LeaseID
	}
	if c.Client == "" {
		c.Client = defaultClientName()
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = DefaultDialTimeout
	}
	if c.CloseTimeout == 0 {
		c.CloseTimeout = DefaultCloseTimeout
	}
	if c.ChunkSize == 0 {
		c.ChunkSize = DefaultChunkSize
	}
	if c.MaxInflight == 0 {
		c.MaxInflight = DefaultMaxInflight
	}
	if c.GRPCDialOptions == nil {
		c.GRPCDialOptions = defaultDialOptions()
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// defaultDialOptions are the gRPC options of a zero
// Config.GRPCDialOptions: plaintext.
func defaultDialOptions() []grpc.DialOption {
	return []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
}

func defaultClientName() string {
	name := os.Getenv("USER")
	if name == "" {
		name = "unknown"
	}
	host, err := os.Hostname()
	if err != nil {
		host = "unknown"
	}
	return fmt.Sprintf("%s@%s pid %d", name, host, os.Getpid())
}
