package main

// tlsrows.go: issue 14's rows. put c=128 and linearizable get c=128 with TLS on both sides: a raftkv
// cluster with the API over TLS requiring client certificates and the node port over mutual TLS, and an
// etcd cluster with client TLS (client-cert auth) and peer TLS, all from one CA made by `raftkv tls`
// (node certificates are ECDSA P-256 with 127.0.0.1 in their IP SANs and both server and client
// usage, which etcd accepts as they are). raftkv is driven by Go's net/http with a client certificate,
// etcd by clientv3 with the same. Each system's TLS cluster starts after its plain one has stopped
// (every round), and writeTLSComparisons sets the ratios to etcd beside those of the plain net/http
// rows of the same run.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/raftkv/raftkv/bench/etcd/etcdtarget"
	"github.com/raftkv/raftkv/bench/loadgen"
)

var tlsWorkloads = []workload{
	{label: "put (TLS, net/http client)", op: loadgen.OpPut, concurrency: 128, nethttp: true, tls: true},
	{label: "get linearizable (TLS, net/http client)", op: loadgen.OpGet, concurrency: 128, nethttp: true, tls: true},
}

// tlsPairs: each TLS row and the plain row it is compared with.
var tlsPairs = [][2]string{
	{"put (TLS, net/http client)", "put (net/http client)"},
	{"get linearizable (TLS, net/http client)", "get linearizable (net/http client)"},
}

func init() { workloads = append(workloads, tlsWorkloads...) }

// tlsFiles are the run's certificates, made once per run by the raftkv binary.
type tlsFiles struct {
	dir    string
	client *tls.Config // the load generator's: trusts the CA, presents the "bench" client certificate
}

func (t *tlsFiles) ca() string              { return filepath.Join(t.dir, "ca.pem") }
func (t *tlsFiles) cert(name string) string { return filepath.Join(t.dir, name+".pem") }
func (t *tlsFiles) key(name string) string  { return filepath.Join(t.dir, name+"-key.pem") }

// makeTLSFiles runs `raftkv tls ca create` and `raftkv tls cert create` for node1..3 (raftkv's nodes;
// etcd's members m1..m3 use the same three) and for the client "bench", in dir (reused if made).
func makeTLSFiles(env *runEnv) (*tlsFiles, error) {
	t := &tlsFiles{dir: filepath.Join(env.root, "tls")}
	if _, err := os.Stat(t.cert("bench")); err != nil {
		if err := os.MkdirAll(t.dir, 0o700); err != nil {
			return nil, err
		}
		cmds := [][]string{{"tls", "ca", "create", "--dir", t.dir}}
		for i := 1; i <= nodes; i++ {
			cmds = append(cmds, []string{"tls", "cert", "create", "--node", fmt.Sprintf("node%d", i), "--ip", "127.0.0.1",
				"--ca", t.ca(), "--ca-key", filepath.Join(t.dir, "ca-key.pem"), "--dir", t.dir})
		}
		cmds = append(cmds, []string{"tls", "cert", "create", "--client", "bench",
			"--ca", t.ca(), "--ca-key", filepath.Join(t.dir, "ca-key.pem"), "--dir", t.dir})
		for _, args := range cmds {
			if out, err := exec.Command(env.raftkv, args...).CombinedOutput(); err != nil {
				return nil, fmt.Errorf("raftkv %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
			}
		}
	}
	pair, err := tls.LoadX509KeyPair(t.cert("bench"), t.key("bench"))
	if err != nil {
		return nil, err
	}
	caPEM, err := os.ReadFile(t.ca())
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("no certificate in " + t.ca())
	}
	t.client = &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
	return t, nil
}

// tlsRowsWanted reports whether --rows selects any TLS row.
func tlsRowsWanted(f compareFlags) bool {
	for _, w := range tlsWorkloads {
		if f.rows == nil || f.rows.MatchString(w.label) {
			return true
		}
	}
	return false
}

// runTLSSystem starts the TLS variant of system name (raftkv or etcd; the ceiling has none), runs the TLS
// rows against it and stops it.
func runTLSSystem(ctx context.Context, env *runEnv, name string, f compareFlags, placement loadgen.Placement, rep *report) error {
	if (name != "raftkv" && name != "etcd") || !tlsRowsWanted(f) || ctx.Err() != nil {
		return nil
	}
	tf, err := makeTLSFiles(env)
	if err != nil {
		return fmt.Errorf("certificates: %w", err)
	}
	fmt.Printf("\n== %s with TLS: starting %d nodes\n", name, nodes)
	began := time.Now()
	var sys system
	if name == "raftkv" {
		sys, err = startRaftkvTLS(ctx, env, tf)
	} else {
		sys, err = startEtcdTLS(ctx, env, tf)
	}
	if err != nil {
		return fmt.Errorf("starting with TLS: %w", err)
	}
	defer func() {
		fmt.Printf("== %s with TLS: stopping\n", name)
		sys.stop()
	}()
	fmt.Printf("== %s with TLS: ready in %s at %s\n", name, time.Since(began).Round(10*time.Millisecond), strings.Join(sys.addrs(), ", "))
	for i, w := range workloads {
		if !w.tls || (f.rows != nil && !f.rows.MatchString(w.label)) || ctx.Err() != nil {
			continue
		}
		for _, p := range sys.processes() {
			if p.exited() {
				return p.failure()
			}
		}
		row, err := runRow(ctx, sys, w, f, placement)
		if err == nil && row.res.Interrupted {
			return nil
		}
		if err != nil {
			fmt.Printf("   %-20s c=%-4d  failed: %v\n", w.label, w.concurrency, err)
			rep.add(i, name, &sysResult{Error: err.Error()})
			continue
		}
		fmt.Printf("   %-20s c=%-4d %8.0f ops/s  p50 %-7s p99 %-7s errors %d\n", w.label, w.concurrency,
			row.res.Throughput, loadgen.FormatDuration(row.res.Latency.P50), loadgen.FormatDuration(row.res.Latency.P99), row.res.Errors)
		rep.add(i, name, row)
	}
	return nil
}

