package main

// systems.go: the three systems under test, each started fresh on loopback in its own processes, and the
// targets the workers use against each. raftkv: three `raftkv serve` processes. etcd: three members, each
// this program in member mode (etcd embedded from go.etcd.io/etcd/server/v3, default settings). ceiling:
// three bare net/http servers answering from in-memory maps, this program in ceiling mode.

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/raftkv/raftkv/bench/etcd/etcdtarget"
	"github.com/raftkv/raftkv/bench/httptarget"
	"github.com/raftkv/raftkv/bench/loadgen"
)

const (
	nodes        = 3
	readyTimeout = 90 * time.Second
)

// system is a running cluster of one of the systems under test.
type system interface {
	name() string
	processes() []*proc
	addrs() []string // the client addresses, one per node
	// targets returns the workers' target factory for a workload, and what to call when the row is done.
	targets(w workload, p loadgen.Placement) (loadgen.TargetFactory, func(), error)
	// prepare writes the key space before a read workload when loadgen's own pre-population would not
	// make it readable everywhere; it reports whether it did (the run then skips loadgen's).
	prepare(ctx context.Context, w workload, cfg loadgen.Config) (bool, error)
	stop()
}

// systemSpec names a system and how to start it.
type systemSpec struct {
	name  string
	start func(ctx context.Context, env *runEnv) (system, error)
}

// systemSpecs, in the order they run.
var systemSpecs = []systemSpec{
	{"raftkv", startRaftkv},
	{"etcd", startEtcd},
	{"ceiling", startCeiling},
}

// runEnv is what starting a system needs.
type runEnv struct {
	self   string // this executable, for member and ceiling modes
	raftkv string // the raftkv binary
	root   string // the run's temp dir; each system gets a subdirectory for data and logs
}

// freshDir returns the system's subdirectory, emptied: every round starts a fresh cluster, not the
// last round's restarted (etcd could not even form on the old member dirs with new ports).
func (env *runEnv) freshDir(system string) (string, error) {
	dir := filepath.Join(env.root, system)
	if err := os.RemoveAll(dir); err != nil {
		return "", fmt.Errorf("clearing the last round's data: %w", err)
	}
	return dir, os.MkdirAll(dir, 0o755)
}

// ---- raftkv ----

type raftkvCluster struct {
	procs []*proc
	http  []string
}

func startRaftkv(ctx context.Context, env *runEnv) (system, error) {
	c, err := startRaftkvWith(ctx, env, raftkvVariant{dir: "raftkv", scheme: "http", hc: &http.Client{Timeout: 2 * time.Second}})
	if err != nil {
		return nil, err // not a typed nil in the interface
	}
	return c, nil
}

// raftkvVariant is how one raftkv cluster differs from the plain one (tlsrows.go starts one with TLS).
type raftkvVariant struct {
	dir    string                   // the subdirectory of the run's temp dir
	args   func(id string) []string // extra `raftkv serve` flags of node id
	scheme string                   // of the API URLs
	hc     *http.Client             // for the readiness checks
}

func startRaftkvWith(ctx context.Context, env *runEnv, v raftkvVariant) (*raftkvCluster, error) {
	dir, err := env.freshDir(v.dir)
	if err != nil {
		return nil, err
	}
	c := &raftkvCluster{}
	ports, err := freePorts(3*nodes, true)
	if err != nil {
		return nil, err
	}
	var gossip []string
	for i := range nodes {
		c.http = append(c.http, loopback(ports[3*i]))
		gossip = append(gossip, loopback(ports[3*i+2]))
	}
	for i := range nodes {
		id := "node" + strconv.Itoa(i+1)
		data := filepath.Join(dir, id)
		if err := os.MkdirAll(data, 0o755); err != nil {
			return nil, err
		}
		var others []string
		for j, g := range gossip {
			if j != i {
				others = append(others, g)
			}
		}
		args := []string{"serve", "--id", id, "--data-dir", data,
			"--http-addr", c.http[i], "--raft-addr", loopback(ports[3*i+1]), "--gossip-addr", gossip[i],
			"--bootstrap-expect", strconv.Itoa(nodes), "--join", strings.Join(others, ","),
			"--log-level", "warn",
			// The idle-watch row holds 10,000 watch streams on one node, each a connection of its own.
			"--http-max-conns", "16384", "--max-watches", "16384"}
		if v.args != nil {
			args = append(args, v.args(id)...)
		}
		p, err := startProc("raftkv "+id, filepath.Join(dir, id+".log"), env.raftkv, args...)
		if err != nil {
			c.stop()
			return nil, err
		}
		c.procs = append(c.procs, p)
	}
	hc := v.hc
	defer hc.CloseIdleConnections()
	err = waitFor(ctx, "raftkv cluster", readyTimeout, c.procs, func(ctx context.Context) error {
		for _, a := range c.http {
			if err := httpOK(ctx, hc, v.scheme+"://"+a+"/readyz", nil); err != nil {
				return err
			}
		}
		var st struct {
			Leader *struct {
				ID string `json:"id"`
			} `json:"leader"`
		}
		if err := httpOK(ctx, hc, v.scheme+"://"+c.http[0]+"/v1/cluster", &st); err != nil {
			return err
		}
		if st.Leader == nil {
			return errors.New("no leader yet")
		}
		return nil
	})
	if err != nil {
		c.stop()
		return nil, err
	}
	return c, nil
}

