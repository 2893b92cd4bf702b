package httpapi

import (
	"bufio"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// FuzzHandler sends arbitrary requests, parsed the way net/http's server parses them, at a store that
// never fails. Whatever the input: no panic, never a 500, and every non-2xx answer is a JSON error with a
// code.
func FuzzHandler(f *testing.F) {
	for _, seed := range []struct{ method, path, query, body string }{
		{"GET", "/v1/kv/a", "", ""},
		{"PUT", "/v1/kv/a/b/c", "cas=0", "value"},
		{"PUT", "/v1/kv/%ff", "", "x"},
		{"PUT", "/v1/kv/a%00", "cas=-1", ""},
		{"DELETE", "/v1/kv/k", "cas=1&cas=2", ""},
		{"GET", "/v1/kv", "prefix=a&after=a%2Fb&limit=2&consistency=stale", ""},
		{"GET", "/v1/kv", "limit=0", ""},
		{"GET", "/v1/kv/k", "consistency=bogus", ""},
		{"GET", "/v1/cluster", "", ""},
		{"POST", "/v1/cluster/join", "", `{"addr":"10.0.0.1:7000"}`},
		{"POST", "/v1/cluster/join", "", `{"addrs":["a:1",""]}`},
		{"POST", "/v1/cluster/leave", "", ""},
		{"DELETE", "/v1/cluster/members/n2", "", ""},
		{"DELETE", "/v1/cluster/members/", "", ""},
		{"GET", "/healthz", "", ""},
		{"HEAD", "/readyz", "", ""},
		{"OPTIONS", "/v1/kv/a", "", ""},
		{"GET", "/nope", "", ""},
		{"GET", "/v1/kv/a//../b", "%zz", ""},
	} {
		f.Add(seed.method, seed.path, seed.query, seed.body)
	}
	f.Fuzz(func(t *testing.T, method, path, query, body string) {
		target := path
		if query != "" {
			target += "?" + query
		}
		raw := method + " " + target + " HTTP/1.1\r\nHost: raftkv\r\nContent-Length: " +
			strconv.Itoa(len(body)) + "\r\n\r\n" + body
		req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw)))
		if err != nil {
			t.Skip("net/http would reject this request before any handler")
		}
		logs := &logRecorder{level: slog.LevelDebug}
		h := New(newFakeStore(), Options{MaxValueSize: 64, MaxKeySize: 64, MaxListLimit: 10}, slog.New(logs))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)

		require.NotEqual(t, http.StatusInternalServerError, rec.Code, "body: %s", rec.Body.String())
		assert.Empty(t, logs.at(slog.LevelError))
		if rec.Code >= 200 && rec.Code < 300 {
			return
		}
		require.Equal(t, "application/json", rec.Header().Get("Content-Type"), "status %d", rec.Code)
		var e struct{ Error, Code string }
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &e), "body: %q", rec.Body.String())
		require.NotEmpty(t, e.Code)
		require.NotEmpty(t, e.Error)
	})
}
