package transport

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// Meta is what every node publishes about itself by gossip. Keep it well under memberlist's
// 512-byte metadata limit.
type Meta struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft"`
	HTTPAddr string `json:"http"`
	// DataID identifies the data directory: it changes when a node's disk is wiped, even if its id
	// stays the same, which is how the leader tells a restart from a replacement.
	DataID string `json:"data"`
	// HasState is true once the node holds Raft state (bootstrapped or replicated). Nodes do not
	// bootstrap a new cluster while any member they see already has state.
	HasState bool `json:"state"`
	// Left is set just before a graceful departure. memberlist's leave event does not say whether a
	// node left or failed, so the departing node says so itself.
	Left bool `json:"left,omitempty"`
	// LogFormat is the newest log entry format the node's state machine applies. A leader writes a
	// format only once every member applies it; 0 is a build from before formats were advertised.
	LogFormat int `json:"log,omitempty"`
}

// Gossip states as reported to operators.
const (
	StateAlive = "alive"
	StateDead  = "dead"
	StateLeft  = "left"
)

// Member is one node as gossip sees it.
type Member struct {
	Meta
	GossipAddr string
	State      string
}

// GossipConfig configures the gossip layer.
type GossipConfig struct {
	BindAddr      string // host:port for gossip (UDP and TCP)
	AdvertiseAddr string // host:port others reach; empty = BindAddr
	Meta          Meta
	Logger        *slog.Logger
	// Tuning for tests; zero values keep memberlist's LAN defaults.
	ProbeInterval time.Duration
	// Keys, when set, encrypt gossip (AES-GCM, memberlist's keyring): the first key encrypts, every
	// key decrypts. Each is 16, 24 or 32 bytes.
	Keys [][]byte
	// PlaintextIn accepts unencrypted messages too, and PlaintextOut sends unencrypted ones: the two
	// steps of turning encryption on in a running cluster without a partition (memberlist's
	// GossipVerifyIncoming/Outgoing, negated so that the zero value is the safe one).
	PlaintextIn, PlaintextOut bool
}

// Gossip wraps one memberlist instance: it publishes this node's Meta and tracks every member's state,
// including the dead and the departed, which memberlist itself forgets.
type Gossip struct {
	ml       *memberlist.Memberlist
	keyring  *memberlist.Keyring // nil without encryption
	logger   *slog.Logger
	throttle *LogThrottle // memberlist's warnings and errors, by source

	mu      sync.Mutex
	meta    Meta
	members map[string]Member // by node name (= node id)

	changes chan struct{}
	left    atomic.Bool // after Leave, this node must not announce itself alive again
}

// StartGossip binds the gossip port and starts memberlist.
func StartGossip(cfg GossipConfig) (*Gossip, error) {
	host, port, err := splitHostPort(cfg.BindAddr)
	if err != nil {
		return nil, fmt.Errorf("gossip address %q: %w", cfg.BindAddr, err)
	}
	g := &Gossip{
		logger:   cfg.Logger,
		throttle: NewLogThrottle(cfg.Logger),
		meta:     cfg.Meta,
		members:  make(map[string]Member),
		changes:  make(chan struct{}, 1),
	}
	mc := memberlist.DefaultLANConfig()
	mc.Name = cfg.Meta.ID
	mc.BindAddr, mc.BindPort = host, port
	bindIP := net.ParseIP(host)
	if bindIP == nil {
		return nil, fmt.Errorf("gossip address %q: bind host must be an IP", cfg.BindAddr)
	}
	adv, err := resolveAdvertise(&net.TCPAddr{IP: bindIP, Port: port}, cfg.AdvertiseAddr)
	if err != nil {
		return nil, fmt.Errorf("gossip: %w", err)
	}
	if cfg.AdvertiseAddr != "" || bindIP.IsUnspecified() {
		// With port 0 the advertised port follows the one memberlist binds.
		mc.AdvertiseAddr, mc.AdvertisePort = adv.IP.String(), adv.Port
	}
	if cfg.ProbeInterval > 0 {
		mc.ProbeInterval = cfg.ProbeInterval
	}
	// A node restarted with a new address (a container with a new IP) keeps its name; without a reclaim
	// time memberlist refuses it forever (memberlist #157).
	mc.DeadNodeReclaimTime = time.Second
	// A node back on a new address is refused while the others still believe its old address alive,
	// and accepted at the next full state exchange once that one is declared dead. The LAN default
	// (30 s) made such a node wait up to a minute; a full sync of a few nodes every 5 s is cheap.
	mc.PushPullInterval = 5 * time.Second
	if len(cfg.Keys) > 0 {
		kr, err := memberlist.NewKeyring(cfg.Keys[1:], cfg.Keys[0])
		if err != nil {
			return nil, fmt.Errorf("gossip keyring: %w", err)
		}
		mc.Keyring, g.keyring = kr, kr
		mc.GossipVerifyIncoming, mc.GossipVerifyOutgoing = !cfg.PlaintextIn, !cfg.PlaintextOut
	}
	mc.Delegate = (*gossipDelegate)(g)
	mc.Events = (*gossipEvents)(g)
	mc.Conflict = (*gossipEvents)(g)
	mc.Logger = newStdLogger(cfg.Logger, g.throttle)
	ml, err := memberlist.Create(mc)
	if err != nil {
		return nil, fmt.Errorf("start gossip on %s: %w", cfg.BindAddr, err)
	}
	g.ml = ml
	return g, nil
}

