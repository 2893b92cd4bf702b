package test

import (
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/raftkv/raftkv/test/harness"
)

// expiryBound is how late after its TTL a session may end with no leader change (README: tick 0.2 s +
// one commit), with room for a loaded machine.
const expiryBound = 5 * time.Second

func addrsOf(c *harness.Cluster) string {
	return c.Node(0).HTTPAddr + "," + c.Node(1).HTTPAddr + "," + c.Node(2).HTTPAddr
}

// waitLine waits until p has printed a line for which match is true and returns when it saw it.
func waitLine(t *testing.T, p *harness.CLIProcess, within time.Duration, what string, match func(string) bool) time.Time {
	t.Helper()
	var at time.Time
	require.Eventually(t, func() bool {
		if slices.ContainsFunc(p.Lines(), match) {
			at = time.Now()
			return true
		}
		return false
	}, within, 20*time.Millisecond, "never printed %s; stdout so far:\n%s", what, p.Stdout())
	return at
}

// raftkv register KEY VALUE --ttl: the key exists with its value while the process runs (through several
// TTLs), is gone within the bound after kill -9 (and not before the TTL since the last renew), and is
// deleted at once when the process is interrupted.
func TestRegisterCLIKeyLivesWithTheProcess(t *testing.T) {
	c := harness.StartCluster(t, 3, harness.Options{})
	addrs := addrsOf(c)
	createSession(t, c, 0, `{"ttl":"5s"}`)
	const ttl = 3 * time.Second

	reg := harness.StartCLI(t, "register", "--addr", addrs, "--ttl", ttl.String(), "svc/web/1", "10.0.0.1:8080")
	waitLine(t, reg, 30*time.Second, "registered", func(l string) bool { return strings.HasPrefix(l, "registered svc/web/1 ") })
	registered := time.Now()
	// Present throughout three TTLs: checked on every node, over and over.
	for time.Since(registered) < 3*ttl {
		for i := range 3 {
			r := c.Node(i).Do(http.MethodGet, "/v1/kv/svc/web/1", nil)
			require.True(t, r.OK(), "the registration vanished while its process runs: %s", r)
			require.Equal(t, "10.0.0.1:8080", string(r.Body))
			require.NotEmpty(t, r.Header.Get("X-Kv-Session"))
		}
		time.Sleep(100 * time.Millisecond) // the probe's pace, not a wait for a state
	}

	reg.Kill9()
	killed := time.Now()
	var gone time.Time
	require.Eventually(t, func() bool {
		r := c.Node(1).Do(http.MethodGet, "/v1/kv/svc/web/1", nil)
		if r.Status == http.StatusNotFound {
			gone = time.Now()
			return true
		}
		return false
	}, ttl+expiryBound+10*time.Second, 20*time.Millisecond, "the registration outlived its process")
	took := gone.Sub(killed)
	t.Logf("registration gone %s after kill -9 (TTL %s)", took, ttl)
	assert.GreaterOrEqual(t, took, ttl-ttl/3-100*time.Millisecond, "gone before its TTL")
	assert.Less(t, took, ttl+expiryBound, "gone later than the bound")

	// A graceful stop deregisters at once.
	reg2 := harness.StartCLI(t, "register", "--addr", addrs, "--ttl", "30s", "svc/web/2", "10.0.0.2:8080")
	waitLine(t, reg2, 30*time.Second, "registered", func(l string) bool { return strings.HasPrefix(l, "registered svc/web/2 ") })
	reg2.Interrupt()
	code, ok := reg2.Wait(10 * time.Second)
	require.True(t, ok, "register did not stop on SIGINT")
	assert.Equal(t, 0, code)
	r := c.Node(2).Do(http.MethodGet, "/v1/kv/svc/web/2", nil)
	assert.Equal(t, http.StatusNotFound, r.Status, "deregistered at once on SIGINT (30 s TTL): %s", r)
}

// The checkpointed countdown across a restart of every node (kill -9 of all three, then all started
// again): an unrenewed session continues from the remaining TTL its last checkpoint recorded, not from
// its full TTL, and is not expired before its TTL; a session renewed right after the restart lives on.
func TestSessionCountdownSurvivesAFullClusterRestart(t *testing.T) {
	c := harness.StartCluster(t, 3, harness.Options{})
	const ttl = 30 * time.Second
	abandoned := createSession(t, c, 0, `{"ttl":"30s","behavior":"delete"}`)
	created := time.Now()
	require.True(t, c.Node(0).Do(http.MethodPut, "/v1/kv/svc/abandoned?session="+abandoned, []byte("x")).OK())
	kept := createSession(t, c, 1, `{"ttl":"30s"}`)

	// Half the TTL passes with the cluster up: several checkpoints (every 2 s) record the countdown.
	require.Eventually(t, func() bool { return time.Since(created) > ttl/2 }, ttl, 100*time.Millisecond)
	require.True(t, c.Node(1).Do(http.MethodPut, "/v1/session/"+kept+"/renew", nil).OK())
	down := time.Now()
	for i := range 3 {
		c.Kill9(i)
	}
	for i := range 3 {
		c.Restart(i)
	}
	c.WaitAllReady(t)
	up := time.Now()
	t.Logf("cluster down and up again in %s", up.Sub(down).Round(time.Millisecond))
	require.True(t, c.Node(2).Do(http.MethodPut, "/v1/session/"+kept+"/renew", nil).OK(), "the renewed session did not survive the restart")

	var gone time.Time
	require.Eventually(t, func() bool {
		r := c.Node(2).Do(http.MethodGet, "/v1/session/"+abandoned, nil)
		if r.Status == http.StatusNotFound {
			gone = time.Now()
			return true
		}
		return false
	}, ttl+expiryBound+10*time.Second, 50*time.Millisecond, "the abandoned session was never expired")
	sinceCreate, sinceUp := gone.Sub(created), gone.Sub(up)
	t.Logf("abandoned session gone %s after it was created, %s after the cluster came back (TTL %s)", sinceCreate, sinceUp, ttl)
	assert.GreaterOrEqual(t, sinceCreate, ttl, "expired before its TTL")
	// What was left at the last checkpoint before the kill (at most one checkpoint interval, 2 s, more
	// than what was left at the kill), then the bound; a countdown reset to the full TTL would need 30 s.
	left := ttl - down.Sub(created) + 2*time.Second
	assert.Less(t, sinceUp, left+expiryBound, "the restart gave the session more time than it had left (reset to its TTL?)")
	r := c.Node(0).Do(http.MethodGet, "/v1/kv/svc/abandoned", nil)
	assert.Equal(t, http.StatusNotFound, r.Status, "its ephemeral key went with it")
	r = c.Node(0).Do(http.MethodGet, "/v1/session/"+kept, nil)
	assert.True(t, r.OK(), "the renewed session expired: %s", r)
}
