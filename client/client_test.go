package client

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// script is a fake node that answers each request with the next scripted reply and records what it got.
type script struct {
	mu      sync.Mutex
	replies []func(w http.ResponseWriter)
	got     []*http.Request
}

func (s *script) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	clone := r.Clone(context.Background())
	clone.Body = io.NopCloser(bytes.NewReader(body)) // read by the test after the handler returned
	s.mu.Lock()
	s.got = append(s.got, clone)
	var reply func(http.ResponseWriter)
	if len(s.replies) > 0 {
		reply, s.replies = s.replies[0], s.replies[1:]
	}
	s.mu.Unlock()
	if reply == nil {
		http.Error(w, "unscripted", http.StatusTeapot)
		return
	}
	reply(w)
}

func (s *script) requests() []*http.Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*http.Request(nil), s.got...)
}

func jsonReply(status int, body string, headers ...string) func(http.ResponseWriter) {
	return func(w http.ResponseWriter) {
		for i := 0; i+1 < len(headers); i += 2 {
			w.Header().Set(headers[i], headers[i+1])
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = w.Write([]byte(body))
	}
}

// hangUp closes the connection after reading the request: the write may have applied.
func hangUp(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err == nil {
		conn.Close()
	}
}

func newFake(t *testing.T, replies ...func(http.ResponseWriter)) (*script, string) {
	s := &script{replies: replies}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return s, srv.URL
}

// deadEndpoint is an address nothing listens on.
func deadEndpoint(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

func newTestClient(t *testing.T, endpoints ...string) *Client {
	c, err := New(Config{Endpoints: endpoints, Timeout: 5 * time.Second, MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond})
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

func TestFailoverOnConnectionErrorsAnd503s(t *testing.T) {
	fake, url := newFake(t,
		jsonReply(503, `{"error":"no leader","code":"no_leader"}`),
		jsonReply(200, `{"index":7}`),
	)
	c := newTestClient(t, deadEndpoint(t), url)
	idx, err := c.Put(context.Background(), "k", []byte("v"))
	require.NoError(t, err)
	require.Equal(t, uint64(7), idx)
	require.Len(t, fake.requests(), 2)
	require.Equal(t, uint64(7), c.LastIndex())
}

func TestIndeterminateWritesAreRetriedWithTheSameIdempotencyKey(t *testing.T) {
	fake, url := newFake(t,
		hangUp,
		jsonReply(503, `{"error":"leadership lost","code":"indeterminate"}`),
		jsonReply(200, `{"index":42}`),
	)
	c := newTestClient(t, url)
	idx, err := c.Put(context.Background(), "k", []byte("v"))
	require.NoError(t, err)
	require.Equal(t, uint64(42), idx)
	reqs := fake.requests()
	require.Len(t, reqs, 3)
	key := reqs[0].Header.Get("Idempotency-Key")
	require.Len(t, key, 32)
	for _, r := range reqs {
		require.Equal(t, key, r.Header.Get("Idempotency-Key"), "every attempt of one call carries one key")
	}

	_, err = c.Put(context.Background(), "k", []byte("v"))
	require.Error(t, err) // unscripted 418
	require.NotEqual(t, key, fake.requests()[3].Header.Get("Idempotency-Key"), "a new call, a new key")
}

func TestStillIndeterminateWhenTheBudgetRunsOut(t *testing.T) {
	noLeader := jsonReply(503, `{"error":"no leader","code":"no_leader"}`)
	replies := []func(http.ResponseWriter){hangUp}
	for range 100 {
		replies = append(replies, noLeader)
	}
	_, url := newFake(t, replies...)
	c, err := New(Config{Endpoints: []string{url}, Timeout: 300 * time.Millisecond, MinBackoff: 50 * time.Millisecond})
	require.NoError(t, err)
	_, err = c.Put(context.Background(), "k", []byte("v"))
	require.ErrorIs(t, err, ErrIndeterminate, "one attempt may have applied")
	require.ErrorIs(t, err, ErrUnavailable)

	_, url = newFake(t, replies[1:]...)
	c, err = New(Config{Endpoints: []string{url}, Timeout: 100 * time.Millisecond, MinBackoff: 50 * time.Millisecond})
	require.NoError(t, err)
	_, err = c.Get(context.Background(), "k")
	require.ErrorIs(t, err, ErrUnavailable)
	require.NotErrorIs(t, err, ErrIndeterminate)
}

func TestTypedErrors(t *testing.T) {
	_, url := newFake(t,
		jsonReply(404, `{"error":"key not found","code":"key_not_found"}`),
		jsonReply(409, `{"error":"cas","code":"cas_mismatch","current_index":9}`),
		jsonReply(422, `{"error":"reused","code":"idempotency_key_reused"}`),
		jsonReply(400, `{"error":"bad key","code":"invalid_key"}`),
	)
	c := newTestClient(t, url)
	ctx := context.Background()
	_, err := c.Get(ctx, "k")
	require.ErrorIs(t, err, ErrNotFound)

	_, err = c.CAS(ctx, "k", 3, []byte("v"))
	require.ErrorIs(t, err, ErrCASMismatch)
	var cas *CASMismatchError
	require.ErrorAs(t, err, &cas)
	require.Equal(t, uint64(9), cas.Current)
	require.Equal(t, "k", cas.Key)

	_, _, err = c.Delete(ctx, "k")
	require.ErrorIs(t, err, ErrKeyReused)

	_, err = c.Put(ctx, "k", nil)
	var ae *APIError
	require.ErrorAs(t, err, &ae)
	require.Equal(t, 400, ae.Status)
	require.Equal(t, "invalid_key", ae.Code)
	require.False(t, errors.Is(err, ErrNotFound))
}

func TestReadsCarryTheHighestIndexSeen(t *testing.T) {
	fake, url := newFake(t,
		jsonReply(200, `{"index":5}`),
		jsonReply(200, `[]`, "X-Kv-Index", "11"),
		jsonReply(200, `v`, "X-Kv-Mod-Index", "3", "X-Kv-Index", "12"),
	)
	c := newTestClient(t, url)
	ctx := context.Background()
	_, err := c.Put(ctx, "k", []byte("v"))
	require.NoError(t, err)
	_, err = c.List(ctx, ListOptions{Prefix: "p", Stale: true})
	require.NoError(t, err)
	_, err = c.Get(ctx, "k", Stale())
	require.NoError(t, err)
	reqs := fake.requests()
	require.Equal(t, "5", reqs[1].URL.Query().Get("min_index"))
	require.Equal(t, "stale", reqs[1].URL.Query().Get("consistency"))
	require.Equal(t, "11", reqs[2].URL.Query().Get("min_index"), "raised by the list's X-Kv-Index")
	require.Equal(t, uint64(12), c.LastIndex())
}

// A linearizable read already reflects every acknowledged write: it carries no min_index (which would
// only make a lagging node wait before its read-index round), and a stale one still does.
func TestLinearizableReadsCarryNoMinIndex(t *testing.T) {
	fake, url := newFake(t,
		jsonReply(200, `{"index":5}`),
		jsonReply(200, `v`, "X-Kv-Mod-Index", "5", "X-Kv-Index", "5"),
		jsonReply(200, `[]`, "X-Kv-Index", "5"),
		jsonReply(200, `{"succeeded":true,"index":5,"results":[]}`),
		jsonReply(200, `v`, "X-Kv-Mod-Index", "5", "X-Kv-Index", "5"),
	)
	c := newTestClient(t, url)
	ctx := context.Background()
	_, err := c.Put(ctx, "k", []byte("v"))
	require.NoError(t, err)
	_, err = c.Get(ctx, "k")
	require.NoError(t, err)
	_, err = c.List(ctx, ListOptions{Prefix: "p"})
	require.NoError(t, err)
	_, err = c.Txn(ctx, Txn{Success: []TxnOp{OpGet("k")}})
	require.NoError(t, err)
	_, err = c.Get(ctx, "k", Stale())
	require.NoError(t, err)
	reqs := fake.requests()
	for i, r := range reqs[1:4] {
		require.False(t, r.URL.Query().Has("min_index"), "linearizable read %d: %s", i, r.URL)
		require.False(t, r.URL.Query().Has("consistency"), "linearizable read %d: %s", i, r.URL)
	}
	require.Equal(t, "consistency=stale&min_index=5", reqs[4].URL.RawQuery)
}

func TestConfigValidation(t *testing.T) {
	for _, cfg := range []Config{{}, {Endpoints: []string{"nope"}}, {Endpoints: []string{"ftp://a:1"}},
		{Endpoints: []string{"a:1"}, Timeout: -1}} {
		_, err := New(cfg)
		require.Error(t, err, "%+v", cfg)
	}
}

func TestTokenIsSentAsBearer(t *testing.T) {
	fake, url := newFake(t, jsonReply(200, `{"index":7}`))
	c, err := New(Config{Endpoints: []string{url}, Token: "rkv_secret"})
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	_, err = c.Put(context.Background(), "k", []byte("v"))
	require.NoError(t, err)
	require.Equal(t, "Bearer rkv_secret", fake.requests()[0].Header.Get("Authorization"))
}

// After an attempt that may have applied, an answer about a later attempt only (a node that has not
// caught up on the ACLs yet refusing the token, an unexpected status) does not settle the write: the
// Client tries the other nodes, and if none settles it the call is ErrIndeterminate, never a plain
// error that reads as "not applied". Found by the chaos suite's keyed writers (member-replace-wiped-acl:
// writes reported refused were in the store).
func TestAnswerAboutARetryDoesNotSettleAnIndeterminateWrite(t *testing.T) {
	denied := jsonReply(403, `{"error":"permission denied","code":"permission_denied"}`)
	_, url := newFake(t, hangUp, denied, jsonReply(200, `{"index":42}`))
	c := newTestClient(t, url)
	idx, err := c.Put(context.Background(), "k", []byte("v"))
	require.NoError(t, err, "a 403 after a sent attempt is retried: another node (or the same, caught up) settles it")
	require.Equal(t, uint64(42), idx)

	_, url = newFake(t, hangUp, jsonReply(418, `{"error":"teapot","code":"teapot"}`))
	c = newTestClient(t, url)
	_, err = c.Put(context.Background(), "k", []byte("v"))
	require.ErrorIs(t, err, ErrIndeterminate, "an unexpected answer to a retry says nothing of the first attempt")

	replies := []func(http.ResponseWriter){hangUp}
	for range 100 {
		replies = append(replies, denied)
	}
	_, url = newFake(t, replies...)
	c, err = New(Config{Endpoints: []string{url}, Timeout: 300 * time.Millisecond, MinBackoff: 50 * time.Millisecond})
	require.NoError(t, err)
	_, err = c.Put(context.Background(), "k", []byte("v"))
	require.ErrorIs(t, err, ErrIndeterminate)

	// The write's own outcome does settle it: the retry answers the first application's result.
	_, url = newFake(t, hangUp, jsonReply(409, `{"error":"cas mismatch","code":"cas_mismatch","current_index":9}`))
	c = newTestClient(t, url)
	_, err = c.CAS(context.Background(), "k", 3, []byte("v"))
	var cas *CASMismatchError
	require.ErrorAs(t, err, &cas)
	require.NotErrorIs(t, err, ErrIndeterminate)

	// Without a prior sent attempt a 403 is what it says.
	_, url = newFake(t, denied)
	c = newTestClient(t, url)
	_, err = c.Put(context.Background(), "k", []byte("v"))
	require.NotErrorIs(t, err, ErrIndeterminate)
	var ae *APIError
	require.ErrorAs(t, err, &ae)
	require.Equal(t, 403, ae.Status)
}

// Open fails over like Do until a node answers 2xx, then hands over the unread body, which outlives
// the call's budget; Once and BodyReader requests are sent once.
func TestOpenOnceAndBodyReader(t *testing.T) {
	_, down := newFake(t, jsonReply(503, `{"error":"no leader","code":"no_leader"}`))
	fake, up := newFake(t, func(w http.ResponseWriter) {
		w.WriteHeader(200)
		w.(http.Flusher).Flush()
		time.Sleep(150 * time.Millisecond) // the body outlives the 100 ms budget
		_, _ = w.Write([]byte("archive"))
	})
	c, err := New(Config{Endpoints: []string{down, up}, Timeout: 100 * time.Millisecond, MinBackoff: time.Millisecond})
	require.NoError(t, err)
	st, err := c.Open(context.Background(), Request{Method: http.MethodGet, Path: "/v1/snapshot"})
	require.NoError(t, err)
	b, err := io.ReadAll(st.Body)
	require.NoError(t, err)
	require.NoError(t, st.Body.Close())
	require.Equal(t, "archive", string(b))
	require.Len(t, fake.requests(), 1)

	fake, url := newFake(t, jsonReply(503, `{"error":"not ready","code":"not_ready"}`), jsonReply(200, `{}`))
	c = newTestClient(t, url)
	_, err = c.Do(context.Background(), Request{Method: http.MethodGet, Path: "/readyz", Once: true})
	var ae *APIError
	require.ErrorAs(t, err, &ae)
	require.Equal(t, 503, ae.Status)
	require.Len(t, fake.requests(), 1, "Once: no retry")

	fake, url = newFake(t, hangUp, jsonReply(200, `{}`))
	c = newTestClient(t, url)
	_, err = c.Do(context.Background(), Request{Method: http.MethodPut, Path: "/v1/snapshot", Write: true,
		BodyReader: bytes.NewReader([]byte("archive")), ContentLength: 7})
	require.ErrorIs(t, err, ErrIndeterminate, "a streamed write that may have arrived is never sent again")
	require.Len(t, fake.requests(), 1)
	body, _ := io.ReadAll(fake.requests()[0].Body)
	require.Equal(t, "archive", string(body))
}
