package httpapi

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/raftkv/raftkv/acl"
	"github.com/raftkv/raftkv/store"
)

// aclHarness is a harness with ACLs on, a management token, and helpers to make tokens with policies.
type aclHarness struct {
	*harness
	root string // management secret
}

func newACLHarness(t *testing.T, opts Options) *aclHarness {
	t.Helper()
	opts.ACLEnabled = true
	hs := newHarness(t, opts)
	rec := hs.do(t, http.MethodPost, "/v1/acl/bootstrap", nil)
	var tv tokenView
	requireJSON(t, rec, &tv)
	require.True(t, tv.Management)
	require.NotEmpty(t, tv.SecretID)
	return &aclHarness{harness: hs, root: tv.SecretID}
}

// token creates a policy with these rules (and cluster/acl access) and a token holding it.
func (a *aclHarness) token(t *testing.T, name string, p acl.Policy) string {
	t.Helper()
	p.Name = name
	b, err := json.Marshal(p)
	require.NoError(t, err)
	rec := a.as(t, a.root, http.MethodPost, "/v1/acl/policies", string(b))
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	rec = a.as(t, a.root, http.MethodPost, "/v1/acl/tokens", `{"policies":["`+name+`"]}`)
	var tv tokenView
	requireJSON(t, rec, &tv)
	return tv.SecretID
}

func (a *aclHarness) as(t *testing.T, secret, method, target, body string) *httptest.ResponseRecorder {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, target, r)
	if secret != "" {
		req.Header.Set("Authorization", "Bearer "+secret)
	}
	return a.serve(req)
}

func rules(rs ...any) []acl.KeyRule {
	var out []acl.KeyRule
	for i := 0; i < len(rs); i += 2 {
		out = append(out, acl.KeyRule{Prefix: rs[i].(string), Access: rs[i+1].(acl.Access)})
	}
	return out
}

// sampleRequests is one request per route. TestEveryRouteHasADecision requires one for every route, so
// a new route cannot be added without saying how it is decided and testing that it is.
var sampleRequests = map[routeID]struct{ method, path, body string }{
	routeNotFound:      {"GET", "/v1/nope", ""},
	routeKey:           {"GET", "/v1/kv/a", ""},
	routeList:          {"GET", "/v1/kv?prefix=a", ""},
	routeTxn:           {"POST", "/v1/txn", `{"success":[{"op":"get","key":"a"}]}`},
	routeWatch:         {"GET", "/v1/watch?prefix=a", ""},
	routeStatus:        {"GET", "/v1/cluster", ""},
	routeJoin:          {"POST", "/v1/cluster/join", `{"addr":"127.0.0.1:1"}`},
	routeLeave:         {"POST", "/v1/cluster/leave", ""},
	routeMember:        {"DELETE", "/v1/cluster/members/n3", ""},
	routeHealthz:       {"GET", "/healthz", ""},
	routeReadyz:        {"GET", "/readyz", ""},
	routeSnapshot:      {"GET", "/v1/snapshot", ""},
	routeHealth:        {"GET", "/v1/cluster/health", ""},
	routeMetrics:       {"GET", "/metrics", ""},
	routePprof:         {"GET", "/debug/pprof/cmdline", ""},
	routeConsole:       {"GET", "/ui/", ""},
	routeRoot:          {"GET", "/", ""},
	routeACLBootstrap:  {"POST", "/v1/acl/bootstrap", ""},
	routeACLTokens:     {"GET", "/v1/acl/tokens", ""},
	routeACLToken:      {"DELETE", "/v1/acl/tokens/x", ""},
	routeACLSelf:       {"GET", "/v1/acl/token/self", ""},
	routeACLPolicies:   {"POST", "/v1/acl/policies", `{"name":"z"}`},
	routeACLPolicy:     {"GET", "/v1/acl/policies/z", ""},
	routeSessionCreate: {"POST", "/v1/session", `{"ttl":"10s"}`},
	routeSessions:      {"GET", "/v1/sessions", ""},
	routeSession:       {"GET", "/v1/session/x", ""},
	routeKeyring:       {"GET", "/v1/operator/keyring", ""},
}

