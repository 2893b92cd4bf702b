package tlsutil

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"time"
)

// Validity defaults, as `consul tls` has them: a CA lives five years, a certificate one, so that a
// leaked key stops working within a year while operators rotate the CA rarely.
const (
	DefaultCAValidity   = 5 * 365 * 24 * time.Hour
	DefaultCertValidity = 365 * 24 * time.Hour
	// backdate covers clocks a little behind the issuer's: a certificate valid from "now" would be
	// refused for minutes by a peer whose clock lags.
	backdate = 5 * time.Minute
)

// PEM is a certificate and its private key, PEM-encoded.
type PEM struct {
	Cert, Key []byte
}

// NewCA issues a self-signed ECDSA P-256 CA named name. It may sign certificates only, not
// intermediate CAs (MaxPathLen 0).
func NewCA(name string, validity time.Duration, now time.Time) (PEM, error) {
	if validity <= 0 {
		validity = DefaultCAValidity
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return PEM{}, fmt.Errorf("generate CA key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return PEM{}, err
	}
	ski, err := keyID(&key.PublicKey)
	if err != nil {
		return PEM{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name, Organization: []string{"raftkv"}},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
		SubjectKeyId:          ski,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return PEM{}, fmt.Errorf("sign CA certificate: %w", err)
	}
	return encode(der, key)
}

// CertRequest says what a certificate is for. Exactly one of NodeID and ClientName is set.
type CertRequest struct {
	// NodeID: a node certificate, for the API (server) and the node port (server and client).
	NodeID string
	// ClientName: a client certificate (the CLI, an application), for client authentication only.
	ClientName string
	// IPs and DNS are the addresses clients dial a node by; a node certificate always includes
	// localhost and 127.0.0.1 as well, so the CLI on the node's own host verifies it.
	IPs      []net.IP
	DNS      []string
	Validity time.Duration
}

// NewCert issues the certificate req asks for, signed by ca.
func NewCert(ca PEM, req CertRequest, now time.Time) (PEM, error) {
	if (req.NodeID == "") == (req.ClientName == "") {
		return PEM{}, errors.New("a certificate is for a node or for a client: set exactly one")
	}
	caCert, caKey, err := ParseCA(ca)
	if err != nil {
		return PEM{}, err
	}
	validity := req.Validity
	if validity <= 0 {
		validity = DefaultCertValidity
	}
	notAfter := now.Add(validity)
	if notAfter.After(caCert.NotAfter) {
		// A certificate that outlives its CA would be refused anyway; say so when it is issued.
		return PEM{}, fmt.Errorf("the certificate would outlive its CA (CA expires %s): shorten the validity or rotate the CA",
			caCert.NotAfter.UTC().Format(time.RFC3339))
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return PEM{}, fmt.Errorf("generate key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return PEM{}, err
	}
	ski, err := keyID(&key.PublicKey)
	if err != nil {
		return PEM{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:   serial,
		NotBefore:      now.Add(-backdate),
		NotAfter:       notAfter,
		KeyUsage:       x509.KeyUsageDigitalSignature,
		SubjectKeyId:   ski,
		AuthorityKeyId: caCert.SubjectKeyId,
		IPAddresses:    req.IPs,
		DNSNames:       req.DNS,
	}
	if req.NodeID != "" {
		tmpl.Subject = pkix.Name{CommonName: req.NodeID, Organization: []string{"raftkv node"}}
		tmpl.URIs = []*url.URL{NodeURI(req.NodeID)}
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
		tmpl.DNSNames = appendMissing(tmpl.DNSNames, "localhost")
		if !containsIP(tmpl.IPAddresses, net.IPv4(127, 0, 0, 1)) {
			tmpl.IPAddresses = append(tmpl.IPAddresses, net.IPv4(127, 0, 0, 1))
		}
	} else {
		tmpl.Subject = pkix.Name{CommonName: req.ClientName, Organization: []string{"raftkv client"}}
		tmpl.URIs = []*url.URL{ClientURI(req.ClientName)}
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		return PEM{}, fmt.Errorf("sign certificate: %w", err)
	}
	return encode(der, key)
}

// ParseCA decodes a CA certificate and its key, and checks that they belong together.
func ParseCA(ca PEM) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	cb, _ := pem.Decode(ca.Cert)
	if cb == nil || cb.Type != "CERTIFICATE" {
		return nil, nil, errors.New("CA certificate: no PEM CERTIFICATE block")
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("CA certificate: %w", err)
	}
	if !cert.IsCA {
		return nil, nil, errors.New("CA certificate: it is not a CA")
	}
	kb, _ := pem.Decode(ca.Key)
	if kb == nil {
		return nil, nil, errors.New("CA key: no PEM block")
	}
	k, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("CA key: %w", err)
	}
	key, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, nil, fmt.Errorf("CA key: %T, want ECDSA", k)
	}
	if !key.PublicKey.Equal(cert.PublicKey) {
		return nil, nil, errors.New("the CA key does not belong to the CA certificate")
	}
	return cert, key, nil
}

func encode(der []byte, key *ecdsa.PrivateKey) (PEM, error) {
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return PEM{}, fmt.Errorf("encode key: %w", err)
	}
	return PEM{
		Cert: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		Key:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}),
	}, nil
}

// newSerial is a random 128-bit serial number, as RFC 5280 and the CA/B forum ask (unpredictable).
func newSerial() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("serial number: %w", err)
	}
	return n, nil
}

// keyID is the SHA-256 of the public key, truncated to 20 bytes (RFC 7093 method 1).
func keyID(pub *ecdsa.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("encode public key: %w", err)
	}
	sum := sha256.Sum256(der)
	return sum[:20], nil
}

func appendMissing(list []string, s string) []string {
	for _, x := range list {
		if x == s {
			return list
		}
	}
	return append(list, s)
}

func containsIP(list []net.IP, ip net.IP) bool {
	for _, x := range list {
		if x.Equal(ip) {
			return true
		}
	}
	return false
}
