package test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/raftkv/raftkv/test/harness"
)

// createSession creates a session through node i and returns its id.
func createSession(t *testing.T, c *harness.Cluster, i int, body string) string {
	t.Helper()
	var id string
	require.Eventually(t, func() bool { // sessions wait for the leader to learn every member's log format
		r := c.Node(i).Do(http.MethodPost, "/v1/session", []byte(body))
		if !r.OK() {
			return false
		}
		var s struct{ ID string }
		require.NoError(t, json.Unmarshal(r.Body, &s))
		id = s.ID
		return true
	}, 30*time.Second, 100*time.Millisecond)
	return id
}

// The expiry contract with real processes and kill -9 of the leader half way through a TTL: a session
// renewed every TTL/3 through the live nodes is never expired, an abandoned one (and its ephemeral key)
// is expired no earlier than its TTL after it was created and within the documented bound after.
func TestSessionExpiryAcrossALeaderKill(t *testing.T) {
	c := harness.StartCluster(t, 3, harness.Options{})
	leader := c.Leader(t)
	follower := (leader + 1) % 3
	const ttl = 4 * time.Second
	kept := createSession(t, c, follower, `{"ttl":"4s"}`)
	sent := time.Now()
	abandoned := createSession(t, c, follower, `{"ttl":"4s","behavior":"delete"}`)
	r := c.Node(follower).Do(http.MethodPut, "/v1/kv/svc/abandoned?session="+abandoned, []byte("10.0.0.9"))
	require.True(t, r.OK(), r.String())

	var mu sync.Mutex
	var renewFailed []string
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(ttl / 3):
			}
			for _, i := range c.Live() {
				r := c.Node(i).Do(http.MethodPut, "/v1/session/"+kept+"/renew", nil)
				if r.OK() {
					break
				}
				if r.Status == http.StatusNotFound {
					mu.Lock()
					renewFailed = append(renewFailed, r.String())
					mu.Unlock()
					return
				}
			}
		}
	}()
	t.Cleanup(func() { close(stop); wg.Wait() })

	time.Sleep(ttl / 2) // let the first leader count half the TTL down: the fault's timing, not a wait for a state
	c.Kill9(leader)

	var gone time.Time
	require.Eventually(t, func() bool {
		// Linearizable: a stale read of a follower that has not applied the create yet also says 404.
		r := c.Node(follower).Do(http.MethodGet, "/v1/session/"+abandoned, nil)
		if r.Status == http.StatusNotFound {
			gone = time.Now()
			return true
		}
		return false
	}, ttl+20*time.Second, 50*time.Millisecond, "the abandoned session was never expired")
	took := gone.Sub(sent)
	t.Logf("abandoned session expired %s after it was created (TTL %s) across kill -9 of the leader", took, ttl)
	assert.GreaterOrEqual(t, took, ttl, "expired early")
	// The bound (README): TTL + tick + commit + one leader change's (checkpoint interval + election).
	assert.Less(t, took, ttl+10*time.Second, "expired later than the documented bound allows")
	r = c.Node(follower).Do(http.MethodGet, "/v1/kv/svc/abandoned", nil)
	assert.Equal(t, http.StatusNotFound, r.Status, "its ephemeral key went with it")

	require.Eventually(t, func() bool { return time.Since(sent) > 3*ttl }, 5*ttl, 100*time.Millisecond)
	r = c.Node(follower).Do(http.MethodGet, "/v1/session/"+kept, nil)
	require.True(t, r.OK(), "the renewed session was expired: %s", r)
	mu.Lock()
	defer mu.Unlock()
	require.Empty(t, renewFailed)
}

// raftkv lock: two contenders never run their commands at the same time, each gets a larger fencing
// token than the one before, and a holder whose session is revoked under it has its command stopped
// and exits with status 4.
func TestLockCLIMutualExclusionAndLoss(t *testing.T) {
	c := harness.StartCluster(t, 3, harness.Options{})
	addrs := c.Node(0).HTTPAddr + "," + c.Node(1).HTTPAddr + "," + c.Node(2).HTTPAddr
	createSession(t, c, 0, `{"ttl":"5s"}`) // wait until sessions are accepted
	log := t.TempDir() + "/log"
	script := `echo "start $RAFTKV_LOCK_TOKEN" >> ` + log + `; sleep 1; echo "end $RAFTKV_LOCK_TOKEN" >> ` + log
	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _, code := harness.RunCLI(t, "lock", "--addr", addrs, "--ttl", "5s", "jobs/nightly", "--", "sh", "-c", script)
			assert.Equal(t, 0, code)
		}()
	}
	wg.Wait()
	lines := readLines(t, log)
	require.Len(t, lines, 6)
	var last uint64
	for i := 0; i < len(lines); i += 2 {
		var a, b uint64
		_, err := fmt.Sscanf(lines[i], "start %d", &a)
		require.NoError(t, err, lines[i])
		_, err = fmt.Sscanf(lines[i+1], "end %d", &b)
		require.NoError(t, err, lines[i+1])
		require.Equal(t, a, b, "a holder's run was interleaved with another's: %v", lines)
		require.Greater(t, a, last, "fencing tokens must grow: %v", lines)
		last = a
	}

	// Loss: revoke the holder's session while its command runs.
	done := make(chan int, 1)
	go func() {
		_, _, code := harness.RunCLI(t, "lock", "--addr", addrs, "--ttl", "5s", "--grace", "1s", "jobs/long", "--", "sleep", "60")
		done <- code
	}()
	var holder string
	require.Eventually(t, func() bool {
		r := c.Node(0).Do(http.MethodGet, "/v1/kv/jobs/long", nil)
		holder = r.Header.Get("X-Kv-Session")
		return r.OK() && holder != ""
	}, 30*time.Second, 100*time.Millisecond)
	require.True(t, c.Node(1).Do(http.MethodDelete, "/v1/session/"+holder, nil).OK())
	select {
	case code := <-done:
		require.Equal(t, 6, code, "a lost lock exits with status 6")
	case <-time.After(30 * time.Second):
		t.Fatal("raftkv lock did not stop its command after losing the lock")
	}
}

func readLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return strings.Split(strings.TrimSpace(string(b)), "\n")
}
