package chaos

import (
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/raftkv/raftkv/test/harness"
)

// Issue 13's expiry contract across several leader changes in a row, one of them a partition: sessions
// are created (each with an ephemeral key) and applied by every node; then, within one TTL, the leader
// is cut off from the others by a partition, the next one is paused, and the one after is partitioned
// off again, each fault begun as soon as the previous one elected a leader. Meanwhile kept sessions are
// renewed every TTL/3, lock contenders write through the fence, and a holder stops renewing past its
// TTL and then tries to write.
//
// The bound checked is the README's with what each change added: a new leader continues from the
// deadline it noted when it applied the create, and every node applied it before the faults (checked),
// no node restarted, so no change adds anything: expiry ≤ applied everywhere + TTL + tick + commit
// (plus slack for the polling and a loaded machine). A new leader that restarted the full TTL would
// expire them a TTL after the last election, several seconds past it.
func TestChaosSessionsLeaderChanges(t *testing.T) {
	requireEnv(t, true)
	c := NewCluster(t, env, fmt.Sprintf("rkc-%s-sessions-leaders", strings.ReplaceAll(env.RunID, ".", "-")), 3, false)
	const ttl = 12 * time.Second
	const slack = 3 * time.Second // tick 0.2 s, a commit, the 0.1 s polling, a loaded machine
	sh := &sessionHarness{t: t, c: c}
	defer func() {
		if t.Failed() {
			dir := filepath.Join(env.Artifacts, "sessions-leaders")
			if err := c.DumpLogs(dir); err == nil {
				t.Logf("node logs saved in %s", dir)
			}
		}
	}()
	defer func() { _ = c.HealNetAll() }()

	require.NoError(t, harness.Poll(30*time.Second, func() error {
		_, err := sh.createSession(`{"ttl":"12s"}`)
		return err
	}))

	stop := make(chan struct{})
	var wg sync.WaitGroup
	kept := make([]*keptSession, 3)
	for i := range kept {
		id, err := sh.createSession(`{"ttl":"12s"}`)
		require.NoError(t, err)
		kept[i] = &keptSession{id: id, acked: time.Now()}
		wg.Add(1)
		go func() { defer wg.Done(); sh.keep(kept[i], ttl, stop) }()
	}

	var abandoned []*abandonedSession
	for range 3 {
		sent := time.Now()
		id, err := sh.createSession(`{"ttl":"12s","behavior":"delete"}`)
		require.NoError(t, err)
		key := "svc/" + id
		r := sh.do(http.MethodPut, "/v1/kv/"+key+"?session="+id, []byte("addr"))
		require.True(t, r.OK(), "ephemeral key: %s", r)
		abandoned = append(abandoned, &abandonedSession{id: id, key: key, sent: sent, gone: make(chan time.Time, 1)})
	}
	// Every node has applied every create (a stale read on a node shows only what it applied): from
	// here each one counts them down.
	for _, a := range abandoned {
		for _, n := range c.Up() {
			require.NoError(t, harness.Poll(10*time.Second, func() error {
				if r := n.Client().Do(http.MethodGet, "/v1/session/"+a.id+"?consistency=stale", nil); !r.OK() {
					return fmt.Errorf("%s has not applied session %s: %s", n, a.id, r)
				}
				return nil
			}))
		}
	}
	appliedAll := time.Now()
	for _, a := range abandoned {
		go func() {
			gone, err := sh.waitGoneAny(a.id, appliedAll.Add(3*ttl))
			if err != nil {
				close(a.gone)
				return
			}
			a.gone <- gone
		}()
	}

	fence := &fenceLog{}
	for i := range 2 {
		wg.Add(1)
		go func() { defer wg.Done(); sh.contend(fmt.Sprintf("c%d", i), fence, stop) }()
	}
	zombieDone := make(chan zombieResult, 1)
	go func() { zombieDone <- sh.zombie(fence, 6*time.Second) }()

	// Three leader changes in a row, each fault begun as soon as the previous one elected a leader.
	leader, err := c.Leader(30 * time.Second)
	require.NoError(t, err)
	faults := []struct {
		name       string
		make, heal func(l *Node) error
	}{
		{"partition", func(l *Node) error { return c.Partition([]*Node{l}, othersThan(c, l)) }, func(*Node) error { return c.HealNetAll() }},
		{"pause", c.Pause, c.Unpause},
		{"partition", func(l *Node) error { return c.Partition([]*Node{l}, othersThan(c, l)) }, func(*Node) error { return c.HealNetAll() }},
	}
	for _, f := range faults {
		start := time.Now()
		require.NoError(t, f.make(leader), "%s %s", f.name, leader)
		next, err := leaderAmong(othersThan(c, leader), 30*time.Second)
		require.NoError(t, err, "no leader after the %s of %s", f.name, leader)
		c.Logf("%s of leader %s: %s leads after %v (%v after the sessions were applied everywhere)",
			f.name, leader, next, time.Since(start).Round(time.Millisecond), time.Since(appliedAll).Round(time.Millisecond))
		require.NoError(t, f.heal(leader))
		leader = next
	}
	lastChange := time.Since(appliedAll)
	_, err = c.WaitHealthy(defaultBound)
	require.NoError(t, err)
	c.Logf("faults healed; the last leader change ended %v after the sessions were applied (TTL %v)", lastChange.Round(time.Millisecond), ttl)

	bound := ttl + slack
	for _, a := range abandoned {
		gone, ok := <-a.gone
		if !assert.True(t, ok, "abandoned session %s was still there %v after every node applied it", a.id, 3*ttl) {
			continue
		}
		c.Logf("abandoned session %s expired %v after it was sent, %v after every node applied it (TTL %v, bound %v)",
			a.id, gone.Sub(a.sent).Round(time.Millisecond), gone.Sub(appliedAll).Round(time.Millisecond), ttl, bound)
		assert.GreaterOrEqual(t, gone.Sub(a.sent), ttl, "session %s expired before its TTL", a.id)
		assert.LessOrEqual(t, gone.Sub(appliedAll), bound, "session %s expired later than the bound: a leader change added time", a.id)
		r := sh.do(http.MethodGet, "/v1/kv/"+a.key, nil)
		assert.Equal(t, http.StatusNotFound, r.Status, "the ephemeral key of %s outlived it: %s", a.id, r)
	}

	z := <-zombieDone
	close(stop)
	wg.Wait()
	for _, k := range kept {
		k.mu.Lock()
		assert.Empty(t, k.violations, "kept session %s", k.id)
		if k.lapsed {
			c.Logf("kept session %s lapsed after %v without an acknowledged renew (allowed)", k.id, k.longestGap)
		}
		k.mu.Unlock()
	}
	checkFence(t, c, fence, z)
}

