// Package certs runs the xgpu cluster certificate authority and builds the
// mutual-TLS configurations of the data plane.
//
// A cluster has one CA (ECDSA P-256, crypto/x509). It issues node
// certificates to servers and workers (server and client authentication,
// with the hosts as subject alternative names) and client certificates to
// application hosts. Servers require a client certificate from the CA;
// clients verify the server against the CA; both insist on TLS 1.3 and
// ALPN "xgpu/1".
//
// Usage:
//
//	// once, on the issuing host (`xgpu certs`):
//	err := certs.InitCA(dir)                                   // ca.pem, ca-key.pem
//	err = certs.Issue(dir, "gpu01", certs.KindNode, []string{"gpu01", "10.0.0.11"})
//	err = certs.Issue(dir, "laptop", certs.KindClient, nil)
//
//	// on each host, with ca.pem and its own pair copied over:
//	srv, err := certs.LoadTLS(dir, "gpu01", certs.RoleServer)
//	cli, err := certs.LoadTLS(dir, "laptop", certs.RoleClient)
//
//	// dev mode only: an in-memory CA that dies with the process
//	srv, cli, err := certs.DevConfig()
//
// Private keys are written with mode 0600 and no file is ever overwritten.
//
// Concurrency: the functions are safe for concurrent use; of two Issue calls
// for one name at most one succeeds. The returned *tls.Config values follow
// crypto/tls rules: do not modify one that is in use.
package certs
