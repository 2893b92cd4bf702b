package transport

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftkv/raftkv/tlsutil"
)

// The first byte a dialer writes selects the protocol on the shared port.
const (
	protoRaft byte = 'R'
	protoRPC  byte = 'S' // the internal RPC (rpc.go)
	// protoHTTPRPC is the internal RPC of builds before the framed one: HTTP/1.1 (rpc_http.go).
	protoHTTPRPC byte = 'F'
	// protoTargeted names the node a connection is meant for before its protocol: 'T', the id's
	// length (one byte), the id, then one of the bytes above. The receiver answers targetOK, or
	// targetWrong and closes: container IPs are reused, and gossip may still map a node id to an
	// address that another node now holds; without the check, that node would take the traffic (votes,
	// entries, forwarded writes) as its own. A build before this one closes at once on 'T'.
	protoTargeted byte = 'T'
	targetOK      byte = 'K'
	targetWrong   byte = 'N'
)

// ErrWrongNode: the node at the address dialed is not the node the connection was meant for.
var ErrWrongNode = errors.New("the node at this address is not the node dialed")

// legacyTargetTTL: how long an address that closed a targeted handshake is dialed without one.
const legacyTargetTTL = time.Minute

// TargetAddr is the dial address of node id at addr: dialing it checks that the node there is id.
// A plain host:port is dialed without the check; an address that already names a node is returned as
// is (raft's NetworkTransport encodes peers, the leader included, through the gossip address provider).
func TargetAddr(id, addr string) string {
	if id == "" || len(id) > 255 || strings.IndexByte(addr, '@') >= 0 {
		return addr
	}
	return id + "@" + addr
}

// HostPort is the host:port of a dial address, without the node id TargetAddr may have added.
func HostPort(address string) string {
	_, addr := splitTarget(address)
	return addr
}

// splitTarget undoes TargetAddr. Host:port never holds '@', so the last one separates the id.
func splitTarget(address string) (id, addr string) {
	if i := strings.LastIndexByte(address, '@'); i >= 0 {
		return address[:i], address[i+1:]
	}
	return "", address
}

// handshakeTimeout bounds how long an accepted connection may take to name its protocol, so that a
// silent client (or a port scanner) cannot pin an accept slot.
const handshakeTimeout = 5 * time.Second

// DefaultMaxInboundConns bounds the connections a node port holds open that other nodes dialed: Raft
// pools a few per peer, the RPC one, so a cluster of any sensible size stays far below it, while a
// client that opens connections without end runs into it instead of into the process's descriptor
// limit (where every accept, HTTP's too, would fail). Past it new connections are closed at once.
const DefaultMaxInboundConns = 1024

// Accept errors (EMFILE, ENFILE, ECONNABORTED, …) are mostly transient: the loop waits and tries
// again, from acceptBackoffMin doubling to acceptBackoffMax, as net/http's Server does.
const (
	acceptBackoffMin = 5 * time.Millisecond
	acceptBackoffMax = time.Second
)

// Mux accepts connections on one listener and hands each to the Raft stream layer or to an RPC
// server according to its first byte.
type Mux struct {
	ln        net.Listener
	advertise net.Addr
	logger    *slog.Logger
	throttle  *LogThrottle // warnings about what others send or do to this port, by source

	raft *subListener
	rpc  *subListener
	// With mutual TLS, Raft connections are handed out by the node id their certificate proves
	// (raftid.go): raftPeers holds a listener per id, given to newRaftPeer when it is made.
	raftPeersMu sync.Mutex
	raftPeers   map[string]*subListener
	newRaftPeer func(id string, ln *subListener)
	httpRPC     *subListener

	closeOnce sync.Once
	done      chan struct{}
	wg        sync.WaitGroup

	// inbound holds one token per accepted connection still open (a semaphore of
	// DefaultMaxInboundConns): a full channel means new connections are refused.
	inbound chan struct{}

	// localID: the node id this port answers for; empty accepts every targeted connection.
	localID atomic.Pointer[string]
	// legacyTarget: addresses whose node closed a targeted handshake (an older build), until when.
	legacyMu     sync.Mutex
	legacyTarget map[string]time.Time

	// peerTLS, when set, wraps every connection, accepted or dialed, in mutual TLS: only a node with a
	// certificate from the cluster CA gets past the handshake, and a dialer checks that the node it
	// reached proves the id it dialed.
	peerTLS *tlsutil.Source

	// isolation cuts this node off from its peers (fault-injection tests); conns tracks what to cut.
	isolated atomic.Bool
	connsMu  sync.Mutex
	conns    map[net.Conn]struct{}
}

