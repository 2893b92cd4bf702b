package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftkv/raftkv/test/harness"
)

// Ports inside every container (the image's defaults).
const (
	httpPort   = 7000
	gossipPort = 7002
)

// Timeouts of the clients the suite uses.
const (
	// WorkloadRequestTimeout bounds one workload request. It is longer than the nodes'
	// --request-timeout, so a node that is up answers 503 before the client gives up; only a node that
	// cannot answer at all (paused, cut off) makes the client time out.
	WorkloadRequestTimeout = 5 * time.Second
	nodeRequestTimeout     = "3s"
	// controlTimeout bounds the harness's own status and readiness probes.
	controlTimeout = 2 * time.Second
	// startTimeout bounds waiting for a fresh cluster to be healthy.
	startTimeout = 90 * time.Second
)

// Env is what every cluster of a run shares.
type Env struct {
	Image string // the raftkv image built from this checkout
	RunID string // value of LabelRun on everything this run creates
	// Artifacts is the directory for this run's reports and failure artifacts.
	Artifacts string
	// NodeArgs are extra `raftkv serve` flags for every node.
	NodeArgs []string
}

// NodeState is what the harness last did to a node's container.
type NodeState int

// Node states.
const (
	Running NodeState = iota
	Paused
	Stopped // killed or stopped; `docker start` brings it back with the same volume
	Removed // the container is gone and the node is no longer a member
	// Starting: the container runs but its HTTP server does not answer yet. The workload leaves it
	// alone: through the port publishing proxy, a request to a port nobody listens on yet is accepted
	// and then dropped, which looks like a write of unknown outcome rather than the refused connection
	// it really is, and floods the history with them.
	Starting
)

func (s NodeState) String() string {
	return [...]string{"running", "paused", "stopped", "removed", "starting"}[s]
}

// Node is one raftkv container. Its id, container name and volume never change; its IP changes only
// through Cluster.ChangeIP, its published HTTP port on every start.
type Node struct {
	ID        string
	Container string
	Volume    string
	// Founder: started with --bootstrap-expect (the cluster's first members).
	Founder bool
	// disk, in a disk scenario, is the node's own filesystem, mounted at /data instead of Volume.
	disk *loopDisk

	mu     sync.Mutex
	ip     string
	state  NodeState
	pid    int
	addr   string          // 127.0.0.1:<published port>
	client *harness.Client // workload client for addr; nil while the container is not running
	ctl    *harness.Client // short-timeout client for the harness's probes
}

func (n *Node) String() string { return n.ID }

// IP is the node's current address on the cluster network.
func (n *Node) IP() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.ip
}

// State is what the harness last did to the node.
func (n *Node) State() NodeState {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.state
}

// Client returns the workload client of the node's current HTTP address, or nil when it has none.
func (n *Node) Client() *harness.Client {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.client
}

func (n *Node) control() (*harness.Client, int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.ctl, n.pid
}

func (n *Node) setState(s NodeState) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.state = s
	if s == Stopped || s == Removed {
		n.pid = 0
		n.drop()
	}
}

// drop forgets the node's clients (and their idle connections). Caller holds n.mu.
func (n *Node) drop() {
	if n.client != nil {
		n.client.HTTP.CloseIdleConnections()
		n.ctl.HTTP.CloseIdleConnections()
	}
	n.client, n.ctl, n.addr = nil, nil, ""
}

// Cluster is a set of raftkv containers on a private network, created for one scenario. Everything
// it creates carries the run's label and the cluster's label, and is removed in t.Cleanup.
type Cluster struct {
	t       testing.TB
	env     *Env
	Name    string // prefix of its containers, volumes and network
	Network string
	start   time.Time

	mu       sync.Mutex
	subnet   netip.Prefix
	nodes    []*Node // every node ever created, in creation order
	nextID   int
	nextIP   int
	founders []string // container names of the founders: every node's --join list
	savedLog string   // directory with the logs of removed containers
	// acl: the nodes run with --acl-enabled; token is the management secret from bootstrap, which
	// every client of the harness and the workload then sends.
	acl   bool
	token string
	// sec, when set, runs every node with API TLS, peer mutual TLS and gossip encryption (issue 14),
	// and every client of the harness and the workload over TLS with a client certificate.
	sec *security
	// disks: every node keeps its data dir on a filesystem of its own (disk.go), for disk faults.
	disks bool
	// nodeArgs: `raftkv serve` flags of this cluster's nodes, after the run's (a later flag wins).
	nodeArgs []string
}

