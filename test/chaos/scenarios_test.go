package chaos

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/raftkv/raftkv/test/harness"
	"github.com/raftkv/raftkv/test/lincheck"
)

// scenario is one nemesis. cycle injects one fault and heals it (calling s.healed() at the moment the
// last fault is lifted); the runner runs one cycle in the short pass and repeats cycles for
// RAFTKV_CHAOS_DURATION in long mode, waiting for the cluster to recover between them.
type scenario struct {
	name  string
	nodes int
	// bound is how long the cluster may take to recover after the final heal.
	bound   time.Duration
	needNet bool
	// shortCycles is how many cycles the short pass runs (default 1).
	shortCycles int
	// overlap: do not wait for recovery between cycles (faults hit a cluster still recovering).
	overlap bool
	// acl: the cluster runs with --acl-enabled (every client with the management token), to show that
	// forwarding, membership and recovery keep working with authorization on.
	acl bool
	// secure: API TLS, peer mutual TLS and gossip encryption on every node (issue 14), every client over
	// TLS: forwarding, membership and recovery must work the same with them.
	secure bool
	// disks: every node keeps its data dir on a small filesystem of its own, for disk faults (disk.go).
	disks bool
	// nodeArgs: extra `raftkv serve` flags for this scenario's nodes (after the run's; a later flag wins).
	nodeArgs []string
	cycle    func(s *run, i int) error
}

// Recovery bounds. defaultBound is for Healthy (leader, readiness, configuration). gossipBound is for
// every member to be seen alive in gossip again, after Healthy: gossip may lag Raft after a node was
// declared dead (cut off, paused, killed) until the nodes' reconnect loops or a push/pull sync meet.
const (
	defaultBound = 45 * time.Second
	gossipBound  = 90 * time.Second
)

