package client_test

import (
	"flag"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/raftkv/raftkv/httpapi"
	"github.com/raftkv/raftkv/store"
	"github.com/raftkv/raftkv/watch"
)

// node is the host:port of a one-node cluster, in this process, that the package's Examples run
// against: they are run by `go test`, and their output is checked. (Only this test file imports the
// server packages, to run one; the client package itself speaks the wire contract and imports nothing
// of raftkv. A process per test run, as test/harness starts, would cost a build of the binary.)
var node string

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(runWithNode(m))
}

func runWithNode(m *testing.M) int {
	dir, err := os.MkdirTemp("", "raftkv-client-examples-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	logger := slog.New(slog.DiscardHandler)
	hub := watch.New(watch.Config{})
	st, err := store.Open(store.Config{NodeID: "n1", DataDir: dir, RaftAddr: "127.0.0.1:0", GossipAddr: "127.0.0.1:0",
		BootstrapExpect: 1, Changes: hub, Logger: logger})
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting the examples' node:", err)
		return 1
	}
	defer st.Close()
	stop := make(chan struct{})
	srv := httptest.NewServer(httpapi.New(st, httpapi.Options{Watch: hub, Stop: stop}, logger))
	defer srv.Close()
	defer close(stop)
	// Ready: elected itself and applied its first entries. Bounded, checked every 20 ms.
	deadline := time.Now().Add(30 * time.Second)
	for st.Ready() != nil {
		if time.Now().After(deadline) {
			fmt.Fprintln(os.Stderr, "the examples' node never became ready:", st.Ready())
			return 1
		}
		<-time.After(20 * time.Millisecond)
	}
	node = srv.Listener.Addr().String()
	return m.Run()
}
