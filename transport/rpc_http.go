package transport

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"
)

// The internal RPC of builds before the framed protocol was HTTP/1.1 on protoHTTPRPC. A node still
// serves it and falls back to it for a peer that does not know protoRPC, so that a rolling upgrade keeps
// forwarding writes and read indexes in both directions. Delete this file once no such build runs.

func serveHTTPRPC(ln net.Listener, h Handler, logger *slog.Logger) *http.Server {
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
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       rpcFrameTimeout, // a body announced and never sent must not hold its conn
		IdleTimeout:       5 * time.Minute,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelDebug),
	}
	go srv.Serve(ln)
	return srv
}

type httpRPCClient struct {
	http *http.Client
	tr   *http.Transport
}

func newHTTPRPCClient(m *Mux, dialTimeout time.Duration) *httpRPCClient {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			return m.dial(addr, protoHTTPRPC, dialBudget(ctx, dialTimeout))
		},
		MaxIdleConnsPerHost: 16,
		IdleConnTimeout:     2 * time.Minute,
		DisableCompression:  true,
	}
	return &httpRPCClient{http: &http.Client{Transport: tr}, tr: tr}
}

func (c *httpRPCClient) call(ctx context.Context, addr, method string, req []byte) ([]byte, error) {
	// The node id of a targeted address is not part of the URL: builds that speak only this RPC
	// predate the check anyway.
	_, host := splitTarget(addr)
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+host+"/rpc/"+method, bytes.NewReader(req))
	if err != nil {
		return nil, err
	}
	resp, err := c.http.Do(hr)
	if err != nil {
		if isDialError(err) {
			return nil, fmt.Errorf("%w: %v", ErrUnreachable, err)
		}
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxRPCBody))
	if err != nil {
		return nil, fmt.Errorf("read response: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("peer failed the call: %s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	return body, nil
}

func (c *httpRPCClient) close() { c.tr.CloseIdleConnections() }
