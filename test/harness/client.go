package harness

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// DefaultRequestTimeout bounds every request a Client sends unless told otherwise.
const DefaultRequestTimeout = 5 * time.Second

// Client talks to one node's HTTP API.
type Client struct {
	BaseURL string
	Timeout time.Duration
	HTTP    *http.Client
	// Token, if set, is sent as "Authorization: Bearer" on every request (a cluster with ACLs on).
	Token string
}

// NewClient returns a client for the node serving HTTP on addr (host:port).
func NewClient(addr string, timeout time.Duration) *Client {
	if timeout <= 0 {
		timeout = DefaultRequestTimeout
	}
	return &Client{
		BaseURL: "http://" + addr,
		Timeout: timeout,
		HTTP: &http.Client{Transport: &http.Transport{
			MaxIdleConnsPerHost: 16,
			IdleConnTimeout:     30 * time.Second,
		}},
	}
}

// UseTLS makes c speak https with cfg.
func (c *Client) UseTLS(cfg *tls.Config) {
	c.BaseURL = "https://" + strings.TrimPrefix(c.BaseURL, "http://")
	c.HTTP.Transport.(*http.Transport).TLSClientConfig = cfg.Clone()
}

// Response is one answer, decoded as far as the API defines it. Err is set when no HTTP response
// arrived at all (then Status is 0).
type Response struct {
	Method, Path string
	Status       int
	Header       http.Header
	Body         []byte
	Err          error
	// NotSent: the request certainly never reached the server (the connection could not be made).
	NotSent bool

	// From JSON bodies.
	Index        uint64
	Deleted      bool
	Error        string
	Code         string
	CurrentIndex uint64

	// From a successful key GET.
	ModIndex, CreateIndex uint64
}

func (r *Response) String() string {
	if r.Err != nil {
		return fmt.Sprintf("%s %s: %v (not sent: %t)", r.Method, r.Path, r.Err, r.NotSent)
	}
	body := r.Body
	if len(body) > 200 {
		body = append(body[:200:200], "..."...)
	}
	return fmt.Sprintf("%s %s: %d %s", r.Method, r.Path, r.Status, body)
}

// OK reports a 2xx answer.
func (r *Response) OK() bool { return r.Err == nil && r.Status >= 200 && r.Status < 300 }

// Outcome classifies a write's answer.
type Outcome int

const (
	// Applied: 2xx.
	Applied Outcome = iota
	// CASFailed: 409, the write was refused because of its cas precondition.
	CASFailed
	// NoEffect: the request certainly changed nothing (4xx, 503 no_leader/timeout/not_ready/
	// shutting_down, or the connection could not even be made).
	NoEffect
	// Indeterminate: the write may or may not have happened (503 indeterminate, other 5xx, timeouts,
	// connections broken after the request was sent).
	Indeterminate
)

func (o Outcome) String() string {
	return [...]string{"applied", "cas-failed", "no-effect", "indeterminate"}[o]
}

// Outcome classifies the response of a write request.
func (r *Response) Outcome() Outcome {
	switch {
	case r.Err != nil && r.NotSent:
		return NoEffect
	case r.Err != nil:
		return Indeterminate
	case r.Status >= 200 && r.Status < 300:
		return Applied
	case r.Status == http.StatusConflict && r.Code == "cas_mismatch":
		return CASFailed
	case r.Status >= 400 && r.Status < 500:
		return NoEffect
	case r.Status == http.StatusServiceUnavailable:
		switch r.Code {
		case "no_leader", "timeout", "not_ready", "shutting_down":
			return NoEffect
		}
	}
	return Indeterminate
}

// Do sends one request with the client's timeout.
func (c *Client) Do(method, path string, body []byte) *Response {
	ctx, cancel := context.WithTimeout(context.Background(), c.Timeout)
	defer cancel()
	return c.DoContext(ctx, method, path, body)
}

