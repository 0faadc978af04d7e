package worker

import (
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"

	"github.com/xgpu/xgpu/internal/certs"
	"github.com/xgpu/xgpu/peers"
)

// makeTLS builds the listener's TLS configuration, the base of peer-link
// dials (nil in dev mode, where the pin alone authenticates the peer) and
// the hex SHA-256 of the listener's certificate.
func makeTLS(cfg Config) (server, client *tls.Config, pin string, err error) {
	switch cfg.TLS.Mode {
	case TLSCA:
		server, err = certs.LoadTLS(cfg.TLS.Dir, cfg.TLS.Name, certs.RoleServer)
		if err != nil {
			return nil, nil, "", fmt.Errorf("worker: %w", err)
		}
		client, err = certs.LoadTLS(cfg.TLS.Dir, cfg.TLS.Name, certs.RoleClient)
		if err != nil {
			return nil, nil, "", fmt.Errorf("worker: %w", err)
		}
	default:
		var hosts []string
		for _, h := range []string{cfg.ListenHost, cfg.AdvertiseHost} {
			if ip := net.ParseIP(h); h != "" && (ip == nil || !ip.IsUnspecified()) {
				hosts = append(hosts, h)
			}
		}
		server, _, err = certs.DevConfig(hosts...)
		if err != nil {
			return nil, nil, "", fmt.Errorf("worker: dev certificate: %w", err)
		}
		// The session token authenticates clients; a dev client has no
		// certificate of this throw-away CA to present.
		server = server.Clone()
		server.ClientAuth = tls.NoClientCert
		server.ClientCAs = nil
	}
	if len(server.Certificates) == 0 || len(server.Certificates[0].Certificate) == 0 {
		return nil, nil, "", errors.New("worker: TLS config has no certificate")
	}
	sum := sha256.Sum256(server.Certificates[0].Certificate[0])
	return server, client, hex.EncodeToString(sum[:]), nil
}

// PinnedClientTLS returns a client TLS configuration that accepts a
// server only if its leaf certificate's SHA-256 is pin (hex, as Ready and
// OpenSessionResponse carry it). With base nil the pin replaces the
// certificate chain check (dev mode: the worker's CA is thrown away);
// otherwise base's checks (the cluster CA, a client certificate) apply as
// well. An empty pin with a non-nil base checks the chain only.
func PinnedClientTLS(pin string, base *tls.Config) (*tls.Config, error) {
	var want []byte
	if pin != "" {
		b, err := hex.DecodeString(pin)
		if err != nil || len(b) != sha256.Size {
			return nil, fmt.Errorf("worker: certificate pin %q is not a hex SHA-256", pin)
		}
		want = b
	}
	var c *tls.Config
	if base != nil {
		c = base.Clone()
	} else {
		if want == nil {
			return nil, errors.New("worker: a pin or a base TLS config is required")
		}
		c = &tls.Config{InsecureSkipVerify: true} // the pin below is the check
	}
	c.MinVersion = tls.VersionTLS13
	c.NextProtos = []string{peers.ALPN}
	if want != nil {
		c.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 {
				return errors.New("worker: peer presented no certificate")
			}
			got := sha256.Sum256(raw[0])
			if subtle.ConstantTimeCompare(got[:], want) != 1 {
				return fmt.Errorf("worker: peer certificate %x does not match the pin", got)
			}
			return nil
		}
	}
	return c, nil
}