// openRoutes are the only routes served without a token.
var openRoutes = map[routeID]bool{routeNotFound: true, routeHealthz: true, routeReadyz: true,
	routeConsole: true, routeRoot: true, routeACLBootstrap: true}

func allOptions() Options {
	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	return Options{Console: ok, Metrics: ok, EnablePprof: true, Keyring: fakeKeyring{}}
}

func TestEveryRouteHasADecision(t *testing.T) {
	srv := New(newFakeStore(), allOptions(), nil).(*server)
	for id := routeID(0); id < numRoutes; id++ {
		spec := routes[id]
		assert.True(t, spec.open != (spec.needs != nil || spec.inHandler),
			"route %d (%q) must be open, or decided by needs and/or inHandler", id, spec.name)
		assert.NotEmpty(t, spec.name, "route %d has no name", id)
		assert.Equal(t, openRoutes[id], spec.open, "route %q: open routes are a fixed, reviewed list", spec.name)
		sample, ok := sampleRequests[id]
		require.True(t, ok, "route %q has no sample request in sampleRequests", spec.name)
		got, _ := srv.match(strings.SplitN(sample.path, "?", 2)[0])
		assert.Equal(t, id, got, "sample %s matches route %q", sample.path, spec.name)
	}
}

// Per route: no token, a bad token, a token without rights, and the management token.
func TestEveryRouteRefusesWithoutTheRight(t *testing.T) {
	a := newACLHarness(t, allOptions())
	nothing := a.token(t, "nothing", acl.Policy{})
	for id, req := range sampleRequests {
		name := routes[id].name
		for _, c := range []struct {
			who, secret string
			status      int
		}{{"no token", "", http.StatusUnauthorized}, {"bad token", "rkv_forged", http.StatusUnauthorized}, {"no rights", nothing, http.StatusForbidden}} {
			rec := a.as(t, c.secret, req.method, req.path, req.body)
			switch {
			case openRoutes[id]:
				assert.NotContains(t, []int{401, 403}, rec.Code, "%s %s: open route", c.who, name)
			case id == routeACLSelf && c.secret == nothing:
				assert.Equal(t, http.StatusOK, rec.Code, "any valid token reads itself")
			default:
				code := codeUnauthenticated
				if c.status == http.StatusForbidden {
					code = codePermissionDenied
				}
				requireError(t, rec, c.status, code)
			}
		}
		rec := a.as(t, a.root, req.method, req.path, req.body)
		assert.NotContains(t, []int{401, 403}, rec.Code, "management token on %s: %s", name, rec.Body.String())
	}
	// A wrong method on a protected route says nothing before authentication.
	requireError(t, a.as(t, "", http.MethodPatch, "/v1/kv/a", ""), http.StatusUnauthorized, codeUnauthenticated)
	// Both headers work.
	req := httptest.NewRequest(http.MethodGet, "/v1/cluster", nil)
	req.Header.Set(headerToken, a.root)
	assert.Equal(t, http.StatusOK, a.serve(req).Code)
}