// clusterOpts are the ways a cluster can differ from the default one.
type clusterOpts struct {
	acl    bool // see Cluster.acl
	secure bool // see Cluster.sec
	disks  bool // see Cluster.disks
	// nodeArgs are `raftkv serve` flags after the run's (a later flag wins).
	nodeArgs []string
}

// NewCluster starts a cluster of size founders and waits until it is healthy. With acl, the nodes run
// with --acl-enabled and the cluster is bootstrapped first: every client then carries the management
// token, and the workload, the checks and the faults run as they do without ACLs.
func NewCluster(t testing.TB, env *Env, name string, size int, acl bool) *Cluster {
	return newCluster(t, env, name, size, clusterOpts{acl: acl})
}

// NewSecureCluster is NewCluster with transport security on every port (see Cluster.sec).
func NewSecureCluster(t testing.TB, env *Env, name string, size int, acl bool) *Cluster {
	return newCluster(t, env, name, size, clusterOpts{acl: acl, secure: true})
}

func newCluster(t testing.TB, env *Env, name string, size int, opts clusterOpts) *Cluster {
	t.Helper()
	acl := opts.acl
	c := &Cluster{t: t, env: env, Name: name, Network: name, start: time.Now(), nextIP: 10, savedLog: t.TempDir(), acl: acl, disks: opts.disks, nodeArgs: opts.nodeArgs}
	if opts.secure {
		sec, err := newSecurity(t.TempDir())
		if err != nil {
			t.Fatalf("cluster %s: %v", name, err)
		}
		c.sec = sec
	}
	t.Cleanup(c.destroy)
	if err := c.createNetwork(); err != nil {
		t.Fatalf("cluster %s: %v", name, err)
	}
	var nodes []*Node
	for i := 0; i < size; i++ {
		n := c.newNode(true)
		c.founders = append(c.founders, n.Container)
		nodes = append(nodes, n)
	}
	// Start them concurrently: docker run costs a second or so each on a loaded machine.
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = c.runContainer(n, size)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("cluster %s: %v", name, err)
	}
	if acl {
		if err := c.bootstrapACL(nodes[0]); err != nil {
			t.Fatalf("cluster %s: %v", name, err)
		}
	}
	took, err := c.WaitConverged(startTimeout)
	if err != nil {
		dir := filepath.Join(env.Artifacts, name)
		if derr := c.DumpLogs(dir); derr == nil {
			t.Logf("node logs saved in %s", dir)
		}
		t.Fatalf("cluster %s did not form within %v: %v", name, startTimeout, err)
	}
	c.Logf("cluster of %d up and healthy after %v", size, took.Round(time.Millisecond))
	return c
}

// bootstrapACL asks n for the management token (retried until the cluster has a leader) and gives it
// to every client.
func (c *Cluster) bootstrapACL(n *Node) error {
	ctl, _ := n.control()
	// Bootstrap succeeds once per cluster and its secret exists only in the answer: a request the
	// client gave up on while it was being applied (5 s on a loaded machine was not enough) leaves the
	// cluster bootstrapped with a secret nobody has, and every retry gets 409. So wait long for it.
	boot := *ctl
	boot.Timeout = 2 * time.Minute
	var secret string
	err := harness.Poll(startTimeout, func() error {
		r := boot.Do(http.MethodPost, "/v1/acl/bootstrap", nil)
		if r.Status != http.StatusOK {
			return fmt.Errorf("bootstrap: %v", r)
		}
		var tok struct {
			SecretID string `json:"secret_id"`
		}
		if err := json.Unmarshal(r.Body, &tok); err != nil || tok.SecretID == "" {
			return harness.Permanent(fmt.Errorf("bootstrap: no secret in %s", r.Body))
		}
		secret = tok.SecretID
		return nil
	})
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.token = secret
	nodes := slices.Clone(c.nodes)
	c.mu.Unlock()
	for _, m := range nodes {
		m.mu.Lock()
		if m.client != nil {
			m.client.Token, m.ctl.Token = secret, secret
		}
		m.mu.Unlock()
	}
	c.Logf("ACLs on: bootstrapped through %s", n)
	return nil
}