var scenarios = []scenario{
	{name: "kill-random", nodes: 3, cycle: func(s *run, i int) error { return s.killRestart(s.randomUp()) }},
	{name: "kill-leader", nodes: 3, cycle: func(s *run, i int) error { return s.killRestart(s.leader()) }},
	{name: "pause-random", nodes: 3, cycle: func(s *run, i int) error { return s.pause(s.randomUp()) }},
	{name: "pause-leader", nodes: 3, cycle: func(s *run, i int) error { return s.pause(s.leader()) }},
	{name: "partition-leader", nodes: 3, needNet: true, cycle: func(s *run, i int) error { return s.isolateLeader() }},
	{name: "partition-majority", nodes: 5, needNet: true, cycle: func(s *run, i int) error { return s.splitMajority(i) }},
	{name: "partition-bridge", nodes: 5, needNet: true, cycle: func(s *run, i int) error { return s.bridge() }},
	{name: "partition-asymmetric", nodes: 3, needNet: true, cycle: func(s *run, i int) error { return s.asymmetric(i) }},
	{name: "slow-one", nodes: 3, needNet: true, cycle: func(s *run, i int) error { return s.slow(i, false) }},
	{name: "slow-all", nodes: 3, needNet: true, cycle: func(s *run, i int) error { return s.slow(i, true) }},
	{name: "member-add", nodes: 3, bound: 60 * time.Second, cycle: func(s *run, i int) error { return s.memberAdd(i) }},
	{name: "member-remove", nodes: 3, bound: 60 * time.Second, cycle: func(s *run, i int) error { return s.memberRemove(i) }},
	{name: "member-replace-wiped", nodes: 3, bound: 60 * time.Second, cycle: func(s *run, i int) error { return s.replaceWiped() }},
	// Issue 10: the wiped member returns while another voter is down, next to a member that lags.
	{name: "member-replace-wiped-second-fault", nodes: 3, bound: 60 * time.Second, cycle: func(s *run, i int) error { return s.replaceWipedSecondFault() }},
	// The moved node must be reachable at its new address (Raft dials what gossip advertises) within
	// the default bound, like any restarted node.
	{name: "restart-new-ip", nodes: 3, cycle: func(s *run, i int) error { return s.newIP(i) }},
	// Every member stopped and started again on a new address (what `docker-compose down` then `up`
	// does when the network comes back with another subnet): same ids and volumes.
	{name: "restart-all-new-ip", nodes: 3, cycle: func(s *run, i int) error { return s.allNewIP() }},
	{name: "rolling-restart", nodes: 3, bound: 60 * time.Second, cycle: func(s *run, i int) error { return s.rollingRestart() }},
	{name: "full-crash", nodes: 3, bound: 60 * time.Second, cycle: func(s *run, i int) error { return s.fullCrash() }},
	// Issue 11: resource floods and shortages. The node keeps serving through each, or within the
	// bound after it ends.
	{name: "flood-slow-clients", nodes: 3, cycle: func(s *run, i int) error { return s.slowClients(s.randomUp()) }},
	{name: "flood-stalled-frames", nodes: 3, cycle: func(s *run, i int) error { return s.stalledFrames(s.randomUp()) }},
	{name: "fd-shortage-leader", nodes: 3, cycle: func(s *run, i int) error { return s.fdShortage(s.leader(), true) }},
	{name: "fd-shortage-follower", nodes: 3, cycle: func(s *run, i int) error { return s.fdShortage(s.others(s.leader())[0], false) }},
	// Issue 14: kill, partition and membership faults with TLS, peer mTLS, gossip encryption and ACLs on; a
	// node back on a new IP must prove its id with its certificate before it is trusted again.
	{name: "kill-leader-tls", nodes: 3, secure: true, acl: true, cycle: func(s *run, i int) error { return s.killRestart(s.leader()) }},
	{name: "partition-leader-tls", nodes: 3, secure: true, acl: true, needNet: true, cycle: func(s *run, i int) error { return s.isolateLeader() }},
	{name: "member-replace-wiped-tls", nodes: 3, secure: true, acl: true, bound: 60 * time.Second, cycle: func(s *run, i int) error { return s.replaceWiped() }},
	{name: "restart-new-ip-tls", nodes: 3, secure: true, acl: true, cycle: func(s *run, i int) error { return s.newIP(i) }},
	{name: "mixed", nodes: 5, needNet: true, shortCycles: 3, overlap: true, cycle: func(s *run, i int) error { return s.mixed() }},
	// Issue 14: kill, partition and membership faults with ACLs on (RAFTKV_CHAOS_ACL=1 runs every
	// scenario so).
	{name: "kill-leader-acl", nodes: 3, acl: true, cycle: func(s *run, i int) error { return s.killRestart(s.leader()) }},
	{name: "partition-leader-acl", nodes: 3, acl: true, needNet: true, cycle: func(s *run, i int) error { return s.isolateLeader() }},
	{name: "member-replace-wiped-acl", nodes: 3, acl: true, bound: 60 * time.Second, cycle: func(s *run, i int) error { return s.replaceWiped() }},
}

// aclAll (RAFTKV_CHAOS_ACL=1) runs every scenario with ACLs on.
var aclAll = os.Getenv("RAFTKV_CHAOS_ACL") == "1"

// timing is how long faults last and how long the workload runs around them.
type timing struct {
	warmup, after time.Duration // workload before the first fault, and after recovery
	down          [2]time.Duration
	// replaceDown: how long a wiped member stays away. Long enough for the leader to snapshot and
	// compact past it (--snapshot-interval 5s), so that its replication to the old incarnation turns
	// into a snapshot send, possibly still in flight when the new container appears at that address.
	replaceDown  [2]time.Duration
	pause        [2]time.Duration
	partition    [2]time.Duration
	slow         [2]time.Duration
	gap          time.Duration // between cycles (long mode)
	duration     time.Duration // of the fault phase (long mode)
	checkTimeout time.Duration // porcupine's budget
}

var shortTiming = timing{
	warmup: 2 * time.Second, after: 2 * time.Second,
	down:        [2]time.Duration{3 * time.Second, 3 * time.Second},
	replaceDown: [2]time.Duration{9 * time.Second, 9 * time.Second},
	pause:       [2]time.Duration{4 * time.Second, 4 * time.Second}, // > the 1 s heartbeat/election timeouts
	partition:   [2]time.Duration{6 * time.Second, 6 * time.Second},
	slow:        [2]time.Duration{8 * time.Second, 8 * time.Second},
	gap:         2 * time.Second, checkTimeout: 2 * time.Minute,
}

