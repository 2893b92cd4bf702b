package chaos

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/raftkv/raftkv/test/harness"
)

// Issue 13's proof under faults, in one bounded scenario: the leader is killed (and restarted), then
// the next leader is paused past the election timeout, while
//   - kept sessions are renewed every TTL/3 through whichever node answers: none may be expired while its
//     last acknowledged renew is less than TTL old (checked against the recorded acknowledgements);
//   - abandoned sessions, each with an ephemeral key, must be expired no earlier than TTL after they were
//     created and within the documented late bound (README: TTL + tick + commit + per leader change a
//     checkpoint interval and an election), and their keys with them;
//   - lock contenders take a lock and write a protected resource only through a transaction that accepts
//     a fencing token ≥ the highest it has accepted; a holder that stops renewing and comes back after
//     its TTL ("paused") has its write refused; the accepted tokens never go down; and the lock can be
//     taken again at the end.
func TestChaosSessions(t *testing.T) {
	requireEnv(t, false)
	c := NewCluster(t, env, fmt.Sprintf("rkc-%s-sessions", strings.ReplaceAll(env.RunID, ".", "-")), 3, false)
	const ttl = 6 * time.Second
	// Two leader changes: each may add a checkpoint interval (2 s) and an election (≤ ~5 s on a loaded
	// machine, paused leader included), plus the tick and commits.
	const lateBound = ttl + 2*(2*time.Second+5*time.Second) + 2*time.Second
	sh := &sessionHarness{t: t, c: c}
	defer func() {
		if t.Failed() {
			dir := filepath.Join(env.Artifacts, "sessions")
			if err := c.DumpLogs(dir); err == nil {
				t.Logf("node logs saved in %s", dir)
			}
		}
	}()

	// Sessions are accepted once the leader knows every member's log format.
	require.NoError(t, harness.Poll(30*time.Second, func() error {
		_, err := sh.createSession(`{"ttl":"6s"}`)
		return err
	}))

	stop := make(chan struct{})
	var wg sync.WaitGroup
	kept := make([]*keptSession, 4)
	for i := range kept {
		id, err := sh.createSession(`{"ttl":"6s"}`)
		require.NoError(t, err)
		kept[i] = &keptSession{id: id, acked: time.Now()}
		wg.Add(1)
		go func() { defer wg.Done(); sh.keep(kept[i], ttl, stop) }()
	}
	var abandoned []*abandonedSession
	abandon := func(n int) {
		for range n {
			sent := time.Now()
			id, err := sh.createSession(`{"ttl":"6s","behavior":"delete"}`)
			if !assert.NoError(t, err) {
				return
			}
			key := "svc/" + id
			r := sh.do(http.MethodPut, "/v1/kv/"+key+"?session="+id, []byte("addr"))
			assert.True(t, r.OK(), "ephemeral key: %s", r)
			a := &abandonedSession{id: id, key: key, sent: sent, gone: make(chan time.Time, 1)}
			abandoned = append(abandoned, a)
			// Watch for its end from now on, through the faults, so the time measured is the expiry's.
			go func() {
				gone, err := sh.waitGone(a.id, a.sent.Add(lateBound+5*time.Second))
				if err != nil {
					close(a.gone)
					return
				}
				a.gone <- gone
			}()
		}
	}
	abandon(3)

	fence := &fenceLog{}
	for i := range 3 {
		wg.Add(1)
		go func() { defer wg.Done(); sh.contend(fmt.Sprintf("c%d", i), fence, stop) }()
	}
	zombieDone := make(chan zombieResult, 1)
	go func() { zombieDone <- sh.zombie(fence, ttl) }()

	// The faults: kill the leader mid-TTL, restart it; then pause the next leader past the election timeout.
	time.Sleep(2 * time.Second) // the workload runs before the first fault: its timing, not a wait for a state
	leader, err := c.Leader(30 * time.Second)
	require.NoError(t, err)
	c.Logf("killing leader %s", leader)
	require.NoError(t, c.Kill(leader))
	abandon(3) // created while the cluster elects: their countdown spans the change
	time.Sleep(3 * time.Second)
	require.NoError(t, c.Start(leader))
	_, err = c.WaitHealthy(defaultBound)
	require.NoError(t, err)
	next, err := c.Leader(30 * time.Second)
	require.NoError(t, err)
	c.Logf("pausing leader %s", next)
	require.NoError(t, c.Pause(next))
	time.Sleep(4 * time.Second)
	require.NoError(t, c.Unpause(next))
	_, err = c.WaitHealthy(defaultBound)
	require.NoError(t, err)
	c.Logf("faults healed")

	// Every abandoned session ends within the bound, never before its TTL.
	for _, a := range abandoned {
		gone, ok := <-a.gone
		if !assert.True(t, ok, "abandoned session %s was still there %v after it was created", a.id, lateBound+5*time.Second) {
			continue
		}
		took := gone.Sub(a.sent)
		c.Logf("abandoned session %s expired after %v (TTL %v, bound %v)", a.id, took.Round(time.Millisecond), ttl, lateBound)
		assert.GreaterOrEqual(t, took, ttl, "session %s expired before its TTL", a.id)
		assert.LessOrEqual(t, took, lateBound, "session %s expired later than the bound", a.id)
		r := sh.do(http.MethodGet, "/v1/kv/"+a.key, nil)
		assert.Equal(t, http.StatusNotFound, r.Status, "the ephemeral key of %s outlived it: %s", a.id, r)
	}

	z := <-zombieDone
	close(stop)
	wg.Wait()

	// Kept sessions: no 404 while the last acknowledged renew was less than a TTL old.
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

// checkFence checks the fenced resource after the faults: the accepted tokens never went down, in the
// order the resource accepted them; the zombie's late write was refused once a newer token had been
// accepted; and the lock can be taken again.
func checkFence(t *testing.T, c *Cluster, fence *fenceLog, z zombieResult) {
	t.Helper()
	const ttl = 6 * time.Second // the contenders' and the zombie's
	sh := &sessionHarness{t: t, c: c}
	// Fencing: the accepted tokens never go down, in the order the resource accepted them.
	fence.mu.Lock()
	accepted := slices.Clone(fence.accepted)
	fence.mu.Unlock()
	slices.SortFunc(accepted, func(a, b fenced) int { return int(a.index) - int(b.index) })
	require.NotEmpty(t, accepted, "no contender ever wrote the resource")
	for i := 1; i < len(accepted); i++ {
		assert.GreaterOrEqual(t, accepted[i].token, accepted[i-1].token, "the resource accepted token %d after %d", accepted[i].token, accepted[i-1].token)
	}
	c.Logf("fencing: %d writes accepted, %d refused; zombie token %d, refused=%t, newer token seen=%t",
		len(accepted), fence.refused.Load(), z.token, z.refused, z.newerSeen)
	if z.err != nil {
		t.Errorf("zombie: %v", z.err)
	} else if z.newerSeen {
		assert.True(t, z.refused, "a holder back after its TTL wrote with an old token after a newer one")
	}

	// And the lock can be taken again.
	id, err := sh.createSession(`{"ttl":"6s"}`)
	require.NoError(t, err)
	require.NoError(t, harness.Poll(ttl+15*time.Second, func() error {
		got, err := sh.acquire(fenceLock, id, "final")
		if err != nil {
			return err
		}
		if !got.Acquired {
			return fmt.Errorf("not acquired")
		}
		return nil
	}), "the lock never became acquirable again")
}

const fenceLock = "fence/lock"

type keptSession struct {
	id         string
	mu         sync.Mutex
	acked      time.Time // send time of the last acknowledged renew (or create)
	violations []string
	lapsed     bool
	longestGap time.Duration
}

type abandonedSession struct {
	id, key string
	sent    time.Time
	gone    chan time.Time // when a node first answered 404; closed if none did in time
}

type fenced struct{ index, token uint64 }

type fenceLog struct {
	mu       sync.Mutex
	accepted []fenced
	refused  atomic.Int64
}

type zombieResult struct {
	token              uint64
	refused, newerSeen bool
	err                error
}

type sessionHarness struct {
	t    *testing.T
	c    *Cluster
	next atomic.Int64 // spreads requests over the nodes
}

// do sends a request to the running nodes in turn until one answers 2xx or 4xx (or 10 s pass): the
// cluster may be electing, and a node being paused does not answer. Every request this test sends is
// safe to repeat (a renew, a create whose duplicate just expires, an acquire by the same session, a
// fenced write of the same token), so an outcome-unknown answer is retried too.
func (sh *sessionHarness) do(method, path string, body []byte) *harness.Response {
	deadline := time.Now().Add(10 * time.Second)
	var r *harness.Response
	start := int(sh.next.Add(1))
	for attempt := start; ; attempt++ {
		up := sh.c.Up()
		var n *Node
		if len(up) > 0 {
			n = up[attempt%len(up)]
		}
		if n != nil && n.State() == Running && n.Client() != nil {
			cl := *n.Client()
			cl.Timeout = 2 * time.Second
			r = cl.Do(method, path, body)
			if r.OK() || (r.Status >= 400 && r.Status < 500) {
				return r
			}
		}
		if time.Now().After(deadline) {
			if r == nil {
				r = &harness.Response{Method: method, Path: path, Err: fmt.Errorf("no node up")}
			}
			return r
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (sh *sessionHarness) createSession(body string) (string, error) {
	r := sh.do(http.MethodPost, "/v1/session", []byte(body))
	if !r.OK() {
		return "", fmt.Errorf("create session: %s", r)
	}
	var s struct{ ID string }
	if err := json.Unmarshal(r.Body, &s); err != nil {
		return "", err
	}
	return s.ID, nil
}

type acquired struct {
	Index    uint64 `json:"index"`
	Acquired bool   `json:"acquired"`
}

func (sh *sessionHarness) acquire(key, id, value string) (acquired, error) {
	r := sh.do(http.MethodPut, "/v1/kv/"+key+"?acquire="+id, []byte(value))
	var a acquired
	if !r.OK() {
		return a, fmt.Errorf("acquire: %s", r)
	}
	return a, json.Unmarshal(r.Body, &a)
}

// keep renews k every ttl/3 until stop, recording the send time of every acknowledged renew. A 404 is
// a violation when it arrives less than ttl after the last acknowledged renew was sent (the session was
// certainly expired early), else a lapse the faults allowed.
func (sh *sessionHarness) keep(k *keptSession, ttl time.Duration, stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		case <-time.After(ttl / 3):
		}
		sent := time.Now()
		r := sh.do(http.MethodPut, "/v1/session/"+k.id+"/renew", nil)
		now := time.Now()
		k.mu.Lock()
		switch {
		case r.OK():
			k.longestGap = max(k.longestGap, sent.Sub(k.acked))
			k.acked = sent
		case r.Status == http.StatusNotFound:
			if now.Before(k.acked.Add(ttl)) {
				k.violations = append(k.violations, fmt.Sprintf("404 at %v, %v after the last acknowledged renew was sent",
					now.Format(time.RFC3339Nano), now.Sub(k.acked)))
			} else {
				k.lapsed, k.longestGap = true, max(k.longestGap, now.Sub(k.acked))
			}
			k.mu.Unlock()
			return
		}
		k.mu.Unlock()
	}
}

// waitGone polls the session until a node answers 404 and returns when. The read is linearizable: a
// stale read of a node that has not applied the create yet would also say 404.
func (sh *sessionHarness) waitGone(id string, deadline time.Time) (time.Time, error) {
	for time.Now().Before(deadline) {
		for _, n := range sh.c.Up() {
			cl := n.Client()
			if n.State() != Running || cl == nil {
				continue
			}
			r := cl.Do(http.MethodGet, "/v1/session/"+id, nil)
			if r.Status == http.StatusNotFound {
				return time.Now(), nil
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	return time.Time{}, fmt.Errorf("still present at the deadline")
}

func pad(token uint64) string { return fmt.Sprintf("%020d", token) }

// fencedWrite writes the resource with token, through a transaction that refuses a token lower than
// the highest accepted. accepted reports whether it was; index is the transaction's.
func (sh *sessionHarness) fencedWrite(token uint64, who string) (accepted bool, index uint64, err error) {
	tok := base64.StdEncoding.EncodeToString([]byte(pad(token)))
	body := fmt.Sprintf(`{"compare":[{"key":"fence/token","target":"value","op":">","value":%q}],
		"failure":[{"op":"put","key":"fence/token","value":%q},{"op":"put","key":"fence/data","value":%q}]}`,
		tok, tok, base64.StdEncoding.EncodeToString([]byte(who)))
	r := sh.do(http.MethodPost, "/v1/txn", []byte(body))
	if !r.OK() {
		return false, 0, fmt.Errorf("fenced write: %s", r)
	}
	var res struct {
		Succeeded bool   `json:"succeeded"`
		Index     uint64 `json:"index"`
	}
	if err := json.Unmarshal(r.Body, &res); err != nil {
		return false, 0, err
	}
	return !res.Succeeded, res.Index, nil // success = "the fence is above the token": refused
}

// contend loops: session, acquire, three fenced writes, release, end the session.
func (sh *sessionHarness) contend(who string, fence *fenceLog, stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		default:
		}
		id, err := sh.createSession(`{"ttl":"6s","lock_delay":"1s","behavior":"release"}`)
		if err != nil {
			time.Sleep(200 * time.Millisecond)
			continue
		}
		a, err := sh.acquire(fenceLock, id, who)
		if err == nil && a.Acquired {
			for range 3 {
				ok, index, err := sh.fencedWrite(a.Index, who)
				if err != nil {
					break
				}
				if ok {
					fence.mu.Lock()
					fence.accepted = append(fence.accepted, fenced{index: index, token: a.Index})
					fence.mu.Unlock()
				} else {
					fence.refused.Add(1)
				}
				time.Sleep(100 * time.Millisecond)
			}
			sh.do(http.MethodPut, "/v1/kv/"+fenceLock+"?release="+id, []byte(who))
		} else {
			time.Sleep(300 * time.Millisecond)
		}
		sh.do(http.MethodDelete, "/v1/session/"+id, nil)
	}
}

// zombie takes the lock, stops renewing as if paused, and after its TTL (and the lock delay) tries to
// write with its old token.
func (sh *sessionHarness) zombie(fence *fenceLog, ttl time.Duration) zombieResult {
	var z zombieResult
	err := harness.Poll(30*time.Second, func() error {
		id, err := sh.createSession(`{"ttl":"6s","lock_delay":"1s","behavior":"release"}`)
		if err != nil {
			return err
		}
		a, err := sh.acquire(fenceLock, id, "zombie")
		if err != nil {
			return err
		}
		if !a.Acquired {
			sh.do(http.MethodDelete, "/v1/session/"+id, nil)
			return fmt.Errorf("lock busy")
		}
		z.token = a.Index
		return nil
	})
	if err != nil {
		z.err = fmt.Errorf("never took the lock: %w", err)
		return z
	}
	time.Sleep(ttl + 5*time.Second) // the "pause": no renew for longer than the TTL
	fence.mu.Lock()
	for _, f := range fence.accepted {
		if f.token > z.token {
			z.newerSeen = true
		}
	}
	fence.mu.Unlock()
	ok, _, err := sh.fencedWrite(z.token, "zombie")
	if err != nil {
		z.err = err
		return z
	}
	z.refused = !ok
	return z
}
