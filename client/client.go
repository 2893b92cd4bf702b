// Package client is the Go client of raftkv's HTTP API. It makes every operation safe to retry:
//
//   - writes (Put, CAS, Delete, DeleteCAS, Txn) carry an Idempotency-Key chosen once per call, so a write
//     whose outcome was unknown (a broken connection, a 503 indeterminate, a leader kill) is retried
//     on any node and applies exactly once; the answer is the first application's;
//   - stale reads carry the highest write index this Client has seen (min_index), so a stale read never
//     goes back in time, even when it lands on another node, and still costs no quorum round (a
//     linearizable read needs none: it already reflects every acknowledged write);
//   - connection errors and 503s fail over to the next endpoint, with exponential backoff and jitter,
//     within the call's context and Config.Timeout.
//
// Errors are typed for errors.Is and errors.As: ErrNotFound, *CASMismatchError (Is ErrCASMismatch),
// ErrIndeterminate, ErrKeyReused, ErrUnavailable, and *APIError for every answer from a node.
//
// The package speaks the wire contract only; it imports nothing else of raftkv.
package client

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults for the zero Config fields.
const (
	DefaultTimeout     = 15 * time.Second
	DefaultDialTimeout = 3 * time.Second
	DefaultMinBackoff  = 50 * time.Millisecond
	DefaultMaxBackoff  = 2 * time.Second
)

// Config configures a Client. Zero fields take the defaults above.
type Config struct {
	// Endpoints are the nodes' HTTP addresses: "host:port" or "http://host:port". Any node serves any
	// request; the Client starts with the first and moves on when one fails.
	Endpoints []string
	// Timeout bounds one call, retries included (the call's context may end it sooner).
	Timeout time.Duration
	// DialTimeout bounds one connection attempt, so a black-holed node costs seconds, not the budget.
	DialTimeout time.Duration
	// MinBackoff is the first retry delay; it doubles up to MaxBackoff, with jitter.
	MinBackoff, MaxBackoff time.Duration
	// HTTPClient replaces the default transport (tests, custom TLS). It must not follow redirects.
	HTTPClient *http.Client
	// RequireIdempotency refuses to send a write without its idempotency key. By default, when the
	// cluster answers that it cannot record keys yet (503 idempotency_unsupported: a member runs an
	// older build, during a rolling upgrade), the write is sent once more without a key, as clients
	// did before keys existed: it is then not retried once it may have reached a node, and an unknown
	// outcome is ErrIndeterminate. With RequireIdempotency the call fails with that *APIError instead.
	RequireIdempotency bool

	// TLS, when set, makes endpoints without a scheme https, and is the TLS configuration of the default
	// transport (RootCAs to verify the nodes, Certificates for a client certificate). With HTTPClient
	// set, that client's transport must carry the TLS configuration itself.
	TLS *tls.Config

	// Token is the secret of an ACL token, sent as "Authorization: Bearer" on every request (watches
	// included). Empty sends none (a cluster without ACLs).
	Token string

	// RoundRobin starts each call on the next endpoint in turn instead of the last one that answered:
	// stale reads spread over every node (client-side load balancing, as etcd's clientv3 balancer
	// does). Stale reads still carry the Client's min_index, so hopping between nodes never goes back in time.
	RoundRobin bool
}

// Client talks to a raftkv cluster through any of its nodes. It is safe for concurrent use.
type Client struct {
	bases []string // "http://host:port"
	cfg   Config
	hc    *http.Client

	mu  sync.Mutex
	cur int // index in bases of the node to try first: the last one that answered

	rr atomic.Uint64 // RoundRobin: calls started

	seen atomic.Uint64 // highest write index seen in any answer
}

