package certs

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// cluster is a CA directory with a node "srv" (127.0.0.1, localhost) and a
// client "cli".
func cluster(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := InitCA(dir); err != nil {
		t.Fatalf("InitCA: %v", err)
	}
	if err := Issue(dir, "srv", KindNode, []string{"127.0.0.1", "localhost"}); err != nil {
		t.Fatalf("Issue srv: %v", err)
	}
	if err := Issue(dir, "cli", KindClient, nil); err != nil {
		t.Fatalf("Issue cli: %v", err)
	}
	return dir
}

// rawConfig builds a config from files without LoadTLS's checks.
func rawConfig(t *testing.T, caDir, certDir, name string, role Role) *tls.Config {
	t.Helper()
	cas, err := readCerts(filepath.Join(caDir, CAFile))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cas[0])
	pair, err := tls.LoadX509KeyPair(filepath.Join(certDir, CertFile(name)), filepath.Join(certDir, KeyFile(name)))
	if err != nil {
		t.Fatal(err)
	}
	c, err := newConfig(pool, pair, role)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func mustLoad(t *testing.T, dir, name string, role Role) *tls.Config {
	t.Helper()
	c, err := LoadTLS(dir, name, role)
	if err != nil {
		t.Fatalf("LoadTLS(%s, %v): %v", name, role, err)
	}
	return c
}

// handshake runs a TLS handshake and a ping/pong over loopback TCP and
// returns each side's first error.
func handshake(t *testing.T, server, client *tls.Config) (serverErr, clientErr error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan error, 1) // buffered: the server goroutine never blocks on it
	go func() {
		sc, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		_ = sc.SetDeadline(time.Now().Add(10 * time.Second))
		s := tls.Server(sc, server)
		defer s.Close()
		if err := s.Handshake(); err != nil {
			done <- err
			return
		}
		buf := make([]byte, 4)
		if _, err := io.ReadFull(s, buf); err != nil {
			done <- err
			return
		}
		_, err = s.Write([]byte("pong"))
		done <- err
	}()
	cc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	_ = cc.SetDeadline(time.Now().Add(10 * time.Second))
	c := tls.Client(cc, client)
	clientErr = c.Handshake()
	if clientErr == nil {
		_, clientErr = c.Write([]byte("ping"))
	}
	if clientErr == nil {
		_, clientErr = io.ReadFull(c, make([]byte, 4))
	}
	c.Close()
	serverErr = <-done
	return serverErr, clientErr
}

