package httpapi

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"time"

	"github.com/raftkv/raftkv/fsm"
	"github.com/raftkv/raftkv/store"
)

// Store is what the API needs from a node; *store.Store satisfies it. Contract details the handlers rely on:
//
//   - ctx is the request's context: it is cancelled when the client goes away. httpapi adds no deadline of
//     its own, so the store bounds its waits (and reports ErrNoLeader / ErrTimeout / ErrIndeterminate).
//   - Errors wrap the store sentinels with %w; see errorTable for how each becomes a status code.
//   - Put takes ownership of value: httpapi allocates it per request and never touches it again.
//     Values returned by Get and List are only read.
//   - GetAt returns an error wrapping store.ErrNotFound when the key is absent.
//   - ListAt returns up to limit entries whose keys start with prefix and sort strictly after after
//     (after == "" means from the start), in key order; more reports whether further keys with the prefix
//     remain after the last entry returned (so more implies a non-empty page).
//   - WaitIndex returns nil once the node has applied every write up to index, or an error wrapping
//     store.ErrTimeout when it cannot within its bounded wait.
//   - Ready returns nil when ready, otherwise an error wrapping store.ErrNotReady whose message says why.
type Store interface {
	Put(ctx context.Context, key string, value []byte, pre store.Precondition) (index uint64, err error)
	Delete(ctx context.Context, key string, pre store.Precondition) (index uint64, deleted bool, err error)
	// GetAt and ListAt also return the write index the answer reflects (GetAt also with ErrNotFound).
	GetAt(ctx context.Context, key string, c store.Consistency) (e store.Entry, index uint64, err error)
	ListAt(ctx context.Context, prefix, after string, limit int, c store.Consistency) (entries []store.Entry, more bool, index uint64, err error)
	StaleInfo() store.StaleInfo
	WaitIndex(ctx context.Context, index uint64) error
	Status(ctx context.Context) (store.Status, error)
	Join(ctx context.Context, addrs []string) error
	Leave(ctx context.Context, force bool) error
	RemoveMember(ctx context.Context, id string, force bool) error
	Ready() error
	// Health asks every server for its state; it answers even without a leader.
	Health(ctx context.Context) (store.Health, error)
	// Backup captures a consistent state; its Write streams the archive. Restore must run on the leader
	// (store.ErrNotLeader) and refuses a bad archive with store.ErrInvalidArchive, changing nothing.
	Backup(ctx context.Context) (*store.Backup, error)
	Restore(ctx context.Context, r io.Reader) (store.RestoreResult, error)
	// ReadIndex returns a write index every write acknowledged before the call is at or below, once this
	// node has applied it (the index a linearizable read would reflect): where a watch "from now" starts.
	ReadIndex(ctx context.Context) (uint64, error)
	// Txn runs a transaction; see store.Store.Txn. The index is the transaction's write index, or for a
	// transaction without writes the index of the view it read.
	Txn(ctx context.Context, t *fsm.Txn, c store.Consistency) (*fsm.TxnResult, uint64, error)

	// Sessions (store/session.go). An unknown or ended session is store.ErrSessionNotFound; a key held by
	// another session (or in its lock delay) on PutOwned is store.ErrKeyHeld.
	CreateSession(ctx context.Context, o store.SessionOptions) (store.Session, error)
	RenewSession(ctx context.Context, id string) (time.Duration, error)
	DestroySession(ctx context.Context, id string) (uint64, error)
	GetSession(ctx context.Context, id string, c store.Consistency) (store.Session, uint64, error)
	Sessions(ctx context.Context, c store.Consistency) ([]store.Session, uint64, error)
	PutOwned(ctx context.Context, key string, value []byte, id string) (uint64, error)
	Acquire(ctx context.Context, key string, value []byte, id string) (store.LockOutcome, error)
	Release(ctx context.Context, key string, value []byte, id string) (store.LockOutcome, error)
}

// Path prefixes of the routes that carry a parameter in the path.
const (
	kvPrefix      = "/v1/kv/"
	membersPrefix = "/v1/cluster/members/"
	pprofPrefix   = "/debug/pprof/"
	consolePrefix = "/ui/"
)

// Allow header values, one per route shape.
const (
	allowGet      = "GET, HEAD"
	allowPost     = "POST"
	allowDelete   = "DELETE"
	allowKey      = "GET, HEAD, PUT, DELETE"
	allowSnapshot = "GET, PUT"
)