// DoContext sends one request bounded by ctx.
func (c *Client) DoContext(ctx context.Context, method, path string, body []byte) *Response {
	r := &Response{Method: method, Path: path}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.BaseURL+path, rd)
	if err != nil {
		r.Err, r.NotSent = err, true
		return r
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	for k, v := range headersFrom(ctx) {
		req.Header[k] = v
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		r.Err, r.NotSent = err, notSent(err)
		return r
	}
	defer resp.Body.Close()
	r.Status, r.Header = resp.StatusCode, resp.Header
	r.Body, err = io.ReadAll(resp.Body)
	if err != nil {
		// A broken body: whatever the status said, the answer (e.g. a write's index) is lost, which
		// for a write is as good as not knowing whether it happened.
		r.Err = fmt.Errorf("reading body after status %d: %w", r.Status, err)
		return r
	}
	isValueGet := method == http.MethodGet && r.Status == http.StatusOK && strings.HasPrefix(path, "/v1/kv/")
	if isValueGet {
		r.ModIndex, _ = strconv.ParseUint(resp.Header.Get("X-Kv-Mod-Index"), 10, 64)
		r.CreateIndex, _ = strconv.ParseUint(resp.Header.Get("X-Kv-Create-Index"), 10, 64)
	} else if len(r.Body) > 0 && r.Body[0] == '{' {
		var b struct {
			Index        uint64 `json:"index"`
			Deleted      bool   `json:"deleted"`
			Error        string `json:"error"`
			Code         string `json:"code"`
			CurrentIndex uint64 `json:"current_index"`
		}
		if json.Unmarshal(r.Body, &b) == nil { // best effort: callers check the fields they need
			r.Index, r.Deleted, r.Error, r.Code, r.CurrentIndex = b.Index, b.Deleted, b.Error, b.Code, b.CurrentIndex
		}
	}
	return r
}

type headersKey struct{}

// WithHeader makes every request sent under the returned context carry header name: value.
func WithHeader(ctx context.Context, name, value string) context.Context {
	h := headersFrom(ctx).Clone()
	if h == nil {
		h = http.Header{}
	}
	h.Set(name, value)
	return context.WithValue(ctx, headersKey{}, h)
}

func headersFrom(ctx context.Context) http.Header {
	h, _ := ctx.Value(headersKey{}).(http.Header)
	return h
}

// PutIdempotent writes key=value with an Idempotency-Key: retried with the same idemKey, it applies
// at most once and answers the first outcome.
func (c *Client) PutIdempotent(key string, value []byte, idemKey string) *Response {
	ctx, cancel := context.WithTimeout(WithHeader(context.Background(), "Idempotency-Key", idemKey), c.Timeout)
	defer cancel()
	return c.DoContext(ctx, http.MethodPut, keyPath(key, nil), value)
}

