package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// gate blocks the handler of method "wait/<name>" until released.
type gate struct {
	mu    sync.Mutex
	chans map[string]chan struct{}
}

func (g *gate) ch(name string) chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.chans == nil {
		g.chans = map[string]chan struct{}{}
	}
	if g.chans[name] == nil {
		g.chans[name] = make(chan struct{})
	}
	return g.chans[name]
}

// echoRig is an RPC server and a client on two muxes. The server answers "method:req"; a method
// "wait/<name>" first waits for the gate of that name.
type echoRig struct {
	server *Mux
	srv    *RPCServer
	rpc    *RPCClient
	addr   string
	gate   gate
	calls  atomic.Int64 // handlers started
}

func newEchoRig(t *testing.T) *echoRig {
	t.Helper()
	r := &echoRig{server: listen(t)}
	client := listen(t)
	r.srv = ServeRPC(r.server, func(ctx context.Context, method string, req []byte) ([]byte, error) {
		r.calls.Add(1)
		if name, ok := strings.CutPrefix(method, "wait/"); ok {
			select {
			case <-r.gate.ch(name):
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		return append([]byte(method+":"), req...), nil
	}, slog.New(slog.DiscardHandler))
	t.Cleanup(func() { r.srv.Close(context.Background()) })
	r.rpc = NewRPCClient(client, time.Second)
	t.Cleanup(r.rpc.Close)
	r.addr = r.server.Addr().String()
	return r
}

func (r *echoRig) call(ctx context.Context, method string, req []byte) ([]byte, error) {
	return r.rpc.Call(ctx, r.addr, method, req)
}

func TestCallsShareAConnectionAndAreAnsweredOutOfOrder(t *testing.T) {
	r := newEchoRig(t)

	slow := make(chan error, 1)
	go func() {
		resp, err := r.call(context.Background(), "wait/a", []byte("1"))
		if err == nil && string(resp) != "wait/a:1" {
			err = fmt.Errorf("wrong answer %q", resp)
		}
		slow <- err
	}()
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Go(func() {
			req := []byte(fmt.Sprint(i))
			resp, err := r.call(context.Background(), "echo", req)
			if err == nil && string(resp) != "echo:"+string(req) {
				err = fmt.Errorf("call %d got %q", i, resp)
			}
			assert.NoError(t, err)
		})
	}
	wg.Wait() // every fast call was answered while the slow one still waits
	select {
	case err := <-slow:
		t.Fatalf("the slow call returned before it was released: %v", err)
	default:
	}
	close(r.gate.ch("a"))
	require.NoError(t, <-slow)

	r.rpc.mu.Lock()
	require.Len(t, r.rpc.peers, 1)
	r.rpc.mu.Unlock()
}

func TestLostConnectionFailsCallsInFlightAndIsRedialed(t *testing.T) {
	r := newEchoRig(t)

	done := make(chan error, 1)
	go func() {
		_, err := r.call(context.Background(), "wait/never", nil)
		done <- err
	}()
	require.Eventually(t, func() bool { return inFlight(r.rpc, r.addr) == 1 }, 5*time.Second, 5*time.Millisecond)
	r.server.Isolate(true)
	err := <-done
	require.Error(t, err)
	require.NotErrorIs(t, err, ErrUnreachable, "the request was sent: it may have been handled")
	r.server.Isolate(false)

	resp, err := r.call(context.Background(), "echo", []byte("x"))
	require.NoError(t, err)
	require.Equal(t, "echo:x", string(resp))
}

// A call that times out on a connection that has been silent since the call went out takes the peer
// for gone: the next call dials again rather than queueing behind it.
func TestTimeoutOnSilentPeerDropsTheConnection(t *testing.T) {
	r := newEchoRig(t)

	_, err := r.call(context.Background(), "echo", nil)
	require.NoError(t, err)
	first := conn(r.rpc, r.addr)

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err = r.call(ctx, "wait/never", nil)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.True(t, first.broken())

	_, err = r.call(context.Background(), "echo", nil)
	require.NoError(t, err)
	require.NotSame(t, first, conn(r.rpc, r.addr))
}

func TestCloseWaitsForCallsInFlightAndRefusesNewOnes(t *testing.T) {
	r := newEchoRig(t)

	inflight := make(chan error, 1)
	go func() {
		_, err := r.call(context.Background(), "wait/b", nil)
		inflight <- err
	}()
	require.Eventually(t, func() bool { return r.calls.Load() == 1 }, 5*time.Second, 5*time.Millisecond)
	closed := make(chan error, 1)
	go func() { closed <- r.srv.Close(context.Background()) }()
	// Calls sent before Close takes effect are still handled; the first refused one must not be.
	refusedUnhandled := false
	require.Eventually(t, func() bool {
		before := r.calls.Load()
		_, err := r.call(context.Background(), "echo", nil)
		if !errors.Is(err, ErrUnreachable) {
			return false
		}
		refusedUnhandled = r.calls.Load() == before
		return true
	}, 5*time.Second, 5*time.Millisecond, "a closing server refuses new calls, and says they were not handled")
	require.True(t, refusedUnhandled, "a refused call reached the handler")
	select {
	case err := <-closed:
		t.Fatalf("Close returned with a call in flight: %v", err)
	default:
	}
	close(r.gate.ch("b"))
	require.NoError(t, <-inflight)
	require.NoError(t, <-closed)
}

// An older build knows only the HTTP RPC and closes a connection that asks for protoRPC; calls to it
// fall back to HTTP. And a node still answers an older build's HTTP RPC.
func TestOlderBuildsAreSpokenToOverHTTP(t *testing.T) {
	client := listen(t)
	handler := func(_ context.Context, method string, req []byte) ([]byte, error) {
		return append([]byte("old "+method+":"), req...), nil
	}
	old := oldBuildServer(t, handler)
	rpc := NewRPCClient(client, time.Second)
	defer rpc.Close()
	for range 3 {
		resp, err := rpc.Call(context.Background(), old, "echo", []byte("x"))
		require.NoError(t, err)
		require.Equal(t, "old echo:x", string(resp))
	}

	r := newEchoRig(t)
	legacy := newHTTPRPCClient(client, time.Second)
	defer legacy.close()
	resp, err := legacy.call(context.Background(), r.addr, "echo", []byte("y"))
	require.NoError(t, err)
	require.Equal(t, "echo:y", string(resp))
}

// oldBuildServer mimics the port of a build from before protoRPC: it serves the HTTP RPC and closes
// connections that name any other protocol.
func oldBuildServer(t *testing.T, h Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan struct{})
	httpConns := newSubListener(ln.Addr(), done)
	srv := serveHTTPRPC(httpConns, h, slog.New(slog.DiscardHandler))
	t.Cleanup(func() {
		close(done)
		ln.Close()
		srv.Close()
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			var b [1]byte
			if _, err := io.ReadFull(c, b[:]); err != nil || b[0] != protoHTTPRPC {
				c.Close()
				continue
			}
			select {
			case httpConns.conns <- c:
			case <-done:
				c.Close()
				return
			}
		}
	}()
	return ln.Addr().String()
}

func conn(c *RPCClient, addr string) *clientConn {
	c.mu.Lock()
	p := c.peers[addr]
	c.mu.Unlock()
	if p == nil {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.conn
}

func inFlight(c *RPCClient, addr string) int {
	cc := conn(c, addr)
	if cc == nil {
		return 0
	}
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return len(cc.pending)
}

func TestHandlerPanicIsAnErrorAnswer(t *testing.T) {
	server, client := listen(t), listen(t)
	srv := ServeRPC(server, func(_ context.Context, method string, _ []byte) ([]byte, error) {
		if method == "panic" {
			panic("bug")
		}
		return []byte("ok"), nil
	}, slog.New(slog.DiscardHandler))
	t.Cleanup(func() { srv.Close(context.Background()) })
	rpc := NewRPCClient(client, time.Second)
	defer rpc.Close()
	_, err := rpc.Call(context.Background(), server.Addr().String(), "panic", nil)
	require.ErrorContains(t, err, "internal error serving panic")
	resp, err := rpc.Call(context.Background(), server.Addr().String(), "after", nil)
	require.NoError(t, err)
	require.Equal(t, "ok", string(resp))
}
