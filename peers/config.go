package peers

import (
	"errors"
	"fmt"
	"time"

	"github.com/quic-go/quic-go"
)

// ALPN is the application protocol of the data plane. Listen and Dial set
// it on their TLS configs when NextProtos is empty and refuse a config that
// names other protocols only.
const ALPN = "xgpu/1"

// Defaults for the zero fields of Config. The bulk figures were measured on
// loopback; docs/transport.md has the numbers.
const (
	DefaultKeepAlivePeriod  = 1 * time.Second
	DefaultMaxIdleTimeout   = 5 * time.Second
	DefaultHandshakeTimeout = 10 * time.Second
	DefaultStreamWindow     = 16 << 20
	DefaultConnWindow       = 64 << 20
	DefaultBulkLanes        = 8
	DefaultChunkSize        = 256 << 10
	DefaultSocketBuffer     = 8 << 20
	DefaultMaxBulkStreams   = 256
	DefaultOrphanTimeout    = 30 * time.Second
	DefaultListenSockets    = 1 + DefaultBulkLanes
)

// Limits on Config fields.
const (
	MaxBulkLanes = 64
	MinChunkSize = 4 << 10
	MaxChunkSize = 64 << 20
	minWindow    = 64 << 10
)

// Config tunes a Listener or a Conn. A nil *Config is the same as the zero
// Config; every zero field takes the default named in its comment.
//
// A peer that dies without closing the connection (crash, power loss,
// network cut) is detected by QUIC's idle timeout: with keep-alives every
// KeepAlivePeriod, a live peer is never idle, and a silent one turns every
// pending and later operation on the Conn into an error no later than
// MaxIdleTimeout after the last packet heard from it (at the defaults: 5 s,
// with keep-alives every second). Both ends negotiate the smaller of their
// two idle timeouts.
type Config struct {
	// KeepAlivePeriod is how often a connection with nothing to send
	// sends a keep-alive. Zero: DefaultKeepAlivePeriod (1 s). Negative:
	// no keep-alives (an idle connection then closes after
	// MaxIdleTimeout). quic-go sends at most every MaxIdleTimeout/2.
	KeepAlivePeriod time.Duration `json:"keep_alive_period,omitempty"`
	// MaxIdleTimeout is how long a connection may hear nothing from its
	// peer before it fails. It bounds how long a dead peer goes unnoticed.
	// Zero: DefaultMaxIdleTimeout (5 s).
	MaxIdleTimeout time.Duration `json:"max_idle_timeout,omitempty"`
	// HandshakeTimeout bounds the TLS handshake and the exchange that
	// sets up the call stream and the bulk lanes. Zero:
	// DefaultHandshakeTimeout (10 s).
	HandshakeTimeout time.Duration `json:"handshake_timeout,omitempty"`
	// StreamWindow is the flow-control window of each stream: how many
	// bytes a sender may have in flight on one stream. At least 64 KiB.
	// Zero: DefaultStreamWindow (16 MiB).
	StreamWindow uint64 `json:"stream_window,omitempty"`
	// ConnWindow is the flow-control window of each QUIC connection,
	// shared by its streams. Zero: DefaultConnWindow (64 MiB).
	ConnWindow uint64 `json:"conn_window,omitempty"`
	// BulkLanes is the number of QUIC connections, besides the one that
	// carries the call stream, that a dialed Conn opens for bulk data;
	// transfers are striped over them. quic-go handles each connection on
	// one goroutine, so lanes are what spread a large copy over cores.
	// Zero: DefaultBulkLanes (8). Negative: no lanes; bulk streams share
	// the call connection. At most MaxBulkLanes. Only the dialer's value
	// matters: a listener accepts the lanes the dialer asks for.
	BulkLanes int `json:"bulk_lanes,omitempty"`
	// ChunkSize is the size of the chunks SendBulk cuts a payload into;
	// each carries its own xxhash64; a payload of n chunks uses up to n
	// lanes. Zero: DefaultChunkSize (256 KiB).
	// Between MinChunkSize and MaxChunkSize. Only the sender's value
	// matters: the receiver takes the size from the stream.
	ChunkSize int `json:"chunk_size,omitempty"`
	// SocketBuffer is the send and receive buffer requested for each UDP
	// socket. Without CAP_NET_ADMIN the kernel caps it at
	// net.core.rmem_max / wmem_max (see docs/transport.md). Zero:
	// DefaultSocketBuffer (8 MiB). Negative: leave the socket alone.
	SocketBuffer int `json:"socket_buffer,omitempty"`
	// MaxBulkStreams is the number of bulk streams the peer may have open
	// at once on each QUIC connection. Zero: DefaultMaxBulkStreams (256).
	MaxBulkStreams int `json:"max_bulk_streams,omitempty"`
	// ListenSockets is the number of UDP sockets a Listener opens: the
	// first on its address, the others on the ports that follow it
	// (port+1, port+2, ...; ephemeral ports when the address has port
	// 0). The call connection uses the first; a dialer spreads its bulk
	// lanes over the others, so that their packets are received on
	// several goroutines instead of one. Open all these UDP ports in
	// firewalls. Zero: DefaultListenSockets (1 + DefaultBulkLanes).
	// Negative: 1 (lanes share the listening port). At most
	// MaxBulkLanes + 1.
	ListenSockets int `json:"listen_sockets,omitempty"`
	// OrphanTimeout is how long an incoming bulk transfer waits for the
	// RecvBulk call that names its id before it is refused. Zero:
	// DefaultOrphanTimeout (30 s).
	OrphanTimeout time.Duration `json:"orphan_timeout,omitempty"`
}

