package main

// serve.go: `raftkv serve` — flags and environment into a store.Config and httpapi.Options, the HTTP
// server, and the signal-driven graceful stop.

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"strings"
	"time"

	"github.com/raftkv/raftkv/httpapi"
	"github.com/raftkv/raftkv/metrics"
	"github.com/raftkv/raftkv/netlimit"
	"github.com/raftkv/raftkv/store"
	"github.com/raftkv/raftkv/tlsutil"
	"github.com/raftkv/raftkv/ui"
	"github.com/raftkv/raftkv/watch"
)

const serveDescription = `
Runs one raftkv node: the Raft state machine with its BoltDB log under --data-dir, the node-to-node
port (--raft-addr: Raft and request forwarding), gossip (--gossip-addr) and the HTTP API (--http-addr).

A node started with no flags forms a single-node cluster on 127.0.0.1. To form a cluster of N, start N
nodes with --bootstrap-expect N and --join pointing at the others' gossip addresses; to add a node to
a running cluster, start it with --join only. Every flag can also be set with an environment variable:
RAFTKV_ plus the flag name in upper case with dashes as underscores (--http-addr: RAFTKV_HTTP_ADDR).
A flag on the command line wins over the environment.

SIGINT/SIGTERM stop the node gracefully: in-flight requests finish, Raft and BoltDB close, exit 0.
The node stays a member (a restart rejoins) unless --leave-on-terminate is set.

Exit status: 0 after a signal; 3 when the node cannot start or the HTTP server fails; 4 when the node
stopped because its data failed an integrity check (a damaged log entry) or its disk failed it (full,
read-only, I/O error), or cannot start on its data dir as it is (another node's, corrupt, in use, partly
wiped, or on a full, read-only or failing disk): the log says what happened and what to do.`

type serveFlags struct {
	id, dataDir                                 string
	httpAddr, raftAddr, gossipAddr              string
	advertiseHTTP, advertiseRaft, advertiseGoss string
	join                                        string
	bootstrapExpect                             int
	logLevel, logFormat                         string
	maxValueSize                                int64
	maxSessions                                 int
	snapshotThreshold, trailingLogs             uint64
	snapshotInterval, requestTimeout            time.Duration
	shutdownTimeout, httpBodyTimeout            time.Duration
	httpMaxConns                                int
	leaveOnTerminate, pprof, console            bool
	debugAddr                                   string
	watchHistory, watchProgress                 time.Duration
	watchHistoryBytes                           int64
	snapshotBytes, trailingBytes, logCacheBytes int64
	maxWatches, maxTxnOps                       int
	dedupWindow                                 time.Duration
	dedupMaxKeys                                int
	tls                                         tlsFlags
	aclEnabled                                  bool
	diskStallTimeout, corruptCheckInterval      time.Duration
}

