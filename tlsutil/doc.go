// Package tlsutil owns raftkv's certificates and TLS configurations: it issues a cluster CA and the
// certificates signed by it (`raftkv tls`), names the identity a certificate proves (a node id or a
// client name, in a URI SAN), and builds the tls.Configs of the client API and of the node port from
// files that it reloads when they change, without a restart.
//
// It never opens a listener or a connection: the HTTP server, the node port (transport) and the clients
// take the configurations it builds. Every configuration reads the current certificate and CA pool on
// each handshake (GetCertificate, GetConfigForClient, VerifyConnection), never a copy taken at start-up:
// etcd's reload missed clients that sent no SNI because it also set Certificates (etcd#9541), and its CA
// never reloads at all (etcd#11555).
package tlsutil
