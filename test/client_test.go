package test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/raftkv/raftkv/client"
	"github.com/raftkv/raftkv/test/harness"
)

// The public client against a real cluster whose leader is killed mid-run: every Put and Txn returns
// (retried with its idempotency key across the kill; a guarded create that applied twice would answer
// its failure branch), each key was written exactly once at the returned index,
// and stale reads through the client never show an index older than one it has seen.
func TestClientWritesExactlyOnceAndReadsMonotonicallyAcrossALeaderKill(t *testing.T) {
	c := harness.StartCluster(t, 3, harness.Options{})
	leader := c.Leader(t)
	var endpoints []string
	for i := range c.Size() {
		endpoints = append(endpoints, c.Node(i).HTTPAddr)
	}
	// The leader first, so that the kill hits writes in flight.
	endpoints[0], endpoints[leader] = endpoints[leader], endpoints[0]
	cl, err := client.New(client.Config{Endpoints: endpoints, Timeout: 60 * time.Second})
	require.NoError(t, err)
	defer cl.Close()
	ctx := context.Background()

	// The informer pattern: list, then watch from the list's index + 1; it follows the writes across
	// the kill.
	page, err := cl.List(ctx, client.ListOptions{Prefix: "client/"})
	require.NoError(t, err)
	w := cl.Watch(client.WatchOptions{Prefix: "client/", Index: page.Index + 1})
	defer w.Close()
	first, err := cl.Put(ctx, "client/first", []byte("x"))
	require.NoError(t, err)
	fctx, fcancel := context.WithTimeout(ctx, 30*time.Second)
	ev, err := w.Next(fctx)
	fcancel()
	require.NoError(t, err)
	require.Equal(t, first, ev.Index)

	const writers, perWriter = 4, 30
	var (
		mu    sync.Mutex
		acked = map[string]uint64{}
		wg    sync.WaitGroup
	)
	started := make(chan struct{}, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var lastSeen uint64
			for i := range perWriter {
				if i == 3 {
					started <- struct{}{}
				}
				key := fmt.Sprintf("client/w%d-%03d", w, i)
				var idx uint64
				var err error
				if i%2 == 0 {
					idx, err = cl.Put(ctx, key, []byte(key))
				} else {
					// Every other write is a transaction: retried with its own idempotency key too.
					var res client.TxnResponse
					res, err = cl.Txn(ctx, client.Txn{
						Compare: []client.Compare{client.Absent(key)},
						Success: []client.TxnOp{client.OpPut(key, []byte(key))},
					})
					if err == nil && !res.Succeeded {
						err = fmt.Errorf("the create ran its failure branch at %d: applied twice?", res.Index)
					}
					idx = res.Index
				}
				if err != nil {
					t.Errorf("put %s: %v", key, err)
					return
				}
				mu.Lock()
				acked[key] = idx
				mu.Unlock()
				// Read-your-writes from whichever node answers, at stale cost.
				e, err := cl.Get(ctx, key, client.Stale())
				if err != nil {
					t.Errorf("stale get %s: %v", key, err)
					return
				}
				if e.ModIndex != idx {
					t.Errorf("%s: stale read shows index %d, the write was %d", key, e.ModIndex, idx)
				}
				if seen := cl.LastIndex(); seen < lastSeen {
					t.Errorf("the client's index went back from %d to %d", lastSeen, seen)
				} else {
					lastSeen = seen
				}
			}
		}()
	}
	for range writers {
		<-started
	}
	c.Kill9(leader)
	wg.Wait()
	require.False(t, t.Failed())

	// Every acknowledged write reaches the watcher once, at its index, though the stream's node died.
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	watched := map[string]uint64{}
	for len(watched) < writers*perWriter {
		ev, err := w.Next(wctx)
		require.NoError(t, err, "watched %d of %d", len(watched), writers*perWriter)
		for _, ch := range ev.Changes {
			_, dup := watched[ch.Key]
			require.False(t, dup, "%s delivered twice", ch.Key)
			watched[ch.Key] = ev.Index
		}
	}
	require.Equal(t, acked, watched)

	all, err := cl.ListAll(ctx, "client/w", false)
	require.NoError(t, err)
	require.Len(t, all, writers*perWriter)
	for _, e := range all {
		require.Equal(t, acked[e.Key], e.ModIndex, "%s: the answered write is the one in the store", e.Key)
		require.Equal(t, e.CreateIndex, e.ModIndex, "%s: written once, not twice", e.Key)
	}

	st, err := cl.Status(ctx)
	require.NoError(t, err)
	require.Len(t, st.Members, 3)
	_, err = cl.Get(ctx, "client/none")
	require.ErrorIs(t, err, client.ErrNotFound)
	_, err = cl.CAS(ctx, "client/w0-000", 1, []byte("x"))
	require.ErrorIs(t, err, client.ErrCASMismatch)
}
