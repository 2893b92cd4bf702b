package harness

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
)

// Ports are handed out from below the kernel's ephemeral range rather than from 127.0.0.1:0:
// a node restarted "on the same ports" must find them free, and a port the kernel picked for a
// listener can meanwhile be given to any outgoing connection (HTTP clients, Raft, gossip) as its
// local port. Each candidate is checked free for TCP and UDP (memberlist uses both on one port)
// and never handed out twice by this process. Start still retries when a bind fails anyway.

var ports struct {
	mu   sync.Mutex
	used map[int]bool
}

// FreePort returns a port on 127.0.0.1 that is currently free for TCP and UDP.
func FreePort() (int, error) {
	ports.mu.Lock()
	defer ports.mu.Unlock()
	if ports.used == nil {
		ports.used = map[int]bool{}
	}
	lo, hi := 20000, ephemeralLow()
	for attempt := 0; attempt < 200; attempt++ {
		var p int
		if hi-lo >= 1000 {
			p = lo + rand.IntN(hi-lo)
		} else { // odd kernel configuration: fall back to a kernel-chosen port
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				return 0, err
			}
			p = l.Addr().(*net.TCPAddr).Port
			l.Close()
		}
		if ports.used[p] || !portFree(p) {
			continue
		}
		ports.used[p] = true
		return p, nil
	}
	return 0, fmt.Errorf("no free port found")
}

func portFree(p int) bool {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return false
	}
	defer l.Close()
	u, err := net.ListenPacket("udp", addr)
	if err != nil {
		return false
	}
	u.Close()
	return true
}

// ephemeralLow is the bottom of the kernel's ephemeral port range (Linux), or 32768.
func ephemeralLow() int {
	data, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	fields := strings.Fields(string(data))
	if len(fields) < 1 {
		return 32768
	}
	n, err := strconv.Atoi(fields[0])
	if err != nil {
		return 32768
	}
	return n
}
