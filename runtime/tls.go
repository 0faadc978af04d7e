package runtime

import (
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/xgpu/xgpu/peers"
)

// workerTLS returns the TLS config for dialling a worker whose certificate
// hashes to pin (SHA-256 of its DER encoding).
//
// With base nil (dev mode) the certificate is trusted through the pin
// alone: it came over the control connection from the server that started
// the worker, and a dev worker's throw-away certificate chains to nothing.
// With base set, the usual chain verification runs and the pin, when the
// server reported one, is checked on top.
func workerTLS(base *tls.Config, pin []byte) (*tls.Config, error) {
	if len(pin) != 0 && len(pin) != sha256.Size {
		return nil, fmt.Errorf("runtime: server reported a %d-byte certificate pin, want %d", len(pin), sha256.Size)
	}
	var conf *tls.Config
	if base == nil {
		if len(pin) == 0 {
			return nil, errors.New("runtime: server reported no certificate pin for its worker; a cluster without one needs Config.TLS")
		}
		conf = &tls.Config{
			// The pin check below replaces chain verification.
			InsecureSkipVerify: true,
		}
	} else {
		conf = base.Clone()
	}
	conf.MinVersion = tls.VersionTLS13
	if len(conf.NextProtos) == 0 {
		conf.NextProtos = []string{peers.ALPN}
	}
	if len(pin) != 0 {
		want := append([]byte(nil), pin...)
		prev := conf.VerifyConnection
		conf.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("runtime: worker presented no certificate")
			}
			got := sha256.Sum256(cs.PeerCertificates[0].Raw)
			if subtle.ConstantTimeCompare(got[:], want) != 1 {
				return fmt.Errorf("runtime: worker certificate %s does not match the pin %s its server reported",
					hex.EncodeToString(got[:]), hex.EncodeToString(want))
			}
			if prev != nil {
				return prev(cs)
			}
			return nil
		}
	}
	return conf, nil
}