// notSent reports whether err shows the request never reached a server: the dial failed.
func notSent(err error) bool {
	if errors.Is(err, syscall.ECONNREFUSED) {
		return true
	}
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

func keyPath(key string, q url.Values) string {
	p := "/v1/kv/" + url.PathEscape(key)
	if len(q) > 0 {
		p += "?" + q.Encode()
	}
	return p
}

// Put writes key=value unconditionally.
func (c *Client) Put(key string, value []byte) *Response {
	return c.Do(http.MethodPut, keyPath(key, nil), value)
}

// CAS writes key=value only if the key's modify index is expected (0: only if absent).
func (c *Client) CAS(key string, expected uint64, value []byte) *Response {
	return c.Do(http.MethodPut, keyPath(key, url.Values{"cas": {strconv.FormatUint(expected, 10)}}), value)
}

// Delete removes key unconditionally.
func (c *Client) Delete(key string) *Response {
	return c.Do(http.MethodDelete, keyPath(key, nil), nil)
}

// DeleteCAS removes key only if its modify index is expected.
func (c *Client) DeleteCAS(key string, expected uint64) *Response {
	return c.Do(http.MethodDelete, keyPath(key, url.Values{"cas": {strconv.FormatUint(expected, 10)}}), nil)
}

// Get reads key linearizably (the server's default).
func (c *Client) Get(key string) *Response { return c.Do(http.MethodGet, keyPath(key, nil), nil) }

// GetConsistency reads key with the given consistency ("linearizable" or "stale").
func (c *Client) GetConsistency(key, consistency string) *Response {
	return c.Do(http.MethodGet, keyPath(key, url.Values{"consistency": {consistency}}), nil)
}

// ListEntry is one element of a list answer.
type ListEntry struct {
	Key         string `json:"key"`
	Value       []byte `json:"value"` // base64 on the wire
	CreateIndex uint64 `json:"create_index"`
	ModIndex    uint64 `json:"mod_index"`
}

// ListPage is one page of a list answer.
type ListPage struct {
	Entries   []ListEntry
	More      bool
	NextAfter string
}

// List lists keys with prefix, at most limit (0: server default), after the given key.
func (c *Client) List(prefix string, limit int, after, consistency string) (*ListPage, *Response) {
	q := url.Values{}
	if prefix != "" {
		q.Set("prefix", prefix)
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	if after != "" {
		q.Set("after", after)
	}
	if consistency != "" {
		q.Set("consistency", consistency)
	}
	path := "/v1/kv"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	r := c.Do(http.MethodGet, path, nil)
	if !r.OK() {
		return nil, r
	}
	// The header is query-escaped (keys may hold any character); NextAfter is the key itself.
	next, err := url.QueryUnescape(r.Header.Get("X-Kv-Next-After"))
	if err != nil {
		r.Err = fmt.Errorf("bad X-Kv-Next-After: %w", err)
		return nil, r
	}
	page := &ListPage{More: r.Header.Get("X-Kv-More") == "true", NextAfter: next}
	if err := json.Unmarshal(r.Body, &page.Entries); err != nil {
		r.Err = fmt.Errorf("decoding list: %w", err)
		return nil, r
	}
	return page, r
}

// ListAll follows list pages until the end.
func (c *Client) ListAll(prefix string, limit int, consistency string) ([]ListEntry, error) {
	var all []ListEntry
	after := ""
	for pages := 0; pages < 100000; pages++ {
		page, r := c.List(prefix, limit, after, consistency)
		if page == nil {
			return nil, fmt.Errorf("%v", r)
		}
		all = append(all, page.Entries...)
		if !page.More {
			return all, nil
		}
		if page.NextAfter == "" || page.NextAfter == after {
			return nil, fmt.Errorf("list says more but next-after is %q (previous %q)", page.NextAfter, after)
		}
		after = page.NextAfter
	}
	return nil, fmt.Errorf("too many pages")
}

// ClusterStatus is GET /v1/cluster.
type ClusterStatus struct {
	NodeID       string   `json:"node_id"`
	State        string   `json:"state"`
	Leader       *Member  `json:"leader"`
	Term         uint64   `json:"term"`
	CommitIndex  uint64   `json:"commit_index"`
	AppliedIndex uint64   `json:"applied_index"`
	LastIndex    uint64   `json:"last_log_index"`
	Members      []Member `json:"members"`
}

// Member is one element of ClusterStatus.Members (and the leader).
type Member struct {
	ID          string `json:"id"`
	RaftAddr    string `json:"raft_addr"`
	HTTPAddr    string `json:"http_addr"`
	GossipAddr  string `json:"gossip_addr"`
	Suffrage    string `json:"suffrage"`
	GossipState string `json:"gossip_state"`
	Leader      bool   `json:"leader"`
}

// Member returns the member with id, or nil.
func (s *ClusterStatus) Member(id string) *Member {
	for i := range s.Members {
		if s.Members[i].ID == id {
			return &s.Members[i]
		}
	}
	return nil
}

// RaftMembers returns the ids of members in the Raft configuration (voters and non-voters).
func (s *ClusterStatus) RaftMembers() []string {
	var ids []string
	for _, m := range s.Members {
		if m.Suffrage == "voter" || m.Suffrage == "nonvoter" {
			ids = append(ids, m.ID)
		}
	}
	return ids
}

// Status fetches GET /v1/cluster.
func (c *Client) Status() (*ClusterStatus, error) {
	r := c.Do(http.MethodGet, "/v1/cluster", nil)
	if !r.OK() {
		return nil, fmt.Errorf("%v", r)
	}
	var s ClusterStatus
	if err := json.Unmarshal(r.Body, &s); err != nil {
		return nil, fmt.Errorf("decoding /v1/cluster: %w: %s", err, r.Body)
	}
	return &s, nil
}

// Ready returns nil when GET /readyz answers 200.
func (c *Client) Ready() error {
	r := c.Do(http.MethodGet, "/readyz", nil)
	if !r.OK() {
		return fmt.Errorf("%v", r)
	}
	return nil
}

// Healthy returns nil when GET /healthz answers 200.
func (c *Client) Healthy() error {
	r := c.Do(http.MethodGet, "/healthz", nil)
	if !r.OK() {
		return fmt.Errorf("%v", r)
	}
	return nil
}

// Leave asks the node to leave the cluster gracefully.
func (c *Client) Leave() *Response { return c.Do(http.MethodPost, "/v1/cluster/leave", nil) }

// RemoveMember asks the node to remove member id from the cluster.
func (c *Client) RemoveMember(id string) *Response {
	return c.Do(http.MethodDelete, "/v1/cluster/members/"+url.PathEscape(id), nil)
}

// TxnCAS sends a cas put as a transaction, {compare mod_index = expected; put; else get}, and dresses
// its answer as the cas route's: 200 with the index, or 409 cas_mismatch with the current index, so
// that it fits the same checks.
func (c *Client) TxnCAS(key string, expected uint64, value []byte) *Response {
	body := fmt.Sprintf(`{"compare":[{"key":%q,"target":"mod_index","op":"=","value":%d}],`+
		`"success":[{"op":"put","key":%q,"value":%q}],"failure":[{"op":"get","key":%q}]}`,
		key, expected, key, base64.StdEncoding.EncodeToString(value), key)
	r := c.Do(http.MethodPost, "/v1/txn", []byte(body))
	if r.Err != nil || r.Status != http.StatusOK {
		return r
	}
	var ans struct {
		Succeeded bool `json:"succeeded"`
		Results   []struct {
			Found    bool   `json:"found"`
			ModIndex uint64 `json:"mod_index"`
		} `json:"results"`
	}
	if err := json.Unmarshal(r.Body, &ans); err != nil || (!ans.Succeeded && len(ans.Results) != 1) {
		r.Err = fmt.Errorf("bad txn answer %q: %v", r.Body, err)
		return r
	}
	if !ans.Succeeded {
		r.Status, r.Code, r.CurrentIndex = http.StatusConflict, "cas_mismatch", ans.Results[0].ModIndex
	}
	return r
}

// TxnGet reads a key with a read-only transaction and dresses the answer as GET /v1/kv/{key}'s.
func (c *Client) TxnGet(key string) *Response {
	r := c.Do(http.MethodPost, "/v1/txn", []byte(fmt.Sprintf(`{"success":[{"op":"get","key":%q}]}`, key)))
	if r.Err != nil || r.Status != http.StatusOK {
		return r
	}
	var ans struct {
		Results []struct {
			Found       bool   `json:"found"`
			Value       []byte `json:"value"`
			ModIndex    uint64 `json:"mod_index"`
			CreateIndex uint64 `json:"create_index"`
		} `json:"results"`
	}
	if err := json.Unmarshal(r.Body, &ans); err != nil || len(ans.Results) != 1 {
		r.Err = fmt.Errorf("bad txn answer %q: %v", r.Body, err)
		return r
	}
	g := ans.Results[0]
	if !g.Found {
		r.Status, r.Code = http.StatusNotFound, "key_not_found"
		return r
	}
	r.Body, r.ModIndex, r.CreateIndex = g.Value, g.ModIndex, g.CreateIndex
	return r
}
