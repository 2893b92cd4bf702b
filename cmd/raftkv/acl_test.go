package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// aclFake answers the ACL endpoints as a node would and records what each request carried.
type aclFake struct {
	mu    sync.Mutex
	auth  []string // Authorization header of each request
	paths []string
	body  []string
}

func (f *aclFake) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	f.auth = append(f.auth, r.Header.Get("Authorization"))
	f.paths = append(f.paths, r.Method+" "+r.URL.Path)
	f.body = append(f.body, string(b))
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	if r.Header.Get("Authorization") == "Bearer wrong" {
		w.WriteHeader(http.StatusForbidden)
		_, _ = w.Write([]byte(`{"error":"permission denied: write on acl","code":"permission_denied"}`))
		return
	}
	switch r.Method + " " + r.URL.Path {
	case "POST /v1/acl/bootstrap", "POST /v1/acl/tokens":
		_, _ = w.Write([]byte(`{"accessor_id":"a-1","secret_id":"rkv_s3cret","management":true}`))
	case "GET /v1/acl/tokens":
		_, _ = w.Write([]byte(`[{"accessor_id":"a-1","management":true},{"accessor_id":"a-2","policies":["app"],"description":"ci"}]`))
	case "GET /v1/acl/policies":
		_, _ = w.Write([]byte(`[{"name":"app","keys":[{"prefix":"app/","access":"write"}],"cluster":"read"}]`))
	default:
		_, _ = w.Write([]byte(`{"index":9}`))
	}
}

func TestACLCommands(t *testing.T) {
	f := &aclFake{}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	addr := strings.TrimPrefix(srv.URL, "http://")

	code, out, stderr := runCmd(t, "acl", "bootstrap", "--addr", addr)
	require.Equal(t, exitOK, code, stderr)
	assert.Contains(t, out, "rkv_s3cret")
	assert.Contains(t, out, "a-1")

	t.Setenv("RAFTKV_TOKEN", "from-env")
	code, out, stderr = runCmd(t, "acl", "token", "create", "--addr", addr, "--policy", "app,ops", "--policy", "x")
	require.Equal(t, exitOK, code, stderr)
	assert.Contains(t, out, "rkv_s3cret")
	code, out, stderr = runCmd(t, "acl", "token", "list", "--addr", addr, "--token", "flag")
	require.Equal(t, exitOK, code, stderr)
	assert.Contains(t, out, "(management)")
	assert.Contains(t, out, "ci")
	code, out, stderr = runCmd(t, "acl", "policy", "create", "--addr", addr, "--name", "app", "--rule", "app/=write", "--rule", "=read", "--cluster", "read")
	require.Equal(t, exitOK, code, stderr)
	assert.Contains(t, out, "app")
	code, out, stderr = runCmd(t, "acl", "policy", "list", "--addr", addr)
	require.Equal(t, exitOK, code, stderr)
	assert.Contains(t, out, `key "app/" write`)
	code, _, stderr = runCmd(t, "acl", "policy", "delete", "--addr", addr, "app")
	require.Equal(t, exitOK, code, stderr)
	code, _, stderr = runCmd(t, "acl", "token", "delete", "--addr", addr, "a-2")
	require.Equal(t, exitOK, code, stderr)

	code, _, stderr = runCmd(t, "acl", "token", "delete", "--addr", addr, "--token", "wrong", "a-2")
	assert.Equal(t, exitDenied, code, "a refusal by the ACLs exits 5: %s", stderr)
	assert.Contains(t, stderr, "permission_denied")

	code, _, _ = runCmd(t, "acl", "policy", "create", "--addr", addr, "--name", "bad", "--rule", "a/=all")
	assert.Equal(t, exitUsage, code, "a bad rule is caught before sending")
	code, _, _ = runCmd(t, "acl", "token", "create", "--addr", addr)
	assert.Equal(t, exitUsage, code, "a token needs a policy")

	f.mu.Lock()
	defer f.mu.Unlock()
	assert.Equal(t, "", f.auth[0], "no token: none sent")
	assert.Equal(t, "Bearer from-env", f.auth[1], "RAFTKV_TOKEN")
	assert.Equal(t, "Bearer flag", f.auth[2], "--token wins over the env")
	var tokReq struct {
		Policies []string `json:"policies"`
	}
	require.NoError(t, json.Unmarshal([]byte(f.body[1]), &tokReq))
	assert.Equal(t, []string{"app", "ops", "x"}, tokReq.Policies)
	assert.Equal(t, "DELETE /v1/acl/policies/app", f.paths[5])
	assert.Equal(t, "DELETE /v1/acl/tokens/a-2", f.paths[6])
}

// cluster ready probes /readyz, which needs no token: a healthcheck works with ACLs on.
func TestClusterReadyNeedsNoToken(t *testing.T) {
	var notReady atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		assert.Equal(t, "/readyz", r.URL.Path)
		w.Header().Set("Content-Type", "application/json")
		if notReady.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(`{"error":"node not ready: no known leader","code":"not_ready","ready":false}`))
			return
		}
		_, _ = w.Write([]byte(`{"ready":true}`))
	}))
	t.Cleanup(srv.Close)
	addr := strings.TrimPrefix(srv.URL, "http://")
	code, out, stderr := runCmd(t, "cluster", "ready", "--addr", addr)
	require.Equal(t, exitOK, code, stderr)
	assert.Contains(t, out, "ready")
	notReady.Store(true)
	code, _, stderr = runCmd(t, "cluster", "ready", "--addr", addr)
	assert.Equal(t, exitUnavailable, code)
	assert.Contains(t, stderr, "no known leader")
}
