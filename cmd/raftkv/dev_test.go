package main

import (
	"bytes"
	"context"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestDevNodes(t *testing.T) {
	t.Parallel()
	nodes, err := devNodes(devConfig{nodes: 3, dataDir: "data", basePort: 7000, logLevel: "debug", readyTimeout: time.Second})
	require.NoError(t, err)
	require.Len(t, nodes, 3)
	n2 := nodes[1]
	assert.Equal(t, "node2", n2.id)
	assert.Equal(t, "127.0.0.1:7010", n2.httpAddr)
	assert.Equal(t, "127.0.0.1:7011", n2.raftAddr)
	assert.Equal(t, "127.0.0.1:7012", n2.gossipAddr)
	assert.Equal(t, filepath.Join("data", "node2"), n2.dataDir)
	assert.Equal(t, []string{"serve",
		"--id", "node2",
		"--data-dir", filepath.Join("data", "node2"),
		"--http-addr", "127.0.0.1:7010",
		"--raft-addr", "127.0.0.1:7011",
		"--gossip-addr", "127.0.0.1:7012",
		"--bootstrap-expect", "3",
		"--join", "127.0.0.1:7002,127.0.0.1:7022",
		"--log-level", "debug",
	}, n2.args)
	assert.Equal(t, "127.0.0.1:7020", nodes[2].httpAddr)
	assert.Contains(t, strings.Join(nodes[0].args, " "), "--join 127.0.0.1:7012,127.0.0.1:7022")

	solo, err := devNodes(devConfig{nodes: 1, dataDir: "d", basePort: 9000, logLevel: "info", readyTimeout: time.Second})
	require.NoError(t, err)
	assert.NotContains(t, solo[0].args, "--join", "a lone node has no one to join")
	assert.Contains(t, strings.Join(solo[0].args, " "), "--bootstrap-expect 1")

	for _, bad := range []devConfig{
		{nodes: 0, dataDir: "d", basePort: 7000, logLevel: "info", readyTimeout: time.Second},
		{nodes: 3, dataDir: "", basePort: 7000, logLevel: "info", readyTimeout: time.Second},
		{nodes: 3, dataDir: "d", basePort: 65520, logLevel: "info", readyTimeout: time.Second},
		{nodes: 3, dataDir: "d", basePort: 0, logLevel: "info", readyTimeout: time.Second},
	} {
		_, err := devNodes(bad)
		assert.Error(t, err, "%+v", bad)
	}
}

func TestPrefixWriter(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var out bytes.Buffer
	p := &prefixWriter{mu: &mu, w: &out, prefix: "[node1] "}
	for _, chunk := range []string{"hel", "lo\nwor", "ld\n\nlast"} {
		n, err := p.Write([]byte(chunk))
		require.NoError(t, err)
		require.Equal(t, len(chunk), n)
	}
	assert.Equal(t, "[node1] hello\n[node1] world\n[node1] \n", out.String())
	p.flush()
	assert.Equal(t, "[node1] hello\n[node1] world\n[node1] \n[node1] last\n", out.String())

	out.Reset()
	p.Write(bytes.Repeat([]byte("x"), maxPartialLine+1))
	assert.Equal(t, 1, strings.Count(out.String(), "\n"), "an endless line is cut, not buffered forever")
}

// freeBasePort finds a port p with p and p+10 free, for a two-node dev cluster of fake nodes.
func freeBasePort(t *testing.T) int {
	t.Helper()
	for range 50 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		p := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if p+12 > 65535 {
			continue
		}
		l2, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p+10))
		if err != nil {
			continue
		}
		l2.Close()
		return p
	}
	t.Fatal("no free port pair found")
	return 0
}

// The dev cluster, with the test binary standing in for `raftkv serve` (see TestMain): it starts the
// nodes, prefixes their output, sees them ready, and stops them all when its context ends.
func TestDevClusterLifecycle(t *testing.T) {
	t.Setenv(fakeServeEnv, "1")
	base := freeBasePort(t)
	dir := t.TempDir()
	var stdout, stderr syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan int, 1)
	go func() {
		done <- runDev(ctx, []string{"--nodes", "2", "--base-port", strconv.Itoa(base), "--data-dir", dir}, nil, &stdout, &stderr)
	}()

	require.Eventually(t, func() bool { return strings.Contains(stdout.String(), "cluster ready") },
		20*time.Second, 20*time.Millisecond, "stdout: %s\nstderr: %s", &stdout, &stderr)
	out := stdout.String()
	assert.Contains(t, out, "raftkv dev: cluster ready: leader node1")
	assert.Contains(t, out, "[node1] fake node1 up\n")
	assert.Contains(t, out, "[node2] fake node2 up\n")
	assert.Contains(t, out, "--join 127.0.0.1:"+strconv.Itoa(base+2))
	assert.Contains(t, out, "raftkv get hello --addr 127.0.0.1:"+strconv.Itoa(base+10))
	assert.Contains(t, stderr.String(), "[node2] fake node2 log line on stderr\n")
	assert.DirExists(t, filepath.Join(dir, "node2"))

	cancel()
	select {
	case code := <-done:
		assert.Equal(t, 0, code)
	case <-time.After(30 * time.Second):
		t.Fatal("dev did not stop")
	}
	out = stdout.String()
	assert.Contains(t, out, "[node1] fake node1 stopping\n")
	assert.Contains(t, out, "[node2] fake node2 stopping\n")
	assert.Contains(t, out, "raftkv dev: node1 stopped (exit status 0)")
	assert.Contains(t, out, "raftkv dev: node2 stopped (exit status 0)")
	assert.NotContains(t, stderr.String(), "unexpectedly")
}

func TestDevClusterReportsADeadNodeAndKeepsTheOthers(t *testing.T) {
	t.Setenv(fakeServeEnv, "1")
	t.Setenv(fakeCrashEnv, "node2")
	base := freeBasePort(t)
	var stdout, stderr syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan int, 1)
	go func() {
		done <- runDev(ctx, []string{"--nodes", "2", "--base-port", strconv.Itoa(base), "--data-dir", t.TempDir()}, nil, &stdout, &stderr)
	}()

	require.Eventually(t, func() bool {
		return strings.Contains(stderr.String(), "node2 exited unexpectedly") && strings.Contains(stdout.String(), "fake node1 up")
	}, 20*time.Second, 20*time.Millisecond, "stdout: %s\nstderr: %s", &stdout, &stderr)
	assert.Contains(t, stderr.String(), "[node2] fake node2 crashing\n")
	assert.Contains(t, stderr.String(), "exit status 7; 1 still running")

	cancel()
	select {
	case code := <-done:
		assert.Equal(t, 0, code)
	case <-time.After(30 * time.Second):
		t.Fatal("dev did not stop")
	}
	assert.Contains(t, stdout.String(), "[node1] fake node1 stopping\n")
}