func splitHostPort(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("bad port %q", p)
	}
	if host == "" {
		host = "0.0.0.0"
	}
	return host, port, nil
}

// ErrNoKeyring: gossip runs without encryption, so there is no keyring to change.
var ErrNoKeyring = errors.New("gossip encryption is off on this node (start it with --gossip-key)")

// Keys are the keyring's keys, the primary (the one that encrypts) first; nil without encryption.
func (g *Gossip) Keys() [][]byte {
	if g.keyring == nil {
		return nil
	}
	return g.keyring.GetKeys() // memberlist puts the primary key first
}

// InstallKey adds key to the keyring: this node decrypts with it from now on.
func (g *Gossip) InstallKey(key []byte) error {
	if g.keyring == nil {
		return ErrNoKeyring
	}
	return g.keyring.AddKey(key)
}

// UseKey makes an installed key the primary one: this node encrypts with it from now on.
func (g *Gossip) UseKey(key []byte) error {
	if g.keyring == nil {
		return ErrNoKeyring
	}
	return g.keyring.UseKey(key)
}

// RemoveKey drops a key that is not the primary one.
func (g *Gossip) RemoveKey(key []byte) error {
	if g.keyring == nil {
		return ErrNoKeyring
	}
	return g.keyring.RemoveKey(key)
}

// LocalAddr is the advertised gossip address of this node.
func (g *Gossip) LocalAddr() string {
	n := g.ml.LocalNode()
	return net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port)))
}

// Join contacts the given gossip addresses and returns how many answered.
func (g *Gossip) Join(addrs []string) (int, error) {
	n, err := g.ml.Join(addrs)
	if n > 0 {
		return n, nil
	}
	if err == nil {
		err = fmt.Errorf("no member answered at %v", addrs)
	}
	return 0, fmt.Errorf("gossip join %v: %w", addrs, err)
}

// JoinWithRetry keeps trying to join addrs with capped exponential backoff until one answers or ctx
// ends. Nodes of a cluster start in any order, so the first attempts are expected to fail.
func (g *Gossip) JoinWithRetry(ctx context.Context, addrs []string) error {
	backoff := 200 * time.Millisecond
	for attempt := 1; ; attempt++ {
		n, err := g.Join(addrs)
		if err == nil {
			g.logger.Info("joined cluster by gossip", "contacted", n, "attempt", attempt)
			return nil
		}
		g.logger.Warn("gossip join failed, retrying", "addrs", addrs, "attempt", attempt, "retry_in", backoff, "err", err)
		jitter := time.Duration(rand.Int64N(int64(backoff) / 4))
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff + jitter):
		}
		backoff = min(backoff*2, 10*time.Second)
	}
}

// ReconnectLoop keeps trying to reach members gossip believes dead, until ctx ends. memberlist only
// probes members it thinks alive, so after a partition heals, two sides that declared each other dead
// would otherwise never talk again (serf has the same loop for the same reason).
func (g *Gossip) ReconnectLoop(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if g.left.Load() {
			return
		}
		var dead []string
		g.mu.Lock()
		for _, m := range g.members {
			if m.State == StateDead && m.GossipAddr != "" {
				dead = append(dead, m.GossipAddr)
			}
		}
		g.mu.Unlock()
		for _, addr := range dead {
			if n, err := g.ml.Join([]string{addr}); err == nil && n > 0 {
				g.logger.Info("reconnected to a member gossip had marked dead", "addr", addr)
			}
		}
	}
}

// SetMeta publishes new metadata for this node. After Leave it does nothing: an update would
// announce the node alive again and undo the departure.
func (g *Gossip) SetMeta(m Meta) error {
	if g.left.Load() {
		return nil
	}
	g.mu.Lock()
	g.meta = m
	g.mu.Unlock()
	return g.ml.UpdateNode(5 * time.Second)
}

// LocalMeta is the metadata this node publishes.
func (g *Gossip) LocalMeta() Meta {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.meta
}

