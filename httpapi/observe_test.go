package httpapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/raftkv/raftkv/store"
)

type recordedRequest struct {
	route, method string
	code          int
}

type requestRecorder struct {
	mu   sync.Mutex
	seen []recordedRequest
}

func (r *requestRecorder) ObserveRequest(route, method string, code int, _ time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seen = append(r.seen, recordedRequest{route, method, code})
}

func TestObserverSeesRoutePatternsNotPaths(t *testing.T) {
	rec := &requestRecorder{}
	hs := newHarness(t, Options{Observer: rec})
	hs.store.put("a/b", "1")
	hs.do(t, http.MethodGet, "/v1/kv/a/b", nil)
	hs.do(t, http.MethodGet, "/v1/kv/missing", nil)
	hs.do(t, http.MethodDelete, "/v1/cluster/members/n2", nil)
	hs.do(t, http.MethodGet, "/no/such/thing", nil)
	assert.Equal(t, []recordedRequest{
		{"/v1/kv/{key}", "GET", 200},
		{"/v1/kv/{key}", "GET", 404},
		{"/v1/cluster/members/{id}", "DELETE", 200},
		{"other", "GET", 404},
	}, rec.seen)
}

func TestMetricsRouteServesTheGivenHandler(t *testing.T) {
	hs := newHarness(t, Options{})
	requireError(t, hs.do(t, http.MethodGet, "/metrics", nil), http.StatusNotFound, "not_found")

	hs = newHarness(t, Options{Metrics: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("raftkv_up 1\n"))
	})})
	rec := hs.do(t, http.MethodGet, "/metrics", nil)
	require.Equal(t, http.StatusOK, rec.Code)
	assert.Equal(t, "raftkv_up 1\n", rec.Body.String())
	requireError(t, hs.do(t, http.MethodPost, "/metrics", nil), http.StatusMethodNotAllowed, "method_not_allowed")
}

func TestClusterHealthIs503WhenAServerIsUnhealthy(t *testing.T) {
	hs := newHarness(t, Options{})
	hs.store.health = store.Health{Healthy: true, FailureTolerance: 1, Leader: "n1",
		Servers: []store.ServerHealth{{ID: "n1", Healthy: true, Leader: true}}}
	rec := hs.do(t, http.MethodGet, "/v1/cluster/health", nil)
	require.Equal(t, http.StatusOK, rec.Code)
	var h store.Health
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &h))
	assert.Equal(t, 1, h.FailureTolerance)

	hs.store.health.Healthy = false
	hs.store.health.Servers = append(hs.store.health.Servers, store.ServerHealth{ID: "n2", Reason: "did not answer"})
	rec = hs.do(t, http.MethodGet, "/v1/cluster/health", nil)
	require.Equal(t, http.StatusServiceUnavailable, rec.Code)
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &h))
	assert.Equal(t, "did not answer", h.Servers[1].Reason)
}

func TestSnapshotRestoreErrorsMapToTheirStatus(t *testing.T) {
	hs := newHarness(t, Options{})
	rec := hs.do(t, http.MethodPut, "/v1/snapshot", strings.NewReader("12345"))
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	var res store.RestoreResult
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &res))
	assert.Equal(t, 5, res.Keys, "the body reached the store")

	hs.store.errs["Restore"] = fmt.Errorf("%w: send it to the leader, n2 at 127.0.0.1:7010", store.ErrNotLeader)
	body := requireError(t, hs.do(t, http.MethodPut, "/v1/snapshot", strings.NewReader("x")), http.StatusMisdirectedRequest, "not_leader")
	assert.Contains(t, body["error"], "127.0.0.1:7010")
	hs.store.errs["Restore"] = fmt.Errorf("%w: %w", store.ErrInvalidArchive, errors.New("SHA-256 mismatch"))
	requireError(t, hs.do(t, http.MethodPut, "/v1/snapshot", strings.NewReader("x")), http.StatusBadRequest, "invalid_archive")
	requireError(t, hs.do(t, http.MethodPost, "/v1/snapshot", nil), http.StatusMethodNotAllowed, "method_not_allowed")
	delete(hs.store.errs, "Restore")

	// ?timeout= bounds the restore: the store gets it as its context's deadline.
	start := time.Now()
	require.Equal(t, http.StatusOK, hs.do(t, http.MethodPut, "/v1/snapshot?timeout=90s", strings.NewReader("x")).Code)
	hs.store.mu.Lock()
	d := hs.store.restoreDeadline
	hs.store.mu.Unlock()
	assert.WithinDuration(t, start.Add(90*time.Second), d, 5*time.Second)
	for _, q := range []string{"timeout=soon", "timeout=0s", "timeout=-1m", "wait=1m"} {
		requireError(t, hs.do(t, http.MethodPut, "/v1/snapshot?"+q, strings.NewReader("x")), http.StatusBadRequest, "invalid_parameter")
	}
	hs.store.errs["Restore"] = fmt.Errorf("%w: the restore did not finish within its deadline (before installing it); nothing changed", store.ErrTimeout)
	body = requireError(t, hs.do(t, http.MethodPut, "/v1/snapshot?timeout=1s", strings.NewReader("x")), http.StatusServiceUnavailable, "timeout")
	assert.Contains(t, body["error"], "nothing changed")
}
