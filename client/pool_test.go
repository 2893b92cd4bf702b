package client

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// A client spread over several nodes keeps a warm connection per concurrent caller on each of them:
// net/http's default pool of 100 idle connections in all made every wave past it redial.
func TestManyCallersOverSeveralNodesReuseTheirConnections(t *testing.T) {
	const nodes, callers = 3, 64
	var dials atomic.Int64
	var servers []*httptest.Server
	for range nodes {
		srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.WriteString(w, "ok")
		}))
		srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				dials.Add(1)
			}
		}
		srv.Start()
		t.Cleanup(srv.Close)
		servers = append(servers, srv)
	}
	hc := newHTTPClient(time.Second, nil)
	t.Cleanup(hc.CloseIdleConnections)

	wave := func() {
		var arrived sync.WaitGroup
		arrived.Add(nodes * callers)
		var done sync.WaitGroup
		for _, srv := range servers {
			for range callers {
				done.Add(1)
				go func() {
					defer done.Done()
					// Hold the connection busy until the whole wave has one, so none is shared.
					req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
					resp, err := hc.Do(req)
					arrived.Done()
					if err != nil {
						t.Error(err)
						return
					}
					arrived.Wait()
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}()
			}
		}
		done.Wait()
	}
	wave()
	first := dials.Load()
	require.LessOrEqual(t, first, int64(nodes*callers))
	for range 3 {
		wave()
	}
	require.Equal(t, first, dials.Load(), "later waves redialed instead of reusing idle connections")
}
