package httptarget

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftkv/raftkv/bench/loadgen"
	"github.com/stretchr/testify/require"
)

// kvServer is a minimal stand-in for a node: PUT stores, GET answers or 404s with raftkv's error body.
type kvServer struct {
	mu    sync.Mutex
	kv    map[string]string
	reqs  []string
	idem  []string // each request's Idempotency-Key
	conns int
}

func newKVServer(t testing.TB) (*kvServer, string) {
	s := &kvServer{kv: map[string]string{}}
	return s, s.listen(t)
}

// listen serves s on one more address.
func (s *kvServer) listen(t testing.TB) string {
	srv := httptest.NewUnstartedServer(s)
	srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			s.mu.Lock()
			s.conns++
			s.mu.Unlock()
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

func (s *kvServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	key := strings.TrimPrefix(r.URL.Path, "/v1/kv/")
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reqs = append(s.reqs, r.Method+" "+r.URL.RequestURI())
	s.idem = append(s.idem, r.Header.Get("Idempotency-Key"))
	switch r.Method {
	case http.MethodPut:
		if r.Header.Get("Content-Type") != "application/octet-stream" || r.ContentLength != int64(len(b)) {
			w.WriteHeader(400)
			return
		}
		s.kv[key] = string(b)
		w.Write([]byte(`{"index":1}`))
	case http.MethodGet:
		v, ok := s.kv[key]
		if !ok {
			w.WriteHeader(404)
			w.Write([]byte(`{"error":"key not found","code":"key_not_found"}`))
			return
		}
		w.Write([]byte(v))
	}
}

// newTarget is a target on cfg's first node; its client is closed when the test ends.
func newTarget(tb testing.TB, cfg Config) loadgen.Target {
	c, err := New(cfg)
	require.NoError(tb, err)
	tb.Cleanup(c.Close)
	return c.Node(0)
}

func TestPutGetReuseConnections(t *testing.T) {
	s, addr := newKVServer(t)
	tg := newTarget(t, Config{Addrs: []string{addr}})
	ctx := context.Background()
	for i := range 200 {
		key := "k/" + string(rune('a'+i%26))
		require.NoError(t, tg.Put(ctx, key, []byte(strings.Repeat("v", i%7+1))))
		require.NoError(t, tg.Get(ctx, key))
	}
	s.mu.Lock()
	require.Equal(t, 1, s.conns, "one kept-alive connection for a sequential worker")
	require.Equal(t, strings.Repeat("v", 199%7+1), s.kv["k/"+string(rune('a'+199%26))])
	require.Equal(t, "PUT /v1/kv/k/a", s.reqs[0])
	s.mu.Unlock()

	err := tg.Get(ctx, "missing")
	var se *StatusError
	require.ErrorAs(t, err, &se)
	require.Equal(t, "HTTP 404 key_not_found", loadgen.ErrorKind(err))
	// An error answer leaves the connection usable.
	require.NoError(t, tg.Put(ctx, "after", []byte("x")))
	require.NoError(t, tg.Put(ctx, "empty", nil))
	s.mu.Lock()
	require.Equal(t, "", s.kv["empty"])
	s.mu.Unlock()
}

func TestStaleQuery(t *testing.T) {
	s, addr := newKVServer(t)
	tg := newTarget(t, Config{Addrs: []string{"http://" + addr + "/"}, Stale: true})
	require.NoError(t, tg.Put(context.Background(), "a", []byte("1")))
	require.NoError(t, tg.Get(context.Background(), "a"))
	s.mu.Lock()
	defer s.mu.Unlock()
	require.Equal(t, []string{"PUT /v1/kv/a", "GET /v1/kv/a?consistency=stale"}, s.reqs)
}

func TestIdempotencyKeysAreUniquePerPut(t *testing.T) {
	s, addr := newKVServer(t)
	tg := newTarget(t, Config{Addrs: []string{addr}, IdempotencyKeys: true})
	for range 3 {
		require.NoError(t, tg.Put(context.Background(), "a", []byte("1")))
	}
	require.NoError(t, tg.Get(context.Background(), "a"))
	s.mu.Lock()
	defer s.mu.Unlock()
	require.Len(t, s.idem, 4)
	require.NotEmpty(t, s.idem[0])
	require.NotEqual(t, s.idem[0], s.idem[1])
	require.NotEqual(t, s.idem[1], s.idem[2])
	require.Empty(t, s.idem[3], "reads carry none")
}

func TestTransportErrorKind(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	dead := l.Addr().String()
	require.NoError(t, l.Close())
	err = newTarget(t, Config{Addrs: []string{dead}}).Put(context.Background(), "a", []byte("x"))
	var te *TransportError
	require.ErrorAs(t, err, &te)
	require.Equal(t, "transport: connection refused", loadgen.ErrorKind(err))
	require.NotContains(t, err.Error(), "/v1/kv/a", "the URL is dropped from the message")

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, addr := newKVServer(t)
	err = newTarget(t, Config{Addrs: []string{addr}}).Get(ctx, "a")
	require.True(t, errors.Is(err, context.Canceled), "%v", err)
	require.Equal(t, "canceled", loadgen.ErrorKind(err))
}

func TestConcurrentWorkersUnderLoad(t *testing.T) {
	s, a1 := newKVServer(t)
	a2 := s.listen(t) // two nodes, one key space
	c, err := New(Config{Addrs: []string{a1, a2}})
	require.NoError(t, err)
	defer c.Close()
	f, err := c.Factory(loadgen.Spread)
	require.NoError(t, err)
	res, err := loadgen.Run(context.Background(), loadgen.Config{Op: loadgen.OpMixed, ReadRatio: 0.5,
		Concurrency: 8, Duration: 300 * time.Millisecond, Keys: 50, NewTarget: f})
	require.NoError(t, err)
	require.Zero(t, res.Errors, res.ErrorKinds)
	require.Positive(t, res.Ops)
}

func TestBadAddr(t *testing.T) {
	for _, a := range []string{"ftp://x:1", "http://x:1/path", "http://"} {
		_, err := New(Config{Addrs: []string{a}})
		require.Error(t, err, a)
	}
	_, err := New(Config{})
	require.Error(t, err)
}

// The client's cost per request, against a local server: allocations here are the client's and the
// server's together (same process), so compare runs, not absolute numbers.
func BenchmarkNodeTarget(b *testing.B) {
	_, addr := newKVServer(b)
	tg := newTarget(b, Config{Addrs: []string{addr}})
	ctx := context.Background()
	value := []byte(strings.Repeat("v", 100))
	require.NoError(b, tg.Put(ctx, "bench/1", value))
	b.Run("put", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := tg.Put(ctx, "bench/1", value); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("get", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := tg.Get(ctx, "bench/1"); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func TestChunkedBodiesAndErrors(t *testing.T) {
	s, addr := newKVServer(t)
	tg := newTarget(t, Config{Addrs: []string{addr}})
	ctx := context.Background()
	big := strings.Repeat("x", 10<<10) // more than net/http buffers: sent chunked
	require.NoError(t, tg.Put(ctx, "big", []byte(big)))
	for range 3 {
		require.NoError(t, tg.Get(ctx, "big"))
	}
	require.NoError(t, tg.Put(ctx, "a b?c", []byte("1")), "a key that needs escaping")
	s.mu.Lock()
	require.Equal(t, big, s.kv["big"])
	require.Equal(t, "1", s.kv["a b?c"])
	require.Equal(t, 1, s.conns, "every answer was read to its end, so the connection stayed usable")
	s.mu.Unlock()
}

// rawServer answers every connection with the bytes of answer (ignoring what it reads) and closes it
// when close is set; a nil answer never answers.
func rawServer(t *testing.T, answer []byte, close bool) (addr string, accepted func() int) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { l.Close() })
	var mu sync.Mutex
	n := 0
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			n++
			mu.Unlock()
			go func() {
				defer conn.Close()
				buf := make([]byte, 4096)
				for {
					if _, err := conn.Read(buf); err != nil || answer == nil {
						if answer == nil {
							_, _ = io.Copy(io.Discard, conn)
						}
						return
					}
					if _, err := conn.Write(answer); err != nil || close {
						return
					}
				}
			}()
		}
	}()
	return l.Addr().String(), func() int { mu.Lock(); defer mu.Unlock(); return n }
}

