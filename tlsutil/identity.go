package tlsutil

import (
	"crypto/x509"
	"net/url"
	"strings"
)

// A certificate proves one identity, carried as a URI SAN so that it cannot be confused with a host
// name: raftkv://node/<id> for a node (it may serve the API and the node port, and dial other nodes),
// raftkv://client/<name> for a client (the CLI, an application). The node port accepts only node
// identities, so a client certificate from the same CA opens no door to Raft.
const (
	uriScheme  = "raftkv"
	nodeHost   = "node"
	clientHost = "client"
)

// NodeURI is the identity URI of node id.
func NodeURI(id string) *url.URL { return &url.URL{Scheme: uriScheme, Host: nodeHost, Path: "/" + id} }

// ClientURI is the identity URI of client name.
func ClientURI(name string) *url.URL {
	return &url.URL{Scheme: uriScheme, Host: clientHost, Path: "/" + name}
}

// NodeID is the node id cert proves, if it names one.
func NodeID(cert *x509.Certificate) (string, bool) { return identity(cert, nodeHost) }

// ClientName is the client name cert proves, if it names one.
func ClientName(cert *x509.Certificate) (string, bool) { return identity(cert, clientHost) }

func identity(cert *x509.Certificate, kind string) (string, bool) {
	if cert == nil {
		return "", false
	}
	var found string
	for _, u := range cert.URIs {
		if u.Scheme != uriScheme || u.Host != kind {
			continue
		}
		id := strings.TrimPrefix(u.Path, "/")
		if id == "" || (found != "" && found != id) {
			return "", false // two different identities in one certificate prove neither
		}
		found = id
	}
	return found, found != ""
}
