package transport

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// ErrUnreachable means the request was not handled (the peer could not be dialed, or it refused the
// request because it is shutting down): retrying it cannot apply anything twice. Any other Call error
// after dialing may have reached the handler.
var ErrUnreachable = errors.New("peer unreachable")

// ErrTooLarge: the request is over the frame limit and was not sent.
var ErrTooLarge = errors.New("rpc request over the frame limit")

// MaxFrame is the largest request or response payload the RPC carries.
const MaxFrame = maxRPCBody

// maxRPCBody bounds what one RPC request or response may carry: a value (1 MiB by default, configurable)
// plus its framing, with generous headroom.
const maxRPCBody = 256 << 20

// The internal RPC is a stream of frames on one persistent connection per peer, many calls in flight
// on it at once, answered in any order. A follower forwards every write and every read-index request
// to the leader over it, so it is on the hot path of most requests: a frame costs one write and one
// read, where an HTTP round trip also costs the client's connection goroutines, header parsing and
// URL handling on both sides.
//
// After the mux's protocol byte the server answers with rpcHello, so a dialer knows the peer speaks
// this protocol before it sends anything. Then the caller sends requests and the server answers them:
//
//	request:  id uint64 | method length uint8 | method | payload length uint32 | payload
//	response: id uint64 | status uint8 | payload length uint32 | payload
//
// The status is statusOK, statusError (the payload is the error text) or statusClosing: the server is
// shutting down and did not handle the request, so the caller may send it elsewhere.
const (
	rpcHello      byte = 'M'
	statusOK      byte = 0
	statusError   byte = 1
	statusClosing byte = 2

	rpcBufferSize = 64 << 10
	// rpcFrameTimeout bounds reading one request frame once its first byte has arrived: a peer that
	// announces a frame and stalls must not hold its buffer and its connection for ever. Between frames
	// a connection may idle (it is persistent); the mux bounds how many there are.
	rpcFrameTimeout = 30 * time.Second
	// rpcConnFrames and rpcConnBytes bound the requests one connection has in flight (read, not yet
	// answered): past either, the server reads no further frame from it until one is answered, so TCP
	// flow control holds the sender back. A lone frame larger than rpcConnBytes is still read.
	rpcConnFrames = 256
	rpcConnBytes  = 64 << 20
	// rpcServerBytes bounds the request payload bytes buffered by the whole server, over every
	// connection: a frame waits for room before its payload is read (at most rpcFrameTimeout).
	rpcServerBytes = 256 << 20
	// rpcWriteTimeout bounds writing one frame when the caller set no deadline: a peer that stops
	// reading must not hold a connection's writer, and everyone queued behind it, forever.
	rpcWriteTimeout = 10 * time.Second
)

// Handler answers one RPC method. Returned errors are transport-level failures; application outcomes
// (not leader, cas failed, …) travel inside the response bytes. ctx ends when the caller's connection
// does or the server closes.
type Handler func(ctx context.Context, method string, req []byte) ([]byte, error)

// RPCServer serves the internal RPC on the mux's port, and the HTTP RPC of older builds beside it.
type RPCServer struct {
	ln     net.Listener
	legacy *http.Server
	h      Handler
	logger *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc

	mu      sync.Mutex
	conns   map[net.Conn]struct{}
	active  int           // handlers running
	idle    chan struct{} // closed when active drops to 0 while closing
	closing bool
	wg      sync.WaitGroup // accept loop and connection readers

	mem          *byteBudget // request bytes buffered, over every connection
	frameTimeout time.Duration
}

type callerKey struct{}

// CallerNodeID is the node id the certificate of the calling connection proves, for a request served
// over mutual TLS; false without it (nothing is proven then).
func CallerNodeID(ctx context.Context) (string, bool) {
	id, ok := ctx.Value(callerKey{}).(string)
	return id, ok
}

// ServeRPC starts serving h on m's port until Close.
func ServeRPC(m *Mux, h Handler, logger *slog.Logger) *RPCServer {
	return serveRPC(m, h, logger, rpcFrameTimeout)
}

func serveRPC(m *Mux, h Handler, logger *slog.Logger, frameTimeout time.Duration) *RPCServer {
	s := &RPCServer{
		ln: m.rpc, h: h, logger: logger, conns: map[net.Conn]struct{}{},
		mem: newByteBudget(rpcServerBytes), frameTimeout: frameTimeout,
	}
	s.legacy = serveHTTPRPC(m.httpRPC, h, logger)
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.wg.Add(1)
	go s.serve()
	return s
}