// Logf logs with the time since the cluster was created.
func (c *Cluster) Logf(format string, args ...any) {
	c.t.Helper()
	c.t.Logf("%7.2fs %s", time.Since(c.start).Seconds(), fmt.Sprintf(format, args...))
}

func (c *Cluster) labels() []string {
	return []string{"--label", LabelRun + "=" + c.env.RunID, "--label", LabelCluster + "=" + c.Name}
}

// createNetwork creates a bridge network with a /24 of its own (user-chosen subnets are what
// `--ip` needs), retrying on overlaps with other networks.
func (c *Cluster) createNetwork() error {
	ctx := context.Background()
	var lastErr error
	for attempt := 0; attempt < 30; attempt++ {
		subnet := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(200 + rand.IntN(50)), byte(rand.IntN(256)), 0}), 24)
		if hostUses(subnet) {
			continue
		}
		gw := subnet.Addr().Next()
		args := append([]string{"network", "create", "--driver", "bridge", "--subnet", subnet.String(), "--gateway", gw.String()}, c.labels()...)
		_, err := Docker(ctx, append(args, c.Network)...)
		if err == nil {
			c.subnet = subnet
			return nil
		}
		lastErr = err
		if !strings.Contains(err.Error(), "overlap") {
			return err
		}
	}
	return fmt.Errorf("no free subnet for network %s: %w", c.Network, lastErr)
}

// hostUses reports whether any address of the host falls into subnet.
func hostUses(subnet netip.Prefix) bool {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return false
	}
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil && p.Overlaps(subnet) {
			return true
		}
	}
	return false
}

// allocIP returns an unused address of the cluster's subnet.
func (c *Cluster) allocIP() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	b := c.subnet.Addr().As4()
	b[3] = byte(c.nextIP)
	c.nextIP++
	return netip.AddrFrom4(b).String()
}

// newNode creates the next node's volume and bookkeeping (no container yet).
func (c *Cluster) newNode(founder bool) *Node {
	c.mu.Lock()
	c.nextID++
	id := fmt.Sprintf("n%d", c.nextID)
	c.mu.Unlock()
	n := &Node{ID: id, Container: c.Name + "-" + id, Volume: c.Name + "-" + id, Founder: founder, ip: c.allocIP(), state: Stopped}
	var err error
	if c.disks {
		n.disk, err = newLoopDisk(c.env.RunID, n.Container)
	} else {
		err = c.createVolume(n.Volume)
	}
	if n.disk != nil || err == nil {
		c.mu.Lock()
		c.nodes = append(c.nodes, n) // destroy releases its disk even when making it failed half-way
		c.mu.Unlock()
	}
	if err != nil {
		c.t.Fatalf("cluster %s: %v", c.Name, err)
	}
	return n
}

func (c *Cluster) createVolume(name string) error {
	_, err := Docker(context.Background(), append(append([]string{"volume", "create"}, c.labels()...), name)...)
	return err
}