var longTiming = timing{
	warmup: 5 * time.Second, after: 5 * time.Second,
	down:        [2]time.Duration{2 * time.Second, 15 * time.Second},
	replaceDown: [2]time.Duration{2 * time.Second, 20 * time.Second},
	pause:       [2]time.Duration{2 * time.Second, 15 * time.Second},
	partition:   [2]time.Duration{5 * time.Second, 30 * time.Second},
	slow:        [2]time.Duration{10 * time.Second, 40 * time.Second},
	gap:         5 * time.Second, duration: 3 * time.Minute, checkTimeout: 10 * time.Minute,
}

func TestChaos(t *testing.T) {
	requireEnv(t, false)
	parallel := 3
	if long {
		parallel = 1
	}
	if v, err := strconv.Atoi(os.Getenv("RAFTKV_CHAOS_PARALLEL")); err == nil && v > 0 {
		parallel = v
	}
	// t.Run from several goroutines (allowed) rather than t.Parallel: -parallel defaults to GOMAXPROCS,
	// and the scenarios mostly wait on containers, not on this process's CPU.
	sem := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	for _, sc := range scenarios {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			t.Run(sc.name, func(t *testing.T) { runScenario(t, sc) })
		}()
	}
	wg.Wait()
}

// run is one scenario being run.
type run struct {
	t      *testing.T
	sc     scenario
	c      *Cluster
	w      *Workload
	rng    *rand.Rand
	timing timing

	healedAt time.Time
}