func (s *RPCServer) serve() {
	defer s.wg.Done()
	for {
		conn, err := s.ln.Accept()
		if err != nil {
			return // the listener is closed: the mux or this server is shutting down
		}
		s.mu.Lock()
		if s.closing {
			s.mu.Unlock()
			conn.Close()
			continue
		}
		s.conns[conn] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go s.serveConn(conn)
	}
}

// serverConn is one caller's connection: requests are read in order and each handled on its own
// goroutine, since a write waits for a commit round; responses share the writer.
type serverConn struct {
	conn net.Conn
	wmu  sync.Mutex
	w    *bufio.Writer

	// in-flight requests of this connection (rpcConnFrames, rpcConnBytes)
	mu     sync.Mutex
	room   *sync.Cond
	frames int
	bytes  int
	ended  bool
}

func (s *RPCServer) serveConn(conn net.Conn) {
	defer s.wg.Done()
	ctx, cancel := context.WithCancel(s.ctx)
	if id, ok := PeerNodeID(conn); ok {
		ctx = context.WithValue(ctx, callerKey{}, id)
	}
	defer func() {
		cancel()
		conn.Close()
		s.mu.Lock()
		delete(s.conns, conn)
		s.mu.Unlock()
	}()
	sc := &serverConn{conn: conn, w: bufio.NewWriterSize(conn, rpcBufferSize)}
	sc.room = sync.NewCond(&sc.mu)
	if err := sc.send(func(w *bufio.Writer) { w.WriteByte(rpcHello) }); err != nil {
		return
	}
	// Wake a reader waiting for room when the connection ends, so it sees the end.
	stop := context.AfterFunc(ctx, func() {
		sc.mu.Lock()
		sc.ended = true // room for ever: the next read fails on the closed connection
		sc.mu.Unlock()
		sc.room.Broadcast()
	})
	defer stop()
	r := bufio.NewReaderSize(conn, rpcBufferSize)
	for {
		sc.waitRoom()
		id, method, req, err := s.readRequest(ctx, conn, r)
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				s.logger.Debug("rpc connection ended", "remote", conn.RemoteAddr(), "err", err)
			}
			return
		}
		if !s.begin() {
			s.mem.release(len(req))
			sc.reply(id, statusClosing, nil)
			continue
		}
		sc.hold(len(req))
		go func() {
			defer s.end()
			resp, err := s.handle(ctx, method, req)
			sc.respond(id, resp, err)
			sc.unhold(len(req))
			s.mem.release(len(req))
		}()
	}
}

// waitRoom blocks while the connection has its bound of requests in flight.
func (sc *serverConn) waitRoom() {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	for !sc.ended && (sc.frames >= rpcConnFrames || (sc.frames > 0 && sc.bytes >= rpcConnBytes)) {
		sc.room.Wait()
	}
}

func (sc *serverConn) hold(n int) {
	sc.mu.Lock()
	sc.frames++
	sc.bytes += n
	sc.mu.Unlock()
}

func (sc *serverConn) unhold(n int) {
	sc.mu.Lock()
	sc.frames--
	sc.bytes -= n
	sc.mu.Unlock()
	sc.room.Signal()
}

// handle runs the handler, turning a panic into an error answer: one bad request must not take the
// node down (net/http did the same for the HTTP RPC).
func (s *RPCServer) handle(ctx context.Context, method string, req []byte) (resp []byte, err error) {
	defer func() {
		if v := recover(); v != nil {
			s.logger.Error("panic serving rpc", "method", method, "panic", v, "stack", string(debug.Stack()))
			resp, err = nil, fmt.Errorf("internal error serving %s", method)
		}
	}()
	return s.h(ctx, method, req)
}

func (s *RPCServer) begin() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	s.active++
	return true
}

func (s *RPCServer) end() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.active--
	if s.closing && s.active == 0 {
		close(s.idle)
	}
}

func (sc *serverConn) respond(id uint64, resp []byte, err error) {
	status := statusOK
	if err != nil {
		status, resp = statusError, []byte(err.Error())
	}
	if len(resp) > maxRPCBody {
		status, resp = statusError, []byte(fmt.Sprintf("response of %d bytes exceeds %d", len(resp), maxRPCBody))
	}
	sc.reply(id, status, resp)
}

func (sc *serverConn) reply(id uint64, status byte, resp []byte) {
	_ = sc.send(func(w *bufio.Writer) {
		var hdr [13]byte
		binary.BigEndian.PutUint64(hdr[0:8], id)
		hdr[8] = status
		binary.BigEndian.PutUint32(hdr[9:13], uint32(len(resp)))
		w.Write(hdr[:])
		w.Write(resp)
	})
}

