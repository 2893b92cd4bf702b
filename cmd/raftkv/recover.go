package main

// recover.go: `raftkv recover` — offline recovery of a cluster that lost its quorum for good.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/raftkv/raftkv/store"
)

const recoverDescription = `
Recover a cluster that has lost its quorum for good (a majority of its voters will never come back).
Run it on every survivor while it is stopped, each with its own --data-dir and --id and the same
--peers (the survivors, as id=raft-address), then start the survivors as before. They form a cluster
of the peers alone, with every entry the survivors hold; new nodes join it as usual.

Recover refuses when a quorum of the old configuration still answers on its node port: that cluster
can still decide, and a second one beside it would split the brain. It prints this node's last log
index and term: a write the lost nodes acknowledged after the highest last index of the survivors is
lost; compare the survivors' numbers before starting them.`

func runRecover(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("recover", "recover --data-dir DIR --id ID --peers ID=ADDR[,ID=ADDR...]", recoverDescription)
	var dataDir, id, peers string
	var probe time.Duration
	host, _ := os.Hostname()
	fs.StringVar(&dataDir, "data-dir", "", "the stopped node's data dir")
	fs.StringVar(&id, "id", host, "the node's id (as given to serve)")
	fs.StringVar(&peers, "peers", "", "the new configuration: every survivor as `id=raft-address`, comma-separated, this node included")
	fs.DurationVar(&probe, "probe-timeout", 2*time.Second, "how long to wait for each old server when checking whether a quorum still answers")
	pos, code, ok := parseArgs(fs, args, stdout, stderr)
	if !ok {
		return code
	}
	if len(pos) != 0 {
		return usageError(fs, stderr, "recover takes no arguments")
	}
	if dataDir == "" || peers == "" {
		return usageError(fs, stderr, "--data-dir and --peers are required")
	}
	var list []store.RecoverPeer
	for _, p := range splitList(peers) {
		pid, addr, found := strings.Cut(p, "=")
		if !found {
			return usageError(fs, stderr, "--peers: %q is not id=raft-address", p)
		}
		list = append(list, store.RecoverPeer{ID: pid, RaftAddr: addr})
	}
	rep, err := store.Recover(ctx, store.RecoverConfig{DataDir: dataDir, NodeID: id, Peers: list, ProbeTimeout: probe})
	fmt.Fprintf(stdout, "old configuration:")
	for _, srv := range rep.OldServers {
		fmt.Fprintf(stdout, " %s=%s(%s)", srv.ID, srv.Address, suffrage(srv.Suffrage.String()))
	}
	fmt.Fprintf(stdout, "\nstill answering: %s\n", orDash(strings.Join(rep.Answering, ", ")))
	fmt.Fprintf(stdout, "this node's log: last index %d, term %d\n", rep.LastIndex, rep.LastTerm)
	if err != nil {
		fmt.Fprintf(stderr, "raftkv: recover refused, nothing changed: %v\n", err)
		if errors.Is(err, store.ErrQuorumAlive) || errors.Is(err, store.ErrInvalid) {
			return exitUsage
		}
		return exitUnavailable
	}
	fmt.Fprintf(stdout, "this node's state: %d keys, write index %d\n", rep.Keys, rep.WriteIndex)
	fmt.Fprintf(stdout, "recovered: the configuration is now %s\n", peers)
	fmt.Fprintf(stdout, "writes the lost nodes acknowledged after the highest last index among the survivors are lost; start every survivor with its usual flags\n")
	return exitOK
}

func suffrage(s string) string { return strings.ToLower(s) }