// The choke point's decisions for one token, request by request.
func TestChokePointDecisionTable(t *testing.T) {
	a := newACLHarness(t, Options{})
	tok := a.token(t, "app", acl.Policy{Keys: rules(
		"", acl.AccessRead,
		"app/", acl.AccessWrite,
		"app/secret/", acl.AccessDeny,
		"pub/", acl.AccessList,
	), Cluster: acl.AccessRead})
	for _, k := range []string{"app/x", "app/secret/s", "other", "pub/a"} {
		require.Equal(t, http.StatusOK, a.as(t, a.root, http.MethodPut, "/v1/kv/"+k, "v").Code)
	}
	for _, c := range []struct {
		method, target, body string
		status               int
	}{
		{"GET", "/v1/kv/other", "", 200},
		{"HEAD", "/v1/kv/other", "", 200},
		{"PUT", "/v1/kv/other", "v", 403},
		{"GET", "/v1/kv/app/x", "", 200},
		{"PUT", "/v1/kv/app/x", "v", 200},
		{"DELETE", "/v1/kv/app/y", "", 200},
		{"PUT", "/v1/kv/app/x?cas=0", "v", 409}, // allowed, then the cas fails
		{"GET", "/v1/kv/app/secret/s", "", 403},
		{"GET", "/v1/kv/app%2Fsecret%2Fs", "", 403}, // the decoded key is decided
		{"PUT", "/v1/kv/app/secret/s", "v", 403},
		{"GET", "/v1/kv?prefix=pub/", "", 200},
		{"GET", "/v1/kv?prefix=app/", "", 403},             // holds app/secret/: never filtered
		{"GET", "/v1/kv?prefix=app/&after=app/t", "", 403}, // after= does not narrow the range decided
		{"GET", "/v1/kv?prefix=app/x", "", 200},
		{"GET", "/v1/kv", "", 403}, // the whole key space
		{"GET", "/v1/kv?prefix=o", "", 403},
		{"GET", "/v1/kv/other?index=1&wait=1ms", "", 200},
		{"GET", "/v1/kv?prefix=app/&index=1&wait=1ms", "", 403},
		{"GET", "/v1/cluster", "", 200},
		{"GET", "/v1/cluster/health", "", 503}, // allowed; the fake cluster is unhealthy
		{"POST", "/v1/cluster/leave", "", 403},
		{"DELETE", "/v1/cluster/members/n3", "", 403},
		{"POST", "/v1/cluster/join", `{"addr":"127.0.0.1:1"}`, 403},
		{"GET", "/v1/snapshot", "", 403},
		{"PUT", "/v1/snapshot", "x", 403},
		{"GET", "/v1/acl/tokens", "", 403},
		{"POST", "/v1/acl/tokens", `{"management":true}`, 403},
		{"POST", "/v1/acl/policies", `{"name":"mine","keys":[{"prefix":"","access":"write"}]}`, 403},
		{"GET", "/v1/acl/token/self", "", 200},
		{"GET", "/healthz", "", 200},
	} {
		rec := a.as(t, tok, c.method, c.target, c.body)
		assert.Equal(t, c.status, rec.Code, "%s %s: %s", c.method, c.target, rec.Body.String())
		if c.status == http.StatusForbidden {
			requireError(t, rec, http.StatusForbidden, codePermissionDenied)
		}
	}
}

// A transaction is decided op by op, both branches and every compare, before any of it runs.
func TestTxnWithOneForbiddenOpIsRefusedWhole(t *testing.T) {
	a := newACLHarness(t, Options{})
	tok := a.token(t, "app", acl.Policy{Keys: rules("app/", acl.AccessWrite, "ro/", acl.AccessRead, "app/secret/", acl.AccessDeny)})
	require.Equal(t, http.StatusOK, a.as(t, a.root, http.MethodPut, "/v1/kv/app/secret/k", "s").Code)
	for _, c := range []struct {
		name, body string
		status     int
	}{
		{"allowed", `{"success":[{"op":"put","key":"app/a","value":"dg=="},{"op":"get","key":"ro/x"}]}`, 200},
		{"one forbidden put", `{"success":[{"op":"put","key":"app/a","value":"dg=="},{"op":"put","key":"ro/x","value":"dg=="}]}`, 403},
		// GHSA-rfx7-8w68-q57q (etcd checked a nested txn's ops only on one level): every op of both
		// branches is checked, including the branch that will not run.
		{"forbidden op in the failure branch", `{"compare":[{"key":"app/a","target":"exists","op":"=","value":false}],"success":[{"op":"put","key":"app/b","value":"dg=="}],"failure":[{"op":"delete","key":"ro/x"}]}`, 403},
		{"compare on a denied key", `{"compare":[{"key":"app/secret/k","target":"value","op":"=","value":"cw=="}],"success":[{"op":"put","key":"app/b","value":"dg=="}]}`, 403},
		// CVE-2023-32082 (etcd leaked key names a user could not read): a count compare or a list op
		// enumerates its range, so it needs list on all of it.
		{"count over a range holding a denied prefix", `{"compare":[{"prefix":"app/","target":"count","op":">","value":0}],"success":[]}`, 403},
		{"list op over it", `{"success":[{"op":"list","prefix":"app/"}]}`, 403},
		// GHSA-q8m4-xhhv-38mg (etcd's lease revoke deleted keys the user could not write): a range
		// delete needs write on the whole range.
		{"delete_prefix over a denied prefix", `{"success":[{"op":"delete_prefix","prefix":"app/"}]}`, 403},
		{"delete_prefix over a read-only prefix", `{"success":[{"op":"delete_prefix","prefix":"ro/"}]}`, 403},
	} {
		before := a.store.writes
		rec := a.as(t, tok, http.MethodPost, "/v1/txn", c.body)
		assert.Equal(t, c.status, rec.Code, "%s: %s", c.name, rec.Body.String())
		if c.status == http.StatusForbidden {
			requireError(t, rec, http.StatusForbidden, codePermissionDenied)
			assert.Equal(t, before, a.store.writes, "%s: nothing applied", c.name)
		}
	}
	_, ok := a.store.data["app/b"]
	assert.False(t, ok, "no refused transaction wrote")
	require.NotNil(t, a.store.lastTxn)
	assert.Equal(t, "app/a", a.store.lastTxn.Success[0].Key, "only the allowed transaction reached the store")
}