func runScenario(t *testing.T, sc scenario) {
	requireEnvDisks(t, sc.needNet, sc.disks)
	if sc.bound == 0 {
		sc.bound = defaultBound
	}
	tm := shortTiming
	if long {
		tm = longTiming
		if d, err := time.ParseDuration(os.Getenv("RAFTKV_CHAOS_DURATION")); err == nil && d > 0 {
			tm.duration = d
		}
	}
	seed := rand.Uint64()
	res := &Result{Scenario: sc.name, Nodes: sc.nodes, Seed: seed, RecoveryBoundS: seconds(sc.bound), GossipBoundS: seconds(gossipBound)}
	res.RecoveryS, res.GossipS = -1, -1
	var c *Cluster
	defer func() {
		res.Pass = !t.Failed()
		if !res.Pass && len(res.Problems) == 0 {
			res.Problems = []string{"failed before the checks (see the test log)"}
		}
		fmt.Printf("chaos: %s\n", res.Line())
		if t.Failed() && c != nil {
			dir := filepath.Join(env.Artifacts, sc.name)
			if err := c.DumpLogs(dir); err != nil {
				t.Logf("saving logs: %v", err)
			} else {
				res.Artifact = dir
				t.Logf("node logs saved in %s", dir)
			}
		}
		report.Add(res)
	}()
	problem := func(format string, args ...any) {
		msg := fmt.Sprintf(format, args...)
		res.Problems = append(res.Problems, msg)
		t.Error(msg)
	}
	t.Logf("seed %d", seed)

	name := fmt.Sprintf("rkc-%s-%s", strings.ReplaceAll(env.RunID, ".", "-"), sc.name)
	c = newCluster(t, env, name, sc.nodes, clusterOpts{acl: sc.acl || aclAll, secure: sc.secure, disks: sc.disks, nodeArgs: sc.nodeArgs})
	s := &run{t: t, sc: sc, c: c, rng: rand.New(rand.NewPCG(seed, 0)), timing: tm}

	termBefore := s.term()
	wc := WorkloadConfig{Clients: 4, Keys: 3, Window: 5 * time.Second, LedgerClients: 2, LedgerWatchers: 2,
		KeyedWriters: 2, MonoReaders: 1, Seed: seed}
	if bankScenarios[sc.name] {
		wc.BankTransferers, wc.BankReaders = 2, 1
	}
	s.w = StartWorkload(c, wc)
	defer s.w.Stop()
	defer s.w.StopWatchers()
	s.sleep(tm.warmup)

	// The fault phase.
	faultStart := time.Now()
	cycles := sc.shortCycles
	if cycles == 0 {
		cycles = 1
	}
	var maxCycleRecovery time.Duration
	for i := 0; ; i++ {
		s.healedAt = time.Time{}
		if err := sc.cycle(s, i); err != nil {
			problem("cycle %d: %v", i, err)
			break
		}
		res.Cycles++
		if long && time.Since(faultStart) >= tm.duration || !long && res.Cycles >= cycles {
			break
		}
		if !sc.overlap {
			if _, err := c.WaitHealthy(sc.bound); err != nil {
				problem("cycle %d: no recovery within %v: %v", i, sc.bound, err)
				break
			}
			if !s.healedAt.IsZero() {
				rec := time.Since(s.healedAt)
				maxCycleRecovery = max(maxCycleRecovery, rec)
				c.Logf("recovered %v after the heal", rec.Round(time.Millisecond))
			}
		}
		s.sleep(tm.gap)
	}
	res.MaxCycleRecoveryS = seconds(maxCycleRecovery)

	// Heal whatever is left (a failed cycle), then wait for recovery.
	if err := s.healAll(); err != nil {
		problem("healing: %v", err)
	}
	if s.healedAt.IsZero() {
		s.healedAt = time.Now()
	}
	if _, err := c.WaitHealthy(sc.bound); err != nil {
		problem("the cluster did not recover within %v of the heal: %v", sc.bound, err)
	} else {
		rec := time.Since(s.healedAt)
		res.RecoveryS = seconds(rec)
		c.Logf("recovered %v after the heal", rec.Round(time.Millisecond))
		if _, err := c.WaitConverged(gossipBound); err != nil {
			problem("gossip did not converge within %v of the recovery: %v", gossipBound, err)
		} else {
			conv := time.Since(s.healedAt)
			res.GossipS = seconds(conv)
			c.Logf("gossip converged %v after the heal", conv.Round(time.Millisecond))
		}
	}
	s.sleep(tm.after)
	s.w.Stop()
	if after := s.term(); after >= termBefore {
		res.Elections = after - termBefore
	}
	res.DurationS = seconds(time.Since(faultStart))

	// Check 2: every acknowledged write survived.
	ledgerWait := 30 * time.Second
	if res.RecoveryS < 0 {
		ledgerWait = 0 // no leader: one attempt, for the record
	}
	ledger, err := s.w.VerifyLedger(ledgerWait)
	if err != nil {
		problem("reading the ledger back: %v", err)
	}
	res.LedgerAcked, res.LedgerIndeterminate = ledger.Acked, ledger.Indeterminate
	res.LostAcked, res.Phantoms = len(ledger.Lost), len(ledger.Phantoms)
	res.LostSamples = append(firstN(ledger.Lost, 10), firstN(ledger.Phantoms, 10)...)
	if len(ledger.Lost) > 0 {
		problem("%d of %d acknowledged ledger writes lost, e.g. %s", len(ledger.Lost), ledger.Acked, strings.Join(firstN(ledger.Lost, 5), "; "))
	}
	if len(ledger.Phantoms) > 0 {
		problem("%d ledger keys that no acknowledged or indeterminate write made, e.g. %s", len(ledger.Phantoms), strings.Join(firstN(ledger.Phantoms, 5), "; "))
	}
	t.Logf("ledger: %d acknowledged writes all present=%t; %d indeterminate, %d of them applied",
		ledger.Acked, len(ledger.Lost) == 0, ledger.Indeterminate, ledger.IndeterminateFound)

	// Check 2b: the ledger's watchers saw exactly its committed sequence (issue 12).
	if res.RecoveryS >= 0 {
		watch := s.w.VerifyWatchers(ledgerWait)
		for _, p := range firstN(watch.Problems, 5) {
			problem("watch: %s", p)
		}
		t.Logf("watch: %d watchers, %d events, %d reconnects, %d compacted answers, %d problems",
			watch.Watchers, watch.Events, watch.Reconnects, watch.Compacted, len(watch.Problems))

		// Check 2c: keyed writes exactly once, monotonic stale reads (issue 16).
		keyed := s.w.VerifyKeyed(ledgerWait)
		for _, p := range firstN(keyed.Problems, 5) {
			problem("keyed: %s", p)
		}
		t.Logf("%s", keyed)
	}

	// Check 2d: the bank's transfers (transactions) conserved the total and replay exactly (issue 12).
	if res.RecoveryS >= 0 {
		bankStart := time.Now()
		if bank := s.w.VerifyBank(ledgerWait); bank != nil {
			res.Bank = bank
			for _, p := range firstN(bank.Problems, 5) {
				problem("bank: %s", p)
			}
			t.Logf("bank: %+v, %d unresolved, %d problems; resolved and verified in %v", bank.Stats, bank.Unresolved,
				len(bank.Problems), time.Since(bankStart).Round(time.Millisecond))
		}
	}

	// Check 1: the history is linearizable.
	res.OpsOK, res.OpsFailed, res.OpsIndeterminate = s.w.ok.Load(), s.w.failed.Load(), s.w.indeterminate.Load()
	res.Reads, res.Writes, res.CASMismatches = s.w.reads.Load(), s.w.writes.Load(), s.w.mismatches.Load()
	p50, p99, pmax := s.w.Latency()
	res.LatencyP50ms, res.LatencyP99ms, res.LatencyMaxms = millis(p50), millis(p99), millis(pmax)
	history := s.w.History()
	res.HistoryOps = len(history)
	if res.Writes < 10 || res.Reads < 10 {
		problem("too few operations for a meaningful check: %d reads, %d writes", res.Reads, res.Writes)
	}
	checkStart := time.Now()
	lin := lincheck.Check(history, tm.checkTimeout)
	res.CheckS = seconds(time.Since(checkStart))
	res.IndexProblems = firstN(lin.IndexProblems, 20)
	for _, p := range firstN(lin.IndexProblems, 5) {
		problem("index check: %s", p)
	}
	switch lin.Linearizable {
	case porcupine.Ok:
		res.Linearizable = "yes"
		if err := lincheck.RejectsMutations(history, 30*time.Second, t.Logf); err != nil {
			problem("the checker is blind on this history: %v", err)
		}
	case porcupine.Illegal:
		res.Linearizable = "no"
		path, err := lincheck.WriteVisualization(t, lin.Info)
		if err != nil {
			path = "(visualization failed: " + err.Error() + ")"
		}
		problem("history of %d operations is NOT linearizable; visualization: %s", len(history), path)
	default:
		res.Linearizable = "unknown"
		problem("linearizability unknown: porcupine gave up after %v on %d operations", tm.checkTimeout, len(history))
	}
	t.Logf("history: %d operations (%d reads, %d writes, %d cas mismatches, %d indeterminate), checked in %v; latency p50 %v p99 %v max %v",
		len(history), res.Reads, res.Writes, res.CASMismatches, res.OpsIndeterminate, time.Since(checkStart).Round(time.Millisecond),
		p50.Round(time.Millisecond), p99.Round(time.Millisecond), pmax.Round(time.Millisecond))
}

