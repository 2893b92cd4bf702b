package main

// tlscmd.go: `raftkv tls ca create` and `raftkv tls cert create`: the cluster CA and its certificates,
// issued in pure Go (tlsutil), so that an operator turns TLS on without openssl.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/raftkv/raftkv/tlsutil"
)

const tlsUsage = `Usage: raftkv tls <command> [flags]

Commands:
  ca create      create the cluster CA: ca.pem (give it to every node and client) and ca-key.pem (keep it
                 offline; it signs every certificate)
  cert create    issue a certificate signed by the CA: --node ID for a node (serves the API and the node
                 port, identifies the node to its peers), --client NAME for a client (the CLI, an app)

Every key is ECDSA P-256, written with mode 0600; nothing is overwritten. A node certificate names its
node id (URI SAN raftkv://node/ID), which its peers check on every node-port connection; a client
certificate names its client (raftkv://client/NAME) and opens only the client API.

Example (three nodes, then the CLI):
  raftkv tls ca create
  for n in rk1 rk2 rk3; do raftkv tls cert create --node $n --dns $n; done
  raftkv tls cert create --client ops
  raftkv serve --id rk1 --tls-cert-file rk1.pem --tls-key-file rk1-key.pem \
    --peer-tls-cert-file rk1.pem --peer-tls-key-file rk1-key.pem --peer-tls-ca-file ca.pem ...
  raftkv get --addr https://rk1:7000 --cacert ca.pem --cert ops.pem --key ops-key.pem KEY
`

func runTLS(_ context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) >= 2 && args[1] == "create" {
		switch args[0] {
		case "ca":
			return runTLSCACreate(args[2:], stdout, stderr, time.Now())
		case "cert":
			return runTLSCertCreate(args[2:], stdout, stderr, time.Now())
		}
	}
	if len(args) == 1 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
		fmt.Fprint(stdout, tlsUsage)
		return exitOK
	}
	fmt.Fprintf(stderr, "raftkv: unknown tls command %q\n\n%s", strings.Join(args, " "), tlsUsage)
	return exitUsage
}

func runTLSCACreate(args []string, stdout, stderr io.Writer, now time.Time) int {
	fs := newFlagSet("tls ca create", "tls ca create [flags]", `
Create the cluster CA in --dir: ca.pem, the certificate every node and client trusts, and ca-key.pem,
its private key. Keep the key off the nodes: only "raftkv tls cert create" needs it.`)
	dir := fs.String("dir", ".", "directory to write ca.pem and ca-key.pem into")
	name := fs.String("name", "raftkv CA", "the CA's common name")
	days := fs.Int("days", int(tlsutil.DefaultCAValidity/(24*time.Hour)), "validity in days")
	pos, code, ok := parseArgs(fs, args, stdout, stderr)
	if !ok {
		return code
	}
	if len(pos) != 0 {
		return usageError(fs, stderr, "tls ca create takes no arguments")
	}
	if *days < 1 {
		return usageError(fs, stderr, "--days must be at least 1")
	}
	ca, err := tlsutil.NewCA(*name, time.Duration(*days)*24*time.Hour, now)
	if err != nil {
		return fail(stderr, err)
	}
	certPath, keyPath := filepath.Join(*dir, "ca.pem"), filepath.Join(*dir, "ca-key.pem")
	if err := writeNewFiles(certPath, ca.Cert, keyPath, ca.Key); err != nil {
		return fail(stderr, fmt.Errorf("tls ca create: %w", err))
	}
	fmt.Fprintf(stdout, "wrote %s and %s (valid %d days)\n", certPath, keyPath, *days)
	return exitOK
}