// othersThan is every running member but n.
func othersThan(c *Cluster, n *Node) []*Node {
	var others []*Node
	for _, o := range c.Up() {
		if o != n && o.State() == Running {
			others = append(others, o)
		}
	}
	return others
}

// leaderAmong polls nodes until one of them says it leads.
func leaderAmong(nodes []*Node, timeout time.Duration) (*Node, error) {
	var leader *Node
	err := harness.Poll(timeout, func() error {
		for _, n := range nodes {
			ctl, _ := n.control()
			if ctl == nil {
				continue
			}
			if st, err := ctl.Status(); err == nil && st.State == "Leader" {
				leader = n
				return nil
			}
		}
		return fmt.Errorf("none of %v leads", nodes)
	})
	return leader, err
}

// waitGoneAny polls the session on every node at once (a paused or cut-off node must not delay
// noticing the expiry on the others) and returns when the first answered 404.
func (sh *sessionHarness) waitGoneAny(id string, deadline time.Time) (time.Time, error) {
	found := make(chan time.Time, 1)
	done := make(chan struct{})
	defer close(done)
	for _, n := range sh.c.Nodes() {
		go func() {
			for time.Now().Before(deadline) {
				if cl := n.Client(); cl != nil && n.State() == Running {
					c := *cl
					c.Timeout = time.Second
					if r := c.Do(http.MethodGet, "/v1/session/"+id, nil); r.Status == http.StatusNotFound {
						select {
						case found <- time.Now():
						default:
						}
						return
					}
				}
				select {
				case <-done:
					return
				case <-time.After(100 * time.Millisecond):
				}
			}
		}()
	}
	select {
	case at := <-found:
		return at, nil
	case <-time.After(time.Until(deadline)):
		return time.Time{}, fmt.Errorf("still present at the deadline")
	}
}