// httpOK GETs url and wants a 200; v, when set, receives the JSON body.
func httpOK(ctx context.Context, hc *http.Client, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %d %s", url, resp.StatusCode, strings.TrimSpace(string(b)))
	}
	if v != nil {
		return json.Unmarshal(b, v)
	}
	return nil
}

func (c *raftkvCluster) name() string       { return "raftkv" }
func (c *raftkvCluster) processes() []*proc { return c.procs }
func (c *raftkvCluster) addrs() []string    { return c.http }
func (c *raftkvCluster) stop()              { stopAll(c.procs) }

func (c *raftkvCluster) targets(w workload, p loadgen.Placement) (loadgen.TargetFactory, func(), error) {
	if w.client != "" {
		return clientTargets(c.http, w, p)
	}
	if w.nethttp || w.txn {
		return nethttpTargets(c.http, w, p)
	}
	return httpTargets(c.http, w.stale, p)
}

func (c *raftkvCluster) prepare(context.Context, workload, loadgen.Config) (bool, error) {
	return false, nil
}

func httpTargets(addrs []string, stale bool, p loadgen.Placement) (loadgen.TargetFactory, func(), error) {
	hc, err := httptarget.New(httptarget.Config{Addrs: addrs, Stale: stale})
	if err != nil {
		return nil, nil, err
	}
	f, err := hc.Factory(p)
	if err != nil {
		hc.Close()
		return nil, nil, err
	}
	return f, hc.Close, nil
}

// ---- etcd ----

type etcdCluster struct {
	procs   []*proc
	clients []string
}

func startEtcd(ctx context.Context, env *runEnv) (system, error) {
	c, err := startEtcdWith(ctx, env, etcdVariant{dir: "etcd", scheme: "http"})
	if err != nil {
		return nil, err // not a typed nil in the interface
	}
	return c, nil
}

// etcdVariant is how one etcd cluster differs from the plain one (tlsrows.go starts one with TLS).
type etcdVariant struct {
	dir    string
	args   func(name string) []string // extra `benchall member` flags of member name
	scheme string                     // of the client and peer URLs
	tls    *tls.Config                // the readiness client's
}

func startEtcdWith(ctx context.Context, env *runEnv, v etcdVariant) (*etcdCluster, error) {
	dir, err := env.freshDir(v.dir)
	if err != nil {
		return nil, err
	}
	c := &etcdCluster{}
	ports, err := freePorts(2*nodes, false)
	if err != nil {
		return nil, err
	}
	var initial []string
	for i := range nodes {
		c.clients = append(c.clients, loopback(ports[2*i]))
		initial = append(initial, fmt.Sprintf("m%d=%s://%s", i+1, v.scheme, loopback(ports[2*i+1])))
	}
	for i := range nodes {
		name := "m" + strconv.Itoa(i+1)
		data := filepath.Join(dir, name)
		args := []string{"member", "--name", name, "--data-dir", data, "--client", c.clients[i], "--peer", loopback(ports[2*i+1]),
			"--initial-cluster", strings.Join(initial, ",")}
		if v.args != nil {
			args = append(args, v.args(name)...)
		}
		p, err := startProc("etcd "+name, filepath.Join(dir, name+".log"), env.self, args...)
		if err != nil {
			c.stop()
			return nil, err
		}
		c.procs = append(c.procs, p)
	}
	cl, err := etcdtarget.DialTLS(schemed(v.scheme, c.clients), v.tls)
	if err != nil {
		c.stop()
		return nil, err
	}
	defer cl.Close()
	err = waitFor(ctx, "etcd cluster", readyTimeout, c.procs, func(ctx context.Context) error {
		for i := range c.clients {
			// A linearizable read needs a leader and a quorum: the member is serving.
			if _, err := cl.Member(i).Get(ctx, "benchall-ready"); err != nil {
				return fmt.Errorf("m%d: %w", i+1, err)
			}
		}
		return nil
	})
	if err != nil {
		c.stop()
		return nil, err
	}
	return c, nil
}