// New returns a Client for cfg.
func New(cfg Config) (*Client, error) {
	if len(cfg.Endpoints) == 0 {
		return nil, errors.New("client: no endpoint given")
	}
	scheme := "http"
	if cfg.TLS != nil {
		scheme = "https"
	}
	bases := make([]string, 0, len(cfg.Endpoints))
	for _, a := range cfg.Endpoints {
		b, err := normalizeAddr(a, scheme)
		if err != nil {
			return nil, err
		}
		bases = append(bases, b)
	}
	if cfg.Timeout < 0 || cfg.DialTimeout < 0 || cfg.MinBackoff < 0 || cfg.MaxBackoff < 0 {
		return nil, errors.New("client: timeouts must not be negative")
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.DialTimeout == 0 {
		cfg.DialTimeout = DefaultDialTimeout
	}
	if cfg.MinBackoff == 0 {
		cfg.MinBackoff = DefaultMinBackoff
	}
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = DefaultMaxBackoff
	}
	cfg.MaxBackoff = max(cfg.MaxBackoff, cfg.MinBackoff)
	hc := cfg.HTTPClient
	if hc == nil {
		hc = newHTTPClient(cfg.DialTimeout, cfg.TLS)
	}
	return &Client{bases: bases, cfg: cfg, hc: hc}, nil
}

