package tlsutil

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
)

// APIServerConfig is the client API's TLS: TLS 1.2 or newer, the Source's certificate, and, when the
// Source has a CA (--tls-client-ca-file), a client certificate signed by it is required. HTTP/1.1 only:
// the API's streams (watch, long-poll) and its clients are written for it.
func APIServerConfig(src *Source) *tls.Config {
	base := &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"http/1.1"},
		// Certificates stays empty so that every handshake asks for the current one, with or without
		// SNI (etcd#9541).
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return currentCert(src) },
	}
	if src.Pool() == nil {
		return base
	}
	base.ClientAuth = tls.RequireAndVerifyClientCert
	base.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		c := base.Clone()
		c.GetConfigForClient = nil
		c.ClientCAs = src.Pool() // the CA bundle reloads too
		return c, nil
	}
	return base
}

// PeerServerConfig is the node port's TLS as the side that accepts: TLS 1.3, and the dialer must present
// a node certificate (raftkv://node/<id>) signed by the cluster CA. A client certificate from the same
// CA is refused: it names no node.
func PeerServerConfig(src *Source) *tls.Config {
	base := &tls.Config{
		MinVersion:     tls.VersionTLS13,
		ClientAuth:     tls.RequireAndVerifyClientCert,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return currentCert(src) },
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("no peer certificate")
			}
			if _, ok := NodeID(cs.PeerCertificates[0]); !ok {
				return errors.New("the peer's certificate names no node: only a node certificate opens the node port")
			}
			return nil
		},
	}
	base.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		c := base.Clone()
		c.GetConfigForClient = nil
		c.ClientCAs = src.Pool()
		return c, nil
	}
	return base
}

// PeerClientConfig is the node port's TLS as the dialer: it presents this node's certificate and
// accepts only a server certificate from the cluster CA that names node target (any node when target is
// empty). The check is on the identity, not on a host name: container IPs are reused, and an address
// that gossip still maps to node A may be node B's by now.
func PeerClientConfig(src *Source, target string) *tls.Config {
	return &tls.Config{
		MinVersion:           tls.VersionTLS13,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return currentCert(src) },
		// The standard verification checks a host name, which is not what a node proves; it is
		// replaced, not dropped: VerifyConnection does the chain against the current pool and the id.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			leaf, err := verifyChain(cs.PeerCertificates, src.Pool(), x509.ExtKeyUsageServerAuth)
			if err != nil {
				return err
			}
			id, ok := NodeID(leaf)
			switch {
			case !ok:
				return errors.New("the peer's certificate names no node")
			case target != "" && id != target:
				return fmt.Errorf("%w: its certificate is node %q's, not %q's", ErrWrongIdentity, id, target)
			}
			return nil
		},
	}
}

// ErrWrongIdentity: the peer proved an identity, but not the one dialed.
var ErrWrongIdentity = errors.New("the peer is another node")

// PeerNodeID is the node id proven by the peer of an established TLS connection ("" if none).
func PeerNodeID(cs tls.ConnectionState) string {
	if len(cs.PeerCertificates) == 0 {
		return ""
	}
	id, _ := NodeID(cs.PeerCertificates[0])
	return id
}

func verifyChain(chain []*x509.Certificate, roots *x509.CertPool, usage x509.ExtKeyUsage) (*x509.Certificate, error) {
	if len(chain) == 0 {
		return nil, errors.New("the peer presented no certificate")
	}
	if roots == nil {
		return nil, errors.New("no CA to verify the peer against")
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	if _, err := chain[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
		return nil, fmt.Errorf("the peer's certificate is not from the cluster CA: %w", err)
	}
	return chain[0], nil
}

func currentCert(src *Source) (*tls.Certificate, error) {
	if c := src.Certificate(); c != nil {
		return c, nil
	}
	return nil, errors.New("no certificate configured")
}

// ClientFiles configure a client of the API: CA to verify the nodes with (empty: the system's roots),
// and an optional client certificate.
type ClientFiles struct {
	CA, Cert, Key string
}

// Empty reports whether no TLS file is set.
func (f ClientFiles) Empty() bool { return f.CA == "" && f.Cert == "" && f.Key == "" }

// ClientConfig loads f once into an API client's TLS configuration (TLS 1.2+). A client lives for one
// command or one process; a long-lived application that rotates its own certificate builds a tls.Config
// with GetClientCertificate instead.
func ClientConfig(f ClientFiles) (*tls.Config, error) {
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	if f.CA != "" {
		b, err := os.ReadFile(f.CA)
		if err != nil {
			return nil, fmt.Errorf("CA file: %w", err)
		}
		c.RootCAs = x509.NewCertPool()
		if !c.RootCAs.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("CA file %s: no PEM certificate in it", f.CA)
		}
	}
	if (f.Cert == "") != (f.Key == "") {
		return nil, errors.New("a client certificate needs its key, and a key its certificate")
	}
	if f.Cert != "" {
		pair, err := tls.LoadX509KeyPair(f.Cert, f.Key)
		if err != nil {
			return nil, fmt.Errorf("client certificate: %w", err)
		}
		c.Certificates = []tls.Certificate{pair}
	}
	return c, nil
}
