package main

// snapshot.go: backups: snapshot save, inspect and restore.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"time"

	rkv "github.com/raftkv/raftkv/client"
	"github.com/raftkv/raftkv/store"
)

const snapshotUsage = `Usage: raftkv snapshot <command> [flags] FILE

Commands:
  save FILE      write a consistent backup of the cluster's keys to FILE (GET /v1/snapshot), verified
  inspect FILE   verify FILE (checksum, framing, content) and print what it holds
  restore FILE   replace every key in the running cluster with FILE's, on every node, through Raft
                 (PUT /v1/snapshot on the leader); FILE is verified first and nothing changes if it is bad.
                 With --data-dir, offline: seed an empty data dir as the first node of a new cluster

A backup is a self-describing archive: metadata (cluster id, write index, Raft index and term, the node
and time it was taken, format version), the data, and a SHA-256 over both. Restoring keeps the running
cluster's membership; the write index moves forward past everything the cluster has handed out.

Run "raftkv snapshot <command> --help" for a command's flags.
`

func runSnapshot(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintf(stderr, "raftkv: snapshot needs a command\n\n%s", snapshotUsage)
		return exitUsage
	}
	switch args[0] {
	case "save":
		return runSnapshotSave(ctx, args[1:], stdout, stderr)
	case "inspect":
		return runSnapshotInspect(args[1:], stdout, stderr)
	case "restore":
		return runSnapshotRestore(ctx, args[1:], stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, snapshotUsage)
		return exitOK
	}
	fmt.Fprintf(stderr, "raftkv: unknown snapshot command %q\n\n%s", args[0], snapshotUsage)
	return exitUsage
}

func runSnapshotSave(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("snapshot save", "snapshot save [flags] FILE", `
Write a consistent backup to FILE: the first --addr node that answers captures a state reflecting every
write acknowledged before the request, and streams it. The download goes to FILE.part, is verified, and
only then renamed to FILE, so FILE is never a partial backup.

--timeout bounds the wait for a node's answer; --save-timeout bounds the whole save (the download and
its verification: 1 M keys of 100 B are ~130 MB), so a transfer that stalls ends with an error.`)
	var cf clientFlags
	cf.register(fs)
	var saveTimeout time.Duration
	fs.DurationVar(&saveTimeout, "save-timeout", defaultSaveTimeout, "bound on the whole save; past it FILE is not written")
	pos, code, ok := parseArgs(fs, args, stdout, stderr)
	if !ok {
		return code
	}
	if len(pos) != 1 {
		return usageError(fs, stderr, "snapshot save takes one FILE")
	}
	if saveTimeout <= 0 {
		return usageError(fs, stderr, "--save-timeout must be positive")
	}
	c, err := cf.newClient(nil)
	if err != nil {
		return usageError(fs, stderr, "%v", err)
	}
	defer c.close()
	ctx, cancel := context.WithTimeout(ctx, saveTimeout)
	defer cancel()
	info, err := saveSnapshot(ctx, c, cf.timeout, pos[0])
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return fail(stderr, fmt.Errorf("snapshot save %s: not done within --save-timeout %s; %s not written: %w", pos[0], saveTimeout, pos[0], err))
		}
		return fail(stderr, fmt.Errorf("snapshot save: %w", err))
	}
	fmt.Fprintf(stdout, "saved %s: %d keys, %d bytes, write index %d, from %s\n",
		pos[0], info.Keys, info.Bytes, info.Meta.WriteIndex, info.Meta.NodeID)
	return exitOK
}

