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

// raftkv elect and elect --observe, as processes: the observer prints the vacancy, the first leader, the
// next one once the first is killed -9 and its session has expired (not before; the vacancy between may
// show), and the vacancy once the last leader is killed too; a campaigner waiting behind a live leader
// is not elected.
func TestElectCLIObservesLeaderChangesAndVacancy(t *testing.T) {
	c := harness.StartCluster(t, 3, harness.Options{})
	addrs := addrsOf(c)
	createSession(t, c, 0, `{"ttl":"5s"}`) // wait until sessions are accepted
	const ttl = 3 * time.Second

	obs := harness.StartCLI(t, "elect", "--observe", "--addr", addrs, "svc/primary")
	waitLine(t, obs, 30*time.Second, "(vacant)", func(l string) bool { return l == "(vacant)" })

	a := harness.StartCLI(t, "elect", "--addr", addrs, "--ttl", ttl.String(), "svc/primary", "node-a")
	waitLine(t, a, 30*time.Second, "elected", func(l string) bool { return strings.HasPrefix(l, "elected ") })
	waitLine(t, obs, 10*time.Second, "node-a", func(l string) bool { return l == "node-a" })

	b := harness.StartCLI(t, "elect", "--addr", addrs, "--ttl", ttl.String(), "svc/primary", "node-b")
	// b campaigns behind a live leader for two TTLs: a's renews keep it leading.
	require.Eventually(t, func() bool {
		r := c.Node(1).Do(http.MethodGet, "/v1/sessions", nil)
		return r.OK() && strings.Count(string(r.Body), `"elect svc/primary"`) == 2
	}, 30*time.Second, 50*time.Millisecond, "b's session never appeared")
	campaigning := time.Now()
	require.Eventually(t, func() bool { return time.Since(campaigning) > 2*ttl }, 3*ttl, 50*time.Millisecond)
	assert.NotContains(t, b.Stdout(), "elected", "elected while the leader still renews")
	assert.Equal(t, []string{"(vacant)", "node-a"}, obs.Lines())

	// kill -9 the leader: b is elected once a's session expires (its last renew was at most TTL/3 ago).
	a.Kill9()
	killed := time.Now()
	elected := waitLine(t, b, ttl+expiryBound+10*time.Second, "elected", func(l string) bool { return strings.HasPrefix(l, "elected ") })
	took := elected.Sub(killed)
	t.Logf("b elected %s after the leader's kill -9 (TTL %s)", took, ttl)
	assert.GreaterOrEqual(t, took, ttl-ttl/3-100*time.Millisecond, "a's session expired before its TTL")
	assert.Less(t, took, ttl+expiryBound, "a's session expired later than the bound")
	waitLine(t, obs, 10*time.Second, "node-b", func(l string) bool { return l == "node-b" })

	// kill -9 the last leader: the observer prints the vacancy once its session expires.
	b.Kill9()
	killed = time.Now()
	vacant := waitLine(t, obs, ttl+expiryBound+10*time.Second, "the vacancy after node-b", func(string) bool {
		ls := obs.Lines()
		i := slices.Index(ls, "node-b")
		return i >= 0 && slices.Contains(ls[i:], "(vacant)")
	})
	took = vacant.Sub(killed)
	t.Logf("vacancy observed %s after the last leader's kill -9 (TTL %s)", took, ttl)
	assert.GreaterOrEqual(t, took, ttl-ttl/3-100*time.Millisecond, "b's session expired before its TTL")
	assert.Less(t, took, ttl+expiryBound)
	// Between a and b the observer may or may not catch the moment nobody led (a's key is deleted when
	// its session expires, then b takes it): both are true histories.
	seen := obs.Lines()
	if len(seen) == 5 {
		assert.Equal(t, []string{"(vacant)", "node-a", "(vacant)", "node-b", "(vacant)"}, seen)
	} else {
		assert.Equal(t, []string{"(vacant)", "node-a", "node-b", "(vacant)"}, seen)
	}
	r := c.Node(2).Do(http.MethodGet, "/v1/kv/svc/primary", nil)
	assert.Equal(t, http.StatusNotFound, r.Status, "an elect key goes with its session: %s", r)

	obs.Interrupt()
	code, ok := obs.Wait(10 * time.Second)
	require.True(t, ok, "elect --observe did not stop on SIGINT")
	assert.Equal(t, 0, code)
}