// send writes one frame and flushes it. A failed write breaks the connection: the reader then ends too.
func (sc *serverConn) send(frame func(*bufio.Writer)) error {
	sc.wmu.Lock()
	defer sc.wmu.Unlock()
	sc.conn.SetWriteDeadline(time.Now().Add(rpcWriteTimeout))
	frame(sc.w)
	if err := sc.w.Flush(); err != nil {
		sc.conn.Close()
		return err
	}
	return nil
}

// Close stops accepting, refuses new requests (statusClosing), waits up to ctx's deadline for running
// handlers, then cancels what still runs and closes every connection.
func (s *RPCServer) Close(ctx context.Context) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return nil
	}
	s.closing = true
	s.idle = make(chan struct{})
	if s.active == 0 {
		close(s.idle)
	}
	s.mu.Unlock()
	s.ln.Close()
	err := s.legacy.Shutdown(ctx)
	select {
	case <-s.idle:
	case <-ctx.Done():
		err = ctx.Err()
	}
	s.cancel()
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return err
}

// readRequest reads one request frame. The connection may idle before its first byte; from then on
// the whole frame must arrive within rpcFrameTimeout. The payload's bytes are taken from the server's
// budget (the caller releases them) before it is read, and its buffer grows as bytes arrive: a header
// announcing 256 MiB costs nothing until 256 MiB have been sent.
func (s *RPCServer) readRequest(ctx context.Context, conn net.Conn, r *bufio.Reader) (id uint64, method string, req []byte, err error) {
	conn.SetReadDeadline(time.Time{})
	if _, err = r.Peek(1); err != nil {
		return 0, "", nil, err
	}
	deadline := time.Now().Add(s.frameTimeout)
	conn.SetReadDeadline(deadline)
	var hdr [9]byte
	if _, err = io.ReadFull(r, hdr[:]); err != nil {
		return 0, "", nil, unexpectedEOF(err)
	}
	id = binary.BigEndian.Uint64(hdr[0:8])
	m := make([]byte, hdr[8])
	if _, err = io.ReadFull(r, m); err != nil {
		return 0, "", nil, unexpectedEOF(err)
	}
	size, err := readSize(r)
	if err != nil {
		return 0, "", nil, err
	}
	wctx, cancel := context.WithDeadline(ctx, deadline)
	err = s.mem.acquire(wctx, int(size))
	cancel()
	if err != nil {
		return 0, "", nil, fmt.Errorf("no room for a frame of %d bytes: %w", size, err)
	}
	if req, err = readGrowing(r, int(size)); err != nil {
		s.mem.release(int(size))
		return 0, "", nil, err
	}
	return id, string(m), req, nil
}

func readSize(r io.Reader) (uint32, error) {
	var n [4]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return 0, unexpectedEOF(err)
	}
	size := binary.BigEndian.Uint32(n[:])
	if size > maxRPCBody {
		return 0, fmt.Errorf("rpc frame of %d bytes exceeds %d", size, maxRPCBody)
	}
	return size, nil
}

func readPayload(r *bufio.Reader) ([]byte, error) {
	size, err := readSize(r)
	if err != nil {
		return nil, err
	}
	return readGrowing(r, int(size))
}

// readGrowing reads exactly n bytes into a buffer that starts at rpcBufferSize and doubles as bytes
// arrive, so what a frame holds is bounded by what its sender has actually sent (at most twice).
func readGrowing(r io.Reader, n int) ([]byte, error) {
	b := make([]byte, 0, min(n, rpcBufferSize))
	for len(b) < n {
		if len(b) == cap(b) {
			b = slices.Grow(b, min(n-len(b), cap(b)))
		}
		k, err := io.ReadFull(r, b[len(b):min(cap(b), n)])
		b = b[:len(b)+k]
		if err != nil {
			return nil, unexpectedEOF(err)
		}
	}
	return b, nil
}

// byteBudget is a counting semaphore of bytes. A request larger than the whole budget waits for all of
// it, so one oversized frame can still be served alone.
type byteBudget struct {
	mu    sync.Mutex
	free  int
	total int
	wake  chan struct{} // closed and replaced whenever bytes are released
}

func newByteBudget(n int) *byteBudget {
	return &byteBudget{free: n, total: n, wake: make(chan struct{})}
}