// newHTTPClient connects directly (a proxy's 502 would hide whether a write reached the node) and never
// follows redirects (the API has none; following one on a PUT could write another key).
func newHTTPClient(dial time.Duration, tlsConfig *tls.Config) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if tlsConfig != nil {
		tr.TLSClientConfig = tlsConfig.Clone()
	}
	tr.Proxy = nil
	tr.MaxIdleConnsPerHost = 64
	// No cap over all nodes: the default (100) is below 64 per node on a few nodes, and a busy client
	// past it closes and redials on every wave of calls.
	tr.MaxIdleConns = 0
	tr.DialContext = (&net.Dialer{Timeout: dial, KeepAlive: 30 * time.Second}).DialContext
	return &http.Client{
		Transport:     tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// Close releases idle connections.
func (c *Client) Close() error {
	c.hc.CloseIdleConnections()
	return nil
}

// LastIndex is the highest write index this Client has seen; its stale reads wait for at least it.
func (c *Client) LastIndex() uint64 { return c.seen.Load() }

// observe raises the highest seen index.
func (c *Client) observe(index uint64) {
	for {
		cur := c.seen.Load()
		if index <= cur || c.seen.CompareAndSwap(cur, index) {
			return
		}
	}
}

// normalizeAddr turns an endpoint into a base URL; scheme is the one used when a has none.
func normalizeAddr(a, scheme string) (string, error) {
	a = strings.TrimSuffix(strings.TrimSpace(a), "/")
	if i := strings.Index(a, "://"); i >= 0 {
		u, err := url.Parse(a)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Path != "" || u.RawQuery != "" {
			return "", fmt.Errorf("client: invalid endpoint %q: want host:port or http://host:port", a)
		}
		scheme, a = u.Scheme, u.Host
	}
	host, port, err := net.SplitHostPort(a)
	if err != nil || port == "" {
		return "", fmt.Errorf("client: invalid endpoint %q: want host:port or http://host:port", a)
	}
	if host == "" {
		host = "127.0.0.1"
	}
	return scheme + "://" + net.JoinHostPort(host, port), nil
}

func nodeName(base string) string {
	_, hostport, _ := strings.Cut(base, "://")
	return hostport
}

// kvPath escapes each segment of key and keeps "/" as the separator, for readable logs.
func kvPath(key string) string {
	if !needsEscape(key) {
		return "/v1/kv/" + key
	}
	segs := strings.Split(key, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return "/v1/kv/" + strings.Join(segs, "/")
}

// needsEscape: some byte of key is not kept as is in a path segment (RFC 3986 unreserved, or '/').
func needsEscape(key string) bool {
	for i := 0; i < len(key); i++ {
		switch c := key[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9',
			c == '-', c == '.', c == '_', c == '~', c == '/':
		default:
			return true
		}
	}
	return false
}

// call is one API request.
type call struct {
	method string
	path   string // escaped
	query  url.Values
	// rawQuery, when set, is the query already encoded (instead of query).
	rawQuery string
	body     []byte
	ctype    string
	// idemKey, when set, makes a write safe to retry whatever happened to an earlier attempt.
	idemKey string
	// write without idemKey: once it may have reached a node, it is never retried.
	write bool
	// retrySafe: a write whose repetition without its key has about the effect of one (session and
	// lock writes): still retried when the key was dropped (a cluster that cannot record it yet).
	retrySafe bool
	// longPoll: the server may hold the request this long; the call's budget grows by it.
	longPoll time.Duration
	// stream: a 2xx answer's body is left open for the caller (response.stream).
	stream bool
	// once: one attempt on the first endpoint, whatever happens (a readiness probe, an upload).
	once bool
	// bodyReader, when set, is the body instead of body: sent once, it cannot be replayed.
	bodyReader    io.Reader
	contentLength int64
}

type response struct {
	node   string
	header http.Header
	body   []byte
	stream io.ReadCloser // call.stream: the open body (body is nil)
}

// do runs cl with the retry policy. Retried on the next endpoint after a backoff: connection failures
// and 503 no_leader / not_ready / timeout / shutting_down (nothing applied); for reads and idempotent
// writes also broken connections and 503 indeterminate. A write that stays indeterminate until the
// budget is spent fails with ErrIndeterminate, anything else with ErrUnavailable.
func (c *Client) do(ctx context.Context, cl call) (*response, error) {
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout+cl.longPoll)
	defer cancel()
	backoff := c.cfg.MinBackoff
	indeterminate := false
	for attempt := 1; ; attempt++ {
		base := c.first()
		resp, err := c.attempt(ctx, parent, base, cl)
		if err == nil {
			return resp, nil
		}
		if cl.once || cl.bodyReader != nil {
			if cl.write && sentOrIndeterminate(err) {
				return nil, fmt.Errorf("%w: %w", ErrIndeterminate, err)
			}
			return nil, err
		}
		if cl.idemKey != "" && !indeterminate && !c.cfg.RequireIdempotency && isCode(err, codeIdempotencyUnsupported) {
			// Nothing was applied, and no earlier attempt may have been: the plain write is safe to
			// send, once (see Config.RequireIdempotency).
			cl.idemKey = ""
			continue
		}
		mayHaveApplied := cl.write && sentOrIndeterminate(err)
		indeterminate = indeterminate || mayHaveApplied
		if mayHaveApplied && cl.idemKey == "" && !cl.retrySafe {
			return nil, fmt.Errorf("%w: %w", ErrIndeterminate, err)
		}
		if !retryable(err) {
			switch {
			case !indeterminate || settles(err):
				// Definite, even after an indeterminate attempt when it is the write's own outcome:
				// with the idempotency key, the server answers a retry with the first application's.
				return nil, err
			case !isAuthError(err):
				// An answer about this attempt only says nothing of the earlier one.
				return nil, fmt.Errorf("%w: %w", ErrIndeterminate, err)
			}
			// 401/403 after an attempt that may have applied: a node that has not caught up on the
			// ACLs yet (restarted, replaced) refuses a token the others know. Settle the write there.
		}
		c.rotate(base)
		delay := backoff/2 + mrand.N(backoff/2+1) // jitter in [backoff/2, backoff]
		backoff = min(2*backoff, c.cfg.MaxBackoff)
		giveUp := func() error {
			if parent.Err() != nil {
				err = fmt.Errorf("%w: %w", parent.Err(), err)
			} else {
				err = fmt.Errorf("%w after %d attempts in %s; last error: %w", ErrUnavailable, attempt, c.cfg.Timeout, err)
			}
			if indeterminate {
				return fmt.Errorf("%w: %w", ErrIndeterminate, err)
			}
			return err
		}
		if d, ok := ctx.Deadline(); ok && time.Until(d) < delay {
			return nil, giveUp()
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, giveUp()
		case <-t.C:
		}
	}
}

// attempt is one try of cl on base under the call's budget ctx. A stream's attempt runs under parent
// instead, with the budget bounding only the wait for the answer's headers: its body may take longer,
// and is ended by parent or by closing it.
func (c *Client) attempt(ctx, parent context.Context, base string, cl call) (*response, error) {
	if !cl.stream {
		return c.once(ctx, base, cl)
	}
	actx, cancel := context.WithCancel(parent)
	deadline, _ := ctx.Deadline()
	timer := time.AfterFunc(time.Until(deadline), cancel)
	resp, err := c.once(actx, base, cl)
	if err != nil {
		timer.Stop()
		cancel()
		return nil, err
	}
	if !timer.Stop() { // the budget ran out as the answer came
		resp.stream.Close()
		cancel()
		return nil, &transportError{node: resp.node, sent: true, err: context.DeadlineExceeded}
	}
	resp.stream = &cancelOnClose{ReadCloser: resp.stream, cancel: cancel}
	return resp, nil
}

type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (b *cancelOnClose) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}

