package main

// dev.go: `raftkv dev`, a local N-node cluster in the foreground (what `make run` starts). Each node is a
// child process running `raftkv serve`; this process owns them: it prefixes their output, reports one that
// dies, and on SIGINT/SIGTERM stops them all and waits for them. It never leaves a child behind.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

const (
	devStopTimeout  = 10 * time.Second       // SIGTERM, then SIGKILL after this long
	devPollInterval = 200 * time.Millisecond // readiness polling
)

// devConfig is the dev cluster's configuration; flags fill it.
type devConfig struct {
	nodes        int
	dataDir      string
	basePort     int
	logLevel     string
	readyTimeout time.Duration
}

func (c devConfig) validate() error {
	switch {
	case c.nodes < 1:
		return errors.New("--nodes must be at least 1")
	case c.dataDir == "":
		return errors.New("--data-dir must not be empty")
	case c.basePort < 1:
		return errors.New("--base-port must be positive")
	case c.basePort+10*(c.nodes-1)+2 > 65535:
		return fmt.Errorf("--base-port %d leaves no room for %d nodes (each uses base+10*(i-1) .. +2)", c.basePort, c.nodes)
	case c.logLevel == "":
		return errors.New("--log-level must not be empty")
	case c.readyTimeout <= 0:
		return errors.New("--ready-timeout must be positive")
	}
	return nil
}

// devNode is one node of the dev cluster and the arguments of its `raftkv serve`.
type devNode struct {
	id         string
	httpAddr   string
	raftAddr   string
	gossipAddr string
	dataDir    string
	args       []string // after the executable: "serve", flags...
}

// devNodes computes the nodes: node i (1-based) is node<i>, HTTP on base+10*(i-1), Raft on +1, gossip on
// +2, all on 127.0.0.1, data in <data-dir>/node<i>; each joins the others' gossip addresses and all
// bootstrap together once N see each other.
func devNodes(cfg devConfig) ([]devNode, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	addr := func(port int) string { return "127.0.0.1:" + strconv.Itoa(port) }
	nodes := make([]devNode, cfg.nodes)
	for i := range nodes {
		p := cfg.basePort + 10*i
		nodes[i] = devNode{
			id:         "node" + strconv.Itoa(i+1),
			httpAddr:   addr(p),
			raftAddr:   addr(p + 1),
			gossipAddr: addr(p + 2),
			dataDir:    filepath.Join(cfg.dataDir, "node"+strconv.Itoa(i+1)),
		}
	}
	for i := range nodes {
		n := &nodes[i]
		var others []string
		for j, o := range nodes {
			if j != i {
				others = append(others, o.gossipAddr)
			}
		}
		n.args = []string{"serve",
			"--id", n.id,
			"--data-dir", n.dataDir,
			"--http-addr", n.httpAddr,
			"--raft-addr", n.raftAddr,
			"--gossip-addr", n.gossipAddr,
			"--bootstrap-expect", strconv.Itoa(cfg.nodes),
		}
		if len(others) > 0 {
			n.args = append(n.args, "--join", strings.Join(others, ","))
		}
		n.args = append(n.args, "--log-level", cfg.logLevel)
	}
	return nodes, nil
}

func runDev(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := newFlagSet("dev", "dev [flags]", `
Run a local cluster of --nodes nodes in the foreground, each a child "raftkv serve" process whose output
is prefixed with [node<i>]. Node i listens on 127.0.0.1: HTTP on base-port+10*(i-1), Raft on +1, gossip
on +2, and keeps its data in <data-dir>/node<i> (delete it for a fresh cluster). Ctrl-C stops every node.`)
	cfg := devConfig{}
	fs.IntVar(&cfg.nodes, "nodes", 3, "number of nodes (`N`)")
	fs.StringVar(&cfg.dataDir, "data-dir", "./data", "parent `dir`ectory of the nodes' data directories")
	fs.IntVar(&cfg.basePort, "base-port", 7000, "HTTP `port` of node1; node i uses base-port+10*(i-1) .. +2")
	fs.StringVar(&cfg.logLevel, "log-level", "info", "the nodes' log `level` (debug, info, warn, error)")
	fs.DurationVar(&cfg.readyTimeout, "ready-timeout", time.Minute, "how long to wait for every node to be ready before warning")
	pos, code, ok := parseArgs(fs, args, stdout, stderr)
	if !ok {
		return code
	}
	if len(pos) != 0 {
		return usageError(fs, stderr, "dev takes no arguments")
	}
	nodes, err := devNodes(cfg)
	if err != nil {
		return usageError(fs, stderr, "%v", err)
	}
	exe, err := os.Executable()
	if err != nil {
		return fail(stderr, fmt.Errorf("dev: finding this executable: %w", err))
	}
	// One lock for both streams: lines from the nodes and from here never interleave mid-line.
	var mu sync.Mutex
	d := &devCluster{
		exe:    exe,
		nodes:  nodes,
		cfg:    cfg,
		stdout: &lockedWriter{mu: &mu, w: stdout},
		stderr: &lockedWriter{mu: &mu, w: stderr},
		mu:     &mu,
		rawOut: stdout,
		rawErr: stderr,
	}
	return d.run(ctx)
}

