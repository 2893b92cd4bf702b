// Package httptarget is raftkv's HTTP API as a loadgen.Target: PUT and GET /v1/kv/{key} against one
// node, over a connection pool sized for the load. `raftkv bench` uses it against raftkv, and the
// comparison in bench/etcd uses it against raftkv and against the bare net/http ceiling servers, which
// serve the same paths.
//
// It is built to cost the client as little as possible per request, so that the numbers describe the
// server: keep-alive connections (at least one idle connection kept per worker and node), a request
// object per worker and node reused from one call to the next, the worker's value sent from a reused
// bytes.Reader, and answers read to the end into io.Discard (its pooled buffer) so the connection goes
// back to the pool. It retries nothing: every failure is a data point, counted by kind.
package httptarget

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/raftkv/raftkv/bench/loadgen"
)

// Config configures a Client.
type Config struct {
	Addrs       []string // the nodes, "host:port" or "http://host:port"
	Stale       bool     // reads with ?consistency=stale instead of the default linearizable
	Concurrency int      // workers that will share the client; sizes the idle pool (default 128)
	// Timeout bounds the wait for an answer's headers (default 30 s): longer than raftkv's own bounded
	// wait (5 s), so a slow answer is measured rather than cut off, yet a run never hangs on a dead node.
	Timeout time.Duration
}

// Client holds the connection pool shared by every worker's targets.
type Client struct {
	hc    *http.Client
	bases []url.URL // scheme and host of each node
	stale bool
}

// New returns a Client for cfg.Addrs.
func New(cfg Config) (*Client, error) {
	if len(cfg.Addrs) == 0 {
		return nil, errors.New("httptarget: no node address")
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 128
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	c := &Client{stale: cfg.Stale}
	for _, a := range cfg.Addrs {
		u, err := parseAddr(a)
		if err != nil {
			return nil, err
		}
		c.bases = append(c.bases, u)
	}
	tr := &http.Transport{
		Proxy:       nil, // straight to the node, whatever the environment says
		DialContext: (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		// With Spread every worker talks to every node, so each node may see every worker at once.
		MaxIdleConns:          0, // no global cap
		MaxIdleConnsPerHost:   cfg.Concurrency + 8,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: cfg.Timeout,
		DisableCompression:    true, // values are opaque bytes; gzip would only cost CPU on both sides
		ForceAttemptHTTP2:     false,
	}
	c.hc = &http.Client{
		Transport:     tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return c, nil
}

func parseAddr(a string) (url.URL, error) {
	a = strings.TrimSuffix(strings.TrimSpace(a), "/")
	if !strings.Contains(a, "://") {
		a = "http://" + a
	}
	u, err := url.Parse(a)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Path != "" {
		return url.URL{}, fmt.Errorf("httptarget: invalid node address %q: want host:port or http://host:port", a)
	}
	return url.URL{Scheme: u.Scheme, Host: u.Host}, nil
}

// Nodes is the number of nodes.
func (c *Client) Nodes() int { return len(c.bases) }

// Node returns a new Target bound to node i, for one worker.
func (c *Client) Node(i int) loadgen.Target {
	return &nodeTarget{c: c, base: c.bases[i%len(c.bases)]}
}

// Factory spreads or pins workers over every node (see loadgen.Place).
func (c *Client) Factory(p loadgen.Placement) (loadgen.TargetFactory, error) {
	return loadgen.Place(p, len(c.bases), func(i int) (loadgen.Target, error) { return c.Node(i), nil })
}

// Close releases the idle connections.
func (c *Client) Close() { c.hc.CloseIdleConnections() }

// nodeTarget is one worker's view of one node. It keeps one PUT and one GET request and reuses them:
// net/http lets a caller reuse a Request once its Response body is closed, and the Transport never
// modifies it. After any failure both are rebuilt, since the Transport may then still be holding the
// old body (a write cut short is closed asynchronously).
type nodeTarget struct {
	c    *Client
	base url.URL
	ctx  context.Context // the context the requests carry; they are rebuilt when it changes

	put, get *http.Request
	putURL   url.URL
	getURL   url.URL
	body     *body
	getBody  func() (io.ReadCloser, error) // body.rewind, made once: a method value allocates
}

// body is a request body over the worker's value; Close is a no-op so it can be reused.
type body struct {
	bytes.Reader
	value []byte
}

func (b *body) Close() error { return nil }

// rewind serves GetBody: the Transport calls it to resend a request on a fresh connection when a kept-
// alive one turned out to be closed by the server.
func (b *body) rewind() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b.value)), nil }

