package test

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/raftkv/raftkv/test/harness"
)

// kill -9 of the leader under concurrent writes: a new leader serves within seconds, and after
// kill -9 of everything and a full restart, every acknowledged write is there with its index.
func TestKillLeaderUnderWrites(t *testing.T) {
	c := harness.StartCluster(t, 3, harness.Options{})
	leader := c.Leader(t)

	const writers = 4
	var (
		mu         sync.Mutex
		acked      = map[string]written{}
		maybe      = map[string]string{} // indeterminate writes: key -> value
		killedAt   atomic.Int64          // unix nanos, 0 before the kill
		firstAfter = make(chan time.Time, 1)
		stop       = make(chan struct{})
		wg         sync.WaitGroup
		outcomes   [4]atomic.Int64
	)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), uint64(time.Now().UnixNano())))
			for seq := 0; ; seq++ {
				select {
				case <-stop:
					return
				default:
				}
				key := fmt.Sprintf("kill-w%d-%06d", w, seq)
				value := key + "-value"
				sent := time.Now()
				r := c.Node(rng.IntN(3)).Put(key, []byte(value))
				outcomes[r.Outcome()].Add(1)
				switch r.Outcome() {
				case harness.Applied:
					mu.Lock()
					acked[key] = written{value, r.Index}
					mu.Unlock()
					if k := killedAt.Load(); k != 0 && sent.UnixNano() > k {
						select {
						case firstAfter <- time.Now():
						default:
						}
					}
				case harness.Indeterminate:
					mu.Lock()
					maybe[key] = value
					mu.Unlock()
				}
			}
		}(w)
	}
	stopWriters := func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	}
	defer stopWriters()

	// Let the writers run against the healthy cluster first.
	harness.WaitFor(t, 10*time.Second, "writes before the kill", func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(acked) < 50 {
			return fmt.Errorf("%d writes acknowledged", len(acked))
		}
		return nil
	})
	killTime := time.Now()
	killedAt.Store(killTime.UnixNano())
	c.Kill9(leader)
	t.Logf("killed leader %s", c.Node(leader).ID)

	var failover time.Duration
	select {
	case at := <-firstAfter:
		failover = at.Sub(killTime)
	case <-time.After(10 * time.Second):
		t.Fatalf("no write sent after the leader was killed was acknowledged within 10s")
	}
	t.Logf("failover: first write sent after the kill acknowledged %v after the kill", failover.Round(time.Millisecond))
	assert.Less(t, failover, 10*time.Second)
	newLeader := c.Leader(t)
	t.Logf("new leader %s, agreed %v after the kill", c.Node(newLeader).ID, time.Since(killTime).Round(time.Millisecond))
	require.NotEqual(t, leader, newLeader)

	// Keep writing to the new leader for a while: at least 3s of writes across the failover.
	if d := time.Until(killTime.Add(3 * time.Second)); d > 0 {
		time.Sleep(d) // workload duration, not a wait for a state
	}
	stopWriters()
	t.Logf("writes: %d applied, %d no effect, %d indeterminate", outcomes[harness.Applied].Load(),
		outcomes[harness.NoEffect].Load(), outcomes[harness.Indeterminate].Load())
	checkUniqueIndexes(t, acked)

	// kill -9 everything, restart everything.
	for _, i := range c.Live() {
		c.Kill9(i)
	}
	for i := 0; i < 3; i++ {
		c.Restart(i)
	}
	c.WaitAllReady(t)
	c.Leader(t)

	want := map[string]written{}
	for k, w := range acked {
		want[k] = w
	}
	for i := 0; i < 3; i++ {
		node := c.Node(i)
		entries, err := node.ListAll("kill-", 500, "linearizable")
		require.NoError(t, err)
		got := map[string]harness.ListEntry{}
		for _, e := range entries {
			got[e.Key] = e
		}
		missing := 0
		for k, w := range want {
			e, ok := got[k]
			if !ok {
				if missing++; missing <= 5 {
					t.Errorf("%s: acknowledged write %s (index %d) lost", node.ID, k, w.index)
				}
				continue
			}
			if string(e.Value) != w.value || e.ModIndex != w.index {
				t.Errorf("%s: %s = %q@%d, acknowledged %q@%d", node.ID, k, e.Value, e.ModIndex, w.value, w.index)
			}
		}
		for k, e := range got {
			if _, ok := want[k]; ok {
				continue
			}
			if v, ok := maybe[k]; !ok || v != string(e.Value) {
				t.Errorf("%s: %s = %q was never written (or was refused)", node.ID, k, e.Value)
			}
		}
		require.Zero(t, missing, "%s lost %d acknowledged writes", node.ID, missing)
	}
	// Spot-check single-key reads through each node.
	n := 0
	for k, w := range want {
		if n++; n > 30 {
			break
		}
		require.NoError(t, checkGet(c.Node(n%3), k, w, "linearizable"))
	}
	t.Logf("all %d acknowledged writes survived (%d indeterminate, %d of them applied)", len(want), len(maybe), countPresent(c, maybe))
}