func newServeFlagSet(f *serveFlags) *flag.FlagSet {
	fs := newFlagSet("serve", "serve [flags]", serveDescription)
	host, _ := os.Hostname()
	fs.StringVar(&f.id, "id", host, "unique, stable node id (defaults to the hostname)")
	fs.StringVar(&f.dataDir, "data-dir", "raftkv-data", "directory for the raft log, snapshots and node identity")
	fs.StringVar(&f.httpAddr, "http-addr", "127.0.0.1:7000", "bind address of the HTTP API")
	fs.StringVar(&f.raftAddr, "raft-addr", store.DefaultRaftAddr, "bind address of the node-to-node port (raft and forwarding)")
	fs.StringVar(&f.gossipAddr, "gossip-addr", store.DefaultGossipAddr, "bind address for gossip (TCP and UDP)")
	fs.StringVar(&f.advertiseHTTP, "advertise-http", "", "HTTP address other nodes and clients should use (default: --http-addr)")
	fs.StringVar(&f.advertiseRaft, "advertise-raft", "", "node-to-node address other nodes dial (default: --raft-addr, or the first private IP when it binds 0.0.0.0)")
	fs.StringVar(&f.advertiseGoss, "advertise-gossip", "", "gossip address other nodes use (default: --gossip-addr, or the first private IP when it binds 0.0.0.0)")
	fs.StringVar(&f.join, "join", "", "comma-separated gossip addresses of existing members; retried with backoff until one answers")
	fs.IntVar(&f.bootstrapExpect, "bootstrap-expect", -1, "form a new cluster once this many nodes see each other (default: 1 without --join, 0 with it)")
	fs.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&f.logFormat, "log-format", "text", "text or json")
	fs.Int64Var(&f.maxValueSize, "max-value-size", 1<<20, "largest value accepted, in bytes")
	fs.IntVar(&f.maxSessions, "max-sessions", store.DefaultMaxSessions, "most live sessions; creates past it get 429 too_many_sessions (give every node the same)")
	fs.Uint64Var(&f.snapshotThreshold, "snapshot-threshold", store.DefaultSnapshotThreshold, "log entries since the last snapshot that trigger a new one")
	fs.DurationVar(&f.snapshotInterval, "snapshot-interval", store.DefaultSnapshotInterval, "how often to check whether a snapshot is due")
	fs.Uint64Var(&f.trailingLogs, "trailing-logs", store.DefaultTrailingLogs, "log entries kept after a snapshot, for followers that lag a little")
	fs.Int64Var(&f.snapshotBytes, "snapshot-bytes", store.DefaultSnapshotBytes, "bytes of log entries since the last snapshot that trigger a new one (large values reach it before --snapshot-threshold)")
	fs.Int64Var(&f.trailingBytes, "trailing-bytes", store.DefaultTrailingBytes, "at most this many bytes of log entries are kept after a snapshot (at least one entry; --trailing-logs bounds the count)")
	fs.Int64Var(&f.logCacheBytes, "log-cache-bytes", store.DefaultLogCacheBytes, "bytes of recent log entries kept in memory for replication")
	fs.DurationVar(&f.requestTimeout, "request-timeout", store.DefaultRequestTimeout, "bound on any request, including waiting for a leader")
	fs.DurationVar(&f.shutdownTimeout, "shutdown-timeout", 10*time.Second, "how long a graceful stop waits for in-flight requests")
	fs.DurationVar(&f.httpBodyTimeout, "http-body-timeout", 30*time.Second, "how long a client may take to send a request's headers and body")
	fs.IntVar(&f.httpMaxConns, "http-max-conns", 4096, "most HTTP connections held open at once; more are closed at once (keep it below the descriptor limit)")
	fs.BoolVar(&f.leaveOnTerminate, "leave-on-terminate", false, "leave the cluster gracefully on SIGTERM (the node is removed from raft)")
	fs.BoolVar(&f.console, "ui", true, "serve the web console under /ui/ on the HTTP address (a client of the API, nothing more)")
	fs.BoolVar(&f.pprof, "pprof", false, "serve Go profiles under /debug/pprof/ on the HTTP address too")
	fs.BoolVar(&f.aclEnabled, "acl-enabled", false, "deny every HTTP request without a token allowed to do it, except /healthz and /readyz (set it on every node; see docs/security.md)")
	fs.StringVar(&f.debugAddr, "debug-addr", "127.0.0.1:0", "bind address of the debug server (Go profiles under /debug/pprof/, and /metrics); port 0 picks a free one, logged at start; empty turns it off")
	fs.DurationVar(&f.watchHistory, "watch-history", watch.DefaultHistory, "how long each node keeps changes in memory for watches to resume from")
	fs.Int64Var(&f.watchHistoryBytes, "watch-history-bytes", watch.DefaultHistoryBytes, "most bytes of changes each node keeps for watches (the oldest go first)")
	fs.DurationVar(&f.watchProgress, "watch-progress-interval", httpapi.DefaultWatchProgressInterval, "a watch stream sends a progress event at least this often")
	fs.IntVar(&f.maxWatches, "max-watches", httpapi.DefaultMaxWatches, "most watch streams one node serves at once")
	fs.IntVar(&f.maxTxnOps, "max-txn-ops", httpapi.DefaultMaxTxnOps, "most compares and ops in one transaction")
	fs.DurationVar(&f.dedupWindow, "dedup-window", store.DefaultDedupWindow, "how long a write's Idempotency-Key is remembered: a retry within it returns the first outcome (the leader's value applies)")
	fs.DurationVar(&f.diskStallTimeout, "disk-stall-timeout", store.DefaultDiskStallTimeout, "a raft log write running longer than this is a stalled disk: the node reports not ready and, as leader, stops heartbeats so that another is elected")
	fs.DurationVar(&f.corruptCheckInterval, "corrupt-check-interval", store.DefaultCorruptCheckInterval, "how often the leader compares a hash of every member's keyspace at the same index; a member that differs from the majority stops serving (negative: off)")
	fs.IntVar(&f.dedupMaxKeys, "dedup-max-keys", store.DefaultDedupMaxKeys, "most Idempotency-Keys remembered at once (the oldest go first)")
	f.tls.register(fs)
	f.tls.registerPeer(fs)
	f.tls.registerGossip(fs)
	return fs
}

