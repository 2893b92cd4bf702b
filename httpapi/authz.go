package httpapi

import (
	"context"
	"log/slog"
	"net/http"
	"slices"
	"strings"

	"github.com/raftkv/raftkv/acl"
	"github.com/raftkv/raftkv/fsm"
)

// routeID names a route. Every route is in routes, and routes says for each what a request must be
// allowed to do: the table is the choke point's input, and TestEveryRouteHasADecision fails for a route
// added without one.
type routeID int

const (
	routeNotFound routeID = iota
	routeKey
	routeList
	routeTxn
	routeWatch
	routeStatus
	routeJoin
	routeLeave
	routeMember
	routeHealthz
	routeReadyz
	routeSnapshot
	routeHealth
	routeMetrics
	routePprof
	routeConsole
	routeRoot
	routeACLBootstrap
	routeACLTokens
	routeACLToken
	routeACLSelf
	routeACLPolicies
	routeACLPolicy
	routeSessionCreate
	routeSessions
	routeSession
	routeKeyring
	numRoutes
)

// reducer turns a request into what it must be allowed to do. rest is the path after the route's
// prefix (a key, a member id, an accessor id, a policy name), still escaped. An error is the request's
// own fault (a bad key): it is answered as such, after authentication.
type reducer func(s *server, r *http.Request, rest string) ([]acl.Need, error)

// routeSpec is one route's name (for metrics) and its authorization: open, or needs and/or inHandler.
type routeSpec struct {
	name string
	// open: served without a token even with ACLs on. Only routes that reveal nothing (probes, the
	// console's static files, 404s) and bootstrap (which works once per cluster) are.
	open bool
	// needs reduces the request before its handler runs.
	needs reducer
	// inHandler: (more) needs depend on the body or the state (a transaction's ops, a session's keys), so
	// the handler computes them and calls s.authorizeBody before doing anything. The token, and needs
	// if set, are still checked up front.
	inHandler bool
	// audit: membership, ACL and snapshot operations get an audit line (who, what, result).
	audit bool
}

var (
	clusterRead  = []acl.Need{{Resource: acl.ResourceCluster, Access: acl.AccessRead}}
	clusterWrite = []acl.Need{{Resource: acl.ResourceCluster, Access: acl.AccessWrite}}
	aclRead      = []acl.Need{{Resource: acl.ResourceACL, Access: acl.AccessRead}}
	aclWrite     = []acl.Need{{Resource: acl.ResourceACL, Access: acl.AccessWrite}}
	sessionRead  = []acl.Need{{Resource: acl.ResourceSession, Access: acl.AccessRead}}
	sessionWrite = []acl.Need{{Resource: acl.ResourceSession, Access: acl.AccessWrite}}
)

func fixed(needs []acl.Need) reducer {
	return func(*server, *http.Request, string) ([]acl.Need, error) { return needs, nil }
}

// byMethod picks needs by method: read for GET and HEAD, write for the rest. A method the route does
// not serve needs the write set too, so an unauthorized client learns nothing from a 405.
func byMethod(read, write []acl.Need) reducer {
	return func(_ *server, r *http.Request, _ string) ([]acl.Need, error) {
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			return read, nil
		}
		return write, nil
	}
}