// term is the current Raft term as the first running member that answers sees it (0 if none does).
func (s *run) term() uint64 {
	for _, n := range s.running() {
		if st, err := s.c.Status(n); err == nil {
			return st.Term
		}
	}
	return 0
}

func firstN(s []string, n int) []string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// sleep lets the workload run (and a fault last) for d.
func (s *run) sleep(d time.Duration) { time.Sleep(d) }

// hold lasts a fault for a duration in r (a random one in long mode).
func (s *run) hold(r [2]time.Duration) {
	d := r[0]
	if r[1] > r[0] {
		d += time.Duration(s.rng.Int64N(int64(r[1] - r[0])))
	}
	s.c.Logf("hold %v", d.Round(time.Millisecond))
	s.sleep(d)
}

// healed marks the moment the fault was lifted; recovery is measured from here.
func (s *run) healed() { s.healedAt = time.Now() }

// randomUp returns a random running member.
func (s *run) randomUp() *Node {
	up := s.running()
	return up[s.rng.IntN(len(up))]
}

func (s *run) running() []*Node {
	var out []*Node
	for _, n := range s.c.Up() {
		if n.State() == Running {
			out = append(out, n)
		}
	}
	return out
}

// leader returns the leader, or a random running member when the cluster has none it agrees on
// (a cluster still recovering from the previous fault, in the mixed scenario).
func (s *run) leader() *Node {
	l, err := s.c.Leader(20 * time.Second)
	if err != nil {
		s.c.Logf("no leader to target (%v): picking a random node", err)
		return s.randomUp()
	}
	return l
}

func (s *run) others(of ...*Node) []*Node {
	var out []*Node
	for _, n := range s.c.Up() {
		if !slices.Contains(of, n) {
			out = append(out, n)
		}
	}
	return out
}

