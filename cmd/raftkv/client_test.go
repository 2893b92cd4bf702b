package main

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// failFirst injects status/code into the first n requests.
func failFirst(n, status int, code string) func(http.ResponseWriter, *http.Request, int) bool {
	return func(w http.ResponseWriter, r *http.Request, i int) bool {
		if i > n {
			return false
		}
		writeFakeError(w, status, code, "injected "+code, nil)
		return true
	}
}

// hangUp closes the connection of the first n requests without answering, after reading the request:
// the server may have acted on it.
func hangUp(n int) func(http.ResponseWriter, *http.Request, int) bool {
	return func(w http.ResponseWriter, r *http.Request, i int) bool {
		if i > n {
			return false
		}
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.Close()
		}
		return true
	}
}

func TestRetriesNoLeaderThenSucceeds(t *testing.T) {
	t.Parallel()
	for _, code := range []string{"no_leader", "not_ready", "timeout", "shutting_down"} {
		t.Run(code, func(t *testing.T) {
			t.Parallel()
			f, addr := newFakeAPI(t)
			f.setInject(failFirst(2, 503, code))
			exit, out, errOut := cli(t, "", "put", "--addr", addr, "k", "v")
			require.Equal(t, 0, exit, errOut)
			assert.Equal(t, "1\n", out)
			assert.Empty(t, errOut)
			assert.Len(t, f.requestLog(), 3, "two 503s, then the write")
		})
	}
}

// A write carries an Idempotency-Key, so an indeterminate answer or a broken connection is retried with
// the same key: the server answers the retry with the first application's outcome.
func TestIndeterminateWriteIsRetriedWithItsIdempotencyKey(t *testing.T) {
	t.Parallel()
	f, addr := newFakeAPI(t)
	f.setInject(failFirst(1, 503, "indeterminate"))
	code, out, errOut := cli(t, "", "put", "--addr", addr, "k", "v")
	assert.Equal(t, 0, code, errOut)
	assert.Equal(t, "1\n", out)
	assert.Len(t, f.requestLog(), 2)
}

func TestWriteWhoseConnectionBrokeAfterSendingIsRetried(t *testing.T) {
	t.Parallel()
	f, addr := newFakeAPI(t)
	f.setInject(hangUp(1))
	code, _, errOut := cli(t, "", "put", "--addr", addr, "k", "v")
	assert.Equal(t, 0, code, errOut)
	assert.Len(t, f.requestLog(), 2, "retried with the same key")
}

// Writes without an idempotency key (membership) are still never retried once they may have applied.
func TestNonIdempotentWriteWhoseConnectionBrokeIsIndeterminate(t *testing.T) {
	t.Parallel()
	f, addr := newFakeAPI(t)
	f.setInject(hangUp(1))
	code, _, errOut := cli(t, "", "cluster", "remove", "--addr", addr, "n2")
	assert.Equal(t, 3, code)
	assert.Contains(t, errOut, "may or may not have been applied")
	assert.Len(t, f.requestLog(), 1, "not retried")
}

func TestReadWhoseConnectionBrokeIsRetried(t *testing.T) {
	t.Parallel()
	f, addr := newFakeAPI(t)
	code, _, errOut := cli(t, "", "put", "--addr", addr, "k", "v")
	require.Equal(t, 0, code, errOut)
	f.setInject(func(w http.ResponseWriter, r *http.Request, n int) bool {
		return n == 2 && hangUp(2)(w, r, n)
	})
	code, out, errOut := cli(t, "", "get", "--addr", addr, "k")
	require.Equal(t, 0, code, errOut)
	assert.Equal(t, "v", out)
}

func TestConnectionRefusedFailsOverToNextAddress(t *testing.T) {
	t.Parallel()
	f, addr := newFakeAPI(t)
	dead := deadAddr(t)
	// A refused connection never reached a node, so even a write moves on.
	code, out, errOut := cli(t, "", "put", "--addr", dead+",http://"+addr, "k", "v")
	require.Equal(t, 0, code, errOut)
	assert.Equal(t, "1\n", out)
	code, out, errOut = cli(t, "", "get", "k", "--addr", dead+","+addr)
	require.Equal(t, 0, code, errOut)
	assert.Equal(t, "v", out)
	assert.Len(t, f.requestLog(), 2)
}