func TestACLEndpointsLifecycle(t *testing.T) {
	a := newACLHarness(t, Options{})
	requireError(t, a.as(t, "", http.MethodPost, "/v1/acl/bootstrap", ""), http.StatusConflict, codeBootstrapped)
	admin := a.token(t, "admin", acl.Policy{ACL: acl.AccessWrite})
	var tv tokenView
	requireJSON(t, a.as(t, admin, http.MethodPost, "/v1/acl/tokens", `{"description":"ci","policies":["admin"]}`), &tv)
	require.NotEmpty(t, tv.AccessorID)

	var toks []acl.Token
	requireJSON(t, a.as(t, admin, http.MethodGet, "/v1/acl/tokens", ""), &toks)
	require.Len(t, toks, 3)
	raw := a.as(t, admin, http.MethodGet, "/v1/acl/tokens", "").Body.String()
	assert.NotContains(t, raw, "secret", "a listing never shows secrets or their hashes")
	assert.NotContains(t, raw, tv.SecretID)

	requireError(t, a.as(t, admin, http.MethodPost, "/v1/acl/tokens", `{"policies":["nope"]}`), http.StatusNotFound, codeNotFound)
	requireError(t, a.as(t, admin, http.MethodPost, "/v1/acl/tokens", `{"policies":[]}`), http.StatusBadRequest, codeInvalidRequest)
	requireError(t, a.as(t, admin, http.MethodPost, "/v1/acl/policies", `{"name":"x","keys":[{"prefix":"a","access":"all"}]}`), http.StatusBadRequest, codeInvalidRequest)

	assert.Equal(t, http.StatusOK, a.as(t, tv.SecretID, http.MethodGet, "/v1/acl/tokens/"+tv.AccessorID, "").Code)
	assert.Equal(t, http.StatusOK, a.as(t, admin, http.MethodDelete, "/v1/acl/tokens/"+tv.AccessorID, "").Code)
	requireError(t, a.as(t, tv.SecretID, http.MethodGet, "/v1/cluster", ""), http.StatusUnauthorized, codeUnauthenticated)
	requireError(t, a.as(t, admin, http.MethodDelete, "/v1/acl/tokens/"+tv.AccessorID, ""), http.StatusNotFound, codeNotFound)

	var p acl.Policy
	requireJSON(t, a.as(t, admin, http.MethodGet, "/v1/acl/policies/admin", ""), &p)
	assert.Equal(t, acl.AccessWrite, p.ACL)
	assert.Equal(t, http.StatusOK, a.as(t, admin, http.MethodDelete, "/v1/acl/policies/admin", "").Code)
	requireError(t, a.as(t, admin, http.MethodGet, "/v1/acl/policies", ""), http.StatusForbidden, codePermissionDenied)
}

