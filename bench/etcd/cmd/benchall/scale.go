package main

// scale.go: the scale row of `benchall memory` (make bench-memory, issue 15): with N keys (1 M × 100 B)
// in a 3-node cluster, how long an operator waits for a backup (raftkv snapshot save; etcd's
// clientv3 Maintenance.Snapshot, what `etcdctl snapshot save` runs), for a restarted member to be ready
// again, and for a new member to catch up (raftkv: a node joining until its /readyz says ready, i.e.
// caught up with the leader; etcd: a learner added with MemberAddAsLearner until MemberPromote is
// accepted, which etcd allows only once the learner is in sync). Both systems run on this machine one
// after the other, each loaded with the same keys by 128 concurrent writers.

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// scaleRow is one system's numbers.
type scaleRow struct {
	system    string
	load      time.Duration // writing the keys (context, not a claim: each system's own client)
	rss, peak uint64        // the largest member's RSS right after the load, and its peak (VmHWM)
	save      time.Duration
	saveBytes int64
	verify    time.Duration // raftkv: `raftkv snapshot inspect` of the saved file, the part of save that verifies
	restart   time.Duration // SIGTERM'd member started again → ready
	catchUp   time.Duration // new member started → caught up
}

// scaleTimeout bounds each measured step: at 1 M keys each takes seconds to a minute here.
const scaleTimeout = 10 * time.Minute

func (r scaleRow) markdown() string {
	verify := ""
	if r.verify > 0 {
		verify = ", verify alone " + r.verify.Round(10*time.Millisecond).String()
	}
	return fmt.Sprintf("| %s | %s | %s / %s | %s (%s%s) | %s | %s |\n", r.system, r.load.Round(100*time.Millisecond),
		mib(r.rss), mib(r.peak),
		r.save.Round(10*time.Millisecond), mib(uint64(r.saveBytes)), verify, r.restart.Round(10*time.Millisecond),
		r.catchUp.Round(10*time.Millisecond))
}

// largestRSS is the largest RSS among procs, and the largest peak.
func largestRSS(procs []*proc) (rss, peak uint64) {
	for _, p := range procs {
		if m, err := procMemory(p.pid()); err == nil {
			rss, peak = max(rss, m.RSS), max(peak, m.Peak)
		}
	}
	return rss, peak
}

