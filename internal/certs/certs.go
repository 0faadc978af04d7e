package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// ALPN is the application protocol every xgpu data-plane connection
// negotiates. A peer that offers anything else is refused.
const ALPN = "xgpu/1"

// File names inside a certificate directory.
const (
	CAFile    = "ca.pem"     // the cluster CA certificate (distribute to every host)
	CAKeyFile = "ca-key.pem" // the CA's private key (keep on the issuing host only)
)

// Validity periods.
const (
	CAValidity   = 10 * 365 * 24 * time.Hour
	CertValidity = 365 * 24 * time.Hour
	// clockSkew backdates NotBefore so that hosts with slightly late
	// clocks accept a certificate as soon as it is issued.
	clockSkew = 5 * time.Minute
)

// ErrExists is wrapped by errors from InitCA and Issue that refuse to
// overwrite an existing file; it matches fs.ErrExist too.
var ErrExists = fmt.Errorf("certs: file exists: %w", fs.ErrExist)

// Kind is the kind of certificate Issue makes.
type Kind int

const (
	// KindNode is a server or worker: the certificate serves and dials
	// (server and client authentication) and names its hosts.
	KindNode Kind = iota + 1
	// KindClient is an application host: client authentication only.
	KindClient
)

func (k Kind) String() string {
	switch k {
	case KindNode:
		return "node"
	case KindClient:
		return "client"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// ParseKind parses "node" or "client".
func ParseKind(s string) (Kind, error) {
	switch s {
	case "node":
		return KindNode, nil
	case "client":
		return KindClient, nil
	}
	return 0, fmt.Errorf("certs: unknown certificate kind %q (want node or client)", s)
}

// Role says which end of a connection a *tls.Config from LoadTLS is for.
type Role int

const (
	// RoleServer accepts connections and requires a client certificate
	// signed by the cluster CA.
	RoleServer Role = iota + 1
	// RoleClient dials and verifies the server against the cluster CA.
	RoleClient
)

func (r Role) String() string {
	switch r {
	case RoleServer:
		return "server"
	case RoleClient:
		return "client"
	}
	return fmt.Sprintf("Role(%d)", int(r))
}

// CertFile returns the certificate file name Issue writes for name.
func CertFile(name string) string { return name + ".pem" }

// KeyFile returns the private key file name Issue writes for name.
func KeyFile(name string) string { return name + "-key.pem" }

// InitCA creates a new cluster CA (ECDSA P-256) in dir: CAFile (mode 0644)
// and CAKeyFile (mode 0600). It creates dir (0700) if needed and refuses,
// with an error wrapping ErrExists, to overwrite either file.
func InitCA(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("certs: %w", err)
	}
	for _, f := range []string{CAFile, CAKeyFile} {
		if _, err := os.Lstat(filepath.Join(dir, f)); err == nil {
			return fmt.Errorf("%w: %s", ErrExists, filepath.Join(dir, f))
		}
	}
	cert, key, err := newCA(time.Now())
	if err != nil {
		return err
	}
	return writePair(dir, CAFile, CAKeyFile, cert.Raw, key)
}

// Issue issues a certificate of the given kind for name, signed by the CA
// in dir, and writes CertFile(name) (0644) and KeyFile(name) (0600) there.
// hosts become subject alternative names: IP addresses as IP SANs, other
// entries as DNS names. A node needs at least one host; a client needs
// none. Issue never overwrites a file.
func Issue(dir, name string, kind Kind, hosts []string) error {
	now := time.Now()
	return issue(dir, name, kind, hosts, now.Add(-clockSkew), now.Add(CertValidity))
}

// issue is Issue with an explicit validity period (tests use it to make
// expired certificates).
func issue(dir, name string, kind Kind, hosts []string, notBefore, notAfter time.Time) error {
	if err := checkName(name); err != nil {
		return err
	}
	for _, f := range []string{CertFile(name), KeyFile(name)} {
		if _, err := os.Lstat(filepath.Join(dir, f)); err == nil {
			return fmt.Errorf("%w: %s", ErrExists, filepath.Join(dir, f))
		}
	}
	caCert, caKey, err := loadCA(dir)
	if err != nil {
		return err
	}
	der, key, err := newLeaf(caCert, caKey, name, kind, hosts, notBefore, notAfter)
	if err != nil {
		return err
	}
	return writePair(dir, CertFile(name), KeyFile(name), der, key)
}

// checkName accepts names made of letters, digits, '.', '_' and '-' that
// cannot be confused with the CA's files or leave dir.
func checkName(name string) error {
	if name == "" || len(name) > 64 || name == "." || name == ".." || name == "ca" {
		return fmt.Errorf("certs: invalid certificate name %q", name)
	}
	for _, c := range name {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-'
		if !ok {
			return fmt.Errorf("certs: invalid certificate name %q: use letters, digits, '.', '_' and '-'", name)
		}
	}
	return nil
}

func newCA(now time.Time) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: generate CA key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "xgpu cluster CA", Organization: []string{"xgpu"}},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(CAValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: create CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: parse CA certificate: %w", err)
	}
	return cert, key, nil
}

