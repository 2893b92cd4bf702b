package main

// servetls.go: serve's transport security: the TLS files of the client API and of the node port, and
// their reload on SIGHUP and on change.

import (
	"context"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/raftkv/raftkv/tlsutil"
)

type tlsFlags struct {
	certFile, keyFile, clientCAFile       string
	peerCertFile, peerKeyFile, peerCAFile string
	reloadInterval                        time.Duration

	gossipKey, gossipKeyFile              string
	gossipVerifyIncoming, gossipVerifyOut bool
}

func (f *tlsFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.certFile, "tls-cert-file", "", "serve the HTTP API over TLS (1.2+) with this certificate (PEM); reloaded on change and on SIGHUP")
	fs.StringVar(&f.keyFile, "tls-key-file", "", "the private key of --tls-cert-file (PEM)")
	fs.StringVar(&f.clientCAFile, "tls-client-ca-file", "", "require API clients to present a certificate signed by a CA in this bundle (PEM)")
	fs.DurationVar(&f.reloadInterval, "tls-reload-interval", tlsutil.DefaultReloadInterval, "how often the TLS files are checked for a change (SIGHUP reloads at once)")
}

func (f *tlsFlags) registerPeer(fs *flag.FlagSet) {
	fs.StringVar(&f.peerCertFile, "peer-tls-cert-file", "", "node certificate for mutual TLS on the node port (from \"raftkv tls cert create --node ID\"; it must name this node's --id)")
	fs.StringVar(&f.peerKeyFile, "peer-tls-key-file", "", "the private key of --peer-tls-cert-file")
	fs.StringVar(&f.peerCAFile, "peer-tls-ca-file", "", "the cluster CA bundle: the node port accepts and dials only nodes whose certificate it signed")
}

func (f *tlsFlags) registerGossip(fs *flag.FlagSet) {
	fs.StringVar(&f.gossipKey, "gossip-key", "", "encrypt gossip with this key (base64, 16/24/32 bytes; \"raftkv keyring generate\"); used when the data dir has no keyring yet, which then keeps rotations")
	fs.StringVar(&f.gossipKeyFile, "gossip-key-file", "", "read --gossip-key from this file (keeps the key out of the process list)")
	fs.BoolVar(&f.gossipVerifyIncoming, "gossip-verify-incoming", true, "refuse unencrypted gossip (false only while turning encryption on in a running cluster)")
	fs.BoolVar(&f.gossipVerifyOut, "gossip-verify-outgoing", true, "send gossip encrypted (false only while turning encryption on in a running cluster)")
}

// gossipKeys is the initial gossip key from --gossip-key or --gossip-key-file; nil for none.
func (f *tlsFlags) gossipKeys() ([][]byte, error) {
	enc := f.gossipKey
	if f.gossipKeyFile != "" {
		if enc != "" {
			return nil, errors.New("give --gossip-key or --gossip-key-file, not both")
		}
		b, err := os.ReadFile(f.gossipKeyFile)
		if err != nil {
			return nil, fmt.Errorf("--gossip-key-file: %w", err)
		}
		enc = strings.TrimSpace(string(b))
	}
	if enc == "" {
		return nil, nil
	}
	k, err := base64.StdEncoding.DecodeString(enc)
	if err != nil || (len(k) != 16 && len(k) != 24 && len(k) != 32) {
		return nil, errors.New("the gossip key must be 16, 24 or 32 bytes in base64 (\"raftkv keyring generate\" makes one)")
	}
	return [][]byte{k}, nil
}

// apiSource loads the API's TLS files; nil when the API serves plain HTTP.
func (f *tlsFlags) apiSource(logger *slog.Logger) (*tlsutil.Source, error) {
	if f.certFile == "" && f.keyFile == "" && f.clientCAFile == "" {
		return nil, nil
	}
	if f.certFile == "" || f.keyFile == "" {
		return nil, errors.New("--tls-cert-file and --tls-key-file go together (and --tls-client-ca-file needs them)")
	}
	return tlsutil.Load(tlsutil.Files{Cert: f.certFile, Key: f.keyFile, CA: f.clientCAFile}, logger)
}

// peerSource loads the node port's TLS files; nil when the node port is plain TCP.
func (f *tlsFlags) peerSource(logger *slog.Logger) (*tlsutil.Source, error) {
	if f.peerCertFile == "" && f.peerKeyFile == "" && f.peerCAFile == "" {
		return nil, nil
	}
	if f.peerCertFile == "" || f.peerKeyFile == "" || f.peerCAFile == "" {
		return nil, errors.New("mutual TLS on the node port needs all of --peer-tls-cert-file, --peer-tls-key-file and --peer-tls-ca-file")
	}
	return tlsutil.Load(tlsutil.Files{Cert: f.peerCertFile, Key: f.peerKeyFile, CA: f.peerCAFile}, logger)
}

// reloadTLS keeps sources current until ctx ends: each polls its files every interval, and SIGHUP
// reloads them all at once (for an operator, or a cert-manager hook, that wants it now).
func reloadTLS(ctx context.Context, sources []*tlsutil.Source, interval time.Duration, logger *slog.Logger) {
	if len(sources) == 0 {
		return
	}
	for _, s := range sources {
		go s.Watch(ctx, interval)
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		defer signal.Stop(hup)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
			}
			for _, s := range sources {
				changed, err := s.Reload()
				switch {
				case err != nil:
					logger.Error("SIGHUP: TLS files cannot be loaded; still using the previous ones", "err", err)
				case changed:
					logger.Info("SIGHUP: TLS files reloaded", "cert", s.Files().Cert, "ca", s.Files().CA, "expires", s.Expiry())
				default:
					logger.Info("SIGHUP: TLS files unchanged", "cert", s.Files().Cert, "ca", s.Files().CA)
				}
			}
		}
	}()
}

// nonNil drops the nil Sources (a transport without TLS).
func nonNil(sources ...*tlsutil.Source) []*tlsutil.Source {
	var out []*tlsutil.Source
	for _, s := range sources {
		if s != nil {
			out = append(out, s)
		}
	}
	return out
}

// exposures names what this node opens to its network without protection: an address that binds
// beyond loopback and carries no TLS (or gossip no key). Serve logs them in one warning at start-up.
func exposures(f *serveFlags, apiTLS, peerTLS bool, gossipKeyed bool) []string {
	var out []string
	if !apiTLS && !loopbackOnly(f.httpAddr) {
		out = append(out, "the HTTP API on "+f.httpAddr+" is plain HTTP: whoever reaches it reads and writes every key and changes membership (--tls-cert-file, --tls-client-ca-file)")
	}
	if !peerTLS && !loopbackOnly(f.raftAddr) {
		out = append(out, "the node port on "+f.raftAddr+" takes any host: one that reaches it can be added to the cluster and sent every key, or forge Raft traffic (--peer-tls-*)")
	}
	if !gossipKeyed && !loopbackOnly(f.gossipAddr) {
		out = append(out, "gossip on "+f.gossipAddr+" is unencrypted and unauthenticated: any host can join it and claim a node id (--gossip-key)")
	}
	return out
}

// loopbackOnly reports whether addr binds loopback only (127.0.0.0/8, ::1, localhost).
func loopbackOnly(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