// devCluster runs the nodes' processes.
type devCluster struct {
	exe            string
	nodes          []devNode
	cfg            devConfig
	stdout, stderr io.Writer   // locked: for this process's own lines
	mu             *sync.Mutex // the lock of stdout and stderr, shared with the prefix writers
	rawOut, rawErr io.Writer
}

type devExit struct {
	i   int
	err error
}

func (d *devCluster) run(ctx context.Context) int {
	d.printIntro()
	for _, n := range d.nodes {
		if err := os.MkdirAll(n.dataDir, 0o755); err != nil {
			return fail(d.stderr, fmt.Errorf("dev: %w", err))
		}
	}

	exits := make(chan devExit, len(d.nodes)) // buffered: a waiter never blocks
	procs := make([]*exec.Cmd, 0, len(d.nodes))
	exited := make([]bool, len(d.nodes))
	for i, n := range d.nodes {
		cmd, err := d.start(i, n, exits)
		if err != nil {
			fmt.Fprintf(d.stderr, "raftkv: dev: starting %s: %v\n", n.id, err)
			d.stop(procs, exited, exits)
			return exitUnavailable
		}
		procs = append(procs, cmd)
	}

	readyCtx, cancelReady := context.WithTimeout(ctx, d.cfg.readyTimeout)
	defer cancelReady()
	ready := make(chan error, 1)
	go func() { ready <- d.waitReady(readyCtx) }()
	defer func() {
		cancelReady()
		if ready != nil {
			<-ready
		}
	}()

	live := len(procs)
	for {
		select {
		case <-ctx.Done():
			fmt.Fprintf(d.stdout, "raftkv dev: stopping %d nodes\n", live)
			d.stop(procs, exited, exits)
			return exitOK
		case e := <-exits:
			exited[e.i] = true
			live--
			fmt.Fprintf(d.stderr, "raftkv: dev: %s exited unexpectedly: %v; %d still running\n",
				d.nodes[e.i].id, exitDesc(e.err), live)
			if live == 0 {
				fmt.Fprintf(d.stderr, "raftkv: dev: every node has exited\n")
				return exitUnavailable
			}
		case err := <-ready:
			ready = nil
			if err != nil && ctx.Err() == nil {
				fmt.Fprintf(d.stderr, "raftkv: dev: cluster not ready after %s: %v (still running; see the nodes' logs)\n",
					d.cfg.readyTimeout, err)
			}
		}
	}
}

// start launches node i. Its output goes through prefix writers; a goroutine waits for it and reports
// the exit on exits.
func (d *devCluster) start(i int, n devNode, exits chan<- devExit) (*exec.Cmd, error) {
	out := &prefixWriter{mu: d.mu, w: d.rawOut, prefix: "[" + n.id + "] "}
	errw := &prefixWriter{mu: d.mu, w: d.rawErr, prefix: "[" + n.id + "] "}
	cmd := exec.Command(d.exe, n.args...)
	cmd.Stdout, cmd.Stderr = out, errw
	cmd.SysProcAttr = childSysProcAttr()
	cmd.WaitDelay = 2 * time.Second // don't hang on a grandchild holding the output pipes
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		err := cmd.Wait()
		out.flush()
		errw.flush()
		exits <- devExit{i, err}
	}()
	return cmd, nil
}

// stop sends SIGTERM to every running child, waits for them, and kills those still running after
// devStopTimeout.
func (d *devCluster) stop(procs []*exec.Cmd, exited []bool, exits <-chan devExit) {
	live := 0
	for i, p := range procs {
		if !exited[i] {
			live++
			if err := p.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
				fmt.Fprintf(d.stderr, "raftkv: dev: signalling %s: %v\n", d.nodes[i].id, err)
			}
		}
	}
	kill := time.NewTimer(devStopTimeout)
	defer kill.Stop()
	for live > 0 {
		select {
		case e := <-exits:
			exited[e.i] = true
			live--
			fmt.Fprintf(d.stdout, "raftkv dev: %s stopped (%s)\n", d.nodes[e.i].id, exitDesc(e.err))
		case <-kill.C:
			for i, p := range procs {
				if !exited[i] {
					fmt.Fprintf(d.stderr, "raftkv: dev: %s did not stop within %s; killing it\n", d.nodes[i].id, devStopTimeout)
					_ = p.Process.Kill()
				}
			}
		}
	}
}

