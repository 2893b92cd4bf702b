package chaos

// Issue 10's disk faults (the nemeses that found its defects): a full disk on one node and on a
// majority, a read-only and a frozen disk on the leader, a corrupted log on one node. Each runs in the
// common runner (linearizability, no lost acknowledged write, watchers, recovery) and asserts what
// the README promises the node does about the fault.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"

	"github.com/raftkv/raftkv/test/harness"
)

// Bounds of the disk scenarios.
const (
	// diskFaultHold: how long a full disk stays full.
	diskFaultHold = 8 * time.Second
	// stallFailover: from freezing the leader's disk until a write succeeds on a new leader. The
	// README promises a failover after --disk-stall-timeout (5 s) plus an election.
	stallFailover = 15 * time.Second
	// diskReportBound: how long a node may take to report a disk fault (readyz or exit).
	diskReportBound = 20 * time.Second
	// fullReportBound: how long a node may take to report a full disk. A full filesystem fails only
	// the writes that need new blocks: BoltDB first fills the free pages inside raft.db (left by the
	// last log compaction), which takes a leader under the workload up to ~12 s (measured 0.1-11.8 s).
	fullReportBound = 25 * time.Second
)

var diskScenarios = []scenario{
	{name: "disk-full-one", nodes: 3, disks: true, bound: 60 * time.Second, cycle: func(s *run, i int) error { return s.diskFull(i, 1) }},
	{name: "disk-full-majority", nodes: 3, disks: true, bound: 60 * time.Second, cycle: func(s *run, i int) error { return s.diskFull(i, 2) }},
	{name: "disk-readonly-leader", nodes: 3, disks: true, bound: 60 * time.Second, cycle: func(s *run, i int) error { return s.diskReadOnly(s.leader()) }},
	{name: "disk-frozen-leader", nodes: 3, disks: true, cycle: func(s *run, i int) error { return s.diskFrozen(s.leader()) }},
	// --trailing-logs 100000: the leader keeps the entries the stopped follower misses (the run's 200
	// are ~1 s of this workload), so the follower is sent those entries and applies its own log up to
	// the damaged one, rather than being sent a snapshot that would replace it unread.
	{name: "disk-corrupt-log", nodes: 3, disks: true, bound: 60 * time.Second, nodeArgs: []string{"--trailing-logs", "100000"}, cycle: func(s *run, i int) error { return s.corruptLog(s.others(s.leader())[0]) }},
}

func init() { scenarios = append(scenarios, diskScenarios...) }

// nodeReport is what a node says about itself: its /readyz answer or, when its process is gone, its
// container's state and the last ERROR lines of its log.
type nodeReport struct {
	running bool
	ready   bool
	reason  string // the readyz body, or the container state and log
}

func (s *run) report(n *Node) nodeReport {
	ctl, _ := n.control()
	if ctl != nil {
		r := ctl.Do(http.MethodGet, "/readyz", nil)
		if r.Err == nil {
			return nodeReport{running: true, ready: r.OK(), reason: string(r.Body)}
		}
	}
	st := containerState(n.Container)
	if st == "running" || st == "paused" {
		return nodeReport{running: true, reason: "no answer"}
	}
	logs, _ := dockerLogs(n.Container)
	return nodeReport{reason: st + ": " + errorLines(logs)}
}

// errorLines is the ERROR lines of a node's log.
func errorLines(logs string) string {
	var out []string
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, "level=ERROR") {
			out = append(out, strings.TrimSpace(l))
		}
	}
	return strings.Join(out, "\n")
}

// noMisreport checks n's log for what the README says a disk fault must never produce: a panic trace,
// or calling a healthy data dir corrupt.
func noMisreport(n *Node) error {
	logs, err := dockerLogs(n.Container)
	if err != nil {
		return err
	}
	if loc := misreport.FindStringIndex(logs); loc != nil {
		return fmt.Errorf("%s logged %q: %s", n, logs[loc[0]:loc[1]], logs[max(0, loc[0]-200):min(len(logs), loc[1]+400)])
	}
	return nil
}

// misreport: a panic, a goroutine dump, or a healthy data dir called corrupt.
var misreport = regexp.MustCompile(`panic: |goroutine \d+ \[|data dir is corrupt`)

// awaitReport polls n until it reports kind (its readyz reason or its exit says so), and returns the report.
func (s *run) awaitReport(n *Node, kind string, timeout time.Duration) (nodeReport, error) {
	var last nodeReport
	err := harness.Poll(timeout, func() error {
		last = s.report(n)
		if !last.running && !strings.Contains(last.reason, "(exit code 4)") {
			// The README: a storage fault an operator must act on ends `raftkv serve` with status 4.
			return harness.Permanent(fmt.Errorf("%s exited, but not with status 4: %s", n, last.reason))
		}
		if !last.ready && strings.Contains(last.reason, kind) {
			return nil
		}
		return fmt.Errorf("%s has not reported %q: ready=%t %s", n, kind, last.ready, last.reason)
	})
	return last, err
}

