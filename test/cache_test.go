package test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/raftkv/raftkv/client"
	"github.com/raftkv/raftkv/test/harness"
)

// cacheSample is one state a Cache showed: its entries (key → value@mod) at its index.
type cacheSample struct {
	index   uint64
	entries map[string]string
}

func entryText(e client.Entry) string {
	return fmt.Sprintf("%s@%d/%d", e.Value, e.CreateIndex, e.ModIndex)
}

// A client.Cache over a real cluster while writers put, delete and transact under its prefix and the
// leader is killed: every state it shows is the store's exact state at the index it shows (rebuilt
// from the full change history), its index never goes back, and it ends equal to a linearizable list.
func TestCacheShowsExactStatesAndConvergesAcrossALeaderKill(t *testing.T) {
	c := harness.StartCluster(t, 3, harness.Options{})
	leader := c.Leader(t)
	var endpoints []string
	for i := range c.Size() {
		endpoints = append(endpoints, c.Node(i).HTTPAddr)
	}
	endpoints[0], endpoints[leader] = endpoints[leader], endpoints[0] // the cache's streams start on the leader
	cl, err := client.New(client.Config{Endpoints: endpoints, Timeout: 60 * time.Second})
	require.NoError(t, err)
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	cache := cl.NewCache("cache/")
	runDone := make(chan error, 1)
	go func() { runDone <- cache.Run(ctx) }()
	require.NoError(t, cache.WaitSynced(ctx))

	// The observer records every state the cache shows.
	var samples []cacheSample
	stopObserving := make(chan struct{})
	observed := make(chan struct{})
	go func() {
		defer close(observed)
		for {
			ch := cache.Updated()
			es, index := cache.List()
			s := cacheSample{index: index, entries: map[string]string{}}
			for _, e := range es {
				s.entries[e.Key] = entryText(e)
			}
			samples = append(samples, s)
			select {
			case <-ch:
			case <-stopObserving:
				return
			}
		}
	}()

	const writers, perWriter = 3, 40
	var wg sync.WaitGroup
	started := make(chan struct{}, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for i := range perWriter {
				if i == 5 {
					started <- struct{}{}
				}
				key := fmt.Sprintf("cache/k%d", rng.IntN(8))
				var err error
				switch rng.IntN(4) {
				case 0:
					_, _, err = cl.Delete(ctx, key)
				case 1:
					_, err = cl.Txn(ctx, client.Txn{Success: []client.TxnOp{
						client.OpPut(key, []byte(fmt.Sprintf("t%d-%d", w, i))),
						client.OpPut(fmt.Sprintf("cache/w%d", w), []byte(fmt.Sprint(i))),
					}})
				default:
					_, err = cl.Put(ctx, key, []byte(fmt.Sprintf("p%d-%d", w, i)))
				}
				if err != nil {
					t.Errorf("writer %d op %d on %s: %v", w, i, key, err)
					return
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

	final, err := cl.List(ctx, client.ListOptions{Prefix: "cache/"}) // linearizable, one page (≤ 11 keys)
	require.NoError(t, err)
	require.Empty(t, final.Next)
	require.NoError(t, cache.WaitIndex(ctx, final.Index), "the cache catches up with the store")
	close(stopObserving)
	<-observed
	got, _ := cache.List()
	require.Equal(t, final.Entries, got, "the cache converged to the store's exact state")

	// The truth at every index: replay the prefix's whole history (the cluster started empty).
	w := cl.Watch(client.WatchOptions{Prefix: "cache/", Index: 1, Progress: true})
	defer w.Close()
	type step struct {
		index uint64
		state map[string]string
	}
	var history []step
	state := map[string]string{}
	for len(history) == 0 || history[len(history)-1].index < final.Index {
		ev, err := w.Next(ctx)
		require.NoError(t, err)
		if len(ev.Changes) == 0 {
			history = append(history, step{ev.Index, state})
			continue
		}
		next := make(map[string]string, len(state))
		for k, v := range state {
			next[k] = v
		}
		for _, ch := range ev.Changes {
			if ch.Type == "delete" {
				delete(next, ch.Key)
			} else {
				next[ch.Key] = entryText(client.Entry{Value: ch.Value, CreateIndex: ch.CreateIndex, ModIndex: ch.ModIndex})
			}
		}
		state = next
		history = append(history, step{ev.Index, state})
	}
	truthAt := func(index uint64) map[string]string {
		at := map[string]string{}
		for _, s := range history {
			if s.index > index {
				break
			}
			at = s.state
		}
		return at
	}

	require.Greater(t, len(samples), writers*perWriter/4, "the observer saw the cache move")
	var last uint64
	for i, s := range samples {
		require.GreaterOrEqual(t, s.index, last, "sample %d: the cache went back from index %d to %d", i, last, s.index)
		last = s.index
		if s.index == 0 {
			continue
		}
		require.Equal(t, truthAt(s.index), s.entries, "sample %d: the cache's state at index %d is not the store's", i, s.index)
	}
	t.Logf("%d cache states checked, final index %d", len(samples), final.Index)
	cancel()
	require.ErrorIs(t, <-runDone, context.Canceled)
}
