package harness

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/raftkv/raftkv/test/lincheck"
)

// Timeouts for waiting on process and cluster states.
const (
	StartTimeout  = 30 * time.Second // a process answers /healthz
	ReadyTimeout  = 60 * time.Second // a node answers /readyz
	LeaderTimeout = 30 * time.Second // live nodes agree on a live leader
	StopTimeout   = 30 * time.Second // SIGTERM to exit
	ReapTimeout   = 10 * time.Second // SIGKILL to exit
	logTailLines  = 200
)

// Options configure the nodes of a cluster. Zero values leave the product's defaults.
type Options struct {
	SnapshotThreshold int
	SnapshotInterval  time.Duration
	TrailingLogs      int
	MaxValueSize      int
	LogLevel          string // default "debug"
	LogFormat         string // default "text"
	ExtraArgs         []string
	// RequestTimeout bounds each request of the nodes' clients (default DefaultRequestTimeout).
	RequestTimeout time.Duration
	// NodeArgs, when set, adds flags for the node with this id (its own certificate, say).
	NodeArgs func(id string) []string
	// ClientTLS, when set, makes the nodes' clients speak https with it (nodes started with TLS).
	ClientTLS *tls.Config
}

func (o Options) flags() []string {
	level, format := o.LogLevel, o.LogFormat
	if level == "" {
		level = "debug"
	}
	if format == "" {
		format = "text"
	}
	f := []string{"--log-level", level, "--log-format", format}
	if o.SnapshotThreshold > 0 {
		f = append(f, "--snapshot-threshold", strconv.Itoa(o.SnapshotThreshold))
	}
	if o.SnapshotInterval > 0 {
		f = append(f, "--snapshot-interval", o.SnapshotInterval.String())
	}
	if o.TrailingLogs > 0 {
		f = append(f, "--trailing-logs", strconv.Itoa(o.TrailingLogs))
	}
	if o.MaxValueSize > 0 {
		f = append(f, "--max-value-size", strconv.Itoa(o.MaxValueSize))
	}
	return append(f, o.ExtraArgs...)
}

// Node is one raftkv process slot: its identity, addresses and files stay the same across
// restarts. The embedded Client talks to its HTTP address.
type Node struct {
	*Client
	Index                          int
	ID                             string
	HTTPAddr, RaftAddr, GossipAddr string
	DataDir, LogPath               string

	opts            Options
	join            []string
	bootstrapExpect int

	// Guarded by Cluster.mu.
	proc   *process
	paused bool
}

func (n *Node) args() []string {
	a := []string{"serve",
		"--id", n.ID,
		"--data-dir", n.DataDir,
		"--http-addr", n.HTTPAddr,
		"--raft-addr", n.RaftAddr,
		"--gossip-addr", n.GossipAddr,
	}
	if n.bootstrapExpect > 0 {
		a = append(a, "--bootstrap-expect", strconv.Itoa(n.bootstrapExpect))
	}
	if len(n.join) > 0 {
		a = append(a, "--join", strings.Join(n.join, ","))
	}
	a = append(a, n.opts.flags()...)
	if n.opts.NodeArgs != nil {
		a = append(a, n.opts.NodeArgs(n.ID)...)
	}
	return a
}

func (n *Node) allocatePorts() error {
	var p [3]int
	for i := range p {
		var err error
		if p[i], err = FreePort(); err != nil {
			return err
		}
	}
	addr := func(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }
	n.HTTPAddr, n.RaftAddr, n.GossipAddr = addr(p[0]), addr(p[1]), addr(p[2])
	token := ""
	if n.Client != nil {
		token = n.Client.Token // new ports, same credentials
	}
	n.Client = NewClient(n.HTTPAddr, n.opts.RequestTimeout)
	if n.opts.ClientTLS != nil {
		n.Client.UseTLS(n.opts.ClientTLS)
	}
	n.Client.Token = token
	return nil
}

