package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// benchJSON decodes the last line of bench's stdout, the JSON result.
func benchJSON(t *testing.T, out string) map[string]any {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var res map[string]any
	require.NoError(t, json.Unmarshal([]byte(lines[len(lines)-1]), &res), out)
	return res
}

func requestsMatching(f *fakeAPI, prefix string) (n int) {
	for _, r := range f.requestLog() {
		if strings.HasPrefix(r, prefix) {
			n++
		}
	}
	return n
}

func TestBenchGetSpreadsOverNodes(t *testing.T) {
	t.Parallel()
	// Two addresses, one key space (as in a cluster): a second server in front of the same fake.
	f, a1 := newFakeAPI(t)
	var second atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		second.Add(1)
		f.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	a2 := strings.TrimPrefix(srv.URL, "http://")
	code, out, errOut := cli(t, "", "bench", "--addr", a1+","+a2, "--op", "get", "--consistency", "stale",
		"--concurrency", "4", "--duration", "300ms", "--warmup", "0", "--keys", "20", "--json")
	require.Equal(t, 0, code, errOut)
	require.Equal(t, 1, strings.Count(out, "\n"), "--json prints only the JSON line: %q", out)
	res := benchJSON(t, out)
	assert.Equal(t, "raftkv", res["target"])
	assert.Equal(t, "get", res["op"])
	assert.Equal(t, "stale", res["consistency"])
	assert.Equal(t, "spread", res["placement"])
	assert.Equal(t, 2.0, res["nodes"])
	assert.Positive(t, res["ops"])
	assert.Equal(t, 0.0, res["errors"], res["error_kinds"])
	assert.Empty(t, errOut, "no progress lines when stderr is not a terminal")

	// Every key was written once before the reads, then read with ?consistency=stale.
	assert.Equal(t, 20, requestsMatching(f, "PUT /v1/kv/bench/"))
	assert.Positive(t, requestsMatching(f, "GET /v1/kv/bench/"))
	for _, r := range f.requestLog() {
		if strings.HasPrefix(r, "GET") {
			require.True(t, strings.HasSuffix(r, "?consistency=stale"), r)
		}
	}
	_, ok := f.entry("bench/19")
	assert.True(t, ok)
	// Spread: both addresses served about half of the requests.
	all := int64(len(f.requestLog()))
	assert.InDelta(t, 0.5, float64(second.Load())/float64(all), 0.1, "%d of %d", second.Load(), all)
}

func TestBenchPutPinnedTextAndJSON(t *testing.T) {
	t.Parallel()
	f1, a1 := newFakeAPI(t)
	f2, a2 := newFakeAPI(t)
	code, out, errOut := cli(t, "", "bench", "--addr", a1+","+a2, "--pin", "--concurrency", "1",
		"--duration", "200ms", "--warmup", "50ms", "--value-size", "33")
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, "raftkv: put, 1 workers pinned to 2 nodes, 33 B values, 1000 keys")
	assert.Contains(t, out, "throughput")
	assert.Contains(t, out, "p99.9")
	assert.Contains(t, out, "errors      0")
	res := benchJSON(t, out)
	assert.Equal(t, "pin", res["placement"])
	assert.Equal(t, 33.0, res["value_size"])
	assert.Positive(t, requestsMatching(f1, "PUT /v1/kv/bench/"))
	assert.Zero(t, requestsMatching(f2, "PUT"), "worker 0 is pinned to the first node")
}

func TestBenchSequentialKeys(t *testing.T) {
	t.Parallel()
	f, a := newFakeAPI(t)
	code, out, errOut := cli(t, "", "bench", "--addr", a, "--sequential-keys", "--keys", "500",
		"--concurrency", "8", "--duration", "1m", "--warmup", "0", "--key-prefix", "seq/", "--json")
	require.Equal(t, 0, code, errOut)
	res := benchJSON(t, out)
	assert.Equal(t, 500.0, res["ops"])
	assert.Equal(t, true, res["sequential_keys"])
	assert.Equal(t, 500, requestsMatching(f, "PUT /v1/kv/seq/"))
	for _, k := range []string{"seq/000", "seq/499"} {
		_, ok := f.entry(k)
		assert.True(t, ok, k)
	}
}

func TestBenchCountsErrorsByKind(t *testing.T) {
	t.Parallel()
	code, out, errOut := cli(t, "", "bench", "--addr", deadAddr(t), "--concurrency", "2",
		"--duration", "200ms", "--warmup", "0")
	require.Equal(t, exitUnavailable, code)
	assert.Contains(t, errOut, "no operation succeeded")
	assert.Contains(t, out, "transport: connection refused ×")
	res := benchJSON(t, out)
	assert.Positive(t, res["errors"])

	f, a := newFakeAPI(t)
	f.setInject(func(w http.ResponseWriter, r *http.Request, n int) bool {
		if n%2 == 0 {
			writeFakeError(w, 503, "no_leader", "no leader", nil)
			return true
		}
		return false
	})
	code, out, errOut = cli(t, "", "bench", "--addr", a, "--concurrency", "2", "--duration", "200ms", "--warmup", "0", "--json")
	require.Equal(t, 0, code, errOut)
	res = benchJSON(t, out)
	assert.Positive(t, res["ops"])
	assert.Positive(t, res["error_kinds"].(map[string]any)["HTTP 503 no_leader"])
}

func TestBenchUsageErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--spread", "--pin"}, "exclude each other"},
		{[]string{"--spread=false"}, "needs --pin"},
		{[]string{"--op", "scan"}, `--op "scan"`},
		{[]string{"--consistency", "eventual"}, "--consistency"},
		{[]string{"--read-ratio", "0.5"}, "--read-ratio is for --op mixed"},
		{[]string{"--op", "mixed", "--read-ratio", "2"}, "not in [0, 1]"},
		{[]string{"--op", "get", "--sequential-keys"}, "--sequential-keys is for --op put"},
		{[]string{"--concurrency", "0"}, "--concurrency"},
		{[]string{"--duration", "0s"}, "--duration"},
		{[]string{"--keys", "0"}, "--keys"},
		{[]string{"--addr", ""}, "--addr is empty"},
		{[]string{"--addr", "ftp://x:1"}, "invalid node address"},
		{[]string{"extra"}, "takes no arguments"},
	} {
		code, _, errOut := cli(t, "", append([]string{"bench"}, tc.args...)...)
		assert.Equal(t, exitUsage, code, tc.args)
		assert.Contains(t, errOut, tc.want, tc.args)
		assert.Contains(t, errOut, "Usage: raftkv bench", tc.args)
	}
	code, out, _ := cli(t, "", "bench", "--help")
	assert.Equal(t, exitOK, code)
	assert.Contains(t, out, "--sequential-keys")
}