func newLeaf(ca *x509.Certificate, caKey *ecdsa.PrivateKey, name string, kind Kind, hosts []string, notBefore, notAfter time.Time) ([]byte, *ecdsa.PrivateKey, error) {
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: name, Organization: []string{"xgpu"}},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
	}
	switch kind {
	case KindNode:
		if len(hosts) == 0 {
			return nil, nil, errors.New("certs: a node certificate needs at least one host name or IP address")
		}
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	case KindClient:
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	default:
		return nil, nil, fmt.Errorf("certs: unknown certificate kind %v", kind)
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			continue
		}
		if !validDNSName(h) {
			return nil, nil, fmt.Errorf("certs: invalid host %q: not an IP address or DNS name", h)
		}
		tmpl.DNSNames = append(tmpl.DNSNames, h)
	}
	if !notAfter.After(notBefore) {
		return nil, nil, errors.New("certs: certificate would expire before it starts")
	}
	serial, err := newSerial()
	if err != nil {
		return nil, nil, err
	}
	tmpl.SerialNumber = serial
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: generate key: %w", err)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: sign certificate for %s: %w", name, err)
	}
	return der, key, nil
}

// validDNSName accepts host names and wildcard names ("*.example.org").
func validDNSName(h string) bool {
	h = strings.TrimPrefix(h, "*.")
	if h == "" || len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

func newSerial() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("certs: serial number: %w", err)
	}
	return n.Add(n, big.NewInt(1)), nil // never zero
}

// writePair writes a certificate and its key with O_EXCL; if the second
// write fails the first file is removed, so a failure leaves nothing.
func writePair(dir, certName, keyName string, der []byte, key *ecdsa.PrivateKey) error {
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("certs: encode key: %w", err)
	}
	keyPath := filepath.Join(dir, keyName)
	if err := writeExcl(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return err
	}
	if err := writeExcl(filepath.Join(dir, certName), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		_ = os.Remove(keyPath)
		return err
	}
	return nil
}

func writeExcl(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%w: %s", ErrExists, path)
		}
		return fmt.Errorf("certs: %w", err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(path)
		return fmt.Errorf("certs: write %s: %w", path, err)
	}
	return nil
}

func loadCA(dir string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	certs, err := readCerts(filepath.Join(dir, CAFile))
	if err != nil {
		return nil, nil, err
	}
	ca := certs[0]
	if !ca.IsCA {
		return nil, nil, fmt.Errorf("certs: %s is not a CA certificate", filepath.Join(dir, CAFile))
	}
	keyPath := filepath.Join(dir, CAKeyFile)
	pemKey, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: read CA key: %w", err)
	}
	block, _ := pem.Decode(pemKey)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, nil, fmt.Errorf("certs: %s holds no PEM private key", keyPath)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: parse %s: %w", keyPath, err)
	}
	key, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, nil, fmt.Errorf("certs: %s is not an ECDSA key", keyPath)
	}
	if !key.PublicKey.Equal(ca.PublicKey) {
		return nil, nil, fmt.Errorf("certs: %s does not match %s", keyPath, CAFile)
	}
	return ca, key, nil
}

