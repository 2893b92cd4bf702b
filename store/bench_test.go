package store

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"
)

// Single-node benchmarks on real BoltDB and loopback TCP: they measure the store's own overhead
// (apply path, read-index batching), not replication. `make bench` measures the cluster.

func benchStore(b *testing.B) *Store {
	b.Helper()
	s, err := Open(Config{NodeID: "b1", DataDir: b.TempDir(), RaftAddr: "127.0.0.1:0", GossipAddr: "127.0.0.1:0", BootstrapExpect: 1})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	deadline := time.Now().Add(20 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for s.Ready() != nil {
		if time.Now().After(deadline) {
			b.Fatalf("single node not ready: %v", s.Ready())
		}
		<-tick.C
	}
	return s
}

func BenchmarkPutParallel(b *testing.B) {
	s := benchStore(b)
	value := make([]byte, 100)
	var n atomic.Int64
	b.ReportAllocs()
	b.SetParallelism(32) // many concurrent writers share each fsync
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			key := fmt.Sprintf("k%d", n.Add(1)%1000)
			if _, err := s.Put(context.Background(), key, value, Precondition{}); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkLinearizableGetParallel(b *testing.B) {
	s := benchStore(b)
	if _, err := s.Put(context.Background(), "k", []byte("v"), Precondition{}); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetParallelism(32) // concurrent reads share one quorum confirmation
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.Get(context.Background(), "k", Linearizable); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