// Listen binds addr and advertises advertise (addr itself when empty). The advertised address is what
// other nodes dial, so it must be reachable from them: containers bind 0.0.0.0 and advertise their IP.
func Listen(addr, advertise string, logger *slog.Logger) (*Mux, error) {
	return ListenTLS(addr, advertise, nil, logger)
}

// ListenTLS is Listen with mutual TLS on every connection when peerTLS is set (a node certificate and the
// cluster CA): see tlsutil.PeerServerConfig and PeerClientConfig.
func ListenTLS(addr, advertise string, peerTLS *tlsutil.Source, logger *slog.Logger) (*Mux, error) {
	if peerTLS != nil && (peerTLS.Certificate() == nil || peerTLS.Pool() == nil) {
		return nil, errors.New("node port TLS needs a node certificate and the cluster CA")
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on raft address %s: %w", addr, err)
	}
	adv, err := resolveAdvertise(ln.Addr(), advertise)
	if err != nil {
		ln.Close()
		return nil, err
	}
	return newMux(ln, adv, DefaultMaxInboundConns, peerTLS, logger), nil
}

// newMux serves ln, holding at most maxInbound accepted connections open.
func newMux(ln net.Listener, adv net.Addr, maxInbound int, peerTLS *tlsutil.Source, logger *slog.Logger) *Mux {
	m := &Mux{
		ln: ln, advertise: adv, logger: logger, done: make(chan struct{}), conns: make(map[net.Conn]struct{}),
		inbound: make(chan struct{}, maxInbound), throttle: NewLogThrottle(logger), peerTLS: peerTLS,
	}
	m.raft = newSubListener(adv, m.done)
	m.rpc = newSubListener(adv, m.done)
	m.httpRPC = newSubListener(adv, m.done)
	m.wg.Add(1)
	go m.serve()
	return m
}

// SetLocalID makes the port refuse connections meant for another node id.
func (m *Mux) SetLocalID(id string) { m.localID.Store(&id) }

// TLS reports whether the port runs mutual TLS.
func (m *Mux) TLS() bool { return m.peerTLS != nil }

// Addr is the address other nodes dial to reach this one.
func (m *Mux) Addr() net.Addr { return m.advertise }

// RaftLayer is the raft.StreamLayer of this port.
func (m *Mux) RaftLayer() raft.StreamLayer { return &raftLayer{subListener: m.raft, mux: m} }

// Close stops accepting and closes the shared listener. Connections already handed out are closed by
// their owners (Raft's transport, the RPC server).
func (m *Mux) Close() error {
	var err error
	m.closeOnce.Do(func() {
		close(m.done)
		err = m.ln.Close()
		m.wg.Wait()
		m.throttle.Flush()
	})
	return err
}

// serve accepts until Close. No accept error ends it: a node port that stopped accepting after a
// brief descriptor shortage would leave the node up and ready but unreachable by its peers.
func (m *Mux) serve() {
	defer m.wg.Done()
	var backoff time.Duration
	for {
		conn, err := m.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return // Close, or nothing more will ever be accepted anyway
			}
			backoff = min(max(2*backoff, acceptBackoffMin), acceptBackoffMax)
			if m.throttle.Allow("accept") {
				m.logger.Error("raft port accept failed; retrying", "err", err, "retry_in", backoff)
			}
			t := time.NewTimer(backoff)
			select {
			case <-m.done:
				t.Stop()
				return
			case <-t.C:
			}
			continue
		}
		backoff = 0
		select {
		case m.inbound <- struct{}{}:
		default:
			if m.throttle.Allow(hostOf(conn.RemoteAddr().String())) {
				m.logger.Warn("raft port connection refused: too many open connections",
					"remote", conn.RemoteAddr(), "limit", cap(m.inbound))
			}
			conn.Close()
			continue
		}
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			m.route(conn)
		}()
	}
}

