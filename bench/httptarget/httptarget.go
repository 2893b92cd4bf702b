// Package httptarget is raftkv's HTTP API as a loadgen.Target: PUT and GET /v1/kv/{key} against one
// node. `raftkv bench` uses it against raftkv, and the comparison in bench/etcd uses it against raftkv
// and against the bare net/http ceiling servers, which serve the same paths.
//
// It speaks HTTP/1.1 itself over one kept-alive connection per worker and node, instead of going
// through net/http's client: that client hands every request to two goroutines of its own (a writer and
// a reader per connection) and allocates a request and a response per call, which on a small machine
// made the load generator use half the CPU of the bare ceiling row, so the ceiling measured the client
// rather than the servers. Here a worker writes its request with one write and reads the answer on its
// own goroutine. It retries nothing: every failure is a data point, counted by kind.
//
// It reads what raftkv's and Go's servers send: a status line, headers, and a body framed by
// Content-Length, by chunked encoding, or by the end of the connection. No TLS, no proxies, no redirects.
package httptarget

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/raftkv/raftkv/bench/loadgen"
)

// Config configures a Client.
type Config struct {
	Addrs []string // the nodes, "host:port" or "http://host:port"
	Stale bool     // reads with ?consistency=stale instead of the default linearizable
	// IdempotencyKeys gives every PUT its own Idempotency-Key, as the Go client does, to measure what
	// exactly-once writes cost.
	IdempotencyKeys bool
	// Timeout bounds the wait for each answer (default 30 s): longer than raftkv's own bounded wait
	// (5 s), so a slow answer is measured rather than cut off, yet a run never hangs on a dead node.
	Timeout time.Duration
}

// maxErrorBody is how much of a non-2xx answer is kept for its error code and message.
const maxErrorBody = 4 << 10

