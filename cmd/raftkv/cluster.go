package main

// cluster.go: the membership client commands: cluster status, join, leave, remove.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
)

const clusterUsage = `Usage: raftkv cluster <command> [flags] [args]

Commands:
  status             show the leader, term, indexes and members as seen by the answering node
  ready              exit 0 when the --addr node is ready (GET /readyz; needs no token: for healthchecks)
  join ADDR[,ADDR]   make the --addr node(s) gossip-join the cluster that ADDR (a gossip address) belongs to
  leave              make the --addr node leave the cluster gracefully (exactly one --addr)
  remove ID          remove member ID from the cluster (e.g. a node that died for good)

Run "raftkv cluster <command> --help" for a command's flags.
`

func runCluster(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintf(stderr, "raftkv: cluster needs a command\n\n%s", clusterUsage)
		return exitUsage
	}
	switch args[0] {
	case "status":
		return runClusterStatus(ctx, args[1:], stdin, stdout, stderr)
	case "ready":
		return runClusterReady(ctx, args[1:], stdout, stderr)
	case "join":
		return runClusterJoin(ctx, args[1:], stdin, stdout, stderr)
	case "leave":
		return runClusterLeave(ctx, args[1:], stdin, stdout, stderr)
	case "remove":
		return runClusterRemove(ctx, args[1:], stdin, stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, clusterUsage)
		return exitOK
	}
	fmt.Fprintf(stderr, "raftkv: unknown cluster command %q\n\n%s", args[0], clusterUsage)
	return exitUsage
}

func runClusterStatus(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := newFlagSet("cluster status", "cluster status [flags]", `
Show the cluster as seen by the first --addr node that answers: the leader, the term, the commit and
applied indexes, and every member with its Raft suffrage, gossip state and addresses.`)
	var cf clientFlags
	cf.register(fs)
	var asJSON bool
	fs.BoolVar(&asJSON, "json", false, "print the node's answer (GET /v1/cluster) as raw JSON")
	pos, code, ok := parseArgs(fs, args, stdout, stderr)
	if !ok {
		return code
	}
	if len(pos) != 0 {
		return usageError(fs, stderr, "cluster status takes no arguments")
	}
	c, err := cf.newClient(nil)
	if err != nil {
		return usageError(fs, stderr, "%v", err)
	}
	defer c.close()

	st, raw, err := c.status(ctx)
	if err != nil {
		return fail(stderr, fmt.Errorf("cluster status: %w", err))
	}
	if asJSON {
		stdout.Write(raw)
		if !bytes.HasSuffix(raw, []byte("\n")) {
			fmt.Fprintln(stdout)
		}
		return exitOK
	}
	renderStatus(stdout, st)
	return exitOK
}

func runClusterReady(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("cluster ready", "cluster ready [flags]", `
Ask the first --addr node whether it is ready (GET /readyz: a member of a cluster with a leader, caught
up with it): exit 0 when it is, 3 with the node's reason when not. It needs no token even with ACLs on,
so container healthchecks can use it.`)
	var cf clientFlags
	cf.register(fs)
	pos, code, ok := parseArgs(fs, args, stdout, stderr)
	if !ok {
		return code
	}
	if len(pos) != 0 {
		return usageError(fs, stderr, "cluster ready takes no arguments")
	}
	c, err := cf.newClient(nil)
	if err != nil {
		return usageError(fs, stderr, "%v", err)
	}
	defer c.close()
	if err := c.ready(ctx); err != nil {
		fmt.Fprintf(stderr, "raftkv: cluster ready: %v\n", err)
		return exitUnavailable
	}
	fmt.Fprintln(stdout, "ready")
	return exitOK
}

