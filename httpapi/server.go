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

	"github.com/raftkv/raftkv/acl"
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

	// ACL is the node's applied ACL state, which every decision reads; ApplyACL replicates a change
	// and returns its write index, or the state's refusal wrapping an acl sentinel.
	ACL() *acl.Live
	ApplyACL(ctx context.Context, c acl.Command) (uint64, error)
	// ACLResetRequested: the node's data dir holds a bootstrap reset file for its ACL state;
	// ACLResetDone removes it (store/aclreset.go).
	ACLResetRequested() (bool, error)
	ACLResetDone() error
}

// Path prefixes of the routes that carry a parameter in the path.
const (
	kvPrefix          = "/v1/kv/"
	membersPrefix     = "/v1/cluster/members/"
	pprofPrefix       = "/debug/pprof/"
	consolePrefix     = "/ui/"
	aclTokensPrefix   = "/v1/acl/tokens/"
	aclPoliciesPrefix = "/v1/acl/policies/"
)

// Allow header values, one per route shape.
const (
	allowGet      = "GET, HEAD"
	allowPost     = "POST"
	allowDelete   = "DELETE"
	allowKey      = "GET, HEAD, PUT, DELETE"
	allowSnapshot = "GET, PUT"
	allowList     = "GET, HEAD, POST"
	allowItem     = "GET, HEAD, DELETE"
)

// headerToken is the alternative to "Authorization: Bearer" for a token.
const headerToken = "X-Raftkv-Token"