// tlsRaftkvCluster is a raftkv cluster with API TLS (client certificates required) and peer mTLS.
type tlsRaftkvCluster struct {
	*raftkvCluster
	client *tls.Config
}

func startRaftkvTLS(ctx context.Context, env *runEnv, tf *tlsFiles) (*tlsRaftkvCluster, error) {
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: tf.client}}
	c, err := startRaftkvWith(ctx, env, raftkvVariant{dir: "raftkv-tls", scheme: "https", hc: hc, args: func(id string) []string {
		return []string{
			"--tls-cert-file", tf.cert(id), "--tls-key-file", tf.key(id), "--tls-client-ca-file", tf.ca(),
			"--peer-tls-cert-file", tf.cert(id), "--peer-tls-key-file", tf.key(id), "--peer-tls-ca-file", tf.ca(),
		}
	}})
	if err != nil {
		return nil, err
	}
	return &tlsRaftkvCluster{raftkvCluster: c, client: tf.client}, nil
}

// targets: Go's net/http client as a user sets it up for TLS (newHTTPClient's pool, the CA and a client
// certificate).
func (c *tlsRaftkvCluster) targets(w workload, p loadgen.Placement) (loadgen.TargetFactory, func(), error) {
	hc := newHTTPClient(2 * w.concurrency)
	hc.Transport.(*http.Transport).TLSClientConfig = c.client.Clone()
	f, err := loadgen.Place(p, len(c.http), func(i int) (loadgen.Target, error) {
		return &nethttpTarget{hc: hc, base: "https://" + c.http[i]}, nil
	})
	if err != nil {
		return nil, nil, err
	}
	return f, hc.CloseIdleConnections, nil
}

// tlsEtcdCluster is an etcd cluster with client TLS (client-cert auth) and peer TLS.
type tlsEtcdCluster struct {
	*etcdCluster
	client *tls.Config
}

func startEtcdTLS(ctx context.Context, env *runEnv, tf *tlsFiles) (*tlsEtcdCluster, error) {
	c, err := startEtcdWith(ctx, env, etcdVariant{dir: "etcd-tls", scheme: "https", tls: tf.client, args: func(name string) []string {
		node := "node" + strings.TrimPrefix(name, "m") // m1 uses node1's certificate
		return []string{"--cert", tf.cert(node), "--key", tf.key(node), "--ca", tf.ca()}
	}})
	if err != nil {
		return nil, err
	}
	return &tlsEtcdCluster{etcdCluster: c, client: tf.client}, nil
}

func (c *tlsEtcdCluster) targets(w workload, p loadgen.Placement) (loadgen.TargetFactory, func(), error) {
	cl, err := etcdtarget.DialTLS(schemed("https", c.clients), c.client.Clone())
	if err != nil {
		return nil, nil, err
	}
	f, err := cl.Factory(p, w.stale)
	if err != nil {
		cl.Close()
		return nil, nil, err
	}
	return f, cl.Close, nil
}

// writeTLSComparisons prints, per TLS row, raftkv/etcd with TLS beside raftkv/etcd of the plain row.
func (r *report) writeTLSComparisons(w io.Writer, markdown bool) {
	byLabel := map[string]*row{}
	for _, rw := range r.Rows {
		if rw.Concurrency == 128 {
			byLabel[rw.Workload] = rw
		}
	}
	var lines []string
	for _, p := range tlsPairs {
		t, plain := byLabel[p[0]], byLabel[p[1]]
		if t == nil || plain == nil {
			continue
		}
		tr, te := t.throughput("raftkv"), t.throughput("etcd")
		if tr == 0 || te == 0 {
			continue
		}
		l := fmt.Sprintf("%s c=128: raftkv/etcd %.3f with TLS (%.0f / %.0f ops/s)", p[0], tr/te, tr, te)
		if pr, pe := plain.throughput("raftkv"), plain.throughput("etcd"); pr > 0 && pe > 0 {
			l += fmt.Sprintf(", %.3f without (%.0f / %.0f ops/s); TLS keeps %.0f%% of raftkv's and %.0f%% of etcd's plain throughput",
				pr/pe, pr, pe, 100*tr/pr, 100*te/pe)
		}
		if ja, je := t.Results["raftkv"], t.Results["etcd"]; ja != nil && je != nil && ja.ServerCPUPerOpUs != nil && je.ServerCPUPerOpUs != nil {
			l += fmt.Sprintf("; server CPU/op with TLS %.0f vs %.0f µs", *ja.ServerCPUPerOpUs, *je.ServerCPUPerOpUs)
		}
		lines = append(lines, l)
	}
	if len(lines) == 0 {
		return
	}
	if markdown {
		fmt.Fprintf(w, "\n## TLS on both sides (issue 14; raftkv API TLS + client certificates + peer mTLS, etcd client + peer TLS)\n\n")
		for _, l := range lines {
			fmt.Fprintf(w, "- %s\n", l)
		}
		return
	}
	fmt.Fprintln(w, "\nTLS on both sides (raftkv API TLS + client certs + peer mTLS; etcd client + peer TLS):")
	for _, l := range lines {
		fmt.Fprintln(w, "  "+l)
	}
}