// SetToken makes every node's client send this ACL token secret (a cluster started with
// --acl-enabled, once bootstrapped). Call it before any concurrent use of the clients.
func (c *Cluster) SetToken(secret string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, n := range c.nodes {
		n.Client.Token = secret
	}
}

// Cluster is a set of raftkv processes started for one test.
type Cluster struct {
	t   testing.TB
	dir string

	mu    sync.Mutex
	nodes []*Node
}

// StartCluster starts n nodes that bootstrap together (--bootstrap-expect n, each joining all the
// others by gossip) and waits until every node is ready. Everything is torn down in t.Cleanup.
func StartCluster(t testing.TB, n int, opts Options) *Cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("process test: skipped with -short")
	}
	c := &Cluster{t: t, dir: t.TempDir()}
	registerDir(c.dir)
	t.Cleanup(c.cleanup) // registered after TempDir: runs before the directory is removed
	for i := 0; i < n; i++ {
		node := c.newNode(i, opts)
		node.bootstrapExpect = n
		c.nodes = append(c.nodes, node)
	}
	for _, node := range c.nodes {
		for _, other := range c.nodes {
			if other != node {
				node.join = append(node.join, other.GossipAddr)
			}
		}
	}
	for _, node := range c.nodes {
		c.launch(node)
	}
	for _, node := range c.nodes {
		c.waitStarted(node, true)
	}
	c.WaitAllReady(t)
	return c
}

func (c *Cluster) newNode(i int, opts Options) *Node {
	id := fmt.Sprintf("n%d", i+1)
	node := &Node{
		Index:   i,
		ID:      id,
		DataDir: filepath.Join(c.dir, id+"-data"),
		LogPath: filepath.Join(c.dir, id+".log"),
		opts:    opts,
	}
	if err := node.allocatePorts(); err != nil {
		c.t.Fatalf("allocating ports: %v", err)
	}
	return node
}

// launch starts node's process, appending its output to the node's log file.
func (c *Cluster) launch(n *Node) {
	c.t.Helper()
	f, err := os.OpenFile(n.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		c.t.Fatalf("opening log: %v", err)
	}
	defer f.Close() // the child holds its own descriptor
	fmt.Fprintf(f, "=== harness %s: starting %s %s\n", time.Now().Format(time.RFC3339Nano), n.ID, strings.Join(n.args(), " "))
	p, err := startProcess(n.args(), f)
	if err != nil {
		c.t.Fatalf("starting %s: %v", n.ID, err)
	}
	c.mu.Lock()
	n.proc, n.paused = p, false
	c.mu.Unlock()
}

var bindFailure = regexp.MustCompile(`(?i)address already in use`)

// waitStarted waits until node answers /healthz. If the process exited because a port was taken,
// it is started again: on new ports when newPorts, else on the same ports once they are free.
func (c *Cluster) waitStarted(n *Node, newPorts bool) {
	c.t.Helper()
	attempts := 0
	err := Poll(StartTimeout, func() error {
		c.mu.Lock()
		p := n.proc
		c.mu.Unlock()
		if p.exited() {
			p.expected.Store(true) // reported here
			tail := lastRun(n.LogPath)
			limit := 100 // same ports: give whoever holds one time to let go
			if newPorts {
				limit = 10
			}
			if !bindFailure.MatchString(tail) || attempts >= limit {
				return Permanent(fmt.Errorf("%s exited during startup (%v); log:\n%s", n.ID, p.err, tailLines(tail, 40)))
			}
			attempts++
			if newPorts {
				if err := n.allocatePorts(); err != nil {
					return Permanent(err)
				}
			}
			c.t.Logf("harness: %s could not bind its ports, starting it again (attempt %d)", n.ID, attempts+1)
			c.launch(n)
			return fmt.Errorf("%s restarted after a bind failure", n.ID)
		}
		return n.Healthy()
	})
	if err != nil {
		c.t.Fatalf("starting %s: %v", n.ID, err)
	}
}

