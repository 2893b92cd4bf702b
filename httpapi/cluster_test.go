package httpapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/raftkv/raftkv/store"
)

func TestClusterStatus(t *testing.T) {
	hs := newHarness(t, Options{})
	rec := hs.do(t, http.MethodGet, "/v1/cluster", nil)
	var got store.Status
	requireJSON(t, rec, &got)
	assert.Equal(t, hs.store.status, got)

	var raw map[string]any
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &raw))
	for _, field := range []string{"node_id", "state", "leader", "term", "commit_index", "applied_index", "last_log_index", "members"} {
		assert.Contains(t, raw, field)
	}
}

func TestJoin(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		want       []string
	}{
		{"addr", `{"addr":"10.0.0.1:7000"}`, []string{"10.0.0.1:7000"}},
		{"addrs", `{"addrs":["a.example:7000","[::1]:7000"]}`, []string{"a.example:7000", "[::1]:7000"}},
		{"both", `{"addr":"a:1","addrs":["b:2"]}`, []string{"a:1", "b:2"}},
		{"whitespace around", " \n{\"addr\": \"a:1\"}\n ", []string{"a:1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hs := newHarness(t, Options{})
			var got map[string]bool
			requireJSON(t, hs.do(t, http.MethodPost, "/v1/cluster/join", body(tc.body)), &got)
			assert.Equal(t, map[string]bool{"joined": true}, got)
			assert.Equal(t, [][]string{tc.want}, hs.store.joined)
		})
	}
}

func TestJoinRejectsBadRequests(t *testing.T) {
	for _, tc := range []struct{ name, body string }{
		{"empty body", ""},
		{"null", "null"},
		{"empty object", "{}"},
		{"empty addr", `{"addr":""}`},
		{"empty addrs", `{"addrs":[]}`},
		{"empty string in addrs", `{"addrs":["a:1",""]}`},
		{"not JSON", "10.0.0.1:7000"},
		{"truncated JSON", `{"addr":"a:1"`},
		{"wrong type", `{"addr":7000}`},
		{"array", `["a:1"]`},
		{"unknown field", `{"addr":"a:1","force":true}`},
		{"misspelt field", `{"adr":"a:1"}`},
		{"trailing data", `{"addr":"a:1"}{"addr":"b:2"}`},
		{"trailing garbage", `{"addr":"a:1"} x`},
		{"no port", `{"addr":"10.0.0.1"}`},
		{"no host", `{"addr":":7000"}`},
		{"port zero", `{"addr":"a:0"}`},
		{"port too big", `{"addr":"a:65536"}`},
		{"named port", `{"addr":"a:http"}`},
		{"control char", `{"addr":"a\u0000b:1"}`},
		{"too big", `{"addr":"a:1","addrs":["` + strings.Repeat("x", maxJoinBody) + `:1"]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hs := newHarness(t, Options{})
			requireError(t, hs.do(t, http.MethodPost, "/v1/cluster/join", body(tc.body)), http.StatusBadRequest, "invalid_request")
			assert.Empty(t, hs.store.joined)
		})
	}
	t.Run("nil body", func(t *testing.T) {
		hs := newHarness(t, Options{})
		req, err := http.NewRequest(http.MethodPost, "/v1/cluster/join", nil)
		require.NoError(t, err)
		requireError(t, hs.serve(req), http.StatusBadRequest, "invalid_request")
	})
}

func TestLeave(t *testing.T) {
	hs := newHarness(t, Options{})
	var got map[string]bool
	requireJSON(t, hs.do(t, http.MethodPost, "/v1/cluster/leave", nil), &got)
	assert.Equal(t, map[string]bool{"left": true}, got)
	assert.Equal(t, 1, hs.store.left)
}

func TestRemoveMember(t *testing.T) {
	hs := newHarness(t, Options{})
	hs.store.members["node a/1"] = true

	var got map[string]string
	requireJSON(t, hs.do(t, http.MethodDelete, "/v1/cluster/members/n2", nil), &got)
	assert.Equal(t, map[string]string{"removed": "n2"}, got)

	requireJSON(t, hs.do(t, http.MethodDelete, "/v1/cluster/members/node%20a%2F1", nil), &got)
	assert.Equal(t, map[string]string{"removed": "node a/1"}, got)

	requireError(t, hs.do(t, http.MethodDelete, "/v1/cluster/members/n2", nil), http.StatusNotFound, "unknown_member")
	requireError(t, hs.do(t, http.MethodDelete, "/v1/cluster/members/nope", nil), http.StatusNotFound, "unknown_member")

	for _, path := range []string{"/v1/cluster/members/", "/v1/cluster/members/%00", "/v1/cluster/members/%ff",
		"/v1/cluster/members/" + strings.Repeat("n", 1025)} {
		requireError(t, hs.do(t, http.MethodDelete, path, nil), http.StatusBadRequest, "invalid_request")
	}
	assert.Equal(t, []string{"n2", "node a/1"}, hs.store.removed)
}

func TestRemovalThatWouldLoseTheQuorumIs409UnlessForced(t *testing.T) {
	hs := newHarness(t, Options{})
	hs.store.errs["RemoveMember"] = fmt.Errorf("remove member %q: %w", "n2", store.ErrWouldLoseQuorum)
	hs.store.errs["Leave"] = fmt.Errorf("leave: %w", store.ErrWouldLoseQuorum)
	requireError(t, hs.do(t, http.MethodDelete, "/v1/cluster/members/n2", nil), http.StatusConflict, "would_lose_quorum")
	requireError(t, hs.do(t, http.MethodPost, "/v1/cluster/leave", nil), http.StatusConflict, "would_lose_quorum")
	requireError(t, hs.do(t, http.MethodDelete, "/v1/cluster/members/n2?force=maybe", nil), http.StatusBadRequest, "invalid_parameter")

	hs.store.errs = map[string]error{}
	var got map[string]string
	requireJSON(t, hs.do(t, http.MethodDelete, "/v1/cluster/members/n2?force=true", nil), &got)
	requireJSON(t, hs.do(t, http.MethodPost, "/v1/cluster/leave?force=1", nil), &map[string]bool{})
	assert.Equal(t, []bool{false, false, true, true}, hs.store.forced)
}