// Members returns every node gossip knows of, sorted by id; members that died or left are included
// with that state until they come back. It is built from the event callbacks only: memberlist's own
// Members() hands out nodes that its goroutines keep mutating.
func (g *Gossip) Members() []Member {
	g.mu.Lock()
	list := make([]Member, 0, len(g.members))
	for _, m := range g.members {
		if m.ID != "" { // metadata not seen yet otherwise
			list = append(list, m)
		}
	}
	g.mu.Unlock()
	sort.Slice(list, func(i, j int) bool { return list[i].ID < list[j].ID })
	return list
}

// RaftAddr is the raft address member id last published, if gossip has heard of it.
func (g *Gossip) RaftAddr(id string) (string, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	m, ok := g.members[id]
	return m.RaftAddr, ok && m.RaftAddr != ""
}

// LogFormat is the log format member id last advertised, if gossip has heard of it.
func (g *Gossip) LogFormat(id string) (int, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	m, ok := g.members[id]
	return m.LogFormat, ok && m.ID != ""
}

// Changes delivers a (coalesced) signal whenever membership or metadata changes.
func (g *Gossip) Changes() <-chan struct{} { return g.changes }

// Leave announces a graceful departure: others see this node as left, not failed.
func (g *Gossip) Leave(timeout time.Duration) error {
	m := g.LocalMeta()
	m.Left = true
	if err := g.SetMeta(m); err != nil {
		return fmt.Errorf("announce departure: %w", err)
	}
	g.pushStateToAlive()
	g.left.Store(true)
	if err := g.ml.Leave(timeout); err != nil {
		return fmt.Errorf("gossip leave: %w", err)
	}
	return nil
}

// pushStateToAlive hands this node's state, with its new metadata, to every live member over TCP
// (memberlist's push/pull). The update that SetMeta broadcast travels over UDP gossip and may not have
// reached a member yet; one that then hears of the departure with the old metadata would take it for a
// failure, and a failed member stays in the Raft configuration (the chaos suite saw exactly that).
// Best effort: a member that cannot be reached now learns of the departure from the others.
func (g *Gossip) pushStateToAlive() {
	self := g.ml.LocalNode().Name
	var addrs []string
	g.mu.Lock()
	for name, m := range g.members {
		if name != self && m.State == StateAlive && m.GossipAddr != "" {
			addrs = append(addrs, m.GossipAddr)
		}
	}
	g.mu.Unlock()
	if len(addrs) == 0 {
		return
	}
	n, err := g.ml.Join(addrs)
	g.logger.Debug("pushed departure to live members", "reached", n, "of", len(addrs), "error", err)
}

// Shutdown stops gossip without announcing anything: others will see this node fail.
func (g *Gossip) Shutdown() error {
	err := g.ml.Shutdown()
	g.throttle.Flush()
	return err
}

// record notes a member's latest state. alive says which kind of event it came from: memberlist's
// Node.State is not filled in for events, so the event itself is the state.
func (g *Gossip) record(n *memberlist.Node, alive bool) {
	meta, ok := decodeMeta(n.Meta)
	g.mu.Lock()
	m := g.members[n.Name]
	if ok {
		m.Meta = meta
	}
	m.GossipAddr = net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port)))
	switch {
	case m.Left:
		m.State = StateLeft
	case alive:
		m.State = StateAlive
	default:
		m.State = StateDead
	}
	g.members[n.Name] = m
	g.mu.Unlock()
	select {
	case g.changes <- struct{}{}:
	default:
	}
}

func decodeMeta(b []byte) (Meta, bool) {
	var m Meta
	if len(b) == 0 || json.Unmarshal(b, &m) != nil || m.ID == "" {
		return Meta{}, false
	}
	return m, true
}

type gossipDelegate Gossip

func (d *gossipDelegate) NodeMeta(limit int) []byte {
	g := (*Gossip)(d)
	b, err := json.Marshal(g.LocalMeta())
	if err != nil || len(b) > limit {
		g.logger.Error("gossip metadata does not fit", "size", len(b), "limit", limit, "err", err)
		return nil
	}
	return b
}
func (d *gossipDelegate) NotifyMsg([]byte)                           {}
func (d *gossipDelegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (d *gossipDelegate) LocalState(join bool) []byte                { return nil }
func (d *gossipDelegate) MergeRemoteState(buf []byte, join bool)     {}

type gossipEvents Gossip

func (e *gossipEvents) NotifyJoin(n *memberlist.Node)   { (*Gossip)(e).record(n, true) }
func (e *gossipEvents) NotifyLeave(n *memberlist.Node)  { (*Gossip)(e).record(n, false) }
func (e *gossipEvents) NotifyUpdate(n *memberlist.Node) { (*Gossip)(e).record(n, true) }
func (e *gossipEvents) NotifyConflict(existing, other *memberlist.Node) {
	(*Gossip)(e).logger.Error("two nodes claim the same id: node ids must be unique",
		"id", existing.Name, "existing", existing.Address(), "other", other.Address())
}