func countPresent(c *harness.Cluster, maybe map[string]string) int {
	n := 0
	for k := range maybe {
		if c.Node(c.Live()[0]).Get(k).Status == 200 {
			n++
		}
	}
	return n
}

// A leader paused (SIGSTOP) for longer than the election timeout is replaced; once continued it
// must not serve a linearizable read of a value the new leader has overwritten.
func TestPausedLeaderServesNoStaleRead(t *testing.T) {
	c := harness.StartCluster(t, 3, harness.Options{})
	old := c.Leader(t)
	oldNode := c.Node(old)
	followers := others(3, old)
	const key = "paused-key"
	c.MustPut(t, old, key, []byte("v1"))

	// Background writes through the followers, across the pause.
	var (
		stop      = make(chan struct{})
		wg        sync.WaitGroup
		acked     atomic.Int64
		ackedLate atomic.Int64 // acknowledged after the new leader was known
		newKnown  atomic.Bool
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for seq := 0; ; seq++ {
			select {
			case <-stop:
				return
			default:
			}
			r := c.Node(followers[seq%2]).Put(fmt.Sprintf("paused-bg-%05d", seq), []byte("x"))
			if r.Outcome() == harness.Applied {
				acked.Add(1)
				if newKnown.Load() {
					ackedLate.Add(1)
				}
			}
		}
	}()
	defer func() {
		close(stop)
		wg.Wait()
	}()

	pausedAt := time.Now()
	c.Pause(old)
	newLeader := c.Leader(t) // among the live nodes: the followers
	require.NotEqual(t, old, newLeader)
	newKnown.Store(true)
	t.Logf("paused %s; %s leads after %v", oldNode.ID, c.Node(newLeader).ID, time.Since(pausedAt).Round(time.Millisecond))
	v2 := c.MustPut(t, newLeader, key, []byte("v2"))
	harness.WaitFor(t, 10*time.Second, "background writes through the new leader", func() error {
		if ackedLate.Load() < 5 {
			return fmt.Errorf("%d acknowledged since the new leader", ackedLate.Load())
		}
		return nil
	})
	if d := time.Until(pausedAt.Add(4 * time.Second)); d > 0 {
		time.Sleep(d) // the fault lasts at least 4s (election timeout 1s): a duration, not a state
	}

	// Queue reads in the paused node's socket buffers: it handles them the moment it runs again,
	// while it may still believe it leads.
	const queued = 3
	conns := make([]net.Conn, queued)
	for j := range conns {
		conn, err := net.DialTimeout("tcp", oldNode.HTTPAddr, 2*time.Second)
		require.NoError(t, err, "connect to the paused node (kernel backlog)")
		defer conn.Close()
		_, err = fmt.Fprintf(conn, "GET /v1/kv/%s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", key, oldNode.HTTPAddr)
		require.NoError(t, err)
		conns[j] = conn
	}
	c.Resume(old)
	resumedAt := time.Now()
	staleReads := 0
	check := func(status int, body string, how string) {
		if status == 200 && body != "v2" {
			staleReads++
			t.Errorf("%s: the old leader served %q after %q was acknowledged (stale read)", how, body, "v2")
		}
	}
	for j, conn := range conns {
		conn.SetDeadline(time.Now().Add(15 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Logf("queued read %d: %v", j, err)
			continue
		}
		var body strings.Builder
		bufio.NewReader(resp.Body).WriteTo(&body)
		resp.Body.Close()
		t.Logf("queued read %d: %d %q (%v after SIGCONT)", j, resp.StatusCode, body.String(), time.Since(resumedAt).Round(time.Millisecond))
		check(resp.StatusCode, body.String(), fmt.Sprintf("queued read %d", j))
	}
	harness.WaitFor(t, 20*time.Second, "the old leader serving the new value", func() error {
		r := oldNode.Get(key)
		check(r.Status, string(r.Body), "read after SIGCONT")
		if staleReads > 0 {
			return harness.Permanent(fmt.Errorf("stale read"))
		}
		if r.Status != 200 {
			return fmt.Errorf("%v", r)
		}
		return nil
	})
	r := oldNode.Get(key)
	require.Equal(t, 200, r.Status, "%v", r)
	assert.Equal(t, v2.Index, r.ModIndex)
	t.Logf("old leader serves the new value %v after SIGCONT", time.Since(resumedAt).Round(time.Millisecond))
	c.Leader(t) // all three agree again
	t.Logf("background writes acknowledged: %d (%d after the new leader was known)", acked.Load(), ackedLate.Load())
}
