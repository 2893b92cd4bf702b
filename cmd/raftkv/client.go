package main

// client.go is the HTTP client for raftkv's public API: one small type with a method per endpoint and the
// retry loop in one place (do). The client commands and `raftkv dev` use it; it speaks the wire contract
// (JSON shapes mirrored below), never the server's Go types, so it builds even while those change.

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	rkv "github.com/raftkv/raftkv/client"
)

const (
	defaultAddr       = "127.0.0.1:7000"
	defaultTimeout    = 15 * time.Second
	defaultMinBackoff = 100 * time.Millisecond
	defaultMaxBackoff = 2 * time.Second
	// dialTimeout bounds one connection attempt, so a black-holed node costs seconds, not the whole budget.
	dialTimeout = 3 * time.Second
)

// Error codes the client treats specially (docs/design.md has the full table).
const (
	codeKeyNotFound     = "key_not_found"
	codeUnknownMember   = "unknown_member"
	codeCASMismatch     = "cas_mismatch"
	codeWouldLoseQuorum = "would_lose_quorum"
	codeIndeterminate   = "indeterminate"
	codeNoLeader        = "no_leader"
	codeNotReady        = "not_ready"
	codeNotLeader       = "not_leader"
	codeTimeout         = "timeout"
	codeShuttingDown    = "shutting_down"
)

var (
	// errIndeterminate: a write may or may not have been applied (its connection broke after the request
	// was sent, or the call was interrupted while waiting for the answer). Never retried.
	errIndeterminate = errors.New("the write may or may not have been applied")
	// errGaveUp: transient failures lasted for the whole retry budget.
	errGaveUp = errors.New("gave up")
)

// apiError is an error answer from a node: {"error": "...", "code": "..."} plus the HTTP status.
type apiError struct {
	node    string // host:port that answered
	status  int
	code    string // empty when the body was not a raftkv error (e.g. from a proxy)
	msg     string
	current uint64 // cas_mismatch only: the key's current modify index (0 when absent)
}

func (e *apiError) Error() string {
	s := fmt.Sprintf("%s answered %d: %q", e.node, e.status, e.msg)
	if e.code != "" {
		s += " (code " + e.code + ")"
	}
	switch e.code {
	case codeCASMismatch:
		s = fmt.Sprintf("cas failed, current index is %d: %s", e.current, s)
	case codeIndeterminate:
		s = errIndeterminate.Error() + ": " + s
	}
	return s
}

// clientConfig configures a client; zero fields take the defaults.
type clientConfig struct {
	addrs      []string      // "host:port", optionally with an http:// or https:// scheme
	timeout    time.Duration // total retry budget of one call (default 15 s)
	minBackoff time.Duration // first retry delay (default 100 ms), doubling up to maxBackoff
	maxBackoff time.Duration // default 2 s
	httpClient *http.Client  // default: see newHTTPClient
	tls        *tls.Config   // nil: plain HTTP; set: https by default, this config on the default transport
	token      string        // ACL token secret, sent on every request (streams too); "" sends none
}

// client talks to a raftkv cluster through any of its nodes. It is safe for concurrent use.
type client struct {
	// pub runs every request/response call: one retry policy, one error decoding, in the public
	// client package. What stays here is the CLI's view of it and the streams (watch, snapshot).
	pub *rkv.Client
	cfg clientConfig
	hc  *http.Client
}

func newClient(cfg clientConfig) (*client, error) {
	if len(cfg.addrs) == 0 {
		return nil, errors.New("no node address given")
	}
	for _, a := range cfg.addrs { // the CLI's own wording for a bad --addr
		if _, err := normalizeAddr(a); err != nil {
			return nil, err
		}
	}
	if cfg.timeout < 0 || cfg.minBackoff < 0 || cfg.maxBackoff < 0 {
		return nil, errors.New("timeouts must not be negative")
	}
	if cfg.timeout == 0 {
		cfg.timeout = defaultTimeout
	}
	if cfg.minBackoff == 0 {
		cfg.minBackoff = defaultMinBackoff
	}
	if cfg.maxBackoff == 0 {
		cfg.maxBackoff = defaultMaxBackoff
	}
	cfg.maxBackoff = max(cfg.maxBackoff, cfg.minBackoff)
	hc := cfg.httpClient
	if hc == nil {
		hc = newHTTPClient(cfg.tls)
	}
	if cfg.token != "" {
		// On the transport, so that the streams (watch, snapshot) built here carry it too.
		t := *hc
		t.Transport = tokenTransport{token: cfg.token, next: transportOrDefault(hc.Transport)}
		hc = &t
	}
	pub, err := rkv.New(rkv.Config{Endpoints: cfg.addrs, Timeout: cfg.timeout, MinBackoff: cfg.minBackoff,
		MaxBackoff: cfg.maxBackoff, HTTPClient: hc, TLS: cfg.tls})
	if err != nil {
		return nil, err
	}
	return &client{pub: pub, cfg: cfg, hc: hc}, nil
}

