package discovery

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/raftkv/raftkv/client"
)

// fakeNode lists three instances of "echo" and then holds a quiet watch open.
func fakeNode(t *testing.T) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v1/kv":
			w.Header().Set("X-Kv-Index", "5")
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`[{"key":"services/echo/a","value":"YQ==","create_index":1,"mod_index":1},` +
				`{"key":"services/echo/b","value":"Yg==","create_index":2,"mod_index":2},` +
				`{"key":"services/echo/c","value":"Yw==","create_index":3,"mod_index":3}]`))
		case "/v1/watch":
			w.Header().Set("Content-Type", "text/event-stream")
			w.WriteHeader(http.StatusOK)
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// Round-robin spreads the requests, and the share of an instance that fails goes evenly to the others.
func TestRoundRobinSpreadsAFailingInstancesShare(t *testing.T) {
	c, err := client.New(client.Config{Endpoints: []string{fakeNode(t)}})
	require.NoError(t, err)
	bal := NewBalancer(c, "echo", RoundRobin)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	go func() { _ = bal.Run(ctx) }()
	require.NoError(t, bal.WaitSynced(ctx))
	require.Equal(t, []Instance{{"a", "a"}, {"b", "b"}, {"c", "c"}}, bal.Instances())

	served := map[string]int{}
	const n = 3000
	for range n {
		require.NoError(t, bal.Do(ctx, func(_ context.Context, in Instance) error {
			if in.ID == "b" {
				return errors.New("b is down")
			}
			served[in.ID]++
			return nil
		}))
	}
	require.Zero(t, served["b"])
	require.InDelta(t, n/2, served["a"], n/10, "a takes half: %v", served)
	require.InDelta(t, n/2, served["c"], n/10, "c takes half: %v", served)

	err = bal.Do(ctx, func(context.Context, Instance) error { return errors.New("all down") })
	require.ErrorIs(t, err, ErrNoInstance)
}

// Least-outstanding sends a request to the instance with the fewest in flight.
func TestLeastOutstandingAvoidsBusyInstances(t *testing.T) {
	c, err := client.New(client.Config{Endpoints: []string{fakeNode(t)}})
	require.NoError(t, err)
	bal := NewBalancer(c, "echo", LeastOutstanding)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	go func() { _ = bal.Run(ctx) }()
	require.NoError(t, bal.WaitSynced(ctx))

	// Hold one request on each of a and b; the next goes to c.
	release := make(chan struct{})
	held := make(chan string, 2)
	for range 2 {
		go func() {
			_ = bal.Do(ctx, func(_ context.Context, in Instance) error {
				held <- in.ID
				<-release
				return nil
			})
		}()
		<-held
	}
	var got string
	require.NoError(t, bal.Do(ctx, func(_ context.Context, in Instance) error { got = in.ID; return nil }))
	close(release)
	require.Equal(t, "c", got)
}
