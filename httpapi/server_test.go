package httpapi

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/raftkv/raftkv/store"
)

func TestUnknownPathIs404JSON(t *testing.T) {
	hs := newHarness(t, Options{})
	for _, path := range []string{
		"/", "/v1", "/v1/", "/v1/kvx", "/v1/kv%2Fa", "/v1/cluster/", "/v1/cluster/joinx",
		"/v1/cluster/members", "/v1/cluster/members/a/b", "/healthz/", "/debug/pprof/", "/%ff",
	} {
		t.Run(path, func(t *testing.T) {
			rec := hs.do(t, http.MethodGet, path, nil)
			body := requireError(t, rec, http.StatusNotFound, "not_found")
			assert.Contains(t, body["error"], "no such endpoint")
		})
	}
}

func TestWrongMethodIs405WithAllow(t *testing.T) {
	hs := newHarness(t, Options{})
	for _, tc := range []struct{ method, path, allow string }{
		{http.MethodPost, "/v1/kv/a", "GET, HEAD, PUT, DELETE"},
		{http.MethodPatch, "/v1/kv/a/b", "GET, HEAD, PUT, DELETE"},
		{http.MethodOptions, "/v1/kv/", "GET, HEAD, PUT, DELETE"},
		{http.MethodPut, "/v1/kv", "GET, HEAD"},
		{http.MethodDelete, "/v1/kv", "GET, HEAD"},
		{http.MethodPost, "/v1/cluster", "GET, HEAD"},
		{http.MethodGet, "/v1/cluster/join", "POST"},
		{http.MethodPut, "/v1/cluster/join", "POST"},
		{http.MethodGet, "/v1/cluster/leave", "POST"},
		{http.MethodGet, "/v1/cluster/members/n2", "DELETE"},
		{http.MethodPost, "/healthz", "GET, HEAD"},
		{http.MethodDelete, "/readyz", "GET, HEAD"},
		{"BREW", "/healthz", "GET, HEAD"},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			rec := hs.do(t, tc.method, tc.path, nil)
			requireError(t, rec, http.StatusMethodNotAllowed, "method_not_allowed")
			assert.Equal(t, tc.allow, rec.Header().Get("Allow"))
		})
	}
	assert.Zero(t, hs.store.writeCount())
	assert.Empty(t, hs.store.joined)
	assert.Zero(t, hs.store.left)
	assert.Empty(t, hs.store.removed)
}

func TestHealthz(t *testing.T) {
	hs := newHarness(t, Options{})
	hs.store.readyErr = store.ErrNotReady // liveness does not care
	var got map[string]string
	requireJSON(t, hs.do(t, http.MethodGet, "/healthz", nil), &got)
	assert.Equal(t, map[string]string{"status": "ok"}, got)

	rec := hs.do(t, http.MethodHead, "/healthz", nil)
	assert.Equal(t, http.StatusOK, rec.Code)
}

func TestReadyz(t *testing.T) {
	hs := newHarness(t, Options{})
	var got map[string]any
	requireJSON(t, hs.do(t, http.MethodGet, "/readyz", nil), &got)
	assert.Equal(t, true, got["ready"])
	assert.Equal(t, "", got["reason"])

	hs.store.readyErr = fmt.Errorf("%w: no leader known for 3s", store.ErrNotReady)
	body := requireError(t, hs.do(t, http.MethodGet, "/readyz", nil), http.StatusServiceUnavailable, "not_ready")
	assert.Equal(t, hs.store.readyErr.Error(), body["error"])
	assert.Equal(t, false, body["ready"])
	assert.Equal(t, hs.store.readyErr.Error(), body["reason"])
}

func TestPprofOnlyWhenEnabled(t *testing.T) {
	off := newHarness(t, Options{})
	requireError(t, off.do(t, http.MethodGet, "/debug/pprof/", nil), http.StatusNotFound, "not_found")

	on := newHarness(t, Options{EnablePprof: true})
	for _, path := range []string{"/debug/pprof/", "/debug/pprof/cmdline", "/debug/pprof/goroutine?debug=1"} {
		rec := on.do(t, http.MethodGet, path, nil)
		assert.Equal(t, http.StatusOK, rec.Code, path)
	}
}

func TestPanicBecomes500JSON(t *testing.T) {
	for _, level := range []slog.Level{slog.LevelDebug, slog.LevelInfo} {
		t.Run(level.String(), func(t *testing.T) {
			fs := newFakeStore()
			fs.panics = true
			logs := &logRecorder{level: level}
			hs := &harness{store: fs, logs: logs, h: New(fs, Options{}, slog.New(logs))}
			for _, tc := range []struct{ method, path string }{
				{http.MethodGet, "/v1/kv/a"},
				{http.MethodPut, "/v1/kv/a"},
				{http.MethodGet, "/v1/kv?consistency=stale"},
				{http.MethodGet, "/readyz"},
			} {
				rec := hs.do(t, tc.method, tc.path, body("v"))
				requireError(t, rec, http.StatusInternalServerError, "internal")
			}
			assert.Len(t, logs.at(slog.LevelError), 4)
		})
	}
}

func TestErrAbortHandlerIsRepanicked(t *testing.T) {
	h := New(panicStore{}, Options{}, nil)
	assert.PanicsWithValue(t, http.ErrAbortHandler, func() {
		newHarnessWith(h).do(t, http.MethodGet, "/v1/kv/a", nil)
	})
}

func TestRequestsAreLoggedAtDebug(t *testing.T) {
	hs := newHarness(t, Options{})
	hs.do(t, http.MethodGet, "/v1/kv/missing", nil)
	attrs := hs.logs.attrs("http request")
	require.NotNil(t, attrs)
	assert.Equal(t, "GET", attrs["method"].String())
	assert.Equal(t, "/v1/kv/missing", attrs["path"].String())
	assert.Equal(t, int64(http.StatusNotFound), attrs["status"].Int64())
	assert.Contains(t, attrs, "duration")

	quiet := &logRecorder{level: slog.LevelInfo}
	h := New(newFakeStore(), Options{}, slog.New(quiet))
	newHarnessWith(h).do(t, http.MethodGet, "/v1/kv/missing", nil)
	assert.Empty(t, quiet.records)
}

func TestNilLoggerIsAllowed(t *testing.T) {
	h := New(newFakeStore(), Options{}, nil)
	rec := newHarnessWith(h).do(t, http.MethodGet, "/healthz", nil)
	assert.Equal(t, http.StatusOK, rec.Code)
}

func TestAllowed(t *testing.T) {
	// allowed() parses the Allow list; it must match whole tokens only.
	hs := newHarness(t, Options{})
	rec := hs.do(t, "GE", "/healthz", nil)
	assert.Equal(t, http.StatusMethodNotAllowed, rec.Code)
	rec = hs.do(t, "HEAD", "/healthz", nil)
	assert.Equal(t, http.StatusOK, rec.Code)
	rec = hs.do(t, "POS", "/v1/cluster/leave", nil)
	assert.Equal(t, http.StatusMethodNotAllowed, rec.Code)
}

// panicStore aborts every request the way a handler may legitimately do.
type panicStore struct{ Store }

func (panicStore) GetAt(ctx context.Context, key string, c store.Consistency) (store.Entry, uint64, error) {
	panic(http.ErrAbortHandler)
}

func newHarnessWith(h http.Handler) *harness { return &harness{h: h} }
