// Command raftkv is raftkv's single binary: a node (serve), a local development cluster (dev), and the
// client commands that talk to any node's HTTP API (put, get, delete, list, cluster ...).
//
// This package owns flags, environment, signals and wiring. It never touches Raft, BoltDB or memberlist
// itself: serve hands them to the store, and the client commands only speak HTTP.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"syscall"
)

// version is set at link time: go build -ldflags "-X main.version=v1.2.3".
var version = "dev"

const overview = `raftkv - a strongly consistent, replicated key-value store.

Every node runs Raft and serves the same HTTP API; nodes find each other by gossip. Any node answers
any request: writes are forwarded to the leader, reads are linearizable unless --stale.

Usage:
  raftkv <command> [flags] [args]

Servers:
  serve               run one node (see "raftkv serve --help")
  dev                 run a local N-node cluster in the foreground, for development

Keys and values (talk to any node):
  put KEY [VALUE]     set KEY (VALUE from stdin when omitted or "-"); prints the write index
  get KEY             print KEY's value, byte for byte
  delete KEY          delete KEY; prints the write index
  list [PREFIX]       print "key<TAB>value" lines for the keys starting with PREFIX
  watch PREFIX        print every change under PREFIX as it happens, resuming across nodes
  txn [FILE|-]        run a JSON transaction: compares, then puts/deletes/gets applied atomically

Sessions, locks and elections:
  session create|renew|revoke|list   manage sessions (leases whose keys go when they end)
  lock NAME -- CMD    run CMD while holding lock NAME (RAFTKV_LOCK_TOKEN: its fencing token)
  elect NAME VALUE    campaign for leadership of NAME; --observe NAME prints every change of leader
  register KEY VALUE  keep an ephemeral KEY = VALUE alive in the foreground (service registration)

Cluster:
  cluster status      show the leader, term, indexes and members
  cluster ready       exit 0 when the node is ready (/readyz; no token needed: healthchecks)
  cluster join ADDR   make the --addr node gossip-join the cluster at gossip address ADDR
  cluster leave       make the --addr node leave the cluster gracefully
  cluster remove ID   remove member ID (a node that died for good)

Access control (see docs/security.md):
  acl bootstrap       create the first management token, once per cluster; prints its secret
  acl token ...       create, list, delete tokens
  acl policy ...      create, list, delete policies (key prefix rules, cluster and ACL rights)

Backups:
  snapshot save FILE      write a verified, consistent backup of every key to FILE
  snapshot inspect FILE   verify FILE and print what it holds
  snapshot restore FILE   replace every key in the running cluster with FILE's

Security:
  tls ca create       create the cluster CA (ca.pem, ca-key.pem)
  tls cert create     issue a node (--node ID) or client (--client NAME) certificate
  keyring generate    print a new gossip encryption key
  keyring list|install|use|remove   rotate the gossip keys of a running cluster

Lost quorum:
  recover             offline, on each survivor: rewrite the configuration to the survivors

Other:
  bench               generate load against a cluster; report throughput, latency and errors
  version             print the version
  help [COMMAND]      print this overview, or a command's usage

Client flags (every key, value and cluster command):
  --addr host:port[,host:port...]   nodes to try in turn (default $RAFTKV_ADDR, else 127.0.0.1:7000)
  --timeout 15s                     how long to keep retrying while there is no leader or a node is down
  --token SECRET                    ACL token sent with every request (default $RAFTKV_TOKEN)

Environment:
  RAFTKV_ADDR   default for --addr
  RAFTKV_TOKEN  default for --token

Exit status:
  0 ok; 1 key not found, unknown member, cas failed, or a removal refused because it would lose the
  quorum; 2 usage error or request rejected as invalid;
  3 unavailable, timed out, write outcome unknown, or any other error; 6 a lock or leadership was lost
  while held (lock, elect); 5 refused by the ACLs (no token, unknown token, or a right missing)

Example:
  raftkv dev --nodes 3                         # in one terminal (or: make run)
  export RAFTKV_ADDR=127.0.0.1:7000,127.0.0.1:7010,127.0.0.1:7020
  raftkv put greeting hello
  raftkv get greeting
  echo '{"debug":true}' | raftkv put config/app --cas 0
  raftkv list config/
  raftkv cluster status
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// After the first signal, restore the default handling: a second Ctrl-C kills the process at once.
	go func() {
		<-ctx.Done()
		stop()
	}()
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run dispatches on the first argument and returns the exit status.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, overview)
		return exitUsage
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "-h", "-help", "--help", "help":
		if len(rest) > 0 { // "raftkv help put" is "raftkv put --help"
			return run(ctx, append(rest, "--help"), stdin, stdout, stderr)
		}
		fmt.Fprint(stdout, overview)
		return exitOK
	case "version", "-version", "--version":
		if len(rest) > 0 {
			fmt.Fprintf(stderr, "raftkv: version takes no arguments\n\nUsage: raftkv version\n")
			return exitUsage
		}
		fmt.Fprintf(stdout, "raftkv %s (%s, %s/%s)\n", version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
		return exitOK
	case "serve":
		return runServe(ctx, rest, stdout, stderr)
	case "dev":
		return runDev(ctx, rest, stdin, stdout, stderr)
	case "put":
		return runPut(ctx, rest, stdin, stdout, stderr)
	case "get":
		return runGet(ctx, rest, stdin, stdout, stderr)
	case "delete":
		return runDelete(ctx, rest, stdin, stdout, stderr)
	case "list":
		return runList(ctx, rest, stdin, stdout, stderr)
	case "watch":
		return runWatch(ctx, rest, stdin, stdout, stderr)
	case "txn":
		return runTxn(ctx, rest, stdin, stdout, stderr)
	case "cluster":
		return runCluster(ctx, rest, stdin, stdout, stderr)
	case "acl":
		return runACL(ctx, rest, stdin, stdout, stderr)
	case "recover":
		return runRecover(ctx, rest, stdout, stderr)
	case "snapshot":
		return runSnapshot(ctx, rest, stdin, stdout, stderr)
	case "bench":
		return runBench(ctx, rest, stdin, stdout, stderr)
	case "tls":
		return runTLS(ctx, rest, stdout, stderr)
	case "session":
		return runSession(ctx, rest, stdin, stdout, stderr)
	case "lock":
		return runLock(ctx, rest, stdin, stdout, stderr)
	case "elect":
		return runElect(ctx, rest, stdin, stdout, stderr)
	case "register":
		return runRegister(ctx, rest, stdin, stdout, stderr)
	case "keyring":
		return runKeyring(ctx, rest, stdout, stderr)
	}
	fmt.Fprintf(stderr, "raftkv: unknown command %q\n\n%s", cmd, overview)
	return exitUsage
}