// Client holds the node addresses and every connection its targets opened, for Close.
type Client struct {
	hosts   []string // host:port of each node
	stale   bool
	idem    bool
	idemSeq atomic.Uint64
	idemPfx string // per run, so that two runs never share keys
	timeout time.Duration
	dialer  net.Dialer

	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

// New returns a Client for cfg.Addrs.
func New(cfg Config) (*Client, error) {
	if len(cfg.Addrs) == 0 {
		return nil, errors.New("httptarget: no node address")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	c := &Client{stale: cfg.Stale, idem: cfg.IdempotencyKeys, idemPfx: strconv.FormatInt(time.Now().UnixNano(), 36) + "-",
		timeout: cfg.Timeout, dialer: net.Dialer{Timeout: 5 * time.Second},
		conns: map[net.Conn]struct{}{}}
	for _, a := range cfg.Addrs {
		h, err := parseAddr(a)
		if err != nil {
			return nil, err
		}
		c.hosts = append(c.hosts, h)
	}
	return c, nil
}

func parseAddr(a string) (string, error) {
	a = strings.TrimSuffix(strings.TrimSpace(a), "/")
	if !strings.Contains(a, "://") {
		a = "http://" + a
	}
	u, err := url.Parse(a)
	if err != nil || u.Scheme != "http" || u.Host == "" || u.Path != "" {
		return "", fmt.Errorf("httptarget: invalid node address %q: want host:port or http://host:port", a)
	}
	return u.Host, nil
}

// Nodes is the number of nodes.
func (c *Client) Nodes() int { return len(c.hosts) }

// Node returns a new Target bound to node i, for one worker.
func (c *Client) Node(i int) loadgen.Target {
	return &nodeTarget{c: c, host: c.hosts[i%len(c.hosts)]}
}

// Factory spreads or pins workers over every node (see loadgen.Place).
func (c *Client) Factory(p loadgen.Placement) (loadgen.TargetFactory, error) {
	return loadgen.Place(p, len(c.hosts), func(i int) (loadgen.Target, error) { return c.Node(i), nil })
}

// Close closes every connection the targets hold, once they are done: a call still in flight fails.
func (c *Client) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for conn := range c.conns {
		conn.Close()
	}
	clear(c.conns)
}

func (c *Client) track(conn net.Conn, open bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if open {
		c.conns[conn] = struct{}{}
	} else {
		delete(c.conns, conn)
	}
}

// nodeTarget is one worker's connection to one node. It is used by one goroutine at a time.
type nodeTarget struct {
	c    *Client
	host string

	conn net.Conn
	br   *bufio.Reader
	req  []byte // the request being written, reused

	// ctx is the context of the calls in progress; when it ends, unblock sets the connection's deadline
	// to the past so a worker waiting on a slow node returns at once.
	ctx     context.Context
	unblock func() bool
}

// Put is PUT /v1/kv/{key} with value as the body.
func (t *nodeTarget) Put(ctx context.Context, key string, value []byte) error {
	return t.do(ctx, "PUT", key, value)
}

// Get is GET /v1/kv/{key}, linearizable unless the client is stale.
func (t *nodeTarget) Get(ctx context.Context, key string) error {
	return t.do(ctx, "GET", key, nil)
}

func (t *nodeTarget) do(ctx context.Context, method, key string, value []byte) error {
	if err := ctx.Err(); err != nil {
		return &TransportError{Node: t.host, Err: err}
	}
	if err := t.connect(ctx); err != nil {
		return t.fail(ctx, err)
	}
	t.req = t.appendRequest(t.req[:0], method, key, value)
	if err := t.conn.SetDeadline(time.Now().Add(t.c.timeout)); err != nil {
		return t.fail(ctx, err)
	}
	if err := ctx.Err(); err != nil { // ended between the first check and the deadline above
		return t.fail(ctx, err)
	}
	if _, err := t.conn.Write(t.req); err != nil {
		return t.fail(ctx, err)
	}
	status, keep, body, err := t.readResponse()
	if err != nil {
		return t.fail(ctx, err)
	}
	if !keep {
		t.close()
	}
	if status/100 == 2 {
		return nil
	}
	return statusError(t.host, status, body)
}

// connect dials the node unless a connection is open, and ties the connection to ctx.
func (t *nodeTarget) connect(ctx context.Context) error {
	if t.conn == nil {
		conn, err := t.c.dialer.DialContext(ctx, "tcp", t.host)
		if err != nil {
			return err
		}
		t.conn = conn
		if t.br == nil {
			t.br = bufio.NewReaderSize(conn, 4<<10)
		} else {
			t.br.Reset(conn)
		}
		t.c.track(conn, true)
		t.ctx = nil // a new connection needs its own watch
	}
	if t.ctx != ctx {
		if t.unblock != nil {
			t.unblock()
		}
		conn := t.conn
		t.ctx = ctx
		t.unblock = context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	}
	return nil
}

// fail closes the connection (its state is unknown after an error) and says why, preferring the
// context's reason when it ended: the deadline it set is how the wait was cut short.
func (t *nodeTarget) fail(ctx context.Context, err error) error {
	t.close()
	if cerr := ctx.Err(); cerr != nil {
		err = cerr
	}
	return &TransportError{Node: t.host, Err: err}
}

func (t *nodeTarget) close() {
	if t.conn == nil {
		return
	}
	if t.unblock != nil {
		t.unblock()
		t.unblock = nil
	}
	t.c.track(t.conn, false)
	t.conn.Close()
	t.conn, t.ctx = nil, nil
}

func (t *nodeTarget) appendRequest(b []byte, method, key string, value []byte) []byte {
	b = append(b, method...)
	b = append(b, " /v1/kv/"...)
	b = appendEscapedKey(b, key)
	if method == "GET" && t.c.stale {
		b = append(b, "?consistency=stale"...)
	}
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, t.host...)
	if method == "PUT" {
		b = append(b, "\r\nContent-Type: application/octet-stream\r\nContent-Length: "...)
		b = strconv.AppendInt(b, int64(len(value)), 10)
		if t.c.idem {
			b = append(b, "\r\nIdempotency-Key: "...)
			b = append(b, t.c.idemPfx...)
			b = strconv.AppendUint(b, t.c.idemSeq.Add(1), 36)
		}
	}
	b = append(b, "\r\n\r\n"...)
	return append(b, value...)
}

