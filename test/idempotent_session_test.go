package test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/raftkv/raftkv/client"
	"github.com/raftkv/raftkv/test/harness"
)

// dropFirstAnswer is a proxy to one node that forwards every request but hangs up, instead of
// answering, on the first request of each kind it is told to: the write applies, its answer is lost,
// and the client retries it not knowing. It keeps what it dropped (the key and the answer).
type dropFirstAnswer struct {
	target string
	kinds  func(*http.Request) string // the request's kind, or "" for one always answered

	mu      sync.Mutex
	dropped map[string]droppedAnswer
}

type droppedAnswer struct {
	method, uri, idemKey string
	body                 []byte
	status               int
	answer               []byte
}

func (p *dropFirstAnswer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	out, err := http.NewRequestWithContext(r.Context(), r.Method, "http://"+p.target+r.URL.RequestURI(), bytes.NewReader(body))
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	out.Header = r.Header.Clone()
	resp, err := http.DefaultTransport.RoundTrip(out)
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	answer, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if kind := p.kinds(r); kind != "" && resp.StatusCode == http.StatusOK {
		p.mu.Lock()
		_, seen := p.dropped[kind]
		if !seen {
			p.dropped[kind] = droppedAnswer{method: r.Method, uri: r.URL.RequestURI(), idemKey: r.Header.Get("Idempotency-Key"),
				body: body, status: resp.StatusCode, answer: answer}
		}
		p.mu.Unlock()
		if !seen {
			panic(http.ErrAbortHandler) // applied, answer lost
		}
	}
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = w.Write(answer)
}

// Session and lock writes through the client, each first answer lost after the write applied: every
// retry (same Idempotency-Key) answers what the first attempt did — one session, not two; acquired with
// the first attempt's fencing token; released, not "nothing to release" — and the same key sent to
// another node after the leader that applied it died still answers the same, at the same index.
func TestClientSessionAndLockWritesApplyOnceWhenAnswersAreLost(t *testing.T) {
	c := harness.StartCluster(t, 3, harness.Options{})
	leader := c.Leader(t)
	proxy := &dropFirstAnswer{target: c.Node(leader).HTTPAddr, dropped: map[string]droppedAnswer{},
		kinds: func(r *http.Request) string {
			q := r.URL.Query()
			switch {
			case r.Method == http.MethodPost && r.URL.Path == "/v1/session":
				return "create"
			case q.Has("acquire"):
				return "acquire"
			case q.Has("release"):
				return "release"
			case r.Method == http.MethodDelete && strings.HasPrefix(r.URL.Path, "/v1/session/"):
				return "destroy"
			}
			return ""
		}}
	srv := httptest.NewServer(proxy)
	defer srv.Close()
	// Only the proxy: every retry goes through it again, to the same leader, after the first was applied.
	cl, err := client.New(client.Config{Endpoints: []string{srv.URL}, Timeout: 30 * time.Second})
	require.NoError(t, err)
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	s, err := cl.NewSession(ctx, client.SessionOptions{TTL: 30 * time.Second})
	require.NoError(t, err)
	var created struct {
		ID string `json:"id"`
	}
	require.NoError(t, json.Unmarshal(proxy.dropped["create"].answer, &created))
	require.Equal(t, created.ID, s.ID(), "the retried create answers the first attempt's session")
	sessions := func(node int) []map[string]any {
		resp, err := http.Get("http://" + c.Node(node).HTTPAddr + "/v1/sessions")
		require.NoError(t, err)
		defer resp.Body.Close()
		var all []map[string]any
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&all))
		return all
	}
	require.Len(t, sessions(leader), 1, "one session, not one per attempt")

	m := client.NewMutex(s, "locks/x")
	token, acquired, err := m.TryLock(ctx, []byte("me"))
	require.NoError(t, err)
	require.True(t, acquired)
	require.JSONEq(t, string(proxy.dropped["acquire"].answer), `{"index":`+jsonUint(token)+`,"acquired":true}`)

	released, err := m.Unlock(ctx, []byte("free"))
	require.NoError(t, err)
	require.True(t, released, "the retried release answers the first attempt's: released")
	rel := proxy.dropped["release"]
	require.Contains(t, string(rel.answer), `"released":true`)
	require.NotEmpty(t, rel.idemKey)

	// The leader that applied them dies; the same release, with its key, on another node.
	c.Kill9(leader)
	other := others(c.Size(), leader)[0]
	require.Eventually(t, func() bool {
		req, err := http.NewRequest(rel.method, "http://"+c.Node(other).HTTPAddr+rel.uri, bytes.NewReader(rel.body))
		require.NoError(t, err)
		req.Header.Set("Idempotency-Key", rel.idemKey)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode == http.StatusServiceUnavailable {
			return false // electing
		}
		require.Equal(t, http.StatusOK, resp.StatusCode, string(b))
		require.JSONEq(t, string(rel.answer), string(b), "same index, same answer, on another node after a leader change")
		// The same key for another request is refused.
		req2, _ := http.NewRequest(rel.method, "http://"+c.Node(other).HTTPAddr+rel.uri, strings.NewReader("other"))
		req2.Header.Set("Idempotency-Key", rel.idemKey)
		resp2, err := http.DefaultClient.Do(req2)
		require.NoError(t, err)
		defer resp2.Body.Close()
		require.Equal(t, http.StatusUnprocessableEntity, resp2.StatusCode)
		return true
	}, 30*time.Second, 100*time.Millisecond)
}

func jsonUint(u uint64) string { b, _ := json.Marshal(u); return string(b) }