// node is a client of the one node at addr (a leader a status named, the first --addr for a probe),
// over this client's transport, TLS and token.
func (c *client) node(addr string) (*rkv.Client, error) {
	return c.nodeWithTimeout(addr, c.cfg.timeout)
}

// nodeWithTimeout is node with its own budget per call (a restore's upload is not bound by --timeout).
func (c *client) nodeWithTimeout(addr string, timeout time.Duration) (*rkv.Client, error) {
	return rkv.New(rkv.Config{Endpoints: []string{addr}, Timeout: timeout, MinBackoff: c.cfg.minBackoff,
		MaxBackoff: c.cfg.maxBackoff, HTTPClient: c.hc, TLS: c.cfg.tls})
}

// newHTTPClient connects directly (no proxy: a proxy's 502 would hide whether a write reached the node,
// and nodes are addressed by IP anyway) and never follows redirects (the API has none; following one on
// a PUT could write a different key).
func newHTTPClient(tlsConfig *tls.Config) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if tlsConfig != nil {
		tr.TLSClientConfig = tlsConfig.Clone()
	}
	tr.Proxy = nil
	tr.DialContext = (&net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}).DialContext
	return &http.Client{
		Transport: tr,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// tokenTransport adds "Authorization: Bearer <token>" to every request.
type tokenTransport struct {
	token string
	next  http.RoundTripper
}

func (t tokenTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context()) // a RoundTripper must not modify the caller's request
	r.Header.Set("Authorization", "Bearer "+t.token)
	return t.next.RoundTrip(r)
}

func transportOrDefault(rt http.RoundTripper) http.RoundTripper {
	if rt == nil {
		return http.DefaultTransport
	}
	return rt
}

// close releases idle connections.
func (c *client) close() { c.hc.CloseIdleConnections() }

