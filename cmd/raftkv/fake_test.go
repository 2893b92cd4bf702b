package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// fakeAPI is an in-memory stand-in for a node's public HTTP API, following the wire contract.
type fakeAPI struct {
	mu       sync.Mutex
	index    uint64
	kv       map[string]listEntry
	status   clusterStatus
	requests []string // "METHOD escaped-path?query", in order
	joins    []string
	leaves   int
	removed  []string
	// inject, when set, may answer request number n (1-based) itself, for failure injection; it returns
	// whether it did.
	inject func(w http.ResponseWriter, r *http.Request, n int) bool
}

// newFakeAPI starts a fake node; it is closed when the test ends. It returns the node's host:port.
func newFakeAPI(t *testing.T) (*fakeAPI, string) {
	t.Helper()
	f := &fakeAPI{kv: map[string]listEntry{}}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, strings.TrimPrefix(srv.URL, "http://")
}

func (f *fakeAPI) setInject(fn func(w http.ResponseWriter, r *http.Request, n int) bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.inject = fn
}

func (f *fakeAPI) setStatus(st clusterStatus) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.status = st
}

// calls returns what the fake recorded for the membership endpoints.
func (f *fakeAPI) calls() (joins []string, leaves int, removed []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.joins), f.leaves, slices.Clone(f.removed)
}

func (f *fakeAPI) requestLog() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.requests)
}

func (f *fakeAPI) entry(key string) (listEntry, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	e, ok := f.kv[key]
	return e, ok
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	path := r.URL.EscapedPath()
	req := r.Method + " " + path
	if r.URL.RawQuery != "" {
		req += "?" + r.URL.RawQuery
	}
	f.requests = append(f.requests, req)
	n, inject := len(f.requests), f.inject
	f.mu.Unlock()
	if inject != nil && inject(w, r, n) {
		return
	}

	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case strings.HasPrefix(path, "/v1/kv/"):
		key, err := url.PathUnescape(strings.TrimPrefix(path, "/v1/kv/"))
		if err != nil || key == "" {
			writeFakeError(w, 400, "invalid_key", "bad key", nil)
			return
		}
		f.serveKey(w, r, key)
	case path == "/v1/kv" && r.Method == http.MethodGet:
		f.serveList(w, r)
	case path == "/v1/cluster" && r.Method == http.MethodGet:
		b, _ := json.Marshal(f.status)
		w.Header().Set("Content-Type", "application/json")
		w.Write(b)
	case path == "/v1/cluster/join" && r.Method == http.MethodPost:
		var body struct {
			Addr string `json:"addr"`
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil || body.Addr == "" {
			writeFakeError(w, 400, "invalid_request", "bad join body", nil)
			return
		}
		f.joins = append(f.joins, body.Addr)
		w.Write([]byte(`{"joined":true}`))
	case path == "/v1/cluster/leave" && r.Method == http.MethodPost:
		f.leaves++
		w.Write([]byte(`{"left":true}`))
	case strings.HasPrefix(path, "/v1/cluster/members/") && r.Method == http.MethodDelete:
		id, _ := url.PathUnescape(strings.TrimPrefix(path, "/v1/cluster/members/"))
		if !slices.ContainsFunc(f.status.Members, func(m clusterMember) bool { return m.ID == id }) {
			writeFakeError(w, 404, "unknown_member", "unknown member", nil)
			return
		}
		if id == "node2" && r.URL.Query().Get("force") != "true" {
			writeFakeError(w, 409, "would_lose_quorum", "removal would lose the quorum", nil)
			return
		}
		f.removed = append(f.removed, id)
		w.Write([]byte(`{"removed":true}`))
	case path == "/readyz":
		w.Write([]byte(`{"status":"ready"}`))
	default:
		writeFakeError(w, 404, "not_found", "no such endpoint", nil)
	}
}

func (f *fakeAPI) serveKey(w http.ResponseWriter, r *http.Request, key string) {
	cur, exists := f.kv[key]
	if r.Method == http.MethodPut || r.Method == http.MethodDelete {
		if s := r.URL.Query().Get("cas"); s != "" {
			want, _ := strconv.ParseUint(s, 10, 64)
			if (want == 0 && exists) || (want != 0 && cur.ModIndex != want) {
				writeFakeError(w, 409, "cas_mismatch", "cas mismatch on key "+strconv.Quote(key),
					map[string]any{"current_index": cur.ModIndex})
				return
			}
		}
	}
	switch r.Method {
	case http.MethodGet:
		if !exists {
			writeFakeError(w, 404, "key_not_found", "key not found", nil)
			return
		}
		w.Header().Set("X-Kv-Create-Index", strconv.FormatUint(cur.CreateIndex, 10))
		w.Header().Set("X-Kv-Mod-Index", strconv.FormatUint(cur.ModIndex, 10))
		w.Write(cur.Value)
	case http.MethodPut:
		v, _ := io.ReadAll(r.Body)
		f.index++
		e := listEntry{Key: key, Value: v, CreateIndex: f.index, ModIndex: f.index}
		if exists {
			e.CreateIndex = cur.CreateIndex
		}
		f.kv[key] = e
		w.Write([]byte(`{"index":` + strconv.FormatUint(f.index, 10) + `}`))
	case http.MethodDelete:
		f.index++
		delete(f.kv, key)
		w.Write([]byte(`{"index":` + strconv.FormatUint(f.index, 10) + `,"deleted":` + strconv.FormatBool(exists) + `}`))
	default:
		writeFakeError(w, 405, "method_not_allowed", "method not allowed", nil)
	}
}

func (f *fakeAPI) serveList(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	prefix, after := q.Get("prefix"), q.Get("after")
	limit := 1000
	if s := q.Get("limit"); s != "" {
		limit, _ = strconv.Atoi(s)
	}
	var keys []string
	for k := range f.kv {
		if strings.HasPrefix(k, prefix) && k > after {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	out := []listEntry{}
	for _, k := range keys {
		if len(out) == limit {
			w.Header().Set("X-Kv-More", "true")
			w.Header().Set("X-Kv-Next-After", url.QueryEscape(out[len(out)-1].Key))
			break
		}
		out = append(out, f.kv[k])
	}
	b, _ := json.Marshal(out)
	w.Header().Set("Content-Type", "application/json")
	w.Write(b)
}

func writeFakeError(w http.ResponseWriter, status int, code, msg string, extra map[string]any) {
	body := map[string]any{"error": msg, "code": code}
	for k, v := range extra {
		body[k] = v
	}
	b, _ := json.Marshal(body)
	w.Header().Set("Content-Type", "application/json")
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	w.WriteHeader(status)
	w.Write(b)
}

// cli runs the binary's entry point in-process.
func cli(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), args, strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

// deadAddr returns a local address nothing listens on: connecting is refused.
func deadAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	return addr
}

// syncBuffer is a bytes.Buffer safe to write from one goroutine while another reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