// Size is the number of node slots (running or not).
func (c *Cluster) Size() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.nodes)
}

// Node returns node i.
func (c *Cluster) Node(i int) *Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[i]
}

// Running reports whether node i's process is running (possibly paused).
func (c *Cluster) Running(i int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.nodes[i].proc
	return p != nil && !p.exited()
}

// Live returns the indexes of nodes running and not paused.
func (c *Cluster) Live() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	var live []int
	for i, n := range c.nodes {
		if n.proc != nil && !n.proc.exited() && !n.paused {
			live = append(live, i)
		}
	}
	return live
}

func (c *Cluster) running(i int) *process {
	c.t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.nodes[i]
	if n.proc == nil || n.proc.exited() {
		c.t.Fatalf("%s is not running", n.ID)
	}
	return n.proc
}

// PID is the process id of the running node i (tests that inspect or limit the process use it).
func (c *Cluster) PID(i int) int {
	c.t.Helper()
	return c.running(i).cmd.Process.Pid
}

// Kill9 kills node i with SIGKILL and reaps it.
func (c *Cluster) Kill9(i int) {
	c.t.Helper()
	p := c.running(i)
	p.expected.Store(true)
	p.signal(syscall.SIGKILL)
	if !p.wait(ReapTimeout) {
		c.t.Fatalf("%s did not die after SIGKILL", c.Node(i).ID)
	}
	c.mu.Lock()
	c.nodes[i].paused = false
	c.mu.Unlock()
}

// Stop stops node i gracefully (SIGTERM) and waits for it; a graceful stop must exit 0.
func (c *Cluster) Stop(i int) {
	c.t.Helper()
	p := c.running(i)
	n := c.Node(i)
	c.mu.Lock()
	paused := n.paused
	n.paused = false
	c.mu.Unlock()
	if paused {
		p.signal(syscall.SIGCONT)
	}
	start := time.Now()
	p.expected.Store(true)
	p.signal(syscall.SIGTERM)
	if !p.wait(StopTimeout) {
		p.signal(syscall.SIGKILL)
		p.wait(ReapTimeout)
		c.t.Fatalf("%s did not exit within %v of SIGTERM; killed it", n.ID, StopTimeout)
	}
	if p.err != nil {
		c.t.Errorf("%s: graceful stop (SIGTERM) exited with %v, want exit status 0", n.ID, p.err)
	}
	c.t.Logf("harness: %s stopped gracefully in %v", n.ID, time.Since(start).Round(time.Millisecond))
}

// Pause stops node i with SIGSTOP; it keeps its sockets but answers nothing.
func (c *Cluster) Pause(i int) {
	c.t.Helper()
	p := c.running(i)
	if err := p.signal(syscall.SIGSTOP); err != nil {
		c.t.Fatalf("SIGSTOP %s: %v", c.Node(i).ID, err)
	}
	c.mu.Lock()
	c.nodes[i].paused = true
	c.mu.Unlock()
}

// Resume continues a paused node i with SIGCONT.
func (c *Cluster) Resume(i int) {
	c.t.Helper()
	p := c.running(i)
	if err := p.signal(syscall.SIGCONT); err != nil {
		c.t.Fatalf("SIGCONT %s: %v", c.Node(i).ID, err)
	}
	c.mu.Lock()
	c.nodes[i].paused = false
	c.mu.Unlock()
}

// ResumeAll continues every paused node.
func (c *Cluster) ResumeAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, n := range c.nodes {
		if n.paused && n.proc != nil {
			n.proc.signal(syscall.SIGCONT)
			n.paused = false
		}
	}
}