// routes is the table of every route: see routeSpec. It is an array indexed by routeID, so a missing
// entry is a zero routeSpec (no decision), which the choke point refuses and the table test reports.
// It is read-only after package initialization.
var routes = [numRoutes]routeSpec{
	routeNotFound: {name: "other", open: true},
	routeKey:      {name: kvPrefix + "{key}", needs: keyNeeds},
	routeList:     {name: "/v1/kv", needs: listNeeds},
	routeTxn:      {name: "/v1/txn", inHandler: true},
	routeWatch:    {name: "/v1/watch", needs: watchNeeds},
	routeStatus:   {name: "/v1/cluster", needs: fixed(clusterRead)},
	routeJoin:     {name: "/v1/cluster/join", needs: fixed(clusterWrite), audit: true},
	routeLeave:    {name: "/v1/cluster/leave", needs: fixed(clusterWrite), audit: true},
	routeMember:   {name: membersPrefix + "{id}", needs: fixed(clusterWrite), audit: true},
	routeHealthz:  {name: "/healthz", open: true},
	routeReadyz:   {name: "/readyz", open: true},
	// A backup holds every key; a restore replaces every key on every node.
	routeSnapshot: {name: "/v1/snapshot", needs: byMethod(
		[]acl.Need{{Resource: acl.ResourcePrefix, Key: "", Access: acl.AccessList}},
		[]acl.Need{{Resource: acl.ResourcePrefix, Key: "", Access: acl.AccessWrite}, clusterWrite[0]}), audit: true},
	routeHealth:  {name: "/v1/cluster/health", needs: fixed(clusterRead)},
	routeMetrics: {name: "/metrics", needs: fixed(clusterRead)},
	// Profiles (a heap profile holds values) are for whoever may do everything.
	routePprof:         {name: pprofPrefix, needs: fixed(slices.Concat(aclWrite, []acl.Need{{Resource: acl.ResourcePrefix, Access: acl.AccessWrite}}))},
	routeConsole:       {name: consolePrefix, open: true}, // static files; the console's API calls carry their own token
	routeRoot:          {name: "/", open: true},           // a redirect to the console
	routeACLBootstrap:  {name: "/v1/acl/bootstrap", open: true, audit: true},
	routeACLTokens:     {name: "/v1/acl/tokens", needs: byMethod(aclRead, aclWrite), audit: true},
	routeACLToken:      {name: aclTokensPrefix + "{accessor}", needs: byMethod(aclRead, aclWrite), audit: true},
	routeACLSelf:       {name: "/v1/acl/token/self", needs: fixed(nil)}, // any valid token may read itself
	routeACLPolicies:   {name: "/v1/acl/policies", needs: byMethod(aclRead, aclWrite), audit: true},
	routeACLPolicy:     {name: aclPoliciesPrefix + "{name}", needs: byMethod(aclRead, aclWrite), audit: true},
	routeSessionCreate: {name: "/v1/session", needs: fixed(sessionWrite)},
	routeSessions:      {name: "/v1/sessions", needs: fixed(sessionRead)}, // ids, names, key counts: no key names
	// Reading a session lists the keys it holds, and destroying one deletes or releases them: the
	// handler decides those keys too, read or write (etcd's CVE-2023-32082 and GHSA-q8m4-xhhv-38mg:
	// a lease listed keys the caller could not read, and its revoke deleted keys the caller could not
	// write). Renew needs session write only.
	routeSession: {name: sessionPrefix + "{id}", needs: byMethod(sessionRead, sessionWrite), inHandler: true},
	// Listing shows the gossip keys themselves; changing them can cut members off: operators only.
	routeKeyring: {name: "/v1/operator/keyring", needs: fixed(clusterWrite), audit: true},
}

// keyNeeds: GET and HEAD (also as a long-poll on the key) read it; PUT and DELETE write it.
func keyNeeds(s *server, r *http.Request, rest string) ([]acl.Need, error) {
	key, err := s.keyFromPath(rest)
	if err != nil {
		return nil, err
	}
	access := acl.AccessWrite
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		access = acl.AccessRead
	}
	return []acl.Need{{Resource: acl.ResourceKey, Key: key, Access: access}}, nil
}

// listNeeds: a list (also as a long-poll) enumerates the whole prefix, whatever after= and limit= say:
// the range must be covered as a whole (see acl.Authorizer), never filtered.
func listNeeds(s *server, r *http.Request, _ string) ([]acl.Need, error) {
	p, err := s.parseListParams(r.URL.RawQuery)
	if err != nil {
		return nil, err
	}
	return []acl.Need{{Resource: acl.ResourcePrefix, Key: p.prefix, Access: acl.AccessList}}, nil
}

// watchNeeds: a watch on one key reads it; on a prefix, lists the whole range (etcd's
// GHSA-xg4h-6gfc-h4m8 checked a watch's key and not its range end).
func watchNeeds(s *server, r *http.Request, _ string) ([]acl.Need, error) {
	p, err := s.parseWatchParams(r)
	if err != nil {
		return nil, err
	}
	if p.filter.IsPrefix {
		return []acl.Need{{Resource: acl.ResourcePrefix, Key: p.filter.Prefix, Access: acl.AccessList}}, nil
	}
	return []acl.Need{{Resource: acl.ResourceKey, Key: p.filter.Key, Access: acl.AccessRead}}, nil
}

