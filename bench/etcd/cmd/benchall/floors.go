package main

// floors.go: what this machine allows at best, measured before any system runs. A replicated write
// cannot be acknowledged faster than one fsync plus a round trip to a follower (and, at concurrency 1,
// that is roughly its latency); a read cannot be faster than a round trip.

import (
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/raftkv/raftkv/bench/loadgen"
)

// Floors are the machine's floors.
type Floors struct {
	FsyncDir   string  `json:"fsync_dir"`
	FsyncFS    string  `json:"fsync_fs"`
	FsyncN     int     `json:"fsync_samples"`
	FsyncP50us float64 `json:"fsync_p50_us"`
	FsyncP99us float64 `json:"fsync_p99_us"`
	RTTN       int     `json:"rtt_samples"`
	RTTP50us   float64 `json:"rtt_p50_us"`
	RTTP99us   float64 `json:"rtt_p99_us"`

	fsyncP50, fsyncP99, rttP50, rttP99 time.Duration
}

// us is d in microseconds, to 0.1 µs.
func us(d time.Duration) float64 { return math.Round(float64(d)/100) / 10 }

// measureFloors measures fsync in dir (a directory on the filesystem the nodes' data dirs are on) and
// the loopback TCP round trip.
func measureFloors(dir string, fsyncN, rttN int) (*Floors, error) {
	f := &Floors{FsyncDir: dir, FsyncFS: fsType(dir), FsyncN: fsyncN, RTTN: rttN}
	h, err := fsyncLatency(dir, fsyncN)
	if err != nil {
		return nil, fmt.Errorf("fsync floor: %w", err)
	}
	f.fsyncP50, f.fsyncP99 = h.Quantile(0.5), h.Quantile(0.99)
	h, err = loopbackRTT(rttN)
	if err != nil {
		return nil, fmt.Errorf("loopback floor: %w", err)
	}
	f.rttP50, f.rttP99 = h.Quantile(0.5), h.Quantile(0.99)
	f.FsyncP50us, f.FsyncP99us = us(f.fsyncP50), us(f.fsyncP99)
	f.RTTP50us, f.RTTP99us = us(f.rttP50), us(f.rttP99)
	return f, nil
}

// fsyncLatency appends 4 KiB and fdatasyncs, n times: a log append, the cost every durable write pays.
func fsyncLatency(dir string, n int) (*loadgen.Histogram, error) {
	path := filepath.Join(dir, "fsync-probe")
	file, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	defer os.Remove(path)
	defer file.Close()
	block := make([]byte, 4096)
	for i := range block {
		block[i] = byte(i)
	}
	h := loadgen.NewHistogram()
	for range n {
		start := time.Now()
		if _, err := file.Write(block); err != nil {
			return nil, err
		}
		if err := fdatasync(file); err != nil {
			return nil, err
		}
		h.Record(time.Since(start))
	}
	return h, nil
}

// loopbackRTT ping-pongs one byte over a loopback TCP connection n times.
func loopbackRTT(n int) (*loadgen.Histogram, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_, _ = io.Copy(c, c) // echo
	}()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		return nil, err
	}
	defer c.Close()
	buf := []byte{'x'}
	h := loadgen.NewHistogram()
	for i := range n + n/10 {
		start := time.Now()
		if _, err := c.Write(buf); err != nil {
			return nil, err
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			return nil, err
		}
		if i >= n/10 { // the first tenth warms the connection and the scheduler
			h.Record(time.Since(start))
		}
	}
	return h, nil
}
