package main

// memory.go: `benchall memory` (make bench-memory). raftkv's goal is that a node holding 1 M keys of
// 100 B values stays under 1 GiB resident. This starts a fresh 3-node cluster, writes the keys through
// the bench tool itself (`raftkv bench --op put --sequential-keys`), and reads every node's VmRSS (now)
// and VmHWM (peak) from /proc.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/raftkv/raftkv/bench/loadgen"
)

const gib = 1 << 30

func runMemory(args []string) int {
	fs := flag.NewFlagSet("memory", flag.ContinueOnError)
	raftkvBin := fs.String("raftkv", "bin/raftkv", "the raftkv binary")
	out := fs.String("out", "bench/results", "directory for the report")
	keys := fs.Int("keys", 1_000_000, "keys to write, each once")
	valueSize := fs.Int("value-size", 100, "value size in bytes")
	concurrency := fs.Int("concurrency", 128, "bench workers")
	limit := fs.Float64("limit-gib", 1, "fail when a node's resident memory reaches this many GiB")
	noScale := fs.Bool("no-scale", false, "skip the scale row (backup, restart, new member; raftkv and etcd: scale.go)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop()
	}()
	defer stop()

	env, cleanup, err := newRunEnv(*raftkvBin, true)
	if err != nil {
		fmt.Fprintf(os.Stderr, "benchall memory: %v\n", err)
		return 1
	}
	defer cleanup()
	fmt.Printf("benchall memory: %d keys × %d B into a fresh 3-node raftkv cluster (temp dir %s)\n", *keys, *valueSize, env.root)
	sys, err := startRaftkv(ctx, env)
	if err != nil {
		fmt.Fprintf(os.Stderr, "benchall memory: starting raftkv: %v\n", err)
		return 1
	}
	defer sys.stop()
	rk := sys.(*raftkvCluster)

	began := time.Now()
	cmd := exec.CommandContext(ctx, env.raftkv, "bench", "--addr", strings.Join(rk.http, ","),
		"--op", "put", "--sequential-keys", "--keys", strconv.Itoa(*keys), "--value-size", strconv.Itoa(*valueSize),
		"--concurrency", strconv.Itoa(*concurrency), "--warmup", "0", "--duration", "2h", "--json")
	var stdout bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, os.Stderr // progress lines reach a terminal
	fmt.Printf("running: %s\n", strings.Join(cmd.Args[1:], " "))
	if err := cmd.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "benchall memory: raftkv bench: %v\n%s", err, stdout.String())
		return 1
	}
	var res loadgen.JSONResult
	if err := json.Unmarshal(bytes.TrimSpace(stdout.Bytes()), &res); err != nil {
		fmt.Fprintf(os.Stderr, "benchall memory: raftkv bench output: %v\n%s", err, stdout.String())
		return 1
	}
	load := time.Since(began)
	fmt.Printf("wrote %d keys in %s (%.0f puts/s, p99 %s), errors %d\n", res.Ops, time.Since(began).Round(time.Second),
		res.OpsPerSec, loadgen.FormatDuration(time.Duration(res.Latency.P99*1000)), res.Errors)

	var b strings.Builder
	fmt.Fprintf(&b, "# raftkv memory, %s\n\n", time.Now().UTC().Format(time.RFC3339))
	fmt.Fprintf(&b, "%d keys × %d B values written once each by `raftkv bench --sequential-keys` (%d workers, "+
		"%.0f puts/s, %d errors) into a fresh 3-node cluster; resident memory read from /proc/<pid>/status "+
		"right after the load. Goal: under %.3g GiB per node.\n\n", res.Ops, *valueSize, *concurrency, res.OpsPerSec,
		res.Errors, *limit)
	b.WriteString("| node | RSS now | peak RSS | of which anonymous (Go heap) | of which file (BoltDB mmap) | data dir |\n" +
		"|---|---:|---:|---:|---:|---:|\n")
	over := false
	for i, p := range rk.procs {
		m, err := procMemory(p.pid())
		if err != nil {
			fmt.Fprintf(os.Stderr, "benchall memory: %s: %v\n", p.name, err)
			return 1
		}
		size := dirSize(filepath.Join(env.root, "raftkv", "node"+strconv.Itoa(i+1)))
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s |\n", p.name, mib(m.RSS), mib(m.Peak), mib(m.Anon), mib(m.File), mib(size))
		if float64(max(m.RSS, m.Peak)) >= *limit*gib {
			over = true
		}
	}
	b.WriteString("\nThe write rate depends on how busy the machine was; the memory hardly does. Anonymous memory is " +
		"the Go heap with the collector's headroom (GOGC); file pages are BoltDB's mmap of the Raft log, which " +
		"the kernel can reclaim.\n")
	scaleFailed := false
	if !*noScale {
		var rows []scaleRow
		row, err := scaleRaftkv(ctx, env, rk, load)
		sys.stop() // before etcd runs on the same cores
		if err == nil {
			rows = append(rows, row)
			fmt.Printf("raftkv scale: %+v\n", row)
			row, err = scaleEtcd(ctx, env, *keys, *valueSize, *concurrency)
			if err == nil {
				rows = append(rows, row)
				fmt.Printf("etcd scale: %+v\n", row)
			}
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "benchall memory: scale row: %v\n", err)
			scaleFailed = true
		}
		b.WriteString(scaleReport(rows, *keys, *valueSize))
	}
	fmt.Print("\n" + b.String())
	if err := os.MkdirAll(*out, 0o755); err == nil {
		path := filepath.Join(*out, "memory-"+time.Now().UTC().Format("20060102-150405")+".md")
		if err := os.WriteFile(path, []byte(b.String()), 0o644); err == nil {
			fmt.Printf("\nreport: %s\n", path)
		}
	}
	switch {
	case res.Errors > 0 || res.Ops != uint64(*keys):
		fmt.Fprintf(os.Stderr, "benchall memory: only %d of %d keys were written\n", res.Ops, *keys)
		return 1
	case over:
		fmt.Fprintf(os.Stderr, "benchall memory: a node reached %.3g GiB\n", *limit)
		return 1
	case scaleFailed:
		return 1
	}
	return 0
}

func mib(n uint64) string { return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20)) }

func dirSize(dir string) uint64 {
	var n uint64
	_ = filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if fi, err := d.Info(); err == nil {
				n += uint64(fi.Size())
			}
		}
		return nil
	})
	return n
}
