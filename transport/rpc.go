package transport

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"
)

// ErrUnreachable means the request never left this node (the peer could not be dialed): retrying it
// cannot apply anything twice. Any other Call error after dialing may have reached the peer.
var ErrUnreachable = errors.New("peer unreachable")

// maxRPCBody bounds what one RPC request or response may carry: a value (1 MiB by default, configurable)
// plus its framing, with generous headroom.
const maxRPCBody = 256 << 20

// Handler answers one RPC method. Returned errors are transport-level failures; application outcomes
// (not leader, cas failed, …) travel inside the response bytes.
type Handler func(ctx context.Context, method string, req []byte) ([]byte, error)

// RPCServer serves the internal RPC on the mux's RPC listener. HTTP/1.1 framing gives keep-alive,
// pooled, persistent connections with no protocol of our own to get wrong.
type RPCServer struct {
	srv *http.Server
	ln  net.Listener
}

// ServeRPC starts serving h on ln until Close.
func ServeRPC(ln net.Listener, h Handler, logger *slog.Logger) *RPCServer {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /rpc/{method}", func(w http.ResponseWriter, r *http.Request) {
		req, err := io.ReadAll(io.LimitReader(r.Body, maxRPCBody))
		if err != nil {
			http.Error(w, "read request: "+err.Error(), http.StatusBadRequest)
			return
		}
		resp, err := h(r.Context(), r.PathValue("method"), req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Write(resp)
	})
	s := &RPCServer{
		srv: &http.Server{
			Handler:           mux,
			ReadHeaderTimeout: 10 * time.Second,
			IdleTimeout:       5 * time.Minute,
			ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelDebug),
		},
		ln: ln,
	}
	go s.srv.Serve(ln)
	return s
}

// Close stops the server, waiting up to the context's deadline for in-flight calls.
func (s *RPCServer) Close(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	s.ln.Close()
	return err
}

// RPCClient calls peers' RPC servers over persistent connections.
type RPCClient struct {
	http *http.Client
	tr   *http.Transport
}

// NewRPCClient returns a client whose connections leave through m, dialed with dialTimeout.
func NewRPCClient(m *Mux, dialTimeout time.Duration) *RPCClient {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			timeout := dialTimeout
			if dl, ok := ctx.Deadline(); ok && time.Until(dl) < timeout {
				timeout = time.Until(dl)
			}
			return m.dial(addr, protoRPC, timeout)
		},
		MaxIdleConns:        256,
		MaxIdleConnsPerHost: 128,
		IdleConnTimeout:     2 * time.Minute,
		DisableCompression:  true,
	}
	return &RPCClient{http: &http.Client{Transport: tr}, tr: tr}
}

// Call sends req to method on the node at addr (its raft port) and returns the response bytes.
func (c *RPCClient) Call(ctx context.Context, addr, method string, req []byte) ([]byte, error) {
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/rpc/"+method, bytes.NewReader(req))
	if err != nil {
		return nil, fmt.Errorf("rpc %s to %s: %w", method, addr, err)
	}
	resp, err := c.http.Do(hr)
	if err != nil {
		if isDialError(err) {
			return nil, fmt.Errorf("rpc %s to %s: %w: %v", method, addr, ErrUnreachable, err)
		}
		return nil, fmt.Errorf("rpc %s to %s: %w", method, addr, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxRPCBody))
	if err != nil {
		return nil, fmt.Errorf("rpc %s to %s: read response: %w", method, addr, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("rpc %s to %s: %s: %s", method, addr, resp.Status, strings.TrimSpace(string(body)))
	}
	return body, nil
}

// Close drops idle connections.
func (c *RPCClient) Close() { c.tr.CloseIdleConnections() }

func isDialError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}
