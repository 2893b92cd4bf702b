package store

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/raftkv/raftkv/fsm"
)

// Sessions, ephemeral keys and locks work through a follower (forwarded to the leader), and ending a
// session deletes its keys.
func TestSessionsAndLocksThroughAFollower(t *testing.T) {
	c := newTestCluster(t)
	c.startCluster(3)
	ctx := ctxT(t)
	f := c.nodes[c.follower()].store
	var a, b Session
	require.Eventually(t, func() bool { // the leader learns every member's log format on its first reconcile
		var err error
		a, err = f.CreateSession(ctx, SessionOptions{Name: "a", TTL: 10 * time.Second, Behavior: fsm.BehaviorDelete})
		return err == nil
	}, waitFor, 50*time.Millisecond)
	b, err := f.CreateSession(ctx, SessionOptions{TTL: 10 * time.Second})
	require.NoError(t, err)

	_, err = f.PutOwned(ctx, "svc/a", []byte("10.0.0.1"), a.ID)
	require.NoError(t, err)
	got, err := f.Acquire(ctx, "lock", []byte("a"), a.ID)
	require.NoError(t, err)
	require.True(t, got.OK)
	require.NotZero(t, got.Token)
	other, err := f.Acquire(ctx, "lock", []byte("b"), b.ID)
	require.NoError(t, err)
	require.False(t, other.OK)
	_, err = f.PutOwned(ctx, "lock", nil, b.ID)
	require.ErrorIs(t, err, ErrKeyHeld)
	_, err = f.Acquire(ctx, "lock", nil, "no-such-session")
	require.ErrorIs(t, err, ErrSessionNotFound)

	ttl, err := f.RenewSession(ctx, a.ID)
	require.NoError(t, err)
	require.Equal(t, 10*time.Second, ttl)
	sess, _, err := f.GetSession(ctx, a.ID, Linearizable)
	require.NoError(t, err)
	require.Equal(t, []string{"lock", "svc/a"}, sess.HeldKeys)

	_, err = f.DestroySession(ctx, a.ID)
	require.NoError(t, err)
	_, _, err = f.GetAt(ctx, "svc/a", Linearizable)
	require.ErrorIs(t, err, ErrNotFound)
	_, _, err = f.GetAt(ctx, "lock", Linearizable)
	require.ErrorIs(t, err, ErrNotFound)
	_, err = f.RenewSession(ctx, a.ID)
	require.ErrorIs(t, err, ErrSessionNotFound)
	next, err := f.Acquire(ctx, "lock", []byte("b"), b.ID)
	require.NoError(t, err)
	require.True(t, next.OK)
	require.Greater(t, next.Token, got.Token, "the fencing token grows")

	_, err = f.CreateSession(ctx, SessionOptions{TTL: time.Second})
	require.ErrorIs(t, err, ErrInvalid)
}

// The expiry contract across a leader change: a session renewed every TTL/3 is never expired, an
// abandoned one is expired no earlier than its TTL after it was created and not much later, although the
// leader that counted it down is stopped half way.
func TestSessionExpiryAcrossALeaderChange(t *testing.T) {
	c := newTestCluster(t)
	c.startCluster(3)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const ttl = 4 * time.Second
	leader := c.leader()
	f := c.nodes[c.follower()].store
	var kept Session
	require.Eventually(t, func() bool {
		var err error
		kept, err = f.CreateSession(ctx, SessionOptions{TTL: ttl})
		return err == nil
	}, waitFor, 50*time.Millisecond)
	created := time.Now()
	abandoned, err := f.CreateSession(ctx, SessionOptions{TTL: ttl})
	require.NoError(t, err)

	// Renew kept from every node that is up, every TTL/3, until the end of the test.
	stopRenew := make(chan struct{})
	var renewWG sync.WaitGroup
	var renewErrMu sync.Mutex
	var lostKept error
	renewWG.Add(1)
	go func() {
		defer renewWG.Done()
		for {
			select {
			case <-stopRenew:
				return
			case <-time.After(ttl / 3):
			}
			for id, n := range c.nodes {
				if id == leader || n.store == nil {
					continue
				}
				rctx, cancel := context.WithTimeout(context.Background(), ttl/3)
				_, err := n.store.RenewSession(rctx, kept.ID)
				cancel()
				if errors.Is(err, ErrSessionNotFound) {
					renewErrMu.Lock()
					lostKept = err
					renewErrMu.Unlock()
				}
				if err == nil {
					break
				}
			}
		}
	}()
	t.Cleanup(func() { close(stopRenew); renewWG.Wait() })

	time.Sleep(ttl / 2) // half the TTL counted down by the first leader: the event under test, not a wait for a state
	c.stop(leader)
	newLeader := c.leader(leader)
	readyAt := time.Now() // at or after the new leader became ready
	s := c.nodes[newLeader].store

	var gone time.Time
	require.Eventually(t, func() bool {
		_, _, err := s.GetSession(ctx, abandoned.ID, Stale)
		if errors.Is(err, ErrSessionNotFound) {
			gone = time.Now()
			return true
		}
		return false
	}, ttl+15*time.Second, 50*time.Millisecond, "the abandoned session was never expired")
	assert.GreaterOrEqual(t, gone.Sub(created), ttl, "expired before its TTL had passed")
	// A new leader that restarted every session from its full TTL (etcd#9395) would expire it no sooner
	// than a whole TTL after it became ready.
	assert.Less(t, gone.Sub(readyAt), ttl-time.Second, "the new leader did not continue the countdown")
	t.Logf("abandoned session expired %s after creation (TTL %s), across a leader change", gone.Sub(created), ttl)

	// Kept is alive after more than two TTLs, renewed through the change.
	require.Eventually(t, func() bool { return time.Since(created) > 2*ttl }, 3*ttl, 100*time.Millisecond)
	_, _, err = s.GetSession(ctx, kept.ID, Linearizable)
	require.NoError(t, err, "a renewed session expired")
	renewErrMu.Lock()
	require.NoError(t, lostKept)
	renewErrMu.Unlock()
}

// --max-sessions: a create past the cap is refused with ErrTooManySessions (429 too_many_sessions) and
// changes nothing; ending a session makes room again.
func TestSessionCapRefusesCreatesPastIt(t *testing.T) {
	c := newTestCluster(t)
	c.configure = func(_ string, cfg *Config) { cfg.MaxSessions = 2 }
	c.startCluster(3)
	ctx := ctxT(t)
	l := c.nodes[c.leader()].store
	var a Session
	require.Eventually(t, func() bool {
		var err error
		a, err = l.CreateSession(ctx, SessionOptions{TTL: 10 * time.Second})
		return err == nil
	}, waitFor, 50*time.Millisecond)
	_, err := l.CreateSession(ctx, SessionOptions{TTL: 10 * time.Second})
	require.NoError(t, err)
	_, err = l.CreateSession(ctx, SessionOptions{TTL: 10 * time.Second})
	require.ErrorIs(t, err, ErrTooManySessions)
	all, _, err := l.Sessions(ctx, Linearizable)
	require.NoError(t, err)
	require.Len(t, all, 2)
	_, err = l.DestroySession(ctx, a.ID)
	require.NoError(t, err)
	_, err = l.CreateSession(ctx, SessionOptions{TTL: 10 * time.Second})
	require.NoError(t, err)
}