func (m *Mux) route(raw net.Conn) {
	conn, ok := m.track(raw)
	if !ok {
		<-m.inbound
		return
	}
	conn.(*trackedConn).release = func() { <-m.inbound }
	conn.SetDeadline(time.Now().Add(handshakeTimeout))
	if m.peerTLS != nil {
		tc := tls.Server(conn, tlsutil.PeerServerConfig(m.peerTLS))
		if err := tc.Handshake(); err != nil {
			if m.throttle.Allow(hostOf(conn.RemoteAddr().String())) {
				m.logger.Warn("refused a node-port connection: no valid node certificate from the cluster CA",
					"remote", conn.RemoteAddr(), "err", err)
			}
			conn.Close()
			return
		}
		conn = &peerConn{Conn: tc, closer: conn, peerID: tlsutil.PeerNodeID(tc.ConnectionState())}
	}
	var first [1]byte
	if _, err := io.ReadFull(conn, first[:]); err != nil {
		m.logger.Debug("connection closed before naming its protocol", "remote", conn.RemoteAddr(), "err", err)
		conn.Close()
		return
	}
	if first[0] == protoTargeted {
		if !m.acceptTarget(conn, first[:]) {
			conn.Close()
			return
		}
	}
	conn.SetDeadline(time.Time{})
	var target *subListener
	switch first[0] {
	case protoRaft:
		target = m.raft
		if m.peerTLS != nil {
			if target = m.raftPeer(conn); target == nil {
				conn.Close()
				return
			}
		}
	case protoRPC:
		target = m.rpc
	case protoHTTPRPC:
		target = m.httpRPC
	default:
		if m.throttle.Allow(hostOf(conn.RemoteAddr().String())) {
			m.logger.Warn("unknown protocol on raft port", "remote", conn.RemoteAddr(), "byte", first[0])
		}
		conn.Close()
		return
	}
	select {
	case target.conns <- conn:
	case <-target.closed:
		conn.Close()
	case <-m.done:
		conn.Close()
	}
}

// raftPeer is the listener for the Raft connections of the node conn's certificate names, nil when it
// names none.
func (m *Mux) raftPeer(conn net.Conn) *subListener {
	id, _ := PeerNodeID(conn)
	if id == "" {
		return nil
	}
	m.raftPeersMu.Lock()
	defer m.raftPeersMu.Unlock()
	if m.newRaftPeer == nil {
		// No RaftTransport checks senders on this port (tests of the port alone): the shared listener.
		// Under a RaftTransport nothing reads what that listener's transport decodes.
		return m.raft
	}
	if m.raftPeers == nil {
		m.raftPeers = map[string]*subListener{}
	}
	ln := m.raftPeers[id]
	if ln == nil {
		ln = newSubListener(m.advertise, m.done)
		m.raftPeers[id] = ln
		m.newRaftPeer(id, ln)
	}
	return ln
}

// onRaftPeer has fn take the Raft connections of every proven node id, those already seen included.
func (m *Mux) onRaftPeer(fn func(id string, ln *subListener)) {
	m.raftPeersMu.Lock()
	defer m.raftPeersMu.Unlock()
	m.newRaftPeer = fn
	for id, ln := range m.raftPeers {
		fn(id, ln)
	}
}

