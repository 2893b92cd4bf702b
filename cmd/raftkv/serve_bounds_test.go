package main

import (
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestHTTPHoldsConnectionsThatAnnounceABodyAndSendNothing(t *testing.T) {
	srv := newHTTPServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.ReadAll(r.Body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
		}
	}), httpLimits{body: 300 * time.Millisecond, request: 200 * time.Millisecond}, slog.New(slog.DiscardHandler))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	const clients = 50
	var wg sync.WaitGroup
	closed := make(chan time.Duration, clients)
	for range clients {
		c, err := net.Dial("tcp", ln.Addr().String())
		require.NoError(t, err)
		t.Cleanup(func() { c.Close() })
		_, err = io.WriteString(c, "PUT /v1/kv/k HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\n")
		require.NoError(t, err)
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, err := io.Copy(io.Discard, c) // until the server closes it
			if err == nil {
				closed <- time.Since(start)
			}
		}()
	}
	wg.Wait()
	close(closed)
	n := 0
	for d := range closed {
		require.Less(t, d, 3*time.Second)
		n++
	}
	require.Equal(t, clients, n, "connections with a silent body are still open after 5 s")
}

func TestHTTPHeadersAreBounded(t *testing.T) {
	srv := newHTTPServer(http.NotFoundHandler(), httpLimits{body: time.Second, request: time.Second}, slog.New(slog.DiscardHandler))
	require.LessOrEqual(t, srv.MaxHeaderBytes, 64<<10)
	require.NotZero(t, srv.ReadHeaderTimeout)
	require.NotZero(t, srv.IdleTimeout)
}