func TestClientSticksToTheNodeThatAnswered(t *testing.T) {
	t.Parallel()
	f, addr := newFakeAPI(t)
	c, err := newClient(clientConfig{addrs: []string{deadAddr(t), addr}, minBackoff: time.Millisecond})
	require.NoError(t, err)
	defer c.close()
	ctx := context.Background()
	_, err = c.put(ctx, "k", []byte("v"), casCond{})
	require.NoError(t, err)
	for range 3 {
		_, err = c.get(ctx, "k", false)
		require.NoError(t, err)
	}
	assert.Len(t, f.requestLog(), 4, "one request per call once the live node is found")
}

func TestGivesUpAfterTheRetryBudget(t *testing.T) {
	t.Parallel()
	f, addr := newFakeAPI(t)
	f.setInject(failFirst(1<<30, 503, "no_leader"))
	start := time.Now()
	// A budget long enough for two attempts even on a loaded machine under -race (400 ms was not).
	code, _, errOut := cli(t, "", "get", "--addr", addr, "--timeout", "1500ms", "k")
	assert.Equal(t, 3, code)
	assert.Contains(t, errOut, "gave up after 1.5s")
	assert.Contains(t, errOut, "code no_leader")
	assert.Less(t, time.Since(start), 15*time.Second)
	assert.GreaterOrEqual(t, len(f.requestLog()), 2)
}

func TestFourXXIsNotRetried(t *testing.T) {
	t.Parallel()
	f, addr := newFakeAPI(t)
	f.setInject(failFirst(1, 400, "invalid_key"))
	code, _, errOut := cli(t, "", "get", "--addr", addr, "k")
	assert.Equal(t, 2, code)
	assert.Contains(t, errOut, "code invalid_key")
	assert.Len(t, f.requestLog(), 1)
}

func TestInterruptedCallStops(t *testing.T) {
	t.Parallel()
	f, addr := newFakeAPI(t)
	f.setInject(failFirst(1<<30, 503, "no_leader"))
	c, err := newClient(clientConfig{addrs: []string{addr}, minBackoff: 50 * time.Millisecond})
	require.NoError(t, err)
	defer c.close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := c.get(ctx, "k", false)
		done <- err
	}()
	require.Eventually(t, func() bool { return len(f.requestLog()) >= 2 }, 5*time.Second, 5*time.Millisecond)
	cancel()
	select {
	case err := <-done:
		require.Error(t, err)
		assert.Contains(t, err.Error(), "interrupted")
		assert.False(t, errors.Is(err, errGaveUp))
	case <-time.After(5 * time.Second):
		t.Fatal("call did not stop after its context was cancelled")
	}
}

func TestNormalizeAddr(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"127.0.0.1:7000":          "http://127.0.0.1:7000",
		" http://10.0.0.1:80/ ":   "http://10.0.0.1:80",
		"https://example.com:443": "https://example.com:443",
		"[::1]:7000":              "http://[::1]:7000",
		":7000":                   "http://127.0.0.1:7000",
	} {
		got, err := normalizeAddr(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, got, in)
	}
	for _, bad := range []string{"localhost", "http://h:1/path", "ftp://h:1", "h:"} {
		_, err := normalizeAddr(bad)
		assert.Error(t, err, bad)
	}
	assert.Equal(t, []string{"a:1", "b:2"}, splitAddrs(" a:1, ,b:2,"))
}

func TestExitCodes(t *testing.T) {
	t.Parallel()
	assert.Equal(t, 0, exitCode(nil))
	assert.Equal(t, 1, exitCode(&apiError{status: 404, code: codeKeyNotFound}))
	assert.Equal(t, 1, exitCode(&apiError{status: 404, code: codeUnknownMember}))
	assert.Equal(t, 1, exitCode(&apiError{status: 409, code: codeCASMismatch}))
	assert.Equal(t, 2, exitCode(&apiError{status: 400, code: "invalid_key"}))
	assert.Equal(t, 3, exitCode(&apiError{status: 404, code: "not_found"}))
	assert.Equal(t, 3, exitCode(&apiError{status: 503, code: codeIndeterminate}))
	assert.Equal(t, 3, exitCode(&apiError{status: 500, code: "internal"}))
	assert.Equal(t, 3, exitCode(errIndeterminate))
	assert.Equal(t, 3, exitCode(errors.New("other")))
}