func TestAnswersWithoutLengthAndClosedConnections(t *testing.T) {
	addr, accepted := rawServer(t, []byte("HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nhello"), true)
	tg := newTarget(t, Config{Addrs: []string{addr}})
	for range 3 {
		require.NoError(t, tg.Get(context.Background(), "k"))
	}
	require.Equal(t, 3, accepted(), "a body that runs to the end of the connection: a new one each time")

	addr, _ = rawServer(t, []byte("HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 40\r\n\r\n"+
		`{"error":"no leader","code":"no_leader"}`), true)
	noLeader := newTarget(t, Config{Addrs: []string{addr}})
	err := noLeader.Put(context.Background(), "k", []byte("v"))
	require.Equal(t, "HTTP 503 no_leader", loadgen.ErrorKind(err))
	err = noLeader.Put(context.Background(), "k", []byte("v"))
	require.Equal(t, "HTTP 503 no_leader", loadgen.ErrorKind(err), "Connection: close was honoured")

	addr, _ = rawServer(t, []byte("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort"), true)
	cutShort := newTarget(t, Config{Addrs: []string{addr}})
	err = cutShort.Get(context.Background(), "k")
	require.Equal(t, "transport: connection closed (EOF)", loadgen.ErrorKind(err), "a body cut short: %v", err)

	addr, _ = rawServer(t, []byte("SMTP ready\r\n"), true)
	notHTTP := newTarget(t, Config{Addrs: []string{addr}})
	var te *TransportError
	require.ErrorAs(t, notHTTP.Get(context.Background(), "k"), &te)
	require.ErrorIs(t, te, errMalformed)
}

func TestCancelUnblocksAWaitingRequest(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	received := make(chan struct{})
	go func() { // reads the request, never answers
		conn, err := l.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		buf := make([]byte, 4096)
		if _, err := conn.Read(buf); err == nil {
			close(received)
		}
		_, _ = io.Copy(io.Discard, conn)
	}()
	tg := newTarget(t, Config{Addrs: []string{l.Addr().String()}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tg.Get(ctx, "k") }()
	<-received
	cancel()
	select {
	case err := <-done:
		require.Equal(t, "canceled", loadgen.ErrorKind(err))
	case <-time.After(10 * time.Second):
		t.Fatal("the request did not return after its context was cancelled")
	}
}