// keyNeeds is access on each of keys.
func keysNeeds(keys []string, access acl.Access) []acl.Need {
	needs := make([]acl.Need, len(keys))
	for i, k := range keys {
		needs[i] = acl.Need{Resource: acl.ResourceKey, Key: k, Access: access}
	}
	return needs
}

// txnNeeds is a transaction's needs: every compare and every op of *both* branches, whichever runs.
// A compare reads (a count compare enumerates its prefix); so does a get or list op; put, delete and
// delete_prefix write. Checking the branch that will run would leak, through which one did, what the
// compares saw.
func txnNeeds(t *fsm.Txn) []acl.Need {
	needs := make([]acl.Need, 0, len(t.Compare)+len(t.Success)+len(t.Failure))
	for _, c := range t.Compare {
		if c.Target == fsm.TargetCount {
			needs = append(needs, acl.Need{Resource: acl.ResourcePrefix, Key: c.Key, Access: acl.AccessList})
		} else {
			needs = append(needs, acl.Need{Resource: acl.ResourceKey, Key: c.Key, Access: acl.AccessRead})
		}
	}
	for _, ops := range [][]fsm.TxnOp{t.Success, t.Failure} {
		for _, op := range ops {
			n := acl.Need{Resource: acl.ResourceKey, Key: op.Key}
			switch op.Kind {
			case fsm.TxnPut, fsm.TxnDelete:
				n.Access = acl.AccessWrite
			case fsm.TxnDeletePrefix:
				n.Resource, n.Access = acl.ResourcePrefix, acl.AccessWrite
			case fsm.TxnGet:
				n.Access = acl.AccessRead
			case fsm.TxnList:
				n.Resource, n.Access = acl.ResourcePrefix, acl.AccessList
			default:
				n.Resource, n.Access = acl.ResourcePrefix, acl.AccessWrite // unknown: ask for the most
			}
			needs = append(needs, n)
		}
	}
	return needs
}

// authzKey carries a request's decision in its context, for the checks after the handler starts: a
// transaction's body, a long-poll's answer, a watch after a policy change.
type authzKey struct{}

type decision struct {
	secret string
	state  *acl.State // the ACL state the decision was made on
	authz  *acl.Authorizer
	needs  []acl.Need
}

// authorize is the choke point: with ACLs on, every request passes here before its handler. It answers
// 401 (no or unknown token) or 403 (a need not allowed) itself and returns false; otherwise it returns
// the request carrying its decision. The decision uses this node's applied ACL state, on the node that
// received the request, before anything is forwarded: forwarded writes and read-index calls between
// nodes carry no token (the node port is trusted; see docs/security.md).
func (s *server) authorize(w http.ResponseWriter, r *http.Request, id routeID, rest string) (*http.Request, bool) {
	spec := &routes[id]
	if spec.open {
		return r, true
	}
	st := s.store.ACL().Load()
	secret := acl.SecretFromHeader(r.Header.Get("Authorization"), r.Header.Get(headerToken))
	az, err := st.Resolve(secret)
	if err != nil {
		s.deny(w, r, spec, "", err, codeUnauthenticated)
		return r, false
	}
	var needs []acl.Need
	switch {
	case spec.needs != nil:
		if needs, err = spec.needs(s, r, rest); err != nil {
			s.writeError(w, r, err) // the request's own fault, told only to an authenticated client
			return r, false
		}
	case spec.inHandler:
	default: // fail closed: a route without a decision serves nobody
		s.deny(w, r, spec, az.Accessor(), &apiError{http.StatusForbidden, codePermissionDenied, "no authorization rule for " + r.URL.Path}, codePermissionDenied)
		return r, false
	}
	if n, ok := az.AllowedAll(needs); !ok {
		s.deny(w, r, spec, az.Accessor(), needError(n), codePermissionDenied)
		return r, false
	}
	if !spec.keepDecision(r) {
		return r, true // nothing after the handler starts asks again: skip the request copy
	}
	d := &decision{secret: secret, state: st, authz: az, needs: needs}
	return r.WithContext(context.WithValue(r.Context(), authzKey{}, d)), true
}

// keepDecision reports whether anything after the choke point needs the decision: a transaction's body
// check, a watch or long-poll deciding again, the audit line's accessor, token/self. A plain get or put
// does not, and is spared the context and request copies (about 0.4 µs and 3 allocations).
func (spec *routeSpec) keepDecision(r *http.Request) bool {
	switch spec {
	case &routes[routeKey], &routes[routeList]:
		return strings.Contains(r.URL.RawQuery, "index=") // a long-poll (or min_index=: harmless)
	}
	return true
}