// exited marks n stopped when its process has exited by itself (a node that failed exits 4).
func (s *run) exited(n *Node) bool {
	st := containerState(n.Container)
	if strings.HasPrefix(st, "exited") {
		s.c.Logf("%s exited by itself: %s", n, st)
		n.setState(Stopped)
		return true
	}
	return false
}

// writeVia puts a probe key through one of nodes until one acknowledges it, and returns the node.
func (s *run) writeVia(nodes []*Node, timeout time.Duration) (*Node, error) {
	var via *Node
	err := harness.Poll(timeout, func() error {
		var errs []string
		for _, n := range nodes {
			cl := n.Client()
			if cl == nil {
				continue
			}
			r := cl.Put("chaos-probe/"+n.ID, []byte(time.Now().String()))
			if r.OK() {
				via = n
				return nil
			}
			errs = append(errs, fmt.Sprintf("%s: %v", n, r))
		}
		return errors.New(strings.Join(errs, "; "))
	})
	return via, err
}

// diskFull fills the disks of k members and lets the workload run against them, then frees the space.
// One member: the leader in the short pass (even cycles), a follower on odd ones. A majority: the
// followers in the short pass (the leader goes on appending and cannot commit), the leader and a
// follower on odd cycles. A member must say "disk full" (readyz 503 while it runs on, or an ERROR and
// exit 4 when Raft could not save its term) once a write to it fails, and never call its data dir
// corrupt. Every victim that is sure to be written to must report within fullReportBound: the leader,
// and a follower while a member with room leads; a follower beside a full leader may see no entry for
// a while (each leader with a full disk steps down at its first write), so its report is only logged.
// With one member full the others keep committing; with a majority full nothing commits, and nothing
// acknowledged may be lost either way. A member that exited is restarted after the space is freed
// (the README's "free space, restart"); the others must catch up by themselves.
func (s *run) diskFull(i, k int) error {
	l := s.leader()
	victims := s.others(l)
	if withLeader := (k == 1) == (i%2 == 0); withLeader {
		victims = append([]*Node{l}, victims...)
	}
	victims = victims[:k]
	leaderFull := victims[0] == l
	for _, v := range victims {
		if err := v.disk.fill(); err != nil {
			return err
		}
		s.c.Logf("disk of %s full (%d bytes free)", v, v.disk.freeBytes())
	}
	start := time.Now()
	var errs []error
	for _, v := range victims {
		must := v == l || !leaderFull
		bound := fullReportBound - time.Since(start)
		if !must {
			bound = diskFaultHold - time.Since(start)
		}
		rep, err := s.awaitReport(v, "disk full", bound)
		switch {
		case err == nil:
			s.c.Logf("%s reported the full disk after %v: %s", v, time.Since(start).Round(time.Millisecond), firstLine(rep.reason))
		case must:
			errs = append(errs, err)
		default:
			s.c.Logf("%s (a follower beside a full leader) has not reported yet: %v", v, err)
		}
	}
	if k*2 < s.sc.nodes {
		if via, err := s.writeVia(s.others(victims...), 10*time.Second); err != nil {
			errs = append(errs, fmt.Errorf("no write acknowledged beside the full disk: %w", err))
		} else {
			s.c.Logf("writes go on through %s beside the full disk", via)
		}
	}
	if d := diskFaultHold - time.Since(start); d > 0 {
		s.sleep(d)
	}
	for _, v := range victims {
		if err := v.disk.free(); err != nil {
			errs = append(errs, err)
		}
	}
	s.healed()
	s.c.Logf("space freed on %v", victims)
	for _, v := range victims {
		if s.exited(v) {
			if err := s.c.Start(v); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if _, err := s.c.WaitHealthy(s.sc.bound); err != nil {
		errs = append(errs, fmt.Errorf("after freeing the space: %w", err))
	}
	for _, v := range victims {
		errs = append(errs, noMisreport(v))
	}
	return errors.Join(errs...)
}

// diskReadOnly makes the leader's filesystem read-only under it, as the kernel does after a disk
// error. The leader must stop leading and say "read-only filesystem" (never "corrupt", never a panic
// trace); the others elect a leader and go on. Then the operator's repair (README): stop the node,
// check and remount the filesystem read-write, start it: it catches up.
func (s *run) diskReadOnly(l *Node) error {
	if err := l.disk.failReadOnly(); err != nil {
		return err
	}
	start := time.Now()
	s.c.Logf("filesystem of %s (leader) is read-only", l)
	var errs []error
	via, err := s.writeVia(s.others(l), stallFailover)
	if err != nil {
		errs = append(errs, fmt.Errorf("no write acknowledged without the read-only leader within %v: %w", stallFailover, err))
	} else {
		s.c.Logf("a write was acknowledged through %s %v after the fault", via, time.Since(start).Round(time.Millisecond))
	}
	if rep, err := s.awaitReport(l, "read-only filesystem", diskReportBound); err != nil {
		errs = append(errs, err)
	} else {
		s.c.Logf("%s reported it: %s", l, firstLine(rep.reason))
	}
	if err := noMisreport(l); err != nil {
		errs = append(errs, err)
	}
	// The repair.
	if !s.exited(l) {
		if err := s.c.Stop(l); err != nil {
			errs = append(errs, err)
		}
	}
	if err := l.disk.repair(); err != nil {
		return errors.Join(append(errs, fmt.Errorf("repairing the filesystem: %w", err))...)
	}
	s.healed()
	errs = append(errs, s.c.Start(l))
	return errors.Join(errs...)
}

// diskFrozen freezes the leader's filesystem (every write and fsync blocks). Within
// stallFailover the leader must report the stall on /readyz and the others must have elected a leader
// that acknowledges writes; when the disk thaws the old leader steps down and catches up.
func (s *run) diskFrozen(l *Node) error {
	if err := l.disk.freeze(); err != nil {
		return err
	}
	start := time.Now()
	s.c.Logf("filesystem of %s (leader) frozen", l)
	var errs []error
	if nl, err := s.newLeader(l, stallFailover); err != nil {
		errs = append(errs, err)
	} else {
		s.c.Logf("%s leads %v after the freeze", nl, time.Since(start).Round(time.Millisecond))
	}
	via, err := s.writeVia(s.others(l), stallFailover-time.Since(start))
	if err != nil {
		errs = append(errs, fmt.Errorf("no write acknowledged without the frozen leader within %v: %w", stallFailover, err))
	} else {
		s.c.Logf("a write was acknowledged through %s %v after the freeze", via, time.Since(start).Round(time.Millisecond))
	}
	if rep, err := s.awaitReport(l, "disk stalled", diskReportBound-time.Since(start)); err != nil {
		errs = append(errs, err)
	} else {
		s.c.Logf("%s reported it after %v: %s", l, time.Since(start).Round(time.Millisecond), firstLine(rep.reason))
	}
	if d := 12*time.Second - time.Since(start); d > 0 {
		s.sleep(d)
	}
	if err := l.disk.thaw(); err != nil {
		return errors.Join(append(errs, err)...)
	}
	s.healed()
	s.c.Logf("filesystem of %s thawed", l)
	return errors.Join(errs...)
}

// newLeader waits until a member other than old says it leads, and returns it.
func (s *run) newLeader(old *Node, timeout time.Duration) (*Node, error) {
	var leader *Node
	err := harness.Poll(timeout, func() error {
		for _, n := range s.others(old) {
			if st, err := s.c.Status(n); err == nil && st.State == "Leader" {
				leader = n
				return nil
			}
		}
		return fmt.Errorf("no member other than %s leads", old)
	})
	return leader, err
}

// corruptLog stops a follower, changes one byte of a value in a committed entry of its raft log (past
// its latest snapshot, so that it is applied again at start-up) and starts it. The node must refuse
// the entry: never answer with the changed value, log an ERROR naming the entry, exit 4. The cluster
// serves on without it. Then the README's remedy: its data dir wiped, it rejoins as a new member.
func (s *run) corruptLog(v *Node) error {
	if err := s.c.Stop(v); err != nil {
		return err
	}
	idx, key, bad, err := corruptEntry(v.disk.mnt)
	if err != nil {
		return fmt.Errorf("corrupting the log of %s: %w", v, err)
	}
	s.c.Logf("changed a byte of entry %d in %s's raft.db: %s now holds %q", idx, v, key, bad)
	start := time.Now()
	var errs []error
	if err := s.c.Start(v); err != nil {
		// It may find the entry and exit before the harness has even read its pid and port.
		if st := containerState(v.Container); strings.HasSuffix(st, "(exit code 4)") {
			s.c.Logf("%s exited as it started: %v", v, err)
		} else {
			errs = append(errs, err)
		}
	}
	// Until it exits, it must never answer with the changed value.
	exitErr := harness.Poll(diskReportBound, func() error {
		if cl := v.Client(); cl != nil {
			if r := cl.Get(key); r.OK() && bytes.Contains(r.Body, []byte(bad)) {
				return harness.Permanent(fmt.Errorf("%s served the corrupted value of %s: %s", v, key, r.Body))
			}
		}
		if st := containerState(v.Container); st != "exit code 4" && !strings.HasSuffix(st, "(exit code 4)") {
			return fmt.Errorf("%s is %s", v, st)
		}
		return nil
	})
	if exitErr != nil {
		errs = append(errs, fmt.Errorf("a node with a damaged log entry must exit 4: %w", exitErr))
	} else {
		s.exited(v)
		logs, _ := dockerLogs(v.Container)
		want := fmt.Sprintf("index=%d", idx)
		if !strings.Contains(logs, "failed its checksum") || !strings.Contains(logs, want) {
			errs = append(errs, fmt.Errorf("%s exited without an ERROR naming entry %d: %s", v, idx, errorLines(logs)))
		} else {
			s.c.Logf("%s refused entry %d and exited 4 after %v", v, idx, time.Since(start).Round(time.Millisecond))
		}
	}
	if via, err := s.writeVia(s.others(v), 10*time.Second); err != nil {
		errs = append(errs, fmt.Errorf("no write acknowledged beside the damaged node: %w", err))
	} else {
		s.c.Logf("writes go on through %s", via)
	}
	// The remedy: wipe the data dir, the node rejoins under a new data-dir id.
	if err := s.c.Destroy(v, true); err != nil {
		return errors.Join(append(errs, err)...)
	}
	s.healed()
	errs = append(errs, s.c.Replace(v))
	return errors.Join(errs...)
}

// ledgerValue matches a ledger write's value in a raft log entry.
var ledgerValue = regexp.MustCompile(`ledger/\d+/\d{7}@n\d+`)

// corruptEntry changes one byte of a ledger value in a committed entry of the raft log in dir (the
// node stopped) that lies past its latest snapshot, and returns the entry's index, the key and the
// changed value. BoltDB keeps no checksum of its pages, so only the entry's own checksum can notice.
// Every copy of the value's bytes in the file is changed (BoltDB leaves old copies of rewritten pages
// in its free pages); reading the entry back proves the live copy was among them.
func corruptEntry(dir string) (uint64, string, string, error) {
	path := filepath.Join(dir, "raft.db")
	snap := latestSnapshot(filepath.Join(dir, "snapshots"))
	var idx uint64
	var value []byte
	err := withLog(path, func(ls *raftboltdb.BoltStore) error {
		first, err := ls.FirstIndex()
		if err != nil {
			return err
		}
		last, err := ls.LastIndex()
		if err != nil {
			return err
		}
		// A few entries back from the end: the follower stopped gracefully, those are committed.
		for i := last - min(last, 5); i > max(first, snap) && i > 0; i-- {
			var e raft.Log
			if err := ls.GetLog(i, &e); err != nil || e.Type != raft.LogCommand {
				continue
			}
			if m := ledgerValue.Find(e.Data); m != nil {
				idx, value = i, bytes.Clone(m)
				return nil
			}
		}
		return fmt.Errorf("no ledger write among entries %d..%d past the snapshot at %d", first, last, snap)
	})
	if err != nil {
		return 0, "", "", err
	}
	key, _, _ := strings.Cut(string(value), "@")
	bad := bytes.Clone(value)
	at := bytes.IndexByte(bad, '@') + 1
	bad[at] = 'X' // "…@n2" → "…@X2"
	raw, err := os.ReadFile(path)
	if err != nil {
		return 0, "", "", err
	}
	if n := bytes.Count(raw, value); n == 0 {
		return 0, "", "", fmt.Errorf("the value %q of entry %d is not in the file as is", value, idx)
	}
	raw = bytes.ReplaceAll(raw, value, bad)
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		return 0, "", "", err
	}
	err = withLog(path, func(ls *raftboltdb.BoltStore) error {
		var e raft.Log
		if err := ls.GetLog(idx, &e); err != nil {
			return err
		}
		if !bytes.Contains(e.Data, bad) {
			return fmt.Errorf("entry %d does not read back changed", idx)
		}
		return nil
	})
	return idx, key, string(bad), err
}

// withLog opens a raft.db read-only.
func withLog(path string, f func(*raftboltdb.BoltStore) error) error {
	ls, err := raftboltdb.New(raftboltdb.Options{Path: path, BoltOptions: &bbolt.Options{ReadOnly: true, Timeout: 5 * time.Second}})
	if err != nil {
		return err
	}
	defer ls.Close()
	return f(ls)
}

// latestSnapshot is the index of the newest snapshot in dir (0 when there is none).
func latestSnapshot(dir string) uint64 {
	var idx uint64
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name(), "meta.json"))
		if err != nil {
			continue
		}
		var meta struct{ Index uint64 }
		if json.Unmarshal(b, &meta) == nil {
			idx = max(idx, meta.Index)
		}
	}
	return idx
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}