// splitAddrs splits a comma-separated address list, dropping empty items.
func splitAddrs(s string) []string {
	var out []string
	for _, a := range strings.Split(s, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}

// normalizeAddr turns "host:port", "http://host:port" or "https://host:port/" into a base URL.
func normalizeAddr(a string) (string, error) { return normalizeAddrScheme(a, "http") }

// normalizeAddrScheme is normalizeAddr with scheme for an address that has none.
func normalizeAddrScheme(a, scheme string) (string, error) {
	a = strings.TrimSuffix(strings.TrimSpace(a), "/")
	if i := strings.Index(a, "://"); i >= 0 {
		u, err := url.Parse(a)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Path != "" || u.RawQuery != "" {
			return "", fmt.Errorf("invalid node address %q: want host:port or http://host:port", a)
		}
		scheme, a = u.Scheme, u.Host
	}
	host, port, err := net.SplitHostPort(a)
	if err != nil || port == "" {
		return "", fmt.Errorf("invalid node address %q: want host:port or http://host:port", a)
	}
	if host == "" {
		host = "127.0.0.1"
	}
	return scheme + "://" + net.JoinHostPort(host, port), nil
}

// nodeName is a base URL as shown in messages: host:port.
func nodeName(base string) string {
	_, hostport, _ := strings.Cut(base, "://")
	return hostport
}

// kvPath is the escaped path of a key: every segment is path-escaped, "/" stays the separator.
// (url.PathEscape on the whole key would turn "/" into %2F; the server accepts both, but this keeps
// paths readable in logs.)
func kvPath(key string) string {
	segs := strings.Split(key, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return "/v1/kv/" + strings.Join(segs, "/")
}

// call is one API request.
type call struct {
	method string
	path   string // already escaped
	query  url.Values
	body   []byte // nil: no body
	ctype  string
	// write marks a request that changes state: once it may have reached a node, a failure is reported
	// as indeterminate and never retried, unless idempotent.
	write bool
	// idempotent: a KV write or a transaction, sent with an Idempotency-Key and so retried safely.
	idempotent bool
}

// response is a 2xx answer, body read in full.
type response struct {
	node   string
	header http.Header
	body   []byte
}

// do runs a call through the public client's retry policy: failures to connect and 503 no_leader /
// not_ready / timeout / shutting_down are retried on the next node; reads and idempotent writes (put and
// delete carry an Idempotency-Key) also after a broken connection or 503 indeterminate. Its errors are
// translated into the CLI's: *apiError for an answer, errIndeterminate, errGaveUp.
func (c *client) do(ctx context.Context, cl call) (*response, error) {
	resp, err := c.pub.Do(ctx, rkv.Request{Method: cl.method, Path: cl.path, Query: cl.query, Body: cl.body,
		ContentType: cl.ctype, Write: cl.write, Idempotent: cl.idempotent})
	if err != nil {
		return nil, c.fromPublic(ctx, err)
	}
	return &response{node: resp.Node, header: resp.Header, body: resp.Body}, nil
}

// fromPublic maps the public client's errors onto the CLI's, keeping the CLI's messages.
func (c *client) fromPublic(ctx context.Context, err error) error {
	last := err // the node's answer, in the CLI's form, when there is one
	var pe *rkv.APIError
	if errors.As(err, &pe) {
		last = &apiError{node: pe.Node, status: pe.Status, code: pe.Code, msg: pe.Message, current: pe.CurrentIndex}
	}
	switch {
	case ctx.Err() != nil:
		return fmt.Errorf("interrupted: %w", last)
	case errors.Is(err, rkv.ErrIndeterminate):
		return fmt.Errorf("%w: %w", errIndeterminate, last)
	case errors.Is(err, rkv.ErrUnavailable):
		return fmt.Errorf("%w after %s; last error: %w", errGaveUp, c.cfg.timeout, last)
	}
	return last
}

func decodeBody(resp *response, v any) error {
	if err := json.Unmarshal(resp.body, v); err != nil {
		return fmt.Errorf("%s: unexpected answer: %w", resp.node, err)
	}
	return nil
}

// casCond is an optional cas precondition; it is also the --cas flag's value.
type casCond struct {
	set   bool
	index uint64 // the key's modify index must equal this; 0 means the key must be absent
}

func (c *casCond) String() string {
	if c == nil || !c.set {
		return ""
	}
	return strconv.FormatUint(c.index, 10)
}

func (c *casCond) Set(s string) error {
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return errors.New("want a non-negative integer index")
	}
	c.set, c.index = true, v
	return nil
}

func (c casCond) query() url.Values {
	if !c.set {
		return nil
	}
	return url.Values{"cas": {strconv.FormatUint(c.index, 10)}}
}

// put writes key and returns the write's index.
func (c *client) put(ctx context.Context, key string, value []byte, cas casCond) (uint64, error) {
	if value == nil {
		value = []byte{}
	}
	resp, err := c.do(ctx, call{method: http.MethodPut, path: kvPath(key), query: cas.query(),
		body: value, ctype: "application/octet-stream", write: true, idempotent: true})
	if err != nil {
		return 0, err
	}
	var out struct {
		Index uint64 `json:"index"`
	}
	return out.Index, decodeBody(resp, &out)
}

// kvValue is a GET answer.
type kvValue struct {
	value       []byte
	createIndex uint64
	modIndex    uint64
	index       uint64 // X-Kv-Index: the write index the answer reflects
}

func (c *client) get(ctx context.Context, key string, stale bool) (kvValue, error) {
	return c.getPoll(ctx, key, stale, 0, 0)
}

// getPoll is get, and with wait > 0 a long-poll: the answer comes once the key has a change with an
// index above index, or after wait.
func (c *client) getPoll(ctx context.Context, key string, stale bool, index uint64, wait time.Duration) (kvValue, error) {
	resp, err := c.do(ctx, call{method: http.MethodGet, path: kvPath(key), query: pollQuery(consistency(stale), index, wait)})
	if err != nil {
		return kvValue{}, err
	}
	v := kvValue{value: resp.body}
	v.index, _ = strconv.ParseUint(resp.header.Get("X-Kv-Index"), 10, 64)
	v.createIndex, _ = strconv.ParseUint(resp.header.Get("X-Kv-Create-Index"), 10, 64)
	v.modIndex, _ = strconv.ParseUint(resp.header.Get("X-Kv-Mod-Index"), 10, 64)
	return v, nil
}

// delete removes key; deleted is false when it did not exist.
func (c *client) delete(ctx context.Context, key string, cas casCond) (index uint64, deleted bool, err error) {
	resp, err := c.do(ctx, call{method: http.MethodDelete, path: kvPath(key), query: cas.query(), write: true, idempotent: true})
	if err != nil {
		return 0, false, err
	}
	var out struct {
		Index   uint64 `json:"index"`
		Deleted bool   `json:"deleted"`
	}
	err = decodeBody(resp, &out)
	return out.Index, out.Deleted, err
}

func consistency(stale bool) url.Values {
	if !stale {
		return nil
	}
	return url.Values{"consistency": {"stale"}}
}

// listEntry mirrors one element of a list answer (fsm.Entry's JSON).
type listEntry struct {
	Key         string `json:"key"`
	Value       []byte `json:"value"` // base64 on the wire
	CreateIndex uint64 `json:"create_index"`
	ModIndex    uint64 `json:"mod_index"`
}

type listQuery struct {
	prefix string
	after  string // exclusive start key, unescaped; "" from the beginning
	limit  int    // page size; 0 for the server's default
	stale  bool
}

// listPage is one page of a list; entries are kept raw so --json can print them as sent.
type listPage struct {
	entries   []json.RawMessage
	more      bool
	nextAfter string // unescaped; the after of the next page
}

func (c *client) list(ctx context.Context, q listQuery) (listPage, error) {
	v := consistency(q.stale)
	if v == nil {
		v = url.Values{}
	}
	if q.prefix != "" {
		v.Set("prefix", q.prefix)
	}
	if q.after != "" {
		v.Set("after", q.after)
	}
	if q.limit > 0 {
		v.Set("limit", strconv.Itoa(q.limit))
	}
	resp, err := c.do(ctx, call{method: http.MethodGet, path: "/v1/kv", query: v})
	if err != nil {
		return listPage{}, err
	}
	var p listPage
	if err := decodeBody(resp, &p.entries); err != nil {
		return listPage{}, err
	}
	p.more = strings.EqualFold(resp.header.Get("X-Kv-More"), "true")
	if p.more {
		next := resp.header.Get("X-Kv-Next-After")
		if next == "" {
			return listPage{}, fmt.Errorf("%s: X-Kv-More without X-Kv-Next-After", resp.node)
		}
		if p.nextAfter, err = url.QueryUnescape(next); err != nil {
			return listPage{}, fmt.Errorf("%s: bad X-Kv-Next-After %q: %w", resp.node, next, err)
		}
	}
	return p, nil
}

// clusterStatus mirrors store.Status's JSON.
type clusterStatus struct {
	NodeID       string          `json:"node_id"`
	State        string          `json:"state"`
	Leader       *clusterMember  `json:"leader"`
	Term         uint64          `json:"term"`
	CommitIndex  uint64          `json:"commit_index"`
	AppliedIndex uint64          `json:"applied_index"`
	LastIndex    uint64          `json:"last_log_index"`
	Members      []clusterMember `json:"members"`
}

// clusterMember mirrors store.Member's JSON.
type clusterMember struct {
	ID          string `json:"id"`
	RaftAddr    string `json:"raft_addr"`
	HTTPAddr    string `json:"http_addr,omitempty"`
	GossipAddr  string `json:"gossip_addr,omitempty"`
	Suffrage    string `json:"suffrage"`
	GossipState string `json:"gossip_state"`
	Leader      bool   `json:"leader"`
}

// status returns the cluster view of the node that answered, decoded and raw.
func (c *client) status(ctx context.Context) (clusterStatus, []byte, error) {
	resp, err := c.do(ctx, call{method: http.MethodGet, path: "/v1/cluster"})
	if err != nil {
		return clusterStatus{}, nil, err
	}
	var st clusterStatus
	return st, resp.body, decodeBody(resp, &st)
}

// join asks the node to gossip-join the cluster that gossipAddr belongs to. Joining is harmless to repeat,
// so unlike other writes it is retried after any transient failure.
func (c *client) join(ctx context.Context, gossipAddr string) error {
	body, err := json.Marshal(struct {
		Addr string `json:"addr"`
	}{gossipAddr})
	if err != nil {
		return err
	}
	_, err = c.do(ctx, call{method: http.MethodPost, path: "/v1/cluster/join", body: body, ctype: "application/json"})
	return err
}

// leave asks the node to leave the cluster gracefully.
func (c *client) leave(ctx context.Context, force bool) error {
	_, err := c.do(ctx, call{method: http.MethodPost, path: "/v1/cluster/leave" + forceQuery(force), body: []byte{}, write: true})
	return err
}

// removeMember removes a member from the Raft configuration.
func (c *client) removeMember(ctx context.Context, id string, force bool) error {
	_, err := c.do(ctx, call{method: http.MethodDelete, path: "/v1/cluster/members/" + url.PathEscape(id) + forceQuery(force), write: true})
	return err
}

func forceQuery(force bool) string {
	if force {
		return "?force=true"
	}
	return ""
}

// ready asks the first node once, without retrying, whether it is ready (GET /readyz is 200).
func (c *client) ready(ctx context.Context) error {
	n, err := c.node(c.cfg.addrs[0])
	if err != nil {
		return err
	}
	if _, err = n.Do(ctx, rkv.Request{Method: http.MethodGet, Path: "/readyz", Once: true}); err != nil {
		return c.fromPublic(ctx, err)
	}
	return nil
}

// CloseIdleConnections passes through, so client.close still releases connections.
func (t tokenTransport) CloseIdleConnections() {
	if c, ok := t.next.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}
