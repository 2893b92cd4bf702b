package chaos

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Issue 11's resource faults: floods of connections that hold what a node gives them, and a shortage
// of file descriptors. Each is lifted (connections closed, limit restored) before its nemesis returns.

const raftPort = 7001

// flood holds connections to one address open until closed.
type flood struct {
	mu    sync.Mutex
	conns []net.Conn
	stop  chan struct{}
	wg    sync.WaitGroup
}

// openFlood dials n connections to addr and writes first on each. With dribble set it then writes one
// byte of dribble every dribbleEvery until closed (a body sent slowly).
func openFlood(addr string, n int, first []byte, dribble bool) *flood {
	f := &flood{stop: make(chan struct{})}
	for range n {
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			continue // refused under the flood: the bound at work
		}
		c.SetWriteDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Write(first); err != nil {
			c.Close()
			continue
		}
		f.conns = append(f.conns, c)
		if dribble {
			f.wg.Add(1)
			go func() {
				defer f.wg.Done()
				t := time.NewTicker(500 * time.Millisecond)
				defer t.Stop()
				for {
					select {
					case <-f.stop:
						return
					case <-t.C:
					}
					c.SetWriteDeadline(time.Now().Add(time.Second))
					if _, err := c.Write([]byte("x")); err != nil {
						return
					}
				}
			}()
		}
	}
	return f
}

func (f *flood) open() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.conns)
}

func (f *flood) close() {
	close(f.stop)
	f.mu.Lock()
	for _, c := range f.conns {
		c.Close()
	}
	f.conns = nil
	f.mu.Unlock()
	f.wg.Wait()
}

// slowClients floods n's HTTP port with PUTs that announce 1 MiB and send nothing, and with PUTs that
// send their body a byte at a time, for as long as a partition lasts.
func (s *run) slowClients(n *Node) error {
	addr := net.JoinHostPort(n.IP(), strconv.Itoa(httpPort))
	head := []byte("PUT /v1/kv/flood HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\n")
	silent := openFlood(addr, 1500, head, false)
	slow := openFlood(addr, 300, head, true)
	s.c.Logf("slow clients on %s: %d silent, %d dribbling", n, silent.open(), slow.open())
	s.hold(s.timing.partition)
	silent.close()
	slow.close()
	s.healed()
	return s.everyNodeServes()
}

// stalledFrames opens connections to n's node port that announce a 200 MiB RPC frame and stall.
func (s *run) stalledFrames(n *Node) error {
	frame := []byte{'S'}
	frame = binary.BigEndian.AppendUint64(frame, 1)
	frame = append(frame, 1, 'x')
	frame = binary.BigEndian.AppendUint32(frame, 200<<20)
	frame = append(frame, "abc"...)
	f := openFlood(net.JoinHostPort(n.IP(), strconv.Itoa(raftPort)), 300, frame, false)
	s.c.Logf("stalled frames on %s: %d connections", n, f.open())
	s.hold(s.timing.partition)
	f.close()
	s.healed()
	return s.everyNodeServes()
}

// fdShortage lowers n's descriptor limit to what it has open plus a few and uses up the rest with
// connections to both its ports, so every accept fails with EMFILE for a while; then lifts it. With
// restartOther, a member then restarts: it needs new connections to n's ports, which a node port that
// stopped accepting for good would refuse.
func (s *run) fdShortage(n *Node, restartOther bool) error {
	_, pid := n.control()
	if pid == 0 {
		return fmt.Errorf("%s is %s: no process", n, n.State())
	}
	orig, err := prlimitSoft(pid, "")
	if err != nil {
		return err
	}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return err
	}
	if _, err := prlimitSoft(pid, strconv.Itoa(len(fds)+8)); err != nil {
		return err
	}
	defer prlimitSoft(pid, orig) // also when the cycle fails half-way
	raft := openFlood(net.JoinHostPort(n.IP(), strconv.Itoa(raftPort)), 50, []byte{}, false)
	httpF := openFlood(net.JoinHostPort(n.IP(), strconv.Itoa(httpPort)), 50, []byte{}, false)
	s.c.Logf("descriptor shortage on %s (limit %d)", n, len(fds)+8)
	s.hold(s.timing.pause)
	raft.close()
	httpF.close()
	if _, err := prlimitSoft(pid, orig); err != nil {
		return err
	}
	s.healed()
	if restartOther {
		if err := s.killRestart(s.others(n)[s.rng.IntN(len(s.others(n)))]); err != nil {
			return err
		}
	}
	return s.everyNodeServes()
}

// everyNodeServes waits until the cluster is healthy and a write through every member succeeds:
// readiness alone did not tell a node whose port had stopped accepting (its followers ready, their
// forwarded writes failing).
func (s *run) everyNodeServes() error {
	if _, err := s.c.WaitHealthy(s.sc.bound); err != nil {
		return err
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, n := range s.c.Members() {
		for {
			r := n.Client().Put("issue11-probe/"+n.ID, []byte("v"))
			if r.OK() {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s does not serve writes 30 s after the cluster is healthy: %v", n, r)
			}
			time.Sleep(100 * time.Millisecond) // a poll with a deadline
		}
	}
	return nil
}

// prlimitSoft sets pid's soft RLIMIT_NOFILE to limit (unless empty) and returns the one before. It
// runs prlimit as the process's own user: root here may lack CAP_SYS_RESOURCE over a container's
// process, and a process's owner may always move its soft limit below the hard one.
func prlimitSoft(pid int, limit string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return "", err
	}
	uid, gid := "0", "0"
	for _, line := range strings.Split(string(status), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "Uid:" {
			uid = f[1]
		} else if len(f) >= 2 && f[0] == "Gid:" {
			gid = f[1]
		}
	}
	as := []string{"--reuid=" + uid, "--regid=" + gid, "--clear-groups", "prlimit", "--pid", strconv.Itoa(pid)}
	out, err := runCmd(ctx, "setpriv", append(as, "--nofile", "--output=SOFT", "--noheadings")...)
	if err != nil {
		return "", fmt.Errorf("prlimit: %w", err)
	}
	before := strings.TrimSpace(out)
	if limit != "" {
		if _, err := runCmd(ctx, "setpriv", append(as, "--nofile="+limit+":")...); err != nil {
			return "", fmt.Errorf("prlimit %s: %w", limit, err)
		}
	}
	return before, nil
}