// argValue returns the value after flag in args ("" if absent).
func argValue(args []string, flag string) string {
	for i, a := range args {
		if a == flag && i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}

// restartProc stops p (SIGTERM, as an operator would) and starts it again with the same command line.
func restartProc(p *proc) (*proc, error) {
	stopAll([]*proc{p})
	return startProc(p.name, p.logPath+".restarted", p.cmd.Path, p.cmd.Args[1:]...)
}

// scaleRaftkv measures the loaded raftkv cluster rk (its load took load). It leaves a 4th node running
// in rk.procs so the caller's stop ends it.
func scaleRaftkv(ctx context.Context, env *runEnv, rk *raftkvCluster, load time.Duration) (scaleRow, error) {
	row := scaleRow{system: "raftkv", load: load}
	row.rss, row.peak = largestRSS(rk.procs)
	hc := &http.Client{}
	defer hc.CloseIdleConnections()

	// Backup: `raftkv snapshot save` itself, from a follower, with the CLI's default bounds (--timeout
	// 15 s for the answer, --save-timeout for the whole save). It downloads, syncs and then verifies the
	// file (checksum and a full decode) before renaming it into place: all of that is in the time.
	file := filepath.Join(env.root, "raftkv-scale.snap")
	began := time.Now()
	sctx, cancel := context.WithTimeout(ctx, scaleTimeout)
	out, err := exec.CommandContext(sctx, env.raftkv, "snapshot", "save", "--addr", rk.http[1], file).CombinedOutput()
	cancel()
	if err != nil {
		return row, fmt.Errorf("raftkv snapshot save: %w: %s", err, strings.TrimSpace(string(out)))
	}
	row.save = time.Since(began)
	fmt.Printf("raftkv snapshot save: %s in %s\n", strings.TrimSpace(string(out)), row.save.Round(10*time.Millisecond))
	fi, err := os.Stat(file)
	if err != nil {
		return row, err
	}
	row.saveBytes = fi.Size()
	// How much of the save is the verification (etcdctl's save has none): the same check, alone.
	began = time.Now()
	if out, err := exec.CommandContext(ctx, env.raftkv, "snapshot", "inspect", file).CombinedOutput(); err != nil {
		return row, fmt.Errorf("raftkv snapshot inspect: %w: %s", err, strings.TrimSpace(string(out)))
	}
	row.verify = time.Since(began)
	_ = os.Remove(file)

	// Restart node3 → /readyz 200 (it has a leader, is in the configuration and caught up).
	began = time.Now()
	p, err := restartProc(rk.procs[2])
	if err != nil {
		return row, err
	}
	rk.procs[2] = p
	if err := waitReady(ctx, hc, rk.http[2], p); err != nil {
		return row, fmt.Errorf("restarted node3: %w", err)
	}
	row.restart = time.Since(began)

	// A new node joins (the leader adds it, it receives the state as a snapshot) → /readyz 200.
	ports, err := freePorts(3, true)
	if err != nil {
		return row, err
	}
	args := rk.procs[0].cmd.Args
	var gossip []string
	for _, q := range rk.procs {
		gossip = append(gossip, argValue(q.cmd.Args, "--gossip-addr"))
	}
	data := filepath.Join(env.root, "raftkv", "node4")
	if err := os.MkdirAll(data, 0o755); err != nil {
		return row, err
	}
	httpAddr := loopback(ports[0])
	began = time.Now()
	p4, err := startProc("raftkv node4", filepath.Join(env.root, "raftkv", "node4.log"), args[0], "serve",
		"--id", "node4", "--data-dir", data, "--http-addr", httpAddr, "--raft-addr", loopback(ports[1]),
		"--gossip-addr", loopback(ports[2]), "--join", strings.Join(gossip, ","), "--log-level", "warn")
	if err != nil {
		return row, err
	}
	rk.procs = append(rk.procs, p4)
	if err := waitReady(ctx, hc, httpAddr, p4); err != nil {
		return row, fmt.Errorf("new node4: %w", err)
	}
	row.catchUp = time.Since(began)
	return row, nil
}

func waitReady(ctx context.Context, hc *http.Client, addr string, p *proc) error {
	return waitFor(ctx, p.name+" ready", scaleTimeout, []*proc{p}, func(ctx context.Context) error {
		return httpOK(ctx, hc, "http://"+addr+"/readyz", nil)
	})
}

// scaleEtcd starts a fresh etcd cluster, loads keys × valueSize with concurrency writers, and measures.
func scaleEtcd(ctx context.Context, env *runEnv, keys, valueSize, concurrency int) (scaleRow, error) {
	row := scaleRow{system: "etcd"}
	sys, err := startEtcd(ctx, env)
	if err != nil {
		return row, err
	}
	ec := sys.(*etcdCluster)
	defer func() { ec.stop() }()
	// The client's own logger is off: its retry warnings (one per 100 ms while etcd refuses the learner
	// add) would bury the report; every error that matters is returned.
	cl, err := clientv3.New(clientv3.Config{Endpoints: ec.clients, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return row, err
	}
	defer cl.Close()

	// Load: the same keys and value size as raftkv's `raftkv bench --sequential-keys`.
	began := time.Now()
	value := strings.Repeat("v", valueSize)
	var next atomic.Int64
	var wg sync.WaitGroup
	var firstErr error
	var errOnce sync.Once
	for range concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(keys) || ctx.Err() != nil {
					return
				}
				pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				_, err := cl.Put(pctx, fmt.Sprintf("key-%010d", i), value)
				cancel()
				if err != nil {
					errOnce.Do(func() { firstErr = err })
					return
				}
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return row, fmt.Errorf("loading: %w", firstErr)
	}
	row.load = time.Since(began)
	fmt.Printf("etcd: wrote %d keys in %s\n", keys, row.load.Round(time.Second))
	row.rss, row.peak = largestRSS(ec.procs)

	// Backup: Maintenance.Snapshot streams the db from one member (what etcdctl snapshot save does).
	file := filepath.Join(env.root, "etcd-scale.db")
	began = time.Now()
	sctx, cancel := context.WithTimeout(ctx, scaleTimeout)
	rc, err := cl.Maintenance.Snapshot(sctx)
	if err != nil {
		cancel()
		return row, fmt.Errorf("snapshot: %w", err)
	}
	f, err := os.Create(file)
	if err != nil {
		cancel()
		return row, err
	}
	n, err := io.Copy(f, rc)
	if err == nil {
		err = f.Sync()
	}
	f.Close()
	rc.Close()
	cancel()
	if err != nil {
		return row, fmt.Errorf("snapshot: %w", err)
	}
	row.save, row.saveBytes = time.Since(began), n
	_ = os.Remove(file)

	// Restart m3 → a linearizable read through it succeeds (it has a leader and has applied up to
	// the read index: caught up).
	m3, err := clientv3.New(clientv3.Config{Endpoints: []string{ec.clients[2]}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return row, err
	}
	defer m3.Close()
	began = time.Now()
	p, err := restartProc(ec.procs[2])
	if err != nil {
		return row, err
	}
	ec.procs[2] = p
	err = waitFor(ctx, "etcd m3 ready", scaleTimeout, []*proc{p}, func(ctx context.Context) error {
		_, err := m3.Get(ctx, "benchall-ready")
		return err
	})
	if err != nil {
		return row, fmt.Errorf("restarted m3: %w", err)
	}
	row.restart = time.Since(began)

	// A learner: MemberAddAsLearner, start it, promote it as soon as etcd allows (in sync).
	ports, err := freePorts(2, false)
	if err != nil {
		return row, err
	}
	peer, client := loopback(ports[1]), loopback(ports[0])
	learnerID, err := addLearnerOnce(ctx, cl, ec.procs, "http://"+peer)
	if err != nil {
		return row, fmt.Errorf("adding a learner: %w", err)
	}
	initial := argValue(ec.procs[0].cmd.Args, "--initial-cluster") + ",m4=http://" + peer
	began = time.Now()
	p4, err := startProc("etcd m4", filepath.Join(env.root, "etcd", "m4.log"), env.self, "member",
		"--name", "m4", "--data-dir", filepath.Join(env.root, "etcd", "m4"), "--client", client, "--peer", peer,
		"--initial-cluster", initial, "--existing")
	if err != nil {
		return row, err
	}
	ec.procs = append(ec.procs, p4)
	err = waitFor(ctx, "etcd learner m4 promotable", scaleTimeout, []*proc{p4}, func(ctx context.Context) error {
		_, err := cl.MemberPromote(ctx, learnerID)
		return err
	})
	if err != nil {
		return row, fmt.Errorf("learner m4: %w", err)
	}
	row.catchUp = time.Since(began)
	return row, nil
}

// memberAPI is the part of clientv3's Cluster that addLearnerOnce uses (a fake in its test).
type memberAPI interface {
	MemberList(ctx context.Context, opts ...clientv3.OpOption) (*clientv3.MemberListResponse, error)
	MemberAddAsLearner(ctx context.Context, peerAddrs []string) (*clientv3.MemberAddResponse, error)
}

// addLearnerOnce adds a learner with peerURL and returns its id. etcd refuses membership changes
// ("unhealthy cluster") until every member has been connected for a while, and m3 was just restarted,
// so it retries (not part of the measured time). An add whose answer was lost (timed out) may still have
// been applied, and a second add of the same URL would fail or leave a stray member: before every
// attempt the member list is read, and a member already holding peerURL is the one we added.
func addLearnerOnce(ctx context.Context, cl memberAPI, procs []*proc, peerURL string) (uint64, error) {
	var id uint64
	err := waitFor(ctx, "etcd accepting a learner", time.Minute, procs, func(ctx context.Context) error {
		list, err := cl.MemberList(ctx)
		if err != nil {
			return fmt.Errorf("member list: %w", err)
		}
		for _, m := range list.Members {
			for _, u := range m.PeerURLs {
				if u == peerURL {
					id = m.ID
					return nil
				}
			}
		}
		added, err := cl.MemberAddAsLearner(ctx, []string{peerURL})
		if err != nil {
			return err
		}
		id = added.Member.ID
		return nil
	})
	return id, err
}

// scaleReport is the Markdown of the scale rows.
func scaleReport(rows []scaleRow, keys, valueSize int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "\n## Scale: %d keys × %d B\n\n", keys, valueSize)
	b.WriteString("Same machine, one system after the other. Backup: `raftkv snapshot save` from a follower (download, " +
		"sync, then verify checksum and decode the whole state before renaming into place), etcd " +
		"`Maintenance.Snapshot` (what `etcdctl snapshot save` runs: download and sync, no decode). Restart: a member stopped with SIGTERM and started again, until it serves (raftkv " +
		"`/readyz` 200: leader known, in the configuration, caught up; etcd: a linearizable read through it). " +
		"New member: started until caught up (raftkv: joins, receives the state, `/readyz` 200; etcd: " +
		"`MemberAddAsLearner` before the clock starts, then `MemberPromote` accepted, which etcd allows once the " +
		"learner's match index is at least 90 % of the leader's: a laxer bar than raftkv's `/readyz`).\n\n")
	b.WriteString("| system | load (context) | largest member RSS / peak after the load | backup (size) | restart → ready | new member → caught up |\n|---|---:|---:|---:|---:|---:|\n")
	for _, r := range rows {
		b.WriteString(r.markdown())
	}
	if len(rows) == 2 && rows[1].save > 0 && rows[1].restart > 0 && rows[1].catchUp > 0 {
		fmt.Fprintf(&b, "| raftkv / etcd | | %.2f× | %.2f× | %.2f× | %.2f× |\n",
			float64(rows[0].rss)/float64(max(rows[1].rss, 1)), rows[0].save.Seconds()/rows[1].save.Seconds(), rows[0].restart.Seconds()/rows[1].restart.Seconds(),
			rows[0].catchUp.Seconds()/rows[1].catchUp.Seconds())
	}
	return b.String()
}
