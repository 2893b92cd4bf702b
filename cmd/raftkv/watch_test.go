package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// sseNode answers /v1/watch with a scripted stream per request and records each request's index=.
type sseNode struct {
	mu      sync.Mutex
	indexes []string
	script  func(w http.ResponseWriter, index string)
}

func newSSENode(t *testing.T, script func(w http.ResponseWriter, index string)) (*sseNode, string) {
	n := &sseNode{script: script}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.mu.Lock()
		n.indexes = append(n.indexes, r.URL.Query().Get("index"))
		n.mu.Unlock()
		n.script(w, r.URL.Query().Get("index"))
	}))
	t.Cleanup(srv.Close)
	return n, strings.TrimPrefix(srv.URL, "http://")
}

func (n *sseNode) seen() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.indexes...)
}

func sseMessage(index uint64, key, b64 string) string {
	return fmt.Sprintf("id: %d\ndata: {\"index\":%d,\"changes\":[{\"type\":\"put\",\"key\":%q,\"value\":%q,\"create_index\":1,\"mod_index\":%d}]}\n\n",
		index, index, key, b64, index)
}

// A node that loses its leader ends the stream; the CLI resumes on the next node from the index after
// the last one it printed: no gap, no repeat.
func TestWatchFollowsAcrossNodesWithoutGapOrRepeat(t *testing.T) {
	_, a := newSSENode(t, func(w http.ResponseWriter, index string) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("X-Kv-Index", "4")
		fmt.Fprint(w, "event: progress\nid: 4\ndata: {\"index\":4}\n\n")
		fmt.Fprint(w, sseMessage(5, "p/a", "eA=="))
		fmt.Fprint(w, sseMessage(7, "p/b", "eQ=="))
		fmt.Fprint(w, "event: error\ndata: {\"code\":\"no_leader\",\"error\":\"no leader\",\"resume_index\":8}\n\n")
	})
	release := make(chan struct{})
	b, bAddr := newSSENode(t, func(w http.ResponseWriter, index string) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		fmt.Fprint(w, sseMessage(9, "p/c", "eg=="))
		w.(http.Flusher).Flush()
		<-release
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errOut syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"watch", "--addr", a + "," + bAddr, "p/"}, strings.NewReader(""), &out, &errOut)
	}()
	require.Eventually(t, func() bool { return strings.Count(out.String(), "\n") == 3 }, 10*time.Second, 10*time.Millisecond, errOut.String())
	assert.Equal(t, "5\tput\tp/a\tx\n7\tput\tp/b\ty\n9\tput\tp/c\tz\n", out.String())
	assert.Equal(t, []string{"8"}, b.seen(), "resumed after the last printed index")
	cancel()
	close(release)
	assert.Equal(t, 0, <-done)
}

func TestWatchExitsOnCompacted(t *testing.T) {
	_, a := newSSENode(t, func(w http.ResponseWriter, index string) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusGone)
		fmt.Fprint(w, `{"code":"compacted","error":"index 2 is compacted","compact_index":9,"current_index":20}`)
	})
	var out, errOut bytes.Buffer
	code := run(context.Background(), []string{"watch", "--addr", a, "--index", "2", "p/"}, strings.NewReader(""), &out, &errOut)
	assert.Equal(t, exitNotFound, code)
	assert.Contains(t, errOut.String(), "compacted")
	assert.Contains(t, errOut.String(), "list again")
}

func TestTxnPrintsTheAnswerAndExitsByOutcome(t *testing.T) {
	var mu sync.Mutex
	var bodies, keys []string
	succeeded := true
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b := new(bytes.Buffer)
		b.ReadFrom(r.Body)
		mu.Lock()
		bodies = append(bodies, r.URL.Path+"?"+r.URL.RawQuery+" "+b.String())
		keys = append(keys, r.Header.Get("Idempotency-Key"))
		ok := succeeded
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"succeeded":%t,"index":7,"results":[]}`, ok)
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	txn := `{"compare":[{"key":"k","target":"exists","op":"=","value":false}],"success":[{"op":"put","key":"k","value":"eA=="}]}`

	code, out, errOut := cli(t, txn, "txn", "--addr", addr)
	require.Equal(t, 0, code, errOut)
	assert.Equal(t, `{"succeeded":true,"index":7,"results":[]}`+"\n", out)
	mu.Lock()
	assert.Equal(t, []string{"/v1/txn? " + txn}, bodies)
	assert.Len(t, keys[0], 32, "a transaction that writes carries an idempotency key")
	succeeded = false
	mu.Unlock()

	code, _, _ = cli(t, txn, "txn", "--addr", addr, "-")
	assert.Equal(t, exitNotFound, code, "the failure branch ran")

	code, _, errOut = cli(t, "not json", "txn", "--addr", addr)
	assert.Equal(t, exitUsage, code, errOut)
}