// saveSnapshot asks the nodes in turn (the public client's failover) until one streams a backup that
// verifies; a download that breaks or does not verify is tried again, on the next node, within timeout.
func saveSnapshot(ctx context.Context, c *client, timeout time.Duration, path string) (store.ArchiveInfo, error) {
	part := path + ".part"
	defer os.Remove(part)
	// Each attempt starts on the next node: a node that sent a bad backup is not asked again at once.
	rr, err := rkv.New(rkv.Config{Endpoints: c.cfg.addrs, Timeout: timeout, MinBackoff: c.cfg.minBackoff,
		MaxBackoff: c.cfg.maxBackoff, HTTPClient: c.hc, TLS: c.cfg.tls, RoundRobin: true})
	if err != nil {
		return store.ArchiveInfo{}, err
	}
	var lastErr error
	deadline := time.Now().Add(timeout)
	for attempt := 0; attempt == 0 || time.Now().Before(deadline); attempt++ {
		info, err := downloadSnapshot(ctx, rr, part)
		if err == nil {
			if err := os.Rename(part, path); err != nil {
				return store.ArchiveInfo{}, err
			}
			return info, syncDir(filepath.Dir(path))
		}
		lastErr = err
		var ae *rkv.APIError
		if ctx.Err() != nil || errors.As(err, &ae) || errors.Is(err, rkv.ErrUnavailable) {
			break // an answer no node will change, or the nodes' failover already spent the budget
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
	return store.ArchiveInfo{}, c.fromPublic(ctx, lastErr)
}

func downloadSnapshot(ctx context.Context, rr *rkv.Client, part string) (store.ArchiveInfo, error) {
	st, err := rr.Open(ctx, rkv.Request{Method: http.MethodGet, Path: "/v1/snapshot"})
	if err != nil {
		return store.ArchiveInfo{}, err
	}
	defer st.Body.Close()
	f, err := os.OpenFile(part, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return store.ArchiveInfo{}, err
	}
	_, err = io.Copy(f, st.Body)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return store.ArchiveInfo{}, fmt.Errorf("%s: download: %w", st.Node, err)
	}
	info, err := inspectFile(part)
	if err != nil {
		return store.ArchiveInfo{}, fmt.Errorf("%s: %w", st.Node, err)
	}
	return info, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func inspectFile(path string) (store.ArchiveInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		return store.ArchiveInfo{}, err
	}
	defer f.Close()
	return store.InspectArchive(f)
}

func runSnapshotInspect(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("snapshot inspect", "snapshot inspect [flags] FILE", `
Verify FILE (its SHA-256, its framing, and that its data decodes to a valid state) and print its metadata,
keys and bytes. Exit status 2 when the file is truncated, corrupt or not a raftkv backup.`)
	var asJSON bool
	fs.BoolVar(&asJSON, "json", false, "print the result as JSON")
	pos, code, ok := parseArgs(fs, args, stdout, stderr)
	if !ok {
		return code
	}
	if len(pos) != 1 {
		return usageError(fs, stderr, "snapshot inspect takes one FILE")
	}
	info, err := inspectFile(pos[0])
	if err != nil {
		return fail(stderr, fmt.Errorf("snapshot inspect %s: %w", pos[0], err))
	}
	if asJSON {
		b, _ := json.MarshalIndent(info, "", "  ")
		fmt.Fprintf(stdout, "%s\n", b)
		return exitOK
	}
	m := info.Meta
	fmt.Fprintf(stdout, "file            %s (verified: SHA-256 ok)\n", pos[0])
	fmt.Fprintf(stdout, "format          %d, data %s\n", m.FormatVersion, m.DataFormat)
	fmt.Fprintf(stdout, "cluster id      %s\n", orDash(m.ClusterID))
	fmt.Fprintf(stdout, "taken on        %s at %s\n", m.NodeID, m.Time.Format(time.RFC3339))
	fmt.Fprintf(stdout, "write index     %d\n", m.WriteIndex)
	fmt.Fprintf(stdout, "raft index      %d (term %d)\n", m.RaftIndex, m.RaftTerm)
	fmt.Fprintf(stdout, "keys            %d\n", info.Keys)
	fmt.Fprintf(stdout, "bytes           %d (keys and values)\n", info.Bytes)
	return exitOK
}

func runSnapshotRestore(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("snapshot restore", "snapshot restore [flags] FILE", `
Replace every key of the running cluster with FILE's. FILE is verified here first; the leader verifies
it again and installs it through Raft, so every node, and every node that joins later, gets it. The
cluster's membership is kept. Writes in flight at that moment may fail as indeterminate.

--restore-timeout bounds the whole restore (finding the leader, sending FILE, the leader's checks). The
leader installs FILE only if it got and checked all of it in time (a little before the bound, so its
answer arrives); otherwise nothing changes and the command says so (exit 3). Only when the bound passes
while the leader is installing it (one step: all or nothing) is the outcome unknown; the command says
that too, and "raftkv cluster status" (the write index) tells which.

Offline, with --data-dir: seed a new cluster instead. The (empty) data dir becomes the first node of a
new cluster holding FILE's keys; start it with "raftkv serve --data-dir DIR --id ID" (no
--bootstrap-expect needed) and join other nodes to it as usual.`)
	var cf clientFlags
	cf.register(fs)
	var dataDir, id, raftAddr string
	var restoreTimeout time.Duration
	fs.DurationVar(&restoreTimeout, "restore-timeout", defaultRestoreTimeout, "bound on the whole restore; past it nothing is changed")
	host, _ := os.Hostname()
	fs.StringVar(&dataDir, "data-dir", "", "offline: seed this empty data dir as the first node of a new cluster")
	fs.StringVar(&id, "id", host, "offline: the id the seeded node will run with")
	fs.StringVar(&raftAddr, "raft-addr", store.DefaultRaftAddr, "offline: the node-port address the seeded node will advertise")
	pos, code, ok := parseArgs(fs, args, stdout, stderr)
	if !ok {
		return code
	}
	if len(pos) != 1 {
		return usageError(fs, stderr, "snapshot restore takes one FILE")
	}
	if restoreTimeout <= 0 {
		return usageError(fs, stderr, "--restore-timeout must be positive")
	}
	info, err := inspectFile(pos[0])
	if err != nil {
		return fail(stderr, fmt.Errorf("snapshot restore %s: refused, nothing changed: %w", pos[0], err))
	}
	if dataDir != "" {
		f, err := os.Open(pos[0])
		if err != nil {
			return fail(stderr, err)
		}
		defer f.Close()
		res, err := store.Seed(store.SeedConfig{DataDir: dataDir, NodeID: id, RaftAddr: raftAddr}, f)
		if err != nil {
			return fail(stderr, fmt.Errorf("snapshot restore %s --data-dir %s: nothing changed: %w", pos[0], dataDir, err))
		}
		fmt.Fprintf(stdout, "seeded %s as node %s of a new cluster: %d keys, %d bytes, write index %d\n"+
			"start it with: raftkv serve --data-dir %s --id %s --raft-addr %s ...\n",
			dataDir, id, res.Keys, res.Bytes, res.WriteIndex, dataDir, id, raftAddr)
		return exitOK
	}
	c, err := cf.newClient(nil)
	if err != nil {
		return usageError(fs, stderr, "%v", err)
	}
	defer c.close()
	ctx, cancel := context.WithTimeout(ctx, restoreTimeout)
	defer cancel()
	res, err := restoreSnapshot(ctx, c, pos[0], restoreTimeout)
	if err != nil {
		return fail(stderr, restoreError(ctx, pos[0], restoreTimeout, err))
	}
	fmt.Fprintf(stdout, "restored %s (taken on %s at %s): %d keys, %d bytes; write index now %d\n",
		pos[0], info.Meta.NodeID, info.Meta.Time.Format(time.RFC3339), res.Keys, res.Bytes, res.WriteIndex)
	return exitOK
}

// defaultSaveTimeout: time to download and verify a large backup (1 M keys of 100 B, ~130 MB), with
// room for a slow link; the general --timeout (15 s) bounds only the wait for a node's answer.
const defaultSaveTimeout = 10 * time.Minute

// defaultRestoreTimeout: time to send, check and install a large backup (1 M keys of 100 B, ~130 MB,
// take well under a minute on one machine), with room for a slow link.
const defaultRestoreTimeout = 10 * time.Minute

// restoreError says what a failed restore changed: nothing, unless the bound passed while the leader
// may have been installing it.
func restoreError(ctx context.Context, path string, bound time.Duration, err error) error {
	var ae *apiError
	switch {
	case errors.As(err, &ae) && ae.code == codeTimeout:
		return fmt.Errorf("snapshot restore %s: not done within --restore-timeout %s; nothing changed (%w)", path, bound, err)
	case errors.Is(err, errIndeterminate):
		return fmt.Errorf("snapshot restore %s: no answer within --restore-timeout %s: "+
			"the leader may have installed it; \"raftkv cluster status\" shows the write index (it jumps past the old one if it did): %w", path, bound, err)
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded):
		return fmt.Errorf("snapshot restore %s: not done within --restore-timeout %s; nothing changed (the leader did not get the whole file): %w", path, bound, err)
	}
	return fmt.Errorf("snapshot restore %s: %w", path, err)
}