func (s *run) shuffled() []*Node {
	up := s.c.Up()
	s.rng.Shuffle(len(up), func(i, j int) { up[i], up[j] = up[j], up[i] })
	return up
}

// healAll lifts every fault: network faults, frozen and stopped members.
func (s *run) healAll() error {
	var errs []error
	for _, n := range s.c.Members() {
		if n.disk != nil { // a disk fault left behind by a failed cycle
			_ = n.disk.thaw()
			if err := n.disk.free(); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, err)
			}
		}
		switch n.State() {
		case Paused:
			errs = append(errs, s.c.Unpause(n))
		case Stopped:
			errs = append(errs, s.c.Start(n))
		}
	}
	if s.sc.needNet {
		errs = append(errs, s.c.HealNetAll())
	}
	return errors.Join(errs...)
}

// The nemeses.

func (s *run) killRestart(n *Node) error {
	if err := s.c.Kill(n); err != nil {
		return err
	}
	s.hold(s.timing.down)
	s.healed()
	return s.c.Start(n)
}

func (s *run) pause(n *Node) error {
	if err := s.c.Pause(n); err != nil {
		return err
	}
	s.hold(s.timing.pause)
	if err := s.c.Unpause(n); err != nil {
		return err
	}
	s.healed()
	return nil
}

func (s *run) partitioned(a, b []*Node) error {
	if err := s.c.Partition(a, b); err != nil {
		return err
	}
	s.hold(s.timing.partition)
	if err := s.c.HealNetAll(); err != nil {
		return err
	}
	s.healed()
	return nil
}

// isolateLeader cuts the leader off from every other node (clients still reach it).
func (s *run) isolateLeader() error {
	l := s.leader()
	return s.partitioned([]*Node{l}, s.others(l))
}

// splitMajority splits the cluster into a minority and a majority. Even cycles put the leader in the
// minority (it must step down, and the majority elect another); odd ones a random minority.
func (s *run) splitMajority(i int) error {
	nodes := s.shuffled()
	minority := len(nodes) / 2
	if i%2 == 0 {
		l := s.leader()
		nodes = append([]*Node{l}, slices.DeleteFunc(nodes, func(n *Node) bool { return n == l })...)
	}
	return s.partitioned(nodes[:minority], nodes[minority:])
}

// bridge splits five nodes into two pairs that cannot talk, and one node that talks to both.
func (s *run) bridge() error {
	nodes := s.shuffled()
	if len(nodes) < 5 {
		return fmt.Errorf("bridge needs 5 running nodes, have %d", len(nodes))
	}
	s.c.Logf("bridge node %s", nodes[0])
	return s.partitioned(nodes[1:3], nodes[3:5])
}

// asymmetric drops one direction only. Even cycles: the leader hears nobody, but everyone hears the
// leader (its heartbeats arrive, the answers do not). Odd cycles: a random node is heard by nobody
// but hears everyone.
func (s *run) asymmetric(i int) error {
	if i%2 == 0 {
		l := s.leader()
		s.c.Logf("%s (leader) stops hearing the others", l)
		if err := s.c.Deafen(l, s.others(l)...); err != nil {
			return err
		}
	} else {
		n := s.randomUp()
		s.c.Logf("the others stop hearing %s", n)
		for _, o := range s.others(n) {
			if err := s.c.Deafen(o, n); err != nil {
				return err
			}
		}
	}
	s.hold(s.timing.partition)
	if err := s.c.HealNetAll(); err != nil {
		return err
	}
	s.healed()
	return nil
}

// slow degrades the network of one node (the leader on even cycles) or of all: random loss on the
// node-to-node traffic, which TCP turns into retransmission delays and jitter, and a bandwidth cap.
func (s *run) slow(i int, all bool) error {
	victims := s.c.Up()
	loss, rate, latency := 0.10, "2mbit", 200*time.Millisecond
	if !all {
		v := s.randomUp()
		if i%2 == 0 {
			v = s.leader()
		}
		victims = []*Node{v}
		loss, rate, latency = 0.20, "1mbit", 300*time.Millisecond
	}
	s.c.Logf("slow network on %v: %.0f%% loss each way to and from peers, egress capped at %s (queue %v)", victims, loss*100, rate, latency)
	for _, v := range victims {
		if err := s.c.Lossy(v, loss, s.others(v)...); err != nil {
			return err
		}
		if err := s.c.Throttle(v, rate, latency); err != nil {
			return err
		}
	}
	s.hold(s.timing.slow)
	if err := s.c.HealNetAll(); err != nil {
		return err
	}
	s.healed()
	return nil
}

