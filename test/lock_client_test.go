package test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/raftkv/raftkv/client"
	"github.com/raftkv/raftkv/test/harness"
)

// The client's Mutex and Election on a real cluster: one holder at a time, fencing tokens that grow
// from holder to holder, a holder that dies (stops renewing) loses the lock to a waiter after its TTL,
// and an observer sees every leadership, the vacancy included.
func TestClientMutexAndElectionOnACluster(t *testing.T) {
	c := harness.StartCluster(t, 3, harness.Options{})
	var endpoints []string
	for i := range c.Size() {
		endpoints = append(endpoints, c.Node(i).HTTPAddr)
	}
	cl, err := client.New(client.Config{Endpoints: endpoints, Timeout: 30 * time.Second})
	require.NoError(t, err)
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	observed := cl.Observe(ctx, "election/x")
	first := <-observed
	require.Empty(t, first.Session, "nobody leads yet")

	s1, err := cl.NewSession(ctx, client.SessionOptions{TTL: 3 * time.Second})
	require.NoError(t, err)
	s2, err := cl.NewSession(ctx, client.SessionOptions{TTL: 3 * time.Second})
	require.NoError(t, err)
	defer s2.Close(context.Background())

	t1, err := client.NewElection(s1, "election/x").Campaign(ctx, []byte("one"))
	require.NoError(t, err)
	l := <-observed
	require.Equal(t, s1.ID(), l.Session)
	require.Equal(t, "one", string(l.Value))
	require.Equal(t, t1, l.Token)

	_, acquired, err := client.NewMutex(s2, "election/x").TryLock(ctx, []byte("two"))
	require.NoError(t, err)
	require.False(t, acquired, "one holder at a time")

	// s1 dies; s2, waiting, takes over after s1's TTL with a larger token.
	won := make(chan uint64, 1)
	go func() {
		t2, err := client.NewElection(s2, "election/x").Campaign(ctx, []byte("two"))
		if err != nil {
			t.Errorf("campaign: %v", err)
		}
		won <- t2
	}()
	died := time.Now()
	s1.Abandon()
	var t2 uint64
	select {
	case t2 = <-won:
	case <-ctx.Done():
		t.Fatal("s2 never took over")
	}
	t.Logf("took over %v after the holder died (TTL 3s)", time.Since(died).Round(time.Millisecond))
	require.Greater(t, t2, t1, "fencing tokens grow from holder to holder")
	for l = range observed {
		if l.Session == s2.ID() {
			break
		}
	}
	require.Equal(t, "two", string(l.Value))
	require.Equal(t, t2, l.Token)

	require.NoError(t, client.NewElection(s2, "election/x").Resign(ctx))
	for l = range observed {
		if l.Session == "" {
			break
		}
	}
	require.Empty(t, l.Session, "the vacancy is observed")
}