// sentOrIndeterminate: the attempt may have been applied.
func sentOrIndeterminate(err error) bool {
	var te *transportError
	if errors.As(err, &te) {
		return te.sent
	}
	var ae *APIError
	return errors.As(err, &ae) && (ae.Code == codeIndeterminate || (ae.Code == "" && ae.Status >= 500))
}

// settles: an answer to a retried write that is the write's own outcome (the server checked the
// request itself, or answered the first application's result from its idempotency record).
func settles(err error) bool {
	var ae *APIError
	if !errors.As(err, &ae) || ae.Code == "" {
		return false
	}
	switch ae.Status {
	case http.StatusBadRequest, http.StatusNotFound, http.StatusConflict, http.StatusRequestEntityTooLarge,
		http.StatusUnprocessableEntity:
		return true
	}
	return false
}

func isAuthError(err error) bool {
	var ae *APIError
	return errors.As(err, &ae) && (ae.Status == http.StatusUnauthorized || ae.Status == http.StatusForbidden)
}

func isCode(err error, code string) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.Code == code
}

func retryable(err error) bool {
	if errors.As(err, new(*transportError)) {
		return true
	}
	var ae *APIError
	if !errors.As(err, &ae) {
		return false
	}
	switch ae.Code {
	case codeNoLeader, codeNotReady, codeTimeout, codeShuttingDown, codeIndeterminate:
		return true
	case "":
		return ae.Status == http.StatusBadGateway || ae.Status == http.StatusServiceUnavailable ||
			ae.Status == http.StatusGatewayTimeout
	}
	return false
}

