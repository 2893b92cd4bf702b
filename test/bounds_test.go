package test

import (
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/raftkv/raftkv/test/harness"
)

// Issue 11's floods against real processes: after each one ends, the node serves normally within
// seconds, and every write acknowledged around it is there.

// recovered: a write through node i and a linearizable read of it on every node succeed within 10 s.
func recovered(t *testing.T, c *harness.Cluster, i int, key string) {
	t.Helper()
	harness.WaitFor(t, 10*time.Second, fmt.Sprintf("%s serves writes", c.Node(i).ID), func() error {
		if r := c.Node(i).Put(key, []byte("v")); !r.OK() {
			return fmt.Errorf("put %s: %s", key, r)
		}
		return nil
	})
	for _, j := range c.Live() {
		r := c.Node(j).Get(key)
		require.True(t, r.OK(), "%s get %s: %s", c.Node(j).ID, key, r)
	}
}

func openFDs(t *testing.T, pid int) int {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	require.NoError(t, err)
	return len(ents)
}

func procStatus(t *testing.T, pid int, field string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	require.NoError(t, err)
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			require.NoError(t, err)
			return kb << 10
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

// dialMany opens n connections to addr and writes hello on each; they are closed by the returned func
// and by t.Cleanup.
func dialMany(t *testing.T, addr string, n int, hello []byte) (closeAll func()) {
	var conns []net.Conn
	closeAll = func() {
		for _, c := range conns {
			c.Close()
		}
		conns = nil
	}
	t.Cleanup(closeAll)
	for range n {
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			continue // refused or reset under the flood: that is what the bound is for
		}
		conns = append(conns, c)
		c.SetWriteDeadline(time.Now().Add(time.Second))
		c.Write(hello)
	}
	return closeAll
}

func TestNodeServesWithinSecondsAfterEachFlood(t *testing.T) {
	c := harness.StartCluster(t, 3, harness.Options{
		LogLevel:  "info",
		ExtraArgs: []string{"--http-body-timeout", "2s", "--http-max-conns", "300"},
	})
	leader := c.Leader(t)
	follower := others(3, leader)[0]
	recovered(t, c, follower, "before")

	t.Run("slow HTTP clients", func(t *testing.T) {
		// 600 PUTs that announce 1 MiB and send nothing: twice the connection cap.
		pid := c.PID(follower)
		closeAll := dialMany(t, c.Node(follower).HTTPAddr, 600,
			[]byte("PUT /v1/kv/slow HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\n"))
		require.Less(t, procStatus(t, pid, "VmRSS"), int64(400<<20), "bodies never sent take no memory")
		// The deadline closes them even while the client keeps them open.
		harness.WaitFor(t, 15*time.Second, "silent bodies cut off", func() error {
			if n := openFDs(t, pid); n > 200 {
				return fmt.Errorf("%d descriptors open", n)
			}
			return nil
		})
		recovered(t, c, follower, "after-slow-http") // while the flood's sockets are still open here
		closeAll()
	})

	t.Run("stalled node-port frames", func(t *testing.T) {
		pid := c.PID(follower)
		frame := []byte{'S'} // the RPC protocol, then a request announcing 200 MiB, and a few bytes of it
		frame = binary.BigEndian.AppendUint64(frame, 1)
		frame = append(frame, 1, 'x')
		frame = binary.BigEndian.AppendUint32(frame, 200<<20)
		frame = append(frame, "abc"...)
		before := procStatus(t, pid, "VmSize")
		closeAll := dialMany(t, c.Node(follower).RaftAddr, 300, frame)
		recovered(t, c, follower, "during-stalled-frames")
		grown := procStatus(t, pid, "VmSize") - before
		require.Less(t, grown, int64(2<<30), "300 frames announcing 200 MiB each grew the process by %d MiB", grown>>20)
		closeAll()
		recovered(t, c, follower, "after-stalled-frames")
	})

	t.Run("descriptor shortage on the leader", func(t *testing.T) {
		if _, err := exec.LookPath("prlimit"); err != nil {
			t.Skip("needs prlimit (util-linux)")
		}
		pid := c.PID(leader)
		soft := func(n string) {
			out, err := exec.Command("prlimit", "--pid", strconv.Itoa(pid), "--nofile="+n+":").CombinedOutput()
			require.NoError(t, err, "%s", out)
		}
		out, err := exec.Command("prlimit", "--pid", strconv.Itoa(pid), "--nofile", "--output=SOFT", "--noheadings").Output()
		require.NoError(t, err)
		orig := strings.TrimSpace(string(out))
		t.Cleanup(func() { soft(orig) })
		soft(strconv.Itoa(openFDs(t, pid) + 8))
		// Use up the rest: accepts on both ports now fail with EMFILE for a while.
		closeRaft := dialMany(t, c.Node(leader).RaftAddr, 50, nil)
		closeHTTP := dialMany(t, c.Node(leader).HTTPAddr, 50, nil)
		time.Sleep(2 * time.Second) // the shortage lasts a while; nothing to wait for, it is the fault itself
		closeRaft()
		closeHTTP()
		soft(orig)
		// A restarted follower needs a new connection to the leader's node port to forward writes.
		c.Kill9(follower)
		c.Restart(follower)
		c.WaitReady(t, follower)
		recovered(t, c, follower, "after-fd-shortage")
	})

	// Every acknowledged write is still there.
	for _, k := range []string{"before", "after-slow-http", "during-stalled-frames", "after-stalled-frames", "after-fd-shortage"} {
		r := c.Node(leader).Get(k)
		require.True(t, r.OK(), "%s: %s", k, r)
	}
}