// memberAdd adds a node under load (even cycles) or, in long mode, removes the node added last
// (odd cycles) so the cluster does not grow without bound.
func (s *run) memberAdd(i int) error {
	if i%2 == 1 {
		members := s.c.Members()
		return s.removeByLeave(members[len(members)-1])
	}
	s.healed() // recovery = from the start of the new container until it is a ready voter
	_, err := s.c.AddNode()
	return err
}

// memberRemove removes a random member (possibly the leader) under load: by a graceful leave on even
// cycles, by kill -9 plus DELETE /v1/cluster/members/{id} on odd ones. In long mode each removal is
// followed by adding a fresh node, so the cluster keeps its size.
func (s *run) memberRemove(i int) error {
	if long && len(s.c.Members()) < s.sc.nodes {
		if _, err := s.c.AddNode(); err != nil {
			return err
		}
		if _, err := s.c.WaitHealthy(s.sc.bound); err != nil {
			return fmt.Errorf("after adding a node: %w", err)
		}
	}
	v := s.randomUp()
	if i%2 == 0 {
		return s.removeByLeave(v)
	}
	if err := s.c.Kill(v); err != nil {
		return err
	}
	via := s.randomUp()
	s.c.Logf("DELETE /v1/cluster/members/%s via %s", v, via)
	err := harness.Poll(30*time.Second, func() error {
		cl := via.Client()
		if cl == nil {
			return harness.Permanent(fmt.Errorf("%s went away", via))
		}
		if r := cl.RemoveMember(v.ID); !r.OK() {
			return fmt.Errorf("%v", r)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("removing %s: %w", v, err)
	}
	if err := s.c.Destroy(v, false); err != nil {
		return err
	}
	s.healed()
	return nil
}

// removeByLeave makes v leave gracefully, waits until the leader's configuration no longer has it,
// then stops and removes its container.
func (s *run) removeByLeave(v *Node) error {
	s.c.Logf("POST /v1/cluster/leave to %s", v)
	err := harness.Poll(30*time.Second, func() error {
		cl := v.Client()
		if cl == nil {
			return harness.Permanent(fmt.Errorf("%s is %s", v, v.State()))
		}
		if r := cl.Leave(); !r.OK() {
			return fmt.Errorf("%v", r)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("%s leaving: %w", v, err)
	}
	err = harness.Poll(30*time.Second, func() error {
		for _, n := range s.others(v) {
			st, err := s.c.Status(n)
			if err != nil || st.Leader == nil || st.Leader.ID == v.ID {
				continue
			}
			if l := s.c.Node(st.Leader.ID); l != nil {
				if lst, err := s.c.Status(l); err == nil && lst.State == "Leader" {
					if slices.Contains(lst.RaftMembers(), v.ID) {
						return fmt.Errorf("leader %s still has %s in its configuration", l, v)
					}
					return nil
				}
			}
		}
		return errors.New("no leader among the remaining nodes")
	})
	if err != nil {
		return fmt.Errorf("after %s left: %w", v, err)
	}
	if err := s.c.Stop(v); err != nil {
		return err
	}
	if err := s.c.Destroy(v, false); err != nil {
		return err
	}
	s.healed()
	return nil
}

// replaceWiped kills a random member, throws its volume away and starts a new container with the
// same id and address on an empty volume: the cluster must notice the lost state (new data-dir id),
// replace the member and bring it back as a voter.
func (s *run) replaceWiped() error {
	v := s.randomUp()
	if err := s.c.Kill(v); err != nil {
		return err
	}
	if err := s.c.Destroy(v, true); err != nil {
		return err
	}
	s.hold(s.timing.replaceDown)
	s.healed()
	return s.c.Replace(v)
}

// replaceWipedSecondFault is issue 10's reproduction: a member lags (killed while writes commit on
// the other two), then one of the two that hold those writes crashes and the other comes back wiped
// beside the laggard. The wiped member must not vote the laggard into leadership (that lost the
// writes only those two had); the cluster waits, without a leader, until the crashed member returns.
func (s *run) replaceWipedSecondFault() error {
	nodes := s.shuffled()
	if len(nodes) < 3 {
		return fmt.Errorf("need three running members, have %d", len(nodes))
	}
	lagging, crashed, wiped := nodes[0], nodes[1], nodes[2]
	if err := s.c.Kill(lagging); err != nil {
		return err
	}
	s.hold(s.timing.down) // acknowledged writes land on crashed and wiped only
	if err := s.c.Kill(crashed); err != nil {
		return err
	}
	if err := s.c.Kill(wiped); err != nil {
		return err
	}
	if err := s.c.Destroy(wiped, true); err != nil {
		return err
	}
	if err := s.c.Start(lagging); err != nil {
		return err
	}
	if err := s.c.Replace(wiped); err != nil {
		return err
	}
	s.hold(s.timing.replaceDown) // the window in which the laggard used to win with the wiped vote
	s.healed()
	return s.c.Start(crashed)
}

// newIP restarts a member (the leader on even cycles) on a new address with the same id and volume:
// stopped gracefully on even cycles, killed on odd ones.
func (s *run) newIP(i int) error {
	v := s.randomUp()
	stop := s.c.Kill
	if i%2 == 0 {
		v, stop = s.leader(), s.c.Stop
	}
	if err := stop(v); err != nil {
		return err
	}
	if err := s.c.ChangeIP(v); err != nil {
		return err
	}
	s.healed()
	return s.c.Start(v)
}

// allNewIP stops every member gracefully, moves each to a new address and starts them all again.
func (s *run) allNewIP() error {
	members := s.c.Up()
	if err := each(members, s.c.Stop); err != nil {
		return err
	}
	for _, n := range members {
		if err := s.c.ChangeIP(n); err != nil {
			return err
		}
	}
	s.healed()
	return each(members, s.c.Start)
}

// rollingRestart restarts every member in turn (SIGTERM, start), waiting for the cluster to be healthy
// before the next.
func (s *run) rollingRestart() error {
	for k, n := range s.shuffled() {
		if err := s.c.Stop(n); err != nil {
			return err
		}
		s.healed()
		if err := s.c.Start(n); err != nil {
			return err
		}
		if k == len(s.c.Members())-1 {
			break
		}
		took, err := s.c.WaitHealthy(s.sc.bound)
		if err != nil {
			return fmt.Errorf("after restarting %s: %w", n, err)
		}
		s.c.Logf("healthy %v after restarting %s", took.Round(time.Millisecond), n)
	}
	return nil
}

// fullCrash kills every member at once and starts them all again.
func (s *run) fullCrash() error {
	members := s.c.Up()
	if err := each(members, s.c.Kill); err != nil {
		return err
	}
	s.hold(s.timing.down)
	s.healed()
	return each(members, s.c.Start)
}

// each runs f on every node concurrently.
func each(nodes []*Node, f func(*Node) error) error {
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = f(n)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// mixed runs one nemesis chosen at random.
func (s *run) mixed() error {
	nemeses := []struct {
		name string
		f    func() error
	}{
		{"kill-random", func() error { return s.killRestart(s.randomUp()) }},
		{"kill-leader", func() error { return s.killRestart(s.leader()) }},
		{"pause-random", func() error { return s.pause(s.randomUp()) }},
		{"pause-leader", func() error { return s.pause(s.leader()) }},
		{"restart-random", func() error {
			n := s.randomUp()
			if err := s.c.Stop(n); err != nil {
				return err
			}
			s.healed()
			return s.c.Start(n)
		}},
		{"partition-leader", s.isolateLeader},
		{"partition-random", func() error { return s.splitMajority(1) }},
		{"partition-bridge", s.bridge},
		{"asymmetric", func() error { return s.asymmetric(s.rng.IntN(2)) }},
		{"slow-one", func() error { return s.slow(s.rng.IntN(2), false) }},
	}
	if len(s.c.Up()) < 5 {
		nemeses = slices.DeleteFunc(nemeses, func(n struct {
			name string
			f    func() error
		}) bool {
			return n.name == "partition-bridge"
		})
	}
	pick := nemeses[s.rng.IntN(len(nemeses))]
	s.c.Logf("mixed: %s", pick.name)
	return pick.f()
}