// schemed returns addrs as scheme://addr URLs.
func schemed(scheme string, addrs []string) []string {
	out := make([]string, len(addrs))
	for i, a := range addrs {
		out[i] = scheme + "://" + a
	}
	return out
}

func (c *etcdCluster) name() string       { return "etcd" }
func (c *etcdCluster) processes() []*proc { return c.procs }
func (c *etcdCluster) addrs() []string    { return c.clients }
func (c *etcdCluster) stop()              { stopAll(c.procs) }

func (c *etcdCluster) targets(w workload, p loadgen.Placement) (loadgen.TargetFactory, func(), error) {
	cl, err := etcdtarget.Dial(c.clients)
	if err != nil {
		return nil, nil, err
	}
	var f loadgen.TargetFactory
	if w.txn {
		f, err = etcdTxnTargets(cl, p)
	} else {
		f, err = cl.Factory(p, w.stale)
	}
	if err != nil {
		cl.Close()
		return nil, nil, err
	}
	return f, cl.Close, nil
}

func (c *etcdCluster) prepare(context.Context, workload, loadgen.Config) (bool, error) {
	return false, nil
}

// ---- ceiling ----

type ceilingCluster struct {
	procs []*proc
	http  []string
}

func startCeiling(ctx context.Context, env *runEnv) (system, error) {
	dir, err := env.freshDir("ceiling")
	if err != nil {
		return nil, err
	}
	c := &ceilingCluster{}
	ports, err := freePorts(nodes, false)
	if err != nil {
		return nil, err
	}
	for i := range nodes {
		c.http = append(c.http, loopback(ports[i]))
		name := "ceiling" + strconv.Itoa(i+1)
		p, err := startProc(name, filepath.Join(dir, name+".log"), env.self, "ceiling", "--addr", c.http[i])
		if err != nil {
			c.stop()
			return nil, err
		}
		c.procs = append(c.procs, p)
	}
	hc := &http.Client{Timeout: 2 * time.Second}
	defer hc.CloseIdleConnections()
	err = waitFor(ctx, "ceiling servers", readyTimeout, c.procs, func(ctx context.Context) error {
		for _, a := range c.http {
			if err := httpOK(ctx, hc, "http://"+a+"/healthz", nil); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		c.stop()
		return nil, err
	}
	return c, nil
}

func (c *ceilingCluster) name() string       { return "ceiling" }
func (c *ceilingCluster) processes() []*proc { return c.procs }
func (c *ceilingCluster) addrs() []string    { return c.http }
func (c *ceilingCluster) stop()              { stopAll(c.procs) }

func (c *ceilingCluster) targets(w workload, p loadgen.Placement) (loadgen.TargetFactory, func(), error) {
	switch {
	case w.txn:
		return nil, nil, errSkip
	case w.client != "":
		return clientTargets(c.http, w, p)
	case w.nethttp:
		return nethttpTargets(c.http, w, p)
	}
	return httpTargets(c.http, w.stale, p)
}

// prepare: the ceiling servers replicate nothing, so a key written to one is unknown to the others.
// Every server is given the whole key space, so that a read finds its key whichever server it reaches.
func (c *ceilingCluster) prepare(ctx context.Context, w workload, cfg loadgen.Config) (bool, error) {
	if w.op == loadgen.OpPut {
		return false, nil
	}
	for i, a := range c.http {
		f, done, err := httpTargets([]string{a}, false, loadgen.Pin)
		if err != nil {
			return false, err
		}
		res, err := loadgen.Run(ctx, loadgen.Config{Op: loadgen.OpPut, SequentialKeys: true, Keys: cfg.Keys,
			KeyPrefix: cfg.KeyPrefix, ValueSize: cfg.ValueSize, Concurrency: 16, Duration: time.Minute, NewTarget: f})
		done()
		if err != nil {
			return false, err
		}
		if res.Errors > 0 || res.Ops != uint64(cfg.Keys) {
			return false, fmt.Errorf("writing the keys to ceiling%d: %d of %d written, errors %v", i+1, res.Ops, cfg.Keys, res.ErrorKinds)
		}
	}
	return true, nil
}