// A policy change reaches a request that is already waiting: a long-poll answers 403, not the data.
func TestLongPollRecheckedAfterItsWait(t *testing.T) {
	a := newACLHarness(t, Options{})
	tok := a.token(t, "r", acl.Policy{Keys: rules("a/", acl.AccessRead)})
	require.Equal(t, http.StatusNotFound, a.as(t, tok, http.MethodGet, "/v1/kv/a/x?index=1&wait=1ms", "").Code)
	require.Equal(t, http.StatusOK, a.as(t, a.root, http.MethodPost, "/v1/acl/policies", `{"name":"r","keys":[{"prefix":"a/","access":"deny"}]}`).Code)
	requireError(t, a.as(t, tok, http.MethodGet, "/v1/kv/a/x", ""), http.StatusForbidden, codePermissionDenied)
}

// GHSA-xg4h-6gfc-h4m8: etcd decided a watch on its key, not on its range. Here a prefix watch needs
// list on the whole range, and a live watch ends when a policy change no longer allows it.
func TestWatchRangeDecidedAndEndedByPolicyChange(t *testing.T) {
	rg := newWatchRig(t, Options{ACLEnabled: true})
	boot, secret, err := acl.NewToken(rand.Reader, "", nil, true)
	require.NoError(t, err)
	_, err = rg.fs.ApplyACL(context.Background(), acl.BootstrapCommand(boot))
	require.NoError(t, err)
	_ = secret
	_, err = rg.fs.ApplyACL(context.Background(), acl.SetPolicyCommand(&acl.Policy{Name: "w", Keys: rules("a/", acl.AccessList, "a/s/", acl.AccessDeny)}))
	require.NoError(t, err)
	tok, tsecret, err := acl.NewToken(rand.Reader, "", []string{"w"}, false)
	require.NoError(t, err)
	_, err = rg.fs.ApplyACL(context.Background(), acl.CreateTokenCommand(tok))
	require.NoError(t, err)
	auth := http.Header{"Authorization": {"Bearer " + tsecret}}

	for q, want := range map[string]int{"prefix=a/": 403, "prefix=": 403, "key=a/s/k": 403, "prefix=a/x": 200, "key=a/k": 200} {
		req, err := http.NewRequest(http.MethodGet, rg.srv.URL+"/v1/watch?"+q+"&index=1", nil)
		require.NoError(t, err)
		req.Header = auth
		ctx, cancel := context.WithCancel(context.Background())
		resp, err := http.DefaultClient.Do(req.WithContext(ctx))
		require.NoError(t, err)
		assert.Equal(t, want, resp.StatusCode, q)
		cancel()
		resp.Body.Close()
	}

	c := rg.watch(t, "prefix=a/x", auth)
	require.Equal(t, http.StatusOK, c.resp.StatusCode)
	rg.put(t, "a/x1", "v")
	assert.Equal(t, "a/x1", c.nextChange(t).Changes[0].Key)

	// Narrow the policy: the stream must end with permission_denied, and deliver nothing after.
	_, err = rg.fs.ApplyACL(context.Background(), acl.SetPolicyCommand(&acl.Policy{Name: "w", Keys: rules("a/", acl.AccessList, "a/x", acl.AccessDeny)}))
	require.NoError(t, err)
	rg.put(t, "a/x2", "v")
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		ev, err := c.next()
		require.NoError(t, err, "the stream ends with an error event first")
		if ev.event == "progress" {
			continue
		}
		require.Equal(t, "error", ev.event, "no change after the policy change: %+v", ev)
		assert.Contains(t, ev.data, codePermissionDenied)
		break
	}
	_, err = c.next()
	assert.ErrorIs(t, err, io.EOF)
}