type server struct {
	store   Store
	opts    Options
	watches atomic.Int64 // streams being served
	log     *slog.Logger
	pprof   http.Handler // nil unless Options.EnablePprof
	// crossOrigin refuses state-changing requests a browser sends on behalf of another site (CSRF): see
	// docs/security.md. Clients that are not browsers send neither Sec-Fetch-Site nor Origin and pass.
	crossOrigin http.CrossOriginProtection
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
			s.opts.Observer.ObserveRequest(s.routeName(r.URL.EscapedPath()), r.Method, sw.statusCode(), time.Since(start))
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

// match finds the route of an escaped path, and the rest of the path after a route's prefix (a key, a
// member id, ...). It is a switch rather than an http.ServeMux on purpose: ServeMux cleans paths and
// answers keys such as "a//b", "./a" or "a/.." with a redirect to a *different* key (a client that
// follows a 307 on PUT writes the wrong key), and its 405s are plain text. Keys are taken verbatim from
// the path after /v1/kv/, percent-decoded (so "a/b" and "a%2Fb" are the same key), with no cleaning.
func (s *server) match(path string) (routeID, string) {
	switch {
	case strings.HasPrefix(path, kvPrefix):
		return routeKey, path[len(kvPrefix):]
	case strings.HasPrefix(path, membersPrefix) && !strings.Contains(path[len(membersPrefix):], "/"):
		return routeMember, path[len(membersPrefix):]
	case strings.HasPrefix(path, sessionPrefix):
		return routeSession, path[len(sessionPrefix):] // routeSession sorts out {id} and {id}/renew
	case strings.HasPrefix(path, aclTokensPrefix) && !strings.Contains(path[len(aclTokensPrefix):], "/"):
		return routeACLToken, path[len(aclTokensPrefix):]
	case strings.HasPrefix(path, aclPoliciesPrefix) && !strings.Contains(path[len(aclPoliciesPrefix):], "/"):
		return routeACLPolicy, path[len(aclPoliciesPrefix):]
	case s.pprof != nil && strings.HasPrefix(path, pprofPrefix):
		return routePprof, ""
	case s.opts.Console != nil && (strings.HasPrefix(path, consolePrefix) || path == "/ui"):
		return routeConsole, ""
	}
	switch path {
	case "/v1/kv":
		return routeList, ""
	case "/v1/txn":
		return routeTxn, ""
	case "/v1/session":
		return routeSessionCreate, ""
	case "/v1/sessions":
		return routeSessions, ""
	case "/v1/watch":
		return routeWatch, ""
	case "/v1/cluster":
		return routeStatus, ""
	case "/v1/cluster/join":
		return routeJoin, ""
	case "/v1/cluster/leave":
		return routeLeave, ""
	case "/healthz":
		return routeHealthz, ""
	case "/readyz":
		return routeReadyz, ""
	case "/v1/snapshot":
		return routeSnapshot, ""
	case "/v1/cluster/health":
		return routeHealth, ""
	case "/v1/operator/keyring":
		if s.opts.Keyring != nil {
			return routeKeyring, ""
		}
	case "/v1/acl/bootstrap":
		return routeACLBootstrap, ""
	case "/v1/acl/tokens":
		return routeACLTokens, ""
	case "/v1/acl/token/self":
		return routeACLSelf, ""
	case "/v1/acl/policies":
		return routeACLPolicies, ""
	case "/metrics":
		if s.opts.Metrics != nil {
			return routeMetrics, ""
		}
	case "/":
		if s.opts.Console != nil {
			return routeRoot, ""
		}
	}
	return routeNotFound, ""
}

// route matches the request, passes it through the choke point (authorize) when ACLs are on, and
// dispatches it to its handler on the method. Audited routes get their audit line once answered.
func (s *server) route(w http.ResponseWriter, r *http.Request) {
	id, rest := s.match(r.URL.EscapedPath())
	if err := s.crossOrigin.Check(r); err != nil {
		s.writeError(w, r, &apiError{http.StatusForbidden, codeCrossOrigin,
			"cross-origin request refused: a browser page from another site may not change this cluster (" + err.Error() + ")"})
		return
	}
	if s.opts.ACLEnabled {
		var ok bool
		if r, ok = s.authorize(w, r, id, rest); !ok {
			return
		}
	}
	if spec := &routes[id]; spec.audit {
		sw := &statusWriter{ResponseWriter: w}
		defer func() { s.audit(r, spec, "", sw.statusCode(), nil) }()
		w = sw
	}
	s.dispatch(w, r, id, rest)
}

func (s *server) dispatch(w http.ResponseWriter, r *http.Request, id routeID, rest string) {
	switch id {
	case routeKey:
		switch r.Method {
		case http.MethodGet, http.MethodHead:
			s.handleGet(w, r, rest)
		case http.MethodPut:
			s.handlePut(w, r, rest)
		case http.MethodDelete:
			s.handleDelete(w, r, rest)
		default:
			s.methodNotAllowed(w, r, allowKey)
		}
	case routeList:
		if s.allowed(w, r, allowGet) {
			s.handleList(w, r)
		}
	case routeTxn:
		if s.allowed(w, r, allowPost) {
			s.handleTxn(w, r)
		}
	case routeSessionCreate:
		if s.allowed(w, r, allowPost) {
			s.handleCreateSession(w, r)
		}
	case routeSessions:
		if s.allowed(w, r, allowGet) {
			s.handleListSessions(w, r)
		}
	case routeSession:
		s.routeSession(w, r, rest)
	case routeWatch:
		if s.allowed(w, r, allowGet) {
			s.handleWatch(w, r)
		}
	case routeStatus:
		if s.allowed(w, r, allowGet) {
			s.handleStatus(w, r)
		}
	case routeJoin:
		if s.allowed(w, r, allowPost) {
			s.handleJoin(w, r)
		}
	case routeLeave:
		if s.allowed(w, r, allowPost) {
			s.handleLeave(w, r)
		}
	case routeMember:
		if s.allowed(w, r, allowDelete) {
			s.handleRemoveMember(w, r, rest)
		}
	case routeHealthz:
		if s.allowed(w, r, allowGet) {
			writeJSON(w, http.StatusOK, healthOK)
		}
	case routeReadyz:
		if s.allowed(w, r, allowGet) {
			s.handleReady(w, r)
		}
	case routeSnapshot:
		switch r.Method {
		case http.MethodGet:
			s.handleBackup(w, r)
		case http.MethodPut:
			s.handleRestore(w, r)
		default:
			s.methodNotAllowed(w, r, allowSnapshot)
		}
	case routeKeyring:
		switch r.Method {
		case http.MethodGet, http.MethodPost:
			s.handleKeyring(w, r)
		default:
			s.methodNotAllowed(w, r, "GET, POST")
		}
	case routeHealth:
		if s.allowed(w, r, allowGet) {
			s.handleHealth(w, r)
		}
	case routeMetrics:
		if s.allowed(w, r, allowGet) {
			s.opts.Metrics.ServeHTTP(w, r)
		}
	case routePprof:
		s.pprof.ServeHTTP(w, r)
	case routeConsole:
		s.opts.Console.ServeHTTP(w, r)
	case routeRoot:
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			http.Redirect(w, r, consolePrefix, http.StatusFound) // a browser pointed at a node finds the console
			return
		}
		s.notFound(w, r)
	case routeACLBootstrap:
		if s.allowed(w, r, allowPost) {
			s.handleACLBootstrap(w, r)
		}
	case routeACLTokens:
		if s.allowed(w, r, allowList) {
			s.handleACLTokens(w, r)
		}
	case routeACLToken:
		if s.allowed(w, r, allowItem) {
			s.handleACLToken(w, r, rest)
		}
	case routeACLSelf:
		if s.allowed(w, r, allowGet) {
			s.handleACLSelf(w, r)
		}
	case routeACLPolicies:
		if s.allowed(w, r, allowList) {
			s.handleACLPolicies(w, r)
		}
	case routeACLPolicy:
		if s.allowed(w, r, allowItem) {
			s.handleACLPolicy(w, r, rest)
		}
	default:
		s.notFound(w, r)
	}
}

func (s *server) notFound(w http.ResponseWriter, r *http.Request) {
	s.writeError(w, r, &apiError{http.StatusNotFound, codeNotFound, "no such endpoint: " + r.URL.Path})
}

// routeName is the route pattern of path, for metrics: a fixed set of names, whatever the path.
func (s *server) routeName(path string) string {
	id, _ := s.match(path)
	return routes[id].name
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