// appendEscapedKey appends key as a URL path: as is when every byte is one a path may carry (the
// common case, without allocating), percent-encoded otherwise.
func appendEscapedKey(b []byte, key string) []byte {
	for i := 0; i < len(key); i++ {
		if !pathSafe(key[i]) {
			return append(b, (&url.URL{Path: key}).EscapedPath()...)
		}
	}
	return append(b, key...)
}

func pathSafe(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '-' || c == '_' || c == '.' || c == '~' || c == '/'
}

var errMalformed = errors.New("malformed HTTP response")

// readResponse reads one answer. It returns the status, whether the connection may carry another
// request, and, for a non-2xx status, the start of the body.
func (t *nodeTarget) readResponse() (status int, keep bool, body []byte, err error) {
	line, err := t.br.ReadSlice('\n')
	if err != nil {
		return 0, false, nil, err
	}
	// "HTTP/1.1 200 OK\r\n"
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[8] != ' ' {
		return 0, false, nil, fmt.Errorf("%w: status line %q", errMalformed, bytes.TrimSpace(line))
	}
	status, err = strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, false, nil, fmt.Errorf("%w: status line %q", errMalformed, bytes.TrimSpace(line))
	}
	keep = line[7] == '1' // HTTP/1.1 keeps the connection unless told otherwise; 1.0 closes it
	length, chunked := int64(-1), false
	for {
		h, err := t.br.ReadSlice('\n')
		if err != nil {
			return 0, false, nil, err
		}
		h = bytes.TrimRight(h, "\r\n")
		if len(h) == 0 {
			break
		}
		name, val, ok := bytes.Cut(h, []byte(":"))
		if !ok {
			return 0, false, nil, fmt.Errorf("%w: header line %q", errMalformed, h)
		}
		val = bytes.TrimSpace(val)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			if length, err = strconv.ParseInt(string(val), 10, 64); err != nil || length < 0 {
				return 0, false, nil, fmt.Errorf("%w: Content-Length %q", errMalformed, val)
			}
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			chunked = bytes.EqualFold(val, []byte("chunked"))
		case bytes.EqualFold(name, []byte("Connection")):
			keep = keep && !bytes.EqualFold(val, []byte("close"))
		}
	}
	var sink bodySink
	if status/100 != 2 {
		sink.keep = maxErrorBody
	}
	switch {
	case status/100 == 1 || status == 204 || status == 304:
		// no body
	case chunked:
		err = t.readChunked(&sink)
	case length >= 0:
		err = sink.copyN(t.br, length)
	default: // the body runs to the end of the connection
		_, err = io.Copy(&sink, t.br)
		keep = false
	}
	if err != nil {
		return 0, false, nil, err
	}
	return status, keep, sink.kept, nil
}

func (t *nodeTarget) readChunked(sink *bodySink) error {
	for {
		line, err := t.br.ReadSlice('\n')
		if err != nil {
			return err
		}
		sizeHex, _, _ := bytes.Cut(bytes.TrimSpace(line), []byte(";"))
		size, err := strconv.ParseInt(string(sizeHex), 16, 64)
		if err != nil || size < 0 {
			return fmt.Errorf("%w: chunk size %q", errMalformed, line)
		}
		if size == 0 {
			for { // trailers, then the blank line
				line, err := t.br.ReadSlice('\n')
				if err != nil {
					return err
				}
				if len(bytes.TrimRight(line, "\r\n")) == 0 {
					return nil
				}
			}
		}
		if err := sink.copyN(t.br, size); err != nil {
			return err
		}
		if _, err := t.br.Discard(2); err != nil { // the chunk's CRLF
			return err
		}
	}
}

// bodySink discards a body, keeping its first keep bytes.
type bodySink struct {
	keep int
	kept []byte
}

func (s *bodySink) Write(p []byte) (int, error) {
	if room := s.keep - len(s.kept); room > 0 {
		s.kept = append(s.kept, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

func (s *bodySink) copyN(br *bufio.Reader, n int64) error {
	if s.keep == 0 {
		_, err := br.Discard(int(n))
		return noEOF(err)
	}
	_, err := io.CopyN(s, br, n)
	return noEOF(err)
}

// noEOF turns the end of the connection in the middle of a body into the error it is.
func noEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
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
