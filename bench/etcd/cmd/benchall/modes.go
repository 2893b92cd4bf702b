package main

// modes.go: the two servers this program runs as its own children. `benchall member` is one etcd member
// (etcd's server embedded from its Go module, default settings: fsync on, default snapshot count, quota
// and timeouts; only the log level is lowered). `benchall ceiling` is a bare net/http server that
// answers raftkv's PUT and GET /v1/kv/{key} from an in-memory map: no Raft, no disk, no validation;
// whatever raftkv does beyond HTTP costs the difference.

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	"go.etcd.io/etcd/server/v3/embed"
)

func runMember(args []string) int {
	fs := flag.NewFlagSet("member", flag.ContinueOnError)
	name := fs.String("name", "", "member name")
	dir := fs.String("data-dir", "", "data directory")
	client := fs.String("client", "", "client host:port")
	peer := fs.String("peer", "", "peer host:port")
	initial := fs.String("initial-cluster", "", "name=http://host:port,...")
	existing := fs.Bool("existing", false, "join an existing cluster (a member added with MemberAdd/MemberAddAsLearner)")
	// tlsrows.go: client TLS with client-certificate auth and peer mutual TLS, one CA and one key pair
	// for both (etcd's --cert-file/--key-file/--client-cert-auth/--trusted-ca-file and --peer-*).
	certFile := fs.String("cert", "", "TLS: the member's certificate for the client and peer ports (https URLs)")
	keyFile := fs.String("key", "", "TLS: its private key")
	caFile := fs.String("ca", "", "TLS: the CA that clients' and peers' certificates must chain to")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()

	cfg := embed.NewConfig()
	cfg.Name, cfg.Dir = *name, *dir
	scheme := "http"
	if *certFile != "" {
		scheme = "https"
		cfg.ClientTLSInfo = transport.TLSInfo{CertFile: *certFile, KeyFile: *keyFile, TrustedCAFile: *caFile, ClientCertAuth: true}
		cfg.PeerTLSInfo = transport.TLSInfo{CertFile: *certFile, KeyFile: *keyFile, TrustedCAFile: *caFile, ClientCertAuth: true}
	}
	cu := url.URL{Scheme: scheme, Host: *client}
	pu := url.URL{Scheme: scheme, Host: *peer}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{cu}, []url.URL{cu}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{pu}, []url.URL{pu}
	cfg.InitialCluster = *initial
	cfg.InitialClusterToken = "raftkv-bench"
	cfg.ClusterState = embed.ClusterStateFlagNew
	if *existing {
		cfg.ClusterState = embed.ClusterStateFlagExisting
	}
	cfg.LogLevel = "warn"
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "member %s: %v\n", *name, err)
		return 1
	}
	defer e.Close()
	select {
	case <-e.Server.ReadyNotify():
		fmt.Printf("member %s ready\n", *name)
	case <-ctx.Done():
		return 0
	case err := <-e.Err():
		fmt.Fprintf(os.Stderr, "member %s: %v\n", *name, err)
		return 1
	}
	select {
	case <-ctx.Done():
		return 0
	case err := <-e.Err():
		fmt.Fprintf(os.Stderr, "member %s: %v\n", *name, err)
		return 1
	}
}

func runCeiling(args []string) int {
	fs := flag.NewFlagSet("ceiling", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:0", "listen address")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	// The same server timeouts as raftkv's HTTP API.
	srv := &http.Server{Handler: newCeiling(), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	go func() { _ = srv.Serve(ln) }()
	fmt.Printf("ceiling on %s\n", ln.Addr())
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	return 0
}

// ceiling is the in-memory KV behind a ceiling server.
type ceiling struct {
	mu    sync.RWMutex
	kv    map[string][]byte
	index uint64
}

func newCeiling() *ceiling { return &ceiling{kv: map[string][]byte{}} }

func (c *ceiling) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/healthz" {
		w.Write([]byte("ok\n"))
		return
	}
	key, ok := strings.CutPrefix(r.URL.Path, "/v1/kv/")
	if !ok || key == "" {
		http.Error(w, `{"error":"not found","code":"not_found"}`, http.StatusNotFound)
		return
	}
	switch r.Method {
	case http.MethodGet:
		c.mu.RLock()
		v, ok := c.kv[key]
		c.mu.RUnlock()
		if !ok {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotFound)
			w.Write([]byte(`{"error":"key not found","code":"key_not_found"}`))
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Write(v)
	case http.MethodPut:
		v, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, `{"error":"bad body","code":"invalid_body"}`, http.StatusBadRequest)
			return
		}
		c.mu.Lock()
		c.kv[key] = v
		c.index++
		idx := c.index
		c.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"index":` + strconv.FormatUint(idx, 10) + "}\n"))
	default:
		http.Error(w, `{"error":"method not allowed","code":"method_not_allowed"}`, http.StatusMethodNotAllowed)
	}
}