func exitDesc(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

// waitReady polls every node's /readyz until all answer 200, then reports the leader.
func (d *devCluster) waitReady(ctx context.Context) error {
	clients := make([]*client, len(d.nodes))
	for i, n := range d.nodes {
		c, err := newClient(clientConfig{addrs: []string{n.httpAddr}, timeout: time.Second})
		if err != nil {
			return err
		}
		defer c.close()
		clients[i] = c
	}
	ready := make([]bool, len(d.nodes))
	tick := time.NewTicker(devPollInterval)
	defer tick.Stop()
	var lastErr error
	for {
		all := true
		for i, c := range clients {
			if ready[i] {
				continue
			}
			pctx, cancel := context.WithTimeout(ctx, time.Second)
			err := c.ready(pctx)
			cancel()
			if err != nil {
				all = false
				lastErr = fmt.Errorf("%s: %w", d.nodes[i].id, err)
				continue
			}
			ready[i] = true
		}
		if all {
			st, _, err := clients[0].status(ctx)
			if err == nil && st.Leader != nil {
				fmt.Fprintf(d.stdout, "raftkv dev: cluster ready: leader %s (http %s)\n", st.Leader.ID, st.Leader.HTTPAddr)
				return nil
			}
			lastErr = fmt.Errorf("no leader known yet (%v)", err)
		}
		select {
		case <-ctx.Done():
			return lastErr
		case <-tick.C:
		}
	}
}

func (d *devCluster) printIntro() {
	var b strings.Builder
	fmt.Fprintf(&b, "raftkv dev: starting %d nodes, data in %s\n", len(d.nodes), d.cfg.dataDir)
	var https []string
	for _, n := range d.nodes {
		fmt.Fprintf(&b, "  %-6s http %s  raft %s  gossip %s  data %s\n", n.id, n.httpAddr, n.raftAddr, n.gossipAddr, n.dataDir)
		https = append(https, n.httpAddr)
	}
	first, last := d.nodes[0].httpAddr, d.nodes[len(d.nodes)-1].httpAddr
	all := strings.Join(https, ",")
	fmt.Fprintf(&b, "\nTry, in another terminal:\n")
	fmt.Fprintf(&b, "  curl -X PUT --data-binary world http://%s/v1/kv/hello\n", first)
	fmt.Fprintf(&b, "  curl http://%s/v1/kv/hello\n", last)
	fmt.Fprintf(&b, "  raftkv put hello world --addr %s\n", all)
	fmt.Fprintf(&b, "  raftkv get hello --addr %s\n", last)
	fmt.Fprintf(&b, "  raftkv cluster status --addr %s\n", first)
	fmt.Fprintf(&b, "  export RAFTKV_ADDR=%s   # then --addr can be left out\n\n", all)
	fmt.Fprint(d.stdout, b.String())
}

// lockedWriter serializes writes to w under mu.
type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// maxPartialLine bounds the bytes held for a line without its newline yet.
const maxPartialLine = 64 << 10

// prefixWriter writes each complete line to w with prefix, under mu; a partial line waits for its end
// (or flush). Write never fails: a child must not die because our terminal went away.
type prefixWriter struct {
	mu     *sync.Mutex
	w      io.Writer
	prefix string
	buf    []byte // partial line
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := len(b)
	for {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			break
		}
		p.emit(append(p.buf, b[:i+1]...))
		p.buf = p.buf[:0]
		b = b[i+1:]
	}
	p.buf = append(p.buf, b...)
	if len(p.buf) >= maxPartialLine {
		p.emit(append(p.buf, '\n'))
		p.buf = p.buf[:0]
	}
	return n, nil
}

// flush writes a final partial line, newline-terminated.
func (p *prefixWriter) flush() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.buf) > 0 {
		p.emit(append(p.buf, '\n'))
		p.buf = p.buf[:0]
	}
}

func (p *prefixWriter) emit(line []byte) {
	out := make([]byte, 0, len(p.prefix)+len(line))
	out = append(append(out, p.prefix...), line...)
	_, _ = p.w.Write(out)
}