func TestHandshake(t *testing.T) {
	dir := cluster(t)
	other := cluster(t) // a second, unrelated CA with the same names

	// Expired certificates from the right CA.
	past := time.Now().Add(-48 * time.Hour)
	if err := issue(dir, "old-srv", KindNode, []string{"127.0.0.1"}, past, past.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := issue(dir, "old-cli", KindClient, nil, past, past.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	withServerName := func(c *tls.Config) *tls.Config {
		c = c.Clone()
		c.ServerName = "127.0.0.1"
		return c
	}
	srv := mustLoad(t, dir, "srv", RoleServer)
	cli := withServerName(mustLoad(t, dir, "cli", RoleClient))
	devSrv, devCli, err := DevConfig()
	if err != nil {
		t.Fatalf("DevConfig: %v", err)
	}

	tests := []struct {
		name       string
		server     *tls.Config
		client     *tls.Config
		wantServer string // substring of the server's error; "" means success
		wantClient string // substring of the client's error; "" means success
	}{
		{name: "valid chain", server: srv, client: cli},
		{name: "node as client", server: srv, client: withServerName(mustLoad(t, dir, "srv", RoleClient))},
		{name: "dev mode", server: devSrv, client: withServerName(devCli)},
		{
			name:   "client cert from another CA",
			server: srv, client: withServerName(rawConfig(t, dir, other, "cli", RoleClient)),
			wantServer: "certificate signed by unknown authority", wantClient: "unknown certificate authority",
		},
		{
			name:   "server cert from another CA",
			server: rawConfig(t, dir, other, "srv", RoleServer), client: cli,
			wantServer: "bad certificate", wantClient: "certificate signed by unknown authority",
		},
		{
			name:   "expired client cert",
			server: srv, client: withServerName(rawConfig(t, dir, dir, "old-cli", RoleClient)),
			wantServer: "expired", wantClient: "expired certificate",
		},
		{
			name:   "expired server cert",
			server: rawConfig(t, dir, dir, "old-srv", RoleServer), client: cli,
			wantServer: "bad certificate", wantClient: "expired",
		},
		{
			name:   "client without certificate",
			server: srv, client: func() *tls.Config { c := cli.Clone(); c.Certificates = nil; return c }(),
			wantServer: "didn't provide a certificate", wantClient: "certificate required",
		},
		{
			name:   "wrong ALPN",
			server: srv, client: func() *tls.Config { c := cli.Clone(); c.NextProtos = []string{"h2"}; return c }(),
			wantServer: "unsupported application protocols", wantClient: "no application protocol",
		},
		{
			name:   "no ALPN offered",
			server: srv, client: func() *tls.Config { c := cli.Clone(); c.NextProtos = nil; c.VerifyConnection = nil; return c }(),
			wantServer: `did not negotiate ALPN "xgpu/1"`, wantClient: "",
		},
		{
			name:   "TLS 1.2 only",
			server: srv, client: func() *tls.Config {
				c := cli.Clone()
				c.MinVersion = tls.VersionTLS12
				c.MaxVersion = tls.VersionTLS12
				return c
			}(),
			wantServer: "unsupported versions", wantClient: "protocol version",
		},
		{
			name:   "wrong server name",
			server: srv, client: func() *tls.Config { c := cli.Clone(); c.ServerName = "gpu99.example"; return c }(),
			wantServer: "bad certificate", wantClient: "not gpu99.example",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			serverErr, clientErr := handshake(t, tt.server, tt.client)
			check := func(side string, err error, want string) {
				t.Helper()
				switch {
				case want == "" && err != nil:
					t.Errorf("%s failed: %v", side, err)
				case want != "" && err == nil:
					t.Errorf("%s succeeded, want error containing %q", side, want)
				case want != "" && !strings.Contains(err.Error(), want):
					t.Errorf("%s error %q, want it to contain %q", side, err, want)
				}
			}
			check("server", serverErr, tt.wantServer)
			if tt.wantClient != "" || tt.wantServer == "" {
				check("client", clientErr, tt.wantClient)
			}
		})
	}
}

func TestInitCA(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	if err := InitCA(dir); err != nil {
		t.Fatalf("InitCA: %v", err)
	}
	for _, f := range []struct {
		name string
		mode os.FileMode
	}{{CAFile, 0o644}, {CAKeyFile, 0o600}} {
		st, err := os.Stat(filepath.Join(dir, f.name))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != f.mode {
			t.Errorf("%s mode %v, want %v", f.name, st.Mode().Perm(), f.mode)
		}
	}
	ca, _, err := loadCA(dir)
	if err != nil {
		t.Fatalf("loadCA: %v", err)
	}
	if !ca.IsCA || ca.MaxPathLen != 0 || !ca.MaxPathLenZero {
		t.Errorf("CA constraints: IsCA %v MaxPathLen %d", ca.IsCA, ca.MaxPathLen)
	}
	before, _ := os.ReadFile(filepath.Join(dir, CAKeyFile))
	err = InitCA(dir)
	if !errors.Is(err, ErrExists) || !errors.Is(err, fs.ErrExist) {
		t.Fatalf("second InitCA: %v, want ErrExists", err)
	}
	after, _ := os.ReadFile(filepath.Join(dir, CAKeyFile))
	if string(before) != string(after) {
		t.Fatal("second InitCA changed the CA key")
	}
}

func TestIssue(t *testing.T) {
	dir := cluster(t)
	tests := []struct {
		name  string
		cert  string
		kind  Kind
		hosts []string
		want  string // substring of the error; "" means success
	}{
		{name: "node with IPs and names", cert: "gpu01", kind: KindNode, hosts: []string{"gpu01.example", "10.0.0.11", "fd00::11", "*.gpu.example"}},
		{name: "client with a host", cert: "laptop", kind: KindClient, hosts: []string{"laptop.example"}},
		{name: "existing name", cert: "srv", kind: KindNode, hosts: []string{"x"}, want: "file exists"},
		{name: "node without hosts", cert: "gpu02", kind: KindNode, want: "needs at least one host"},
		{name: "unknown kind", cert: "gpu03", kind: Kind(7), hosts: []string{"x"}, want: "unknown certificate kind"},
		{name: "bad host", cert: "gpu04", kind: KindNode, hosts: []string{"bad host!"}, want: "invalid host"},
		{name: "path in name", cert: "../evil", kind: KindClient, want: "invalid certificate name"},
		{name: "name of the CA", cert: "ca", kind: KindClient, want: "invalid certificate name"},
		{name: "empty name", cert: "", kind: KindClient, want: "invalid certificate name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Issue(dir, tt.cert, tt.kind, tt.hosts)
			if tt.want != "" {
				if err == nil || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("Issue err = %v, want it to contain %q", err, tt.want)
				}
				if tt.want != "file exists" && tt.cert != "ca" {
					if _, serr := os.Stat(filepath.Join(dir, KeyFile(tt.cert))); serr == nil {
						t.Errorf("failed Issue left a key behind")
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("Issue: %v", err)
			}
			st, err := os.Stat(filepath.Join(dir, KeyFile(tt.cert)))
			if err != nil || st.Mode().Perm() != 0o600 {
				t.Fatalf("key file: %v, mode %v", err, st.Mode().Perm())
			}
			certs, err := readCerts(filepath.Join(dir, CertFile(tt.cert)))
			if err != nil {
				t.Fatal(err)
			}
			c := certs[0]
			if c.Subject.CommonName != tt.cert {
				t.Errorf("CN %q", c.Subject.CommonName)
			}
			if n := len(c.DNSNames) + len(c.IPAddresses); n != len(tt.hosts) {
				t.Errorf("%d SANs, want %d", n, len(tt.hosts))
			}
			wantUsages := map[Kind]int{KindNode: 2, KindClient: 1}[tt.kind]
			if len(c.ExtKeyUsage) != wantUsages {
				t.Errorf("ExtKeyUsage %v", c.ExtKeyUsage)
			}
			if c.IsCA {
				t.Errorf("leaf is a CA")
			}
		})
	}
}

func TestLoadTLSErrors(t *testing.T) {
	dir := cluster(t)
	other := cluster(t)
	past := time.Now().Add(-48 * time.Hour)
	if err := issue(dir, "old", KindClient, nil, past, past.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	// A foreign pair copied into dir.
	for _, f := range []string{CertFile("cli"), KeyFile("cli")} {
		data, err := os.ReadFile(filepath.Join(other, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "foreign"+strings.TrimPrefix(f, "cli")), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name string
		dir  string
		cert string
		role Role
		want string
	}{
		{name: "client cert as server", dir: dir, cert: "cli", role: RoleServer, want: "incompatible key usage"},
		{name: "expired", dir: dir, cert: "old", role: RoleClient, want: "expired"},
		{name: "foreign CA", dir: dir, cert: "foreign", role: RoleClient, want: "unknown authority"},
		{name: "missing pair", dir: dir, cert: "nobody", role: RoleClient, want: "no such file"},
		{name: "missing CA", dir: t.TempDir(), cert: "cli", role: RoleClient, want: "no such file"},
		{name: "bad role", dir: dir, cert: "cli", role: Role(0), want: "unknown role"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := LoadTLS(tt.dir, tt.cert, tt.role)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("LoadTLS = %v, %v; want error containing %q", c, err, tt.want)
			}
		})
	}
}

func TestLoadTLSSettings(t *testing.T) {
	dir := cluster(t)
	srv := mustLoad(t, dir, "srv", RoleServer)
	cli := mustLoad(t, dir, "cli", RoleClient)
	for _, c := range []*tls.Config{srv, cli} {
		if c.MinVersion != tls.VersionTLS13 || len(c.NextProtos) != 1 || c.NextProtos[0] != ALPN {
			t.Errorf("MinVersion %x, NextProtos %v", c.MinVersion, c.NextProtos)
		}
	}
	if srv.ClientAuth != tls.RequireAndVerifyClientCert || srv.ClientCAs == nil {
		t.Errorf("server does not require client certificates")
	}
	if cli.RootCAs == nil || cli.InsecureSkipVerify {
		t.Errorf("client does not verify the server")
	}
}

func TestParseKind(t *testing.T) {
	tests := []struct {
		in   string
		want Kind
		ok   bool
	}{{"node", KindNode, true}, {"client", KindClient, true}, {"admin", 0, false}}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			k, err := ParseKind(tt.in)
			if (err == nil) != tt.ok || k != tt.want {
				t.Fatalf("ParseKind(%q) = %v, %v", tt.in, k, err)
			}
			if tt.ok && k.String() != tt.in {
				t.Errorf("String() = %q", k.String())
			}
		})
	}
}