type server struct {
	store   Store
	opts    Options
	watches atomic.Int64 // streams being served
	log     *slog.Logger
	pprof   http.Handler // nil unless Options.EnablePprof
}

// New returns the API handler: routes, request logging at debug level, and a recover guard.
// A nil logger discards logs.
func New(s Store, opts Options, logger *slog.Logger) http.Handler {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	srv := &server{store: s, opts: opts.withDefaults(), log: logger}
	if srv.opts.EnablePprof {
		mux := http.NewServeMux()
		mux.HandleFunc(pprofPrefix, pprof.Index) // also serves the named profiles (heap, goroutine, ...)
		mux.HandleFunc(pprofPrefix+"cmdline", pprof.Cmdline)
		mux.HandleFunc(pprofPrefix+"profile", pprof.Profile)
		mux.HandleFunc(pprofPrefix+"symbol", pprof.Symbol)
		mux.HandleFunc(pprofPrefix+"trace", pprof.Trace)
		srv.pprof = mux
	}
	return srv
}

// ServeHTTP logs the request at debug level and turns a panic into a 500, then routes.
// The status-recording wrapper is only allocated when debug logging is on: this is the hot path.
func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var sw *statusWriter
	var start time.Time
	if s.opts.Observer != nil || s.log.Enabled(r.Context(), slog.LevelDebug) {
		start = time.Now()
		sw = &statusWriter{ResponseWriter: w}
		w = sw
	}
	defer func() {
		if v := recover(); v != nil {
			s.recovered(w, sw, r, v)
		}
		if s.opts.Observer != nil {
			s.opts.Observer.ObserveRequest(routeName(r.URL.EscapedPath()), r.Method, sw.statusCode(), time.Since(start))
		}
		if sw != nil && s.log.Enabled(r.Context(), slog.LevelDebug) {
			s.log.LogAttrs(r.Context(), slog.LevelDebug, "http request",
				slog.String("method", r.Method),
				slog.String("path", r.URL.Path),
				slog.Int("status", sw.statusCode()),
				slog.Duration("duration", time.Since(start)))
		}
	}()
	s.route(w, r)
}

// route dispatches on the escaped path and the method. It is a switch rather than an http.ServeMux on
// purpose: ServeMux cleans paths and answers keys such as "a//b", "./a" or "a/.." with a redirect to a
// *different* key (a client that follows a 307 on PUT writes the wrong key), and its 405s are plain text.
// Keys are taken verbatim from the path after /v1/kv/, percent-decoded (so "a/b" and "a%2Fb" are the same
// key), with no cleaning.
func (s *server) route(w http.ResponseWriter, r *http.Request) {
	path := r.URL.EscapedPath()
	switch {
	case strings.HasPrefix(path, kvPrefix):
		switch r.Method {
		case http.MethodGet, http.MethodHead:
			s.handleGet(w, r, path[len(kvPrefix):])
		case http.MethodPut:
			s.handlePut(w, r, path[len(kvPrefix):])
		case http.MethodDelete:
			s.handleDelete(w, r, path[len(kvPrefix):])
		default:
			s.methodNotAllowed(w, r, allowKey)
		}
	case path == "/v1/kv":
		if s.allowed(w, r, allowGet) {
			s.handleList(w, r)
		}
	case path == "/v1/txn":
		if s.allowed(w, r, allowPost) {
			s.handleTxn(w, r)
		}
	case path == "/v1/session":
		if s.allowed(w, r, allowPost) {
			s.handleCreateSession(w, r)
		}
	case path == "/v1/sessions":
		if s.allowed(w, r, allowGet) {
			s.handleListSessions(w, r)
		}
	case strings.HasPrefix(path, sessionPrefix):
		s.routeSession(w, r, path[len(sessionPrefix):])
	case path == "/v1/watch":
		if s.allowed(w, r, allowGet) {
			s.handleWatch(w, r)
		}
	case path == "/v1/cluster":
		if s.allowed(w, r, allowGet) {
			s.handleStatus(w, r)
		}
	case path == "/v1/cluster/join":
		if s.allowed(w, r, allowPost) {
			s.handleJoin(w, r)
		}
	case path == "/v1/cluster/leave":
		if s.allowed(w, r, allowPost) {
			s.handleLeave(w, r)
		}
	case strings.HasPrefix(path, membersPrefix) && !strings.Contains(path[len(membersPrefix):], "/"):
		if s.allowed(w, r, allowDelete) {
			s.handleRemoveMember(w, r, path[len(membersPrefix):])
		}
	case path == "/healthz":
		if s.allowed(w, r, allowGet) {
			writeJSON(w, http.StatusOK, healthOK)
		}
	case path == "/readyz":
		if s.allowed(w, r, allowGet) {
			s.handleReady(w, r)
		}
	case path == "/v1/snapshot":
		switch r.Method {
		case http.MethodGet:
			s.handleBackup(w, r)
		case http.MethodPut:
			s.handleRestore(w, r)
		default:
			s.methodNotAllowed(w, r, allowSnapshot)
		}
	case path == "/v1/cluster/health":
		if s.allowed(w, r, allowGet) {
			s.handleHealth(w, r)
		}
	case path == "/metrics" && s.opts.Metrics != nil:
		if s.allowed(w, r, allowGet) {
			s.opts.Metrics.ServeHTTP(w, r)
		}
	case s.pprof != nil && strings.HasPrefix(path, pprofPrefix):
		s.pprof.ServeHTTP(w, r)
	case s.opts.Console != nil && (strings.HasPrefix(path, consolePrefix) || path == "/ui"):
		s.opts.Console.ServeHTTP(w, r)
	case s.opts.Console != nil && path == "/" && (r.Method == http.MethodGet || r.Method == http.MethodHead):
		http.Redirect(w, r, consolePrefix, http.StatusFound) // a browser pointed at a node finds the console
	default:
		s.writeError(w, r, &apiError{http.StatusNotFound, codeNotFound, "no such endpoint: " + r.URL.Path})
	}
}