// renderStatus writes the status as a short header and an aligned member table, members sorted by id.
func renderStatus(w io.Writer, st clusterStatus) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "Node:\t%s (%s)\n", st.NodeID, strings.ToLower(orDash(st.State)))
	if l := st.Leader; l != nil {
		fmt.Fprintf(tw, "Leader:\t%s (http %s, raft %s)\n", l.ID, orDash(l.HTTPAddr), orDash(l.RaftAddr))
	} else {
		fmt.Fprintf(tw, "Leader:\tnone known\n")
	}
	fmt.Fprintf(tw, "Term:\t%d\n", st.Term)
	fmt.Fprintf(tw, "Indexes:\tcommit %d, applied %d, last log %d\n", st.CommitIndex, st.AppliedIndex, st.LastIndex)
	tw.Flush()
	fmt.Fprintln(w)

	members := slices.Clone(st.Members)
	slices.SortFunc(members, func(a, b clusterMember) int { return strings.Compare(a.ID, b.ID) })
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATE\tSUFFRAGE\tGOSSIP\tRAFT ADDR\tHTTP ADDR")
	for _, m := range members {
		state := "follower"
		switch {
		case m.Leader:
			state = "leader"
		case m.Suffrage == "none" || m.Suffrage == "":
			state = "-" // seen by gossip only, not (yet) in the Raft configuration
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", m.ID, state, orDash(m.Suffrage), orDash(m.GossipState),
			orDash(m.RaftAddr), orDash(m.HTTPAddr))
	}
	tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func runClusterJoin(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := newFlagSet("cluster join", "cluster join [flags] ADDR[,ADDR...]", `
Make each --addr node gossip-join the cluster that ADDR belongs to. ADDR is the gossip address
(host:port) of any member; with several, they are tried in turn until one works. The cluster's leader
then adds the node to Raft as a non-voter and promotes it once it has caught up.`)
	var cf clientFlags
	cf.register(fs)
	pos, code, ok := parseArgs(fs, args, stdout, stderr)
	if !ok {
		return code
	}
	var targets []string
	for _, p := range pos {
		targets = append(targets, splitAddrs(p)...)
	}
	if len(targets) == 0 {
		return usageError(fs, stderr, "cluster join needs the gossip ADDR of a cluster member")
	}
	nodes, err := cf.addrs()
	if err != nil {
		return usageError(fs, stderr, "%v", err)
	}
	// Every --addr node is told to join: failing over to another node would make a different node join.
	worst := exitOK
	for _, node := range nodes {
		c, err := cf.newClient([]string{node})
		if err != nil {
			return usageError(fs, stderr, "%v", err)
		}
		err = nil
		for _, t := range targets {
			if err = c.join(ctx, t); err == nil {
				fmt.Fprintf(stdout, "%s: joined the cluster via %s\n", node, t)
				break
			}
		}
		c.close()
		if err != nil {
			worst = max(worst, fail(stderr, fmt.Errorf("cluster join on %s: %w", node, err)))
		}
	}
	return worst
}

func runClusterLeave(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := newFlagSet("cluster leave", "cluster leave --addr host:port", `
Make the --addr node leave the cluster gracefully: it hands over leadership if it leads, is removed from
the Raft configuration, and leaves gossip. Exactly one --addr is accepted, so that a default address
list cannot make a whole cluster leave.

A leave that would leave the other voters without an answering majority (another voter is down) is
refused (exit status 1, code would_lose_quorum): bring that voter back or remove it first. --force
leaves anyway, and the cluster stops committing until enough voters return.`)
	var cf clientFlags
	cf.register(fs)
	force := fs.Bool("force", false, "leave even if the remaining voters would lose their quorum")
	pos, code, ok := parseArgs(fs, args, stdout, stderr)
	if !ok {
		return code
	}
	if len(pos) != 0 {
		return usageError(fs, stderr, "cluster leave takes no arguments; the leaving node is --addr")
	}
	nodes, err := cf.addrs()
	if err != nil {
		return usageError(fs, stderr, "%v", err)
	}
	if len(nodes) != 1 {
		return usageError(fs, stderr, "cluster leave acts on one node; give exactly one --addr (got %d)", len(nodes))
	}
	c, err := cf.newClient(nodes)
	if err != nil {
		return usageError(fs, stderr, "%v", err)
	}
	defer c.close()
	if err := c.leave(ctx, *force); err != nil {
		return fail(stderr, fmt.Errorf("cluster leave on %s: %w", nodes[0], err))
	}
	fmt.Fprintf(stdout, "%s: left the cluster\n", nodes[0])
	return exitOK
}

func runClusterRemove(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := newFlagSet("cluster remove", "cluster remove [flags] ID", `
Remove member ID from the Raft configuration, through any --addr node. Use it for a node that failed
and will not come back: a failed node stays a voter (and counts towards the quorum) until removed.
An unknown ID is exit status 1. A removal that would leave the remaining voters without an answering
majority (another voter is down too) is refused, exit status 1 (code would_lose_quorum): remove the
dead voters first, or --force it.`)
	var cf clientFlags
	cf.register(fs)
	force := fs.Bool("force", false, "remove even if the remaining voters would lose their quorum")
	pos, code, ok := parseArgs(fs, args, stdout, stderr)
	if !ok {
		return code
	}
	if len(pos) != 1 || pos[0] == "" {
		return usageError(fs, stderr, "cluster remove takes exactly one member ID")
	}
	c, err := cf.newClient(nil)
	if err != nil {
		return usageError(fs, stderr, "%v", err)
	}
	defer c.close()
	if err := c.removeMember(ctx, pos[0], *force); err != nil {
		return fail(stderr, fmt.Errorf("cluster remove %q: %w", pos[0], err))
	}
	fmt.Fprintf(stdout, "removed %s\n", pos[0])
	return exitOK
}