// acceptTarget reads a targeted handshake's id, answers it, and reads the protocol byte after it into
// proto. False: the connection is for another node, or broke.
func (m *Mux) acceptTarget(conn net.Conn, proto []byte) bool {
	var n [1]byte
	if _, err := io.ReadFull(conn, n[:]); err != nil {
		return false
	}
	id := make([]byte, n[0])
	if _, err := io.ReadFull(conn, id); err != nil {
		return false
	}
	if local := m.localID.Load(); local != nil && *local != "" && *local != string(id) {
		if m.throttle.Allow(hostOf(conn.RemoteAddr().String())) {
			m.logger.Warn("refused a connection meant for another node: the sender's view of addresses is out of date",
				"remote", conn.RemoteAddr(), "meant_for", string(id), "this_node", *local)
		}
		conn.SetWriteDeadline(time.Now().Add(handshakeTimeout))
		conn.Write([]byte{targetWrong})
		return false
	}
	conn.SetWriteDeadline(time.Now().Add(handshakeTimeout))
	if _, err := conn.Write([]byte{targetOK}); err != nil {
		return false
	}
	conn.SetWriteDeadline(time.Time{})
	_, err := io.ReadFull(conn, proto)
	return err == nil
}

// subListener is a net.Listener fed by the Mux.
type subListener struct {
	addr      net.Addr
	conns     chan net.Conn
	muxDone   <-chan struct{}
	closeOnce sync.Once
	closed    chan struct{}
}

func newSubListener(addr net.Addr, muxDone <-chan struct{}) *subListener {
	return &subListener{addr: addr, conns: make(chan net.Conn), muxDone: muxDone, closed: make(chan struct{})}
}

func (l *subListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	case <-l.muxDone:
		return nil, net.ErrClosed
	}
}

func (l *subListener) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return nil
}

func (l *subListener) Addr() net.Addr { return l.addr }

type raftLayer struct {
	*subListener
	mux *Mux
}

func (l *raftLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return l.mux.dial(string(address), protoRaft, timeout)
}

// Isolate cuts this node's port off from every peer, both ways, until called with false: open
// connections are closed, new ones refused. It simulates a network partition in tests.
func (m *Mux) Isolate(on bool) {
	m.isolated.Store(on)
	if !on {
		return
	}
	m.connsMu.Lock()
	defer m.connsMu.Unlock()
	for c := range m.conns {
		c.Close()
	}
}

var errIsolated = errors.New("node is isolated")

func (m *Mux) dial(address string, proto byte, timeout time.Duration) (net.Conn, error) {
	if m.isolated.Load() {
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: errIsolated}
	}
	id, addr := splitTarget(address)
	var conn net.Conn
	var err error
	if id != "" && !m.isLegacyTarget(addr) {
		conn, err = m.dialTargeted(addr, id, proto, timeout)
		if errors.Is(err, errTargetClosed) {
			m.legacyMu.Lock()
			if m.legacyTarget == nil {
				m.legacyTarget = map[string]time.Time{}
			}
			m.legacyTarget[addr] = time.Now().Add(legacyTargetTTL)
			m.legacyMu.Unlock()
			conn, err = m.dialProto(addr, id, proto, timeout)
		}
	} else {
		conn, err = m.dialProto(addr, id, proto, timeout)
	}
	if err != nil {
		return nil, err
	}
	conn, ok := m.track(conn)
	if !ok {
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: errIsolated}
	}
	return conn, nil
}

// track registers conn so Isolate can cut it, or closes it at once if the node is isolated.
func (m *Mux) track(conn net.Conn) (net.Conn, bool) {
	m.connsMu.Lock()
	defer m.connsMu.Unlock()
	if m.isolated.Load() {
		conn.Close()
		return nil, false
	}
	m.conns[conn] = struct{}{}
	return &trackedConn{Conn: conn, mux: m}, true
}

type trackedConn struct {
	net.Conn
	mux     *Mux
	once    sync.Once
	release func() // frees an accepted connection's inbound slot; nil for dialed ones
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.mux.connsMu.Lock()
		delete(c.mux.conns, c.Conn)
		c.mux.connsMu.Unlock()
		if c.release != nil {
			c.release()
		}
	})
	return c.Conn.Close()
}