func (b *byteBudget) acquire(ctx context.Context, n int) error {
	n = min(n, b.total)
	for {
		b.mu.Lock()
		if b.free >= n {
			b.free -= n
			b.mu.Unlock()
			return nil
		}
		wake := b.wake
		b.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (b *byteBudget) release(n int) {
	n = min(n, b.total)
	b.mu.Lock()
	b.free += n
	close(b.wake)
	b.wake = make(chan struct{})
	b.mu.Unlock()
}

// unexpectedEOF: a frame cut short is a broken connection, not a clean end of the stream.
func unexpectedEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// RPCClient calls peers' RPC servers, over one persistent connection per peer.
type RPCClient struct {
	mux         *Mux
	dialTimeout time.Duration
	legacy      *httpRPCClient

	mu     sync.Mutex
	peers  map[string]*peer
	closed bool
}

// peer holds the connection to one address; its mutex serialises dialing, so concurrent calls to a
// peer that is down wait for one dial instead of each making their own.
type peer struct {
	mu   sync.Mutex
	conn *clientConn
	// legacyUntil: the peer closed the connection when asked for protoRPC, so it runs an older build;
	// until then calls use the HTTP RPC, after it the peer is asked again (it may have been upgraded).
	legacyUntil time.Time
}

// legacyRecheck is how long a peer found to run an older build is spoken to over the HTTP RPC. A node
// that is shutting down or cut off closes connections the same way; the HTTP RPC works with it too, so
// mistaking it costs speed for this long, not correctness.
const legacyRecheck = 30 * time.Second

// NewRPCClient returns a client whose connections leave through m, dialed with dialTimeout.
func NewRPCClient(m *Mux, dialTimeout time.Duration) *RPCClient {
	return &RPCClient{mux: m, dialTimeout: dialTimeout, legacy: newHTTPRPCClient(m, dialTimeout), peers: map[string]*peer{}}
}

var errClientClosed = errors.New("rpc client closed")

// Call sends req to method on the node at addr (its raft port) and returns the response bytes.
func (c *RPCClient) Call(ctx context.Context, addr, method string, req []byte) ([]byte, error) {
	if len(method) > 255 || len(req) > maxRPCBody {
		return nil, fmt.Errorf("rpc %s to %s: %w: %d bytes", method, addr, ErrTooLarge, len(req))
	}
	cc, err := c.connect(ctx, addr)
	if err != nil {
		return nil, fmt.Errorf("rpc %s to %s: %w", method, addr, err)
	}
	var resp []byte
	if cc == nil {
		resp, err = c.legacy.call(ctx, addr, method, req)
	} else {
		resp, err = cc.call(ctx, method, req)
	}
	if err != nil {
		return nil, fmt.Errorf("rpc %s to %s: %w", method, addr, err)
	}
	return resp, nil
}

// connect returns the live connection to addr, dialing one if there is none, or nil if the peer only
// speaks the HTTP RPC. Its errors wrap ErrUnreachable: nothing has been sent.
func (c *RPCClient) connect(ctx context.Context, addr string) (*clientConn, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, fmt.Errorf("%w: %w", ErrUnreachable, errClientClosed)
	}
	p := c.peers[addr]
	if p == nil {
		p = &peer{}
		c.peers[addr] = p
	}
	c.mu.Unlock()

	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conn != nil && !p.conn.broken() {
		return p.conn, nil
	}
	if time.Now().Before(p.legacyUntil) {
		return nil, nil
	}
	timeout := dialBudget(ctx, c.dialTimeout)
	conn, err := c.mux.dial(addr, protoRPC, timeout)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnreachable, err)
	}
	// The hello proves the peer speaks this protocol before anything is sent on it. An older build
	// closes a connection whose protocol byte it does not know, at once.
	var hello [1]byte
	conn.SetReadDeadline(time.Now().Add(timeout))
	if _, err := io.ReadFull(conn, hello[:]); err != nil || hello[0] != rpcHello {
		conn.Close()
		if errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) {
			p.legacyUntil = time.Now().Add(legacyRecheck)
			return nil, nil
		}
		return nil, fmt.Errorf("%w: no rpc hello from %s: %v", ErrUnreachable, addr, err)
	}
	conn.SetReadDeadline(time.Time{})
	cc := newClientConn(conn)
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	if closed {
		cc.fail(errClientClosed)
		return nil, fmt.Errorf("%w: %w", ErrUnreachable, errClientClosed)
	}
	p.conn = cc
	return cc, nil
}

// Close breaks every connection; calls in flight fail.
func (c *RPCClient) Close() {
	c.legacy.close()
	c.mu.Lock()
	c.closed = true
	peers := c.peers
	c.peers = map[string]*peer{}
	c.mu.Unlock()
	for _, p := range peers {
		p.mu.Lock()
		if p.conn != nil {
			p.conn.fail(errClientClosed)
		}
		p.mu.Unlock()
	}
}

type callResult struct {
	payload []byte
	err     error
}