// runContainer creates and starts n's container. bootstrapExpect > 0 makes it a founder; otherwise it
// only joins.
// Founders join each other; a later node joins the members whose containers exist now (the founders
// may be long gone).
func (c *Cluster) runContainer(n *Node, bootstrapExpect int) error {
	names := c.founders
	if bootstrapExpect == 0 {
		names = nil
		for _, m := range c.Up() {
			if m != n {
				names = append(names, m.Container)
			}
		}
	}
	join := make([]string, len(names))
	for i, name := range names {
		join[i] = net.JoinHostPort(name, strconv.Itoa(gossipPort))
	}
	args := []string{"run", "-d", "--name", n.Container, "--hostname", n.ID,
		"--network", c.Network, "--ip", n.IP(),
		"-v", c.dataMount(n),
		"-p", "127.0.0.1::" + strconv.Itoa(httpPort),
		"--stop-timeout", "20",
		// No restart policy: the harness alone decides when a node runs.
		"--restart", "no",
	}
	args = append(args, c.labels()...)
	var secure []string
	if c.sec != nil {
		mount, flags, err := c.sec.nodeArgs(n.ID)
		if err != nil {
			return err
		}
		args, secure = append(args, mount...), flags
	}
	args = append(args, c.env.Image, "--id", n.ID, "--join", strings.Join(join, ","),
		"--log-level", "info", "--request-timeout", nodeRequestTimeout)
	if bootstrapExpect > 0 {
		args = append(args, "--bootstrap-expect", strconv.Itoa(bootstrapExpect))
	}
	args = append(args, c.env.NodeArgs...)
	args = append(args, c.nodeArgs...)
	if c.acl {
		args = append(args, "--acl-enabled")
	}
	args = append(args, secure...)
	if _, err := Docker(context.Background(), args...); err != nil {
		return err
	}
	return c.started(n)
}

// dataMount is the docker -v argument for n's data dir: its volume, or its own filesystem.
func (c *Cluster) dataMount(n *Node) string {
	if n.disk != nil {
		return n.disk.mnt + ":/data"
	}
	return n.Volume + ":/data"
}

// started reads the new container's pid and port, waits until its HTTP server answers, and only then
// lets the workload at it.
func (c *Cluster) started(n *Node) error {
	if err := c.refresh(n, Starting); err != nil {
		return err
	}
	ctl, _ := n.control()
	start := time.Now()
	err := harness.Poll(startTimeout, func() error {
		err := ctl.Healthy()
		if err != nil && time.Since(start) > 2*time.Second {
			if st := containerState(n.Container); st != "running" {
				return harness.Permanent(fmt.Errorf("its container is %s", st))
			}
		}
		return err
	})
	n.setState(Running)
	if err != nil {
		return fmt.Errorf("%s does not answer /healthz: %w", n, err)
	}
	return nil
}

// containerState is docker's view of a container: "running", "paused", or e.g. "exited (2)".
func containerState(container string) string {
	out, err := Docker(context.Background(), "inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", container)
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	status, code, _ := strings.Cut(out, " ")
	if status == "exited" || status == "dead" {
		return status + " (exit code " + code + ")"
	}
	return status
}

// refresh reads the container's pid and published port after a start, and sets the node's state.
func (c *Cluster) refresh(n *Node, state NodeState) error {
	out, err := Docker(context.Background(), "inspect", "-f",
		`{{.State.Pid}} {{with index .NetworkSettings.Ports "7000/tcp"}}{{(index . 0).HostPort}}{{end}}`, n.Container)
	if err != nil {
		return err
	}
	f := strings.Fields(out)
	if len(f) != 2 {
		return fmt.Errorf("inspect %s: unexpected %q (is it running?)", n.Container, out)
	}
	pid, err := strconv.Atoi(f[0])
	if err != nil || pid <= 0 {
		return fmt.Errorf("inspect %s: no pid in %q", n.Container, out)
	}
	addr := "127.0.0.1:" + f[1]
	c.mu.Lock()
	token := c.token
	c.mu.Unlock()
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.addr != addr {
		n.drop()
		n.addr = addr
		n.client = harness.NewClient(addr, WorkloadRequestTimeout)
		n.ctl = harness.NewClient(addr, controlTimeout)
		n.client.Token, n.ctl.Token = token, token
		if c.sec != nil {
			n.client.UseTLS(c.sec.client)
			n.ctl.UseTLS(c.sec.client)
		}
	}
	n.pid, n.state = pid, state
	return nil
}