func (m *Mux) isLegacyTarget(addr string) bool {
	m.legacyMu.Lock()
	defer m.legacyMu.Unlock()
	until, ok := m.legacyTarget[addr]
	if ok && time.Now().After(until) {
		delete(m.legacyTarget, addr)
		return false
	}
	return ok
}

// errTargetClosed: the peer closed the connection on a targeted handshake, as builds before it do.
var errTargetClosed = errors.New("peer closed the targeted handshake")

// dialTargeted dials addr for node id and waits for the node to confirm it is id. A refusal is a dial
// error wrapping ErrWrongNode, so callers treat it like an unreachable node.
func (m *Mux) dialTargeted(addr, id string, proto byte, timeout time.Duration) (net.Conn, error) {
	conn, err := m.dialConn(addr, id, timeout)
	if err != nil {
		return nil, err
	}
	hello := append([]byte{protoTargeted, byte(len(id))}, id...)
	if _, err := conn.Write(append(hello, proto)); err != nil {
		conn.Close()
		return nil, err
	}
	var answer [1]byte
	_, err = io.ReadFull(conn, answer[:])
	switch {
	case err == nil && answer[0] == targetOK:
		conn.SetDeadline(time.Time{})
		return conn, nil
	case err == nil && answer[0] == targetWrong:
		conn.Close()
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: fmt.Errorf("%w: %s is not %s", ErrWrongNode, addr, id)}
	case errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET):
		conn.Close()
		return nil, errTargetClosed
	default:
		conn.Close()
		if err == nil {
			err = fmt.Errorf("unexpected answer %q to a targeted handshake", answer[0])
		}
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: err}
	}
}

func (m *Mux) dialProto(address, id string, proto byte, timeout time.Duration) (net.Conn, error) {
	conn, err := m.dialConn(address, id, timeout)
	if err != nil {
		return nil, err
	}
	if _, err := conn.Write([]byte{proto}); err != nil {
		conn.Close()
		return nil, err
	}
	conn.SetDeadline(time.Time{})
	return conn, nil
}

// dialConn connects to addr and, with peer TLS, completes the handshake: the node there must prove id
// (any cluster node when id is empty). The connection's deadline is left at now+timeout.
func (m *Mux) dialConn(addr, id string, timeout time.Duration) (net.Conn, error) {
	conn, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return nil, err
	}
	if tcp, ok := conn.(*net.TCPConn); ok {
		tcp.SetNoDelay(true)
	}
	conn.SetDeadline(time.Now().Add(timeout))
	if m.peerTLS == nil {
		return conn, nil
	}
	tc := tls.Client(conn, tlsutil.PeerClientConfig(m.peerTLS, id))
	if err := tc.Handshake(); err != nil {
		conn.Close()
		if errors.Is(err, tlsutil.ErrWrongIdentity) {
			err = fmt.Errorf("%w: %w", ErrWrongNode, err)
		}
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: fmt.Errorf("TLS with %s: %w", addr, err)}
	}
	return &peerConn{Conn: tc, closer: conn, peerID: tlsutil.PeerNodeID(tc.ConnectionState())}, nil
}

// peerConn is a node-port connection over mutual TLS, with the node id its peer's certificate proves.
type peerConn struct {
	net.Conn           // the *tls.Conn
	closer   io.Closer // the TCP connection under it: closing it never blocks on a TLS close_notify
	peerID   string
}

// Close closes the TCP connection at once: tls.Conn.Close would first write a close_notify, which can
// block for as long as a stalled peer does not read.
func (c *peerConn) Close() error { return c.closer.Close() }

// PeerNodeID is the node id proven by the other end of conn when the node port runs mutual TLS.
func PeerNodeID(conn net.Conn) (string, bool) {
	for {
		switch c := conn.(type) {
		case *peerConn:
			return c.peerID, true
		case *trackedConn:
			conn = c.Conn
		default:
			return "", false
		}
	}
}
