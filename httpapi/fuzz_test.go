package httpapi

import (
	"bufio"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/raftkv/raftkv/watch"
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
		{"GET", "/v1/kv/a", "index=3&wait=1s", ""},
		{"GET", "/v1/kv", "prefix=a&index=0&wait=10m1s", ""},
		{"GET", "/v1/watch", "prefix=a/&index=1&prev=true&types=put,delete", ""},
		{"GET", "/v1/watch", "key=a&key=b", ""},
		{"GET", "/v1/watch", "prefix=", ""},
		{"POST", "/v1/txn", "", `{"compare":[{"key":"a","target":"mod_index","op":"=","value":0}],"success":[{"op":"put","key":"a","value":"eA=="}],"failure":[{"op":"get","key":"a"}]}`},
		{"POST", "/v1/txn", "consistency=stale", `{"compare":[{"prefix":"p/","target":"count","op":"<","value":3}],"success":[{"op":"list","prefix":"p/","limit":2}]}`},
		{"POST", "/v1/txn", "", `{"compare":[{"key":"a","target":"value","op":"!=","value":"!!"}],"success":[{"op":"delete_prefix","prefix":""},{"op":"delete","key":"b"}]}`},
		{"POST", "/v1/txn", "", `{"success":[{"op":"put","key":"a"}]}`},
		{"POST", "/v1/txn", "", `[]`},
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
		// A stream or long-poll that has begun ends with its client: gone from the start here.
		ctx, cancel := context.WithCancel(req.Context())
		cancel()
		req = req.WithContext(ctx)
		logs := &logRecorder{level: slog.LevelDebug}
		h := New(newFakeStore(), Options{MaxValueSize: 64, MaxKeySize: 64, MaxListLimit: 10, MaxTxnOps: 8,
			Watch: watch.New(watch.Config{})}, slog.New(logs))
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
