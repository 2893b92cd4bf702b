package transport

import (
	"errors"
	"fmt"
	"net"
	"strconv"
)

// resolveAdvertise turns an advertise setting into a concrete ip:port that other nodes can dial.
// advertise may name a host (a container's service name resolves to its IP). When it is empty and the
// bind address is a wildcard, the machine's first private IPv4 address is used, as Consul does, so a
// container binding 0.0.0.0 needs no extra flags.
func resolveAdvertise(bind net.Addr, advertise string) (*net.TCPAddr, error) {
	bound, ok := bind.(*net.TCPAddr)
	if !ok {
		return nil, fmt.Errorf("unexpected bind address type %T", bind)
	}
	if advertise == "" {
		if !bound.IP.IsUnspecified() {
			return bound, nil
		}
		ip, err := privateIP()
		if err != nil {
			return nil, fmt.Errorf("address %s binds all interfaces and no advertise address is set: %w", bound, err)
		}
		return &net.TCPAddr{IP: ip, Port: bound.Port}, nil
	}
	host, portStr, err := net.SplitHostPort(advertise)
	if err != nil {
		return nil, fmt.Errorf("advertise address %q: %w", advertise, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port <= 0 || port > 65535 {
		return nil, fmt.Errorf("advertise address %q: bad port", advertise)
	}
	ip := net.ParseIP(host)
	if ip == nil {
		ips, err := net.LookupIP(host)
		if err != nil || len(ips) == 0 {
			return nil, fmt.Errorf("advertise address %q: cannot resolve %s: %v", advertise, host, err)
		}
		ip = ips[0]
		for _, candidate := range ips {
			if candidate.To4() != nil {
				ip = candidate
				break
			}
		}
	}
	if ip.IsUnspecified() {
		return nil, fmt.Errorf("advertise address %q must be an address other nodes can reach", advertise)
	}
	return &net.TCPAddr{IP: ip, Port: port}, nil
}

func privateIP() (net.IP, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, fmt.Errorf("list interface addresses: %w", err)
	}
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if ok && ipn.IP.To4() != nil && ipn.IP.IsPrivate() {
			return ipn.IP, nil
		}
	}
	return nil, errors.New("no private IPv4 address found; set an advertise address")
}