// routeName is the route pattern of path, for metrics: a fixed set of names, whatever the path.
func routeName(path string) string {
	switch {
	case strings.HasPrefix(path, kvPrefix):
		return kvPrefix + "{key}"
	case strings.HasPrefix(path, membersPrefix):
		return membersPrefix + "{id}"
	case strings.HasPrefix(path, sessionPrefix):
		if strings.HasSuffix(path, renewSuffix) {
			return sessionPrefix + "{id}" + renewSuffix
		}
		return sessionPrefix + "{id}"
	case strings.HasPrefix(path, pprofPrefix):
		return pprofPrefix
	case strings.HasPrefix(path, consolePrefix) || path == "/ui":
		return consolePrefix
	}
	switch path {
	case "/v1/kv", "/v1/watch", "/v1/txn", "/v1/session", "/v1/sessions", "/v1/cluster", "/v1/cluster/join", "/v1/cluster/leave", "/v1/cluster/health",
		"/v1/snapshot", "/healthz", "/readyz", "/metrics":
		return path
	}
	return "other"
}

// allowed reports whether r's method is listed in allow (a route's Allow header value), answering 405
// with that Allow header if not.
func (s *server) allowed(w http.ResponseWriter, r *http.Request, allow string) bool {
	for rest := allow; rest != ""; {
		var m string
		m, rest, _ = strings.Cut(rest, ", ")
		if m == r.Method {
			return true
		}
	}
	s.methodNotAllowed(w, r, allow)
	return false
}

func (s *server) methodNotAllowed(w http.ResponseWriter, r *http.Request, allow string) {
	w.Header().Set("Allow", allow)
	s.writeError(w, r, &apiError{http.StatusMethodNotAllowed, codeMethodNotAllowed,
		"method " + r.Method + " not allowed on " + r.URL.Path + "; allowed: " + allow})
}

// recovered is the defense-in-depth path: a handler bug must not kill the connection without an answer.
// sw is nil when debug logging is off; then we cannot tell whether headers went out and try anyway
// (net/http only logs a superfluous WriteHeader).
func (s *server) recovered(w http.ResponseWriter, sw *statusWriter, r *http.Request, v any) {
	if v == http.ErrAbortHandler {
		panic(v) // the documented way to abort a response; net/http handles it quietly
	}
	s.log.LogAttrs(r.Context(), slog.LevelError, "panic serving http request",
		slog.String("method", r.Method),
		slog.String("path", r.URL.Path),
		slog.Any("panic", v),
		slog.String("stack", string(debug.Stack())))
	if sw != nil && sw.status != 0 {
		return
	}
	writeErrorBody(w, http.StatusInternalServerError, codeInternal, "internal error", nil)
}

// statusWriter records the status for the request log.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer (flush, deadlines).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *statusWriter) statusCode() int {
	if w.status == 0 {
		return http.StatusOK // nothing written: net/http sends an empty 200
	}
	return w.status
}