// restoreSnapshot sends the file to the leader, asking the cluster where it is; a leader that changed
// in between answers not_leader and the next attempt asks again. The leader is asked to give up a
// little before bound (the rest of ctx), so that its "nothing changed" answer arrives in time.
func restoreSnapshot(ctx context.Context, c *client, path string, bound time.Duration) (store.RestoreResult, error) {
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		st, _, err := c.status(ctx)
		if err != nil {
			return store.RestoreResult{}, err
		}
		if st.Leader == nil || st.Leader.HTTPAddr == "" {
			lastErr = fmt.Errorf("%w: no leader is known", errGaveUp)
		} else {
			res, err := uploadSnapshot(ctx, c, st.Leader.HTTPAddr, path, bound)
			var ae *apiError
			if err == nil || !errors.As(err, &ae) || ae.code != codeNotLeader {
				return res, err
			}
			lastErr = err
		}
		select {
		case <-ctx.Done():
			return store.RestoreResult{}, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
	return store.RestoreResult{}, lastErr
}

func uploadSnapshot(ctx context.Context, c *client, addr, path string, bound time.Duration) (store.RestoreResult, error) {
	deadline, _ := ctx.Deadline()
	left := time.Until(deadline)
	// The leader's own bound is shorter by a margin, so its "nothing changed" answer arrives before the
	// CLI gives up: a tenth of the bound, at least 0.5 s (a bound shorter than that is spent at once:
	// nothing is sent), at most 30 s.
	margin := min(max(bound/10, 500*time.Millisecond), 30*time.Second)
	if left <= margin {
		return store.RestoreResult{}, context.DeadlineExceeded
	}
	leader, err := c.nodeWithTimeout(addr, left)
	if err != nil {
		return store.RestoreResult{}, err
	}
	f, err := os.Open(path)
	if err != nil {
		return store.RestoreResult{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return store.RestoreResult{}, err
	}
	// Sent once: a restore that may have reached the leader is not repeated (ErrIndeterminate).
	resp, err := leader.Do(ctx, rkv.Request{Method: http.MethodPut, Path: "/v1/snapshot",
		Query: url.Values{"timeout": {(left - margin).String()}}, BodyReader: f,
		ContentLength: fi.Size(), Write: true})
	if err != nil {
		if errors.Is(err, rkv.ErrIndeterminate) { // also when the bound passed: not "interrupted"
			return store.RestoreResult{}, fmt.Errorf("%w: %w", errIndeterminate, err)
		}
		return store.RestoreResult{}, c.fromPublic(ctx, err)
	}
	var res store.RestoreResult
	if err := json.Unmarshal(resp.Body, &res); err != nil {
		return res, fmt.Errorf("%s: unexpected answer: %w", resp.Node, err)
	}
	return res, nil
}