// Nodes returns every node ever created, removed ones included.
func (c *Cluster) Nodes() []*Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*Node(nil), c.nodes...)
}

// Members returns the nodes that should be members of the cluster: every node not removed.
func (c *Cluster) Members() []*Node {
	var out []*Node
	for _, n := range c.Nodes() {
		if n.State() != Removed {
			out = append(out, n)
		}
	}
	return out
}

// Up returns the members whose containers run (paused ones included).
func (c *Cluster) Up() []*Node {
	var out []*Node
	for _, n := range c.Members() {
		if s := n.State(); s == Running || s == Paused {
			out = append(out, n)
		}
	}
	return out
}

// Node returns the node with id, or nil.
func (c *Cluster) Node(id string) *Node {
	for _, n := range c.Nodes() {
		if n.ID == id {
			return n
		}
	}
	return nil
}

// Kill sends SIGKILL to n's container.
func (c *Cluster) Kill(n *Node) error {
	c.Logf("kill -9 %s", n)
	if n.State() == Paused { // a frozen process dies only once thawed; docker kill handles it, but be explicit
		_, _ = Docker(context.Background(), "unpause", n.Container)
	}
	_, err := Docker(context.Background(), "kill", "-s", "KILL", n.Container)
	n.setState(Stopped)
	return err
}

// Stop stops n gracefully (SIGTERM, then SIGKILL after the stop timeout).
func (c *Cluster) Stop(n *Node) error {
	c.Logf("stop (SIGTERM) %s", n)
	_, err := Docker(context.Background(), "stop", "-t", "20", n.Container)
	n.setState(Stopped)
	return err
}

// Start starts n's stopped container again: same id, volume and (unless ChangeIP) address.
func (c *Cluster) Start(n *Node) error {
	c.Logf("start %s", n)
	if _, err := Docker(context.Background(), "start", n.Container); err != nil {
		return err
	}
	return c.started(n)
}

// Pause freezes every process of n's container (SIGSTOP-like, via the cgroup freezer).
func (c *Cluster) Pause(n *Node) error {
	c.Logf("pause %s", n)
	_, err := Docker(context.Background(), "pause", n.Container)
	if err == nil {
		n.setState(Paused)
	}
	return err
}

// Unpause thaws n.
func (c *Cluster) Unpause(n *Node) error {
	c.Logf("unpause %s", n)
	_, err := Docker(context.Background(), "unpause", n.Container)
	if err == nil {
		n.setState(Running)
	}
	return err
}

// ChangeIP moves a stopped node to a new address on the cluster network; its next Start uses it.
func (c *Cluster) ChangeIP(n *Node) error {
	if n.State() != Stopped {
		return fmt.Errorf("ChangeIP(%s): the node must be stopped, it is %s", n, n.State())
	}
	ip := c.allocIP()
	c.Logf("move %s from %s to %s", n, n.IP(), ip)
	ctx := context.Background()
	if _, err := Docker(ctx, "network", "disconnect", c.Network, n.Container); err != nil {
		return err
	}
	if _, err := Docker(ctx, "network", "connect", "--ip", ip, c.Network, n.Container); err != nil {
		return err
	}
	n.mu.Lock()
	n.ip = ip
	n.mu.Unlock()
	return nil
}

// Destroy removes n's container (its logs are kept for the failure artifacts) and marks it removed.
// The volume stays until the cluster is destroyed, unless wipe.
func (c *Cluster) Destroy(n *Node, wipe bool) error {
	c.Logf("remove container %s (wipe volume: %t)", n, wipe)
	c.saveLog(n)
	ctx := context.Background()
	_, err := Docker(ctx, "rm", "-f", "-v", n.Container)
	n.setState(Removed)
	if err == nil && wipe {
		if n.disk != nil {
			err = n.disk.wipe()
		} else {
			_, err = Docker(ctx, "volume", "rm", "-f", n.Volume)
		}
	}
	return err
}