// Validate reports a field that is out of range.
func (c *Config) Validate() error {
	if c == nil {
		return nil
	}
	switch {
	case c.MaxIdleTimeout < 0:
		return errors.New("peers: MaxIdleTimeout is negative")
	case c.HandshakeTimeout < 0:
		return errors.New("peers: HandshakeTimeout is negative")
	case c.OrphanTimeout < 0:
		return errors.New("peers: OrphanTimeout is negative")
	case c.BulkLanes > MaxBulkLanes:
		return fmt.Errorf("peers: BulkLanes %d exceeds %d", c.BulkLanes, MaxBulkLanes)
	case c.ChunkSize != 0 && (c.ChunkSize < MinChunkSize || c.ChunkSize > MaxChunkSize):
		return fmt.Errorf("peers: ChunkSize %d outside [%d, %d]", c.ChunkSize, MinChunkSize, MaxChunkSize)
	case c.ListenSockets > MaxBulkLanes+1:
		return fmt.Errorf("peers: ListenSockets %d exceeds %d", c.ListenSockets, MaxBulkLanes+1)
	case c.MaxBulkStreams < 0:
		return errors.New("peers: MaxBulkStreams is negative")
	case c.StreamWindow != 0 && c.StreamWindow < minWindow:
		return fmt.Errorf("peers: StreamWindow %d below %d", c.StreamWindow, minWindow)
	case c.ConnWindow != 0 && c.ConnWindow < max(c.StreamWindow, minWindow):
		return fmt.Errorf("peers: ConnWindow %d below StreamWindow %d", c.ConnWindow, c.StreamWindow)
	}
	if c.KeepAlivePeriod > 0 && c.MaxIdleTimeout > 0 && c.KeepAlivePeriod >= c.MaxIdleTimeout {
		return fmt.Errorf("peers: KeepAlivePeriod %v must be shorter than MaxIdleTimeout %v", c.KeepAlivePeriod, c.MaxIdleTimeout)
	}
	return nil
}

// populate returns a copy of c with every zero field set to its default.
func populate(c *Config) (Config, error) {
	var out Config
	if c != nil {
		if err := c.Validate(); err != nil {
			return out, err
		}
		out = *c
	}
	def := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	def(&out.KeepAlivePeriod, DefaultKeepAlivePeriod)
	def(&out.MaxIdleTimeout, DefaultMaxIdleTimeout)
	def(&out.HandshakeTimeout, DefaultHandshakeTimeout)
	def(&out.OrphanTimeout, DefaultOrphanTimeout)
	if out.KeepAlivePeriod >= out.MaxIdleTimeout {
		out.KeepAlivePeriod = out.MaxIdleTimeout / 2
	}
	if out.StreamWindow == 0 {
		out.StreamWindow = DefaultStreamWindow
	}
	if out.ConnWindow == 0 {
		out.ConnWindow = max(DefaultConnWindow, out.StreamWindow)
	}
	if out.BulkLanes == 0 {
		out.BulkLanes = DefaultBulkLanes
	}
	if out.BulkLanes < 0 {
		out.BulkLanes = 0
	}
	if out.ChunkSize == 0 {
		out.ChunkSize = DefaultChunkSize
	}
	if out.SocketBuffer == 0 {
		out.SocketBuffer = DefaultSocketBuffer
	}
	if out.ListenSockets == 0 {
		out.ListenSockets = DefaultListenSockets
	}
	if out.ListenSockets < 1 {
		out.ListenSockets = 1
	}
	if out.MaxBulkStreams == 0 {
		out.MaxBulkStreams = DefaultMaxBulkStreams
	}
	return out, nil
}

// quicConfig is the quic-go configuration for c (populated).
func (c *Config) quicConfig() *quic.Config {
	keepAlive := c.KeepAlivePeriod
	if keepAlive < 0 {
		keepAlive = 0
	}
	return &quic.Config{
		HandshakeIdleTimeout:           c.HandshakeTimeout,
		MaxIdleTimeout:                 c.MaxIdleTimeout,
		KeepAlivePeriod:                keepAlive,
		InitialStreamReceiveWindow:     c.StreamWindow,
		MaxStreamReceiveWindow:         c.StreamWindow,
		InitialConnectionReceiveWindow: c.ConnWindow,
		MaxConnectionReceiveWindow:     c.ConnWindow,
		// One more for the call stream or the lane's join stream.
		MaxIncomingStreams:    int64(c.MaxBulkStreams) + 1,
		MaxIncomingUniStreams: -1,
		// Lets a sender that gives up still deliver a stream's header,
		// so the receiver learns which transfer was cancelled.
		EnableStreamResetPartialDelivery: true,
	}
}