// Restart starts the stopped node i again: same id, data dir, ports and flags. It returns once the
// process answers /healthz; use WaitReady for readiness.
func (c *Cluster) Restart(i int) {
	c.t.Helper()
	n := c.Node(i)
	if c.Running(i) {
		c.t.Fatalf("Restart(%s): still running", n.ID)
	}
	c.checkCrash(n)
	c.launch(n)
	c.waitStarted(n, false)
}

// Wipe removes the stopped node i's data dir, as if its disk was replaced.
func (c *Cluster) Wipe(i int) {
	c.t.Helper()
	n := c.Node(i)
	if c.Running(i) {
		c.t.Fatalf("Wipe(%s): still running", n.ID)
	}
	if err := os.RemoveAll(n.DataDir); err != nil {
		c.t.Fatalf("wiping %s: %v", n.DataDir, err)
	}
}

// AddNode starts a new node that joins the cluster through the gossip addresses of the running
// nodes (no --bootstrap-expect: it waits to be added by the leader). It returns the node's index
// once the process answers /healthz.
func (c *Cluster) AddNode(t testing.TB, opts Options) int {
	t.Helper()
	c.mu.Lock()
	i := len(c.nodes)
	c.mu.Unlock()
	n := c.newNode(i, opts)
	for j := 0; j < i; j++ {
		if c.Running(j) {
			n.join = append(n.join, c.Node(j).GossipAddr)
		}
	}
	c.mu.Lock()
	c.nodes = append(c.nodes, n)
	c.mu.Unlock()
	c.launch(n)
	c.waitStarted(n, true)
	return i
}

// WaitReady waits until node i answers /readyz with 200.
func (c *Cluster) WaitReady(t testing.TB, i int) {
	t.Helper()
	n := c.Node(i)
	WaitFor(t, ReadyTimeout, n.ID+" ready", n.Ready)
}

// WaitAllReady waits until every live node is ready.
func (c *Cluster) WaitAllReady(t testing.TB) {
	t.Helper()
	for _, i := range c.Live() {
		c.WaitReady(t, i)
	}
}

// Leader waits until every live node names the same leader, that leader is live and says it is
// the leader, and returns its index.
func (c *Cluster) Leader(t testing.TB) int {
	t.Helper()
	var leader int
	WaitFor(t, LeaderTimeout, "agreed leader", func() error {
		var err error
		leader, err = c.agreedLeader()
		return err
	})
	return leader
}

// agreedLeader is one attempt of Leader.
func (c *Cluster) agreedLeader() (int, error) {
	live := c.Live()
	if len(live) == 0 {
		return -1, fmt.Errorf("no live nodes")
	}
	leaderID := ""
	for _, i := range live {
		n := c.Node(i)
		st, err := n.Status()
		if err != nil {
			return -1, err
		}
		if st.Leader == nil {
			return -1, fmt.Errorf("%s knows no leader (state %s, term %d)", n.ID, st.State, st.Term)
		}
		if leaderID == "" {
			leaderID = st.Leader.ID
		} else if st.Leader.ID != leaderID {
			return -1, fmt.Errorf("%s says the leader is %s, another node says %s", n.ID, st.Leader.ID, leaderID)
		}
	}
	for _, i := range live {
		if n := c.Node(i); n.ID == leaderID {
			st, err := n.Status()
			if err != nil {
				return -1, err
			}
			if st.State != "Leader" {
				return -1, fmt.Errorf("%s is named leader but is in state %s", n.ID, st.State)
			}
			return i, nil
		}
	}
	return -1, fmt.Errorf("the agreed leader %s is not a live node", leaderID)
}

// MustPut writes key=value through node i, retrying while the answer is not a success (no leader,
// timeouts, indeterminate), and returns the successful response. Only for tests where a repeated
// unconditional write is harmless.
func (c *Cluster) MustPut(t testing.TB, i int, key string, value []byte) *Response {
	t.Helper()
	var resp *Response
	WaitFor(t, LeaderTimeout, fmt.Sprintf("PUT %s via %s", key, c.Node(i).ID), func() error {
		resp = c.Node(i).Put(key, value)
		if resp.Outcome() != Applied {
			return fmt.Errorf("%v", resp)
		}
		return nil
	})
	return resp
}