func (c *Client) first() string {
	if c.cfg.RoundRobin {
		return c.bases[(c.rr.Add(1)-1)%uint64(len(c.bases))]
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bases[c.cur]
}

// rotate moves on from base to the next endpoint, unless another call already did.
func (c *Client) rotate(base string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.bases[c.cur] == base {
		c.cur = (c.cur + 1) % len(c.bases)
	}
}

// once sends cl to one node: a non-2xx answer is an *APIError, no answer a *transportError.
func (c *Client) once(ctx context.Context, base string, cl call) (*response, error) {
	node := nodeName(base)
	var u string
	switch {
	case cl.rawQuery != "":
		u = base + cl.path + "?" + cl.rawQuery
	case len(cl.query) > 0:
		u = base + cl.path + "?" + cl.query.Encode()
	default:
		u = base + cl.path
	}
	var body io.Reader
	if cl.body != nil {
		body = bytes.NewReader(cl.body)
	}
	if cl.bodyReader != nil {
		body = cl.bodyReader
	}
	req, err := http.NewRequestWithContext(ctx, cl.method, u, body)
	if err != nil {
		return nil, fmt.Errorf("client: %s: %w", node, err)
	}
	if cl.bodyReader != nil {
		req.ContentLength = cl.contentLength
	}
	c.authorize(req)
	if cl.ctype != "" {
		req.Header.Set("Content-Type", cl.ctype)
	} else if cl.body != nil {
		req.Header.Set("Content-Type", "application/octet-stream")
	}
	if cl.idemKey != "" {
		req.Header.Set("Idempotency-Key", cl.idemKey)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if ue, ok := err.(*url.Error); ok {
			err = ue.Err
		}
		return nil, &transportError{node: node, sent: !isDialError(err), err: err}
	}
	if cl.stream && resp.StatusCode/100 == 2 {
		c.observeHeaders(resp.Header)
		return &response{node: node, header: resp.Header, stream: resp.Body}, nil
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, &transportError{node: node, sent: true, err: fmt.Errorf("reading answer: %w", err)}
	}
	c.observeHeaders(resp.Header)
	if resp.StatusCode/100 != 2 {
		ae := decodeAPIError(node, resp.StatusCode, b)
		ae.Index, _ = strconv.ParseUint(resp.Header.Get("X-Kv-Index"), 10, 64)
		return nil, ae
	}
	return &response{node: node, header: resp.Header, body: b}, nil
}

// observeHeaders raises the highest seen index to what an answer's headers say.
func (c *Client) observeHeaders(h http.Header) {
	for _, name := range [...]string{"X-Kv-Index", "X-Kv-Applied-Index", "X-Kv-Mod-Index"} {
		if s := h[name]; len(s) > 0 { // a missing header would cost ParseUint an error allocation
			if v, err := strconv.ParseUint(s[0], 10, 64); err == nil {
				c.observe(v)
			}
		}
	}
}

func isDialError(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	var dns *net.DNSError
	return errors.As(err, &dns)
}

func decodeJSON(resp *response, v any) error {
	if err := json.Unmarshal(resp.body, v); err != nil {
		return fmt.Errorf("client: %s: unexpected answer: %w", resp.node, err)
	}
	return nil
}

// Request is a raw API call for what the typed methods do not cover (the CLI's streams and admin
// routes): Do runs it with the same failover, backoff and error decoding.
type Request struct {
	Method      string
	Path        string // escaped, e.g. "/v1/cluster/join"
	Query       url.Values
	Body        []byte // nil: no body
	ContentType string // default application/octet-stream when there is a body
	// Write marks a request that changes state. Unless Idempotent, it is never retried once it may
	// have reached a node (ErrIndeterminate instead).
	Write bool
	// Idempotent gives a write a fresh Idempotency-Key for this call, so it is retried safely. The KV
	// writes (PUT, DELETE of /v1/kv/...) and POST /v1/txn honour the key.
	Idempotent bool
	// Once sends the request to the first endpoint once, without failover or retry: its answer (or
	// failure) is the result. For probes of one node (GET /readyz).
	Once bool
	// BodyReader, when set, is streamed as the body instead of Body (an archive to restore), with
	// ContentLength if known (-1 otherwise). It cannot be replayed, so the request is sent once, as
	// with Once; a Write that may have reached the node is then ErrIndeterminate.
	BodyReader    io.Reader
	ContentLength int64
}

// Response is a 2xx answer, read in full.
type Response struct {
	Node   string // host:port that answered
	Header http.Header
	Body   []byte
}

// Do runs r. A non-2xx answer is an *APIError (after the retries the policy allows).
func (c *Client) Do(ctx context.Context, r Request) (*Response, error) {
	resp, err := c.do(ctx, r.call())
	if err != nil {
		return nil, err
	}
	return &Response{Node: resp.node, Header: resp.header, Body: resp.body}, nil
}

func (r Request) call() call {
	cl := call{method: r.Method, path: r.Path, query: r.Query, body: r.Body, ctype: r.ContentType, write: r.Write,
		once: r.Once, bodyReader: r.BodyReader, contentLength: r.ContentLength}
	if r.Write && r.Idempotent && r.BodyReader == nil {
		cl.idemKey = newIdempotencyKey()
	}
	return cl
}

// Stream is a 2xx answer whose body is still being received (a backup download): read it, then Close.
type Stream struct {
	Node   string // host:port that answered
	Header http.Header
	Body   io.ReadCloser
}

// Open runs r like Do, failing over until a node answers 2xx, and returns that answer with its body
// unread. Once the body is flowing, a failure is the caller's to handle (start over with Open).
func (c *Client) Open(ctx context.Context, r Request) (*Stream, error) {
	cl := r.call()
	cl.stream = true
	resp, err := c.do(ctx, cl)
	if err != nil {
		return nil, err
	}
	return &Stream{Node: resp.node, Header: resp.header, Body: resp.stream}, nil
}

// newIdempotencyKey is 128 random bits: unique across clients without coordination.
func newIdempotencyKey() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b[:])
}

// authorize adds the token, if any, to a request.
func (c *Client) authorize(req *http.Request) {
	if c.cfg.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.cfg.Token)
	}
}