// Replace starts a new container for a removed node: same id, name and address, on a fresh, empty
// volume, joining the cluster (no --bootstrap-expect). The cluster must notice the wiped data dir.
func (c *Cluster) Replace(n *Node) error {
	if n.State() != Removed {
		return fmt.Errorf("Replace(%s): the old container must be removed first", n)
	}
	if n.disk == nil {
		if err := c.createVolume(n.Volume); err != nil {
			return err
		}
	}
	c.Logf("replace %s with an empty volume", n)
	n.Founder = false
	return c.runContainer(n, 0)
}

// AddNode starts a new node that joins the running cluster (--join only).
func (c *Cluster) AddNode() (*Node, error) {
	n := c.newNode(false)
	c.Logf("add %s (join)", n)
	return n, c.runContainer(n, 0)
}

func (c *Cluster) saveLog(n *Node) {
	out, err := dockerLogs(n.Container)
	if err != nil {
		out += "\n(docker logs: " + err.Error() + ")\n"
	}
	name := fmt.Sprintf("%s-%s.log", n.Container, time.Now().Format("150405.000"))
	_ = os.WriteFile(filepath.Join(c.savedLog, name), []byte(out), 0o644)
}

func dockerLogs(container string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), dockerTimeout)
	defer cancel()
	// docker logs writes the container's stderr to its own stderr: take both.
	out, err := runCombined(ctx, "docker", "logs", "-t", container)
	return out, err
}

// DumpLogs writes the logs of every container (current and removed ones) into dir.
func (c *Cluster) DumpLogs(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, n := range c.Nodes() {
		if n.State() == Removed {
			continue
		}
		out, err := dockerLogs(n.Container)
		if err != nil {
			out += "\n(docker logs: " + err.Error() + ")\n"
		}
		if err := os.WriteFile(filepath.Join(dir, n.Container+".log"), []byte(out), 0o644); err != nil {
			return err
		}
	}
	saved, _ := os.ReadDir(c.savedLog)
	for _, e := range saved {
		b, err := os.ReadFile(filepath.Join(c.savedLog, e.Name()))
		if err == nil {
			_ = os.WriteFile(filepath.Join(dir, "removed-"+e.Name()), b, 0o644)
		}
	}
	return nil
}

// destroy removes everything of this cluster: containers (with their firewall rules and queueing
// disciplines, which live in their network namespaces), volumes and the network.
func (c *Cluster) destroy() {
	if err := Sweep(LabelCluster + "=" + c.Name); err != nil {
		c.t.Errorf("cleaning up cluster %s: %v", c.Name, err)
	}
	// The containers are gone: nothing holds the disks any more.
	for _, n := range c.Nodes() {
		if n.disk != nil {
			if err := n.disk.release(); err != nil {
				c.t.Errorf("releasing the disk of %s: %v", n, err)
			}
		}
	}
}

// Status is one node's answer to GET /v1/cluster.
func (c *Cluster) Status(n *Node) (*harness.ClusterStatus, error) {
	ctl, _ := n.control()
	if ctl == nil {
		return nil, fmt.Errorf("%s is %s", n, n.State())
	}
	return ctl.Status()
}

// Leader returns the node that the running members agree leads (a majority of them names it and it
// says it leads), polling up to timeout.
func (c *Cluster) Leader(timeout time.Duration) (*Node, error) {
	var leader *Node
	err := harness.Poll(timeout, func() error {
		votes := map[string]int{}
		up := 0
		for _, n := range c.Up() {
			if n.State() != Running {
				continue
			}
			up++
			st, err := c.Status(n)
			if err == nil && st.Leader != nil {
				votes[st.Leader.ID]++
			}
		}
		for id, v := range votes {
			if v*2 > up {
				n := c.Node(id)
				if n == nil || n.State() != Running {
					continue
				}
				if st, err := c.Status(n); err == nil && st.State == "Leader" {
					leader = n
					return nil
				}
			}
		}
		return fmt.Errorf("no agreed leader among %d running members (votes %v)", up, votes)
	})
	return leader, err
}

