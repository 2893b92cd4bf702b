package harness

import (
	"crypto/tls"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/raftkv/raftkv/tlsutil"
)

// PKI is a cluster CA with node and client certificates in a temporary directory, as
// "raftkv tls ca create" and "raftkv tls cert create" would write them.
type PKI struct {
	Dir    string
	CAFile string
	t      testing.TB
	ca     tlsutil.PEM
}

// NewPKI creates a CA and a certificate for each node id.
func NewPKI(t testing.TB, ids ...string) *PKI {
	t.Helper()
	ca, err := tlsutil.NewCA("harness CA", 0, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	p := &PKI{Dir: t.TempDir(), t: t, ca: ca}
	p.CAFile = p.write("ca.pem", ca.Cert)
	for _, id := range ids {
		p.Issue(tlsutil.CertRequest{NodeID: id})
	}
	return p
}

// Issue signs a certificate and writes it as <name>.pem and <name>-key.pem (name: the node id or the
// client name), replacing any earlier one; it returns the two paths.
func (p *PKI) Issue(req tlsutil.CertRequest) (cert, key string) {
	p.t.Helper()
	pair, err := tlsutil.NewCert(p.ca, req, time.Now())
	if err != nil {
		p.t.Fatal(err)
	}
	name := req.NodeID + req.ClientName
	// Key first, then certificate, each renamed into place: a node reloading in between keeps its
	// old pair (the new key does not match the old certificate) until both are there.
	key = p.write(name+"-key.pem", pair.Key)
	cert = p.write(name+".pem", pair.Cert)
	return cert, key
}

// Files are the certificate and key paths of name.
func (p *PKI) Files(name string) (cert, key string) {
	return filepath.Join(p.Dir, name+".pem"), filepath.Join(p.Dir, name+"-key.pem")
}

// APIArgs are node id's flags for the API over TLS with its certificate; clientCerts: clients must
// present a certificate from the CA.
func (p *PKI) APIArgs(id string, clientCerts bool) []string {
	cert, key := p.Files(id)
	a := []string{"--tls-cert-file", cert, "--tls-key-file", key}
	if clientCerts {
		a = append(a, "--tls-client-ca-file", p.CAFile)
	}
	return a
}

// PeerArgs are node id's flags for mutual TLS on the node port with its certificate.
func (p *PKI) PeerArgs(id string) []string {
	cert, key := p.Files(id)
	return []string{"--peer-tls-cert-file", cert, "--peer-tls-key-file", key, "--peer-tls-ca-file", p.CAFile}
}

// ClientTLS is a client configuration that trusts the CA and presents a client certificate "test".
func (p *PKI) ClientTLS() *tls.Config {
	p.t.Helper()
	cert, key := p.Files("test")
	if _, err := os.Stat(cert); err != nil {
		cert, key = p.Issue(tlsutil.CertRequest{ClientName: "test"})
	}
	cfg, err := tlsutil.ClientConfig(tlsutil.ClientFiles{CA: p.CAFile, Cert: cert, Key: key})
	if err != nil {
		p.t.Fatal(err)
	}
	return cfg
}

// CLIArgs are the CLI's TLS flags with the "test" client certificate.
func (p *PKI) CLIArgs() []string {
	p.ClientTLS()
	cert, key := p.Files("test")
	return []string{"--cacert", p.CAFile, "--cert", cert, "--key", key}
}

func (p *PKI) write(name string, b []byte) string {
	p.t.Helper()
	path := filepath.Join(p.Dir, name)
	if err := os.WriteFile(path+".tmp", b, 0o600); err != nil {
		p.t.Fatal(err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		p.t.Fatal(err)
	}
	return path
}
