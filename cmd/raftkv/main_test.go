package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"testing"
)

// fakeServeEnv makes the test binary, when started as "<test binary> serve ...", act as a minimal node:
// it serves /readyz and /v1/cluster on --http-addr until SIGTERM. The dev tests start it through
// os.Executable(), exactly as `raftkv dev` starts real nodes.
const (
	fakeServeEnv = "RAFTKV_TEST_FAKE_SERVE"
	fakeCrashEnv = "RAFTKV_TEST_FAKE_CRASH" // the node id that exits at once with status 7
)

func TestMain(m *testing.M) {
	if os.Getenv(fakeServeEnv) == "1" && len(os.Args) > 1 && os.Args[1] == "serve" {
		os.Exit(fakeServe(os.Args[2:]))
	}
	os.Exit(m.Run())
}

func fakeServe(args []string) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	id := fs.String("id", "", "")
	httpAddr := fs.String("http-addr", "", "")
	for _, name := range []string{"data-dir", "raft-addr", "gossip-addr", "bootstrap-expect", "join", "log-level"} {
		fs.String(name, "", "")
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	if os.Getenv(fakeCrashEnv) == *id {
		fmt.Fprintf(os.Stderr, "fake %s crashing", *id) // no newline: the prefix writer flushes it
		return 7
	}
	ln, err := net.Listen("tcp", *httpAddr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 3
	}
	status, _ := json.Marshal(clusterStatus{NodeID: *id, State: "Follower",
		Leader: &clusterMember{ID: "node1", HTTPAddr: "127.0.0.1:1"}})
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/readyz":
			w.Write([]byte(`{"status":"ready"}`))
		case "/v1/cluster":
			w.Write(status)
		default:
			http.NotFound(w, r)
		}
	})}
	go srv.Serve(ln)
	fmt.Printf("fake %s up\nargs %v\n", *id, args)
	fmt.Fprintf(os.Stderr, "fake %s log line on stderr\n", *id)
	<-ctx.Done()
	srv.Close()
	fmt.Printf("fake %s stopping\n", *id)
	return 0
}