// Healthy returns nil when the cluster has recovered: every member runs and is ready, all of them
// name the same leader, which says it leads, and the leader's configuration is exactly the members,
// all voters, at their current addresses. The error says what is still missing.
func (c *Cluster) Healthy() error { return c.health(false) }

// Converged is Healthy, and besides the leader sees every member alive in gossip.
func (c *Cluster) Converged() error { return c.health(true) }

func (c *Cluster) health(gossip bool) error {
	members := c.Members()
	var leaderID string
	var leaderStatus *harness.ClusterStatus
	for _, n := range members {
		ctl, _ := n.control()
		if n.State() != Running || ctl == nil {
			return fmt.Errorf("%s is %s", n, n.State())
		}
		if r := ctl.Do(http.MethodGet, "/readyz", nil); !r.OK() {
			if r.Err != nil { // no answer at all: is the process still there?
				if st := containerState(n.Container); st != "running" {
					return fmt.Errorf("%s: its container is %s (see its log)", n, st)
				}
			}
			return fmt.Errorf("%s not ready: %v", n, r)
		}
		st, err := ctl.Status()
		if err != nil {
			return fmt.Errorf("%s status: %v", n, err)
		}
		if st.Leader == nil {
			return fmt.Errorf("%s knows no leader", n)
		}
		if leaderID == "" {
			leaderID = st.Leader.ID
		} else if st.Leader.ID != leaderID {
			return fmt.Errorf("%s names leader %s, another member names %s", n, st.Leader.ID, leaderID)
		}
		if n.ID == leaderID {
			leaderStatus = st
		}
	}
	if leaderStatus == nil {
		return fmt.Errorf("leader %q is not an expected member", leaderID)
	}
	if leaderStatus.State != "Leader" {
		return fmt.Errorf("%s is named leader but is %s", leaderID, leaderStatus.State)
	}
	var want, got []string
	for _, n := range members {
		want = append(want, n.ID)
	}
	for _, m := range leaderStatus.Members {
		if m.Suffrage == "voter" || m.Suffrage == "nonvoter" {
			got = append(got, m.ID)
		}
	}
	sort.Strings(want)
	sort.Strings(got)
	if strings.Join(want, ",") != strings.Join(got, ",") {
		return fmt.Errorf("leader %s has raft members %v, want %v", leaderID, got, want)
	}
	for _, n := range members {
		m := leaderStatus.Member(n.ID)
		if m.Suffrage != "voter" {
			return fmt.Errorf("leader %s sees %s as %s", leaderID, n, m.Suffrage)
		}
		if host, _, _ := net.SplitHostPort(m.RaftAddr); host != n.IP() {
			return fmt.Errorf("leader %s has %s at raft address %s, its address is %s", leaderID, n, m.RaftAddr, n.IP())
		}
		if gossip && m.GossipState != "alive" {
			return fmt.Errorf("leader %s sees %s as %s in gossip", leaderID, n, m.GossipState)
		}
	}
	return nil
}

// WaitHealthy polls Healthy until it holds or timeout passes, and returns how long it took.
// While waiting it logs what is missing every few seconds, so a slow recovery explains itself.
func (c *Cluster) WaitHealthy(timeout time.Duration) (time.Duration, error) {
	return c.wait(timeout, c.Healthy)
}

// WaitConverged polls Converged like WaitHealthy.
func (c *Cluster) WaitConverged(timeout time.Duration) (time.Duration, error) {
	return c.wait(timeout, c.Converged)
}

func (c *Cluster) wait(timeout time.Duration, cond func() error) (time.Duration, error) {
	start := time.Now()
	lastLog := start
	var last string
	err := harness.Poll(timeout, func() error {
		err := cond()
		if err != nil && time.Since(lastLog) >= 5*time.Second && err.Error() != last {
			c.Logf("not healthy yet (%v): %v", time.Since(start).Round(time.Second), err)
			lastLog, last = time.Now(), err.Error()
		}
		return err
	})
	return time.Since(start), err
}
