package client

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// A session renews every TTL/3 and ends locally when the cluster says it is gone.
func TestSessionRenewsAndEndsWhenTheClusterSaysSo(t *testing.T) {
	fake, url := newFake(t,
		jsonReply(200, `{"id":"s1","ttl":"300ms","ttl_ms":300}`),
		jsonReply(200, `{"id":"s1","ttl":"300ms","ttl_ms":300}`),
		jsonReply(404, `{"error":"no such session","code":"session_not_found"}`),
	)
	c := newTestClient(t, url)
	s, err := c.NewSession(context.Background(), SessionOptions{TTL: 300 * time.Millisecond, DeleteKeys: true, Name: "web"})
	require.NoError(t, err)
	require.Equal(t, "s1", s.ID())
	select {
	case <-s.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the session did not end")
	}
	require.ErrorIs(t, s.Err(), ErrSessionEnded)
	reqs := fake.requests()
	require.Equal(t, "/v1/session/s1/renew", reqs[1].URL.Path)
	require.Equal(t, http.MethodPut, reqs[1].Method)
	require.Len(t, reqs[0].Header.Get("Idempotency-Key"), 32, "a create carries a key")
	require.Len(t, reqs[1].Header.Get("Idempotency-Key"), 32, "a renew carries a key")
	require.NotEqual(t, reqs[1].Header.Get("Idempotency-Key"), reqs[2].Header.Get("Idempotency-Key"), "each renew its own")
}

// With no renew acknowledged, Done closes at the last acknowledged send + TTL − margin: before the
// cluster may expire it, never after.
func TestSessionDoneFiresBeforeTheTTLWithoutRenews(t *testing.T) {
	replies := []func(http.ResponseWriter){jsonReply(200, `{"id":"s1","ttl":"2s","ttl_ms":2000}`)}
	for range 200 {
		replies = append(replies, jsonReply(503, `{"error":"no leader","code":"no_leader"}`))
	}
	_, url := newFake(t, replies...)
	c := newTestClient(t, url)
	sent := time.Now()
	s, err := c.NewSession(context.Background(), SessionOptions{})
	require.NoError(t, err)
	<-s.Done()
	took := time.Since(sent)
	require.Less(t, took, 2*time.Second, "ended locally before the TTL since the create was sent")
	require.Greater(t, took, time.Second, "but not long before it")
}

// A lock answer carries the fencing token; Lock waits on the key and asks again.
func TestMutexLockRetriesUntilAcquired(t *testing.T) {
	fake, url := newFake(t,
		jsonReply(200, `{"id":"s1","ttl":"15s","ttl_ms":15000}`),
		jsonReply(200, `{"index":7,"acquired":false}`),
		sse(event(8, "lock")),
		jsonReply(200, `{"index":9,"acquired":true}`),
		jsonReply(200, `{"index":10,"released":true}`),
	)
	c := newTestClient(t, url)
	s, err := c.NewSession(context.Background(), SessionOptions{})
	require.NoError(t, err)
	defer s.Abandon()
	m := NewMutex(s, "lock")
	token, err := m.Lock(context.Background(), []byte("me"))
	require.NoError(t, err)
	require.Equal(t, uint64(9), token)
	released, err := m.Unlock(context.Background(), nil)
	require.NoError(t, err)
	require.True(t, released)
	reqs := fake.requests()
	require.Equal(t, "s1", reqs[1].URL.Query().Get("acquire"))
	require.Equal(t, "8", reqs[2].URL.Query().Get("index"), "watched from the failed attempt's index + 1")
	require.Equal(t, "s1", reqs[4].URL.Query().Get("release"))
}

// Session and lock writes carry an Idempotency-Key, the same on every attempt of one call: a release
// retried after an attempt whose answer was lost gets that attempt's answer (released) from the
// server's record, not "nothing to release".
func TestSessionWritesAreRetriedWithTheSameIdempotencyKey(t *testing.T) {
	fake, url := newFake(t,
		hangUp,
		jsonReply(200, `{"id":"s1","ttl":"15s","ttl_ms":15000}`),
		jsonReply(503, `{"error":"leadership lost","code":"indeterminate"}`),
		jsonReply(200, `{"index":9,"acquired":true}`),
		hangUp,
		jsonReply(200, `{"index":10,"released":true}`),
		hangUp,
		jsonReply(200, `{"index":11}`),
	)
	c := newTestClient(t, url)
	s, err := c.NewSession(context.Background(), SessionOptions{})
	require.NoError(t, err)
	m := NewMutex(s, "lock")
	token, acquired, err := m.TryLock(context.Background(), []byte("me"))
	require.NoError(t, err)
	require.True(t, acquired)
	require.Equal(t, uint64(9), token)
	released, err := m.Unlock(context.Background(), nil)
	require.NoError(t, err)
	require.True(t, released)
	require.NoError(t, s.Close(context.Background()))
	reqs := fake.requests()
	require.Len(t, reqs, 8)
	keys := map[string]bool{}
	for i := 0; i < len(reqs); i += 2 {
		k := reqs[i].Header.Get("Idempotency-Key")
		require.Len(t, k, 32, "%s %s", reqs[i].Method, reqs[i].URL)
		require.Equal(t, k, reqs[i+1].Header.Get("Idempotency-Key"), "the retry of %s %s carries the same key", reqs[i].Method, reqs[i].URL)
		keys[k] = true
	}
	require.Len(t, keys, 4, "one key per call")
}