func (c *Cluster) cleanup() {
	c.ResumeAll() // a stopped process still dies of SIGKILL, but let it see nothing else first
	c.mu.Lock()
	nodes := append([]*Node(nil), c.nodes...)
	c.mu.Unlock()
	for _, n := range nodes {
		if n.proc != nil {
			c.checkCrash(n)
			n.proc.expected.Store(true)
			n.proc.signal(syscall.SIGKILL)
		}
	}
	for _, n := range nodes {
		if n.proc != nil && !n.proc.wait(ReapTimeout) {
			c.t.Errorf("harness: %s (pid %d) not reaped after SIGKILL", n.ID, n.proc.cmd.Process.Pid)
		}
	}
	for _, n := range nodes {
		if data, err := os.ReadFile(n.LogPath); err == nil && bytes.Contains(data, []byte("WARNING: DATA RACE")) {
			c.t.Errorf("harness: %s's log reports a data race", n.ID)
		}
	}
	if !c.t.Failed() {
		return
	}
	dir, derr := artifactDir(c.t)
	for _, n := range nodes {
		data, err := os.ReadFile(n.LogPath)
		if err != nil {
			c.t.Logf("harness: log of %s: %v", n.ID, err)
			continue
		}
		// Per-request access lines drown everything else at debug level; the saved file has them.
		var lines []string
		for _, l := range strings.Split(strings.TrimRight(string(data), "\n"), "\n") {
			if !strings.Contains(l, `msg="http request"`) {
				lines = append(lines, l)
			}
		}
		from := max(0, len(lines)-logTailLines)
		c.t.Logf("---- %s: last %d of %d log lines (without http request lines) ----\n%s", n.ID, len(lines)-from, len(lines), strings.Join(lines[from:], "\n"))
		if derr == nil {
			os.WriteFile(filepath.Join(dir, n.ID+".log"), data, 0o644)
		}
	}
	if derr == nil {
		c.t.Logf("harness: full node logs saved in %s", dir)
	}
}

// checkCrash reports a node process that exited without the harness asking it to.
func (c *Cluster) checkCrash(n *Node) {
	c.mu.Lock()
	p := n.proc
	c.mu.Unlock()
	if p != nil && p.exited() && p.expected.CompareAndSwap(false, true) {
		c.t.Errorf("harness: %s exited on its own (%v); log:\n%s", n.ID, p.err, tailLines(lastRun(n.LogPath), 60))
	}
}

// lastRun returns the log output of the most recent start of a node.
func lastRun(path string) string {
	data, _ := os.ReadFile(path)
	if i := bytes.LastIndex(data, []byte("=== harness ")); i >= 0 {
		data = data[i:]
	}
	return string(data)
}

func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// artifactDir is a directory for a failed test's files: $RAFTKV_TEST_ARTIFACTS or test/artifacts
// in the module (git-ignored), then the test's name.
func artifactDir(t testing.TB) (string, error) {
	base := os.Getenv("RAFTKV_TEST_ARTIFACTS")
	if base == "" {
		root, err := lincheck.ModuleRoot()
		if err != nil {
			return "", err
		}
		base = filepath.Join(root, "test", "artifacts")
	}
	name := regexp.MustCompile(`[^A-Za-z0-9_.-]+`).ReplaceAllString(t.Name(), "_")
	dir := filepath.Join(base, name+"-"+time.Now().Format("20060102-150405"))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	return filepath.Abs(dir)
}

// ArtifactDir is a directory for a failed test's files (screenshots, logs): $RAFTKV_TEST_ARTIFACTS or
// test/artifacts in the module, then the test's name and the time.
func ArtifactDir(t testing.TB) (string, error) { return artifactDir(t) }
