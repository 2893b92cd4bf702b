package chaos

// netfault.go: network faults inside the containers' network namespaces, entered with nsenter from the
// host. The host's own firewall and interfaces are never touched, and everything installed here dies
// with the container's namespace (a restarted container starts clean), so removing the containers is
// the cleanup of last resort; HealNet removes the faults of a running node.
//
// Mechanisms (the kernel here has no sch_netem, so there is no `tc ... netem delay`):
//   - partitions: iptables DROP of packets *from* the cut-off peers' addresses, in a chain of our own
//     hooked into INPUT and OUTPUT. Cutting both directions = each side drops what the other sends;
//     an asymmetric cut installs only one side. Client traffic comes from the bridge gateway (the
//     127.0.0.1 port publishing), so clients still reach every node.
//   - loss: iptables `-m statistic --mode random --probability p -j DROP` on traffic from and to peers.
//     For TCP (Raft, forwarding, gossip's fallback) loss turns into delay and jitter: each lost segment
//     costs a retransmission timeout (200 ms minimum, doubling on repeated loss); gossip's UDP probes
//     are lost outright, which drives suspicion.
//   - bandwidth: `tc qdisc tbf` on the node's interface (egress): a rate cap whose queue (bounded by the
//     tbf latency) adds queueing delay whenever the node sends faster than the rate (log replication
//     bursts, snapshots, catch-up).

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"
)

const fwChain = "RAFTKV-CHAOS"

// nsenter runs a command in n's network namespace.
func (c *Cluster) nsenter(n *Node, args ...string) (string, error) {
	_, pid := n.control()
	if pid == 0 {
		return "", fmt.Errorf("%s is %s: no network namespace", n, n.State())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return runCmd(ctx, "nsenter", append([]string{"-t", strconv.Itoa(pid), "-n", "--"}, args...)...)
}

func (c *Cluster) iptables(n *Node, args ...string) error {
	_, err := c.nsenter(n, append([]string{"iptables", "-w", "10"}, args...)...)
	return err
}

// ensureChain creates our chain in n's namespace and hooks it into INPUT and OUTPUT, once.
func (c *Cluster) ensureChain(n *Node) error {
	if err := c.iptables(n, "-N", fwChain); err != nil && !strings.Contains(err.Error(), "exists") {
		return err
	}
	for _, hook := range []string{"INPUT", "OUTPUT"} {
		if c.iptables(n, "-C", hook, "-j", fwChain) != nil {
			if err := c.iptables(n, "-I", hook, "-j", fwChain); err != nil {
				return err
			}
		}
	}
	return nil
}

// Deafen makes n drop everything it receives from each of peers (one direction only).
func (c *Cluster) Deafen(n *Node, peers ...*Node) error {
	if err := c.ensureChain(n); err != nil {
		return err
	}
	for _, p := range peers {
		if p == n {
			continue
		}
		if err := c.iptables(n, "-A", fwChain, "-s", p.IP(), "-j", "DROP"); err != nil {
			return err
		}
	}
	return nil
}

// Partition cuts every node of a from every node of b, both directions.
func (c *Cluster) Partition(a, b []*Node) error {
	c.Logf("partition %v | %v", a, b)
	for _, n := range a {
		if err := c.Deafen(n, b...); err != nil {
			return err
		}
	}
	for _, n := range b {
		if err := c.Deafen(n, a...); err != nil {
			return err
		}
	}
	return nil
}

// Lossy drops a random fraction p of the packets n exchanges with each of peers, both directions.
func (c *Cluster) Lossy(n *Node, p float64, peers ...*Node) error {
	if err := c.ensureChain(n); err != nil {
		return err
	}
	prob := strconv.FormatFloat(p, 'f', 3, 64)
	for _, peer := range peers {
		if peer == n {
			continue
		}
		for _, dir := range []string{"-s", "-d"} {
			if err := c.iptables(n, "-A", fwChain, dir, peer.IP(), "-m", "statistic", "--mode", "random",
				"--probability", prob, "-j", "DROP"); err != nil {
				return err
			}
		}
	}
	return nil
}

// Throttle caps n's outgoing bandwidth with a token bucket whose queue holds up to latency of data.
func (c *Cluster) Throttle(n *Node, rate string, latency time.Duration) error {
	dev, err := c.iface(n)
	if err != nil {
		return err
	}
	_, err = c.nsenter(n, "tc", "qdisc", "replace", "dev", dev, "root", "tbf",
		"rate", rate, "burst", "32kbit", "latency", strconv.Itoa(int(latency/time.Millisecond))+"ms")
	return err
}

// iface is the name of n's interface on the cluster network.
func (c *Cluster) iface(n *Node) (string, error) {
	out, err := c.nsenter(n, "ip", "-o", "-4", "addr", "show")
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		// "2: eth0    inet 10.1.2.3/24 brd ..."
		if len(f) >= 4 && f[2] == "inet" && strings.HasPrefix(f[3], n.IP()+"/") {
			dev, _, _ := strings.Cut(f[1], "@")
			return dev, nil
		}
	}
	return "", fmt.Errorf("%s: no interface with address %s in:\n%s", n, n.IP(), out)
}

// HealNet removes every network fault from n: flushes our chain, deletes the root qdisc.
func (c *Cluster) HealNet(n *Node) error {
	if _, pid := n.control(); pid == 0 {
		return nil // not running: its namespace, and the faults in it, are gone
	}
	if err := c.iptables(n, "-F", fwChain); err != nil && !strings.Contains(err.Error(), "No chain") &&
		!strings.Contains(err.Error(), "does not exist") {
		return err
	}
	if dev, err := c.iface(n); err == nil {
		// Fails harmlessly when there is no qdisc of ours ("Cannot delete qdisc with handle of zero").
		_, _ = c.nsenter(n, "tc", "qdisc", "del", "dev", dev, "root")
	}
	return nil
}

// HealNetAll removes the network faults of every running member.
func (c *Cluster) HealNetAll() error {
	c.Logf("heal network")
	var firstErr error
	for _, n := range c.Up() {
		if err := c.HealNet(n); err != nil && firstErr == nil {
			firstErr = err
		}
	}
	return firstErr
}
