package test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/raftkv/raftkv/client"
	"github.com/raftkv/raftkv/examples/discovery"
	"github.com/raftkv/raftkv/test/harness"
)

// backend is one instance of the "echo" service: an HTTP server that answers its id.
type backend struct {
	id  string
	srv *httptest.Server
	reg *discovery.Registration
}

// The service-discovery example end to end on a 3-node cluster: callers balance an idempotent request
// over the registered instances; an instance dies (its server stops, its session is no longer renewed,
// as in a crash) and leaves discovery within its session's TTL while every request still succeeds on
// another instance; the raftkv leader is killed and callers keep working from their cache; a new
// instance gets traffic within seconds.
func TestDiscoveryFollowsInstancesThroughDeathAndALeaderKill(t *testing.T) {
	c := harness.StartCluster(t, 3, harness.Options{})
	var endpoints []string
	for i := range c.Size() {
		endpoints = append(endpoints, c.Node(i).HTTPAddr)
	}
	cl, err := client.New(client.Config{Endpoints: endpoints, Timeout: 30 * time.Second})
	require.NoError(t, err)
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	const ttl = 3 * time.Second
	start := func(id string) *backend {
		b := &backend{id: id}
		b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, id) }))
		t.Cleanup(b.srv.Close)
		reg, err := discovery.Register(ctx, cl, "echo", id, b.srv.Listener.Addr().String(), ttl)
		require.NoError(t, err)
		b.reg = reg
		t.Cleanup(func() { _ = b.reg.Deregister(context.Background()) })
		return b
	}
	backends := map[string]*backend{}
	for _, id := range []string{"a", "b", "c"} {
		backends[id] = start(id)
	}

	bal := discovery.NewBalancer(cl, "echo", discovery.RoundRobin)
	runDone := make(chan error, 1)
	go func() { runDone <- bal.Run(ctx) }()
	require.NoError(t, bal.WaitSynced(ctx))
	ids := func() string {
		var s []string
		for _, in := range bal.Instances() {
			s = append(s, in.ID)
		}
		return strings.Join(s, ",")
	}
	require.Eventually(t, func() bool { return ids() == "a,b,c" }, 10*time.Second, 10*time.Millisecond)

	// Traffic: one idempotent GET after another, each retried on another instance if its first fails.
	var (
		mu       sync.Mutex
		hits     = map[string]int{}
		lastHit  = map[string]time.Time{}
		failures []error
	)
	hc := &http.Client{Timeout: 2 * time.Second}
	stopTraffic := make(chan struct{})
	trafficDone := make(chan struct{})
	go func() {
		defer close(trafficDone)
		pace := time.NewTicker(5 * time.Millisecond) // a request every 5 ms at most
		defer pace.Stop()
		for {
			select {
			case <-stopTraffic:
				return
			case <-pace.C:
			}
			err := bal.Do(ctx, func(ctx context.Context, in discovery.Instance) error {
				resp, err := hc.Get("http://" + in.Addr + "/")
				if err != nil {
					return err
				}
				defer resp.Body.Close()
				b, err := io.ReadAll(resp.Body)
				if err != nil {
					return err
				}
				mu.Lock()
				hits[string(b)]++
				lastHit[string(b)] = time.Now()
				mu.Unlock()
				return nil
			})
			if err != nil {
				mu.Lock()
				failures = append(failures, err)
				mu.Unlock()
			}
		}
	}()
	hitsOf := func(id string) int {
		mu.Lock()
		defer mu.Unlock()
		return hits[id]
	}
	require.Eventually(t, func() bool { return hitsOf("a") > 0 && hitsOf("b") > 0 && hitsOf("c") > 0 }, 10*time.Second, 10*time.Millisecond,
		"round-robin reaches every instance")

	// b dies: no deregistration, its session simply stops being renewed.
	died := time.Now()
	backends["b"].srv.Close()
	backends["b"].reg.Abandon()
	require.Eventually(t, func() bool { return ids() == "a,c" }, ttl+10*time.Second, 10*time.Millisecond,
		"the dead instance leaves discovery")
	gone := time.Since(died)
	t.Logf("dead instance left discovery after %v (session TTL %v)", gone.Round(time.Millisecond), ttl)
	require.Greater(t, gone, ttl/2, "not before its session could have expired")
	require.Less(t, gone, ttl+5*time.Second, "within the session's bound (TTL + tick + commit + watch delivery)")

	// The raftkv leader dies: callers keep balancing from their cache meanwhile.
	leader := c.Leader(t)
	before := hitsOf("a") + hitsOf("c")
	c.Kill9(leader)
	require.Eventually(t, func() bool { return hitsOf("a")+hitsOf("c") > before+50 }, 20*time.Second, 10*time.Millisecond,
		"requests go on while the cluster elects a leader")

	// A new instance is used soon after it registers.
	start("d")
	registered := time.Now() // its key is written: from here on, it is the callers' cache that counts
	require.Eventually(t, func() bool { return hitsOf("d") > 0 }, 15*time.Second, 5*time.Millisecond, "the new instance gets traffic")
	t.Logf("new instance got traffic %v after it registered", time.Since(registered).Round(time.Millisecond))

	close(stopTraffic)
	<-trafficDone
	mu.Lock()
	require.Empty(t, failures, "every idempotent request succeeded on some instance")
	t.Logf("hits: %v", hits)
	mu.Unlock()
	cancel()
	<-runDone
}
