package main

// procs.go: the child processes (raftkv nodes, etcd members, ceiling servers) and the ports they listen
// on. Every child is started here and stopped here: its own process group (a terminal's Ctrl-C reaches
// only this process, which then stops the children in order), SIGKILL from the kernel if this process
// dies first, output to a log file in the run's temp dir (shown when the child fails).

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const stopTimeout = 15 * time.Second // SIGTERM, then SIGKILL after this long

// proc is one running child.
type proc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{} // closed when the process has exited
	err     error         // its exit status; valid after done
}

// startProc runs exe args with output to logPath.
func startProc(name, logPath, exe string, args ...string) (*proc, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = childSysProcAttr()
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// failure describes an exited process with the tail of its log.
func (p *proc) failure() error {
	return fmt.Errorf("%s exited (%v); the end of its log %s:\n%s", p.name, p.err, p.logPath, tail(p.logPath, 15))
}

// stopAll sends SIGTERM to every live process, waits, and kills those still running after stopTimeout.
func stopAll(procs []*proc) {
	for _, p := range procs {
		if p != nil && !p.exited() {
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
		}
	}
	deadline := time.After(stopTimeout)
	for _, p := range procs {
		if p == nil {
			continue
		}
		select {
		case <-p.done:
		case <-deadline:
			for _, q := range procs {
				if q != nil && !q.exited() {
					fmt.Fprintf(os.Stderr, "benchall: %s did not stop within %s; killing it\n", q.name, stopTimeout)
					_ = q.cmd.Process.Kill()
				}
			}
			<-p.done
		}
	}
}

func tail(path string, lines int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "  (" + err.Error() + ")"
	}
	ls := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(ls) > lines {
		ls = ls[len(ls)-lines:]
	}
	return "  " + strings.Join(ls, "\n  ")
}

// waitFor polls check every 100 ms until it succeeds, a process exits, or the timeout passes.
func waitFor(ctx context.Context, what string, timeout time.Duration, procs []*proc, check func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		for _, p := range procs {
			if p.exited() {
				return p.failure()
			}
		}
		cctx, ccancel := context.WithTimeout(ctx, 2*time.Second)
		last = check(cctx)
		ccancel()
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("%s not ready after %s: %w", what, timeout, last)
			}
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// freePorts returns n distinct loopback ports that are free for TCP and, with udp, for UDP too (raftkv's
// gossip uses both on one port). Another process could take one before the child binds it; a child that
// then fails to start says so in its log.
func freePorts(n int, udp bool) ([]int, error) {
	var ports []int
	var held []net.Listener
	defer func() {
		for _, l := range held {
			l.Close()
		}
	}()
	for tries := 0; len(ports) < n; tries++ {
		if tries > 100*n {
			return nil, errors.New("no free loopback ports")
		}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		port := l.Addr().(*net.TCPAddr).Port
		if udp {
			u, err := net.ListenPacket("udp", "127.0.0.1:"+strconv.Itoa(port))
			if err != nil {
				l.Close()
				continue
			}
			u.Close()
		}
		held = append(held, l) // hold it until all are chosen, so no port is returned twice
		ports = append(ports, port)
	}
	return ports, nil
}

func loopback(port int) string { return "127.0.0.1:" + strconv.Itoa(port) }