// authorizeBody is the second half of the choke point for a route whose needs come from its body. It
// returns nil when ACLs are off or every need is allowed; the whole request is refused otherwise, so
// one forbidden op refuses a transaction before any of it runs.
func (s *server) authorizeBody(r *http.Request, needs []acl.Need) error {
	if !s.opts.ACLEnabled {
		return nil
	}
	d, _ := r.Context().Value(authzKey{}).(*decision)
	if d == nil {
		return &apiError{http.StatusForbidden, codePermissionDenied, "no authorization decision for this request"}
	}
	if n, ok := d.authz.AllowedAll(needs); !ok {
		s.observeDenial(codePermissionDenied)
		return needError(n)
	}
	d.needs = slices.Concat(d.needs, needs) // d.needs may be a route's shared slice: never append in place
	return nil
}

// recheck decides again on the node's current ACL state, for a request that waited (a long-poll, a
// watch): a token deleted or a policy changed meanwhile must not see what it no longer may. It returns
// the state it decided on (to wait for its next change) and nil, or the refusal.
func (s *server) recheck(ctx context.Context) (*acl.State, error) {
	d, _ := ctx.Value(authzKey{}).(*decision)
	if d == nil {
		return nil, nil // ACLs off
	}
	st := s.store.ACL().Load()
	if st == d.state {
		return st, nil
	}
	az, err := st.Resolve(d.secret)
	if err != nil {
		s.observeDenial(codeUnauthenticated)
		return st, err
	}
	if n, ok := az.AllowedAll(d.needs); !ok {
		s.observeDenial(codePermissionDenied)
		return st, needError(n)
	}
	return st, nil
}

func needError(n acl.Need) error {
	what := n.Resource.String()
	switch n.Resource {
	case acl.ResourceKey, acl.ResourcePrefix:
		what += " " + quoteForMessage(n.Key)
	}
	return &apiError{http.StatusForbidden, codePermissionDenied, "permission denied: " + n.Access.String() + " on " + what}
}

func quoteForMessage(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, c := range s {
		if c < 0x20 || c == '"' || c == '\\' {
			b.WriteByte('?')
			continue
		}
		b.WriteRune(c)
	}
	b.WriteByte('"')
	return b.String()
}

// deny answers a refusal from the choke point, counts it, and writes the audit line for audited routes.
func (s *server) deny(w http.ResponseWriter, r *http.Request, spec *routeSpec, accessor string, err error, code string) {
	if code == codeUnauthenticated {
		err = &apiError{http.StatusUnauthorized, codeUnauthenticated, err.Error()}
		w.Header().Set("WWW-Authenticate", `Bearer realm="raftkv"`)
	}
	s.observeDenial(code)
	if spec.audit {
		s.audit(r, spec, accessor, statusOf(err), err)
	}
	s.writeError(w, r, err)
}

func statusOf(err error) int {
	status, _ := classify(err)
	return status
}

func (s *server) observeDenial(code string) {
	if o, ok := s.opts.Observer.(ACLObserver); ok {
		o.ObserveACLDenial(code)
	}
}

// ACLObserver counts ACL refusals by code (unauthenticated, permission_denied); metrics.Node implements it.
type ACLObserver interface {
	ObserveACLDenial(code string)
}

// audit writes the audit line of a membership, ACL or snapshot operation: who (the token's accessor id,
// never its secret; "anonymous" without ACLs), what (method and route, and the path's target), result.
func (s *server) audit(r *http.Request, spec *routeSpec, accessor string, status int, err error) {
	if accessor == "" {
		if d, _ := r.Context().Value(authzKey{}).(*decision); d != nil {
			accessor = d.authz.Accessor()
		} else {
			accessor = "anonymous"
		}
	}
	attrs := []slog.Attr{
		slog.String("accessor", accessor),
		slog.String("method", r.Method),
		slog.String("route", spec.name),
		slog.String("path", r.URL.Path),
		slog.String("remote", r.RemoteAddr),
		slog.Int("status", status),
		slog.Bool("allowed", status < 400),
	}
	if err != nil {
		attrs = append(attrs, slog.String("error", err.Error()))
	}
	s.log.LogAttrs(r.Context(), slog.LevelInfo, "audit", attrs...)
}