func (t *nodeTarget) reset(ctx context.Context) {
	t.ctx = ctx
	t.putURL, t.getURL = t.base, t.base
	if t.c.stale {
		t.getURL.RawQuery = "consistency=stale"
	}
	t.body = &body{}
	t.getBody = t.body.rewind
	t.put = (&http.Request{
		Method:     http.MethodPut,
		URL:        &t.putURL,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     http.Header{"Content-Type": {"application/octet-stream"}},
		Host:       t.base.Host,
	}).WithContext(ctx)
	t.get = (&http.Request{
		Method:     http.MethodGet,
		URL:        &t.getURL,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     http.Header{},
		Host:       t.base.Host,
	}).WithContext(ctx)
}

// Put is PUT /v1/kv/{key} with value as the body.
func (t *nodeTarget) Put(ctx context.Context, key string, value []byte) error {
	if t.put == nil || t.ctx != ctx {
		t.reset(ctx)
	}
	t.put.URL.Path = "/v1/kv/" + key
	t.put.ContentLength = int64(len(value))
	if len(value) == 0 {
		t.put.Body, t.put.GetBody = http.NoBody, nil
	} else {
		t.body.value = value
		t.body.Reset(value)
		t.put.Body, t.put.GetBody = t.body, t.getBody
	}
	return t.do(t.put)
}

// Get is GET /v1/kv/{key}, linearizable unless the client is stale.
func (t *nodeTarget) Get(ctx context.Context, key string) error {
	if t.get == nil || t.ctx != ctx {
		t.reset(ctx)
	}
	t.get.URL.Path = "/v1/kv/" + key
	return t.do(t.get)
}

func (t *nodeTarget) do(req *http.Request) error {
	resp, err := t.c.hc.Do(req)
	if err != nil {
		t.put, t.get = nil, nil
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL would make every message unique; the node is enough
		}
		return &TransportError{Node: t.base.Host, Err: err}
	}
	if resp.StatusCode/100 == 2 {
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil {
			t.put, t.get = nil, nil
			return &TransportError{Node: t.base.Host, Err: fmt.Errorf("reading the answer: %w", err)}
		}
		return nil
	}
	t.put, t.get = nil, nil
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return statusError(t.base.Host, resp.StatusCode, b)
}

// StatusError is a non-2xx answer. Its kind is the status and raftkv's error code: "503 no_leader".
type StatusError struct {
	Node   string
	Status int
	Code   string // from the JSON error body; empty if there was none
	Msg    string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("%s answered %d %s: %s", e.Node, e.Status, e.Code, e.Msg)
}

// Kind is the error's kind for loadgen's breakdown.
func (e *StatusError) Kind() string {
	if e.Code == "" {
		return fmt.Sprintf("HTTP %d", e.Status)
	}
	return fmt.Sprintf("HTTP %d %s", e.Status, e.Code)
}

func statusError(node string, status int, body []byte) *StatusError {
	var e struct {
		Error string `json:"error"`
		Code  string `json:"code"`
	}
	se := &StatusError{Node: node, Status: status}
	if json.Unmarshal(body, &e) == nil {
		se.Code, se.Msg = e.Code, e.Error
	} else {
		se.Msg = strings.TrimSpace(string(body))
	}
	return se
}

// TransportError is a request that got no answer. Its kind comes from loadgen.TransportKind.
type TransportError struct {
	Node string
	Err  error
}

func (e *TransportError) Error() string { return e.Node + ": " + e.Err.Error() }
func (e *TransportError) Unwrap() error { return e.Err }
func (e *TransportError) Kind() string  { return loadgen.TransportKind(e.Err) }