// readCerts reads every certificate of a PEM file; it fails if there is
// none.
func readCerts(path string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("certs: %w", err)
	}
	var out []*x509.Certificate
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certs: parse %s: %w", path, err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("certs: %s holds no PEM certificate", path)
	}
	return out, nil
}

// LoadTLS builds the *tls.Config of one end of a mutual-TLS connection
// from dir: CAFile, CertFile(name) and KeyFile(name).
//
// RoleServer requires a node certificate and requires every client to
// present a certificate signed by the cluster CA. RoleClient presents the
// certificate and verifies the server against the cluster CA (the server
// name is the dialed host unless ServerName is set). Both ends insist on
// TLS 1.3 and ALPN "xgpu/1". The certificate is checked against the CA
// now, so an expired or foreign certificate fails here rather than at the
// first handshake.
func LoadTLS(dir, name string, role Role) (*tls.Config, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	cas, err := readCerts(filepath.Join(dir, CAFile))
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	for _, c := range cas {
		pool.AddCert(c)
	}
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, CertFile(name)), filepath.Join(dir, KeyFile(name)))
	if err != nil {
		return nil, fmt.Errorf("certs: load %s: %w", name, err)
	}
	usage := x509.ExtKeyUsageClientAuth
	if role == RoleServer {
		usage = x509.ExtKeyUsageServerAuth
	}
	if _, err := pair.Leaf.Verify(x509.VerifyOptions{
		Roots:     pool,
		KeyUsages: []x509.ExtKeyUsage{usage},
	}); err != nil {
		return nil, fmt.Errorf("certs: %s cannot act as %v: %w", CertFile(name), role, err)
	}
	return newConfig(pool, pair, role)
}

// newConfig builds the config of one role without checking the
// certificate (tests use it to present bad certificates).
func newConfig(pool *x509.CertPool, pair tls.Certificate, role Role) (*tls.Config, error) {
	c := &tls.Config{
		MinVersion:       tls.VersionTLS13,
		Certificates:     []tls.Certificate{pair},
		NextProtos:       []string{ALPN},
		VerifyConnection: requireALPN,
	}
	switch role {
	case RoleServer:
		c.ClientAuth = tls.RequireAndVerifyClientCert
		c.ClientCAs = pool
	case RoleClient:
		c.RootCAs = pool
	default:
		return nil, fmt.Errorf("certs: unknown role %v", role)
	}
	return c, nil
}

// requireALPN refuses a connection that did not negotiate ALPN: a Go TLS
// server otherwise accepts a client that offers no protocol at all.
func requireALPN(cs tls.ConnectionState) error {
	if cs.NegotiatedProtocol != ALPN {
		return fmt.Errorf("certs: peer did not negotiate ALPN %q (got %q)", ALPN, cs.NegotiatedProtocol)
	}
	return nil
}

// DevConfig makes a throw-away CA and one node certificate, in memory, and
// returns a server and a client config that trust only that CA. The
// certificate names localhost, 127.0.0.1, ::1 and the given hosts; it
// serves both ends, so in-process peers (tests, `xgpu demo`) get mutual TLS
// without any files.
//
// Dev mode only: the CA vanishes with the process, so two processes
// calling DevConfig do not trust each other, and nothing authenticates who
// holds the configs. Never use it in production; use InitCA, Issue and
// LoadTLS there.
func DevConfig(hosts ...string) (server, client *tls.Config, err error) {
	now := time.Now()
	ca, caKey, err := newCA(now)
	if err != nil {
		return nil, nil, err
	}
	all := append([]string{"localhost", "127.0.0.1", "::1"}, hosts...)
	der, key, err := newLeaf(ca, caKey, "xgpu-dev", KindNode, all, now.Add(-clockSkew), now.Add(CertValidity))
	if err != nil {
		return nil, nil, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: %w", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	pair := tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
	if server, err = newConfig(pool, pair, RoleServer); err != nil {
		return nil, nil, err
	}
	if client, err = newConfig(pool, pair, RoleClient); err != nil {
		return nil, nil, err
	}
	return server, client, nil
}