func TestAuditLinesNameTheAccessorNeverTheSecret(t *testing.T) {
	a := newACLHarness(t, Options{})
	rec := a.as(t, a.root, http.MethodPost, "/v1/cluster/leave", "")
	require.Equal(t, http.StatusOK, rec.Code)
	attrs := a.logs.attrs("audit")
	require.NotNil(t, attrs)
	var boot acl.Token
	for _, tk := range a.store.acl.Load().Tokens() {
		boot = tk
	}
	a.logs.mu.Lock()
	defer a.logs.mu.Unlock()
	var found bool
	for _, r := range a.logs.records {
		if r.Message != "audit" {
			continue
		}
		m := map[string]string{}
		r.Attrs(func(at slog.Attr) bool { m[at.Key] = at.Value.String(); return true })
		for _, v := range m {
			assert.NotContains(t, v, a.root, "the secret never reaches the log")
		}
		if m["route"] == "/v1/cluster/leave" {
			found = true
			assert.Equal(t, boot.AccessorID, m["accessor"])
			assert.Equal(t, "200", m["status"])
		}
	}
	assert.True(t, found)
}

// Sessions: create, renew and destroy need session write, reading one or the list session read; and a
// session's keys are decided as keys. Reading a session names its keys (CVE-2023-32082: etcd's lease
// listed keys the caller could not read); destroying it deletes or releases them (GHSA-q8m4-xhhv-38mg:
// etcd's lease revoke deleted keys the caller could not write).
func TestSessionsAreDecidedWithTheKeysTheyHold(t *testing.T) {
	a := newACLHarness(t, Options{})
	locker := a.token(t, "locker", acl.Policy{Keys: rules("locks/", acl.AccessWrite), Session: acl.AccessWrite})
	other := a.token(t, "other", acl.Policy{Keys: rules("app/", acl.AccessWrite), Session: acl.AccessWrite})
	reader := a.token(t, "reader", acl.Policy{Session: acl.AccessRead})
	nothing := a.token(t, "nothing", acl.Policy{Keys: rules("", acl.AccessWrite)})

	requireError(t, a.as(t, nothing, http.MethodPost, "/v1/session", `{"ttl":"10s"}`), http.StatusForbidden, codePermissionDenied)
	requireError(t, a.as(t, reader, http.MethodPost, "/v1/session", `{"ttl":"10s"}`), http.StatusForbidden, codePermissionDenied)
	var sess struct{ ID string }
	requireJSON(t, a.as(t, locker, http.MethodPost, "/v1/session", `{"ttl":"10s","behavior":"delete"}`), &sess)
	require.Equal(t, http.StatusOK, a.as(t, locker, http.MethodPut, "/v1/kv/locks/leader?acquire="+sess.ID, "me").Code)
	requireError(t, a.as(t, other, http.MethodPut, "/v1/kv/locks/leader?acquire="+sess.ID, "me"), http.StatusForbidden, codePermissionDenied)

	assert.Equal(t, http.StatusOK, a.as(t, reader, http.MethodGet, "/v1/sessions", "").Code)
	requireError(t, a.as(t, nothing, http.MethodGet, "/v1/sessions", ""), http.StatusForbidden, codePermissionDenied)
	requireError(t, a.as(t, reader, http.MethodGet, "/v1/session/"+sess.ID, ""), http.StatusForbidden, codePermissionDenied)
	rec := a.as(t, locker, http.MethodGet, "/v1/session/"+sess.ID, "")
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	assert.Contains(t, rec.Body.String(), "locks/leader")

	assert.Equal(t, http.StatusOK, a.as(t, other, http.MethodPut, "/v1/session/"+sess.ID+"/renew", "").Code, "renewing needs session write only")
	requireError(t, a.as(t, other, http.MethodDelete, "/v1/session/"+sess.ID, ""), http.StatusForbidden, codePermissionDenied)
	_, alive := a.store.sessions[sess.ID]
	assert.True(t, alive, "a refused destroy changes nothing")
	assert.Equal(t, http.StatusOK, a.as(t, locker, http.MethodDelete, "/v1/session/"+sess.ID, "").Code)
}

type fakeKeyring struct{}

func (fakeKeyring) Keyring(context.Context, string, []byte) (store.KeyringResult, error) {
	return store.KeyringResult{Nodes: 1, Keys: map[string]int{"k": 1}, Primary: map[string]int{"k": 1}}, nil
}