func runTLSCertCreate(args []string, stdout, stderr io.Writer, now time.Time) int {
	fs := newFlagSet("tls cert create", "tls cert create (--node ID | --client NAME) [flags]", `
Issue a certificate signed by the CA. --node ID: a node's certificate, written as ID.pem and ID-key.pem;
give it the addresses clients use to reach the node (--ip, --dns; localhost and 127.0.0.1 are always in).
The same pair serves the client API (--tls-cert-file) and the node port (--peer-tls-cert-file).
--client NAME: a client certificate (NAME.pem, NAME-key.pem) for --cacert/--cert/--key.`)
	var node, client, ips, dnsNames string
	fs.StringVar(&node, "node", "", "node id the certificate proves (must equal the node's --id)")
	fs.StringVar(&client, "client", "", "client name the certificate proves")
	fs.StringVar(&ips, "ip", "", "comma-separated IP addresses of the node")
	fs.StringVar(&dnsNames, "dns", "", "comma-separated DNS names of the node")
	caFile := fs.String("ca", "ca.pem", "the CA certificate")
	caKey := fs.String("ca-key", "ca-key.pem", "the CA's private key")
	dir := fs.String("dir", ".", "directory to write the certificate and key into")
	days := fs.Int("days", int(tlsutil.DefaultCertValidity/(24*time.Hour)), "validity in days")
	pos, code, ok := parseArgs(fs, args, stdout, stderr)
	if !ok {
		return code
	}
	if len(pos) != 0 {
		return usageError(fs, stderr, "tls cert create takes no arguments")
	}
	if (node == "") == (client == "") {
		return usageError(fs, stderr, "give exactly one of --node ID and --client NAME")
	}
	if *days < 1 {
		return usageError(fs, stderr, "--days must be at least 1")
	}
	name := node + client
	if strings.ContainsAny(name, `/\`) || name == "." || name == ".." || len(name) > 128 {
		return usageError(fs, stderr, "%q cannot name a certificate file", name)
	}
	req := tlsutil.CertRequest{NodeID: node, ClientName: client, DNS: splitList(dnsNames),
		Validity: time.Duration(*days) * 24 * time.Hour}
	if client != "" && (ips != "" || dnsNames != "") {
		return usageError(fs, stderr, "--ip and --dns are for node certificates")
	}
	for _, s := range splitList(ips) {
		ip := net.ParseIP(s)
		if ip == nil {
			return usageError(fs, stderr, "--ip %q is not an IP address", s)
		}
		req.IPs = append(req.IPs, ip)
	}
	var ca tlsutil.PEM
	var err error
	if ca.Cert, err = os.ReadFile(*caFile); err == nil {
		ca.Key, err = os.ReadFile(*caKey)
	}
	if err != nil {
		return fail(stderr, fmt.Errorf("tls cert create: %w (create a CA with \"raftkv tls ca create\")", err))
	}
	p, err := tlsutil.NewCert(ca, req, now)
	if err != nil {
		return fail(stderr, fmt.Errorf("tls cert create: %w", err))
	}
	certPath, keyPath := filepath.Join(*dir, name+".pem"), filepath.Join(*dir, name+"-key.pem")
	if err := writeNewFiles(certPath, p.Cert, keyPath, p.Key); err != nil {
		return fail(stderr, fmt.Errorf("tls cert create: %w", err))
	}
	fmt.Fprintf(stdout, "wrote %s and %s (valid %d days)\n", certPath, keyPath, *days)
	return exitOK
}

// writeNewFiles writes a certificate (0644) and its key (0600), refusing to replace either: a CA key
// overwritten by mistake orphans every certificate it signed.
func writeNewFiles(certPath string, cert []byte, keyPath string, key []byte) error {
	for _, p := range []string{certPath, keyPath} {
		if _, err := os.Stat(p); err == nil {
			return fmt.Errorf("%s already exists; remove it first to replace it", p)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	if err := writeExclusive(keyPath, key, 0o600); err != nil {
		return err
	}
	if err := writeExclusive(certPath, cert, 0o644); err != nil {
		os.Remove(keyPath)
		return err
	}
	return nil
}

func writeExclusive(path string, b []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return err
	}
	return nil
}
