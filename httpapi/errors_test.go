package httpapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/raftkv/raftkv/store"
)

// errorRows is the design.md table for store errors: what the store may return and what the client sees.
var errorRows = []struct {
	name   string
	err    error
	status int
	code   string
}{
	{"not found", fmt.Errorf("get: %w", store.ErrNotFound), http.StatusNotFound, "key_not_found"},
	{"cas", &store.CASMismatchError{Key: "k", Current: 7}, http.StatusConflict, "cas_mismatch"},
	{"no leader", fmt.Errorf("apply: %w", store.ErrNoLeader), http.StatusServiceUnavailable, "no_leader"},
	{"indeterminate", fmt.Errorf("apply: %w", store.ErrIndeterminate), http.StatusServiceUnavailable, "indeterminate"},
	{"timeout", fmt.Errorf("read index: %w", store.ErrTimeout), http.StatusServiceUnavailable, "timeout"},
	{"deadline", fmt.Errorf("wait: %w", context.DeadlineExceeded), http.StatusServiceUnavailable, "timeout"},
	{"not ready", fmt.Errorf("%w: catching up", store.ErrNotReady), http.StatusServiceUnavailable, "not_ready"},
	{"too many sessions", fmt.Errorf("create session: %w: 2 live", store.ErrTooManySessions), http.StatusTooManyRequests, "too_many_sessions"},
	{"shutting down", store.ErrShuttingDown, http.StatusServiceUnavailable, "shutting_down"},
	{"unknown member", fmt.Errorf("remove: %w", store.ErrUnknownMember), http.StatusNotFound, "unknown_member"},
	{"invalid", fmt.Errorf("%w: bad address", store.ErrInvalid), http.StatusBadRequest, "invalid_request"},
	{"other", errors.New("disk on fire"), http.StatusInternalServerError, "internal"},
	// Outcome unknown must win over whatever else the error wraps: "nothing happened" would be a lie.
	{"indeterminate over timeout", fmt.Errorf("%w: %w", store.ErrIndeterminate, context.DeadlineExceeded),
		http.StatusServiceUnavailable, "indeterminate"},
	{"indeterminate over no leader", errors.Join(store.ErrNoLeader, store.ErrIndeterminate),
		http.StatusServiceUnavailable, "indeterminate"},
	// A cancellation the client did not cause (its request is still live) is unexpected.
	{"canceled, client present", fmt.Errorf("stop: %w", context.Canceled), http.StatusInternalServerError, "internal"},
}

func TestClassify(t *testing.T) {
	for _, row := range errorRows {
		t.Run(row.name, func(t *testing.T) {
			status, code := classify(row.err)
			assert.Equal(t, row.status, status)
			assert.Equal(t, row.code, code)
		})
	}
}

// Every route that reaches the store answers every store error the same way.
func TestStoreErrorsThroughEveryRoute(t *testing.T) {
	routes := []struct{ method, target, body, storeMethod string }{
		{http.MethodGet, "/v1/kv/k", "", "Get"},
		{http.MethodGet, "/v1/kv/k?consistency=stale", "", "Get"},
		{http.MethodPut, "/v1/kv/k?cas=3", "v", "Put"},
		{http.MethodDelete, "/v1/kv/k", "", "Delete"},
		{http.MethodGet, "/v1/kv?prefix=a", "", "List"},
		{http.MethodGet, "/v1/cluster", "", "Status"},
		{http.MethodPost, "/v1/cluster/join", `{"addr":"10.0.0.1:7000"}`, "Join"},
		{http.MethodPost, "/v1/cluster/leave", "", "Leave"},
		{http.MethodDelete, "/v1/cluster/members/n2", "", "RemoveMember"},
	}
	for _, route := range routes {
		for _, row := range errorRows {
			t.Run(route.method+" "+route.target+"/"+row.name, func(t *testing.T) {
				hs := newHarness(t, Options{})
				hs.store.errs[route.storeMethod] = row.err
				rec := hs.do(t, route.method, route.target, body(route.body))
				got := requireError(t, rec, row.status, row.code)
				assert.Equal(t, row.err.Error(), got["error"])
				if row.code == "cas_mismatch" {
					assert.EqualValues(t, 7, got["current_index"])
				} else {
					assert.NotContains(t, got, "current_index")
				}
				if row.status == http.StatusInternalServerError {
					assert.Len(t, hs.logs.at(slog.LevelError), 1)
				} else {
					assert.Empty(t, hs.logs.at(slog.LevelError))
				}
			})
		}
	}
}

func TestClientGoneGetsNothing(t *testing.T) {
	hs := newHarness(t, Options{})
	hs.store.errs["Get"] = fmt.Errorf("read index: %w", context.Canceled)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "/v1/kv/k", nil)
	require.NoError(t, err)
	rec := hs.serve(req)
	assert.Empty(t, rec.Body.String())
	assert.Empty(t, rec.Header().Get("Content-Type"))
	assert.Contains(t, hs.logs.at(slog.LevelDebug), "client went away")
	assert.Empty(t, hs.logs.at(slog.LevelError))
}

func TestCASMismatchCurrentIndex(t *testing.T) {
	hs := newHarness(t, Options{})
	idx := hs.store.put("k", "v1")

	got := requireError(t, hs.do(t, http.MethodPut, fmt.Sprintf("/v1/kv/k?cas=%d", idx+10), body("v2")),
		http.StatusConflict, "cas_mismatch")
	assert.EqualValues(t, idx, got["current_index"])

	// cas=0 means "must be absent": on an existing key, current_index is its index.
	got = requireError(t, hs.do(t, http.MethodDelete, "/v1/kv/k?cas=0", nil), http.StatusConflict, "cas_mismatch")
	assert.EqualValues(t, idx, got["current_index"])

	// On an absent key, current_index is 0 (present, not omitted).
	got = requireError(t, hs.do(t, http.MethodPut, "/v1/kv/absent?cas=5", body("x")), http.StatusConflict, "cas_mismatch")
	assert.Contains(t, got, "current_index")
	assert.EqualValues(t, 0, got["current_index"])
}