// applyEnv fills every flag not given on the command line from RAFTKV_<FLAG>.
func applyEnv(fs *flag.FlagSet, getenv func(string) string) error {
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if given[f.Name] {
			return
		}
		env := "RAFTKV_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v := getenv(env); v != "" {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %w", env, v, err))
			}
		}
	})
	return errors.Join(errs...)
}

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	default:
		return nil, fmt.Errorf("--log-format %q: want text or json", format)
	}
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// advertisedHTTP is the HTTP address to publish; the store replaces a wildcard host with the node's
// advertised IP.
func advertisedHTTP(f *serveFlags) string {
	if f.advertiseHTTP != "" {
		return f.advertiseHTTP
	}
	return f.httpAddr
}

// httpLimits are the deadlines of one HTTP request: body is how long its client may take to send the
// headers and body, request how long the store may take to answer (store.Config.RequestTimeout).
type httpLimits struct {
	body, request time.Duration
}

// newHTTPServer bounds what one HTTP connection can hold: a client that announces a body and sends
// nothing, sends it a byte at a time, or never reads its answer is cut off by a deadline instead of
// holding a descriptor and a goroutine for as long as it likes.
//
// ReadTimeout runs from the start of a request, through its body, into the handler (net/http's
// background read cancels the request when it expires), so it covers the body and the store's answer.
// WriteTimeout leaves 30 s more to write the answer. A streaming or long-poll handler must move or clear
// both for its own request with http.ResponseController (SetReadDeadline, SetWriteDeadline).
func newHTTPServer(h http.Handler, l httpLimits, logger *slog.Logger) *http.Server {
	read := l.body + l.request
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: min(10*time.Second, l.body),
		ReadTimeout:       read,
		WriteTimeout:      read + 30*time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10, // keys (≤ 1 KiB by default) travel in the path; nothing else is large
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelDebug),
	}
}

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var f serveFlags
	fs := newServeFlagSet(&f)
	pos, code, ok := parseArgs(fs, args, stdout, stderr)
	if !ok {
		return code
	}
	if len(pos) > 0 {
		return usageError(fs, stderr, "unexpected argument %q", pos[0])
	}
	if err := applyEnv(fs, os.Getenv); err != nil {
		return usageError(fs, stderr, "%v", err)
	}
	logger, err := newLogger(stderr, f.logLevel, f.logFormat)
	if err != nil {
		return usageError(fs, stderr, "%v", err)
	}
	if f.maxValueSize < 1 {
		return usageError(fs, stderr, "--max-value-size must be at least 1")
	}
	if f.maxSessions < 1 {
		return usageError(fs, stderr, "--max-sessions must be at least 1")
	}
	if f.httpMaxConns < 1 {
		return usageError(fs, stderr, "--http-max-conns must be at least 1")
	}
	if f.watchHistory <= 0 || f.watchHistoryBytes <= 0 || f.watchProgress <= 0 || f.maxWatches < 1 || f.maxTxnOps < 1 {
		return usageError(fs, stderr, "--watch-history, --watch-history-bytes, --watch-progress-interval, --max-watches and --max-txn-ops must be positive")
	}
	if f.dedupWindow < time.Second || f.dedupMaxKeys < 1 {
		return usageError(fs, stderr, "--dedup-window must be at least 1s and --dedup-max-keys at least 1")
	}
	if f.httpBodyTimeout < time.Second {
		return usageError(fs, stderr, "--http-body-timeout must be at least 1s")
	}
	apiTLS, err := f.tls.apiSource(logger.With("component", "tls"))
	if err != nil {
		logger.Error("cannot load the API's TLS files", "err", err)
		fmt.Fprintf(stderr, "raftkv: %v\n", err)
		return exitUnavailable
	}
	peerTLS, err := f.tls.peerSource(logger.With("component", "peer-tls"))
	if err != nil {
		logger.Error("cannot load the node port's TLS files", "err", err)
		fmt.Fprintf(stderr, "raftkv: %v\n", err)
		return exitUnavailable
	}
	gossipKeys, err := f.tls.gossipKeys()
	if err != nil {
		return usageError(fs, stderr, "%v", err)
	}
	join := splitList(f.join)
	if f.bootstrapExpect < 0 {
		// A lone node just works; a node told to join waits to be added instead of founding a
		// second cluster of its own.
		f.bootstrapExpect = 1
		if len(join) > 0 {
			f.bootstrapExpect = 0
		}
	}

	// Bind the HTTP port before starting the store so a port conflict fails fast and clearly.
	ln, err := net.Listen("tcp", f.httpAddr)
	if err != nil {
		logger.Error("cannot listen on the HTTP address", "addr", f.httpAddr, "err", err)
		return exitUnavailable
	}
	var debugLn net.Listener
	if f.debugAddr != "" {
		if debugLn, err = net.Listen("tcp", f.debugAddr); err != nil {
			ln.Close()
			logger.Error("cannot listen on the debug address", "addr", f.debugAddr, "err", err)
			return exitUnavailable
		}
		defer debugLn.Close()
	}
	mx := metrics.New()
	if err := metrics.BridgeGoMetrics(mx.Registry()); err != nil {
		logger.Warn("raft's own metrics will be missing", "err", err)
	}
	hub := watch.New(watch.Config{History: f.watchHistory, HistoryBytes: f.watchHistoryBytes})
	st, err := store.Open(store.Config{
		NodeID:               f.id,
		DataDir:              f.dataDir,
		RaftAddr:             f.raftAddr,
		RaftAdvertise:        f.advertiseRaft,
		GossipAddr:           f.gossipAddr,
		GossipAdvertise:      f.advertiseGoss,
		HTTPAdvertise:        advertisedHTTP(&f),
		Join:                 join,
		BootstrapExpect:      f.bootstrapExpect,
		LeaveOnTerminate:     f.leaveOnTerminate,
		SnapshotThreshold:    f.snapshotThreshold,
		SnapshotInterval:     f.snapshotInterval,
		TrailingLogs:         f.trailingLogs,
		SnapshotBytes:        f.snapshotBytes,
		TrailingBytes:        f.trailingBytes,
		LogCacheBytes:        f.logCacheBytes,
		RequestTimeout:       f.requestTimeout,
		MaxValueSize:         f.maxValueSize,
		MaxSessions:          f.maxSessions,
		DedupWindow:          f.dedupWindow,
		DedupMaxKeys:         f.dedupMaxKeys,
		DiskStallTimeout:     f.diskStallTimeout,
		CorruptCheckInterval: f.corruptCheckInterval,
		PeerTLS:              peerTLS,
		GossipKeys:           gossipKeys,
		GossipPlaintextIn:    !f.tls.gossipVerifyIncoming,
		GossipPlaintextOut:   !f.tls.gossipVerifyOut,
		Logger:               logger,
		Observer:             mx,
		Changes:              hub,
	})
	if err != nil {
		ln.Close()
		logger.Error("cannot start the node", "err", err)
		fmt.Fprintf(stderr, "raftkv: %v\n", err)
		if errors.Is(err, store.ErrDataDir) {
			return exitNodeFailed
		}
		return exitUnavailable
	}

	if exposed := exposures(&f, apiTLS != nil, peerTLS != nil, st.GossipEncrypted()); len(exposed) > 0 {
		logger.Warn("this node listens beyond loopback without transport security; see docs/security.md",
			"exposed", strings.Join(exposed, "; "))
	}
	mx.Watch(st)
	tlsPorts := map[string]metrics.TLSSource{}
	if apiTLS != nil {
		tlsPorts["api"] = apiTLS
	}
	if peerTLS != nil {
		tlsPorts["peer"] = peerTLS
	}
	mx.WatchTLS(tlsPorts)
	mx.WatchDisk(f.dataDir)
	if debugLn != nil {
		debugSrv := &http.Server{Handler: debugHandler(mx.Handler()), ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = debugSrv.Serve(debugLn) }()
		defer debugSrv.Close()
		logger.Info("serving debug endpoints (pprof, metrics)", "addr", debugLn.Addr().String())
	}
	httpLog := logger.With("component", "http")
	var console http.Handler
	if f.console {
		console = ui.Handler()
	}
	stopStreams := make(chan struct{})
	srv := newHTTPServer(httpapi.New(st, httpapi.Options{
		MaxValueSize:          f.maxValueSize,
		EnablePprof:           f.pprof,
		Metrics:               mx.Handler(),
		Console:               console,
		Observer:              mx,
		Watch:                 hub,
		Stop:                  stopStreams,
		MaxWatches:            f.maxWatches,
		WatchProgressInterval: f.watchProgress,
		MaxTxnOps:             f.maxTxnOps,
		ACLEnabled:            f.aclEnabled,
		Keyring:               st,
	}, httpLog), httpLimits{body: f.httpBodyTimeout, request: f.requestTimeout}, httpLog)
	// Shutdown waits for in-flight requests; watch streams and long-polls end when told.
	srv.RegisterOnShutdown(func() { close(stopStreams) })
	limited := netlimit.New(ln, f.httpMaxConns, func(remote net.Addr) {
		httpLog.Warn("HTTP connection refused: too many open connections", "remote", remote, "limit", f.httpMaxConns)
	})
	var apiLn net.Listener = limited
	scheme := "http"
	if apiTLS != nil {
		apiLn, scheme = tls.NewListener(limited, tlsutil.APIServerConfig(apiTLS)), "https"
	}
	reloadCtx, stopReload := context.WithCancel(context.Background())
	defer stopReload()
	reloadTLS(reloadCtx, nonNil(apiTLS, peerTLS), f.tls.reloadInterval, logger.With("component", "tls"))
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(apiLn) }()
	if f.console {
		logger.Info("serving HTTP API and the web console", "addr", ln.Addr().String(), "scheme", scheme,
			"client_certs", apiTLS != nil && apiTLS.Pool() != nil, "console", scheme+"://"+ln.Addr().String()+ui.Prefix)
	} else {
		logger.Info("serving HTTP API", "addr", ln.Addr().String(), "scheme", scheme, "client_certs", apiTLS != nil && apiTLS.Pool() != nil)
	}

	exit := exitOK
	select {
	case <-ctx.Done():
		logger.Info("stopping: finishing in-flight requests")
	case err := <-serveErr:
		logger.Error("HTTP server failed", "err", err)
		exit = exitUnavailable
	case <-st.Failed():
		logger.Error("stopping: the node cannot serve", "err", st.Failure())
		fmt.Fprintf(stderr, "raftkv: %v\n", st.Failure())
		exit = exitNodeFailed
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), f.shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		logger.Warn("in-flight requests did not finish in time", "err", err)
	}
	if err := st.Close(); err != nil {
		logger.Error("closing the store", "err", err)
		exit = exitUnavailable
	}
	return exit
}

// debugHandler serves Go's profiles and the metrics on the debug address, which is loopback unless the
// operator says otherwise: profiles show the process's internals and cost CPU while they run.
func debugHandler(metricsHandler http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index) // also the named profiles (heap, goroutine, ...)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.Handle("/metrics", metricsHandler)
	return mux
}