// clientConn is one connection with calls in flight on it. When it breaks, every waiting call fails
// and the next call dials a new one.
type clientConn struct {
	conn net.Conn

	wmu sync.Mutex
	w   *bufio.Writer

	mu      sync.Mutex
	pending map[uint64]chan callResult
	nextID  uint64
	err     error
	done    chan struct{} // closed when broken; err says why

	// lastRead is when a frame last arrived (UnixNano): a call that times out on a connection that has
	// been silent since the call was sent takes the peer for gone and breaks the connection, so the next
	// call dials afresh instead of queueing behind a dead peer.
	lastRead atomic.Int64
}

func newClientConn(conn net.Conn) *clientConn {
	cc := &clientConn{
		conn:    conn,
		w:       bufio.NewWriterSize(conn, rpcBufferSize),
		pending: map[uint64]chan callResult{},
		done:    make(chan struct{}),
	}
	go cc.readLoop()
	return cc
}

func (cc *clientConn) broken() bool {
	select {
	case <-cc.done:
		return true
	default:
		return false
	}
}

func (cc *clientConn) call(ctx context.Context, method string, req []byte) ([]byte, error) {
	ch := make(chan callResult, 1)
	cc.mu.Lock()
	if cc.err != nil {
		err := cc.err
		cc.mu.Unlock()
		return nil, fmt.Errorf("connection lost: %w", err)
	}
	cc.nextID++
	id := cc.nextID
	cc.pending[id] = ch
	cc.mu.Unlock()

	sent := time.Now().UnixNano()
	if err := cc.write(ctx, id, method, req); err != nil {
		// A failed write leaves the frame incomplete (bufio stops at the first error, and the server
		// handles a request only once its whole frame arrived), so the peer never ran it: the caller
		// may treat it as not sent. This is also what a call on a connection closed under it (Close,
		// Isolate) before its reader noticed gets.
		cc.fail(err)
		return nil, fmt.Errorf("%w: send: %w", ErrUnreachable, err)
	}
	select {
	case res := <-ch:
		return res.payload, res.err
	case <-cc.done:
		return nil, fmt.Errorf("connection lost: %w", cc.err)
	case <-ctx.Done():
		cc.mu.Lock()
		delete(cc.pending, id)
		cc.mu.Unlock()
		if cc.lastRead.Load() < sent {
			cc.fail(fmt.Errorf("no answer since a call timed out: %w", ctx.Err()))
		}
		return nil, ctx.Err()
	}
}

func (cc *clientConn) write(ctx context.Context, id uint64, method string, req []byte) error {
	cc.wmu.Lock()
	defer cc.wmu.Unlock()
	dl, ok := ctx.Deadline()
	if !ok {
		dl = time.Now().Add(rpcWriteTimeout)
	}
	cc.conn.SetWriteDeadline(dl)
	var hdr [9]byte
	binary.BigEndian.PutUint64(hdr[0:8], id)
	hdr[8] = byte(len(method))
	cc.w.Write(hdr[:])
	cc.w.WriteString(method)
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(req)))
	cc.w.Write(n[:])
	cc.w.Write(req)
	return cc.w.Flush()
}

func (cc *clientConn) readLoop() {
	r := bufio.NewReaderSize(cc.conn, rpcBufferSize)
	for {
		var hdr [9]byte
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			cc.fail(err)
			return
		}
		payload, err := readPayload(r)
		if err != nil {
			cc.fail(err)
			return
		}
		cc.lastRead.Store(time.Now().UnixNano())
		id := binary.BigEndian.Uint64(hdr[0:8])
		res := callResult{payload: payload}
		switch hdr[8] {
		case statusOK:
		case statusError:
			res = callResult{err: fmt.Errorf("peer failed the call: %s", payload)}
		case statusClosing:
			res = callResult{err: fmt.Errorf("%w: peer is shutting down", ErrUnreachable)}
		default:
			cc.fail(fmt.Errorf("bad rpc response status %d", hdr[8]))
			return
		}
		cc.mu.Lock()
		ch := cc.pending[id]
		delete(cc.pending, id)
		cc.mu.Unlock()
		if ch != nil { // nil: its caller gave up
			ch <- res
		}
	}
}

// fail breaks the connection once; the first error is the one callers see.
func (cc *clientConn) fail(err error) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if cc.err != nil {
		return
	}
	cc.err = err
	cc.pending = nil
	close(cc.done)
	cc.conn.Close()
}

// dialBudget is the dial timeout, shortened to what is left of ctx.
func dialBudget(ctx context.Context, timeout time.Duration) time.Duration {
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < timeout {
		return time.Until(dl)
	}
	return timeout
}

func isDialError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}
