package httpapi

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// logRecorder is a slog.Handler that keeps every record at or above level.
type logRecorder struct {
	mu      sync.Mutex
	level   slog.Level
	records []slog.Record
}

func (l *logRecorder) Enabled(_ context.Context, lv slog.Level) bool { return lv >= l.level }
func (l *logRecorder) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.records = append(l.records, r.Clone())
	return nil
}
func (l *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logRecorder) WithGroup(string) slog.Handler      { return l }

// at returns the messages logged at exactly level lv.
func (l *logRecorder) at(lv slog.Level) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var msgs []string
	for _, r := range l.records {
		if r.Level == lv {
			msgs = append(msgs, r.Message)
		}
	}
	return msgs
}

// attrs returns the attributes of the first record with message msg.
func (l *logRecorder) attrs(msg string) map[string]slog.Value {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, r := range l.records {
		if r.Message == msg {
			m := map[string]slog.Value{}
			r.Attrs(func(a slog.Attr) bool { m[a.Key] = a.Value; return true })
			return m
		}
	}
	return nil
}

type harness struct {
	store *fakeStore
	logs  *logRecorder
	h     http.Handler
}

func newHarness(t testing.TB, opts Options) *harness {
	t.Helper()
	fs := newFakeStore()
	logs := &logRecorder{level: slog.LevelDebug}
	return &harness{store: fs, logs: logs, h: New(fs, opts, slog.New(logs))}
}

// do sends one request through the handler. body may be nil.
func (hs *harness) do(t testing.TB, method, target string, body io.Reader) *httptest.ResponseRecorder {
	t.Helper()
	return hs.serve(httptest.NewRequest(method, target, body))
}

func (hs *harness) serve(r *http.Request) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	hs.h.ServeHTTP(rec, r)
	return rec
}

// requireError checks an error response: status, JSON content type, a non-empty message and the code.
// It returns the decoded body for further checks.
func requireError(t testing.TB, rec *httptest.ResponseRecorder, status int, code string) map[string]any {
	t.Helper()
	require.Equal(t, status, rec.Code, "body: %s", rec.Body.String())
	assert.Equal(t, "application/json", rec.Header().Get("Content-Type"))
	var body map[string]any
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body), "body: %s", rec.Body.String())
	assert.Equal(t, code, body["code"])
	msg, _ := body["error"].(string)
	assert.NotEmpty(t, msg)
	if status == http.StatusServiceUnavailable {
		assert.Equal(t, "1", rec.Header().Get("Retry-After"))
	} else {
		assert.Empty(t, rec.Header().Get("Retry-After"))
	}
	return body
}

// requireJSON checks a 200 JSON response and decodes it into v.
func requireJSON(t testing.TB, rec *httptest.ResponseRecorder, v any) {
	t.Helper()
	require.Equal(t, http.StatusOK, rec.Code, "body: %s", rec.Body.String())
	assert.Equal(t, "application/json", rec.Header().Get("Content-Type"))
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), v), "body: %s", rec.Body.String())
}

func body(s string) io.Reader { return strings.NewReader(s) }
